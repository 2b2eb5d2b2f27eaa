"""The agent tells systemd how it is: READY, STATUS, STOPPING and the watchdog's pings.

systemd's side is a real Unix datagram socket bound by the test, as systemd binds
``NOTIFY_SOCKET``. The agent runs as its own process (``hub run``) against a real
Mosquitto, or in-process where the outbox must refuse writes (as tests/test_disk_full.py
does it: the SQLite outbox's own ``OutboxFullError``). Waits are generous and nothing
asserts a duration: a stopped process cannot send, whatever the wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agent.runtime as runtime_module
from agent.clock import LiveClock
from agent.config import validate_config
from agent.devtools.broker import Mosquitto
from agent.events import EventKind, SensorEvent
from agent.outbox.sqlite import OutboxWriteError, SqliteOutbox
from agent.runtime import Runtime
from agent.sdnotify import Liveness, Notifier, State, Verdict
from tests.test_disk_full import FullDisk
from tests.test_live import TZ

HUB = str(Path(sys.executable).with_name("hub"))


class SystemdSide:
    """The socket systemd would listen on: every datagram, decoded, in order."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:  # the abstract namespace, as systemd uses it in containers
            name = f"leefsamen-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.sock.bind(str(path))
            self.address = str(path)

    def receive(self, timeout: float = 20.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(65536).decode()

    def wait_for(self, assignment: str, timeout: float = 20.0) -> list[str]:
        """Every datagram up to and including the first holding ``assignment``."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {assignment} within {timeout} s; got {seen}")
            try:
                data = self.receive(left)
            except TimeoutError:
                continue
            seen.append(data)
            if assignment in data.split("\n"):
                return seen

    def drain(self) -> list[str]:
        """What is queued now, without waiting."""
        out: list[str] = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(65536).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))  # sun_path is 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---- the protocol --------------------------------------------------------------------------
def test_nothing_is_sent_without_notify_socket() -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled and notifier.watchdog is None
    assert not notifier.ready("up") and not notifier.ping() and not notifier.stopping("bye")


def test_messages_reach_a_path_and_an_abstract_socket(short_dir: Path) -> None:
    for side in (SystemdSide(short_dir / "notify"), SystemdSide()):
        try:
            notifier = Notifier.from_environ({"NOTIFY_SOCKET": side.address})
            assert notifier.ready("centre connected;\n2 waiting")
            assert side.receive() == "READY=1\nSTATUS=centre connected; 2 waiting"
            assert notifier.ping() and side.receive() == "WATCHDOG=1"
            assert not notifier.status("centre connected; 2 waiting")  # unchanged: not sent
            assert notifier.status("centre not reachable")
            assert side.receive() == "STATUS=centre not reachable"
            assert notifier.stopping("stopping")
            assert side.receive() == "STOPPING=1\nSTATUS=stopping"
            notifier.close()
        finally:
            side.close()


def test_the_watchdog_interval_is_ours_only_for_our_pid() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environ(env, pid=42).watchdog == 30.0
    assert Notifier.from_environ({**env, "WATCHDOG_PID": "42"}, pid=42).watchdog == 30.0
    assert Notifier.from_environ({**env, "WATCHDOG_PID": "7"}, pid=42).watchdog is None
    assert Notifier.from_environ({**env, "WATCHDOG_USEC": "soon"}, pid=42).watchdog is None


def test_a_failed_send_is_logged_once_and_never_raised(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(short_dir / "nobody-listens"), watchdog=30.0)
    with caplog.at_level(logging.WARNING, logger="agent.sdnotify"):
        assert not notifier.ready("up")
        assert not notifier.ping()
        assert not notifier.ping()
    notifier.close()
    assert notifier.failures == 3
    [record] = caplog.records
    assert "NOTIFY_SOCKET" in record.getMessage()


# ---- the rule --------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rule_withholds_pings_for_lag_and_for_writes_failing_past_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    rule = Liveness(grace=120.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="agent.sdnotify"):
        assert rule.check(lag=0.1, lag_bound=15.0, held=0) == Verdict(True, State.HEALTHY)
        assert rule.check(lag=16.0, lag_bound=15.0, held=0) == Verdict(False, State.LOOP_LAG)
        assert rule.check(lag=0.0, lag_bound=15.0, held=0).ping
        rule.wrote(False)  # a heartbeat refused
        clock.now += 100
        rule.wrote(False)  # and another: the episode began at the first
        assert rule.check(0.0, 15.0, 0).ping  # within the grace
        clock.now += 30
        assert rule.check(0.0, 15.0, 0) == Verdict(False, State.WRITES_FAIL)
        assert rule.check(0.0, 15.0, 0) == Verdict(False, State.WRITES_FAIL)
        assert rule.check(0.0, 15.0, held=1) == Verdict(True, State.HELD)
        rule.wrote(True)
        assert rule.check(0.0, 15.0, 0) == Verdict(True, State.HEALTHY)
    messages = [r.getMessage() for r in caplog.records]
    # each withheld episode said once as it began, and once as it ended
    assert sum("event loop woke" in m for m in messages) == 1
    assert sum("refused every write" in m for m in messages) == 1
    assert sum("held only in memory" in m for m in messages) == 1
    assert [r.levelno for r in caplog.records if "held only" in r.getMessage()] == [
        logging.CRITICAL
    ]


# ---- the agent as a process -------------------------------------------------------------------
def _process_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    return stat.rsplit(")", 1)[1].split()[0]


def test_hub_run_is_ready_after_the_uplink_started_pings_and_says_it_stops(
    mosquitto: Mosquitto, short_dir: Path
) -> None:
    config = short_dir / "hub.toml"
    config.write_text(
        f'[hub]\nid = "h-0412"\n[uplink]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        f'[outbox]\npath = "{short_dir / "outbox.db"}"\n',
        encoding="utf-8",
    )
    side = SystemdSide(short_dir / "notify")
    log_path = short_dir / "stderr.txt"
    env = {**os.environ, "NOTIFY_SOCKET": side.address, "WATCHDOG_USEC": "1000000"}
    with log_path.open("w", encoding="utf-8") as err:
        agent = subprocess.Popen([HUB, "-v", "run", "--config", str(config)], env=env, stderr=err)
    try:
        [ready] = side.wait_for("READY=1")
        # the uplink had started (and logged so) before READY was sent
        assert "uplink to 127.0.0.1" in log_path.read_text(encoding="utf-8")
        status = ready.split("\n")[1]
        assert status.startswith("STATUS=centre ") and "0 open alert(s)" in status
        for _ in range(3):
            side.wait_for("WATCHDOG=1")

        agent.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 20
        while _process_state(agent.pid) != "T":
            assert time.monotonic() < deadline, "the agent did not stop"
            time.sleep(0.01)
        side.drain()  # what it sent before it stopped
        time.sleep(3 * 1.0)  # three watchdog intervals: nothing can come from a stopped process
        assert side.drain() == []

        agent.send_signal(signal.SIGCONT)
        side.wait_for("WATCHDOG=1")  # the pings resume

        agent.send_signal(signal.SIGTERM)
        side.wait_for("STOPPING=1")
        assert agent.wait(timeout=60) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        side.close()


# ---- the watchdog when the outbox refuses writes ------------------------------------------------
HOME = {"sensors": {"pendant": {"room": "Living", "role": "wearable", "kind": "button"}}}


def _runtime(folder: Path, side: SystemdSide) -> Runtime:
    raw = {
        "hub": {"id": "h-disk"},
        "uplink": {"type": "memory"},
        "outbox": {"path": str(folder / "outbox.db")},
        "home": HOME,
    }
    runtime = Runtime(validate_config(raw), clock=LiveClock(TZ, synced=True))
    runtime.notifier = Notifier(side.address, watchdog=0.3)  # a ping check every 0.1 s
    runtime.liveness.grace = 0.3
    return runtime


class Verdicts:
    """Records the rule's verdicts as the runtime asks for them (the rule itself unchanged)."""

    def __init__(self, runtime: Runtime) -> None:
        self.seen: list[Verdict] = []
        real = runtime.liveness.check

        def check(lag: float, lag_bound: float, held: int) -> Verdict:
            verdict = real(lag, lag_bound, held)
            self.seen.append(verdict)
            return verdict

        runtime.liveness.check = check  # type: ignore[method-assign]

    async def until(self, state: State, count: int, since: int = 0, timeout: float = 30) -> None:
        """Wait for ``count`` verdicts of ``state`` among those from index ``since`` on."""
        deadline = time.monotonic() + timeout
        while sum(v.state is state for v in self.seen[since:]) < count:
            assert time.monotonic() < deadline, f"not {count} x {state}: {self.seen}"
            await asyncio.sleep(0.02)


def _pings(datagrams: list[str]) -> int:
    return sum("WATCHDOG=1" in d.split("\n") for d in datagrams)


class BrokenWrites:
    """The outbox's answer to a write SQLite could not do for another reason than a full
    disk (an I/O error, a file that went away): what a restart, opening it anew, may cure.
    Switched on and off by the test."""

    def __init__(self, box: SqliteOutbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.broken = False
        real = box.add

        def add(message: Any, now: float, state: Any = None) -> int:
            if self.broken:
                raise OutboxWriteError(f"outbox write failed: {box.path} (disk I/O error)")
            return real(message, now, state)

        monkeypatch.setattr(box, "add", add)


def test_pings_stop_when_the_outbox_refuses_writes_and_nothing_is_held(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    side = SystemdSide(short_dir / "notify")
    runtime = _runtime(short_dir, side)
    assert isinstance(runtime.outbox, SqliteOutbox)
    BrokenWrites(runtime.outbox, monkeypatch).broken = True  # the first heartbeat is refused
    verdicts = Verdicts(runtime)

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        await verdicts.until(State.WRITES_FAIL, 1)
        side.drain()  # every ping so far came before the pings were withheld
        await verdicts.until(State.WRITES_FAIL, 4)
        assert _pings(side.drain()) == 0
        assert runtime.liveness.state is State.WRITES_FAIL
        runtime.request_stop()
        await task

    try:
        with caplog.at_level(logging.WARNING, logger="agent.sdnotify"):
            asyncio.run(scenario())
    finally:
        side.close()
    assert not runtime._unstored
    withheld = [r for r in caplog.records if "refused every write" in r.getMessage()]
    assert len(withheld) == 1 and withheld[0].levelno == logging.WARNING


def test_a_full_disk_alone_does_not_stop_the_pings(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart cannot free the disk; restarts over and over would start the rules'
    timers afresh each time, and no inactivity would ever last long enough to alert."""
    side = SystemdSide(short_dir / "notify")
    runtime = _runtime(short_dir, side)
    assert isinstance(runtime.outbox, SqliteOutbox)
    disk = FullDisk(runtime.outbox, monkeypatch)
    disk.full = True  # every heartbeat is refused
    verdicts = Verdicts(runtime)

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        while not disk.refused:
            await asyncio.sleep(0.01)
        since = len(verdicts.seen)
        await verdicts.until(State.HEALTHY, 4, since=since)
        assert _pings(side.drain()) >= 4
        runtime.request_stop()
        await task

    try:
        asyncio.run(scenario())
    finally:
        side.close()
    assert not any(v.state is State.WRITES_FAIL for v in verdicts.seen)


def test_pings_go_on_while_an_alert_is_held_only_in_memory(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime_module, "STORE_RETRY", 0)  # try again at every moment
    side = SystemdSide(short_dir / "notify")
    runtime = _runtime(short_dir, side)
    assert isinstance(runtime.outbox, SqliteOutbox)
    disk = BrokenWrites(runtime.outbox, monkeypatch)
    disk.broken = True
    verdicts = Verdicts(runtime)

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        while runtime.stats.heartbeats == 0:  # started; its first heartbeat was refused
            await asyncio.sleep(0.01)
        clock = runtime.clock
        press = SensorEvent("pendant", EventKind.BUTTON, 1, clock.wall(), clock.monotonic())
        runtime.emit(press)  # the help button: an alert the outbox refuses
        assert len(runtime._unstored) == 1
        held_from = len(verdicts.seen)
        await verdicts.until(State.HELD, 1, since=held_from)
        side.drain()
        await verdicts.until(State.HELD, 4, since=held_from)
        assert _pings(side.drain()) >= 3  # every held check pinged
        assert not any(v.state is State.WRITES_FAIL for v in verdicts.seen[held_from:])
        disk.broken = False  # writes work again: the alert is stored at the next try
        runtime._advance(clock.monotonic())
        assert not runtime._unstored
        await verdicts.until(State.HEALTHY, 1, since=len(verdicts.seen))
        runtime.request_stop()
        await task

    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(scenario())
    finally:
        side.close()
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and "1 alert(s) are held only in memory" in critical[0].getMessage()
