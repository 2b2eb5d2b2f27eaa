"""Drive an engine over a sequence of events in simulated time, without the runtime.

The runtime does the same with heartbeats and an uplink around it; tests and the
evaluation use this to replay thousands of variants of a home quickly.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.clock import SimClock
from agent.events import SensorEvent
from detection.engine import Engine


def advance(engine: Engine, clock: SimClock, mono: float) -> None:
    """Let time pass until ``mono``, firing each due timer at its own moment."""
    while engine.next_wakeup <= mono:
        due = engine.next_wakeup
        clock.advance_to(due)
        engine.fire(due)
    clock.advance_to(mono)


def feed(
    engine: Engine,
    clock: SimClock,
    events: Iterable[SensorEvent],
    until_mono: float | None = None,
) -> None:
    """Events in time order (unknown sensors skipped), then silence until ``until_mono``."""
    sensors = engine.home.sensors
    for event in events:
        if event.sensor not in sensors:
            continue
        advance(engine, clock, event.mono)
        clock.set(event.wall, event.mono, clock.wall_synced())
        engine.on_event(event)
    if until_mono is not None:
        advance(engine, clock, until_mono)
