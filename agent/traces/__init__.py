"""Recorded and simulated homes: the trace format, importers, the simulator."""
