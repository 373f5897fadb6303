"""``rlm serve``: an OpenAI-compatible HTTP service in front of RLM profiles (the ``serve`` extra).

Nothing here loads at ``import rlm_core``; ``rlm serve`` imports it. Modules by job: ``config`` (the
config file and its profiles), ``keys`` (bearer keys, hashed), ``limits`` (per-key concurrency and
daily ceilings in SQLite), ``mapping`` (a chat request to a completion and back), ``runs`` (running
and cancelling completions), ``app`` (the Starlette routes) and ``server`` (uvicorn, graceful stop).
See docs/serve.md.
"""
