"""What every benchmark hands to ``bench/all.py``, which writes BENCHMARKS.md.

A benchmark module offers ``run(quick: bool) -> list[Figure]``: ``quick`` is a shorter
run (fewer repeats, a smaller home) for a first look; the published figures come from the
full run. Each figure carries its baseline, measured in the same run, and its goal, so a
row of BENCHMARKS.md can be read without the code.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.traces.format import write_trace  # noqa: E402
from agent.traces.simulate import Incident, simulate  # noqa: E402

CACHE = ROOT / "bench" / ".cache"


@dataclass(frozen=True)
class Figure:
    """One measured figure, its baseline from the same run, and its goal."""

    name: str  # what was measured, e.g. "replay, end to end"
    value: str  # the median, formatted with its unit, e.g. "41,200 events/s"
    baseline: str  # the baseline and its value, e.g. "parse only: 130,000 events/s (ratio 0.32)"
    goal: str  # e.g. ">= 100,000 events/s and ratio >= 0.3"; "" when there is none
    met: bool | None  # None: a figure with no goal of its own
    note: str = ""  # how it was measured, in a few words


def print_figures(figures: list[Figure]) -> None:
    """Each figure as a benchmark prints it at the end of its run: the value and whether
    it meets its goal, then its baseline, goal and note where it has them."""
    for fig in figures:
        verdict = "" if fig.met is None else (" (goal met)" if fig.met else " (goal MISSED)")
        print(f"- {fig.name}: {fig.value}{verdict}")
        if fig.baseline:
            print(f"    baseline: {fig.baseline}")
        if fig.goal:
            print(f"    goal: {fig.goal}")
        if fig.note:
            print(f"    {fig.note}")


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo ("unknown CPU" when it has none)."""
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def median(values: list[float]) -> float:
    """The median of a non-empty list (the figure quoted everywhere)."""
    return statistics.median(values)


def busy_home(days: int, presses: bool = False) -> Path:
    """A simulated busy home of ``days`` days (seed 1, from 2025-01-01, Amsterdam), made
    once and kept in bench/.cache; ``presses``: with a help-button press every day at
    16:20, so that the home has alerts to store and send."""
    name = f"busy-{days}d-seed1{'-presses' if presses else ''}.jsonl"
    path = CACHE / name
    if not path.exists():
        start, tz = date(2025, 1, 1), ZoneInfo("Europe/Amsterdam")
        incidents = [
            Incident("help_button", datetime.combine(start + timedelta(days=d), time(16, 20), tz))
            for d in range(days)
            if presses
        ]
        sim = simulate(days, 1, start, tz, "busy", incidents)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_trace(tmp, sim.header, sim.events)
        tmp.rename(path)
    return path


def probe_alerts(path: str, count: int) -> None:
    """Store ``count`` alerts in a new SQLite outbox at ``path``, each with a state record
    as the runtime gives it, between two markers on stderr (for strace)."""
    import os

    from agent.messages import AlertMessage, AlertState, Severity
    from agent.outbox.sqlite import SqliteOutbox

    box = SqliteOutbox(Path(path), 10_000_000)
    at = datetime(2026, 1, 5, 12, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    common = {
        "hub": "h-0412", "kind": "help_button", "severity": Severity.URGENT,
        "state": AlertState.RAISED, "since": at, "at": at, "room": "living",
        "clock_synced": True, "summary": "The help button was pressed.", "evidence": {},
    }  # fmt: skip
    alerts = [AlertMessage(id=f"a{n}", seq=n + 1, **common) for n in range(count)]
    os.write(2, b"START\n")
    for n, message in enumerate(alerts):
        box.add(message, now=float(n), state={"engine": b"x" * 400})
    os.write(2, b"END\n")
    box.close()
