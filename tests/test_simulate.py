"""The simulated home: determinism, realism measured from the output, incidents, inputs."""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from functools import cache
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.events import ACTIVITY_KINDS, MEASUREMENT_KINDS, EventKind, SensorEvent
from agent.homemap import HomeMap, Role
from agent.traces.format import (
    Label,
    iter_events,
    labels_path,
    read_labels,
    write_labels,
    write_trace,
)
from agent.traces.simulate import (
    EXPECTED_ALERTS,
    Incident,
    Profile,
    Simulated,
    default_home,
    parse_incident,
    simulate,
)

TZ = ZoneInfo("Europe/Amsterdam")
START = date(2026, 11, 2)  # a Monday
DAYS = 42
SEED = 11
NAMES = {
    "sleeping", "toileting", "showering", "grooming", "breakfast", "lunch", "dinner",
    "snack", "spare_time_tv", "leaving", "visitors",
}  # fmt: skip
SETTLE_S = 150.0  # a PIR clears at most cooldown + report interval after its last "on"


@cache
def typical() -> Simulated:
    """Six weeks of the typical home, shared by the realism tests (read-only)."""
    return simulate(DAYS, SEED, START, TZ, "typical")


@cache
def with_incident(text: str, profile: Profile = "typical", days: int = 5) -> Simulated:
    return simulate(days, 3, START, TZ, profile, [parse_incident(text, START, TZ)])


def span(label: Label) -> tuple[float, float]:
    """A label's start and end in POSIX seconds."""
    assert label.end is not None, label
    return label.start.timestamp(), label.end.timestamp()


def end_of(sim: Simulated) -> float:
    assert sim.header.end is not None
    return sim.header.end.timestamp()


def local(wall: float) -> datetime:
    return datetime.fromtimestamp(wall, TZ)


def hour_of(wall: float) -> float:
    dt = local(wall)
    return dt.hour + dt.minute / 60 + dt.second / 3600


def of(sim: Simulated, sensor: str, kind: EventKind | None = None) -> list[SensorEvent]:
    return [e for e in sim.events if e.sensor == sensor and (kind is None or e.kind == kind)]


def rising(events: Iterable[SensorEvent]) -> list[SensorEvent]:
    """Events that say the person did something: an activity kind going to a non-zero value."""
    return [e for e in events if e.kind in ACTIVITY_KINDS and e.value > 0]


def room_of(home: HomeMap, sensor: str) -> str:
    spec = home.get(sensor)
    assert spec is not None
    return spec.room


def wake_ups(sim: Simulated) -> dict[date, float]:
    """Per day: the bed mat's last release between 04:30 and 12:00 after which it stays free
    for an hour (getting up for the day, not for the toilet)."""
    bed = of(sim, "bed", EventKind.PRESSURE)
    out: dict[date, float] = {}
    for i, e in enumerate(bed):
        if e.value != 0 or not 4.5 <= hour_of(e.wall) < 12:
            continue
        nxt = bed[i + 1].wall if i + 1 < len(bed) else end_of(sim)
        if nxt - e.wall >= 3600:
            out.setdefault(local(e.wall).date(), e.wall)
    return out


# ---- determinism and shape -------------------------------------------------------------
def test_same_arguments_give_the_same_trace() -> None:
    """Two runs with the same arguments produce identical headers, events and labels."""
    incidents = [parse_incident("fall@d6T15:00", START, TZ)]
    a = simulate(7, 5, START, TZ, "typical", incidents)
    b = simulate(7, 5, START, TZ, "typical", incidents)
    assert a.header == b.header
    assert a.events == b.events
    assert a.labels == b.labels


def test_another_seed_gives_another_life() -> None:
    """A different seed changes the events and the labels."""
    a = simulate(3, 1, START, TZ)
    b = simulate(3, 2, START, TZ)
    assert a.events != b.events
    assert [lab.start for lab in a.labels] != [lab.start for lab in b.labels]


def test_one_seed_is_one_life_in_every_profile() -> None:
    """The profiles differ in what the sensors see, not in what the person does."""
    labels = {p: simulate(7, 4, START, TZ, p).labels for p in ("typical", "sparse", "busy")}
    assert labels["typical"] == labels["sparse"] == labels["busy"]


@pytest.mark.parametrize("profile", ["typical", "sparse", "busy"])
def test_events_are_in_order_inside_the_header_window(profile: Profile) -> None:
    """Events are sorted, lie in [start, end), carry wall == mono and sub-minute times."""
    sim = simulate(7, 2, START, TZ, profile)
    walls = [e.wall for e in sim.events]
    assert walls == sorted(walls)
    assert sim.header.start == datetime(2026, 11, 2, tzinfo=TZ)
    assert sim.header.end == datetime(2026, 11, 9, tzinfo=TZ)
    assert sim.header.start.timestamp() <= walls[0]
    assert walls[-1] < end_of(sim)
    assert all(e.mono == e.wall for e in sim.events)
    seconds = {round(w % 60) for w in walls}
    assert len(seconds) > 50  # not stuck on whole minutes
    assert sim.header.source == "simulated"
    assert sim.header.generator == {"seed": 2, "days": 7, "profile": profile, "incidents": []}


@pytest.mark.parametrize("profile", ["typical", "sparse", "busy"])
def test_every_sensor_is_in_the_home_map_and_heard(profile: Profile) -> None:
    """Each event's sensor is in the map; each sensor reports; each reports its own kind."""
    sim = simulate(7, 2, START, TZ, profile)
    home = sim.header.home
    assert home == default_home(profile)
    kinds: dict[str, set[EventKind]] = defaultdict(set)
    for e in sim.events:
        assert e.sensor in home
        kinds[e.sensor].add(e.kind)
    assert set(kinds) == set(home.sensors)
    for sid, spec in home.sensors.items():
        assert spec.kind in kinds[sid] or spec.kind == EventKind.BUTTON, sid
        assert EventKind.BATTERY in kinds[sid]
        extra = kinds[sid] - {spec.kind, EventKind.BATTERY}
        assert extra <= MEASUREMENT_KINDS, (sid, extra)


def test_profiles_have_the_sensors_they_promise() -> None:
    """sparse: no mats, no flush; busy: two PIRs per room and thermometers every minute."""
    typical_home, sparse, busy = (default_home(p) for p in ("typical", "sparse", "busy"))
    assert {s.kind for s in sparse.sensors.values()}.isdisjoint(
        {EventKind.PRESSURE, EventKind.FLUSH}
    )
    assert len(sparse) < len(typical_home) < len(busy)
    assert typical_home.sensors["living-temp"].report_interval_s == 600
    for room in typical_home.rooms():
        pirs = [s for s in busy.sensors.values() if s.room == room and s.kind == EventKind.MOTION]
        assert len(pirs) >= 2, room
    fast = [s for s in busy.sensors.values() if s.report_interval_s and s.report_interval_s <= 120]
    assert len(fast) >= 2


def test_labels_are_normalised_and_inside_the_trace() -> None:
    """Activity labels use the normalised names, lie in the trace, and include outings."""
    sim = typical()
    lo, hi = sim.header.start, sim.header.end
    assert lo is not None and hi is not None
    seen = set()
    for lab in sim.labels:
        assert lab.type == "activity"
        assert lab.label in NAMES
        assert lab.end is not None and lo <= lab.start <= lab.end <= hi
        seen.add(lab.label)
    assert {"sleeping", "toileting", "breakfast", "lunch", "dinner", "leaving"} <= seen


def test_trace_survives_the_file_format(tmp_path: Path) -> None:
    """Written with write_trace and read back, the events are exactly the same."""
    sim = simulate(3, 9, START, TZ, "busy", [parse_incident("help_button@d2T11:00", START, TZ)])
    path = tmp_path / "home.jsonl"
    assert write_trace(path, sim.header, sim.events) == len(sim.events)
    write_labels(labels_path(path), sim.labels)
    assert list(iter_events(path)) == sim.events
    assert read_labels(labels_path(path)) == sim.labels


# ---- realism ---------------------------------------------------------------------------
def test_wake_up_and_bedtime_by_the_clock_with_later_weekends() -> None:
    """Up around 07:15 on weekdays, later at weekends; in bed around 22:30."""
    sim = typical()
    wakes = wake_ups(sim)
    assert len(wakes) >= DAYS - 4  # an odd day away from home
    hours = {d: hour_of(w) for d, w in wakes.items()}
    plausible = [h for h in hours.values() if 6.0 <= h <= 9.5]
    assert len(plausible) >= 0.9 * len(hours)
    weekday = statistics.median(h for d, h in hours.items() if d.weekday() < 5)
    weekend = statistics.median(h for d, h in hours.items() if d.weekday() >= 5)
    assert 6.75 <= weekday <= 7.75
    assert weekend >= weekday + 0.25
    assert statistics.pstdev(hours.values()) > 0.15  # day-to-day variation
    beds = [e for e in of(sim, "bed", EventKind.PRESSURE) if e.value == 1 and hour_of(e.wall) >= 20]
    first_per_evening = {local(e.wall).date(): hour_of(e.wall) for e in reversed(beds)}
    assert 22.0 <= statistics.median(first_per_evening.values()) <= 23.25


def test_night_toilet_visits_go_bed_bathroom_flush_bed() -> None:
    """Zero to three visits a night; each leaves the bed, uses the bathroom, flushes, returns."""
    sim = typical()
    wakes = sorted(wake_ups(sim).values())
    per_night: list[int] = []
    for prev, wake in pairwise(wakes):
        night = [e for e in sim.events if prev + 12 * 3600 < e.wall < wake]
        bed = [e for e in night if e.sensor == "bed" and e.kind == EventKind.PRESSURE]
        offs = [e for e in bed if e.value == 0]
        visits = 0
        for off in offs:
            back = next((e for e in bed if e.wall > off.wall and e.value == 1), None)
            assert back is not None and back.wall - off.wall < 90 * 60
            between = [e.sensor for e in rising(night) if off.wall < e.wall < back.wall]
            if "toilet-flush" in between:
                assert "bathroom-motion" in between
                assert between.index("bathroom-motion") < between.index("toilet-flush")
                visits += 1
        per_night.append(visits)
    assert len(per_night) >= 20
    assert 0.5 <= statistics.mean(per_night) <= 2.5
    assert min(per_night) == 0 and max(per_night) >= 2
    assert max(per_night) <= 5


def test_outings_are_a_door_then_silence_then_the_door() -> None:
    """Going out: door opens, closes, then nothing from inside until the door opens again."""
    sim = typical()
    outings = [lab for lab in sim.labels if lab.label == "leaving"]
    assert 2 <= len(outings) / (DAYS / 7) <= 7  # several times a week
    door = of(sim, "front-door", EventKind.CONTACT)
    door_times = {round(e.wall, 3): e.value for e in door}
    for lab in outings:
        t0, t1 = span(lab)
        assert door_times.get(round(t0, 3)) == 1 and door_times.get(round(t1, 3)) == 1
        assert 60 * 60 <= t1 - t0 <= 30 * 3600
        inside = [e for e in sim.events if t0 < e.wall < t1 and e.kind not in MEASUREMENT_KINDS]
        closes = [e for e in inside if e.sensor == "front-door"]
        assert len(closes) == 1 and closes[0].value == 0 and closes[0].wall - t0 < 30
        for e in inside:
            assert e.value == 0 and e.wall - t0 < SETTLE_S, e
    lengths = [span(lab)[1] - span(lab)[0] for lab in outings]
    ordinary = [s for s in lengths if s < 5 * 3600]
    assert len(ordinary) > 0.5 * len(lengths) and max(ordinary) <= 4 * 3600


def test_motion_sensors_behave_like_pirs() -> None:
    """On at motion, repeated while it goes on, off 60-150 s after the last on, never twice."""
    sim = typical()
    for sid in sim.header.home.with_role(Role.BEDROOM, Role.BATHROOM, Role.KITCHEN, Role.LIVING,
                                         Role.HALLWAY):  # fmt: skip
        motion = of(sim, sid, EventKind.MOTION)
        if not motion:
            continue
        last_on = motion[0].wall if motion[0].value == 1 else None
        repeats = 0
        for prev, e in pairwise(motion):
            if e.value == 1:
                repeats += prev.value == 1
                last_on = e.wall
            else:
                assert prev.value == 1, f"{sid}: two offs in a row at {local(e.wall)}"
                assert last_on is not None
                assert 60 <= e.wall - last_on <= SETTLE_S, f"{sid} at {local(e.wall)}"
        assert repeats > 0, f"{sid} never re-triggers"


def test_mats_doors_and_the_flush_switch_cleanly() -> None:
    """Pressure, contact and flush sensors alternate 1/0; a flush stops within seconds."""
    sim = typical()
    for sid in ("bed", "chair", "fridge", "front-door", "toilet-flush"):
        events = [e for e in of(sim, sid) if e.kind != EventKind.BATTERY]
        values = [e.value for e in events]
        assert all(a != b for a, b in pairwise(values)), sid
        if sid in ("fridge", "front-door", "toilet-flush"):
            assert values[0] == 1
            spans = [b.wall - a.wall for a, b in zip(events[::2], events[1::2], strict=False)]
            assert max(spans) < {"fridge": 60, "front-door": 30, "toilet-flush": 15}[sid]


def test_sitting_in_the_chair_is_hardly_seen() -> None:
    """Seated on the chair mat, the living-room PIR fires far less than the kitchen's at dinner."""
    sim = typical()
    chair = of(sim, "chair", EventKind.PRESSURE)
    living = [e.wall for e in rising(of(sim, "living-motion"))]
    seated_s = seen = 0.0
    for on, off in pairwise(chair):
        if on.value == 1 and off.wall - on.wall >= 3600:
            seated_s += off.wall - on.wall - 60
            seen += sum(1 for w in living if on.wall + 30 < w < off.wall - 30)
    assert seated_s >= DAYS * 3 * 3600  # long quiet periods in the chair are common
    per_hour_seated = seen / (seated_s / 3600)
    kitchen = [e.wall for e in rising(of(sim, "kitchen-motion"))]
    dinners = [span(lab) for lab in sim.labels if lab.label == "dinner"]
    dinner_s = sum(b - a for a, b in dinners)
    in_dinner = sum(1 for a, b in dinners for w in kitchen if a <= w <= b)
    assert per_hour_seated < 8
    assert in_dinner / (dinner_s / 3600) > 4 * per_hour_seated


def test_visitors_move_in_two_rooms_at_once() -> None:
    """During visits, two rooms take turns firing within minutes; one person never does that."""
    sim = typical()
    home = sim.header.home
    pirs = [
        e for e in rising(sim.events)
        if e.kind == EventKind.MOTION and room_of(home, e.sensor) != "Hallway"
    ]  # fmt: skip
    walls = [e.wall for e in pirs]
    rooms = [room_of(home, e.sensor) for e in pirs]

    def two_people(i: int) -> bool:
        """Four changes between two rooms within five minutes from the ``i``-th report."""
        window = rooms[i : bisect_left(walls, walls[i] + 300)]
        changes = [b for a, b in pairwise(window) if a != b]
        return len(changes) >= 4 and len(set(window)) == 2

    visits = [span(lab) for lab in sim.labels if lab.label == "visitors"]
    assert len(visits) >= 3
    shown = [any(two_people(i) for i, w in enumerate(walls) if a <= w < b) for a, b in visits]
    assert sum(shown) >= 0.75 * len(visits)
    alone = [i for i, w in enumerate(walls) if not any(a - 300 <= w <= b for a, b in visits)]
    assert len(alone) > 0.9 * len(walls)
    assert not any(two_people(i) for i in alone)


def test_periodic_sensors_report_regularly_whatever_happens() -> None:
    """Thermometers every ~5 min with plausible values; every device's battery once a day."""
    sim = typical()
    temps = of(sim, "living-temp", EventKind.TEMPERATURE)
    gaps = [b.wall - a.wall for a, b in pairwise(temps)]
    interval = sim.header.home.sensors["living-temp"].report_interval_s
    assert interval is not None
    assert min(gaps) >= 270 and max(gaps) <= 330 < interval
    values = [e.value for e in temps]
    assert min(values) >= 15 and max(values) <= 27
    night = [e.value for e in temps if 3 <= hour_of(e.wall) < 5]
    evening = [e.value for e in temps if 18 <= hour_of(e.wall) < 21]
    assert statistics.mean(evening) > statistics.mean(night) + 1.0  # heating by day
    for sid in sim.header.home.sensors:
        battery = of(sim, sid, EventKind.BATTERY)
        assert len(battery) in (DAYS, DAYS + 1), sid
        gaps = [b.wall - a.wall for a, b in pairwise(battery)]
        assert all(abs(g - 86400) <= 600 for g in gaps), sid
        assert all(0 < e.value <= 100 for e in battery)


def test_unusual_days_happen() -> None:
    """Over a year: nights away from home, days out, late mornings, wakeful nights."""
    sim = simulate(365, SEED, date(2026, 1, 1), TZ, "typical")
    leaving = [b - a for a, b in (span(lab) for lab in sim.labels if lab.label == "leaving")]
    assert any(d > 16 * 3600 for d in leaving)
    assert any(5 * 3600 < d < 10 * 3600 for d in leaving)
    weekdays = [hour_of(w) for d, w in wake_ups(sim).items() if d.weekday() < 5]
    usual = statistics.median(weekdays)
    assert usual < 8.0 and any(h > usual + 1.25 for h in weekdays)  # a sick day
    night_tv = [
        lab for lab in sim.labels
        if lab.label == "spare_time_tv" and hour_of(lab.start.timestamp()) < 5
    ]  # fmt: skip
    assert night_tv


def test_busy_profile_reaches_a_million_events_a_year() -> None:
    """A busy week, scaled to a year, has at least 1,000,000 events."""
    sim = simulate(7, 1, date(2025, 1, 6), TZ, "busy")
    assert len(sim.events) / 7 * 365 >= 1_000_000
    plain = simulate(7, 1, date(2025, 1, 6), TZ, "typical")
    assert len(rising(sim.events)) > 1.5 * len(rising(plain.events))  # more re-triggers


# ---- DST -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "change"),
    [(date(2026, 10, 19), date(2026, 10, 25)), (date(2026, 3, 23), date(2026, 3, 29))],
    ids=["autumn", "spring"],
)
def test_dst_fortnight_keeps_to_the_clock_on_the_wall(first: date, change: date) -> None:
    """Across a DST change people rise by the wall clock, not by UTC (five homes pooled)."""
    before: list[float] = []
    after: list[float] = []
    for seed in range(1, 6):
        sim = simulate(14, seed, first, TZ, "typical")
        assert sim.header.start == datetime(first.year, first.month, first.day, tzinfo=TZ)
        length = end_of(sim) - sim.header.start.timestamp()
        assert length == 14 * 86400 + (3600 if first.month == 10 else -3600)
        for day, wall in wake_ups(sim).items():
            if day.weekday() < 5:
                (before if day < change else after).append(wall)
        walls = [e.wall for e in sim.events]
        assert walls == sorted(walls)
        temps = of(sim, "living-temp", EventKind.TEMPERATURE)
        assert max(b.wall - a.wall for a, b in pairwise(temps)) <= 330  # they ignore clocks
    assert len(before) >= 20 and len(after) >= 20
    local_shift = statistics.median(map(hour_of, after)) - statistics.median(map(hour_of, before))
    utc_shift = statistics.median((w % 86400) / 3600 for w in after) - statistics.median(
        (w % 86400) / 3600 for w in before
    )
    assert abs(local_shift) < 0.25
    assert 0.75 < abs(utc_shift) < 1.25


# ---- incidents -------------------------------------------------------------------------
def after_last_activity(sim: Simulated) -> tuple[SensorEvent, list[SensorEvent]]:
    """The last rising activity event and every event after it."""
    last = rising(sim.events)[-1]
    return last, [e for e in sim.events if e.wall > last.wall]


def only_settling(last: SensorEvent, tail: Sequence[SensorEvent]) -> None:
    """After the person's last act: measurements, and sensors returning to rest, only."""
    for e in tail:
        if e.kind in MEASUREMENT_KINDS:
            continue
        assert e.value == 0 and e.wall - last.wall <= SETTLE_S, e


@pytest.mark.parametrize(
    ("text", "room"),
    [
        ("fall@d3T15:00", None),
        ("fall@d2T03:10", "Bedroom"),
        ("bathroom_fall@d2T10:30", "Bathroom"),
        ("no_wakeup@d3", "Bedroom"),
        ("night_exit@d2T02:30", "Hallway"),
    ],
)
@pytest.mark.parametrize("profile", ["typical", "sparse"])
def test_after_a_fall_nothing_but_periodic_reports(
    text: str, room: str | None, profile: Profile
) -> None:
    """After a terminal incident the home is silent but for thermometers and batteries."""
    sim = with_incident(text, profile)
    (label,) = [lab for lab in sim.labels if lab.type == "incident"]
    kind = text.partition("@")[0]
    assert label.label == kind and label.expect == list(EXPECTED_ALERTS[kind])
    assert room is None or label.room == room
    t = label.start.timestamp()
    last, tail = after_last_activity(sim)
    only_settling(last, tail)
    home = sim.header.home
    if kind == "fall":
        assert t - 60 <= last.wall <= t + 1
        if any(s.room == label.room for s in home.sensors.values() if s.kind == EventKind.MOTION):
            assert room_of(home, last.sensor) == label.room
    elif kind == "bathroom_fall":
        assert t <= last.wall <= t + 5 * 60 and room_of(home, last.sensor) == "Bathroom"
    elif kind == "no_wakeup":
        assert last.wall < t and 5.75 <= hour_of(t) <= 10.5
        bed = of(sim, "bed", EventKind.PRESSURE)
        assert profile == "sparse" or bed[-1].value == 1
    else:
        assert last.sensor == "front-door" and last.wall == t
        door = [e.value for e in tail if e.sensor == "front-door" and e.kind != EventKind.BATTERY]
        assert door == [0]
    end = end_of(sim)
    assert end == max(datetime(2026, 11, 7, tzinfo=TZ).timestamp(), t + 86400)
    temps = of(sim, "living-temp", EventKind.TEMPERATURE)
    assert temps[-1].wall > end - 330  # the thermometer goes on to the end
    for lab in sim.labels:
        assert lab.type == "incident" or (lab.end is not None and lab.end.timestamp() <= t)


def test_bed_stays_occupied_on_a_no_wakeup_morning() -> None:
    """On a no_wakeup morning the mat stays pressed from the night until the end."""
    sim = with_incident("no_wakeup@d4", days=4)
    (label,) = [lab for lab in sim.labels if lab.type == "incident"]
    t = label.start.timestamp()
    bed = of(sim, "bed", EventKind.PRESSURE)
    assert bed[-1].value == 1 and bed[-1].wall < t
    assert end_of(sim) == t + 86400  # on the last day: 24 h after the incident
    assert not rising(e for e in sim.events if e.wall >= t)


def test_a_fall_late_on_the_last_day_extends_the_trace() -> None:
    """The trace ends 24 h after the last incident when that is after the last day."""
    sim = with_incident("fall@d5T20:00")
    assert sim.header.end == datetime(2026, 11, 7, 20, 0, tzinfo=TZ)


def test_help_button_is_pressed_and_life_goes_on() -> None:
    """A press (value 1) at T, labelled with where the person was; activity continues."""
    sim = with_incident("help_button@d2T16:00")
    t = datetime(2026, 11, 3, 16, 0, tzinfo=TZ).timestamp()
    presses = of(sim, "help-button", EventKind.BUTTON)
    assert [(e.wall, e.value) for e in presses] == [(t, 1.0)]
    (label,) = [lab for lab in sim.labels if lab.type == "incident"]
    assert label.expect == ["help_button"] and label.room in sim.header.home.rooms()
    later = rising(e for e in sim.events if t + 600 < e.wall < t + 4 * 3600)
    assert len(later) > 10


def test_help_button_after_a_fall() -> None:
    """Someone who fell may still press the pendant: the press is the only act after."""
    incidents = [
        parse_incident("fall@d2T11:00", START, TZ),
        parse_incident("help_button@d2T11:20", START, TZ),
    ]
    sim = simulate(3, 3, START, TZ, "typical", incidents)
    fall = datetime(2026, 11, 3, 11, 0, tzinfo=TZ).timestamp()
    late = rising(e for e in sim.events if e.wall > fall + 1)
    assert [(e.sensor, local(e.wall).strftime("%H:%M")) for e in late] == [("help-button", "11:20")]
    rooms = {lab.label: lab.room for lab in sim.labels if lab.type == "incident"}
    assert rooms["help_button"] == rooms["fall"]


def test_incidents_keep_the_person_at_home() -> None:
    """No outing or visit is planned around an incident, whatever the seed would have done."""
    press = parse_incident("help_button@d2T10:30", START, TZ)
    t = press.at.timestamp()
    for seed in range(6):
        sim = simulate(2, seed, START, TZ, "typical", [press])
        for lab in sim.labels:
            if lab.label in ("leaving", "visitors"):
                a, b = span(lab)
                assert not a <= t <= b


@pytest.mark.parametrize(
    ("incidents", "message"),
    [
        (["fall@d2T10:00", "night_exit@d3T02:00"], "at most one"),
        (["fall@d9T10:00"], "outside the simulated days"),
        (["night_exit@d2T15:00"], "not at night"),
        (["night_exit@d2T02:00", "help_button@d2T03:00"], "left the house"),
    ],
)
def test_impossible_incidents_are_refused(incidents: list[str], message: str) -> None:
    """simulate refuses incidents that cannot happen in the trace, saying why."""
    parsed = [parse_incident(text, START, TZ) for text in incidents]
    with pytest.raises(ValueError, match=message):
        simulate(5, 1, START, TZ, "typical", parsed)


def test_naive_incident_times_are_refused() -> None:
    """An incident time without a zone is ambiguous and refused."""
    with pytest.raises(ValueError, match="time zone"):
        simulate(3, 1, START, TZ, "typical", [Incident("fall", datetime(2026, 11, 3, 10, 0))])


# ---- parse_incident --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fall@2026-11-14T15:00", Incident("fall", datetime(2026, 11, 14, 15, 0, tzinfo=TZ))),
        ("fall@d13T15:00", Incident("fall", datetime(2026, 11, 14, 15, 0, tzinfo=TZ))),
        (" Fall@D13T7:05:30 ", Incident("fall", datetime(2026, 11, 14, 7, 5, 30, tzinfo=TZ))),
        ("no_wakeup@d13", Incident("no_wakeup", datetime(2026, 11, 14, tzinfo=TZ))),
        ("no_wakeup@2026-11-14", Incident("no_wakeup", datetime(2026, 11, 14, tzinfo=TZ))),
        ("night_exit@d1T02:30", Incident("night_exit", datetime(2026, 11, 2, 2, 30, tzinfo=TZ))),
        (
            "help_button@2026-11-14T14:00:00+00:00",
            Incident("help_button", datetime(2026, 11, 14, 15, 0, tzinfo=TZ)),
        ),
        (
            "bathroom_fall@2026-11-14T03:10",
            Incident("bathroom_fall", datetime(2026, 11, 14, 3, 10, tzinfo=TZ)),
        ),
    ],
)
def test_parse_incident_accepts(text: str, expected: Incident) -> None:
    """Day numbers, dates, local and offset times; str() reads back to the same incident."""
    got = parse_incident(text, START, TZ)
    assert got == expected
    assert got.at.utcoffset() == expected.at.utcoffset()
    assert parse_incident(str(got), START, TZ) == got


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not an incident"),
        ("fall", "not an incident"),
        ("fall@", "not an incident"),
        ("trip@d3T10:00", "unknown incident kind 'trip'; choose from fall"),
        ("fall@d0T10:00", "count from d1"),
        ("fall@d3", "needs a time of day"),
        ("no_wakeup@d3T07:00", "takes a day, not a time"),
        ("fall@d3T25:00", "not a time of day"),
        ("fall@2026-13-01T10:00", "not a date and time"),
        ("no_wakeup@2026-02-30", "not a date"),
        ("fall@yesterday", "not a date"),
        ("fall@2026-11-01T10:00", "before the first simulated day"),
        ("fall@2027-03-28T02:30", "does not exist"),
    ],
)
def test_parse_incident_refuses(text: str, message: str) -> None:
    """Malformed, impossible or out-of-range incidents raise ValueError saying why."""
    with pytest.raises(ValueError, match=message):
        parse_incident(text, START, TZ)


def test_the_command_refuses_two_terminal_incidents_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    out = tmp_path / "x.jsonl"
    incidents = ["--incident", "fall@d5T10:00", "--incident", "no_wakeup@d9"]
    code = main(["simulate", "--days", "14", *incidents, "-o", str(out)])
    assert code == 2
    assert "at most one of" in capsys.readouterr().err
    assert not out.exists()
