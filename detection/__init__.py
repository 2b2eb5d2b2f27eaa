"""Detection: deterministic rules over events and a clock, and the engine that runs them."""
