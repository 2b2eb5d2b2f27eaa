"""Privacy: nothing sensor-level leaves the home.

A whole home is replayed into a real Mosquitto while a subscriber to ``#`` records every
message the broker received. Only status, heartbeat and alert messages may be there, each
exactly one of the outbound models, none carrying an event sequence, a sensor's times of
use or a sensor id outside the maintenance lists of the heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.devtools.broker import Mosquitto, Received, Subscriber
from agent.messages import AlertMessage, HeartbeatMessage, StatusMessage
from agent.replay import replay_runtime
from agent.traces.format import read_header, write_trace
from agent.traces.importing import save
from agent.traces.simulate import parse_incident, simulate

MODELS = {"alert": AlertMessage, "heartbeat": HeartbeatMessage, "status": StatusMessage}
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def simulated_month(folder: Path) -> Path:
    tz = ZoneInfo("Europe/Amsterdam")
    start = date(2026, 11, 2)
    incidents = [parse_incident(s, start, tz) for s in ("help_button@d9T11:00", "fall@d29T16:00")]
    sim = simulate(30, 17, start, tz, "typical", incidents)
    path = folder / "month.jsonl"
    write_trace(path, sim.header, sim.events)
    return path


def real_home(folder: Path) -> Path | None:
    from tests.conftest import shared_data_dir

    data = shared_data_dir() / "kasteren-2008"
    if not data.is_dir():
        return None
    from agent.traces.kasteren import import_kasteren

    path = folder / "kasteren.jsonl"
    save(import_kasteren([data], ZoneInfo("Europe/Amsterdam")), path)
    return path


def capture(broker: Mosquitto, trace: Path, folder: Path) -> tuple[list[Received], int]:
    config = folder / "hub.toml"
    config.write_text(
        f'[hub]\nid = "h-0412"\n[uplink]\ntype = "mqtt"\nhost = "{broker.host}"\n'
        f'port = {broker.port}\nprefix = "lfs"\n',
        encoding="utf-8",
    )
    with Subscriber.on(broker, "#") as everything:
        runtime = replay_runtime(trace, config, "max")
        stats = asyncio.run(runtime.run())
        sent = sum(stats.alerts.values())
        return everything.wait_until(
            lambda ms: sum(m.topic.endswith("/alert") for m in ms) >= sent
            and any(m.topic.endswith("/status") and b"offline" in m.payload for m in ms),
            timeout=30,
        ), stats.events


@pytest.mark.parametrize("home", ["simulated month", "van Kasteren (real)"])
def test_only_conclusions_leave_the_home(mosquitto: Mosquitto, tmp_path: Path, home: str) -> None:
    trace = simulated_month(tmp_path) if home == "simulated month" else real_home(tmp_path)
    if trace is None:
        pytest.skip("../shared/data/kasteren-2008 is absent")
    header = read_header(trace)
    sensor_ids = set(header.home.sensors)
    received, events = capture(mosquitto, trace, tmp_path)
    assert events > 1000
    total = 0
    alerts = 0
    for msg in received:
        total += len(msg.topic) + len(msg.payload)
        prefix, hub, suffix = msg.topic.split("/")
        assert (prefix, hub) == ("lfs", "h-0412")
        model = MODELS[suffix]  # any other topic is a KeyError: a failure
        parsed = model.model_validate_json(msg.payload)  # extra fields are refused
        body = json.loads(msg.payload)
        if suffix == "alert":
            alerts += 1
            assert isinstance(parsed, AlertMessage)
            # a conclusion with a few numbers: no lists, no sensor ids, at most two times
            assert all(isinstance(v, int | float) for v in body["evidence"].values())
            text = msg.payload.decode()
            assert not any(re.search(rf"\b{re.escape(s)}\b", text) for s in sensor_ids), text
            assert len(TIME.findall(text)) == 2  # since and at, nothing more
            assert len(msg.payload) < 700
        elif suffix == "heartbeat":
            # sensor ids only as devices needing maintenance, never with times
            listed = set(body["sensors"]["silent"]) | set(body["sensors"]["battery_low"])
            assert listed <= sensor_ids
            assert len(TIME.findall(msg.payload.decode())) == 1
    assert alerts >= 1
    assert header.start is not None and header.end is not None
    per_day = total / ((header.end - header.start).total_seconds() / 86400)
    # the design's budget: at most 50 KB a day per home upstream
    assert per_day <= 50 * 1024, per_day


def test_the_outbox_refuses_anything_but_conclusions() -> None:
    from agent.outbox.memory import MemoryOutbox

    outbox = MemoryOutbox(1 << 20)
    with pytest.raises(TypeError):
        outbox.add({"t": "2026-11-10T09:00:00+01:00", "s": "bed", "v": 1}, 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        outbox.add(StatusMessage(state="online", version="1"), 0.0)  # type: ignore[arg-type]
