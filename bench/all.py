"""Run every benchmark and write BENCHMARKS.md: each figure, its baseline, its goal.

    .venv/bin/python bench/all.py [--quick] [--only replay,evaluate,...] [--out BENCHMARKS.md]

The benchmarks run one after another (never two at once: they would measure each other),
each in this process through its ``run(quick)``; their own output goes by as they run.
``--quick`` is a first look (smaller homes, fewer repeats); the published figures come
from a full run, which takes about half an hour on two cores. A benchmark that fails is
written down as failed, the others still run, and the exit status is 1.

Each benchmark's last figures are kept in bench/.cache/results.json, so ``--only``
measures some again and BENCHMARKS.md still shows the others, each section with the
time and command of its own run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Figure, cpu_model  # noqa: E402

#: module -> what it measures, in the order they run (the cheap and quiet ones first)
BENCHMARKS = {
    "replay": "replay throughput",
    "evaluate": "the evaluation protocol",
    "upstream": "bytes upstream a day",
    "uplink": "latency and disk",
    "footprint": "startup, memory, CPU",
    "fleet": "a fleet of simulated hubs against one Mosquitto",
}


def machine() -> list[str]:
    """What the figures were measured on."""
    cpu = cpu_model()
    with open("/proc/meminfo", encoding="utf-8") as fh:
        mem_kb = int(fh.readline().split()[1])
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    version = "not installed"
    if Path(mosquitto).exists():
        out = subprocess.run(
            [mosquitto, "-h"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
        version = out.splitlines()[0] if out else "unknown"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; memory {mem_kb / 1024 / 1024:.1f} GiB",
        f"- {platform.system()} {platform.release()} ({platform.machine()}); "
        f"Python {platform.python_version()}; {version}",
    ]


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


RESULTS = ROOT / "bench" / ".cache" / "results.json"


def render(results: dict[str, dict[str, object]]) -> str:
    met = {True: "met", False: "**missed**", None: "-"}
    lines = [
        "# Benchmarks",
        "",
        "Measured by `bench/all.py`; every figure is a median, next to a baseline measured in",
        "the same run. Written by the command, not by hand: run it again to check.",
        "",
        *machine(),
        "",
        "These machines are not the hub: a Raspberry Pi Zero 2 W (four Cortex-A53 cores at",
        "1 GHz, 512 MB) is several times slower per core, and its SD card syncs in",
        "milliseconds. Ratios to the baselines carry over better than absolute figures.",
        "",
    ]
    for module, about in BENCHMARKS.items():
        result = results.get(module)
        if result is None:
            continue
        lines += [f"## {about} (`bench/{module}.py`)", ""]
        lines += [f"Run {result['when']} UTC, {result['minutes']} min: `{result['command']}`", ""]
        if result.get("failed"):
            lines += ["Failed:", "", "```", str(result["failed"]).rstrip(), "```", ""]
            continue
        figures = [Figure(**f) for f in result["figures"]]  # type: ignore[attr-defined]
        lines += ["| figure | median | baseline, same run | goal | |", "|---|---|---|---|---|"]
        for fig in figures:
            lines.append(
                f"| {cell(fig.name)} | {cell(fig.value)} | {cell(fig.baseline)} | "
                f"{cell(fig.goal)} | {met[fig.met]} |"
            )
        notes = [f"- {cell(fig.name)}: {cell(fig.note)}" for fig in figures if fig.note]
        if notes:
            lines += ["", *notes]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a first look, not for publishing")
    parser.add_argument("--only", help="comma-separated: " + ",".join(BENCHMARKS))
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    chosen = list(BENCHMARKS) if args.only is None else args.only.split(",")
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results: dict[str, dict[str, object]] = {}
    if RESULTS.exists():
        results = json.loads(RESULTS.read_text(encoding="utf-8"))
    flags = (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    failures = 0
    for name in chosen:
        print(f"\n===== {name}: {BENCHMARKS[name]} =====", flush=True)
        started = time.monotonic()
        result: dict[str, object] = {"command": f".venv/bin/python bench/all.py{flags}"}
        try:
            module = importlib.import_module(f"bench.{name}")
            figures = module.run(args.quick)
            result["figures"] = [dataclasses.asdict(f) for f in figures]
            for fig in figures:
                verdict = {True: "met", False: "MISSED", None: "-"}[fig.met]
                print(f"  {name}: {fig.name}: {fig.value} ({verdict})")
        except Exception:
            result["failed"] = traceback.format_exc()
            print(result["failed"], file=sys.stderr)
            failures += 1
        result["when"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
        result["minutes"] = round((time.monotonic() - started) / 60, 1)
        results[name] = result
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1), encoding="utf-8")
        args.out.write_text(render(results) + "\n", encoding="utf-8")
    print(f"\nwritten: {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
