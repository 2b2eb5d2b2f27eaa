"""Is the person all right? Inactivity, not up, bathroom overstay, the door at night, away.

One detector watches the person, because these rules share one question, where the
person is, and must not raise five alerts about one situation:

- **where**: the role of the last sensor that saw the person gives a place (in bed, in
  the chair, bathroom, kitchen, ..., at the door). A bed or chair mat holds its place
  while the same room's motion sensor sees someone turn over.
- **inactivity** (``inactivity``, urgent): quiet for longer than is normal for this
  person when a quiet spell begins at this place and this time of day, learned from
  their own spells (see ``detection.routine``); until ``min_days`` of data exist, the
  safe fixed thresholds by role, day and night. A long stay in the chair is not silence
  in the hallway.
- **not up** (``not_up``, urgent): no one seen out of the bedroom by the latest usual
  get-up time plus a margin (fixed ``not_up_by`` until learned).
- **bathroom overstay** (``bathroom_overstay``, urgent): in the bathroom far longer than
  the longest usual stay, even if a motion sensor there still sees some movement.
- **door at night** (``door_night``, urgent): the front door opened at night and no
  activity inside afterwards.
- **away**: a door, then silence, is the person out: no inactivity alarm while out; home
  again at the first activity inside; an absence longer than ``long_absence`` is
  reported as information (``away_long``). The home set to away or holiday by the
  centre silences all of these.
- **blind**: when the activity sensors are offline or their driver is down, silence
  proves nothing: ``monitoring_lost`` (warning) instead of an emergency, and an urgent
  alert that does go out says how many sensors are down.

Every urgent alert resolves itself when the person is seen moving again, and says so.
Durations are measured on the monotonic clock; time of day comes from the wall clock and
is used only while the wall clock is synchronised (otherwise: the place's limit for any
hour, no get-up or night-door rule, and no learning).
"""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta, tzinfo
from typing import NamedTuple

from agent.detectconfig import DetectionConfig
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap, Role
from agent.messages import Mode, Severity
from agent.units import format_duration
from detection.activity import BOTH_EDGES, PERSON_KINDS
from detection.engine import INF, Detector, Engine, OpenAlert
from detection.routine import PLACE_WORDS, SLOT_S, Place, Routine, on_the_clock
from detection.timeofday import first_crossing, in_window, seconds_of_day

QUIET = "inactivity"
NOT_UP = "not_up"
BATH = "bathroom_overstay"
DOOR_NIGHT = "door_night"
AWAY_LONG = "away_long"
BLIND = "monitoring_lost"

_PRIORITY = {NOT_UP: 0, BATH: 1, DOOR_NIGHT: 2, QUIET: 3}

#: alerts about the person, which movement resolves
_PERSON_ALERTS = (QUIET, NOT_UP, BATH, DOOR_NIGHT, BLIND)


_PLACE_OF_ROLE: dict[Role, Place] = {
    Role.BEDROOM: Place.BEDROOM,
    Role.BED: Place.BEDROOM,  # off the bed; on it is IN_BED
    Role.BATHROOM: Place.BATHROOM,
    Role.TOILET: Place.BATHROOM,
    Role.KITCHEN: Place.KITCHEN,
    Role.LIVING: Place.LIVING,
    Role.SEAT: Place.LIVING,  # off the chair; on it is SEATED
    Role.HALLWAY: Place.HALLWAY,
    Role.FRONT_DOOR: Place.DOOR,
    Role.OUTSIDE_DOOR: Place.DOOR,
    Role.WINDOW: Place.OTHER,
    Role.OTHER: Place.OTHER,
}

_SEES_INSIDE = frozenset({EventKind.MOTION, EventKind.PRESENCE})
_BEDTIME_SLACK = 1800.0  # the night may begin this long before the earliest usual bedtime
_BACK_TO_BED = 3600.0  # back in bed within this after getting up: a night visit
_SAME_PASSAGE = 60.0  # door events this close are one passage (open, close)
_NIGHT_FROM = 20 * 3600.0  # a quiet spell beginning between these is a night's sleep
_NIGHT_TO = 4 * 3600.0


class SensorPlace(NamedTuple):
    role: Role
    room: str
    place_on: Place | None  # the place after a rising edge; None: says nothing of where
    place_off: Place | None  # after a falling edge (both-edge kinds only)
    holds: Place | None  # the mat's place this room's motion does not end (bed, chair)


def _sensor(role: Role, room: str) -> SensorPlace:
    if role is Role.WEARABLE:
        return SensorPlace(role, room, None, None, None)
    if role is Role.BED:
        return SensorPlace(role, room, Place.IN_BED, Place.BEDROOM, None)
    if role is Role.SEAT:
        return SensorPlace(role, room, Place.SEATED, Place.LIVING, None)
    place = _PLACE_OF_ROLE[role]
    holds = {Place.BEDROOM: Place.IN_BED, Place.LIVING: Place.SEATED}.get(place)
    return SensorPlace(role, room, place, place, holds)


def sensor_places(home: HomeMap) -> dict[str, SensorPlace]:
    """What each of the home's sensors says of where the person is."""
    return {sid: _sensor(s.role, s.room) for sid, s in home.sensors.items()}


def read_place(sensor: SensorPlace, event: SensorEvent, current: Place | None) -> Place | None:
    """Where ``event`` of ``sensor`` puts the person, last at ``current``.

    None: the event says nothing of where (a pendant's button: the person, but not where;
    a motion sensor clearing). A mat's place holds while the same room's motion sensor
    sees someone turn over in bed or shift in the chair.
    """
    if event.kind in BOTH_EDGES:
        place = sensor.place_on if event.value > 0 else sensor.place_off
    elif event.value > 0 and event.kind is not EventKind.BUTTON:
        place = sensor.place_on
    else:
        return None
    if place is not None and sensor.holds is not None and sensor.holds is current:
        return current
    return place


def _where(place: Place | None, room: str | None) -> str:
    """Where, in words: the installer's room name, and the mat when there is one."""
    if place is Place.IN_BED:
        return f"in bed ({room})" if room else "in bed"
    if place is Place.SEATED:
        return f"in the chair ({room})" if room else "in the chair"
    if room:
        return f"in {room}"
    return PLACE_WORDS[place] if place is not None else "in the home"


def _role_at(place: Place, role: Role) -> Role:
    """The role whose fixed limits apply: off the bed is the bedroom, off the chair the room."""
    if place is Place.IN_BED:
        return Role.BED
    if place is Place.SEATED:
        return Role.SEAT
    if place is Place.HALLWAY and role in (Role.FRONT_DOOR, Role.OUTSIDE_DOOR):
        return Role.HALLWAY  # came home through the door: inside
    if role is Role.BED:
        return Role.BEDROOM
    if role is Role.SEAT:
        return Role.LIVING
    return role


def _utc_offset(wall: float, tz: tzinfo) -> float:
    offset = datetime.fromtimestamp(wall, tz=tz).utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def _tod(seconds: float) -> str:
    seconds %= 86400
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"


class PersonWatch(Detector):
    name = "person"
    kinds = PERSON_KINDS | {EventKind.AVAILABILITY}

    def __init__(self, engine: Engine, routine: Routine | None = None) -> None:
        super().__init__(engine)
        cfg: DetectionConfig = engine.config
        self.cfg = cfg
        self.icfg = cfg.inactivity
        self.routine = routine or Routine(
            self.clock.tz, cfg.routine, cfg.inactivity, cfg.wakeup, cfg.bathroom
        )
        self.sensors = sensor_places(self.home)
        self.activity_sensors = {sid for sid, s in self.sensors.items() if s.place_on is not None}
        self.offline: set[str] = set()
        self.has_bed_mat = any(s.role is Role.BED for s in self.home.sensors.values())
        self.bath_seen_inside = False  # a bathroom sensor that sees the person inside
        # where and when the person was last seen
        self.place: Place | None = None
        self.role: Role | None = None
        self.room: str | None = None
        self.last_wall = -INF
        self.last_mono = -INF
        self.last_synced = False
        # the door: last activity at a door to the outside, and whether that means out
        self.door_mono: float | None = None
        self.door_wall = 0.0
        self.away = False
        self.arrived_mono = -INF  # the moment the person came home through the door
        # the bathroom stay now going on
        self.bath_mono: float | None = None
        self.bath_wall = 0.0
        # get-up: the local day on which the person was last seen up
        self.up_day = 0
        self.up_day_before = 0
        self.up_wall: float | None = None  # a get-up not yet confirmed
        self.night_len = 0.0  # the longest quiet in the bedroom tonight: a night at home
        self.bedtime: float | None = None  # when the person went to bed tonight
        self.left_bed: float | None = None  # out of the bedroom since, tonight
        # timers (monotonic): worked out lazily at the first wakeup of a quiet spell
        self._deadlines: dict[str, float] | None = None
        self._notup_day = -1
        self._notup_mono = INF
        self._limits: dict[str, float] = {}
        self._acked: set[str] = set()
        self._shortest = self._shortest_check()

    # ---- what time is it -------------------------------------------------------------
    def _synced(self) -> bool:
        return self.clock.wall_synced()

    def _shortest_check(self) -> float:
        """The soonest any rule can fire after an activity: the first wakeup of a spell."""
        table = self.icfg.thresholds
        fixed = min(min(p.day, p.night) for p in table.values())
        return min(
            fixed,
            self.icfg.floor,
            self.cfg.bathroom.floor,
            self.cfg.bathroom.limit,
            self.cfg.away.after,
            self.cfg.night_exit.after,
        )

    # ---- events ----------------------------------------------------------------------
    def on_event(self, event: SensorEvent) -> None:
        kind = event.kind
        sensor = self.sensors[event.sensor]
        if kind is EventKind.AVAILABILITY:
            if event.value > 0:
                self.offline.discard(event.sensor)
            elif event.sensor in self.activity_sensors:
                self.offline.add(event.sensor)
            return
        if kind not in BOTH_EDGES and event.value <= 0:
            return  # a motion sensor clearing says nothing about the person
        self.offline.discard(event.sensor)
        place = read_place(sensor, event, self.place)
        if place is Place.BATHROOM and kind in _SEES_INSIDE:
            self.bath_seen_inside = True
        self._activity(event, sensor, place)

    def _activity(self, event: SensorEvent, sensor: SensorPlace, place: Place | None) -> None:
        wall, mono = event.wall, event.mono
        engine = self.engine
        if engine.open:
            self._resolve_on_movement(wall, place or self.place, sensor.room)
        synced = self._synced()
        routine = self.routine
        quiet = mono - self.last_mono
        if synced and self.last_synced and quiet >= 60.0 and self.place is not None:
            spell_place = Place.DOOR if self.away else self.place
            routine.add_spell(self.last_wall, quiet, spell_place)
            if self.place in (Place.IN_BED, Place.BEDROOM) and quiet > self.night_len:
                tod = routine.time_of_day(self.last_wall)
                if tod >= _NIGHT_FROM or tod < _NIGHT_TO:
                    self.night_len = quiet
        if synced:
            routine.observe_activity(wall)
        if place is not None:
            if place is Place.DOOR and (self.away or mono - self.arrived_mono < _SAME_PASSAGE):
                # the door after an absence is the person coming home: inside, not out
                if self.away:
                    self.arrived_mono = mono
                place = Place.HALLWAY
            if place is Place.DOOR:
                self.door_mono = mono
                self.door_wall = wall
            else:
                if self.away:
                    self.away = False
                self.door_mono = None
            if place is Place.BATHROOM:
                if self.bath_mono is None:
                    self.bath_mono, self.bath_wall = mono, wall
            elif self.bath_mono is not None:
                if synced:
                    routine.add_bath(self.bath_wall, mono - self.bath_mono)
                self.bath_mono = None
            if synced:
                self._getting_up(place, wall)
                self._going_to_bed(place, wall)
            self.place = place
            self.role = _role_at(place, sensor.role)
            self.room = sensor.room
        self.last_wall = wall
        self.last_mono = mono
        self.last_synced = synced
        self._acked.clear()
        self._deadlines = None
        wake = mono + self._shortest
        if self.bath_mono is not None and self.cfg.bathroom.enabled:
            # movement in the bathroom must not push the overstay back
            bath_due = self.bath_mono + (self.routine.usual_bath() or self.cfg.bathroom.limit)
            wake = min(wake, bath_due)
        if self._notup_mono < wake and self.up_day != self._notup_day:
            wake = self._notup_mono
        self.wake = wake

    def _getting_up(self, place: Place, wall: float) -> None:
        """Up is out of the bedroom after ``earliest``, and not back in bed within the hour.

        A toilet visit at 05:00 followed by more sleep is a night visit: going back to
        bed within ``_BACK_TO_BED`` undoes the get-up. A get-up teaches the routine once it
        has held for that long, and only after a night at home.
        """
        routine = self.routine
        in_bedroom = place in (Place.IN_BED, Place.BEDROOM)
        if self.up_wall is not None:
            if wall - self.up_wall >= _BACK_TO_BED:
                if self.night_len > 0 and self.bedtime is not None:
                    # only a morning after a night at home teaches
                    routine.add_getup(self.up_wall, self.bedtime)
                    routine.add_bedtime(self.bedtime)
                self.night_len = 0.0
                self.bedtime = None
                self.left_bed = None
                self.up_wall = None
            elif in_bedroom:
                self.up_day = self.up_day_before  # back to bed: it was a night visit
                self.up_wall = None
                return
        if in_bedroom:
            return
        day = routine.local_day(wall)
        if day.ordinal != self.up_day and routine.time_of_day(wall) >= self._earliest():
            self.up_day_before = self.up_day
            self.up_day = day.ordinal
            self.up_wall = wall

    def _going_to_bed(self, place: Place, wall: float) -> None:
        """Bedtime: the start of the night's stay in the bedroom.

        Leaving it for less than ``_BACK_TO_BED`` (the toilet) keeps the night going; a
        longer time up (back to the living room) makes the next return the bedtime.
        """
        if place in (Place.IN_BED, Place.BEDROOM):
            if self.left_bed is not None and wall - self.left_bed > _BACK_TO_BED:
                self.bedtime = None
            self.left_bed = None
            if self.bedtime is None:
                tod = self.routine.time_of_day(wall)
                if tod >= _NIGHT_FROM or tod < _NIGHT_TO:
                    self.bedtime = wall
        elif self.bedtime is not None and self.left_bed is None:
            self.left_bed = wall

    def _earliest(self) -> float:
        return seconds_of_day(self.cfg.wakeup.earliest)

    def _resolve_on_movement(self, wall: float, place: Place | None, room: str) -> None:
        where = _where(place, room)
        for key in _PERSON_ALERTS:
            if self.engine.is_open(self, key):
                quiet = wall - self.last_wall
                self.engine.resolve(
                    self,
                    key,
                    f"Seen moving again {where} after {format_duration(quiet)} without activity.",
                    {"quiet_min": round(quiet / 60)},
                )
        if self.engine.is_open(self, AWAY_LONG) and place is not Place.DOOR:
            away = wall - self.door_wall
            self.engine.resolve(
                self,
                AWAY_LONG,
                f"Home again after {format_duration(away)} away.",
                {"away_h": round(away / 3600, 1)},
            )

    # ---- mode and drivers --------------------------------------------------------------
    def on_mode(self, mode: Mode) -> None:
        if mode is not Mode.NORMAL:
            for key in (*_PERSON_ALERTS, AWAY_LONG):
                if self.engine.is_open(self, key):
                    self.engine.resolve(self, key, f"The home was set to {mode.value}.")
            self.wake = INF
            return
        # back to normal: the quiet starts now, not when the person left
        self._quiet_from_now()

    def on_start(self, now: float) -> None:
        """The hub started (after a power cut, perhaps during an emergency): until an
        event says otherwise, the quiet runs from now, by the fixed limits for an unknown
        place, and the get-up rule holds for today."""
        if self.engine.mode is Mode.NORMAL and math.isinf(self.last_mono):
            self._quiet_from_now()

    def _quiet_from_now(self) -> None:
        now = self.clock.monotonic()
        self.last_mono = now
        self.last_wall = self.clock.wall()
        self.last_synced = False
        self.place = None
        self.role = None
        self.room = None
        self.door_mono = None
        self.away = False
        self.bath_mono = None
        self._deadlines = None
        self.wake = now + self._shortest

    # ---- time ------------------------------------------------------------------------
    def _fixed_deadline(self) -> tuple[float, float]:
        """The v1 rule: fixed limits by role, day and night; returns (deadline, limit)."""
        cfg = self.icfg
        table = cfg.thresholds
        role = self.role
        pair = table.get(role.value, table["default"]) if role is not None else table["default"]
        if not self._synced():
            limit = max(pair.day, pair.night)
            return self.last_mono + limit, limit
        tz = self.clock.tz

        def at(t: float) -> float:
            local = datetime.fromtimestamp(t, tz=tz).time()
            night = in_window(local, cfg.night_start, cfg.night_end)
            return pair.night if night else pair.day

        start = at(self.last_wall)

        def limit_at(t: float) -> float:
            return max(start, at(t))

        deadline = first_crossing(self.last_wall, limit_at, tz, (cfg.night_start, cfg.night_end))
        return self.last_mono + (deadline - self.last_wall), limit_at(deadline)

    def _quiet_deadline(self) -> tuple[float, float, bool]:
        """(deadline, limit, learned) of the inactivity rule for the spell going on."""
        routine = self.routine
        place = self.place
        if self.icfg.learned and place is not None and routine.ready:
            method = self.icfg.method
            start: tuple[float, float] | None = None
            if self.last_synced:
                limit = routine.limit(place, routine.time_of_day(self.last_wall))
            else:
                limit = routine.limit_any(place)
            if limit is not None:
                start = (self.last_mono + limit, limit)
            now = self._cover_deadline(place) if self.last_synced and method != "start" else None
            if method == "start" and start is not None:
                return start[0], start[1], True
            if method == "now" and now is not None:
                return now[0], now[1], True
            if method == "both" and start is not None and now is not None:
                best = max(start, now)
                return best[0], best[1], True
        deadline, limit = self._fixed_deadline()
        return deadline, limit, False

    def _maybe_asleep(self) -> bool:
        """Could this quiet be the night's sleep? Then the get-up rule speaks first.

        In the bedroom at night, yes. In a home without a bed mat, a bedroom door left
        open hides going to bed: after the earliest usual bedtime any place may be bed.
        """
        if not self.last_synced:
            return False
        tod = self.routine.time_of_day(self.last_wall)
        morning = tod < self._earliest() + 3 * 3600.0
        if self.place in (Place.IN_BED, Place.BEDROOM):
            return tod >= _NIGHT_FROM or morning
        if self.has_bed_mat:
            return False
        bedtime = self.routine.earliest_bedtime()
        if bedtime is None:
            return False
        start = (bedtime - _BEDTIME_SLACK) % 86400
        if start >= 12 * 3600.0:
            return tod >= start or morning
        return start <= tod and morning

    def _cover_deadline(self, place: Place, night: bool = False) -> tuple[float, float] | None:
        """The first moment the quiet exceeds the longest seen at that time of day."""
        routine = self.routine
        routine.refresh()
        a = self.last_wall
        t = a
        icfg = self.icfg
        tz = self.clock.tz
        offset = _utc_offset(a, tz)
        for _ in range(2 * 96):
            tod = routine.time_of_day(t)
            if night:
                longest = routine.night_longest(tod)
                limit = None if longest is None else longest * icfg.night_margin + icfg.night_pad
            else:
                limit = routine.cover_limit(place, tod)
            slot_end = t + (SLOT_S - tod % SLOT_S)
            if limit is not None:
                # Across a daylight-saving change the hour of the night and the time since
                # differ by the change: what happens "at 02:00" may come an hour later or
                # sooner. Allow the hour rather than raise a night's alarm over it.
                limit += abs(_utc_offset(t, tz) - offset)
                when = max(t, a + limit)
                if when < slot_end:
                    return self.last_mono + (when - a), limit
            t = slot_end
        return None

    def _night_deadline(self) -> tuple[float, float] | None:
        """When the night's quiet outlasts every night seen, at that hour of the night.

        Sleep is no alarm, but a night has its own rhythm: someone who always gets up to
        the toilet by four is not asleep as usual at six without having been seen. The
        quiet so far is compared with the longest quiet so far seen at each quarter-hour
        (and the half-hour before it), wherever it began; earlier than the get-up rule when
        the nights are regular. Off unless configured: with few nights learned, a person
        who stirs at random gives it false alarms (docs/detection.md has the figures).
        """
        place = self.place
        if not self.icfg.night_learned or place is None or not self.last_synced:
            return None
        if not self.routine.ready:
            return None
        return self._cover_deadline(place, night=True)

    def _notup_deadline(self, now_wall: float, now_mono: float) -> float:
        """Monotonic moment of today's get-up limit, or inf when it does not apply."""
        if not self.cfg.wakeup.enabled or not self._synced():
            return INF
        routine = self.routine
        day = routine.local_day(now_wall)
        if day.ordinal == self.up_day:
            return INF
        usual = routine.usual_getup(day.ordinal)
        if usual is None:
            usual = self._fixed_getup()
        date = datetime.fromordinal(day.ordinal).date()
        base = datetime.combine(date, time(0), tzinfo=self.clock.tz)
        at_wall = (base + timedelta(seconds=usual)).timestamp()
        sleep = routine.usual_sleep()
        if sleep is not None and self.bedtime is not None and self.up_wall is None:
            # a long night is as long as the longest usual one, whenever it began
            at_wall = min(at_wall, on_the_clock(self.bedtime, sleep, self.clock.tz))
        if usual >= 86400 or at_wall <= self.last_wall:
            return INF  # seen (in the bedroom) after today's limit: the question is past
        return now_mono + (at_wall - now_wall)

    def _work_out(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.engine.mode is not Mode.NORMAL or math.isinf(self.last_mono):
            return out
        cfg = self.cfg
        asleep = self._maybe_asleep()
        if self.door_mono is not None:
            if not self.away:
                out["away"] = self.door_mono + cfg.away.after
            out[AWAY_LONG] = self.door_mono + cfg.away.long_absence
            if cfg.night_exit.enabled and self.last_synced:
                tod = datetime.fromtimestamp(self.door_wall, tz=self.clock.tz).time()
                if in_window(tod, cfg.night_exit.start, cfg.night_exit.end):
                    out[DOOR_NIGHT] = self.door_mono + cfg.night_exit.after
        elif self.icfg.enabled:
            deadline, limit, learned = self._quiet_deadline()
            self._limits["night"] = 0.0
            if asleep:
                # a night in bed is sleep: the get-up rule speaks first
                notup = self._notup_deadline(self.clock.wall(), now)
                if not math.isinf(notup) and notup > deadline:
                    limit += notup - deadline
                    deadline = notup
                night = self._night_deadline()
                if night is not None and night[0] < deadline:
                    deadline, limit = night
                    self._limits["night"] = 1.0
            out[QUIET] = deadline
            self._limits[QUIET] = limit
            self._limits["learned"] = 1.0 if learned else 0.0
        # Without a bed mat, a bathroom seen only by its door may have been left for bed
        # unseen: at night its quiet is left to the night and get-up rules.
        unseen_bed = asleep and not self.has_bed_mat and not self.bath_seen_inside
        if (
            self.bath_mono is not None
            and self.place is Place.BATHROOM
            and cfg.bathroom.enabled
            and not unseen_bed
        ):
            limit = self.routine.usual_bath() or cfg.bathroom.limit
            self._limits[BATH] = limit
            out[BATH] = self.bath_mono + limit
        notup = self._notup_deadline(self.clock.wall(), now)
        if not self.away and self.door_mono is None:
            out[NOT_UP] = notup
        self._notup_day = self.routine.local_day(self.clock.wall()).ordinal
        self._notup_mono = notup
        return out

    def on_wakeup(self, now: float) -> None:
        if self._deadlines is None:
            self._deadlines = self._work_out(now)
        deadlines = self._deadlines
        # at the same moment the more specific rule speaks: not up before inactivity
        for key, due in sorted(deadlines.items(), key=lambda kv: (kv[1], _PRIORITY.get(kv[0], 9))):
            if due > now:
                break
            del deadlines[key]
            self._fire(key, now)
        if self._notup_day != self.routine.local_day(self.clock.wall()).ordinal:
            # a new day: tomorrow's get-up limit applies; work the timers out again
            self._deadlines = self._work_out(now)
            deadlines = {k: v for k, v in self._deadlines.items() if v > now}
            self._deadlines = deadlines
        nxt = min(deadlines.values(), default=INF)
        # wake again at the next local midnight at the latest, for the next day's get-up
        self.wake = min(nxt, now + self._to_midnight())

    def _to_midnight(self) -> float:
        wall = self.clock.wall()
        day = self.routine.local_day(wall)
        return max(60.0, day.end - wall + 1.0)

    def _person_alert_open(self) -> bool:
        return any(self.engine.is_open(self, key) for key in _PERSON_ALERTS)

    def _blind(self) -> tuple[int, int, bool]:
        """(sensors down, activity sensors, blind): can silence be read at all?"""
        total = len(self.activity_sensors)
        down = len(self.offline)
        drivers_down = self.engine.drivers_down
        blind = total > 0 and down >= total
        if drivers_down and max(drivers_down.values()) >= self.last_mono - 60:
            blind = True  # a driver went down during the quiet: silence proves nothing
        return down, total, blind

    def _fire(self, key: str, now: float) -> None:
        cfg = self.cfg
        if key == "away":
            self.away = True
            return
        if key in self._acked:
            return
        quiet = now - self.last_mono
        if key == AWAY_LONG:
            if not self.engine.is_open(self, AWAY_LONG):
                self.raise_alert(
                    AWAY_LONG,
                    AWAY_LONG,
                    Severity.INFO,
                    self.door_wall,
                    None,
                    f"Out of the house for {format_duration(quiet)}, since the door at "
                    f"{_tod(self.routine.time_of_day(self.door_wall))}.",
                    {"away_h": round(quiet / 3600, 1)},
                )
            return
        if self._person_alert_open():
            return  # one situation, one alert
        down, total, blind = self._blind()
        if blind:
            self.raise_alert(
                BLIND,
                BLIND,
                Severity.WARNING,
                self.last_wall,
                None,
                f"No activity for {format_duration(quiet)}, but {down} of {total} activity "
                f"sensors are offline or a driver is down: the hub cannot tell whether all "
                f"is well.",
                {"quiet_min": round(quiet / 60), "sensors_down": down},
            )
            return
        where = _where(self.place, self.room)
        note = f" {down} of {total} activity sensors are offline." if down else ""
        evidence: dict[str, int | float] = {"quiet_min": round(quiet / 60)}
        if down:
            evidence["sensors_down"] = down
        if key == QUIET:
            limit = self._limits.get(QUIET, quiet)
            evidence["limit_min"] = round(limit / 60)
            if self._limits.get("night"):
                how = "at this hour of the night the longest usual quiet with margin is"
                summary = (
                    f"No activity for {format_duration(quiet)}, last seen {where}; {how} "
                    f"{format_duration(limit)}.{note}"
                )
            else:
                how = "usual longest here at this time" if self._limits.get("learned") else "limit"
                summary = (
                    f"No activity for {format_duration(quiet)}, last seen {where}; the {how} "
                    f"is {format_duration(limit)}.{note}"
                )
            room = self.room
            severity = Severity.URGENT
        elif key == NOT_UP:
            usual = self.routine.usual_getup(self.routine.local_day(self.clock.wall()).ordinal)
            by = usual if usual is not None else self._fixed_getup()
            evidence["by_min"] = round(by / 60)
            summary = (
                f"Not up yet: no one seen out of the bedroom by {_tod(by)}"
                f"{' (usual latest plus margin)' if usual is not None else ''}; last activity "
                f"{format_duration(quiet)} ago, {where}.{note}"
            )
            room = self.room
            severity = Severity.URGENT
        elif key == BATH:
            stay = now - (self.bath_mono if self.bath_mono is not None else now)
            limit = self._limits.get(BATH, stay)
            evidence = {"stay_min": round(stay / 60), "limit_min": round(limit / 60)}
            summary = (
                f"In the bathroom for {format_duration(stay)}; the longest usual stay with "
                f"margin is {format_duration(limit)}.{note}"
            )
            room = self.room
            severity = Severity.URGENT
        else:  # DOOR_NIGHT
            evidence["door_min"] = round(quiet / 60)
            summary = (
                f"The front door opened at {_tod(self.routine.time_of_day(self.door_wall))} "
                f"at night and there has been no activity inside for "
                f"{format_duration(quiet)}."
            )
            room = self.room
            severity = cfg.night_exit.severity
        since = self.bath_wall if key == BATH else self.last_wall
        self.raise_alert(key, key, severity, since, room, summary, evidence)

    def _fixed_getup(self) -> float:
        return seconds_of_day(self.cfg.wakeup.not_up_by)

    def on_acknowledged(self, alert: OpenAlert) -> None:
        if alert.key in _PERSON_ALERTS:
            # the centre knows about this quiet: no other name for it until the next activity
            self._acked.update(_PERSON_ALERTS)
        else:
            self._acked.add(alert.key)
        super().on_acknowledged(alert)
