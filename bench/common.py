"""What every benchmark hands to ``bench/all.py``, which writes BENCHMARKS.md.

A benchmark module offers ``run(quick: bool) -> list[Figure]``: ``quick`` is a shorter
run (fewer repeats, a smaller home) for a first look; the published figures come from the
full run. Each figure carries its baseline, measured in the same run, and its goal, so a
row of BENCHMARKS.md can be read without the code.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure, its baseline from the same run, and its goal."""

    name: str  # what was measured, e.g. "replay, end to end"
    value: str  # the median, formatted with its unit, e.g. "41,200 events/s"
    baseline: str  # the baseline and its value, e.g. "parse only: 130,000 events/s (ratio 0.32)"
    goal: str  # e.g. ">= 100,000 events/s and ratio >= 0.3"; "" when there is none
    met: bool | None  # None: a figure with no goal of its own
    note: str = ""  # how it was measured, in a few words


def median(values: list[float]) -> float:
    """The median of a non-empty list (the figure quoted everywhere)."""
    return statistics.median(values)
