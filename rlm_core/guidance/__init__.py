"""What the engine says to the model: prompts, reply parsing, the core's plain notes, and the
strategy contract (help beyond plain facts lives in strategy plugins)."""
