"""A seeded, deterministic home of one older person living alone, with optional incidents.

The demo, the golden tests and every test that must not depend on recorded data use it.
Same arguments, same trace: all randomness comes from one ``numpy`` Generator seeded with
``seed``. For one seed the person lives the same life in every profile; only the sensors
that see it differ.

How it works, in three steps:

1. *Plan* (``_Life``): the person's days as stays in rooms, each with how often a PIR
   could see them move (cooking: every few seconds; watching TV: every quarter of an
   hour; asleep: now and then), plus the state changes of doors, mats and the flush, and
   the activity labels. Anchors (waking, meals, bedtime, thermostat) are wall-clock times
   in the home's zone, so across a DST change the person keeps to the clock on the wall
   and that night is an hour longer or shorter.
2. *Incidents* cut the plan: after a fall nothing the person does happens any more.
3. *Render*: movements become PIR reports (``on`` when motion starts, repeated ``on``
   while it goes on, ``off`` after a cooldown without motion); a small thermal model of
   the house gives the thermometers; every battery device reports once a day. Periodic
   reports go on whatever the person does, so detectors must not take them for activity.

The profiles differ in the sensors only (``default_home``): ``typical`` has a PIR in
every room, bed and chair mats, a flush sensor, fridge and front-door contacts, a help
button and a thermometer; ``sparse`` is a cheap kit (four PIRs, the front door, the button,
the thermometer); ``busy`` is well equipped, with two PIRs per room and thermometers and a
humidity sensor that report every minute (more than a million events a year, for
benchmarks).

Unusual days happen now and then: a sick day (late up, a nap in bed, early to bed), a
day out, a night away from home, an hour awake in the night.
"""

from __future__ import annotations

import gc
import math
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, cast, get_args
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap, Role, SensorSpec
from agent.traces.format import Label, TraceHeader

IncidentKind = Literal["fall", "bathroom_fall", "no_wakeup", "night_exit", "help_button"]
Profile = Literal["typical", "busy", "sparse"]

INCIDENT_KINDS: tuple[str, ...] = get_args(IncidentKind)
PROFILES: tuple[str, ...] = get_args(Profile)

#: The alert kinds each incident should raise; written into the incident's label.
EXPECTED_ALERTS: dict[str, tuple[str, ...]] = {
    "fall": ("inactivity",),
    "bathroom_fall": ("bathroom_overstay", "inactivity"),
    "no_wakeup": ("not_up", "inactivity"),
    "night_exit": ("door_night", "inactivity"),
    "help_button": ("help_button",),
}

#: After one of these the person does nothing any more (a help button press excepted).
TERMINAL_INCIDENTS: frozenset[str] = frozenset({"fall", "bathroom_fall", "no_wakeup", "night_exit"})

#: A ``night_exit`` must fall in this part of the night (local hours): from 22:00 to 06:00.
NIGHT_HOURS: tuple[int, int] = (22, 6)

DAY_S = 86400.0
_MIN = 60.0
_HOUR = 3600.0

FloatArray = npt.NDArray[np.float64]


# ---- incidents -------------------------------------------------------------------------
@dataclass(frozen=True)
class Incident:
    """Something that goes wrong at ``at`` (aware, local); ``no_wakeup`` uses only its day."""

    kind: IncidentKind
    at: datetime

    def __str__(self) -> str:
        """The text ``parse_incident`` reads back, e.g. ``fall@2026-11-14T15:00:00+01:00``."""
        if self.kind == "no_wakeup":
            return f"{self.kind}@{self.at.date().isoformat()}"
        return f"{self.kind}@{self.at.isoformat()}"


_DAY_FORM = re.compile(r"d(\d+)(?:T(\d{1,2}):(\d{2})(?::(\d{2}))?)?", re.IGNORECASE)
_USAGE = "write KIND@dN, KIND@dNTHH:MM, KIND@YYYY-MM-DD or KIND@YYYY-MM-DDTHH:MM"


def parse_incident(text: str, start: date, tz: ZoneInfo) -> Incident:
    """``"fall@2026-11-14T15:00"``, ``"fall@d13T15:00"`` (day 13, the first day is d1),
    ``"no_wakeup@d13"`` or ``"no_wakeup@2026-11-14"`` to an ``Incident`` in ``tz``.

    ``no_wakeup`` takes a day; every other kind a day and a time. A time the clocks skip
    (spring forward) or a day before ``start`` is refused. ValueError says what is wrong.
    """
    kind, sep, when = text.strip().partition("@")
    kind, when = kind.strip().lower(), when.strip()
    if not sep or not kind or not when:
        raise ValueError(f"{text!r} is not an incident; {_USAGE}")
    if kind not in INCIDENT_KINDS:
        raise ValueError(f"unknown incident kind {kind!r}; choose from {', '.join(INCIDENT_KINDS)}")
    day, hms = _parse_when(when, start, tz)
    if day < start:
        raise ValueError(f"{text!r} is before the first simulated day {start.isoformat()}")
    if kind == "no_wakeup":
        if hms is not None:
            raise ValueError(
                f"{text!r}: no_wakeup takes a day, not a time: write no_wakeup@d13 or "
                "no_wakeup@2026-11-14"
            )
        return Incident("no_wakeup", datetime(day.year, day.month, day.day, tzinfo=tz))
    if hms is None:
        raise ValueError(
            f"{text!r}: {kind} needs a time of day: write {kind}@d13T15:00 or "
            f"{kind}@{start.isoformat()}T15:00"
        )
    h, m, s = hms
    at = datetime(day.year, day.month, day.day, h, m, s, tzinfo=tz)
    back = datetime.fromtimestamp(at.timestamp(), tz)
    if back.replace(tzinfo=None) != at.replace(tzinfo=None):
        raise ValueError(f"{text!r}: {at.replace(tzinfo=None)} does not exist in {tz.key} (DST)")
    return Incident(cast(IncidentKind, kind), at)


def _parse_when(when: str, start: date, tz: ZoneInfo) -> tuple[date, tuple[int, int, int] | None]:
    """The day and, when given, the local (hour, minute, second) of an incident text."""
    match = _DAY_FORM.fullmatch(when)
    if match:
        n = int(match.group(1))
        if n < 1:
            raise ValueError(f"day {when!r}: days count from d1 (the first simulated day)")
        day = start + timedelta(days=n - 1)
        if match.group(2) is None:
            return day, None
        h, m, s = int(match.group(2)), int(match.group(3)), int(match.group(4) or 0)
        if h > 23 or m > 59 or s > 59:
            raise ValueError(f"{when!r}: {h:02d}:{m:02d}:{s:02d} is not a time of day")
        return day, (h, m, s)
    if len(when) == 10:
        try:
            return date.fromisoformat(when), None
        except ValueError:
            raise ValueError(f"{when!r} is not a date; {_USAGE}") from None
    try:
        dt = datetime.fromisoformat(when)
    except ValueError:
        raise ValueError(f"{when!r} is not a date and time; {_USAGE}") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(tz)
    return dt.date(), (dt.hour, dt.minute, dt.second)


# ---- the homes -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Device:
    """One simulated device: what the home map says of it and how it behaves."""

    sid: str
    place: str  # where it hangs: bedroom, bathroom, kitchen, living, hallway
    role: Role
    kind: EventKind
    label: str
    cooldown_s: float = 0.0  # motion: no motion this long, then "off"
    report_s: float = 0.0  # motion: at most one "on" per this many seconds while motion goes on
    detect_p: float = 1.0  # motion: the share of movements it sees
    period_s: float = 0.0  # measurements: seconds between reports
    measures: tuple[EventKind, ...] = ()
    offset_c: float = 0.0  # thermometer: how much warmer this room is than the living room
    point: str = ""  # the plan's name for a device the person switches (bed, door, ...)


_ROOM = {
    "bedroom": "Bedroom",
    "bathroom": "Bathroom",
    "kitchen": "Kitchen",
    "living": "Living",
    "hallway": "Hallway",
}

_T, _H = EventKind.TEMPERATURE, EventKind.HUMIDITY


def _pir(sid: str, place: str, role: Role, pir: tuple[float, float, float]) -> _Device:
    """A motion sensor; ``pir`` is (cooldown s, least s between two reports, share seen)."""
    return _Device(sid, place, role, EventKind.MOTION, sid.replace("-", " "), *pir)


_TYPICAL: tuple[_Device, ...] = (
    _pir("bedroom-motion", "bedroom", Role.BEDROOM, (90, 60, 0.95)),
    _Device("bed", "bedroom", Role.BED, EventKind.PRESSURE, "bed mat", point="bed"),
    _pir("bathroom-motion", "bathroom", Role.BATHROOM, (60, 30, 0.95)),
    _Device("toilet-flush", "bathroom", Role.TOILET, EventKind.FLUSH, "flush", point="flush"),
    _pir("kitchen-motion", "kitchen", Role.KITCHEN, (60, 30, 0.9)),
    _Device("fridge", "kitchen", Role.KITCHEN, EventKind.CONTACT, "fridge door", point="fridge"),
    _pir("living-motion", "living", Role.LIVING, (90, 60, 0.9)),
    _Device("chair", "living", Role.SEAT, EventKind.PRESSURE, "armchair mat", point="chair"),
    _pir("hallway-motion", "hallway", Role.HALLWAY, (60, 30, 0.98)),
    _Device("front-door", "hallway", Role.FRONT_DOOR, EventKind.CONTACT, "front door",
            point="door"),
    _Device("help-button", "living", Role.WEARABLE, EventKind.BUTTON, "pendant", point="button"),
    _Device(
        "living-temp", "living", Role.OTHER, _T, "living room thermometer",
        period_s=300, measures=(_T,),
    ),
)  # fmt: skip

_SPARSE_IDS = frozenset(
    {"bedroom-motion", "bathroom-motion", "kitchen-motion", "living-motion", "front-door",
     "help-button", "living-temp"}
)  # fmt: skip

_BUSY_EXTRA: tuple[_Device, ...] = (
    _pir("bedroom-motion-2", "bedroom", Role.BEDROOM, (60, 10, 0.8)),
    _pir("bathroom-motion-2", "bathroom", Role.BATHROOM, (60, 10, 0.85)),
    _pir("kitchen-motion-2", "kitchen", Role.KITCHEN, (60, 10, 0.85)),
    _pir("living-motion-2", "living", Role.LIVING, (75, 10, 0.8)),
    _pir("hallway-motion-2", "hallway", Role.HALLWAY, (60, 10, 0.9)),
    _Device("cupboard", "kitchen", Role.KITCHEN, EventKind.CONTACT, "kitchen cupboard",
            point="cupboard"),
    _Device("bedroom-temp", "bedroom", Role.OTHER, _T, "bedroom thermometer",
            period_s=300, measures=(_T,), offset_c=-1.3),
    _Device("bathroom-climate", "bathroom", Role.OTHER, _H, "bathroom humidity sensor",
            period_s=60, measures=(_H,), offset_c=0.6),
)  # fmt: skip

#: Battery devices report their level once a day; the home map says so.
_BATTERY_SILENCE_S = 25 * _HOUR


def _devices(profile: str) -> tuple[_Device, ...]:
    if profile == "typical":
        return _TYPICAL
    if profile == "sparse":
        return tuple(d for d in _TYPICAL if d.sid in _SPARSE_IDS)
    if profile == "busy":
        living = tuple(
            _Device(d.sid, d.place, d.role, d.kind, d.label, period_s=60, measures=d.measures)
            if d.sid == "living-temp"
            else d
            for d in _TYPICAL
        )
        return living + _BUSY_EXTRA
    raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")


def default_home(profile: Profile = "typical") -> HomeMap:
    """The home map of a profile: every device's room, role and main kind.

    ``report_interval_s`` is the longest normal silence: twice the period of a
    thermometer, a day and an hour for everything else (each battery device reports its
    level once a day, so even a PIR in an unused room is heard from daily).
    """
    sensors = {
        d.sid: SensorSpec(
            room=_ROOM[d.place],
            role=d.role,
            kind=d.kind,
            label=d.label,
            report_interval_s=2 * d.period_s if d.period_s else _BATTERY_SILENCE_S,
        )
        for d in _devices(profile)
    }
    return HomeMap(sensors=sensors)


# ---- the plan of a life ----------------------------------------------------------------
Span = tuple[float, float, str, float]  # start, end, place, mean seconds between movements
Point = tuple[float, str, float, float]  # time, device, value, time of the action causing it
Mark = tuple[float, str, str | None]  # from this time: place, seat (bed, chair or none)
Activity = tuple[str, float, float, str | None]  # label, start, end, place

_TV_GAP = 900.0  # seated in front of the TV: the PIR sees a movement every ~15 min
_NAP_GAP = 3000.0
_SLEEP_GAP = 5400.0  # turning over in bed, seen now and then
_WALK_GAP = 2.0


class _Life:
    """The person's days: stays in rooms, switched devices and labels, in POSIX seconds.

    Methods move the person forward from ``self.t``; anchors are wall-clock times.
    ``protect`` holds incident times around which no outing or visit is planned.
    """

    def __init__(self, rng: np.random.Generator, tz: ZoneInfo, protect: Sequence[float]) -> None:
        self.rng = rng
        self.tz = tz
        self.protect = sorted(protect)
        self.t = 0.0
        self.place = "living"
        self.seat: str | None = None
        self.spans: list[Span] = []
        self.moves: list[tuple[float, str]] = []
        self.points: list[Point] = []
        self.marks: list[Mark] = []
        self.activities: list[Activity] = []
        self.showers: list[tuple[float, float]] = []
        self.wakes: dict[date, float] = {}
        self.last_toilet = -math.inf
        self.left_at = 0.0  # when an overnight stay away began
        self.back_at = 0.0  # and when it ends

    # -- small helpers
    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def chance(self, p: float) -> bool:
        return float(self.rng.random()) < p

    def wall(self, day: date, hour: float) -> float:
        """POSIX seconds of ``hour`` (may exceed 24) on ``day`` by the clock on the wall."""
        base = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        return (base + timedelta(hours=hour)).timestamp()

    def free(self, t0: float, t1: float) -> bool:
        """No incident time falls in [t0 - 15 min, t1 + 15 min]."""
        i = bisect_right(self.protect, t0 - 15 * _MIN)
        return i >= len(self.protect) or self.protect[i] > t1 + 15 * _MIN

    def mark(self) -> None:
        self.marks.append((self.t, self.place, self.seat))

    def stay(self, seconds: float, gap: float) -> None:
        """Stay where the person is for ``seconds``, moving every ``gap`` s on average."""
        if seconds > 0:
            self.spans.append((self.t, self.t + seconds, self.place, gap))
            self.t += seconds

    def label(self, name: str, t0: float, place: str | None) -> None:
        if self.t > t0:
            self.activities.append((name, t0, self.t, place))

    def switch(self, device: str, value: float, at: float, cause: float | None = None) -> None:
        self.points.append((at, device, value, at if cause is None else cause))

    def flick(self, device: str, t0: float, t1: float, n: int, longest: float = 40.0) -> None:
        """Open and close ``device`` (fridge, cupboard) ``n`` times within [t0, t1)."""
        if n <= 0 or t1 <= t0:
            return
        slot = (t1 - t0) / n
        for i in range(n):
            opened = t0 + i * slot + self.u(0.0, 0.4) * slot
            self.switch(device, 1.0, opened)
            self.switch(device, 0.0, opened + self.u(4.0, max(5.0, min(longest, 0.5 * slot))))

    def cut(self, t: float) -> None:
        """Forget all the person would have done from ``t`` on and stand them where they were.

        What a device does by itself (the flush stopping) still happens when its cause
        came before ``t``.
        """
        self.spans = [(a, min(b, t), p, g) for a, b, p, g in self.spans if a < t]
        self.moves = [m for m in self.moves if m[0] < t]
        self.points = [p for p in self.points if p[3] < t]
        self.activities = [(n, a, min(b, t), p) for n, a, b, p in self.activities if a < t]
        self.showers = [(a, min(b, t)) for a, b in self.showers if a < t]
        i = bisect_right(self.marks, t, key=lambda m: m[0])
        self.marks = self.marks[:i]
        _, self.place, self.seat = self.marks[-1]
        self.t = t

    def where(self, t: float) -> str:
        """The place the plan puts the person in at ``t``."""
        i = bisect_right(self.marks, t, key=lambda m: m[0])
        return self.marks[max(i - 1, 0)][1]

    # -- moving about
    def get_up(self) -> None:
        if self.seat is None:
            return
        self.switch(self.seat, 0.0, self.t)
        self.seat = None
        self.mark()
        self.moves.append((self.t + self.u(0.5, 2.5), self.place))
        self.stay(self.u(3.0, 8.0), 3.0)

    def sit(self, seat: str) -> None:
        self.moves.append((self.t, self.place))
        self.stay(self.u(2.0, 5.0), 3.0)
        self.switch(seat, 1.0, self.t)
        self.seat = seat
        self.mark()

    def go(self, place: str) -> None:
        """Walk to ``place``: out of this room, through the hallway, into the next."""
        if place == self.place:
            return
        self.get_up()
        self.moves.append((self.t, self.place))
        self.stay(self.u(1.0, 4.0), _WALK_GAP)
        if "hallway" not in (self.place, place):
            self.place = "hallway"
            self.mark()
            self.moves.append((self.t, "hallway"))
            self.stay(self.u(4.0, 12.0), _WALK_GAP)  # an older person, not in a hurry
        self.place = place
        self.mark()
        self.moves.append((self.t, place))
        self.stay(self.u(2.0, 5.0), 2.5)

    def linger(self, until: float) -> None:
        """Stay where the person is until ``until`` (short waits between activities)."""
        gap = 20.0 if self.seat is None else _TV_GAP
        self.stay(until - self.t, gap)

    # -- activities
    def toilet(self, night: bool = False) -> None:
        self.go("bathroom")
        t0 = self.t
        self.stay(self.u(60.0, 200.0 if night else 260.0), 12.0)
        self.switch("flush", 1.0, self.t)
        self.switch("flush", 0.0, self.t + self.u(4.0, 9.0), cause=self.t)
        self.stay(self.u(10.0, 45.0), 10.0)  # washing hands
        self.label("toileting", t0, "bathroom")
        self.last_toilet = self.t

    def meal(self, name: str, prep: float, eat: float, clean: float, opens: int) -> None:
        self.go("kitchen")
        t0 = self.t
        self.flick("fridge", self.t, self.t + prep, opens)
        self.flick("cupboard", self.t, self.t + prep, int(self.rng.integers(1, 4)), 15.0)
        self.stay(prep, 8.0)
        self.stay(eat, 90.0)  # at the kitchen table
        if self.chance(0.5):
            self.flick("fridge", self.t, self.t + clean, 1)
        self.stay(clean, 10.0)
        self.label(name, t0, "kitchen")

    def seated(self, until: float, nap: tuple[float, float] | None) -> None:
        """In the armchair until ``until``; during a nap the PIR sees even less."""
        while self.t < until:
            if nap is not None and nap[0] <= self.t < nap[1]:
                self.stay(min(until, nap[1]) - self.t, _NAP_GAP)
            elif nap is not None and self.t < nap[0] < until:
                self.stay(nap[0] - self.t, _TV_GAP)
            else:
                self.stay(until - self.t, _TV_GAP)

    def idle_until(self, until: float, nap: tuple[float, float] | None = None) -> None:
        """Spare time in the armchair until ``until``, up now and then for the toilet,
        a drink or a snack in the kitchen, or something in the bedroom."""
        while until - self.t > 4 * _MIN:
            if self.seat != "chair":
                self.go("living")
                self.sit("chair")
            t0 = self.t
            nxt = self.t + float(self.rng.gamma(3.0, 25.0)) * _MIN  # ~75 min, rarely < 20
            if nap is not None and nap[0] - 10 * _MIN < nxt < nap[1]:
                nxt = nap[1] + self.u(1.0, 10.0) * _MIN
            if nxt > until - 10 * _MIN:
                self.seated(until, nap)
                self.label("spare_time_tv", t0, "living")
                break
            self.seated(nxt, nap)
            self.label("spare_time_tv", t0, "living")
            r = float(self.rng.random())
            if r < 0.5 and self.t - self.last_toilet > 45 * _MIN:
                self.toilet()
            elif r < 0.8:
                self.go("kitchen")
                k0 = self.t
                span = self.u(1.5, 6.0) * _MIN
                self.flick("fridge", self.t, self.t + span, int(self.rng.integers(0, 2)))
                self.stay(span, 10.0)
                self.label("snack", k0, "kitchen")
            else:
                self.go("bedroom")
                self.stay(self.u(2.0, 8.0) * _MIN, 15.0)
        if self.t < until:
            self.linger(until)

    def leave(self) -> float:
        """Coat on in the hallway, out of the front door; returns when the door opened."""
        self.go("hallway")
        self.stay(self.u(1.0, 3.0) * _MIN, 6.0)
        self.moves.append((self.t, "hallway"))
        opened = self.t + self.u(1.0, 3.0)
        closed = opened + self.u(3.0, 10.0)
        self.switch("door", 1.0, opened)
        self.switch("door", 0.0, closed)
        self.t = closed
        self.place = "out"
        self.mark()
        return opened

    def come_back(self, at: float, left: float, shopping: bool) -> None:
        """In at the front door at ``at``; ``left`` is when the outing began."""
        self.t = at
        self.switch("door", 1.0, at)
        self.activities.append(("leaving", left, at, None))
        self.place = "hallway"
        self.mark()
        self.moves.append((at + self.u(0.5, 2.0), "hallway"))
        self.switch("door", 0.0, at + self.u(4.0, 12.0))
        self.stay(self.u(1.0, 2.5) * _MIN, 5.0)
        if shopping:
            self.go("kitchen")
            span = self.u(3.0, 8.0) * _MIN
            self.flick("fridge", self.t, self.t + span, int(self.rng.integers(1, 3)))
            self.flick("cupboard", self.t, self.t + span, int(self.rng.integers(1, 3)), 15.0)
            self.stay(span, 8.0)

    def outing(self, at: float, minutes: float) -> bool:
        """Go out at ``at`` (wall time reached by waiting in the chair) for ``minutes``."""
        if at < self.t or not self.free(at, at + minutes * _MIN):
            return False
        self.idle_until(at)
        left = self.leave()
        self.come_back(left + minutes * _MIN, left, shopping=self.chance(0.6))
        return True

    def visit(self, at: float, minutes: float) -> bool:
        """A visitor some afternoon: two people, sometimes in two rooms at once."""
        end = at + minutes * _MIN
        if at < self.t or not self.free(at, end):
            return False
        self.idle_until(at)
        self.go("hallway")
        opened = self.t + self.u(2.0, 8.0)
        self.switch("door", 1.0, opened)
        self.switch("door", 0.0, opened + self.u(8.0, 25.0))
        self.t = opened
        self.stay(self.u(30.0, 90.0), 3.0)  # greeting, coats
        self.go("living")
        self.sit("chair")
        t_visitor = self.t
        coffee = self.t + self.u(3.0, 15.0) * _MIN
        coffee_end = coffee + self.u(5.0, 10.0) * _MIN
        loo = coffee_end + self.u(10.0, 40.0) * _MIN if self.chance(0.5) else math.inf
        leave_at = max(end, coffee_end + 15 * _MIN, loo + 10 * _MIN if loo < math.inf else 0)
        # the visitor: seated in the living room, out to make coffee, maybe to the toilet
        self.spans.append((t_visitor, coffee, "living", 120.0))
        self.spans.append((coffee, coffee + 10, "hallway", _WALK_GAP))
        self.spans.append((coffee + 8, coffee_end, "kitchen", 8.0))
        self.flick("fridge", coffee + 60, coffee_end - 60, 1)
        self.spans.append((coffee_end, coffee_end + 10, "hallway", _WALK_GAP))
        back = coffee_end + 10
        if loo < math.inf:
            self.spans.append((back, loo, "living", 120.0))
            self.spans.append((loo, loo + 10, "hallway", _WALK_GAP))
            loo_end = loo + self.u(2.0, 4.0) * _MIN
            self.spans.append((loo + 8, loo_end, "bathroom", 15.0))
            self.switch("flush", 1.0, loo_end - 30)
            self.switch("flush", 0.0, loo_end - 30 + self.u(4.0, 9.0), cause=loo_end - 30)
            self.spans.append((loo_end, loo_end + 10, "hallway", _WALK_GAP))
            back = loo_end + 10
        self.spans.append((back, leave_at, "living", 120.0))
        # the person: seated, but up and about in the living room while the coffee is made
        self.seated(coffee, None)
        self.get_up()
        self.stay(coffee_end - self.t, 20.0)
        self.sit("chair")
        self.seated(leave_at, None)
        self.go("hallway")
        self.stay(self.u(30.0, 120.0), 3.0)
        self.switch("door", 1.0, self.t)
        closed = self.t + self.u(5.0, 20.0)
        self.switch("door", 0.0, closed)
        self.t = closed
        self.activities.append(("visitors", opened, closed, "living"))
        return True

    def sleep(self, until: float) -> None:
        t0 = self.t
        self.stay(until - self.t, _SLEEP_GAP)
        self.label("sleeping", t0, "bedroom")

    def night(self, wake: float, visits: int, insomnia: bool) -> None:
        """In bed until ``wake`` with ``visits`` toilet visits, perhaps an hour awake."""
        lo, hi = self.t + 40 * _MIN, wake - 25 * _MIN
        if hi <= lo:
            visits, insomnia = 0, False
        times = [(self.u(lo, hi), False) for _ in range(visits)]
        if insomnia:
            times.append((self.u(lo, hi), True))
        for at, awake in sorted(times):
            if at < self.t + 30 * _MIN or at > hi:
                continue
            self.sleep(at)
            if awake:
                self.go("living")
                self.sit("chair")
                t0 = self.t
                self.seated(self.t + self.u(20.0, 60.0) * _MIN, None)
                self.label("spare_time_tv", t0, "living")
                self.toilet(night=True)
            else:
                self.toilet(night=True)
            self.go("bedroom")
            self.stay(self.u(10.0, 40.0), 6.0)
            self.sit("bed")
        if self.t < wake:
            self.sleep(wake)

    def evening(self, bed_at: float) -> None:
        """From the armchair to bed, so that the mat is pressed at about ``bed_at``."""
        self.idle_until(bed_at - self.u(14.0, 24.0) * _MIN)
        if self.chance(0.3):
            self.go("kitchen")
            self.stay(self.u(1.0, 3.0) * _MIN, 10.0)
        self.toilet()
        g0 = self.t
        self.stay(self.u(2.0, 4.0) * _MIN, 10.0)  # teeth
        self.label("grooming", g0, "bathroom")
        self.go("bedroom")
        self.stay(self.u(3.0, 8.0) * _MIN, 12.0)
        self.sit("bed")

    def morning(self, slow: bool) -> None:
        """Out of bed: bathroom, washing or a shower, dressing, breakfast."""
        self.get_up()
        self.stay(self.u(1.0, 3.0) * _MIN * (2 if slow else 1), 12.0)
        self.toilet()
        t0 = self.t
        if not slow and self.chance(0.55):
            start = self.t
            self.stay(self.u(8.0, 18.0) * _MIN, 6.0)
            self.showers.append((start, self.t))
            self.label("showering", t0, "bathroom")
        else:
            self.stay(self.u(4.0, 10.0) * _MIN, 12.0)
            self.label("grooming", t0, "bathroom")
        self.go("bedroom")
        g0 = self.t
        self.stay(self.u(5.0, 12.0) * _MIN, 12.0)
        self.label("grooming", g0, "bedroom")
        self.meal(
            "breakfast",
            self.u(5.0, 12.0) * _MIN,
            self.u(10.0, 20.0) * _MIN,
            self.u(2.0, 5.0) * _MIN,
            int(self.rng.integers(1, 4)),
        )


# Per weekday (Monday first): the chance of going out (a morning outing takes 60 % of it,
# an afternoon one 40 %, both can happen) and of a visitor in the afternoon.
_P_OUT = (0.45, 0.4, 0.65, 0.4, 0.55, 0.5, 0.35)
_P_VISIT = (0.15, 0.15, 0.15, 0.2, 0.15, 0.2, 0.45)
# Night-time toilet visits: 0 to 3, mostly one.
_P_NIGHT_VISITS = (0.2, 0.42, 0.28, 0.1)
DayKind = Literal["normal", "sick", "day_out", "away"]


def _winter(day: date) -> float:
    """1 in mid-January, 0 in mid-July: people rise a little later in the dark months."""
    return 0.5 + 0.5 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)


def _live(life: _Life, first: date, last: date, normal_days: set[date]) -> None:
    """Plan the evening before ``first`` and every day from ``first`` through ``last``."""
    rng = life.rng
    eve = first - timedelta(days=1)
    life.t = life.wall(eve, 19.0)
    life.place, life.seat = "living", "chair"
    life.mark()
    life.evening(life.wall(eve, _bedtime(life, eve, "normal")))
    day = first
    kind: DayKind = "normal"
    while day <= last:
        r = float(rng.random())
        if day in normal_days or life.place == "out":
            kind = "normal"
        elif kind == "sick" and r < 0.4:  # an illness lasts a few days
            kind = "sick"
        else:
            kind = (
                "sick" if r < 0.02 else "day_out" if r < 0.045 else "away" if r < 0.06 else "normal"
            )
        _day(life, day, kind)
        day += timedelta(days=1)


def _bedtime(life: _Life, day: date, kind: DayKind) -> float:
    late = day.weekday() in (4, 5)  # Friday and Saturday evenings
    hour = float(np.clip(life.rng.normal(23.0 if late else 22.5, 0.4 if late else 0.33), 21, 24.5))
    return hour - (life.u(0.5, 1.5) if kind == "sick" else 0.0)


def _day(life: _Life, day: date, kind: DayKind) -> None:
    """One day, from the night before's sleep to going to bed."""
    rng = life.rng
    weekday = day.weekday()
    weekend = weekday >= 5
    lunch = life.wall(day, 12.25 + float(rng.normal(0.0, 0.33)))
    dinner = life.wall(day, 17.75 + float(rng.normal(0.0, 0.33)))
    nap: tuple[float, float] | None = None
    if life.chance(1.0 if kind == "sick" else 0.6):
        nap_start = life.wall(day, life.u(13.5, 14.5))
        nap = (nap_start, nap_start + life.u(30.0, 90.0) * _MIN)

    returned = life.place == "out"
    if returned:  # back from a night away
        life.come_back(life.back_at, life.left_at, shopping=False)
    else:
        mean = (8.0 if weekend else 7.25) + 0.17 * _winter(day)
        hour = float(np.clip(rng.normal(mean, 0.4 if weekend else 0.3), 5.75, 10.0))
        if kind == "sick":
            hour += life.u(0.75, 2.0)
        wake = life.wall(day, hour)
        visits = int(rng.choice(4, p=_P_NIGHT_VISITS)) + (1 if kind == "sick" else 0)
        life.night(wake, visits, insomnia=life.chance(0.03))
        life.wakes[day] = wake
        life.morning(slow=kind == "sick")

    if kind == "day_out":
        at = life.wall(day, life.u(9.5, 10.5))
        back = life.wall(day, life.u(15.0, 18.5))
        life.outing(max(at, life.t + 5 * _MIN), (back - max(at, life.t + 5 * _MIN)) / _MIN)
    elif kind in ("normal", "away") and not returned and life.chance(_P_OUT[weekday] * 0.6):
        minutes = min(60.0 + float(rng.gamma(2.0, 22.0)), 200.0)
        life.outing(max(life.wall(day, life.u(9.5, 10.75)), life.t + 5 * _MIN), minutes)

    if life.t < lunch + 45 * _MIN:
        life.idle_until(lunch)
        life.meal(
            "lunch",
            life.u(10.0, 25.0) * _MIN,
            life.u(15.0, 25.0) * _MIN,
            life.u(3.0, 8.0) * _MIN,
            int(rng.integers(1, 4)),
        )

    if kind == "away":
        life.idle_until(max(life.t + 10 * _MIN, life.wall(day, life.u(14.0, 16.5))))
        life.go("bedroom")
        life.stay(life.u(5.0, 15.0) * _MIN, 10.0)  # packing a bag
        life.left_at = life.leave()
        life.back_at = life.wall(day + timedelta(days=1), life.u(10.5, 15.0))
        return

    if kind == "sick":
        life.idle_until(max(life.t, life.wall(day, 13.5)))
        life.go("bedroom")
        life.sit("bed")
        life.sleep(life.t + life.u(60.0, 120.0) * _MIN)
        life.get_up()
        nap = None
    elif kind == "normal":
        r = float(rng.random())
        if r < _P_OUT[weekday] * 0.4:
            minutes = min(60.0 + float(rng.gamma(2.0, 18.0)), 210.0)
            life.outing(life.wall(day, life.u(14.0, 15.5)), minutes)
        elif r < _P_OUT[weekday] * 0.4 + _P_VISIT[weekday]:
            life.visit(life.wall(day, life.u(14.0, 16.0)), life.u(45.0, 120.0))

    if life.t < dinner + 60 * _MIN:
        life.idle_until(dinner, nap)
        life.meal(
            "dinner",
            life.u(20.0, 45.0) * _MIN,
            life.u(20.0, 30.0) * _MIN,
            life.u(5.0, 12.0) * _MIN,
            int(rng.integers(2, 5)),
        )
    life.evening(life.wall(day, _bedtime(life, day, kind)))


# ---- incidents on the plan -------------------------------------------------------------
@dataclass(frozen=True)
class _Effect:
    """Where and when an incident shows in the trace, for its label and the trace end."""

    incident: Incident
    start: float
    room: str | None


def _check_incidents(
    incidents: Sequence[Incident], tz: ZoneInfo, first: date, days: int
) -> list[Incident]:
    """Incidents in ``tz``, in time order, each checked against the simulated days."""
    out: list[Incident] = []
    last = first + timedelta(days=days - 1)
    for inc in incidents:
        if inc.kind not in INCIDENT_KINDS:
            raise ValueError(f"unknown incident kind {inc.kind!r}")
        if inc.at.utcoffset() is None:
            raise ValueError(f"{inc.kind}: the time {inc.at} needs a time zone")
        at = inc.at.astimezone(tz)
        if not first <= at.date() <= last:
            raise ValueError(
                f"{inc.kind} on {at.date()} is outside the simulated days "
                f"{first.isoformat()} to {last.isoformat()}"
            )
        if inc.kind == "night_exit" and NIGHT_HOURS[1] <= at.hour < NIGHT_HOURS[0]:
            raise ValueError(
                f"night_exit at {at:%H:%M} is not at night; choose a time from "
                f"{NIGHT_HOURS[0]}:00 to 0{NIGHT_HOURS[1]}:00"
            )
        if inc.kind == "no_wakeup":
            at = datetime(at.year, at.month, at.day, tzinfo=tz)
        out.append(Incident(inc.kind, at))
    out.sort(key=lambda i: (i.at, i.kind))
    terminal = [i for i in out if i.kind in TERMINAL_INCIDENTS]
    if len(terminal) > 1:
        raise ValueError(
            f"at most one of {', '.join(sorted(TERMINAL_INCIDENTS))} per trace: after "
            f"{terminal[0]} the person no longer does anything"
        )
    if terminal and terminal[0].kind == "night_exit":
        gone = terminal[0].at
        if any(i.kind == "help_button" and i.at > gone for i in out):
            raise ValueError(f"a help_button after {terminal[0]}: the person has left the house")
    return out


def _apply_incidents(life: _Life, incidents: Sequence[Incident]) -> list[_Effect]:
    """Bend the plan to the incidents (checked and in time order)."""
    effects: list[_Effect] = []
    after: tuple[float, str | None] | None = None  # the end of the person's activity
    for inc in incidents:
        if inc.kind not in TERMINAL_INCIDENTS:
            continue
        t = inc.at.timestamp()
        if inc.kind == "fall":
            life.cut(t - 5.0)
            if life.seat is not None:  # gets up, and falls
                life.switch(life.seat, 0.0, life.t)
            life.spans.append((life.t, t, life.place, 3.0))
            life.moves.append((t, life.place))
            room = _ROOM.get(life.place)
        elif inc.kind == "bathroom_fall":
            life.cut(t)
            life.go("bathroom")
            life.stay(life.u(0.5, 2.5) * _MIN, 10.0)
            life.moves.append((life.t, "bathroom"))
            room = "Bathroom"
        elif inc.kind == "no_wakeup":
            t = life.wakes[inc.at.date()]
            life.cut(t)
            room = "Bedroom"
        else:  # night_exit
            life.cut(t - life.u(45.0, 120.0))
            life.go("hallway")
            life.stay(max(t - 1.0 - life.t, 0.0), 4.0)
            life.moves.append((life.t, "hallway"))
            life.switch("door", 1.0, t)
            life.switch("door", 0.0, t + life.u(3.0, 12.0))
            room = "Hallway"
        effects.append(_Effect(inc, t, room))
        after = (t, room)
    for inc in incidents:
        if inc.kind != "help_button":
            continue
        t = inc.at.timestamp()
        life.switch("button", 1.0, t)
        room = after[1] if after is not None and t >= after[0] else _ROOM.get(life.where(t))
        effects.append(_Effect(inc, t, room))
    effects.sort(key=lambda e: e.start)
    return effects


# ---- rendering -------------------------------------------------------------------------
def _movements(life: _Life, rng: np.random.Generator) -> dict[str, FloatArray]:
    """Every moment a PIR could see the person (or a visitor) move, per place, sorted."""
    places = sorted(_ROOM)
    index = {p: i for i, p in enumerate(places)}
    t0 = np.array([s[0] for s in life.spans], dtype=np.float64)
    t1 = np.array([s[1] for s in life.spans], dtype=np.float64)
    gap = np.array([s[3] for s in life.spans], dtype=np.float64)
    where = np.array([index[s[2]] for s in life.spans], dtype=np.int64)
    dur = np.maximum(t1 - t0, 0.0)
    n = rng.poisson(dur / gap)
    which = np.repeat(np.arange(len(life.spans)), n)
    times = t0[which] + rng.random(which.size) * dur[which]
    at = where[which]
    move_t = np.array([m[0] for m in life.moves], dtype=np.float64)
    move_p = np.array([index[m[1]] for m in life.moves], dtype=np.int64)
    out: dict[str, FloatArray] = {}
    for i, place in enumerate(places):
        both = np.concatenate([times[at == i], move_t[move_p == i]])
        both.sort()
        out[place] = both
    return out


def _pir_reports(
    moves: list[float], cooldown: float, report: float
) -> tuple[list[float], list[float]]:
    """A PIR: ``on`` at the first movement, ``on`` again at most every ``report`` s while
    movement goes on, ``off`` once ``cooldown`` s pass without movement."""
    times: list[float] = []
    values: list[float] = []
    on = False
    last_move = last_report = -math.inf
    for m in moves:
        if on and m - last_move > cooldown:
            times.append(last_move + cooldown)
            values.append(0.0)
            on = False
        if not on:
            times.append(m)
            values.append(1.0)
            on = True
            last_report = m
        elif m - last_report >= report:
            times.append(m)
            values.append(1.0)
            last_report = m
        last_move = m
    if on:
        times.append(last_move + cooldown)
        values.append(0.0)
    return times, values


def _standard_offset(tz: ZoneInfo, t: float) -> float:
    local = datetime.fromtimestamp(t, tz)
    off, dst = local.utcoffset(), local.dst()
    return (off - dst).total_seconds() if off is not None and dst is not None else 0.0


class _Climate:
    """A small thermal model of the house on a 5-minute grid.

    Outdoor: a seasonal curve (mild winters, ~17 °C summers), weather that changes from
    day to day, a daily swing by solar time. Indoor: heat loss to outdoors, sunshine,
    a thermostat programmed by the wall clock (20.5 °C from 06:45, 16.5 °C from 22:30)
    that heats at about 2 °C an hour, windows opened on hot days. The bathroom gets
    steamy and a little warmer during a shower.
    """

    STEP = 300.0

    def __init__(self, life: _Life, t_lo: float, t_hi: float, rng: np.random.Generator) -> None:
        tz = life.tz
        warm_up = 2 * DAY_S
        self.grid = np.arange(t_lo - warm_up, t_hi + 2 * self.STEP, self.STEP)
        grid = self.grid
        doy = (grid / DAY_S) % 365.2425
        season = np.cos(2 * np.pi * (doy - 20.0) / 365.2425)  # 1 in January
        summer = 0.5 - 0.5 * season
        n_days = int((grid[-1] - grid[0]) // DAY_S) + 2
        weather = np.zeros(n_days)
        for j in range(1, n_days):
            weather[j] = 0.7 * weather[j - 1] + float(rng.normal(0.0, 2.2))
        self.weather = np.interp(grid, grid[0] + DAY_S * np.arange(n_days), weather)
        hour = ((grid + _standard_offset(tz, t_lo)) % DAY_S) / _HOUR
        outdoor = 10.0 - 7.5 * season + self.weather
        outdoor += (3.0 + 2.0 * summer) * np.cos(2 * np.pi * (hour - 15.0) / 24.0)
        sun = np.clip(np.cos(2 * np.pi * (hour - 13.0) / 24.0), 0.0, None) ** 2
        sun *= 0.25 + 0.45 * summer
        switch_t: list[float] = []
        switch_v: list[float] = []
        day = datetime.fromtimestamp(grid[0], tz).date()
        while life.wall(day, 0.0) < grid[-1]:
            switch_t += [life.wall(day, 6.75), life.wall(day, 22.5)]
            switch_v += [20.5, 16.5]
            day += timedelta(days=1)
        k = np.searchsorted(np.array(switch_t), grid, side="right") - 1
        setpoint = np.where(k >= 0, np.array(switch_v)[np.maximum(k, 0)], 16.5)
        self.indoor = self._run(outdoor.tolist(), sun.tolist(), setpoint.tolist())
        self.summer = summer
        starts = sorted(life.showers)
        self.shower_start = np.array([s[0] for s in starts], dtype=np.float64)
        self.shower_end = np.array([s[1] for s in starts], dtype=np.float64)

    def _run(self, outdoor: list[float], sun: list[float], setpoint: list[float]) -> FloatArray:
        dt_h = self.STEP / _HOUR
        temp, heating = 19.0, False
        out = np.empty(len(outdoor))
        for i, (t_out, gain, target) in enumerate(zip(outdoor, sun, setpoint, strict=True)):
            if heating and temp > target + 0.25:
                heating = False
            elif not heating and temp < target - 0.25:
                heating = True
            rate = (t_out - temp) / 40.0 + gain + 0.05 + (2.2 if heating else 0.0)
            if temp > 24.0:  # windows open
                rate += (min(t_out, 21.0) - temp) / 6.0
            temp += rate * dt_h
            out[i] = temp
        return out

    def _shower(self, times: FloatArray, tau: float) -> FloatArray:
        """0..1: how steamy the bathroom is after the latest shower."""
        if self.shower_start.size == 0:
            return np.zeros_like(times)
        k = np.searchsorted(self.shower_start, times, side="right") - 1
        ok = k >= 0
        kk = np.maximum(k, 0)
        s, e = self.shower_start[kk], self.shower_end[kk]
        rising = np.clip((times - s) / np.maximum(e - s, 1.0), 0.0, 1.0)
        decay = np.exp(-np.maximum(times - e, 0.0) / tau)
        return np.where(ok, np.where(times <= e, rising, decay), 0.0)

    def read(
        self, device: _Device, kind: EventKind, times: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        if kind == EventKind.TEMPERATURE:
            value = np.interp(times, self.grid, self.indoor) + device.offset_c
            if device.place == "bathroom":
                value += 1.5 * self._shower(times, 30 * _MIN)
            value += rng.normal(0.0, 0.04, times.size)
            return np.round(value, 2)
        base = 50.0 + 10.0 * np.interp(times, self.grid, self.summer)
        base += 1.2 * np.interp(times, self.grid, self.weather)
        if device.place == "bathroom":
            base += 32.0 * self._shower(times, 25 * _MIN)
        value = np.clip(base + rng.normal(0.0, 0.4, times.size), 20.0, 97.0)
        return np.round(value, 2)


@dataclass
class _Stream:
    """Rendered events, column by column, before sorting."""

    ms: list[npt.NDArray[np.int64]]
    sensor: list[npt.NDArray[np.int64]]
    kind: list[npt.NDArray[np.int64]]
    value: list[FloatArray]

    def add(self, times: Sequence[float] | FloatArray, sensor: int, kind: int,
            values: Sequence[float] | FloatArray) -> None:  # fmt: skip
        t = np.asarray(times, dtype=np.float64)
        self.ms.append(np.rint(t * 1000.0).astype(np.int64))
        self.sensor.append(np.full(t.size, sensor, dtype=np.int64))
        self.kind.append(np.full(t.size, kind, dtype=np.int64))
        self.value.append(np.asarray(values, dtype=np.float64))


_KINDS: tuple[EventKind, ...] = tuple(EventKind)
_KIND_INDEX = {k: i for i, k in enumerate(_KINDS)}


def _render(
    life: _Life,
    devices: Sequence[_Device],
    rng: np.random.Generator,
    t_lo: float,
    t_hi: float,
) -> list[SensorEvent]:
    """The plan through the sensors of a home: events in [t_lo, t_hi), in time order."""
    move_rng, periodic_rng = rng.spawn(2)
    stream = _Stream([], [], [], [])
    moves = _movements(life, move_rng)
    for i, dev in enumerate(devices):
        if dev.kind == EventKind.MOTION:
            seen = moves[dev.place]
            seen = seen[move_rng.random(seen.size) < dev.detect_p]
            seen = np.sort(seen + move_rng.uniform(0.05, 0.6, seen.size))  # radio latency
            on_off, states = _pir_reports(seen.tolist(), dev.cooldown_s, dev.report_s)
            stream.add(on_off, i, _KIND_INDEX[dev.kind], states)
        elif dev.point:
            mine = [(p[0], p[2]) for p in life.points if p[1] == dev.point]
            stream.add([p[0] for p in mine], i, _KIND_INDEX[dev.kind], [p[1] for p in mine])
    climate = _Climate(life, t_lo, t_hi, periodic_rng)
    for i, dev in enumerate(devices):
        for measure in dev.measures:
            n = int((t_hi - t_lo) // dev.period_s) + 1
            phase = float(periodic_rng.uniform(0.0, dev.period_s))
            times = np.asarray(t_lo + phase + dev.period_s * np.arange(n), dtype=np.float64)
            times += np.clip(periodic_rng.normal(0.0, 1.5, n), -5.0, 5.0)
            readings = climate.read(dev, measure, times, periodic_rng)
            stream.add(times, i, _KIND_INDEX[measure], readings)
        # every device runs on a battery and reports its level once a day
        n = int((t_hi - t_lo) // DAY_S) + 1
        first = t_lo + float(periodic_rng.uniform(0.0, DAY_S))
        daily = np.asarray(first + DAY_S * np.arange(n), dtype=np.float64)
        daily += np.clip(periodic_rng.normal(0.0, 90.0, n), -300.0, 300.0)
        full = float(periodic_rng.uniform(55.0, 100.0))
        level = full - float(periodic_rng.uniform(0.02, 0.12)) * np.arange(n)
        stream.add(daily, i, _KIND_INDEX[EventKind.BATTERY], np.maximum(np.floor(level), 1.0))

    ms = np.concatenate(stream.ms)
    keep = (ms >= round(t_lo * 1000.0)) & (ms < round(t_hi * 1000.0))
    order = np.argsort(ms[keep], kind="stable")
    ms = ms[keep][order]
    sensor = np.concatenate(stream.sensor)[keep][order]
    kinds = np.concatenate(stream.kind)[keep][order]
    values = np.concatenate(stream.value)[keep][order]
    ids = [d.sid for d in devices]
    walls = (ms / 1000.0).tolist()
    with _collector_paused():
        return [
            SensorEvent(ids[s], _KINDS[k], v, w, w)
            for s, k, v, w in zip(
                sensor.tolist(), kinds.tolist(), values.tolist(), walls, strict=True
            )
        ]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cycle collector while a million events are built: they hold no cycles,
    and its repeated passes over the growing list would double the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ---- the whole trace -------------------------------------------------------------------
@dataclass(frozen=True)
class Simulated:
    """A simulated trace: its header, its events in time order and its labels."""

    header: TraceHeader
    events: list[SensorEvent]
    labels: list[Label]


def _local(t: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(round(t, 3), tz)


def simulate(
    days: int,
    seed: int,
    start: date,
    tz: ZoneInfo,
    profile: Profile = "typical",
    incidents: Sequence[Incident] = (),
) -> Simulated:
    """``days`` days of one person's home from local midnight of ``start``, with incidents.

    The trace ends at the end of the last day, or 24 h after the last incident if that is
    later. Same arguments, same trace. Labels: one per activity (sleeping, toileting,
    showering, grooming, breakfast, lunch, dinner, snack, spare_time_tv, leaving,
    visitors) and one per incident, with the alerts it should raise in ``expect``.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    devices = _devices(profile)
    checked = _check_incidents(incidents, tz, start, days)
    rng = np.random.default_rng(seed)
    plan_rng, render_rng = rng.spawn(2)

    life = _Life(plan_rng, tz, [i.at.timestamp() for i in checked if i.kind != "no_wakeup"])
    t_lo = life.wall(start, 0.0)
    day_end = life.wall(start + timedelta(days=days), 0.0)
    normal_days = {i.at.date() + timedelta(days=k) for i in checked for k in (-1, 0)}
    _live(life, start, start + timedelta(days=days + 1), normal_days)
    effects = _apply_incidents(life, checked)
    t_hi = max([day_end, *(e.start + DAY_S for e in effects)])

    events = _render(life, devices, render_rng, t_lo, t_hi)
    labels = [
        Label(
            type="activity",
            label=name,
            start=_local(max(a, t_lo), tz),
            end=_local(min(b, t_hi), tz),
            room=_ROOM[place] if place is not None else None,
        )
        for name, a, b, place in life.activities
        if b > t_lo and a < t_hi
    ]
    labels += [
        Label(
            type="incident",
            label=e.incident.kind,
            start=_local(e.start, tz),
            room=e.room,
            expect=list(EXPECTED_ALERTS[e.incident.kind]),
        )
        for e in effects
    ]
    labels.sort(key=lambda lab: (lab.start, lab.type))
    header = TraceHeader(
        tz=tz.key,
        home=default_home(profile),
        start=_local(t_lo, tz),
        end=_local(t_hi, tz),
        source="simulated",
        generator={
            "seed": seed,
            "days": days,
            "profile": profile,
            "incidents": [str(i) for i in checked],
        },
    )
    return Simulated(header, events, labels)
