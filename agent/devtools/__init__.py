"""Tools for tests, the demo and benchmarks; never used by a running hub.

``agent.devtools.broker`` runs a private Mosquitto broker and a small subscriber that
records what reaches it, so that the uplink is tested against a real broker.
"""
