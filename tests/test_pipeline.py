"""The whole pipeline: trace -> replay driver -> engine -> outbox -> uplink -> a real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo

import pytest

from agent.cli import main
from agent.clock import LiveClock
from agent.config import DriverConfig, validate_config
from agent.devtools.broker import Mosquitto, Subscriber
from agent.events import EventKind, SensorEvent
from agent.messages import AlertMessage, encode
from agent.replay import replay_runtime
from agent.runtime import Runtime
from agent.traces.format import write_trace
from agent.traces.importing import save
from agent.traces.simulate import parse_incident, simulate
from agent.uplink import MemoryUplink
from drivers import registry
from drivers.base import Driver

TZ = ZoneInfo("Europe/Amsterdam")
START = date(2026, 11, 2)


@pytest.fixture(scope="module")
def incident_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three simulated days: a help-button press on day 2, a fall on day 3."""
    incidents = [parse_incident(s, START, TZ) for s in ("help_button@d2T16:20", "fall@d3T10:40")]
    sim = simulate(3, 21, START, TZ, "typical", incidents)
    path = tmp_path_factory.mktemp("home") / "home.jsonl"
    write_trace(path, sim.header, sim.events)
    return path


def hub_config(tmp_path: Path, broker: Mosquitto, extra: str = "") -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[hub]\nid = "h-0412"\ntimezone = "Europe/Amsterdam"\n'
        f'[uplink]\ntype = "mqtt"\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'prefix = "lfs"\nwill_delay = "1s"\n{extra}',
        encoding="utf-8",
    )
    return path


def test_a_replayed_home_reaches_a_real_broker(
    mosquitto: Mosquitto, incident_home: Path, tmp_path: Path
) -> None:
    raised: list[AlertMessage] = []
    with Subscriber.on(mosquitto, "lfs/#") as centre:
        config = hub_config(tmp_path, mosquitto)
        runtime = replay_runtime(incident_home, config, "max", raised.append)
        stats = asyncio.run(runtime.run())
        kinds = [(m.kind, m.state.value) for m in raised]
        assert ("help_button", "raised") in kinds and ("inactivity", "raised") in kinds
        messages = centre.wait_until(
            lambda ms: sum(m.topic == "lfs/h-0412/alert" for m in ms) >= len(raised)
            and any(m.topic == "lfs/h-0412/status" and b'"offline"' in m.payload for m in ms),
            timeout=20,
        )
    alerts = [m for m in messages if m.topic == "lfs/h-0412/alert"]
    # every alert arrives once, in order, byte for byte as the engine made it, at QoS 1
    assert [m.payload for m in alerts] == [encode(a) for a in raised]
    assert all(m.qos == 1 for m in alerts)
    # nothing but status, heartbeat and alert left the hub
    assert {m.topic.rsplit("/", 1)[1] for m in messages} <= {"status", "heartbeat", "alert"}
    statuses = [json.loads(m.payload)["state"] for m in messages if m.topic.endswith("/status")]
    assert statuses[0] == "online" and statuses[-1] == "offline"
    beats = [json.loads(m.payload) for m in messages if m.topic.endswith("/heartbeat")]
    assert beats, "no heartbeat arrived"
    assert beats[-1]["hub"] == "h-0412" and beats[-1]["outbox"]["dropped"] == 0
    assert stats.events > 1000 and stats.unknown_sensors == {}


def test_the_same_trace_gives_the_same_alert_bytes(incident_home: Path) -> None:
    def once() -> list[bytes]:
        got: list[AlertMessage] = []
        asyncio.run(replay_runtime(incident_home, None, "max", got.append).run())
        return [encode(m) for m in got]

    first = once()
    assert first and first == once()


def test_replay_at_a_set_speed_keeps_time(tmp_path: Path) -> None:
    """At 3600x, an hour of trace takes about a second, and the timers still fire."""
    sim = simulate(1, 4, START, TZ, "sparse", [parse_incident("help_button@d1T00:30", START, TZ)])
    events = [e for e in sim.events if e.wall <= sim.events[0].wall + 5400]
    header = sim.header.model_copy(update={"end": None})
    path = tmp_path / "short.jsonl"
    write_trace(path, header, events)
    got: list[AlertMessage] = []
    runtime = replay_runtime(path, None, 3600.0, got.append)
    loop = asyncio.new_event_loop()
    try:
        t0 = loop.time()
        loop.run_until_complete(runtime.run())
        elapsed = loop.time() - t0
    finally:
        loop.close()
    span = events[-1].wall - events[0].wall
    assert elapsed >= span / 3600 * 0.9  # it waited, rather than running at full speed
    assert [m.kind for m in got] == ["help_button"]


def test_cli_simulate_then_replay_writes_the_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "home.jsonl"
    assert main(["simulate", "--days", "2", "--seed", "5", "--incident", "fall@d2T09:30",
                 "-o", str(trace)]) == 0
    assert (tmp_path / "home.labels.jsonl").is_file()
    out = tmp_path / "alerts.jsonl"
    assert main(["replay", str(trace), "--alerts-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "alerts inactivity:raised: 1" in printed
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(a["kind"], a["state"]) for a in lines] == [("inactivity", "raised")]
    assert main(["simulate", "--days", "2", "--incident", "fall@tuesday", "-o", str(trace)]) == 2


def test_cli_reports_a_missing_or_broken_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: cannot open" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not a trace\n")
    assert main(["replay", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


# ---- live mode: supervision of a driver that fails ------------------------------------------


class FlakyConfig(DriverConfig):
    type: Literal["flaky"] = "flaky"
    failures: int = 2


class FlakyDriver(Driver):
    """Raises ``failures`` times, then presses the help button and waits."""

    config_model: ClassVar[type[DriverConfig]] = FlakyConfig
    attempts: ClassVar[int] = 0

    async def run(self) -> None:
        cfg = self.config
        assert isinstance(cfg, FlakyConfig)
        FlakyDriver.attempts += 1
        if FlakyDriver.attempts <= cfg.failures:
            raise OSError("device unplugged")
        clock = self.ctx.clock
        self.ctx.emit(SensorEvent("button", EventKind.BUTTON, 1.0, clock.wall(), clock.monotonic()))
        await asyncio.Event().wait()


@pytest.fixture
def flaky_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    spec = registry.DriverSpec("flaky", f"{__name__}:FlakyConfig", f"{__name__}:FlakyDriver")
    monkeypatch.setitem(registry.BUILTIN, "flaky", spec)
    monkeypatch.setattr("agent.runtime.DRIVER_BACKOFF_MIN", 0.01)
    FlakyDriver.attempts = 0
    yield


@pytest.mark.usefixtures("flaky_driver")
def test_a_failing_live_driver_is_restarted_and_the_agent_keeps_running() -> None:
    config = validate_config(
        {
            "hub": {"id": "h-live"},
            "uplink": {"type": "memory"},
            "home": {"sensors": {"button": {"room": "Living", "role": "wearable"}}},
            "drivers": [{"type": "flaky", "failures": 2}],
        }
    )
    runtime = Runtime(config, clock=LiveClock(TZ, synced=True))

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        for _ in range(500):
            if runtime.stats.alerts:
                break
            await asyncio.sleep(0.01)
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    health = next(iter(runtime.driver_health.values()))
    assert FlakyDriver.attempts == 3
    assert health.last_error == "OSError: device unplugged" and health.restarts == 2
    assert runtime.stats.alerts["help_button:raised"] == 1
    uplink = runtime.uplink
    assert isinstance(uplink, MemoryUplink)
    topics = [t for t, _ in uplink.sent]
    assert "alert" in topics and "heartbeat" in topics


# ---- the recorded real homes -----------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("name", "tz", "events"),
    [("ordonez", "Europe/Madrid", 818), ("kasteren", "Europe/Amsterdam", 2638)],
)
def test_the_real_homes_replay_without_error(
    shared_data: Path, tmp_path: Path, name: str, tz: str, events: int
) -> None:
    from agent.traces.kasteren import import_kasteren
    from agent.traces.ordonez import import_ordonez

    if name == "ordonez":
        imported = import_ordonez([shared_data / "ordonez-home-a"], ZoneInfo(tz))
    else:
        imported = import_kasteren([shared_data / "kasteren-2008"], ZoneInfo(tz))
    trace = tmp_path / f"{name}.jsonl"
    save(imported, trace)
    got: list[AlertMessage] = []
    runtime = replay_runtime(trace, None, "max", got.append)
    stats = asyncio.run(runtime.run())
    assert stats.events == events
    assert stats.unknown_sensors == {}
    assert sum(h.malformed_count for h in runtime.driver_health.values()) == 0
    # every raised alert is resolved when the person is seen again, or still open at the end
    raised = {a.id for a in got if a.state.value == "raised"}
    resolved = {a.id for a in got if a.state.value == "resolved"}
    assert resolved <= raised


def test_the_demo_runs_end_to_end(
    mosquitto: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hub demo``: its own broker, a simulated home, alerts at the centre, the truth."""
    from agent.demo import run_demo

    del mosquitto  # only to skip where Mosquitto is absent; the demo starts its own
    code = run_demo(days=3, seed=3, incidents=["help_button@d2T16:20"], workdir=tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "status: hub online" in out and "status: hub offline" in out
    assert "help_button  raised" in out
    assert "the help_button of Tue 03 Nov 16:20, detected after 0 min" in out
    assert (tmp_path / "home.jsonl").is_file() and (tmp_path / "hub.toml").is_file()
