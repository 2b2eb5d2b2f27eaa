"""Replays a recorded or simulated home from a trace file (format v1)."""
