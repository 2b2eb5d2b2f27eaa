"""The home too cold or too hot for hours: hypothermia and heat risk.

Older people feel cold and heat less, and a house that stays below ``low`` (16 °C by
default) or above ``high`` (28 °C) for ``lasting`` hours (3 h) is a health risk, whether
the heating broke down or the person does not notice. The rule works per room: a room
with several thermometers takes the mean of the latest reading of each one that is still
fresh. Worn sensors do not count: they measure the person, not the room.

- **cold** / **heat** (``severity`` of the section, a warning by default): raised when
  the room has been below ``low`` (above ``high``) since its first reading there for
  ``lasting``, counted on the monotonic clock; a single reading back inside the band
  starts the count again. The alert gives the temperature now, the lowest (highest) and
  the hours.
- It resolves once the room is back inside the band by ``hysteresis`` (16.5 °C for a cold
  alert), so that a reading hovering at the limit does not open and close it in turns.
- An acknowledgement resolves the alert; the room is not alerted about again until it has
  been back inside the band.
- **stale**: a thermometer that goes silent must not keep an alert open forever. A
  reading counts for twice the sensor's declared ``report_interval_s`` (one late or lost
  report is tolerated: at exactly the interval, a reading and its successor would race
  and the alert flap), else for ``stale_after`` (6 h). Stale readings neither raise nor
  keep an alert: a room whose every reading went stale resolves its alert and says why;
  the silent sensor itself is sensor health's concern.

Timers wake the rule only when a count reaches ``lasting`` or a reading goes stale.

After a restart of the hub an open alert is taken back, counted from its ``since`` and
with the extreme of its last message: the first readings resolve it or keep it open. A
room that sends no reading at all after the restart is treated as stale readings are,
from the restart on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.detectconfig import TemperatureConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import Role
from agent.units import format_duration
from detection.engine import INF, Detector, Engine, OpenAlert

_COLD = "cold"
_HEAT = "heat"


@dataclass(slots=True)
class _Room:
    name: str
    #: sensor -> (value, monotonic time) of its latest fresh reading
    readings: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: the condition now counting ("cold" or "heat"), or None
    run: str | None = None
    run_mono: float = 0.0
    run_wall: float = 0.0
    extreme: float = 0.0  # lowest while cold, highest while hot
    #: the count reached ``lasting``: an alert was raised (it may have been acknowledged)
    alerted: bool = False
    #: an alert taken back after a restart, no reading since: from when (monotonic)
    restored: float | None = None


class Temperature(Detector):
    name = "temperature"
    kinds = frozenset({EventKind.TEMPERATURE})

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.cfg: TemperatureConfig = engine.config.temperature
        self.rooms: dict[str, _Room] = {}
        self._room_of: dict[str, str] = {}
        self._stale_after: dict[str, float] = {}
        for sid, spec in self.home.sensors.items():
            if spec.role is Role.WEARABLE:
                continue
            self._room_of[sid] = spec.room
            declared = spec.report_interval_s
            self._stale_after[sid] = 2 * declared if declared else self.cfg.stale_after

    def on_event(self, event: SensorEvent) -> None:
        room_name = self._room_of.get(event.sensor)
        if room_name is None or not math.isfinite(event.value):
            return
        room = self.rooms.get(room_name)
        if room is None:
            room = self.rooms[room_name] = _Room(room_name)
        stale = self._stale_after
        before = room.readings.get(event.sensor)
        room.readings[event.sensor] = (event.value, event.mono)
        room.restored = None
        self._evaluate(room, event.mono, event.wall)
        if before is not None and before[1] + stale[event.sensor] <= self.wake:
            # The reading this one replaces was to go stale first: aim again, or the rule
            # would wake for nothing at every report of the most frequent thermometer.
            self._rewake()
            return
        # Lazy otherwise: a reading only moves this room's moments; one that moved later
        # leaves ``wake`` early, and on_wakeup, finding nothing due, aims again.
        wake = self.wake
        if room.run is not None and not room.alerted:
            wake = min(wake, room.run_mono + self.cfg.lasting)
        for sid, (_, mono) in room.readings.items():
            wake = min(wake, mono + stale[sid])
        self.wake = wake

    def adopt(self, alert: OpenAlert, since_mono: float) -> bool:
        run, _, name = alert.key.partition(":")
        if run not in (_COLD, _HEAT) or name not in self._room_of.values():
            return False
        cold = run == _COLD
        room = self.rooms[name] = _Room(name)
        room.run, room.run_mono, room.run_wall, room.alerted = run, since_mono, alert.since, True
        extreme = alert.evidence.get("lowest_c" if cold else "highest_c")
        if extreme is None:
            extreme = self.cfg.low if cold else self.cfg.high
        room.extreme = float(extreme)
        room.restored = self.clock.monotonic()
        self._rewake()
        return True

    def _silent_after(self, room: str) -> float:
        """How long the room's thermometers may all be silent before its readings are stale."""
        return max(self._stale_after[sid] for sid, r in self._room_of.items() if r == room)

    def on_wakeup(self, now: float) -> None:
        wall = self.clock.wall()
        for name in sorted(self.rooms):
            self._evaluate(self.rooms[name], now, wall)
        self._rewake()

    # ---- the rule --------------------------------------------------------------------
    def _evaluate(self, room: _Room, now: float, wall: float) -> None:
        """Where ``room`` stands at ``now``: start, continue or end a count; raise, resolve."""
        fresh: list[float] = []
        newest_stale = -INF
        readings = room.readings
        stale_after = self._stale_after
        for sid, (value, mono) in readings.items():
            if now - mono >= stale_after[sid]:
                newest_stale = max(newest_stale, mono)
            else:
                fresh.append(value)
        if newest_stale > -INF:
            for sid, (_, mono) in list(readings.items()):
                if now - mono >= stale_after[sid]:
                    del readings[sid]
        if not fresh:
            if room.restored is not None and math.isinf(newest_stale):
                # taken back after a restart and not a reading since: stale once they
                # have all been silent that long
                if now - room.restored < self._silent_after(room.name):
                    return
                newest_stale, room.restored = room.restored, None
            if room.alerted and self.engine.is_open(self, self._key(room)):
                kind = room.run or _COLD
                self.engine.resolve(
                    self,
                    self._key(room),
                    f"No temperature reading from {room.name} for "
                    f"{format_duration(now - newest_stale)}: the thermometer is silent, so "
                    f"the {kind} alert is closed without a current temperature.",
                    {"hours": round((now - room.run_mono) / 3600, 1)},
                )
            self._reset(room)
            return
        # fsum rounds exactly once, so the order of the readings does not change the mean
        mean = fresh[0] if len(fresh) == 1 else math.fsum(fresh) / len(fresh)
        low, high, hyst = self.cfg.low, self.cfg.high, self.cfg.hysteresis
        if room.alerted:
            cold = room.run == _COLD
            if (cold and mean >= low + hyst) or (not cold and mean <= high - hyst):
                self._back_in_band(room, mean, now)
            else:
                room.extreme = min(room.extreme, mean) if cold else max(room.extreme, mean)
                return
        condition = _COLD if mean < low else _HEAT if mean > high else None
        if condition is None:
            self._reset(room)  # one reading inside the band starts the count again
            return
        if room.run != condition:
            room.run, room.run_mono, room.run_wall, room.extreme = condition, now, wall, mean
        elif condition == _COLD:
            room.extreme = min(room.extreme, mean)
        else:
            room.extreme = max(room.extreme, mean)
        if now - room.run_mono >= self.cfg.lasting:
            self._raise(room, mean, now)

    def _raise(self, room: _Room, mean: float, now: float) -> None:
        room.alerted = True
        cold = room.run == _COLD
        hours = now - room.run_mono
        if cold:
            text = (
                f"Below {self.cfg.low:g} °C in {room.name} for {format_duration(hours)}: "
                f"now {mean:.1f} °C, lowest {room.extreme:.1f} °C."
            )
        else:
            text = (
                f"Above {self.cfg.high:g} °C in {room.name} for {format_duration(hours)}: "
                f"now {mean:.1f} °C, highest {room.extreme:.1f} °C."
            )
        self.raise_alert(
            self._key(room),
            room.run or _COLD,
            self.cfg.severity,
            room.run_wall,
            room.name,
            text,
            {
                "temp_c": round(mean, 1),
                "lowest_c" if cold else "highest_c": round(room.extreme, 1),
                "hours": round(hours / 3600, 1),
            },
        )

    def _back_in_band(self, room: _Room, mean: float, now: float) -> None:
        key = self._key(room)
        if self.engine.is_open(self, key):
            cold = room.run == _COLD
            limit = f"below {self.cfg.low:g} °C" if cold else f"above {self.cfg.high:g} °C"
            word = "lowest" if cold else "highest"
            self.engine.resolve(
                self,
                key,
                f"Back to {mean:.1f} °C in {room.name} after "
                f"{format_duration(now - room.run_mono)} {limit}; the {word} was "
                f"{room.extreme:.1f} °C.",
                {
                    "temp_c": round(mean, 1),
                    f"{word}_c": round(room.extreme, 1),
                    "hours": round((now - room.run_mono) / 3600, 1),
                },
            )
        self._reset(room)

    @staticmethod
    def _key(room: _Room) -> str:
        return f"{room.run or _COLD}:{room.name}"

    @staticmethod
    def _reset(room: _Room) -> None:
        room.run = None
        room.alerted = False

    def _rewake(self) -> None:
        """The next moment anything can change: a count reaching ``lasting``, or staleness."""
        wake = INF
        lasting = self.cfg.lasting
        for room in self.rooms.values():
            if room.run is not None and not room.alerted:
                wake = min(wake, room.run_mono + lasting)
            for sid, (_, mono) in room.readings.items():
                wake = min(wake, mono + self._stale_after[sid])
            if room.restored is not None and not room.readings:
                wake = min(wake, room.restored + self._silent_after(room.name))
        self.wake = wake
