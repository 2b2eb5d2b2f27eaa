"""Golden scenarios: each folder under tests/traces holds a configuration, an input trace
and the alerts the hub must send for it, byte for byte.

    tests/traces/<scenario>/config.toml     the hub's configuration (uplink: memory)
    tests/traces/<scenario>/trace.jsonl     the input (trace format v1)
    tests/traces/<scenario>/expected.jsonl  every alert message, as published
    tests/traces/<scenario>/outcome.toml    optional: unknown sensors, malformed lines

After a deliberate change of behaviour, rewrite the expectations with
``LEEFSAMEN_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from pathlib import Path

import pytest

from agent.messages import AlertMessage, encode
from agent.replay import replay_runtime

HERE = Path(__file__).parent / "traces"
SCENARIOS = sorted(p.name for p in HERE.iterdir() if (p / "trace.jsonl").is_file())
UPDATE = os.environ.get("LEEFSAMEN_UPDATE_GOLDEN") == "1"


def replay(folder: Path) -> tuple[list[bytes], dict[str, object]]:
    published: list[AlertMessage] = []
    runtime = replay_runtime(
        folder / "trace.jsonl", folder / "config.toml", "max", published.append
    )
    stats = asyncio.run(runtime.run())
    malformed = sum(h.malformed_count for h in runtime.driver_health.values())
    outcome: dict[str, object] = {
        "events": stats.events,
        "unknown_sensors": dict(sorted(stats.unknown_sensors.items())),
        "malformed_lines": malformed,
    }
    return [encode(m) for m in published], outcome


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 5, SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_gives_exactly_the_expected_alerts(scenario: str) -> None:
    folder = HERE / scenario
    got, outcome = replay(folder)
    expected_path = folder / "expected.jsonl"
    if UPDATE:
        expected_path.write_bytes(b"".join(line + b"\n" for line in got))
    expected = [line for line in expected_path.read_bytes().splitlines() if line]
    assert got == expected
    outcome_path = folder / "outcome.toml"
    if outcome_path.exists():
        want = tomllib.loads(outcome_path.read_text(encoding="utf-8"))
        for key, value in want.items():
            assert outcome[key] == value, key


@pytest.mark.parametrize("scenario", SCENARIOS[:2])
def test_the_same_trace_gives_the_same_bytes_twice(scenario: str) -> None:
    first, _ = replay(HERE / scenario)
    second, _ = replay(HERE / scenario)
    assert first == second
