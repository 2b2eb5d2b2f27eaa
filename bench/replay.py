"""Replay throughput: a simulated year of a busy home through the whole pipeline.

Baseline, in the same run: a parse-only pass over the same file (read, decode, build
events). Goal: >= 100,000 events/s end to end and >= 0.3 of the parse-only rate.

    .venv/bin/python bench/replay.py [--days 365] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.replay import replay_runtime  # noqa: E402
from agent.traces.format import iter_trace  # noqa: E402
from bench.common import Figure, busy_home  # noqa: E402


def parse_only(path: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    for _ in iter_trace(path):
        n += 1
    return time.perf_counter() - t0, n


def end_to_end(path: Path) -> tuple[float, int, int]:
    alerts: list[object] = []
    runtime = replay_runtime(path, None, "max", alerts.append)
    t0 = time.perf_counter()
    stats = asyncio.run(runtime.run())
    return time.perf_counter() - t0, stats.events, len(alerts)


def run(quick: bool, days: int = 365, repeat: int = 3) -> list[Figure]:
    """The replay rate of a simulated year (quick: 28 days), medians of ``repeat`` runs."""
    logging.basicConfig(level=logging.ERROR)
    if quick:
        days = 28
    path = busy_home(days)
    parse_s, e2e_s = [], []
    n_events = n_alerts = 0
    for _ in range(repeat):  # interleaved, so drift in the machine hits both alike
        s, n_events = parse_only(path)
        parse_s.append(s)
        s, replayed, n_alerts = end_to_end(path)
        assert replayed == n_events, (replayed, n_events)
        e2e_s.append(s)
    parse_rate = n_events / statistics.median(parse_s)
    e2e_rate = n_events / statistics.median(e2e_s)
    ratio = e2e_rate / parse_rate
    print(f"events: {n_events:,} ({days} simulated days, busy profile); alerts: {n_alerts}")
    print(f"parse only : median {statistics.median(parse_s):6.2f} s  {parse_rate:>10,.0f} events/s")
    print(f"end to end : median {statistics.median(e2e_s):6.2f} s  {e2e_rate:>10,.0f} events/s")
    print(f"ratio      : {ratio:.2f} (goal >= 0.30); end to end goal >= 100,000/s")
    return [
        Figure(
            "replay, end to end",
            f"{e2e_rate:,.0f} events/s",
            f"parse only {parse_rate:,.0f} events/s; ratio {ratio:.2f}",
            ">= 100,000 events/s and ratio >= 0.3",
            e2e_rate >= 100_000 and ratio >= 0.3,
            f"{n_events:,} events, {days} simulated days of a busy home; median of {repeat}",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run(False, args.days, args.repeat)


if __name__ == "__main__":
    main()
