"""What the engine says to the model: prompts, reply parsing, and guards that return verdicts."""
