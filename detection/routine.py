"""The learned routine of one home: what is normal for this person, from their own data.

What it keeps (numpy arrays, a few hundred kilobytes at most):

- **quiet spells**: every stretch without person activity of a minute or more, with where
  the person was when it began (in bed, in the chair, in the bathroom, ...), its local
  time of day and its length. A ring of the most recent ``SPELLS`` spells.
- **limits**: from the spells, a table place x quarter-hour of the longest normal quiet
  spell that began there and then, times a margin plus a pad. Recomputed once a day (and
  on demand), so that the hot path only reads a table cell.
- **activity by time of day**: active quarter-hours, weekdays and weekends apart, with
  exponential forgetting (``half_life_days``).
- **get-up and bedtime** per day, and **bathroom stays**.

Forgetting: each observation has a weight ``0.5 ** (age / half_life)``; limits use only
observations of weight at least ``KEEP_WEIGHT`` (two half-lives), so a routine that
changed is learned again within weeks while one odd day does not erase the past.

Persisted as a versioned ``.npz`` file written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from agent.detectconfig import (
    BathroomConfig,
    InactivityConfig,
    RoutineConfig,
    WakeupConfig,
)

log = logging.getLogger(__name__)

VERSION = 2  # 2: day_sleep, the length of each night
SPELLS = 8192  # ring size: weeks of a busy home's spells of a minute or more
DAYS = 120  # get-up, bedtime and day records kept
BATH = 1024
SLOT_S = 900.0  # a quarter of an hour
SLOTS = 96
MINUTES = 1440
DAY_S = 86400.0
KEEP_WEIGHT = 0.25  # observations older than two half-lives no longer set limits
MIN_SPELL_S = 60.0

F64 = npt.NDArray[np.float64]


class Place(IntEnum):
    """Where the person is, as far as the sensors can tell."""

    IN_BED = 0
    SEATED = 1
    BEDROOM = 2
    BATHROOM = 3
    KITCHEN = 4
    LIVING = 5
    HALLWAY = 6
    DOOR = 7  # last seen at a door to the outside: perhaps out
    OTHER = 8


PLACES = len(Place)

PLACE_WORDS: dict[Place, str] = {
    Place.IN_BED: "in bed",
    Place.SEATED: "in the chair",
    Place.BEDROOM: "in the bedroom",
    Place.BATHROOM: "in the bathroom",
    Place.KITCHEN: "in the kitchen",
    Place.LIVING: "in the living room",
    Place.HALLWAY: "in the hallway",
    Place.DOOR: "at the door",
    Place.OTHER: "in the home",
}


class RoutineFileError(Exception):
    """A routine file that cannot be read: wrong version, damaged, not ours."""


@dataclass
class LocalDay:
    """A cache of one local day's bounds, so time of day is a subtraction, not tz work."""

    start: float = math.inf
    end: float = -math.inf
    ordinal: int = 0
    weekend: bool = False
    uniform: bool = True  # no UTC offset change inside the day


def clock_seconds(start: float, end: float, tz: ZoneInfo) -> float:
    """Seconds between two moments as a wall clock in ``tz`` shows them."""
    a = datetime.fromtimestamp(start, tz=tz).replace(tzinfo=None)
    b = datetime.fromtimestamp(end, tz=tz).replace(tzinfo=None)
    return (b - a).total_seconds()


def on_the_clock(start: float, seconds: float, tz: ZoneInfo) -> float:
    """The moment a wall clock in ``tz`` shows ``seconds`` later than at ``start``."""
    local = datetime.fromtimestamp(start, tz=tz).replace(tzinfo=None) + timedelta(seconds=seconds)
    return local.replace(tzinfo=tz).timestamp()


def _is_weekend(ordinal: int) -> bool:
    return datetime.fromordinal(ordinal).weekday() >= 5


def _tiled(values: npt.NDArray[Any], half: int) -> tuple[npt.NDArray[Any], int]:
    """``values`` (one per minute of the day) repeated around the clock, and the offset of
    a copy far enough from both ends that the ``half`` minutes each side of any minute of
    that copy lie inside."""
    offset = (half // MINUTES + 1) * MINUTES
    reps = -(-(offset + MINUTES + half + 1) // MINUTES)
    return np.tile(values, reps), offset


def _window_sums(
    count: npt.NDArray[np.int64], centres: npt.NDArray[np.int64], half: int
) -> npt.NDArray[np.int64]:
    """For each centre minute, the sum of ``count`` over the minutes ``centre ± half``
    around the clock (a minute counted again when the window is longer than a day).

    Prefix sums: the same integers as adding up every window, without building a
    (centres x window) array for every place and width.
    """
    tiled, offset = _tiled(count, half)
    prefix = np.concatenate(([0], np.cumsum(tiled)))
    first = centres + offset - half
    sums: npt.NDArray[np.int64] = prefix[first + 2 * half + 1] - prefix[first]
    return sums


def _window_max(longest: F64, centres: npt.NDArray[np.int64], half: int) -> F64:
    """For each centre minute, the maximum of ``longest`` over the minutes ``centre ± half``
    around the clock: two overlapping runs of a power-of-two length cover each window."""
    tiled, offset = _tiled(longest, half)
    width = 2 * half + 1
    run = tiled  # run[i]: the maximum of tiled[i : i + span]
    span = 1
    while span * 2 <= width:
        run = np.maximum(run[:-span], run[span:])
        span *= 2
    first = centres + offset - half
    out: F64 = np.maximum(run[first], run[first + width - span])
    return out


class Routine:
    """See the module docstring. Deterministic: the same observations, the same routine."""

    def __init__(
        self,
        tz: ZoneInfo,
        config: RoutineConfig | None = None,
        inactivity: InactivityConfig | None = None,
        wakeup: WakeupConfig | None = None,
        bathroom: BathroomConfig | None = None,
    ) -> None:
        self.tz = tz
        self.cfg = config or RoutineConfig()
        self.icfg = inactivity or InactivityConfig()
        self.wcfg = wakeup or WakeupConfig()
        self.bcfg = bathroom or BathroomConfig()
        self._day = LocalDay()
        # quiet spells, a ring
        self.sp_day = np.zeros(SPELLS, np.int32)  # local day ordinal of the start
        self.sp_tod = np.zeros(SPELLS)  # local seconds since midnight of the start
        self.sp_dur = np.zeros(SPELLS)
        self.sp_place = np.zeros(SPELLS, np.int8)
        self.sp_n = 0
        self.sp_head = 0
        # per day: ordinal, get-up time of day, bedtime time of day (nan: not known)
        self.day_ord = np.zeros(DAYS, np.int32)
        self.day_getup = np.full(DAYS, np.nan)
        self.day_bed = np.full(DAYS, np.nan)
        self.day_sleep = np.full(DAYS, np.nan)  # from going to bed to getting up, seconds
        self.day_n = 0
        # bathroom stays, a ring
        self.bath_day = np.zeros(BATH, np.int32)
        self.bath_dur = np.zeros(BATH)
        self.bath_n = 0
        self.bath_head = 0
        # activity: decayed count of active quarter-hours, [weekday 0 / weekend 1, slot]
        self.activity = np.zeros((2, SLOTS))
        self.activity_days = np.zeros(2)
        self.days_seen = 0
        self.last_day = 0
        self._last_slot_key = -1
        # derived
        self.limits = np.full((PLACES, SLOTS), np.nan)
        # by the quarter-hour now: the longest quiet so far, at this hour, at this place
        self.cover = np.full((PLACES + 1, SLOTS), np.nan)  # last row: any place
        self.cover_count = np.zeros(SLOTS, np.int32)  # quiet spells seen in each quarter
        self.getup_limits: list[float | None] = [None, None]  # weekday, weekend
        self.sleep_limit: float | None = None  # longest usual night plus the margin
        self.bath_limit: float | None = None
        self._dirty = True
        self._refreshed_day = -1

    # ---- local time ------------------------------------------------------------------
    def local_day(self, wall: float) -> LocalDay:
        day = self._day
        if day.start <= wall < day.end:
            return day
        dt = datetime.fromtimestamp(wall, tz=self.tz)
        midnight = dt.replace(hour=0, minute=0, second=0, microsecond=0)
        start = midnight.timestamp()
        nxt = (midnight + timedelta(days=1)).replace(tzinfo=self.tz)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=self.tz).timestamp()
        uniform = end - start == DAY_S
        day = LocalDay(start, end, dt.toordinal(), dt.weekday() >= 5, uniform)
        self._day = day
        return day

    def time_of_day(self, wall: float) -> float:
        """Local seconds since midnight as a clock on the wall shows them."""
        day = self.local_day(wall)
        if day.uniform:
            return wall - day.start
        dt = datetime.fromtimestamp(wall, tz=self.tz)
        return dt.hour * 3600.0 + dt.minute * 60.0 + dt.second + dt.microsecond / 1e6

    # ---- learning ----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.days_seen >= self.cfg.min_days

    def observe_activity(self, wall: float) -> None:
        """A person activity at ``wall``: counts the day and the active quarter-hour."""
        key = int(wall // SLOT_S)  # zone offsets are whole quarter-hours: local slots align
        if key == self._last_slot_key:
            return
        self._last_slot_key = key
        day = self.local_day(wall)
        if day.ordinal != self.last_day:
            self._new_day(day.ordinal)
        slot = min(SLOTS - 1, int(self.time_of_day(wall) // SLOT_S))
        self.activity[int(day.weekend), slot] += 1.0

    def _new_day(self, ordinal: int) -> None:
        if self.last_day:
            gap = max(1, ordinal - self.last_day)
            self.activity *= 0.5 ** (gap / self.cfg.half_life_days)
            self.activity_days *= 0.5 ** (gap / self.cfg.half_life_days)
        weekend = _is_weekend(ordinal)
        self.activity_days[int(weekend)] += 1.0
        self.days_seen += 1
        self.last_day = ordinal
        self._dirty = True

    def add_spell(self, start_wall: float, duration: float, place: Place) -> None:
        if duration < MIN_SPELL_S:
            return
        day = self.local_day(start_wall)
        i = self.sp_head
        self.sp_day[i] = day.ordinal
        self.sp_tod[i] = self.time_of_day(start_wall)
        self.sp_dur[i] = duration
        self.sp_place[i] = place
        self.sp_head = (i + 1) % SPELLS
        self.sp_n = min(self.sp_n + 1, SPELLS)

    def _day_row(self, ordinal: int) -> int:
        n = min(self.day_n, DAYS)
        for i in range(n):
            if self.day_ord[i] == ordinal:
                return i
        i = self.day_n % DAYS
        self.day_ord[i] = ordinal
        self.day_getup[i] = np.nan
        self.day_bed[i] = np.nan
        self.day_sleep[i] = np.nan
        self.day_n += 1
        return i

    def add_getup(self, wall: float, bedtime: float | None = None) -> None:
        """Up at ``wall``, after going to bed at ``bedtime`` (both POSIX seconds)."""
        row = self._day_row(self.local_day(wall).ordinal)
        if np.isnan(self.day_getup[row]):
            self.day_getup[row] = self.time_of_day(wall)
            if bedtime is not None and bedtime < wall:
                # as the clock on the wall shows it: the autumn night is not an hour longer
                self.day_sleep[row] = clock_seconds(bedtime, wall, self.tz)
            self._dirty = True

    def add_bedtime(self, wall: float) -> None:
        """Going to bed at ``wall``; after midnight still counts for the evening before."""
        tod = self.time_of_day(wall)
        ordinal = self.local_day(wall).ordinal
        if tod < 12 * 3600:
            ordinal -= 1
            tod += DAY_S
        self.day_bed[self._day_row(ordinal)] = tod

    def add_bath(self, start_wall: float, duration: float) -> None:
        i = self.bath_head
        self.bath_day[i] = self.local_day(start_wall).ordinal
        self.bath_dur[i] = duration
        self.bath_head = (i + 1) % BATH
        self.bath_n = min(self.bath_n + 1, BATH)
        self._dirty = True

    # ---- what is normal ---------------------------------------------------------------
    def _weights(self, days: npt.NDArray[np.int32]) -> F64:
        age = np.maximum(0, self.last_day - days.astype(np.float64))
        weights: F64 = 0.5 ** (age / self.cfg.half_life_days)
        return weights

    def refresh(self, force: bool = False) -> None:
        """Recompute the limits from the observations: at most once a local day.

        New observations change what is normal a little; a day's delay costs nothing and
        keeps the recomputation (tens of milliseconds on a Pi) off the event path.
        """
        if not self._dirty or (self._refreshed_day == self.last_day and not force):
            return
        self._dirty = False
        self._refreshed_day = self.last_day
        self._refresh_limits()
        self._refresh_getup()
        self._refresh_bath()

    def _refresh_limits(self) -> None:
        icfg = self.icfg
        n = self.sp_n
        self.limits.fill(np.nan)
        if n == 0:
            return
        keep = self._weights(self.sp_day[:n]) >= KEEP_WEIGHT
        tods = self.sp_tod[:n][keep]
        durs = self.sp_dur[:n][keep]
        places = self.sp_place[:n][keep]
        if self.icfg.method != "start" or self.icfg.night_learned:
            self._refresh_cover(tods, durs, places)  # only the rules that use it pay for it
        # Spells binned by the minute of the day they began: the longest and the count per
        # minute, then for each quarter-hour the window of minutes around its centre.
        minutes = (tods // 60.0).astype(np.int64) % MINUTES
        centres = ((np.arange(SLOTS) + 0.5) * (SLOT_S / 60.0)).astype(np.int64)
        for place in Place:
            mask = places == place
            if not mask.any():
                continue
            longest = np.zeros(MINUTES)
            np.maximum.at(longest, minutes[mask], durs[mask])
            count = np.bincount(minutes[mask], minlength=MINUTES)
            todo = np.ones(SLOTS, dtype=bool)
            for widen in (1.0, 2.0, 4.0):
                half = int(icfg.window * widen // 60.0)
                counts = _window_sums(count, centres, half)
                enough = todo & (counts >= icfg.min_samples)
                if enough.any():
                    limit = _window_max(longest, centres[enough], half) * icfg.margin + icfg.pad
                    self.limits[place, enough] = np.clip(limit, icfg.floor, icfg.ceiling)
                    todo &= ~enough
                if not todo.any():
                    break

    def _refresh_cover(self, tods: F64, durs: F64, places: npt.NDArray[np.int8]) -> None:
        """For each place and quarter-hour: the longest quiet so far seen at that time.

        A spell from 20:10 lasting 3 h covers the quarters 20:00 ... 23:00, with the quiet
        lasted by the end of each (at most its own length).
        """
        icfg = self.icfg
        longest = np.zeros((PLACES + 1, SLOTS))
        count = np.zeros((PLACES + 1, SLOTS), np.int32)
        for tod, dur, place in zip(tods, durs, places, strict=True):
            first = int(tod // SLOT_S)
            ends = (np.arange(first, first + int((tod + dur) // SLOT_S) - first + 1) + 1) * SLOT_S
            quiet = np.minimum(ends - tod, dur)
            idx = np.arange(first, first + len(ends)) % SLOTS
            np.maximum.at(longest[place], idx, quiet)
            np.add.at(count[place], idx, 1)
            if place != Place.DOOR:  # out of the house: no measure of quiet at home
                np.maximum.at(longest[PLACES], idx, quiet)
                np.add.at(count[PLACES], idx, 1)
        need = icfg.min_samples
        cover = np.full((PLACES + 1, SLOTS), np.nan)
        for row in range(PLACES + 1):
            ok = count[row] >= need
            cover[row, ok] = longest[row, ok]
        self.cover = cover
        self.cover_count = count[PLACES]

    def cover_limit(self, place: Place, tod: float) -> float | None:
        """The limit of the quiet so far at ``tod`` for a person last seen at ``place``."""
        longest = self.cover_longest(place, tod)
        if longest is None:
            return None
        icfg = self.icfg
        return min(icfg.ceiling, max(icfg.floor, longest * icfg.margin + icfg.pad))

    def night_longest(self, tod: float) -> float | None:
        """The longest quiet so far seen at ``tod``, wherever it began, if seen often enough.

        Each day adds one quiet spell to every quarter-hour (the one going on then), so
        the count is the days seen at that time: fewer than ``night_min_days`` and the
        longest is not yet a fair measure of the person's nights.
        """
        slot = min(SLOTS - 1, int(tod // SLOT_S))
        if self.cover_count[slot] < self.icfg.night_min_days:
            return None
        half = int(self.icfg.night_window // SLOT_S)
        row = self.cover[PLACES].take(range(slot - half, slot + 1), mode="wrap")
        if np.isnan(row).all():
            return None
        return float(np.nanmax(row))

    def cover_longest(self, place: Place, tod: float) -> float | None:
        """The longest quiet so far seen at ``tod`` after the person was last at ``place``."""
        slot = min(SLOTS - 1, int(tod // SLOT_S))
        value = self.cover[place, slot]
        if np.isnan(value):
            value = self.cover[PLACES, slot]
        return None if np.isnan(value) else float(value)

    def _refresh_getup(self) -> None:
        """The latest usual get-up plus the margin, weekdays and weekends apart.

        A group with fewer than three mornings borrows the limit of all mornings.
        """
        n = min(self.day_n, DAYS)
        self.getup_limits = [None, None]
        self.sleep_limit = None
        if n == 0:
            return
        keep = self._weights(self.day_ord[:n]) >= KEEP_WEIGHT
        ups = self.day_getup[:n]
        known = keep & ~np.isnan(ups)
        if known.sum() < max(3, self.cfg.min_days // 2):
            return
        pooled = float(ups[known].max()) + self.wcfg.margin
        sleeps = self.day_sleep[:n][keep & ~np.isnan(self.day_sleep[:n])]
        self.sleep_limit = (
            float(sleeps.max()) + self.wcfg.margin if len(sleeps) >= known.sum() // 2 else None
        )
        weekend = np.array([_is_weekend(int(o)) for o in self.day_ord[:n]], dtype=bool)
        for group in (0, 1):
            mine = known & (weekend == bool(group))
            value = float(ups[mine].max()) + self.wcfg.margin if mine.sum() >= 3 else pooled
            self.getup_limits[group] = value

    def _refresh_bath(self) -> None:
        n = self.bath_n
        self.bath_limit = None
        if n < 3:
            return
        keep = self._weights(self.bath_day[:n]) >= KEEP_WEIGHT
        durs = self.bath_dur[:n][keep]
        if len(durs) >= 3:
            bcfg = self.bcfg
            self.bath_limit = max(bcfg.floor, float(durs.max()) * bcfg.margin + bcfg.pad)

    def limit(self, place: Place, tod: float) -> float | None:
        """The learned limit of a quiet spell beginning ``tod`` at ``place``, if known."""
        if not self.ready:
            return None
        self.refresh()
        value = self.limits[place, min(SLOTS - 1, int(tod // SLOT_S))]
        return None if np.isnan(value) else float(value)

    def limit_any(self, place: Place) -> float | None:
        """The place's learned limit for any time of day: when the hour is not known."""
        if not self.ready:
            return None
        self.refresh()
        row = self.limits[place]
        if np.isnan(row).all():
            return None
        return float(np.nanmax(row))

    def usual_getup(self, ordinal: int) -> float | None:
        """The latest usual get-up (local seconds of day) plus the margin on that day."""
        if not self.ready:
            return None
        self.refresh()
        return self.getup_limits[int(_is_weekend(ordinal))]

    def earliest_bedtime(self) -> float | None:
        """The earliest usual bedtime, local seconds of day (may be after midnight)."""
        if not self.ready:
            return None
        n = min(self.day_n, DAYS)
        keep = self._weights(self.day_ord[:n]) >= KEEP_WEIGHT
        beds = self.day_bed[:n][keep & ~np.isnan(self.day_bed[:n])]
        if len(beds) < 3:
            return None
        return float(beds.min()) % DAY_S

    def usual_sleep(self) -> float | None:
        """The longest usual night, bed to up, plus the margin (seconds), if known."""
        if not self.ready:
            return None
        self.refresh()
        return self.sleep_limit

    def usual_bath(self) -> float | None:
        if not self.ready:
            return None
        self.refresh()
        return self.bath_limit

    def summary(self) -> dict[str, Any]:
        """Plain numbers for ``hub routine show``."""
        self.refresh(force=True)
        n = min(self.day_n, DAYS)
        ups = self.day_getup[:n][~np.isnan(self.day_getup[:n])]
        beds = self.day_bed[:n][~np.isnan(self.day_bed[:n])]
        baths = self.bath_dur[: self.bath_n]
        return {
            "days_seen": self.days_seen,
            "ready": self.ready,
            "spells": self.sp_n,
            "getup_median": float(np.median(ups)) if len(ups) else None,
            "getup_latest": float(ups.max()) if len(ups) else None,
            "getup_limit_weekday": self.getup_limits[0],
            "getup_limit_weekend": self.getup_limits[1],
            "bedtime_median": float(np.median(beds)) if len(beds) else None,
            "bath_median": float(np.median(baths)) if len(baths) else None,
            "bath_limit": self.bath_limit,
        }

    def activity_profile(self, weekend: bool) -> F64:
        """Share of days on which each quarter-hour was active (0..1)."""
        days = self.activity_days[int(weekend)]
        if days <= 0:
            return np.zeros(SLOTS)
        profile: F64 = np.clip(self.activity[int(weekend)] / days, 0.0, 1.0)
        return profile

    # ---- keeping it ------------------------------------------------------------------
    _ARRAYS = (
        "sp_day",
        "sp_tod",
        "sp_dur",
        "sp_place",
        "day_ord",
        "day_getup",
        "day_bed",
        "day_sleep",
        "bath_day",
        "bath_dur",
        "activity",
        "activity_days",
    )
    _SCALARS = ("sp_n", "sp_head", "day_n", "bath_n", "bath_head", "days_seen", "last_day")

    def _items(self) -> Iterator[tuple[str, npt.NDArray[Any]]]:
        yield "version", np.array(VERSION)
        yield "zone", np.array(self.tz.key)
        for name in self._ARRAYS:
            yield name, getattr(self, name)
        for name in self._SCALARS:
            yield name, np.array(getattr(self, name))

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".routine-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                # numpy types **kwds as if they were its allow_pickle flag
                np.savez_compressed(fh, **dict(self._items()))  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dirfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)

    def load(self, path: Path) -> None:
        """Read a saved routine into this one; ``RoutineFileError`` says what is wrong.

        Nothing of this routine changes unless the whole file is good: the right version
        and time zone, every array of the right shape and type, every counter in range.
        """
        try:
            with path.open("rb") as fh:
                if not zipfile.is_zipfile(fh):
                    raise RoutineFileError(f"{path}: not a readable routine file (no .npz archive)")
                fh.seek(0)
                with np.load(fh, allow_pickle=False) as data:
                    version = int(data["version"])
                    if version != VERSION:
                        raise RoutineFileError(f"{path}: routine version {version}, not {VERSION}")
                    zone = str(data["zone"])
                    if zone != self.tz.key:
                        raise RoutineFileError(
                            f"{path}: learned in time zone {zone}, the hub is in {self.tz.key}"
                        )
                    arrays = {name: np.asarray(data[name]) for name in self._ARRAYS}
                    scalars = {name: data[name] for name in self._SCALARS}
        except RoutineFileError:
            raise
        except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile, EOFError) as err:
            raise RoutineFileError(f"{path}: not a readable routine file ({err})") from err
        converted: dict[str, npt.NDArray[Any]] = {}
        for name, arr in arrays.items():
            mine = getattr(self, name)
            if arr.shape != mine.shape:
                raise RoutineFileError(f"{path}: {name} has shape {arr.shape}, not {mine.shape}")
            if not np.can_cast(arr.dtype, mine.dtype, casting="same_kind"):
                raise RoutineFileError(f"{path}: {name} holds {arr.dtype}, not {mine.dtype}")
            converted[name] = arr.astype(mine.dtype)
        counters: dict[str, int] = {}
        for name, value in scalars.items():
            if value.shape != () or value.dtype.kind not in "iu":
                raise RoutineFileError(f"{path}: {name} is not a whole number")
            counters[name] = int(value)
        bounds = {
            "sp_n": SPELLS,
            "sp_head": SPELLS - 1,
            "bath_n": BATH,
            "bath_head": BATH - 1,
        }
        for name, number in counters.items():
            if number < 0 or number > bounds.get(name, 2**40):
                raise RoutineFileError(f"{path}: {name} = {number} is out of range")
        for name, arr in converted.items():
            setattr(self, name, arr)
        for name, count in counters.items():
            setattr(self, name, count)
        self._dirty = True
        self._refreshed_day = -1
