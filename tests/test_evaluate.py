"""``hub evaluate``: simulated homes with known incidents, the CLI, and the two real homes.

Simulated homes are 21 days of the typical profile from a fixed seed, written into a
temporary folder with their labels; the incident falls in the test part (days 15-18), after
the first 7 days the protocol learns from. The real homes run only where the recorded data
is present (``shared_data`` skips with the reason elsewhere).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.cli import main
from agent.evaluate import (
    HomeResult,
    SystemResult,
    evaluate_home,
    format_table,
    hindsight_bounds,
    past_frontier,
)
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap
from agent.traces.format import labels_path, write_labels, write_trace
from agent.traces.importing import save
from agent.traces.simulate import EXPECTED_ALERTS, INCIDENT_KINDS, parse_incident, simulate

TZ = ZoneInfo("Europe/Amsterdam")
START = date(2026, 11, 2)  # a Monday
DAYS = 21
SEED = 3

#: each incident kind, on a day of the test part, at a time it is meant for
INCIDENTS = {
    "fall": "fall@d15T10:40",
    "bathroom_fall": "bathroom_fall@d16T03:10",
    "no_wakeup": "no_wakeup@d17",
    "night_exit": "night_exit@d18T02:30",
    "help_button": "help_button@d16T15:00",
}


def test_every_incident_kind_is_covered() -> None:
    assert set(INCIDENTS) == set(INCIDENT_KINDS)


def _write_home(folder: Path, incident: str | None, seed: int = SEED) -> Path:
    incidents = [parse_incident(incident, START, TZ)] if incident else []
    sim = simulate(DAYS, seed, START, TZ, "typical", incidents)
    trace = folder / "home.jsonl"
    write_trace(trace, sim.header, sim.events)
    write_labels(labels_path(trace), sim.labels)
    return trace


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The normal home and one home per incident kind (written once for the module)."""
    out = {"normal": _write_home(tmp_path_factory.mktemp("normal"), None)}
    for kind, text in INCIDENTS.items():
        out[kind] = _write_home(tmp_path_factory.mktemp(kind), text)
    return out


@cache
def _evaluated(trace: Path) -> HomeResult:
    return evaluate_home(trace)


@pytest.mark.parametrize("kind", sorted(INCIDENTS))
def test_each_incident_raises_the_alert_it_should(homes: dict[str, Path], kind: str) -> None:
    result = _evaluated(homes[kind])
    (check,) = result.incidents
    assert check.label == kind
    assert check.expect == list(EXPECTED_ALERTS[kind])
    assert check.ok, check
    # the rule made for it, and only that one: one situation, one alert
    assert check.raised == [EXPECTED_ALERTS[kind][0]]
    hub, baseline = result.systems
    assert (hub.name, baseline.name) == ("hub", "baseline_12h")
    # the incident's own alert is not a false alarm; nothing else cried wolf
    assert sum(hub.false_alarms.values()) == 0


def test_a_normal_home_has_no_false_alarm_and_the_hub_is_faster_than_the_baseline(
    homes: dict[str, Path],
) -> None:
    result = _evaluated(homes["normal"])
    assert result.incidents == []
    assert result.skipped_rules == []  # the typical home has every sensor the rules need
    assert result.learn_days == 7
    assert result.test_days == pytest.approx(DAYS - 7)
    hub, baseline = (s.summary() for s in result.systems)
    assert hub["false_alarms"] == 0 and hub["false_per_day"] == 0.0
    assert hub["onsets"] == baseline["onsets"] > 12 * 10
    assert hub["misses"] == 0
    assert hub["mean_h"] < baseline["mean_h"]
    assert hub["median_h"] < baseline["median_h"]
    assert baseline["mean_h"] > 10.0  # 12 h after the last activity before the onset


def test_another_seed_gives_the_same_verdicts(tmp_path: Path) -> None:
    trace = _write_home(tmp_path, INCIDENTS["no_wakeup"], seed=17)
    result = evaluate_home(trace)
    assert [(i.label, i.raised) for i in result.incidents] == [("no_wakeup", ["not_up"])]
    hub, baseline = (s.summary() for s in result.systems)
    assert hub["false_alarms"] == 0 and hub["misses"] == 0
    assert hub["mean_h"] < baseline["mean_h"]


# ---- the command -----------------------------------------------------------------------


def test_cli_evaluate_prints_json_with_the_hub_and_the_baseline(
    homes: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(homes["fall"]), "--json"]) == 0
    (home,) = json.loads(capsys.readouterr().out)
    assert home["trace"] == str(homes["fall"])
    assert home["source"] == "simulated"
    assert home["learn_days"] == 7
    assert set(home["systems"]) == {"hub", "baseline_12h"}
    hub, baseline = home["systems"]["hub"], home["systems"]["baseline_12h"]
    assert hub["onsets"] == baseline["onsets"] > 0
    assert hub["mean_h"] < baseline["mean_h"]
    assert home["incidents"] == [
        {"label": "fall", "expect": ["inactivity"], "raised": ["inactivity"], "ok": True}
    ]


def test_cli_evaluate_prints_a_table_with_both_rows(
    homes: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(homes["fall"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "simulated"
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("  ")}
    assert {"system", "hub", "baseline_12h"} <= set(rows)
    assert rows["system"] == ["system", "mean", "median", "misses", "false", "per", "day"]
    # "3 h 36" is three words; then misses, false alarms, per day
    assert rows["hub"][-3:] == ["0", "0", "0.000"]
    assert any(line.strip().startswith("ok") and "fall" in line for line in lines)


def test_cli_evaluate_refuses_a_home_too_short_for_the_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = simulate(5, SEED, START, TZ, "typical")
    trace = tmp_path / "short.jsonl"
    write_trace(trace, sim.header, sim.events)
    assert main(["evaluate", str(trace)]) == 2
    err = capsys.readouterr().err
    assert "day(s) of data; the protocol needs more than 7" in err


# ---- the yardsticks ----------------------------------------------------------------------

_AMS = ZoneInfo("Europe/Amsterdam")
_DAY0 = datetime(2026, 3, 2, tzinfo=_AMS).timestamp()  # a Monday, no clock change near
_YARD_HOME = HomeMap.model_validate(
    {
        "sensors": {
            "kitchen": {"room": "kitchen", "role": "kitchen"},
            "chair": {"room": "living", "role": "seat"},
        }
    }
)


def _at(day: int, hh: float) -> float:
    return _DAY0 + day * 86400 + hh * 3600


def _ev(sensor: str, day: int, hh: float, value: float = 1.0) -> SensorEvent:
    kind = EventKind.MOTION if sensor == "kitchen" else EventKind.PRESSURE
    t = _at(day, hh)
    return SensorEvent(sensor, kind, value, t, t)


def _yardsticks(
    events: list[SensorEvent], onsets: list[float], out: tuple[tuple[float, float], ...] = ()
) -> dict[str, list[float | None]]:
    test_start, end = _at(1, 0), _at(2, 0)
    results = hindsight_bounds(events, _YARD_HOME, _AMS, test_start, end, onsets, out, 86400.0)
    return {r.name: [d.delay for d in r.detections] for r in results}


def test_the_hindsight_bound_is_the_longest_test_day_spell_begun_in_that_hour() -> None:
    events = [
        _ev("kitchen", 1, 9.0),  # 09:00 kitchen: 2 h to the next
        _ev("kitchen", 1, 11.0),
        _ev("chair", 1, 14.0),  # 14:00 sits down: 3 h in the chair
        _ev("kitchen", 1, 17.0),
        _ev("kitchen", 1, 17.5),
        _ev("kitchen", 1, 17.75),  # 17:45: 15 min in the kitchen
        _ev("chair", 1, 18.0),
        _ev("chair", 1, 18.25, 0.0),  # 18:15 up from the chair, 3 h 45 min quiet
        _ev("kitchen", 1, 22.0),
    ]
    onsets = [_at(1, 10.0), _at(1, 15.0), _at(1, 17.6)]
    delays = _yardsticks(events, onsets)
    # hour 9's limit is 2 h: the onset at 10:00 after 09:00 is found at 11:00
    # hour 14: 3 h, found at 17:00; hour 17 (30, 15 and 15 min): the longest is 30 min,
    # so the 17:36 onset after 17:30 is found at 18:00
    assert delays["bound_hour"] == pytest.approx([3600.0, 7200.0, 0.4 * 3600])
    assert delays["bound_place_hour"] == pytest.approx([3600.0, 7200.0, 0.4 * 3600])
    # hour 18 began two spells: 15 min in the chair, then 3 h 45 min up from it
    by_hour = _yardsticks(events, [_at(1, 18.1), _at(1, 19.0)])
    assert by_hour["bound_hour"] == pytest.approx([3.65 * 3600, 3.0 * 3600])
    # knowing the place: in the chair at 18:06 the limit is the chair's 15 min
    assert by_hour["bound_place_hour"] == pytest.approx([0.15 * 3600, 3.0 * 3600])


def test_a_spell_while_out_sets_no_limit() -> None:
    events = [_ev("kitchen", 1, 9.0), _ev("kitchen", 1, 15.0), _ev("kitchen", 1, 9.5 + 24)]
    out = ((_at(1, 9.2), _at(1, 14.8)),)
    delays = _yardsticks(events, [_at(1, 9.1)], out)
    # the 6 h spell overlaps the outing: hour 9 has no limit, found at once
    assert delays["bound_hour"] == [0.0]
    assert _yardsticks(events, [_at(1, 9.1)])["bound_hour"] == pytest.approx([5.9 * 3600])


def test_the_past_table_learns_from_earlier_days_and_counts_its_false_alarms() -> None:
    events = [
        _ev("kitchen", 0, 9.0),  # day 0 (learning): 1 h from 09:00
        _ev("kitchen", 0, 10.0),
        _ev("kitchen", 1, 9.0),  # day 1 (test): 2 h from 09:00 exceeds the learned hour
        _ev("kitchen", 1, 11.0),
        _ev("kitchen", 1, 13.0),  # 13:00 never seen before: the fixed 12 h
        _ev("kitchen", 1, 13.5),
    ]
    results = hindsight_bounds(
        events, _YARD_HOME, _AMS, _at(1, 0), _at(2, 0), [_at(1, 9.5), _at(1, 13.25)], [], 86400.0
    )
    past = next(r for r in results if r.name == "past_hour")
    assert [d.delay for d in past.detections] == pytest.approx([0.5 * 3600, 11.75 * 3600])
    assert past.false_alarms == {"inactivity": 1}
    assert past.summary()["false_per_day"] == 1.0
    bound = next(r for r in results if r.name == "bound_hour")
    assert [d.delay for d in bound.detections] == pytest.approx([1.5 * 3600, 0.25 * 3600])


def test_the_frontier_is_the_fastest_margin_that_keeps_the_learned_table_quiet() -> None:
    events = [
        _ev("kitchen", 0, 9.0),  # learned: 1 h from 09:00
        _ev("kitchen", 0, 10.0),
        _ev("kitchen", 1, 9.0),  # tested: 2 h 15 from 09:00
        _ev("kitchen", 1, 11.25),
    ]

    def yardsticks(found: list[SensorEvent]) -> Callable[[float, float], list[SystemResult]]:
        test_start, end, onsets = _at(1, 0), _at(2, 0), [_at(1, 9.5)]
        return lambda m, p: hindsight_bounds(
            found, _YARD_HOME, _AMS, test_start, end, onsets, [], 86400.0, m, p
        )

    found = past_frontier(yardsticks(events), per_day=0.05)
    assert found is not None
    margin, pad, result = found
    # 1 h x margin + pad must reach 2 h 15: x 1.25 + 1 h is exactly that, the first such
    # (x 1.75 + 30 min ties and comes later; x 1 + 1 h 30 makes 2 h 30: slower)
    assert (margin, pad) == (1.25, 3600.0)
    assert result.false_alarms.total() == 0
    assert result.detections[0].delay == pytest.approx(1.75 * 3600)
    # a quiet day of false alarms allowed: no margin at all is the fastest
    margin, pad, _ = past_frontier(yardsticks(events), per_day=1.0) or (0, 0, None)
    assert (margin, pad) == (1.0, 0.0)
    # a spell no margin of the grid covers: nothing is quiet enough
    longer = [*events[:3], _ev("kitchen", 1, 18.0)]
    assert past_frontier(yardsticks(longer), per_day=0.05) is None


def test_cli_evaluate_searches_the_frontier_on_request(
    homes: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(homes["normal"]), "--json"]) == 0
    assert "frontier" not in json.loads(capsys.readouterr().out)[0]
    assert main(["evaluate", str(homes["normal"]), "--json", "--frontier"]) == 0
    found = json.loads(capsys.readouterr().out)[0]["frontier"]
    assert found["false_per_day"] <= 0.05
    assert found["margin"] >= 1.0 and found["pad_h"] >= 0.0
    assert main(["evaluate", str(homes["normal"]), "--frontier"]) == 0
    assert "the fastest at <= 0.05 false a day" in capsys.readouterr().out


def test_the_table_shows_the_yardsticks_apart_from_the_systems(homes: dict[str, Path]) -> None:
    result = _evaluated(homes["normal"])
    names = [b.name for b in result.bounds]
    assert names == ["bound_hour", "bound_place_hour", "past_hour"]
    table = format_table([result])
    assert "bound_hour" in table and "past_hour" in table
    data = result.to_json()
    assert set(data["bounds"]) == set(names)
    assert "false_per_day" not in data["bounds"]["bound_hour"]
    assert "false_per_day" in data["bounds"]["past_hour"]
    hub = data["systems"]["hub"]
    assert data["bounds"]["bound_hour"]["onsets"] == hub["onsets"]


# ---- the recorded homes ----------------------------------------------------------------


def _import(shared_data: Path, name: str, out: Path) -> Path:
    from agent.traces.kasteren import import_kasteren
    from agent.traces.ordonez import import_ordonez

    if name == "ordonez":
        imported = import_ordonez([shared_data / "ordonez-home-a"], ZoneInfo("Europe/Madrid"))
    else:
        imported = import_kasteren([shared_data / "kasteren-2008"], ZoneInfo("Europe/Amsterdam"))
    trace = out / f"{name}.jsonl"
    save(imported, trace)
    return trace


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ordonez", "kasteren"])
def test_a_real_home_is_detected_sooner_than_the_baseline_without_crying_wolf(
    shared_data: Path, tmp_path: Path, name: str
) -> None:
    result = evaluate_home(_import(shared_data, name, tmp_path))
    hub, baseline = (s.summary() for s in result.systems)
    assert result.incidents == []
    assert hub["onsets"] == baseline["onsets"] > 50
    assert hub["mean_h"] < baseline["mean_h"]
    assert hub["misses"] <= 2
    # A regression guard, not the target: today ~0.14 (Ordóñez A, one 8 h afternoon in the
    # chair) and ~0.05 (van Kasteren) false alarms a day; the product target is 0.05.
    assert hub["false_per_day"] <= 0.25
    # van Kasteren sees the bathroom by its door only and has no bed mat: a night's quiet
    # after the bathroom door is the night, not a four-hour bathroom stay
    assert hub["by_kind"].get("bathroom_overstay", {}).get("false_alarms", 0) == 0
    # the yardstick is the one the targets were computed with: 3 h 57 and 3 h 24
    bound = next(b for b in result.bounds if b.name == "bound_hour").summary()
    assert round(bound["mean_h"] * 60) == {"ordonez": 237, "kasteren": 204}[name]
