"""Events that are an emergency by themselves: a fall, smoke, a water leak.

A sensor reporting one of these (value above 0, and only the kinds listed in
``[detection.emergency] kinds``) raises an urgent alert at once, in the sensor's room,
saying what and where; there is nothing to wait for. Each sensor has its own alert, so
smoke in two rooms is two alerts; the same sensor reporting again while its alert is open
updates it with the count.

Resolution follows what makes the danger over:

- **smoke, water leak**: the same sensor reporting 0 (clear, dry). The alarm itself is
  the best witness that the air or the floor is fine again.
- **fall**: the person seen moving again. Movement in another room than the fall's
  proves the person got up and walked away; movement in the same room does not (the
  radar that saw the fall also sees someone lying on the floor stir). Once the fall
  sensor itself has cleared, any later movement counts, the fall room's included. A
  pendant's room in the home map is only where it is kept: for a fall it reports, the
  room is where the person was last seen by a fixed sensor, and a pendant's own button
  or movement is never taken for getting up.
- **acknowledged** by the centre, for all of them.

After a restart of the hub an open alert is taken back and ends in the same ways, with
durations counted from its ``since``. A pendant's fall is the exception: the room it
happened in is not known any more, so only the pendant clearing and then movement, or
an acknowledgement, end it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.detectconfig import EmergencyConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import Role
from agent.messages import Severity
from agent.units import format_duration
from detection.activity import PERSON_KINDS, is_person_activity
from detection.engine import Detector, Engine, OpenAlert

_URGENT = frozenset({EventKind.FALL, EventKind.SMOKE, EventKind.WATER_LEAK})

_WHAT = {
    EventKind.FALL: "A fall was detected",
    EventKind.SMOKE: "Smoke alarm",
    EventKind.WATER_LEAK: "Water leak detected",
}
_CLEAR = {
    EventKind.SMOKE: "The smoke alarm in {room} cleared after {dur}.",
    EventKind.WATER_LEAK: "The leak sensor in {room} reports dry again after {dur}.",
}


def _name(sensor: str, label: str | None) -> str:
    """How a sensor is called in a summary: its label, else its id (kept short)."""
    return (label or sensor)[:48]


@dataclass(slots=True)
class _Open:
    """One open emergency alert: its sensor, kind and what has happened since."""

    sensor: str
    kind: EventKind
    room: str
    mono: float  # when it was raised (monotonic)
    reports: int = 1
    #: for a fall: the room the person fell in (None: not known, for a pendant)
    fall_room: str | None = None
    #: for a fall: the fall sensor has reported 0 since
    cleared: bool = False


class Emergency(Detector):
    name = "emergency"
    kinds = _URGENT | PERSON_KINDS

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.cfg: EmergencyConfig = engine.config.emergency
        self.enabled_kinds = frozenset(EventKind(k) for k in self.cfg.kinds)
        self.open: dict[str, _Open] = {}
        self.falls: dict[str, _Open] = {}  # the open fall alerts, by key
        #: room where a fixed (not worn) sensor last saw the person
        self.last_room: str | None = None
        self._fixed = {
            sid: spec.room
            for sid, spec in self.home.sensors.items()
            if spec.role is not Role.WEARABLE
        }

    def on_event(self, event: SensorEvent) -> None:
        kind = event.kind
        if kind in _URGENT:
            if kind in self.enabled_kinds:
                self._urgent(event)
            return
        if not is_person_activity(event):
            return
        room = self._fixed.get(event.sensor)
        if room is None:
            return  # a pendant's button or movement says nothing about getting up
        self.last_room = room
        if self.falls:
            self._movement(room, event)

    # ---- fall, smoke, leak -----------------------------------------------------------
    def _urgent(self, event: SensorEvent) -> None:
        kind = event.kind
        key = f"{kind.value}:{event.sensor}"
        spec = self.home.sensors[event.sensor]
        name = _name(event.sensor, spec.label)
        alert = self.open.get(key)
        if event.value <= 0:
            if alert is None:
                return
            if kind is EventKind.FALL:
                alert.cleared = True  # not over yet: over when the person is seen moving
                return
            dur = format_duration(event.mono - alert.mono)
            self._close(key, _CLEAR[kind].format(room=alert.room, dur=dur), event.mono)
            return
        if alert is not None:
            alert.reports += 1
            alert.cleared = False  # a new fall: it has to clear again
            self.engine.update(
                self,
                key,
                f"{_WHAT[kind]} again in {alert.room} ({name}): {alert.reports} reports.",
                {"reports": alert.reports},
            )
            return
        alert = _Open(event.sensor, kind, spec.room, event.mono)
        summary = f"{_WHAT[kind]} in {spec.room} ({name})."
        if kind is EventKind.FALL:
            if spec.role is Role.WEARABLE:
                alert.fall_room = self.last_room
                where = f"last seen in {self.last_room}" if self.last_room else "place unknown"
                summary = f"{_WHAT[kind]} by {name}, worn by the person ({where})."
            else:
                alert.fall_room = spec.room
            self.falls[key] = alert
        self.open[key] = alert
        self.raise_alert(
            key, kind.value, Severity.URGENT, event.wall, spec.room, summary, {"reports": 1}
        )

    def _movement(self, room: str, event: SensorEvent) -> None:
        """A fixed sensor saw the person in ``room``: does that end any open fall?"""
        for key, alert in list(self.falls.items()):
            minutes = round((event.mono - alert.mono) / 60)
            if alert.cleared:
                why = f"The fall sensor cleared and there was movement in {room}"
            elif alert.fall_room is not None and room != alert.fall_room:
                why = f"Seen moving again in {room}"
            else:
                continue
            self._close(key, f"{why} {minutes} min after the fall.", event.mono)

    def _close(self, key: str, summary: str, now: float) -> None:
        alert = self.open.pop(key)
        self.falls.pop(key, None)
        evidence: dict[str, int | float] = {"reports": alert.reports}
        evidence["minutes_since_fall" if alert.kind is EventKind.FALL else "open_min"] = round(
            (now - alert.mono) / 60
        )
        self.engine.resolve(self, key, summary, evidence)

    def adopt(self, alert: OpenAlert, since_mono: float) -> bool:
        kind_name, _, sensor = alert.key.partition(":")
        spec = self.home.sensors.get(sensor)
        try:
            kind = EventKind(kind_name)
        except ValueError:
            return False
        if spec is None or kind not in _URGENT or kind not in self.enabled_kinds:
            return False
        record = _Open(sensor, kind, alert.room or spec.room, since_mono)
        record.reports = max(1, int(alert.evidence.get("reports", 1)))
        if kind is EventKind.FALL:
            record.fall_room = None if spec.role is Role.WEARABLE else spec.room
            self.falls[alert.key] = record
        self.open[alert.key] = record
        return True

    def on_acknowledged(self, alert: OpenAlert) -> None:
        self.open.pop(alert.key, None)
        self.falls.pop(alert.key, None)
        super().on_acknowledged(alert)
