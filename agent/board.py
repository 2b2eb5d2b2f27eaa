"""The live board: what each sensor of the home last said, for ``hub check``.

The installer walks through the home and watches each sensor respond. The board keeps,
per sensor of the home map, the last event, the last sign of activity, the battery and the
signal strength a driver reported, and which driver serves it. It lives in memory only,
is fed by live drivers only (a replay has no installer), and is served to ``hub check``
over a local Unix socket (``agent.localstatus``): it never leaves the home and it is
never written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.events import ACTIVITY_KINDS, EventKind, SensorEvent
from agent.homemap import HomeMap

BOARD_VERSION = 1


@dataclass(slots=True)
class SensorLine:
    """One sensor's row on the board."""

    driver: str | None = None
    events: int = 0
    last_kind: str | None = None
    last_value: float | None = None
    last_mono: float | None = None
    active_mono: float | None = None  # the last event that meant a person did something
    reading_mono: float | None = None  # the last event of the sensor's own kind (home map)
    reading: float | None = None  # and its value
    battery: float | None = None
    battery_low: bool | None = None
    signal: float | None = None
    signal_unit: str | None = None
    online: bool | None = None


class Board:
    """Per-sensor live state; every method is cheap and called in the event loop."""

    def __init__(self, home: HomeMap) -> None:
        self.home = home
        self.lines: dict[str, SensorLine] = {sid: SensorLine() for sid in home.sensors}
        self._own_kind = {sid: spec.kind for sid, spec in home.sensors.items()}
        self.version = 0  # bumped on every change, so a server sends only what is new

    def claim(self, sensor: str, driver: str) -> None:
        """A driver says, from its configuration, that it serves ``sensor``."""
        line = self.lines.get(sensor)
        if line is not None and line.driver is None:
            line.driver = driver
            self.version += 1

    def event(self, event: SensorEvent, driver: str | None) -> None:
        line = self.lines.get(event.sensor)
        if line is None:
            return
        if driver is not None:
            line.driver = driver
        line.events += 1
        kind = event.kind
        line.last_kind = kind.value
        line.last_value = event.value
        line.last_mono = event.mono
        if kind is self._own_kind[event.sensor]:
            line.reading_mono, line.reading = event.mono, event.value
        if kind in ACTIVITY_KINDS and event.value > 0:
            line.active_mono = event.mono
        elif kind is EventKind.BATTERY:
            line.battery = event.value
        elif kind is EventKind.BATTERY_LOW:
            line.battery_low = event.value >= 1
        elif kind is EventKind.AVAILABILITY:
            line.online = event.value >= 1
        elif kind is EventKind.LINK_QUALITY:
            line.signal, line.signal_unit = event.value, "lqi"
        self.version += 1

    def signal(self, sensor: str, value: float, unit: str) -> None:
        line = self.lines.get(sensor)
        if line is None or (line.signal == value and line.signal_unit == unit):
            return
        line.signal, line.signal_unit = value, unit
        self.version += 1

    def rows(self, now_mono: float) -> list[dict[str, Any]]:
        """Every sensor of the home map, in map order, with ages in seconds from now."""

        def ago(mono: float | None) -> float | None:
            return None if mono is None else round(max(0.0, now_mono - mono), 1)

        out = []
        for sid, spec in self.home.sensors.items():
            line = self.lines[sid]
            out.append(
                {
                    "id": sid,
                    "room": spec.room,
                    "role": spec.role.value,
                    "kind": None if spec.kind is None else spec.kind.value,
                    "label": spec.label,
                    "driver": line.driver,
                    "events": line.events,
                    "last_kind": line.last_kind,
                    "last_value": line.last_value,
                    "last_ago_s": ago(line.last_mono),
                    "active_ago_s": ago(line.active_mono),
                    "reading_ago_s": ago(line.reading_mono),
                    "reading": line.reading,
                    "battery": line.battery,
                    "battery_low": line.battery_low,
                    "signal": line.signal,
                    "signal_unit": line.signal_unit,
                    "online": line.online,
                }
            )
        return out
