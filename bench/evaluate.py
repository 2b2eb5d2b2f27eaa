"""Time of the whole ``hub evaluate`` protocol on a 4-week home (goal: <= 10 s).

Homes: a simulated 28-day typical home (always), and the two recorded homes from
``../shared/data`` when present (imported into bench/.cache). Baseline, in the same run:
a plain replay of the same events through the detectors once, without onsets, which is
the least the protocol can cost.

    .venv/bin/python bench/evaluate.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.detectconfig import DetectionConfig  # noqa: E402
from agent.evaluate import evaluate_home, run_system  # noqa: E402
from agent.traces.format import iter_events, read_header, write_labels, write_trace  # noqa: E402
from agent.traces.simulate import simulate  # noqa: E402
from bench.common import CACHE, Figure  # noqa: E402

SHARED = Path(os.environ.get("LEEFSAMEN_SHARED_DATA", ROOT.parent / "shared" / "data"))


def simulated() -> Path:
    path = CACHE / "typical-28d-seed5.jsonl"
    if not path.exists():
        sim = simulate(28, 5, date(2026, 2, 2), ZoneInfo("Europe/Amsterdam"), "typical")
        CACHE.mkdir(parents=True, exist_ok=True)
        write_trace(path, sim.header, sim.events)
        write_labels(path.with_name(path.stem + ".labels.jsonl"), sim.labels)
    return path


def recorded() -> list[Path]:
    from agent.cli import main as hub

    found = []
    specs = [
        ("ordonez-home-a", "ordonez", "Europe/Madrid"),
        ("kasteren-2008", "kasteren", "Europe/Amsterdam"),
    ]
    for folder, fmt, zone in specs:
        src = SHARED / folder
        if not src.is_dir():
            print(f"skipped {folder}: not found under {SHARED}")
            continue
        out = CACHE / f"{fmt}.jsonl"
        if not out.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            hub(["trace", "import", fmt, str(src), "-o", str(out), "--tz", zone])
        found.append(out)
    return found


def replay_once(trace: Path) -> float:
    header = read_header(trace)
    events = list(iter_events(trace))
    t0 = time.perf_counter()
    end = header.end.timestamp() if header.end else events[-1].wall
    run_system("hub", events, header.home, header.zone, DetectionConfig(), None, end, end, [], 0)
    return time.perf_counter() - t0


def run(quick: bool, repeat: int = 3) -> list[Figure]:
    """The protocol's time on each home, medians of ``repeat`` (quick: 1)."""
    if quick:
        repeat = 1
    homes = [simulated(), *recorded()]
    figures = []
    print(f"{'home':<32}{'days':>6}{'events':>8}{'replay s':>10}{'evaluate s':>12}{'ratio':>7}")
    for trace in homes:
        n = sum(1 for _ in iter_events(trace))
        replays = [replay_once(trace) for _ in range(repeat)]
        evals = []
        days = 0.0
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = evaluate_home(trace)
            evals.append(time.perf_counter() - t0)
            days = res.days
        r, e = statistics.median(replays), statistics.median(evals)
        name = trace.stem
        print(f"{name:<32}{days:>6.1f}{n:>8}{r:>10.2f}{e:>12.2f}{e / r:>7.1f}")
        figures.append(
            Figure(
                f"hub evaluate, {name} ({days:.0f} days, {n:,} events)",
                f"{e:.2f} s",
                f"one plain replay of the same events: {r:.2f} s (x {e / r:.1f})",
                "<= 10 s for a 4-week home",
                e <= 10 * max(1.0, days / 28),
                f"the whole protocol: learn 7 days, false alarms, an onset every 2 h; "
                f"median of {repeat}",
            )
        )
    print(f"medians of {repeat}; goal: evaluate <= 10 s for a 4-week home")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run(False, args.repeat)


if __name__ == "__main__":
    main()
