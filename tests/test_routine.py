"""The learned routine (``detection.routine``) and ``hub routine show`` / ``hub routine plot``."""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import warnings
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.cli import main
from agent.detectconfig import DetectionConfig, RoutineConfig, WakeupConfig
from agent.routineview import learn_from_trace, render_text, to_json
from agent.traces.format import labels_path, write_labels, write_trace
from agent.traces.simulate import simulate
from detection.routine import VERSION, Place, Routine, RoutineFileError

TZ = ZoneInfo("Europe/Amsterdam")
START = date(2026, 11, 2)  # a Monday
SEED = 11
H = 3600.0
#: the simulator wakes the person between 05:45 and 10:00 (07:15-08:00 on average, a
#: little later in winter); getting up is leaving the bedroom some minutes later
MORNING = (6.0 * H, 9.5 * H)
PNG = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, days: int, seed: int) -> Path:
    sim = simulate(days, seed, START, TZ, "typical")
    write_trace(path, sim.header, sim.events)
    write_labels(labels_path(path), sim.labels)
    return path


@pytest.fixture(scope="module")
def home21(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three weeks of a simulated home, seed fixed."""
    return _write(tmp_path_factory.mktemp("home21") / "home.jsonl", 21, SEED)


@pytest.fixture(scope="module")
def learned21(home21: Path) -> Routine:
    return learn_from_trace(home21, DetectionConfig())


@pytest.fixture(scope="module")
def home9(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine days: enough to be ready (7), short enough to run the CLI on quickly."""
    return _write(tmp_path_factory.mktemp("home9") / "home.jsonl", 9, SEED)


def _small_routine() -> Routine:
    """A routine of ten days, without a trace: for the file tests."""
    routine = Routine(TZ)
    for k in range(10):
        day = datetime(2026, 11, 2, tzinfo=TZ) + timedelta(days=k)
        up = (day + timedelta(hours=7, minutes=5 * k)).timestamp()
        routine.observe_activity(up)
        routine.add_getup(up)
        routine.add_spell(up + 600, 1800.0 + 60 * k, Place.KITCHEN)
        routine.add_spell((day + timedelta(hours=23)).timestamp(), 7 * H, Place.IN_BED)
        routine.add_bath(up + 60, 300.0 + 10 * k)
        routine.add_bedtime((day + timedelta(hours=22, minutes=30)).timestamp())
    routine.refresh()
    return routine


# ---- (a) learning from a simulated home ---------------------------------------------------
def test_learned_from_three_simulated_weeks(learned21: Routine) -> None:
    routine = learned21
    summary = routine.summary()
    assert routine.ready
    assert summary["days_seen"] >= 20
    assert MORNING[0] <= summary["getup_median"] <= MORNING[1], summary["getup_median"] / H
    in_bed_night = routine.limit(Place.IN_BED, 3 * H)
    kitchen_day = routine.limit(Place.KITCHEN, 12 * H)
    assert in_bed_night is not None and np.isfinite(in_bed_night)
    assert kitchen_day is not None and np.isfinite(kitchen_day)
    assert in_bed_night > kitchen_day
    icfg = routine.icfg
    assert icfg.floor <= kitchen_day <= icfg.ceiling
    assert icfg.floor <= in_bed_night <= icfg.ceiling
    # the get-up limit is a morning, after the usual get-up
    for limit in (summary["getup_limit_weekday"], summary["getup_limit_weekend"]):
        assert limit is not None
        assert summary["getup_median"] < limit < 12 * H


# ---- (b) save and load ---------------------------------------------------------------------
def test_save_then_load_gives_the_same_routine(learned21: Routine, tmp_path: Path) -> None:
    path = tmp_path / "routine.npz"
    learned21.save(path)
    fresh = Routine(TZ)
    fresh.load(path)
    for name in (*Routine._ARRAYS, *Routine._SCALARS):
        np.testing.assert_array_equal(getattr(fresh, name), getattr(learned21, name), name)
    assert fresh.summary() == learned21.summary()
    np.testing.assert_array_equal(fresh.limits, learned21.limits)
    np.testing.assert_array_equal(fresh.cover, learned21.cover)
    for weekend in (False, True):
        np.testing.assert_array_equal(
            fresh.activity_profile(weekend), learned21.activity_profile(weekend)
        )
    assert to_json(fresh) == to_json(learned21)


# ---- (c) bad files -------------------------------------------------------------------------
def _other_version(path: Path) -> None:
    good = path.with_name("good.npz")
    _small_routine().save(good)
    with np.load(good) as data:
        items = {name: data[name] for name in data.files}
    items["version"] = np.array(VERSION + 1)
    np.savez(path, **items)


def _truncated(path: Path) -> None:
    good = path.with_name("good.npz")
    _small_routine().save(good)
    raw = good.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_truncated, "not a readable routine file"),
        (lambda p: p.write_bytes(b"garbage, not a zip archive\n" * 40), "not a readable"),
        (lambda p: p.write_bytes(b""), "not a readable routine file"),
        (_other_version, f"version {VERSION + 1}"),
    ],
    ids=["truncated", "garbage", "empty", "other-version"],
)
def test_a_bad_file_raises_routine_file_error(make: Any, words: str, tmp_path: Path) -> None:
    path = tmp_path / "routine.npz"
    make(path)
    with pytest.raises(RoutineFileError) as info:
        Routine(TZ).load(path)
    message = str(info.value)
    assert str(path) in message
    assert words in message


def test_loading_a_corrupt_file_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "routine.npz"
    _truncated(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(RoutineFileError):
            Routine(TZ).load(path)
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "good.npz"
    routine = Routine(TZ)
    routine.add_spell(TZ_T0, 3600.0, Place.KITCHEN)
    routine.save(path)
    return path


TZ_T0 = 1_790_000_000.0


def _rewrite(path: Path, **changes: Any) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(changes)
    with path.open("wb") as fh:
        np.savez(fh, **arrays)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"sp_head": np.array(10**6)}, "out of range"),
        ({"sp_n": np.array([1, 2])}, "whole number"),
        ({"zone": np.array("Asia/Tokyo")}, "time zone"),
        ({"sp_tod": np.zeros(3)}, "shape"),
        ({"sp_dur": np.array(["x"] * 8192)}, "holds"),
    ],
    ids=["counter-out-of-range", "counter-not-scalar", "other-zone", "shape", "dtype"],
)
def test_a_damaged_field_is_refused_and_the_routine_is_left_unchanged(
    change: dict[str, Any], words: str, tmp_path: Path
) -> None:
    path = _saved(tmp_path)
    _rewrite(path, **change)
    routine = Routine(TZ)
    with pytest.raises(RoutineFileError, match=words):
        routine.load(path)
    assert routine.sp_n == 0 and routine.sp_head == 0


def test_a_plain_npy_file_is_not_a_routine(tmp_path: Path) -> None:
    path = tmp_path / "routine.npz"
    with path.open("wb") as fh:
        np.save(fh, np.arange(3))
    with pytest.raises(RoutineFileError, match=r"no \.npz archive"):
        Routine(TZ).load(path)


# ---- (d) atomic save -----------------------------------------------------------------------
def _half_then_fail(fh: Any, *args: Any, **kwargs: Any) -> None:
    fh.write(b"PK\x03\x04 half an archive")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("failing", ["numpy-writer", "fsync"])
def test_a_failing_save_leaves_the_old_file_and_no_temporary_file(
    failing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "routine.npz"
    routine = _small_routine()
    routine.save(path)
    before = path.read_bytes()
    routine.observe_activity(datetime(2026, 11, 20, 9, tzinfo=TZ).timestamp())  # it changed
    if failing == "numpy-writer":  # the disk fills up halfway through the archive
        monkeypatch.setattr(np, "savez", _half_then_fail)
        monkeypatch.setattr(np, "savez_compressed", _half_then_fail)
    else:  # all written, but it cannot be made durable

        def no_fsync(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises(OSError, match="No space left"):
        routine.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routine.npz"]
    again = Routine(TZ)
    again.load(path)  # still the good routine of before
    assert again.days_seen == 10


# ---- (e) forgetting ------------------------------------------------------------------------
def test_the_getup_limit_follows_a_new_habit() -> None:
    margin = 1.0 * H
    routine = Routine(
        TZ, RoutineConfig(min_days=7, half_life_days=28.0), wakeup=WakeupConfig(margin=margin)
    )
    first = date(2026, 1, 5)

    def live(days: range, up_hour: float) -> None:
        for k in days:
            day = first + timedelta(days=k)
            midnight = datetime(day.year, day.month, day.day, tzinfo=TZ)
            up = (midnight + timedelta(hours=up_hour)).timestamp()
            routine.observe_activity(up)
            routine.add_getup(up)

    live(range(30), 10.5)  # a month of sleeping in
    routine.refresh()
    late = 10.5 * H + margin
    assert routine.getup_limits == [late, late]
    live(range(30, 120), 7.0)  # then three months of early mornings
    routine.refresh()
    early = 7.0 * H + margin
    last_week = [date.fromordinal(routine.last_day - i) for i in range(7)]
    weekday = next(d for d in last_week if d.weekday() < 5)
    weekend = next(d for d in last_week if d.weekday() >= 5)
    assert routine.usual_getup(weekday.toordinal()) == early
    assert routine.usual_getup(weekend.toordinal()) == early
    assert routine.summary()["getup_latest"] == 10.5 * H  # the old days are still kept...
    assert routine.summary()["getup_limit_weekday"] == early  # ...but no longer set limits


# ---- (f) hub routine show ------------------------------------------------------------------
def test_show_from_a_trace(home9: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "routine.npz"
    assert main(["routine", "show", "--trace", str(home9), "--save", str(saved)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^Routine of \d+ day\(s\) learned, ready: the rules use it$", out, re.M)
    assert re.search(
        r"^  get up     median \d\d:\d\d, latest \d\d:\d\d; limit weekdays ", out, re.M
    )
    assert re.search(r"^  bedtime    median \d\d:\d\d", out, re.M)
    assert re.search(r"^  bathroom   median stay \d+ min, limit ", out, re.M)
    assert "  Inactivity limits: a quiet spell beginning at this hour, at this place" in out
    assert re.search(r"^ +00:00 +03:00 +06:00 +09:00 +12:00 +15:00 +18:00 +21:00$", out, re.M)
    assert re.search(r"^  in bed +(\d+ h \d\d|-)( +(\d+ h \d\d|-)){7}$", out, re.M)
    assert re.search(r"^  in the kitchen +", out, re.M)
    assert re.search(r"^  weekdays {12}[·▁▂▃▄▅▆▇█]{24}$", out, re.M)
    assert re.search(r"^  weekends {12}[·▁▂▃▄▅▆▇█]{24}$", out, re.M)

    assert main(["routine", "show", "--trace", str(home9), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ready"] is True
    assert data["days_seen"] >= 7
    assert data["time_zone"] == "Europe/Amsterdam"
    assert re.fullmatch(r"\d\d:\d\d", data["getup"]["median"])
    assert set(data["inactivity_limits_min"]["in_bed"]) == {f"{h:02d}:00" for h in range(24)}
    assert data["inactivity_limits_min"]["in_bed"]["03:00"] > 0
    assert len(data["activity_by_hour"]["weekday"]) == 24
    assert all(0.0 <= v <= 1.0 for v in data["activity_by_hour"]["weekend"])

    # the saved routine shows the same as the trace it was learned from
    assert main(["routine", "show", "--file", str(saved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == data
    assert main(["routine", "show", "--file", str(saved)]) == 0
    assert capsys.readouterr().out == out


def test_render_text_of_an_empty_routine_says_not_ready() -> None:
    text = render_text(Routine(TZ))
    assert "Routine of 0 day(s) learned, not ready" in text
    assert "Inactivity limits: none learned yet" in text
    assert "get up     median -, latest -" in text


# ---- (g) hub routine plot ------------------------------------------------------------------
def test_plot_writes_a_png(home9: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    out = tmp_path / "day.png"
    assert (
        main(["routine", "plot", "--trace", str(home9), "--day", "2026-11-09", "--out", str(out)])
        == 0
    )
    raw = out.read_bytes()
    assert raw[:8] == PNG
    assert len(raw) > 10_000
    assert "never send" in capsys.readouterr().out


def test_plot_of_a_day_outside_the_trace(
    home9: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    out = tmp_path / "day.png"
    assert (
        main(["routine", "plot", "--trace", str(home9), "--day", "2027-01-01", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert "2027-01-01 is not in the trace (2026-11-02 to 2026-11-10)" in err
    assert not out.exists()


def test_plot_without_matplotlib_says_to_install_the_extra(
    home9: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: ImportError
    out = tmp_path / "day.png"
    assert (
        main(["routine", "plot", "--trace", str(home9), "--day", "2026-11-09", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert "matplotlib" in err
    assert "leefsamen-hub[plot]" in err
    assert not out.exists()


# ---- (h) a bad --file ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"this is not a routine\n", "not a routine file"),
        (None, "No such file"),
        ("npy", "not a routine file"),
        ("version", f"routine version {VERSION + 1}"),
    ],
    ids=["text", "missing", "npy", "other-version"],
)
def test_show_a_bad_file_exits_2_with_a_clear_message(
    content: bytes | str | None, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "routine.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "npy":
        with path.open("wb") as fh:
            np.save(fh, np.arange(5))  # a plain array, not a routine archive
    elif content == "version":
        _other_version(path)
    assert main(["routine", "show", "--file", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"cannot read the routine: {path}: ")
    assert words in captured.err
    assert "Traceback" not in captured.err


def test_save_needs_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.npz"
    _small_routine().save(path)
    assert main(["routine", "show", "--file", str(path), "--save", str(tmp_path / "x.npz")]) == 2
    assert "--save goes with --trace" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("half", [0, 1, 30, 60, 120, 240, 719, 720, 1439, 1500, 3000])
def test_window_sums_and_maxima_are_those_of_every_window_gathered(half: int) -> None:
    """The learned limits' windows, worked out by prefix sums and doubling runs, give
    exactly what gathering each window around the clock gives (the former way)."""
    from detection.routine import MINUTES, _window_max, _window_sums

    rng = np.random.default_rng(half)
    count = rng.integers(0, 5, MINUTES)
    longest = np.where(rng.random(MINUTES) < 0.2, rng.random(MINUTES) * 9000.0, 0.0)
    centres = rng.choice(MINUTES, size=40, replace=False).astype(np.int64)
    window = (centres[:, None] + np.arange(-half, half + 1)[None, :]) % MINUTES
    assert np.array_equal(_window_sums(count, centres, half), count[window].sum(axis=1))
    assert np.array_equal(_window_max(longest, centres, half), longest[window].max(axis=1))
