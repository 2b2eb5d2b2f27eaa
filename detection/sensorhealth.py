"""Sensor health: a sensor silent or offline, a battery low, a driver down. Maintenance.

A hub that watches over someone must notice when it goes blind, before silence is taken
for a quiet day. Every alert here is ``maintenance``, one per sensor (or driver), and
resolves itself when the cause is gone, saying after how long. The rule sees every event,
since any event proves its sensor alive.

- **sensor_silent**, by what is known of the sensor:

  - a declared ``report_interval_s`` (the longest normal silence of a sensor that
    reports periodically): silent after ``silent_factor`` times that;
  - else, a sensor that sends measurements (temperature, humidity, light, battery, link
    quality): its interval is learned as the median of its last 16 gaps between reports
    (values arriving within seconds of each other are one report), once 4 gaps are
    known, and taken as at least 1 h: Zigbee sensors that report on change still send
    at least hourly, so a calm night does not make a 10-minute thermometer look silent.
    Silent after ``silent_factor`` times that. A sensor that also sends person-activity
    kinds is left out of this: its measurements ride along with motion and are as
    irregular as the person.
  - a person-activity sensor (motion, presence, door, mat, appliance, flush, vibration):
    silent after ``activity_silence`` without a word *while the person is active
    elsewhere*, judged when another sensor sees the person. Silence is counted from the
    sensor's last report, or from the start of the present lived-in stretch when that is
    later: a home quiet for 16 h or more (longer than any night the inactivity rules
    accept) was empty, so a bedroom sensor is not blamed on the day the person comes home
    from a fortnight away. Worn sensors, windows and outside doors are never judged this
    way: a pendant's button or a garden door may rightly go unused for a season.
  - ``availability`` 0 (the radio network lost the device): the sensor counts as down at
    once (``down_sensors``), and is reported after ``offline_after`` (a short blip is not
    worth a visit).

  Any event from the sensor other than ``availability`` 0 ends its silence. A sensor
  never heard counts from the moment the rule first learned the time (its first event or
  mode or driver change): the engine may be built before a replay's clock is set, and
  treating "never" as 0 would blame every sensor at start.
- **battery_low**: a battery report below ``battery_low`` percent, or a device's own
  low-battery flag. It resolves when a report comes back 10 points above the threshold
  (a new battery), or, for a flag, when the device clears it; reports in between do not
  flap it open and shut.
- **driver_down**: a driver down for ``driver_down_after``; it resolves when it is up.

An acknowledged alert is not raised again for the same episode. Durations are monotonic;
timers fire only when a deadline can be reached. Summaries name the sensor and its room,
never when it last fired.

After a restart of the hub an open alert is taken back and resolves as above, with
durations counted from its ``since``: a silent sensor when it reports, a battery when a
new one is seen. A driver that is running again by the time the hub hears from anything
after the restart has its ``driver_down`` resolved then.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

from agent.detectconfig import SensorHealthConfig
from agent.events import ACTIVITY_KINDS, MEASUREMENT_KINDS, EventKind, SensorEvent
from agent.homemap import Role
from agent.messages import Mode, Severity
from agent.units import format_duration
from detection.activity import is_person_activity
from detection.engine import INF, Detector, Engine, OpenAlert

#: a home without any person activity this long was empty: silence starts again after it
HOME_QUIET_BREAK = 16 * 3600.0
#: gaps kept per sensor to learn its reporting interval, and how many it takes
GAP_RING = 16
LEARN_MIN_GAPS = 4
#: measurements closer together than this are one report (temperature, humidity, battery)
SAME_REPORT_S = 10.0
#: a learned interval is taken as at least this
LEARNED_FLOOR_S = 3600.0
#: a battery this many points above the threshold is a new one
NEW_BATTERY_MARGIN = 10.0

_NEVER_ROUTINE = frozenset({Role.WEARABLE, Role.WINDOW, Role.OUTSIDE_DOOR})
_ROUTINE_KINDS = ACTIVITY_KINDS - {EventKind.BUTTON}

OFFLINE = "offline"
DECLARED = "declared"
LEARNED = "learned"
ACTIVITY = "activity"


@dataclass(slots=True)
class _Sensor:
    """What the rule knows of one sensor."""

    room: str
    name: str
    declared: float | None  # the declared report interval
    worn: bool
    can_be_routine: bool  # its role may be judged by the activity rule
    routine: bool  # it is a person-activity sensor the activity rule judges
    activity_kinds: bool  # it sends person-activity kinds: no learned interval
    last: float | None = None  # monotonic time it was last heard
    last_wall: float = 0.0
    last_measure: float | None = None
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=GAP_RING))
    n_gaps: int = 0
    learned: float | None = None
    offline_mono: float | None = None
    offline_wall: float = 0.0
    down: str | None = None  # why it counts as down now: OFFLINE, DECLARED, ...
    alerted: bool = False  # an alert was raised for this silence
    battery: str | None = None  # why its battery counts as low: "percent" or "flag"
    #: how long it may be silent (``SensorHealth._limit``'s seconds), kept up to date by
    #: ``SensorHealth._relimit`` so that the path of every event does not work it out
    limit_s: float | None = None


def _sensor(
    sid: str,
    room: str,
    role: Role,
    kind: EventKind | None,
    label: str | None,
    declared: float | None,
) -> _Sensor:
    can = role not in _NEVER_ROUTINE
    return _Sensor(
        room=room,
        name=(label or sid)[:48],
        declared=declared,
        worn=role is Role.WEARABLE,
        can_be_routine=can,
        routine=can and kind in _ROUTINE_KINDS,
        activity_kinds=kind in ACTIVITY_KINDS,
    )


class SensorHealth(Detector):
    name = "sensor_health"
    kinds = frozenset(EventKind)

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.cfg: SensorHealthConfig = engine.config.sensor_health
        self.sensors = {
            sid: _sensor(sid, s.room, s.role, s.kind, s.label, s.report_interval_s)
            for sid, s in self.home.sensors.items()
        }
        for st in self.sensors.values():
            self._relimit(st)
        self.start: float | None = None  # when the rule first learned the time
        self.start_wall = 0.0
        self._due: dict[str, float] = {}  # sensor -> when its silence is reported
        self._driver_due: dict[str, float] = {}
        self._drivers: dict[str, tuple[float, float]] = {}  # down driver -> (mono, wall)
        self._drivers_alerted: set[str] = set()
        self._home_last = -INF  # the last person activity anywhere
        self._stretch = -INF  # when the present lived-in stretch began
        self._act_due = INF  # no routine sensor can be overdue before this

    # ---- what other rules may ask ----------------------------------------------------
    def down_sensors(self, now_mono: float) -> set[str]:
        """Sensors held silent or offline at ``now_mono`` (monotonic seconds)."""
        out = {sid for sid, st in self.sensors.items() if st.down is not None}
        out.update(sid for sid, due in self._due.items() if due <= now_mono)
        return out

    # ---- time ------------------------------------------------------------------------
    def _begin(self, now: float, wall: float) -> None:
        """The first moment the rule learns the time: sensors never heard count from it."""
        self.start, self.start_wall = now, wall
        self._home_last = self._stretch = now
        factor = self.cfg.silent_factor
        for sid, st in self.sensors.items():
            if st.declared is not None:
                self._set_due(sid, now + factor * st.declared)
            if st.routine:
                self._act_due = now + self.cfg.activity_silence

    def _set_due(self, sid: str, t: float) -> None:
        # Lazy: a due moved later leaves ``wake`` early; on_wakeup finds nothing due and
        # aims again. Every event moves some sensor's due, so this runs for each one.
        self._due[sid] = t
        if t < self.wake:  # noqa: PLR1730 - a comparison is cheaper than min() per event
            self.wake = t

    def _clear_due(self, sid: str) -> None:
        self._due.pop(sid, None)  # a wake that was for it finds nothing due (see _set_due)

    def _rewake(self) -> None:
        self.wake = min(
            min(self._due.values(), default=INF), min(self._driver_due.values(), default=INF)
        )

    def _limit(self, st: _Sensor) -> tuple[float, str] | None:
        """How long ``st`` may be silent by its interval, and where that comes from."""
        if st.declared is not None:
            return self.cfg.silent_factor * st.declared, DECLARED
        if st.learned is not None and not st.activity_kinds:
            return self.cfg.silent_factor * max(st.learned, LEARNED_FLOOR_S), LEARNED
        return None

    def _relimit(self, st: _Sensor) -> None:
        """``st.limit_s`` anew, after what ``_limit`` depends on has changed."""
        limit = self._limit(st)
        st.limit_s = None if limit is None else limit[0]

    # ---- events ----------------------------------------------------------------------
    def on_event(self, event: SensorEvent) -> None:
        # Every event of the home comes here: _set_due and _clear_due are inlined.
        now = event.mono
        if self.start is None:
            self._begin(now, event.wall)
        sid = event.sensor
        st = self.sensors.get(sid)
        if st is None:
            return  # the engine passes only sensors of the home map
        kind = event.kind
        if kind is EventKind.AVAILABILITY and event.value <= 0:
            self._offline(sid, st, event)
            return
        if st.down is not None:
            self._heard_again(sid, st, now)
        st.last = now
        st.last_wall = event.wall
        st.offline_mono = None
        if kind in MEASUREMENT_KINDS:
            last = st.last_measure
            if last is None or now - last >= SAME_REPORT_S:  # else: the same report
                self._measure(st, now)
        elif kind in ACTIVITY_KINDS:
            if not st.activity_kinds:
                st.activity_kinds = True
                self._relimit(st)
            if kind in _ROUTINE_KINDS and st.can_be_routine:
                st.routine = True
            if not st.worn and is_person_activity(event):
                self._person_seen(sid, now, event.wall)
        if kind is EventKind.BATTERY or kind is EventKind.BATTERY_LOW:
            self._battery(sid, st, event)
        limit = st.limit_s
        if limit is None:
            self._due.pop(sid, None)
        else:
            due = now + limit
            self._due[sid] = due
            if due < self.wake:  # noqa: PLR1730 - a due moved later leaves wake early: see _set_due
                self.wake = due
        if st.routine:
            due = now + self.cfg.activity_silence
            if due < self._act_due:  # noqa: PLR1730 - cheaper than min() per event
                self._act_due = due

    def _measure(self, st: _Sensor, now: float) -> None:
        """A new report (not another value of the last one) of a measuring sensor."""
        if st.last_measure is None:
            st.last_measure = now
            return
        gap = now - st.last_measure
        st.last_measure = now
        st.gaps.append(gap)
        st.n_gaps += 1
        # the median of the last gaps, worked out every few reports: it moves slowly
        if len(st.gaps) >= LEARN_MIN_GAPS and (st.learned is None or st.n_gaps % 8 == 0):
            st.learned = statistics.median(st.gaps)
            self._relimit(st)

    def _person_seen(self, sid: str, now: float, wall: float) -> None:
        """The person did something at ``sid``: the other activity sensors should too."""
        if now - self._home_last >= HOME_QUIET_BREAK:
            self._stretch = now  # the home was empty: a new lived-in stretch
        self._home_last = now
        if now < self._act_due:
            return
        assert self.start is not None
        silence = self.cfg.activity_silence
        nxt = INF
        for other, st in self.sensors.items():
            if not st.routine or st.alerted or other == sid:
                continue
            begin = max(st.last if st.last is not None else self.start, self._stretch)
            if now - begin >= silence:
                self._raise_silent(other, st, ACTIVITY, silence, now, wall)
            else:
                nxt = min(nxt, begin + silence)
        self._act_due = nxt

    def _offline(self, sid: str, st: _Sensor, event: SensorEvent) -> None:
        if st.offline_mono is not None:
            return
        st.offline_mono, st.offline_wall = event.mono, event.wall
        if st.down is None:
            st.down = OFFLINE  # down at once; reported after a grace
        if st.alerted:
            return
        after = self.cfg.offline_after
        if after <= 0:
            self._raise_silent(sid, st, OFFLINE, 0.0, event.mono, event.wall)
        else:
            self._set_due(sid, min(self._due.get(sid, INF), event.mono + after))

    def _heard_again(self, sid: str, st: _Sensor, now: float) -> None:
        key = f"silent:{sid}"
        if st.alerted and self.engine.is_open(self, key):
            if st.down == OFFLINE and st.offline_mono is not None:
                gone = now - st.offline_mono
                self.engine.resolve(
                    self,
                    key,
                    f"{st.name} in {st.room} is back online after {format_duration(gone)} offline.",
                    {"offline_min": round(gone / 60)},
                )
            else:
                gone = now - (st.last if st.last is not None else self.start or now)
                self.engine.resolve(
                    self,
                    key,
                    f"{st.name} in {st.room} reported again after "
                    f"{format_duration(gone)} of silence.",
                    {"silent_h": round(gone / 3600, 1)},
                )
        st.down = None
        st.alerted = False

    def _raise_silent(
        self, sid: str, st: _Sensor, why: str, limit: float, now: float, wall: float
    ) -> None:
        self._clear_due(sid)
        st.down, st.alerted = why, True
        if st.last is not None:
            since, since_wall = st.last, st.last_wall
            heard = f"has not reported for {format_duration(now - since)}"
        else:
            since, since_wall = self.start or now, self.start_wall
            heard = f"has not reported since the hub started, {format_duration(now - since)} ago"
        silent_h = round((now - since) / 3600, 1)
        if why == OFFLINE:
            assert st.offline_mono is not None
            gone = now - st.offline_mono
            summary = (
                f"{st.name} in {st.room} is offline: its network has not reached it "
                f"for {format_duration(gone)}."
            )
            self.raise_alert(
                f"silent:{sid}",
                "sensor_silent",
                Severity.MAINTENANCE,
                st.offline_wall,
                st.room,
                summary,
                {"offline_min": round(gone / 60), "silent_h": silent_h},
            )
            return
        if why == DECLARED:
            reason = f"; it reports at least every {format_duration(st.declared or 0.0)}"
        elif why == LEARNED:
            reason = f"; it usually reports every {format_duration(st.learned or 0.0)}"
        else:
            reason = " while the person was active elsewhere in the home"
        self.raise_alert(
            f"silent:{sid}",
            "sensor_silent",
            Severity.MAINTENANCE,
            since_wall,
            st.room,
            f"{st.name} in {st.room} {heard}{reason}.",
            {"silent_h": silent_h, "limit_h": round(limit / 3600, 1)},
        )

    def _battery(self, sid: str, st: _Sensor, event: SensorEvent) -> None:
        key = f"battery:{sid}"
        low = self.cfg.battery_low
        value = event.value
        if event.kind is EventKind.BATTERY:
            if value < low:
                if st.battery is None:
                    st.battery = "percent"
                    self.raise_alert(
                        key,
                        "battery_low",
                        Severity.MAINTENANCE,
                        event.wall,
                        st.room,
                        f"The battery of {st.name} in {st.room} is low: {value:.0f} %.",
                        {"battery_pct": round(value)},
                    )
            elif value > low + NEW_BATTERY_MARGIN and st.battery is not None:
                st.battery = None
                if self.engine.is_open(self, key):
                    self.engine.resolve(
                        self,
                        key,
                        f"New battery in {st.name} in {st.room}: {value:.0f} %.",
                        {"battery_pct": round(value)},
                    )
        elif value > 0:
            if st.battery is None:
                st.battery = "flag"
                self.raise_alert(
                    key,
                    "battery_low",
                    Severity.MAINTENANCE,
                    event.wall,
                    st.room,
                    f"{st.name} in {st.room} reports a low battery.",
                )
        elif st.battery == "flag":
            st.battery = None
            if self.engine.is_open(self, key):
                self.engine.resolve(
                    self, key, f"{st.name} in {st.room} no longer reports a low battery."
                )

    # ---- after a restart --------------------------------------------------------------
    def adopt(self, alert: OpenAlert, since_mono: float) -> bool:
        what, _, name = alert.key.partition(":")
        if what == "driver":
            if name in self.engine.drivers_down:
                self._drivers.setdefault(name, (since_mono, alert.since))
                self._drivers_alerted.add(name)
                return True
            gone = self.clock.monotonic() - since_mono
            self.engine.resolve(
                self,
                alert.key,
                f"The {name[:48]} driver is running again after {format_duration(gone)}; "
                f"the hub restarted meanwhile.",
                {"down_min": round(gone / 60)},
            )
            return True
        st = self.sensors.get(name)
        if st is None:
            return False
        if what == "silent":
            st.alerted = True
            if "offline_min" in alert.evidence:
                st.down = OFFLINE
                st.offline_mono, st.offline_wall = since_mono, alert.since
            else:
                st.down = DECLARED if st.declared is not None else ACTIVITY
                st.last, st.last_wall = since_mono, alert.since
            return True
        if what == "battery":
            st.battery = "percent" if "battery_pct" in alert.evidence else "flag"
            return True
        return False

    # ---- drivers and timers ----------------------------------------------------------
    def on_mode(self, mode: Mode) -> None:
        if self.start is None:
            self._begin(self.clock.monotonic(), self.clock.wall())

    def on_driver(self, name: str, up: bool) -> None:
        now, wall = self.clock.monotonic(), self.clock.wall()
        if self.start is None:
            self._begin(now, wall)
        if not up:
            self._drivers.setdefault(name, (now, wall))  # kept from before a restart
            after = self.cfg.driver_down_after
            if after <= 0:
                self._raise_driver(name, now)
            else:
                self._driver_due[name] = now + after
                self.wake = min(self.wake, now + after)
            return
        down = self._drivers.pop(name, None)
        if self._driver_due.pop(name, None) is not None:
            self._rewake()
        if name in self._drivers_alerted:
            self._drivers_alerted.discard(name)
            key = f"driver:{name}"
            if down is not None and self.engine.is_open(self, key):
                gone = now - down[0]
                self.engine.resolve(
                    self,
                    key,
                    f"The {name[:48]} driver is back after {format_duration(gone)} down.",
                    {"down_min": round(gone / 60)},
                )

    def _raise_driver(self, name: str, now: float) -> None:
        since, since_wall = self._drivers[name]
        self._drivers_alerted.add(name)
        gone = now - since
        self.raise_alert(
            f"driver:{name}",
            "driver_down",
            Severity.MAINTENANCE,
            since_wall,
            None,
            f"The {name[:48]} driver has been down for {format_duration(gone)}: "
            f"its sensors cannot report.",
            {"down_min": round(gone / 60)},
        )

    def on_wakeup(self, now: float) -> None:
        # Most wakes find nothing due: a thermometer reporting every two minutes moves
        # its due later at every report and leaves the wake behind (see _set_due).
        wall = self.clock.wall()
        for _due, sid in sorted([(due, sid) for sid, due in self._due.items() if due <= now]):
            del self._due[sid]
            st = self.sensors[sid]
            if st.alerted:
                continue
            offline = st.offline_mono
            if offline is not None and now >= offline + self.cfg.offline_after:
                self._raise_silent(sid, st, OFFLINE, 0.0, now, wall)
                continue
            limit = self._limit(st)
            if limit is not None:
                self._raise_silent(sid, st, limit[1], limit[0], now, wall)
        for name, due in sorted(self._driver_due.items()):
            if due <= now:
                del self._driver_due[name]
                if name in self._drivers and name not in self._drivers_alerted:
                    self._raise_driver(name, now)
        self._rewake()


def down_sensors(engine: Engine, now_mono: float | None = None) -> set[str]:
    """The sensors ``engine``'s sensor-health rule holds silent or offline (none if off)."""
    for det in engine.detectors:
        if isinstance(det, SensorHealth):
            return det.down_sensors(engine.clock.monotonic() if now_mono is None else now_mono)
    return set()
