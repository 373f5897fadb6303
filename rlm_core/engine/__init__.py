"""The engine: the root loop, host calls from REPL code, the broker and its ledger, budgets, events."""
