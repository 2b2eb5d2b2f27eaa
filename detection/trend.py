"""Fall-risk trends: the last week against the four weeks before, once a week.

Falls in older people are often preceded by slow changes nobody notices from day to day:
more trips to the toilet at night (nocturia, a urinary infection), restless nights, a
slower walk, less done in a day. Each is weak on its own and varies a lot between people,
so the rule compares the person only with themselves, and only over weeks.

Per local day of the home (the local date of ``event.wall`` in the home's time zone) it
keeps four numbers:

* night-time bathroom visits: entries into the bathroom or toilet during the night window
  (``night_start`` to ``night_end``): a bathroom or toilet event after the previous
  activity came from elsewhere, or after 10 min without any. A night belongs to the day
  it ends on;
* night-time restlessness: activity outside the bed and the bedroom in the night window,
  plus getting out of bed;
* hallway transit time: the median of the seconds between consecutive triggers of two
  different hallway motion sensors (or of a hallway and a bedroom or bathroom sensor,
  where the home has only one hallway sensor), when 1 to 60 s apart; a home without
  such a pair has no transit signal, and the alert says how many signals it compared;
* daily activity: the number of 15-min periods with any activity, as hours. Periods, not
  events: a chatty sensor that reports every 10 s must not weigh more than a quiet one.

Once a week, at ``weekday`` ``at`` local time, when at least ``min_days`` complete days of
data exist, the median of the last 7 complete days is compared with the median of the
28 days before it by a robust z-score, ``(median_now - median_before) / (1.4826 * MAD)``,
with the MAD (median absolute deviation) of the 28 days. Counts often share one value on
most days, which makes the MAD 0: the mean absolute deviation then stands in for it, and
either is kept at no less than a floor per signal and 10 % of the median, so a history
that never varied does not make the smallest change infinite. A signal has risen in the
fall-risk direction when visits, restlessness or transit time went up, or activity went
down, by at least ``z``. Any risen signal raises one ``trend`` alert that names them with
their numbers; the next weekly check updates it while a signal stays risen, and resolves
it when none is any more.

Days without any activity (the person away, the hub off), the first, partial day the hub
sees, days spent partly in away or holiday mode, and days with an hour or more missing
(a driver down, the wall clock unsynchronised or jumping forward) are left out, never
counted as an inactive day. The days live in a ring of the last 42, indexed by local date:
a daylight-saving change does not add or lose a night, and when the wall clock goes back
the earlier days are left as they were (events that fall on them are dropped), unless it
stays behind for two days, when the calendar restarts from the clock's new date.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from agent.detectconfig import TrendConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import Role
from agent.messages import Mode, Severity
from detection.activity import PERSON_KINDS, is_person_activity
from detection.engine import INF, Detector, Engine, OpenAlert
from detection.timeofday import seconds_of_day

log = logging.getLogger(__name__)

_KEY = "weekly"
_KIND = "fall_risk_trend"

RING = 42  # days kept: 7 + 28 compared, and room for the day (and night) under way
RECENT = 7
BEFORE = 28
MIN_RECENT_DAYS = 4  # fewer days of data in the last week: the signal is not compared
MIN_BEFORE_DAYS = 14  # nor with fewer in the 28 days before

SLOT_S = 900.0  # activity periods of 15 min, counted in real time from local midnight
SLOTS = 100  # a 25-hour day (autumn daylight-saving change) has 100
QUIET_S = 600.0  # a bathroom event after this long without any activity is a new visit
TRANSIT_MAX_S = 60.0
TRANSIT_MIN_S = 1.0  # two sensors that see one movement fire within a second: not a walk
TRANSIT_BIN_S = 0.25
TRANSIT_BINS = int(TRANSIT_MAX_S / TRANSIT_BIN_S)
MIN_TRANSITS = 3  # a day with fewer transits has no transit time

JUMP_S = 60.0  # a change of wall minus monotonic time this large is a clock jump
GAP_S = 3600.0  # an hour or more missing makes a day partial
BEHIND_S = 2 * 86400.0  # the wall clock behind the newest day this long: a new calendar

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EPOCH = date(1970, 1, 1).toordinal()
_DAY_S = 86400.0

_BATH = frozenset({Role.BATHROOM, Role.TOILET})
_IN_BED = frozenset({Role.BED, Role.BEDROOM})
_TRIGGERS = frozenset({EventKind.MOTION, EventKind.PRESENCE})
_MOTION_LIKE = frozenset({EventKind.MOTION, EventKind.PRESENCE, None})

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Signal:
    name: str
    up: bool  # a rise is the fall-risk direction (else a fall)
    floor: float  # the least MAD, in the signal's unit
    key: str  # evidence: key_now, key_before and z_key
    z_key: str
    what: str
    unit: str  # after the number this week
    unit_before: str  # after the number before

    def phrase(self, now: float, before: float) -> str:
        """``"walking the hallway 12.1 s this week against 6.1 s before"``."""
        return f"{self.short(now)} this week against {before:.1f}{self.unit_before} before"

    def short(self, now: float) -> str:
        return f"{self.what} {now:.1f}{self.unit}"


SIGNALS: tuple[_Signal, ...] = (
    _Signal("night_visits", True, 0.4, "night_visits", "night_visits_z",
            "night-time bathroom visits", " a night", ""),
    _Signal("restless", True, 1.0, "restless", "restless_z",
            "night-time movements out of bed", " a night", ""),
    _Signal("transit", True, 0.5, "transit_s", "transit_z", "walking the hallway", " s", " s"),
    _Signal("activity", False, 0.25, "active_h", "activity_z", "active", " h a day", " h"),
)  # fmt: skip
_REL_FLOOR = 0.1  # the MAD is also never taken below this share of the median before
_MAX_EVIDENCE = 8
_MAX_SUMMARY = 300


class DayCounts(NamedTuple):
    """What the detector holds for one local day (for people and tests)."""

    night_visits: int
    restless: int
    active_slots: int
    transits: int
    transit_s: float | None  # the day's median, None with fewer than MIN_TRANSITS
    excluded: bool


class Compared(NamedTuple):
    """One signal at one weekly check."""

    now: float
    before: float
    z: float
    risen: bool


def _offset_at(wall: float, tz: ZoneInfo) -> float:
    off = datetime.fromtimestamp(wall, tz).utcoffset()
    return 0.0 if off is None else off.total_seconds()


def _midnight(ordinal: int, tz: ZoneInfo) -> float:
    """POSIX seconds of the local midnight that starts day ``ordinal``."""
    return datetime.combine(date.fromordinal(ordinal), time(0), tzinfo=tz).timestamp()


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fit(text: str) -> str:
    return text if len(text) <= _MAX_SUMMARY else text[: _MAX_SUMMARY - 1] + "…"


class FallRiskTrend(Detector):
    name = "trend"
    kinds = PERSON_KINDS

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        cfg: TrendConfig = engine.config.trend
        # plain values, not the section: the object is deep-copied often
        self._weekday = _WEEKDAYS.index(cfg.weekday)
        self._at = cfg.at
        self._min_days = cfg.min_days
        self._z = cfg.z
        self._n0 = seconds_of_day(cfg.night_start)
        self._n1 = seconds_of_day(cfg.night_end)
        self._crosses = self._n0 > self._n1  # the night window crosses midnight

        self._roles: dict[str, Role] = {
            sid: spec.role
            for sid, spec in self.home.sensors.items()
            if spec.role is not Role.WEARABLE
        }
        halls = {
            sid
            for sid, spec in self.home.sensors.items()
            if spec.role is Role.HALLWAY and spec.kind in _MOTION_LIKE
        }
        rooms = {
            sid
            for sid, spec in self.home.sensors.items()
            if spec.role in (Role.BEDROOM, Role.BATHROOM) and spec.kind in _MOTION_LIKE
        }
        self._halls = frozenset(halls)
        if len(halls) >= 2:
            self._transit_set = frozenset(halls)
        elif halls and rooms:
            self._transit_set = frozenset(halls | rooms)
        else:
            self._transit_set = frozenset()
        #: whether the home has a pair of sensors to time a walk through the hallway
        self.transit_available = bool(self._transit_set)

        # the ring of days: slot = local date ordinal % RING; day_of says which day it holds
        self._day_of: IntArray = np.full(RING, -1, dtype=np.int64)
        self._active: BoolArray = np.zeros((RING, SLOTS), dtype=np.bool_)
        self._visits: IntArray = np.zeros(RING, dtype=np.int64)
        self._restless: IntArray = np.zeros(RING, dtype=np.int64)
        self._transits: IntArray = np.zeros((RING, TRANSIT_BINS), dtype=np.int64)
        self._excluded: BoolArray = np.zeros(RING, dtype=np.bool_)
        self._today = -1  # the newest local day an event fell on; -1 before the first

        # where the person was last seen, for visits and transits (monotonic seconds)
        self._prev_role: Role | None = None
        self._prev_mono = -INF
        self._tr_sensor: str | None = None
        self._tr_mono = -INF

        # the wall clock
        self._offset = 0.0  # wall minus monotonic at the last counted event
        self._last_wall = 0.0
        self._last_mono = 0.0
        self._target = -1.0  # wall time of the next weekly check; -1 before any
        self._unsynced_since: float | None = None
        self._behind_since: float | None = None
        self._down: dict[str, float] = {}
        self._away = engine.mode is not Mode.NORMAL

        # the local day under way, cached: [lo, hi) of wall time with one date and offset
        self._seg_lo = INF
        self._seg_hi = -INF
        self._seg_day = -1
        self._seg_start = 0.0  # wall time of that day's local midnight
        self._seg_shift = 0.0  # wall + shift = seconds since midnight by the clock

        #: events dropped because they fell on a day before the newest (clock went back)
        self.dropped = 0
        #: weekly checks done, and the days of data the last one had
        self.checks = 0
        self.last_days = 0
        #: the signals the last check compared
        self.last: dict[str, Compared] = {}
        self._risen: tuple[str, ...] = ()

    # ---- local days --------------------------------------------------------------------
    def _locate(self, wall: float) -> int:
        """The local date ordinal of ``wall``; caches the stretch of it with one offset."""
        if self._seg_lo <= wall < self._seg_hi:
            return self._seg_day
        tz = self.clock.tz
        here = datetime.fromtimestamp(wall, tz)
        day = here.date().toordinal()
        off = _offset_at(wall, tz)
        hi = _midnight(day + 1, tz)
        if hi - 1 > wall and _offset_at(hi - 1, tz) != off:
            # a daylight-saving change before the next midnight: find it to the second
            lo_i, hi_i = math.floor(wall), math.ceil(hi - 1)
            while hi_i - lo_i > 1:
                mid = (lo_i + hi_i) // 2
                if _offset_at(mid, tz) == off:
                    lo_i = mid
                else:
                    hi_i = mid
            hi = float(hi_i)
        self._seg_lo = wall
        self._seg_hi = hi if hi > wall else math.nextafter(wall, INF)
        self._seg_day = day
        self._seg_start = _midnight(day, tz)
        self._seg_shift = off - (day - _EPOCH) * _DAY_S
        return day

    def _claim(self, day: int) -> int:
        """The ring slot of ``day``, emptied if it held an older day; -1 if it holds a newer."""
        s = day % RING
        have = int(self._day_of[s])
        if have == day:
            return s
        if have > day:
            return -1
        self._day_of[s] = day
        self._active[s] = False
        self._visits[s] = 0
        self._restless[s] = 0
        self._transits[s] = 0
        self._excluded[s] = False
        return s

    def _exclude(self, wall_lo: float, wall_hi: float, not_before: int = 0) -> None:
        """Leave out every local day that ``[wall_lo, wall_hi]`` touches (from ``not_before``)."""
        d0, d1 = self._locate(wall_lo), self._locate(wall_hi)
        for day in range(max(d0, d1 - RING + 2, not_before), d1 + 1):
            s = self._claim(day)
            if s >= 0:
                self._excluded[s] = True

    def _accept(self, day: int, mono: float) -> bool:
        """Whether an event on ``day`` may be counted; moves the newest day on."""
        if day >= self._today:
            if self._today < 0:  # the first day is partial
                self._today = day
                self._excluded[self._claim(day)] = True
            self._today = day
            self._behind_since = None
            return True
        if self._behind_since is None:
            self._behind_since = mono
        elif mono - self._behind_since >= BEHIND_S:
            log.warning("trend: the wall clock stayed behind for two days; a new calendar")
            self._day_of[:] = -1
            self._today = day
            self._behind_since = None
            self._excluded[self._claim(day)] = True
            return True
        self.dropped += 1
        return False

    def day(self, when: date) -> DayCounts | None:
        """The counts of local day ``when``; None when the ring does not hold it."""
        d = when.toordinal()
        s = d % RING
        if int(self._day_of[s]) != d:
            return None
        row = self._transits[s]
        n = int(row.sum())
        return DayCounts(
            int(self._visits[s]),
            int(self._restless[s]),
            int(self._active[s].sum()),
            n,
            _hist_median(row) if n >= MIN_TRANSITS else None,
            bool(self._excluded[s]),
        )

    # ---- the clock and the weekly timer ------------------------------------------------
    def _next_check(self, wall: float) -> float:
        """The first weekly moment after ``wall``, by the clock on the wall."""
        tz = self.clock.tz
        today = datetime.fromtimestamp(wall, tz).date()
        for i in range(8):
            day = today + timedelta(days=i)
            if day.weekday() == self._weekday:
                # a time the clocks skip reads as just after the gap; a doubled one, the first
                at = datetime.combine(day, self._at, tzinfo=tz).timestamp()
                if at > wall:
                    return at
        raise AssertionError("unreachable: a weekday comes round within 8 days")

    def _schedule(self, wall: float, mono: float) -> None:
        self._target = self._next_check(wall)
        self.wake = mono + (self._target - wall)

    def _aim(self, wall: float, mono: float) -> None:
        """After the wall clock jumped: the same weekly moment, by the clock as it is now.

        Jumped past it: check at once. A moment more than a week off came from a clock that
        was wrong: work it out again.
        """
        if self._target - wall > 8 * _DAY_S:
            self._schedule(wall, mono)
        else:
            self.wake = mono + max(0.0, self._target - wall)

    def _watch_clock(self, wall: float, mono: float) -> None:
        offset = wall - mono
        if self._target < 0:
            self._schedule(wall, mono)
        elif abs(offset - self._offset) > JUMP_S:
            if offset - self._offset >= GAP_S:
                # forward: the days between where the clock should be and where it is now
                # have hours missing; days before the newest were lived already, leave them
                should = self._last_wall + (mono - self._last_mono)
                self._exclude(should, wall, not_before=self._today)
            self._aim(wall, mono)
        self._offset = offset
        self._last_wall = wall
        self._last_mono = mono

    # ---- events ------------------------------------------------------------------------
    def on_event(self, event: SensorEvent) -> None:
        if not is_person_activity(event):
            return
        role = self._roles.get(event.sensor)
        if role is None:  # a pendant says nothing about where one is
            return
        mono, wall = event.mono, event.wall
        entry = role in _BATH and (
            self._prev_role not in _BATH or mono - self._prev_mono >= QUIET_S
        )
        self._prev_role = role
        self._prev_mono = mono
        gap = self._transit(event.sensor, event.kind, mono) if self._transit_set else 0.0

        if not self.clock.wall_synced():  # no day can be trusted
            if self._unsynced_since is None:
                self._unsynced_since = mono
            return
        if self._unsynced_since is not None:
            lost = mono - self._unsynced_since
            self._unsynced_since = None
            if lost >= GAP_S and self._today >= 0:
                self._exclude(wall - lost, wall)
        self._watch_clock(wall, mono)
        day = self._locate(wall)
        if not self._accept(day, mono):
            return
        s = self._claim(day)
        k = min(max(int((wall - self._seg_start) // SLOT_S), 0), SLOTS - 1)
        self._active[s, k] = True
        if self._away:
            self._excluded[s] = True
        if gap > 0.0:
            self._transits[s, min(int(gap / TRANSIT_BIN_S), TRANSIT_BINS - 1)] += 1
        sod = wall + self._seg_shift
        if self._crosses:
            if sod >= self._n0:
                night = day + 1
            elif sod < self._n1:
                night = day
            else:
                return
        elif self._n0 <= sod < self._n1:
            night = day
        else:
            return
        ns = self._claim(night)
        if ns < 0:
            return
        if entry:
            self._visits[ns] += 1
        if role not in _IN_BED or (
            role is Role.BED and event.kind is EventKind.PRESSURE and event.value <= 0
        ):
            self._restless[ns] += 1

    def _transit(self, sensor: str, kind: EventKind, mono: float) -> float:
        """Seconds since the previous trigger of another transit sensor; 0 for none."""
        if sensor not in self._transit_set or kind not in _TRIGGERS:
            self._tr_sensor = None  # anything elsewhere breaks the walk
            return 0.0
        prev = self._tr_sensor
        self._tr_sensor = sensor
        gap = mono - self._tr_mono
        self._tr_mono = mono
        if (
            prev is None
            or prev == sensor
            or (prev not in self._halls and sensor not in self._halls)
        ):
            return 0.0
        return gap if TRANSIT_MIN_S <= gap < TRANSIT_MAX_S else 0.0

    def on_mode(self, mode: Mode) -> None:
        away = mode is not Mode.NORMAL
        if away == self._away:
            return
        self._away = away
        if self._today >= 0 and self.clock.wall_synced():  # the day of the change is partial
            s = self._claim(self._locate(self.clock.wall()))
            if s >= 0:
                self._excluded[s] = True

    def adopt(self, alert: OpenAlert, since_mono: float) -> bool:
        """After a restart: the alert stays open until a weekly check shows no sign again."""
        self._risen = ()
        return True

    def on_driver(self, name: str, up: bool) -> None:
        mono = self.clock.monotonic()
        if not up:
            self._down.setdefault(name, mono)
            return
        since = self._down.pop(name, None)
        if since is None or mono - since < GAP_S or self._today < 0:
            return
        if self.clock.wall_synced():
            wall = self.clock.wall()
            self._exclude(wall - (mono - since), wall)

    # ---- the weekly check --------------------------------------------------------------
    def on_wakeup(self, now: float) -> None:
        wall = self.clock.wall()
        if wall < self._target - JUMP_S:  # the wall clock went back since: wait for it
            self._aim(wall, now)
            return
        if not self.clock.wall_synced():  # no calendar to compare by; try again in an hour
            self.wake = now + 3600.0
            return
        self._check(wall)
        self._schedule(max(wall, self._target), now + max(0.0, self._target - wall))

    def _series(self, slots: IntArray) -> dict[str, FloatArray]:
        active = self._active[slots].sum(axis=1).astype(np.float64)
        series = {
            "night_visits": self._visits[slots].astype(np.float64),
            "restless": self._restless[slots].astype(np.float64),
            "activity": active / (3600.0 / SLOT_S),
        }
        if self.transit_available:
            series["transit"] = np.array(
                [
                    _hist_median(row) if row.sum() >= MIN_TRANSITS else math.nan
                    for row in self._transits[slots]
                ],
                dtype=np.float64,
            )
        return series

    def _check(self, wall: float) -> None:
        today = self._locate(wall)
        days = np.arange(today - RECENT - BEFORE, today, dtype=np.int64)
        slots = days % RING
        ok = (self._day_of[slots] == days) & ~self._excluded[slots]
        ok &= self._active[slots].any(axis=1)
        self.checks += 1
        self.last_days = int(ok.sum())
        self.last = {}
        if self.last_days < self._min_days:
            log.info("trend: %d days of data, %d needed", self.last_days, self._min_days)
            return
        days_now = int(ok[BEFORE:].sum())
        self.last = self._compare(slots, ok)
        risen = tuple(s.name for s in SIGNALS if s.name in self.last and self.last[s.name].risen)
        evidence = self._evidence(risen, days_now)
        if risen:
            got = [(sig, self.last[sig.name]) for sig in SIGNALS if sig.name in risen]
            text = "; ".join(sig.phrase(c.now, c.before) for sig, c in got)
            summary = _fit(_capitalised(text) + ".")
            if self.engine.is_open(self, _KEY):
                self.engine.update(self, _KEY, summary, evidence)
            else:
                since = _midnight(today - RECENT, self.clock.tz)
                self.raise_alert(_KEY, _KIND, Severity.TREND, since, None, summary, evidence)
            self._risen = risen
            return
        if not self.engine.is_open(self, _KEY):
            self._risen = ()
            return
        if any(name not in self.last for name in self._risen):
            return  # a signal that had risen could not be compared this week: keep it open
        usual = ", ".join(s.short(self.last[s.name].now) for s in SIGNALS if s.name in self.last)
        self.engine.resolve(
            self,
            _KEY,
            _fit(f"No fall-risk sign any more this week: {usual}."),
            evidence,
        )
        self._risen = ()

    def _compare(self, slots: IntArray, ok: BoolArray) -> dict[str, Compared]:
        """Each signal with enough days: the last week's median against the 28 days'."""
        out: dict[str, Compared] = {}
        series = self._series(slots)
        for sig in SIGNALS:
            values = series.get(sig.name)
            if values is None:
                continue
            good = ok & np.isfinite(values)
            before = values[:BEFORE][good[:BEFORE]]
            now = values[BEFORE:][good[BEFORE:]]
            if len(now) < MIN_RECENT_DAYS or len(before) < MIN_BEFORE_DAYS:
                continue
            med_now, med_before, z = robust_z(now, before, sig.floor)
            risen = z >= self._z if sig.up else z <= -self._z
            out[sig.name] = Compared(med_now, med_before, z, risen)
        return out

    def _evidence(self, risen: tuple[str, ...], days_now: int) -> dict[str, int | float]:
        evidence: dict[str, int | float] = {"signals": len(self.last), "days_now": days_now}
        if not risen:
            for sig in SIGNALS:
                got = self.last.get(sig.name)
                if got is not None and len(evidence) < _MAX_EVIDENCE:
                    evidence[f"{sig.key}_now"] = round(got.now, 1)
            return evidence
        room = _MAX_EVIDENCE - len(evidence) - len(risen)
        for sig in SIGNALS:
            if sig.name not in risen:
                continue
            got = self.last[sig.name]
            if room >= 2:
                evidence[f"{sig.key}_now"] = round(got.now, 1)
                evidence[f"{sig.key}_before"] = round(got.before, 1)
                room -= 2
            evidence[sig.z_key] = round(got.z, 1)
        return evidence


def _hist_median(row: IntArray) -> float:
    """The median of the transit times counted in ``row`` (bins of TRANSIT_BIN_S)."""
    cum = np.cumsum(row)
    n = int(cum[-1])
    lo = int(np.searchsorted(cum, (n - 1) // 2 + 1))
    hi = int(np.searchsorted(cum, n // 2 + 1))
    return ((lo + hi) / 2 + 0.5) * TRANSIT_BIN_S


def _median(values: FloatArray) -> float:
    """The median of finite ``values``, as ``np.median`` gives it; ``np.median`` itself
    imports ``numpy.ma``, 1.2 MB a hub would carry from the first weekly trend on."""
    ordered = np.sort(values)
    half = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[half])
    return float((ordered[half - 1] + ordered[half]) / 2)


def robust_z(now: FloatArray, before: FloatArray, floor: float) -> tuple[float, float, float]:
    """(median now, median before, robust z) against the spread of ``before``.

    The spread is 1.4826 times the MAD; where more than half the days share one value
    (counts often do) the MAD is 0 and 1.2533 times the mean absolute deviation stands in
    for it (Iglewicz and Hoaglin's modified z-score). Either is kept at no less than
    1.4826 times ``floor`` and 10 % of the median before.
    """
    med_now = _median(now)
    med_before = _median(before)
    dev = np.abs(before - med_before)
    mad = _median(dev)
    spread = 1.4826 * mad if mad > 0 else 1.2533 * float(np.mean(dev))
    spread = max(spread, 1.4826 * max(floor, _REL_FLOOR * abs(med_before)))
    return med_now, med_before, (med_now - med_before) / spread
