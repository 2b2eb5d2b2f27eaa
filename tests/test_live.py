"""The runtime's care of live drivers, and the installer's live view (``hub check``).

A scripted driver (registered for the test) stands in for a sensor family: its events,
signs of life and failures are the test's to choose. Everything else is real: the runtime,
the local Unix socket, ``hub check`` as a separate process in a real terminal (tmux).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo

import pytest
from pydantic import Field
from rich.console import Console

from agent.check import CheckError, Walk, WalkThrough, as_json, once, render, snapshots
from agent.clock import LiveClock
from agent.config import DriverConfig, validate_config
from agent.events import EventKind, SensorEvent
from agent.localstatus import StatusServer
from agent.messages import HeartbeatMessage
from agent.runtime import Runtime
from drivers import registry
from drivers.base import Driver, DriverContext, Indication
from tests.conftest import ROOT

TZ = ZoneInfo("Europe/Amsterdam")
HOME = {
    "sensors": {
        "hall_pir": {"room": "Hallway", "role": "hallway", "kind": "motion"},
        "front_door": {"room": "Hallway", "role": "front_door", "kind": "contact"},
        "pendant": {"room": "Living", "role": "wearable", "kind": "button"},
        "thermo": {"room": "Living", "role": "living", "kind": "temperature"},
    }
}


class ScriptConfig(DriverConfig):
    type: Literal["script"] = "script"
    alive_every: float | None = None  # seconds between signs of life; None: never
    serves: list[str] = Field(default_factory=list)


class ScriptDriver(Driver):
    """Emits what the test puts in ``queue``; records what the runtime asks it to show."""

    config_model = ScriptConfig
    instances: ClassVar[list[ScriptDriver]] = []
    queue: ClassVar[asyncio.Queue[SensorEvent | tuple[str, float, str]] | None] = None

    def __init__(self, config: ScriptConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self.shown: list[Indication] = []
        ScriptDriver.instances.append(self)

    def sensors(self) -> list[str]:
        return list(self.cfg.serves)

    def indicate(self, what: Indication) -> None:
        self.shown.append(what)

    async def run(self) -> None:
        async def beat() -> None:
            assert self.cfg.alive_every is not None
            while True:
                self.ctx.health.alive()
                await asyncio.sleep(self.cfg.alive_every)

        beating = asyncio.create_task(beat()) if self.cfg.alive_every else None
        try:
            while True:
                queue = ScriptDriver.queue
                if queue is None:
                    await asyncio.sleep(0.01)
                    continue
                item = await queue.get()
                if isinstance(item, SensorEvent):
                    self.ctx.emit(item)
                else:
                    self.ctx.signal(*item)
        finally:
            if beating is not None:
                beating.cancel()


@pytest.fixture
def script_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    spec = registry.DriverSpec(
        name="script",
        config="tests.test_live:ScriptConfig",
        driver="tests.test_live:ScriptDriver",
    )
    monkeypatch.setitem(registry.BUILTIN, "script", spec)
    monkeypatch.setattr("agent.runtime.DRIVER_BACKOFF_MIN", 0.01)
    ScriptDriver.instances = []
    ScriptDriver.queue = None
    yield
    ScriptDriver.queue = None


def make_runtime(socket_path: Path | None = None, **driver: Any) -> Runtime:
    raw: dict[str, Any] = {
        "hub": {"id": "h-live"},
        "uplink": {"type": "memory"},
        "home": HOME,
        "drivers": [{"type": "script", **driver}],
    }
    if socket_path is not None:
        raw["local"] = {"socket": str(socket_path)}
    return Runtime(validate_config(raw), clock=LiveClock(TZ, synced=True))


def event(runtime: Runtime, sensor: str, kind: EventKind, value: float) -> SensorEvent:
    clock = runtime.clock
    return SensorEvent(sensor, kind, value, clock.wall(), clock.monotonic())


async def until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# ---- a hanging driver is restarted ----------------------------------------------------------
@pytest.mark.usefixtures("script_driver")
def test_a_driver_without_signs_of_life_is_taken_to_hang_and_restarted() -> None:
    runtime = make_runtime(stall_after="0.3s")

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        await until(lambda: len(ScriptDriver.instances) >= 3)
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    health = runtime.driver_health["script-0"]
    assert health.restarts >= 2
    assert health.last_error is not None and "no sign of life" in health.last_error
    beat = runtime.heartbeat_message()
    assert beat.drivers[0].name == "script-0" and beat.drivers[0].restarts == health.restarts


@pytest.mark.usefixtures("script_driver")
def test_a_quiet_driver_that_shows_signs_of_life_is_left_alone() -> None:
    runtime = make_runtime(stall_after="0.3s", alive_every=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        await asyncio.sleep(1.5)  # five stall periods without a single event
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    assert len(ScriptDriver.instances) == 1
    assert runtime.driver_health["script-0"].restarts == 0


@pytest.mark.usefixtures("script_driver")
def test_the_heartbeat_counts_the_well_drivers_and_names_only_the_others() -> None:
    """Every heartbeat listing every well driver would cost a fifth of a hub's bytes."""
    runtime = make_runtime(alive_every=0.05)
    beats: list[HeartbeatMessage] = []

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        health = runtime.driver_health
        await until(lambda: "script-0" in health and health["script-0"].state == "running")
        beats.append(runtime.heartbeat_message())
        runtime.driver_health["script-0"].malformed("a garbled payload")
        beats.append(runtime.heartbeat_message())
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    well, garbled = beats
    assert (well.drivers_ok, well.drivers) == (1, [])
    assert garbled.drivers_ok == 0
    assert [(d.name, d.state, d.malformed) for d in garbled.drivers] == [("script-0", "running", 1)]


# ---- indications: LED and buzzer ------------------------------------------------------------
@pytest.mark.usefixtures("script_driver")
def test_drivers_are_told_the_uplink_state_a_help_call_and_a_self_test() -> None:
    runtime = make_runtime()

    async def scenario() -> None:
        ScriptDriver.queue = asyncio.Queue()
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        await until(lambda: ScriptDriver.instances and ScriptDriver.instances[0].shown)
        ScriptDriver.queue.put_nowait(event(runtime, "hall_pir", EventKind.MOTION, 1))
        await asyncio.sleep(0.1)
        ScriptDriver.queue.put_nowait(event(runtime, "pendant", EventKind.BUTTON, 1))
        await until(lambda: runtime.stats.alerts["help_button:raised"] == 1)
        reply = runtime._on_command("selftest", json.dumps({"v": 1, "id": "c-1"}).encode())
        assert reply.outcome.value == "done", reply
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    shown = ScriptDriver.instances[0].shown
    assert shown[0] is Indication.UPLINK_UP  # the memory uplink is always connected
    assert Indication.UPLINK_DOWN not in shown  # nor "centre lost" while saying goodbye
    assert Indication.HELP_RAISED in shown and Indication.SELF_TEST in shown
    # nobody ran hub check, so motion does not flash the LED
    assert Indication.SENSOR_SEEN not in shown


# ---- the local status socket ----------------------------------------------------------------
def short_socket_path(tmp_path: Path) -> Path:
    """A Unix socket path short enough for sun_path (108 bytes), whatever tmp_path is."""
    path = tmp_path / "hub.sock"
    if len(str(path)) < 100:
        return path
    return Path("/tmp") / f"hub-{os.getpid()}-{time.monotonic_ns()}.sock"


@pytest.mark.usefixtures("script_driver")
def test_the_board_shows_each_sensor_its_driver_battery_signal_and_walk_state(
    tmp_path: Path,
) -> None:
    path = short_socket_path(tmp_path)
    runtime = make_runtime(path, serves=["thermo"])
    seen: list[dict[str, Any]] = []

    async def scenario() -> None:
        ScriptDriver.queue = asyncio.Queue()
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        await until(path.exists)
        snaps = snapshots(path)
        first = await asyncio.to_thread(next, snaps)
        seen.append(first)
        assert runtime.status_server is not None and runtime.status_server.watching
        q = ScriptDriver.queue
        q.put_nowait(event(runtime, "hall_pir", EventKind.MOTION, 1))
        q.put_nowait(event(runtime, "pendant", EventKind.BATTERY, 64))
        q.put_nowait(("pendant", -71, "dBm"))
        q.put_nowait(event(runtime, "ghost", EventKind.MOTION, 1))
        await until(lambda: runtime.board.lines["pendant"].signal is not None)
        for _ in range(20):
            snap = await asyncio.to_thread(next, snaps)
            if snap["strangers"] and any(r["signal"] for r in snap["sensors"]):
                seen.append(snap)
                break
        snaps.close()
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    first, last = seen
    assert first["hub"] == "h-live" and first["uplink"]["connected"] is True
    assert [r["id"] for r in first["sensors"]] == list(HOME["sensors"])
    rows = {r["id"]: r for r in last["sensors"]}
    assert rows["hall_pir"]["driver"] == "script-0"
    assert rows["hall_pir"]["last_kind"] == "motion" and rows["hall_pir"]["active_ago_s"] < 5
    assert rows["thermo"]["driver"] == "script-0"  # claimed from configuration, never heard
    assert rows["thermo"]["last_ago_s"] is None
    assert rows["pendant"]["battery"] == 64 and rows["pendant"]["signal"] == -71
    assert rows["pendant"]["signal_unit"] == "dBm" and rows["pendant"]["active_ago_s"] is None
    assert last["strangers"] == [{"id": "ghost", "events": 1}]
    assert last["drivers"][0]["state"] == "running"
    # the LED flashed for the motion, since hub check was watching
    assert Indication.SENSOR_SEEN in ScriptDriver.instances[0].shown
    assert not path.exists()  # removed at stop


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_walk_states_turn_green_then_stay_responded_and_list_the_missing() -> None:
    walk = WalkThrough(fresh=10.0, started=1000.0)

    def snap(**ago: float | None) -> dict[str, Any]:
        return {
            "v": 1,
            "hub": "h-1",
            "uplink": {"connected": False, "depth": 2},
            "drivers": [{"name": "gpio-0", "state": "retrying", "last_error": "no pins"}],
            "sensors": [
                {
                    "id": sid,
                    "room": "Hall",
                    "role": "hallway",
                    "kind": "motion",
                    "active_ago_s": a,
                    "last_ago_s": a,
                }
                for sid, a in ago.items()
            ],
            "strangers": [{"id": "0xdead", "events": 3}],
        }

    # a motion 3 s ago is green; one from before the check began is still to be walked
    states = walk.update(snap(a=3.0, b=50.0, c=None), now=1020.0)
    assert states == {"a": Walk.NOW, "b": Walk.WAITING, "c": Walk.WAITING}
    # 30 s later: a has responded (no longer green); b was triggered now
    states = walk.update(snap(a=33.0, b=1.0, c=None), now=1050.0)
    assert states == {"a": Walk.RESPONDED, "b": Walk.NOW, "c": Walk.WAITING}

    console = Console(record=True, width=140, color_system="truecolor", force_terminal=True)
    console.print(render(snap(a=33.0, b=1.0, c=None), states))
    text = console.export_text(clear=False)
    assert "centre: NOT connected (2 waiting)" in text
    assert "gpio-0 retrying (no pins)" in text
    assert "Not seen yet (1 of 3): c (Hall)" in text
    assert "Heard but not in the home map: 0xdead (3)" in text
    # the waiting sensor comes last in the table
    assert text.index(" a ") < text.index(" c ") and text.index(" b ") < text.index(" c ")
    styled = console.export_text(styles=True)
    lines = {
        plain(line).split("│")[2].strip(): line
        for line in styled.splitlines()
        if plain(line).count("│") > 3
    }
    assert "42m" in lines["b"] and "● now" in plain(lines["b"])  # green background
    assert "42m" not in lines["a"] and "42m" not in lines["c"]
    data = as_json(snap(a=33.0, b=1.0, c=None), states)
    assert data["not_seen"] == ["c"] and data["sensors"][1]["walk"] == "now"

    states = walk.update(snap(a=40.0, b=8.0, c=2.0), now=1057.0)
    console = Console(record=True, width=140)
    console.print(render(snap(a=40.0, b=8.0, c=2.0), states))
    assert "All 3 sensors responded ✓" in console.export_text()


def test_a_thermometer_counts_as_seen_when_it_reports() -> None:
    walk = WalkThrough(fresh=10.0, started=0.0)
    row = {"id": "t", "kind": "temperature", "active_ago_s": None, "reading_ago_s": 4.0}
    assert walk.update({"sensors": [row]}, now=100.0) == {"t": Walk.NOW}
    # an availability or battery report is not a reading
    row = {"id": "t", "kind": "temperature", "last_ago_s": 1.0, "reading_ago_s": None}
    walk = WalkThrough(fresh=10.0, started=0.0)
    assert walk.update({"sensors": [row]}, now=100.0) == {"t": Walk.WAITING}


def test_check_says_clearly_when_no_agent_answers(tmp_path: Path) -> None:
    with pytest.raises(CheckError, match="is the hub agent running"):
        once(tmp_path / "absent.sock", 10.0)
    dead = short_socket_path(tmp_path)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(dead))  # a socket file nobody listens on: what a crash leaves
    with pytest.raises(CheckError, match="does not answer"):
        once(dead, 10.0)
    dead.unlink()
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\nid = "h-1"\n')
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 2 and "[local] socket is not set" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 2 and "--json goes with --once" in out.stderr


def test_a_stale_socket_is_replaced_and_a_live_one_left_alone(tmp_path: Path) -> None:
    path = short_socket_path(tmp_path)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # stale: nobody listens

    def snap() -> dict[str, Any]:
        return {"v": 1, "sensors": []}

    async def scenario() -> None:
        first = StatusServer(path, snap, lambda: 0)
        assert await first.start()
        assert (os.stat(path).st_mode & 0o777) == 0o660
        second = StatusServer(path, snap, lambda: 0)
        assert not await second.start()  # another agent serves it: not stolen
        assert await asyncio.to_thread(lambda: next(snapshots(path))) == {"v": 1, "sensors": []}
        await first.stop()
        assert not path.exists()
        path.write_text("not a socket")
        third = StatusServer(path, snap, lambda: 0)
        assert not await third.start()
        assert path.read_text() == "not a socket"  # never deleted

    asyncio.run(scenario())


# ---- hub check in a real terminal -------------------------------------------------------------
@pytest.mark.usefixtures("script_driver")
def test_hub_check_in_a_terminal_turns_a_triggered_sensor_green(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (deploy/dev/setup.sh dev installs it)")
    path = short_socket_path(tmp_path)
    runtime = make_runtime(path)
    session = f"check-{os.getpid()}-{time.monotonic_ns()}"
    hub = str(Path(sys.executable).with_name("hub"))
    screens: list[str] = []

    def capture() -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-e", "-t", session],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    async def scenario() -> None:
        ScriptDriver.queue = asyncio.Queue()
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        await until(path.exists)
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                "150",
                "-y",
                "30",
                f"{hub} check --socket {path} --fresh 30",
            ],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )
        try:
            await until(lambda: "Not seen yet (4 of 4)" in capture())
            screens.append(capture())
            ScriptDriver.queue.put_nowait(event(runtime, "front_door", EventKind.CONTACT, 1))
            await until(lambda: "Not seen yet (3 of 4)" in capture())
            screens.append(capture())
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)
            runtime.request_stop()
            await task

    asyncio.run(scenario())
    before, after = screens
    door_before = next(
        line for line in before.splitlines() if "front_door" in line and "Hallway" in line
    )
    door_after = next(
        line for line in after.splitlines() if "front_door" in line and "Hallway" in line
    )
    green_bg = ("\x1b[42m", ";42m", ";42;", "\x1b[30;42m")
    assert not any(code in door_before for code in green_bg)
    assert any(code in door_after for code in green_bg), repr(door_after)
    assert "contact open" in door_after
    assert "centre: connected" in after
