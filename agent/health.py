"""What the hub knows about its sensors' health, for the heartbeat.

Only counts and the ids of devices that need maintenance leave the home: never when a
sensor last fired.
"""

from __future__ import annotations

from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap

BATTERY_LOW_PERCENT = 15.0

BATTERY_KINDS = frozenset({EventKind.BATTERY, EventKind.BATTERY_LOW})


class SensorHealth:
    """Last heard from and battery state, per sensor of the home map.

    The runtime writes ``last_seen`` itself on its hot path and calls ``battery`` for the
    events of ``BATTERY_KINDS``.
    """

    def __init__(self, home: HomeMap) -> None:
        self.home = home
        self.last_seen: dict[str, float] = {}  # sensor -> monotonic time of its last event
        self.battery_low: set[str] = set()

    def battery(self, event: SensorEvent) -> None:
        """A battery report: keep the set of sensors whose battery is low up to date."""
        kind = event.kind
        if kind is EventKind.BATTERY:
            if event.value < BATTERY_LOW_PERCENT:
                self.battery_low.add(event.sensor)
            else:
                self.battery_low.discard(event.sensor)
        elif kind is EventKind.BATTERY_LOW:
            if event.value > 0:
                self.battery_low.add(event.sensor)
            else:
                self.battery_low.discard(event.sensor)

    def silent(self, now_mono: float, started_mono: float) -> list[str]:
        """Sensors with a declared reporting interval that have been quiet for longer.

        A sensor never heard from counts from when the hub started.
        """
        out = []
        for sid, spec in self.home.sensors.items():
            if spec.report_interval_s is None:
                continue
            last = self.last_seen.get(sid, started_mono)
            if now_mono - last > spec.report_interval_s:
                out.append(sid)
        return sorted(out)
