"""``hub status`` against a running agent, a stopped one, and a damaged outbox file.

The agent is a real ``Runtime`` with its local status socket and a SQLite outbox; a
scripted driver (the one of tests/test_live.py) presses the help button, and the mode is
set through the agent's own command handler. The running agent publishes to a real
Mosquitto; the stopped one had no broker to reach, so its messages wait in the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.cli import main
from agent.clock import LiveClock
from agent.config import load_config
from agent.devtools.broker import Mosquitto, free_port
from agent.events import EventKind, SensorEvent
from agent.hubstatus import read_outbox
from agent.outbox.sqlite import SqliteOutbox
from agent.runtime import Runtime
from drivers import registry
from tests.conftest import ROOT
from tests.test_live import ScriptDriver
from tests.test_outbox import alert

pytestmark = pytest.mark.timeout(60)

TZ = ZoneInfo("Europe/Amsterdam")
WAIT = 20.0  # generous: every wait ends on an event, this only bounds a failure
HOME = """
[home.sensors.hall_pir]
room = "Hallway"
role = "hallway"
kind = "motion"
[home.sensors.pendant]
room = "Living"
role = "wearable"
kind = "button"
"""


@pytest.fixture
def script_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The scripted driver of tests/test_live.py, under the type name "script"."""
    spec = registry.DriverSpec(
        name="script",
        config="tests.test_live:ScriptConfig",
        driver="tests.test_live:ScriptDriver",
    )
    monkeypatch.setitem(registry.BUILTIN, "script", spec)
    ScriptDriver.instances = []
    ScriptDriver.queue = None
    yield
    ScriptDriver.queue = None


def socket_path(folder: Path) -> Path:
    path = folder / "hub.sock"
    if len(str(path)) < 100:
        return path
    return Path("/tmp") / f"status-{os.getpid()}-{time.monotonic_ns()}.sock"


def write_config(folder: Path, port: int, *, socket: Path | None, driver: bool = True) -> Path:
    text = (
        '[hub]\nid = "h-0412"\n'
        f'[uplink]\nhost = "127.0.0.1"\nport = {port}\nreconnect_min = "0.1s"\n'
        'reconnect_max = "1s"\n'
        f'[outbox]\npath = "{folder / "outbox.db"}"\n'
    )
    if socket is not None:
        text += f'[local]\nsocket = "{socket}"\n'
    if driver:
        text += '[[drivers]]\ntype = "script"\n'
    path = folder / "hub.toml"
    path.write_text(text + HOME, encoding="utf-8")
    return path


async def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"not in time: {what}"
        await asyncio.sleep(0.02)


async def press_help_and_set(runtime: Runtime, mode: str, days: int) -> None:
    """Press the pendant's button, wait for the alert, then set the mode for ``days``."""
    await until(lambda: ScriptDriver.instances, "the driver runs")
    queue = ScriptDriver.queue
    assert queue is not None
    clock = runtime.clock
    for sensor, kind in (("hall_pir", EventKind.MOTION), ("pendant", EventKind.BUTTON)):
        queue.put_nowait(SensorEvent(sensor, kind, 1, clock.wall(), clock.monotonic()))
    await until(lambda: runtime.stats.alerts["help_button:raised"] == 1, "the help alert")
    until_at = (datetime.now(TZ) + timedelta(days=days)).replace(microsecond=0)
    command = {"v": 1, "id": "c-1", "mode": mode, "until": until_at.isoformat()}
    reply = runtime._on_command("mode", json.dumps(command).encode())
    assert reply.outcome.value == "done", reply


def status(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["status", "--config", str(config), *extra])
    return code, capsys.readouterr().out


@pytest.mark.usefixtures("script_driver")
def test_status_of_a_running_agent_shows_the_open_alert_mode_and_last_publish(
    mosquitto: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = socket_path(tmp_path)
    config = write_config(tmp_path, mosquitto.port, socket=sock)
    runtime = Runtime(load_config(config), clock=LiveClock(TZ, synced=True))
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        ScriptDriver.queue = asyncio.Queue()
        task = asyncio.create_task(runtime.run(drain_timeout=2.0))
        await until(lambda: runtime.uplink.connected and sock.exists(), "the agent is up")
        await press_help_and_set(runtime, "away", 2)
        await until(lambda: runtime.outbox.depth() == 0, "the alert is acknowledged")
        seen["json"] = await asyncio.to_thread(status, config, capsys, "--json")
        seen["text"] = await asyncio.to_thread(status, config, capsys)
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    code, out = seen["json"]
    assert code == 0
    report = json.loads(out)
    assert report["agent"]["running"] is True and report["source"] == "agent"
    assert report["unknown"] == []
    (alert,) = report["alerts"]
    assert alert["kind"] == "help_button" and alert["severity"] == "urgent"
    assert alert["room"] == "Living" and alert["id"].startswith("help_button-")
    assert report["mode"] == "away" and report["mode_until"] is not None
    assert report["uplink"]["connected"] is True and report["uplink"]["last_ack"] is not None
    assert report["outbox"]["depth"] == 0
    assert report["health"]["drivers"][0]["name"] == "script-0"
    assert report["health"]["drivers"][0]["state"] == "running"
    assert "sensors" not in report  # the sensor-level board is for hub check only
    code, text = seen["text"]
    assert code == 0
    assert "agent running" in text and "help_button" in text and "urgent" in text
    assert "away until" in text and "centre: connected" in text


@pytest.mark.usefixtures("script_driver")
def test_status_of_a_stopped_agent_reads_the_outbox_file_without_touching_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = socket_path(tmp_path)
    config = write_config(tmp_path, free_port(), socket=sock)  # no broker: messages wait
    runtime = Runtime(load_config(config), clock=LiveClock(TZ, synced=True))

    async def scenario() -> None:
        ScriptDriver.queue = asyncio.Queue()
        task = asyncio.create_task(runtime.run(drain_timeout=0.2))
        await until(sock.exists, "the agent is up")
        await press_help_and_set(runtime, "holiday", 3)
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    outbox = tmp_path / "outbox.db"
    files = sorted(p.name for p in tmp_path.iterdir())
    digest = hashlib.sha256(outbox.read_bytes()).hexdigest()

    code, out = status(config, capsys, "--json")
    assert code == 3
    report = json.loads(out)
    assert report["agent"]["running"] is False and report["source"] == "outbox file"
    assert "is the hub agent running" in report["agent"]["detail"]
    assert report["outbox"]["depth"] >= 1 and report["outbox"]["oldest_s"] is not None
    (alert,) = report["alerts"]
    assert alert["kind"] == "help_button" and alert["room"] == "Living"
    assert report["mode"] == "holiday" and report["mode_until"] is not None
    assert report["uplink"] == {"connected": None, "last_ack": None}
    assert report["health"]["silent"] is None and report["unknown"]
    code, text = status(config, capsys)
    assert code == 3
    assert "agent NOT running" in text and "help_button" in text and "holiday until" in text
    assert "unknown while the agent is not running" in text
    # read-only: the file is as the agent left it, and nothing was made beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    assert hashlib.sha256(outbox.read_bytes()).hexdigest() == digest


def test_an_outbox_left_by_a_crash_is_read_with_what_its_wal_holds(tmp_path: Path) -> None:
    live = tmp_path / "live"
    crashed = tmp_path / "crashed"
    live.mkdir()
    crashed.mkdir()
    outbox = SqliteOutbox(live / "outbox.db", 1 << 20)
    try:
        outbox.add(alert(1), time.time() - 30)
        for suffix in ("", "-wal", "-shm"):  # what a power cut leaves: the WAL not yet merged
            shutil.copy(live / f"outbox.db{suffix}", crashed / f"outbox.db{suffix}")
    finally:
        outbox.close()
    saved = read_outbox(crashed / "outbox.db")
    assert saved.depth == 1 and saved.oldest is not None


def test_a_damaged_outbox_file_is_reported_plainly(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port(), socket=socket_path(tmp_path), driver=False)
    (tmp_path / "outbox.db").write_bytes(b"this is no database" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3
    assert "Traceback" not in done.stdout + done.stderr
    said = " ".join(done.stdout.split())
    assert "agent NOT running" in said and "cannot be read" in said and "moves such a file" in said


def test_bad_configuration_and_no_way_to_ask_have_their_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read the file" in capsys.readouterr().err
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\nid = "h-0412"\n', encoding="utf-8")
    code, out = status(config, capsys, "--json")
    assert code == 3
    report = json.loads(out)
    assert "[local] socket is not set" in report["agent"]["detail"]
    assert report["source"] == "nothing" and "kept in memory" in report["notes"][0]
