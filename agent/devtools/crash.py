"""Crash tools: the agent killed at random instants, and the power cut at any sync point.

Both prove one promise: an alert the outbox has accepted is never lost. An alert message
is *accepted* when ``Outbox.add`` returned for it: the SQLite outbox has then committed
and synced it, and the engine forgets it.

How the harness knows what was accepted, without trusting the killed process's memory:
the agent run here is the hub's own runtime (replay driver, engine, SQLite outbox, MQTT
uplink) with an alert hook, which the runtime calls right after ``add`` returned. The
hook appends the message's key to a *reports* file with one write(2); what write(2) has
handed to the kernel survives a SIGKILL of the writer. A message is known to have been
accepted when it was reported, or was in the outbox file after some kill, or reached the
subscriber. From then on it must, after every later kill, still be in the outbox file or
have reached the subscriber. (The one message that may be accepted but not yet reported
when the kill comes is in the outbox file, or else its loss shows as a gap in the seq
numbers of its round.)

The kill harness (``KillHarness``): round after round, a fresh trace of help-button
presses (each raises an alert that resolves itself, so two alert messages per press) is
replayed by an agent on the same outbox file, at full speed or paced, with or without a
broker, and the agent is killed with SIGKILL after a random delay (seeded). A kill
counts once the agent had accepted alerts in its round; the earlier ones (while it starts
and opens the file) are checked alike but come on top. After each kill a copy of the
outbox files is opened as a restarted agent would find them (without the ``-shm``, so
SQLite recovers from the WAL), ``PRAGMA integrity_check`` must say "ok", and the checks
above are made. At the end, with a broker, one more agent runs to the end and drains
the outbox: every accepted message must then have arrived, first arrivals in the order
they were made, with no gap in any round's seq numbers.

A round must cost little, so that hundreds of kills fit in a test: importing the agent
takes most of a second. ``python -m agent.devtools.crash zygote`` imports it once and,
for each round it is told, forks a child that runs the agent (a separate process with its
own memory and file descriptors, started from the imported modules rather than from
scratch), kills it after the delay it was given, reaps it and says how it ended.

The power cut (``PowerCutModel``): an agent runs under strace, which records every
write, truncate, sync, open, close and unlink of the process. Replayed in order, the
record gives the files' contents at any instant, and which of those bytes had been synced
(a file by fsync/fdatasync, a directory entry by a sync of the directory). A power cut
keeps only synced data: at each instant, the image of the disk after a cut is built from
it, opened by the outbox as after a reboot, checked, and compared with the alerts
reported as accepted before that instant. Optionally a random part of the unsynced
writes survives as well (whole writes, in any combination), as on a real disk.

    python -m agent.devtools.crash agent --spec '{"trace": ..., "outbox": ..., ...}'
    python -m agent.devtools.crash zygote     # reads orders as JSON lines on stdin
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import logging
import os
import random
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Self, cast

if TYPE_CHECKING:
    from agent.devtools.broker import Received
    from agent.messages import AlertMessage, HeartbeatMessage
    from agent.outbox import Outbox
    from agent.runtime import Runtime

log = logging.getLogger(__name__)

HUB: Final = "h-crash"
PREFIX: Final = "leefsamen"
ALERT_TOPIC: Final = f"{PREFIX}/{HUB}/alert"
ZONE: Final = "Europe/Amsterdam"
T0: Final = 1_798_761_600.0  # 2027-01-01T00:00:00Z; round n's trace starts n days later
ROUND_SPAN: Final = 86_400.0  # simulated seconds given to each round
PRESS_GAP: Final = 60.0  # simulated seconds between two presses
RESOLVE_AFTER: Final = 30.0  # the button's alert resolves itself this long after a press
#: replay speeds a round picks from: full speed (the uplink gets a turn only every 2048
#: events, so alerts pile up), or paced so that a press comes every 4 ms or 20 ms
SPEEDS: Final = ("max", "15000", "3000")
MAX_BYTES: Final = 1 << 30  # the outbox bound: nothing may be dropped for room here
SENSOR: Final = "help-button"


# -- alert keys ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Seen:
    """One alert message: the round whose trace made it, its seq there, and its key."""

    round: int
    seq: int
    key: str  # "<alert id> <state> <seq>": unique over a whole harness run


def _seen(alert_id: str, state: str, seq: int, at: float) -> Seen:
    return Seen(int((at - T0) // ROUND_SPAN), seq, f"{alert_id} {state} {seq}")


@functools.lru_cache(maxsize=1 << 16)
def seen_in_payload(payload: bytes) -> Seen:
    """The alert message an outbox row or a received payload carries."""
    from datetime import datetime

    data = json.loads(payload)
    at = datetime.fromisoformat(data["at"]).timestamp()
    return _seen(str(data["id"]), str(data["state"]), int(data["seq"]), at)


def report_line(message: AlertMessage) -> bytes:
    """What the agent's alert hook appends to the reports file for one accepted message."""
    at = message.at.timestamp()
    return f"{message.id} {message.state.value} {message.seq} {at:.0f}\n".encode()


def seen_in_report(line: str) -> Seen:
    alert_id, state, seq, at = line.split()
    return _seen(alert_id, state, int(seq), float(at))


def read_reports(path: Path, offset: int = 0) -> tuple[list[Seen], int]:
    """Complete report lines from ``offset`` on, and the offset after the last of them.

    A line cut short by the kill is not a report; it is read again next time, whole or
    not at all (an agent started later appends after it).
    """
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    lines = data[:end].decode().splitlines()
    return [seen_in_report(line) for line in lines if line.count(" ") == 3], offset + end


# -- traces ----------------------------------------------------------------------------


def write_press_trace(path: Path, start: float, presses: int, gap: float = PRESS_GAP) -> None:
    """A home with only a help button, pressed ``presses`` times, ``gap`` seconds apart."""
    from agent.events import EventKind, SensorEvent
    from agent.homemap import HomeMap, Role, SensorSpec
    from agent.traces.format import TraceHeader, write_trace

    spec = SensorSpec(room="living", role=Role.WEARABLE, kind=EventKind.BUTTON)
    header = TraceHeader(tz=ZONE, home=HomeMap(sensors={SENSOR: spec}), source="crash harness")
    times = (start + n * gap for n in range(presses))
    tmp = path.with_name(path.name + ".tmp")
    write_trace(tmp, header, (SensorEvent(SENSOR, EventKind.BUTTON, 1.0, t, t) for t in times))
    tmp.replace(path)


# -- the agent -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent run: which trace, which outbox file, where it reports, which broker.

    Without a broker the uplink is pointed at ``closed_port``, where nobody listens: the
    broker is down and alerts stay in the outbox.
    """

    trace: Path
    outbox: Path
    reports: Path
    broker: tuple[str, int] | None = None
    closed_port: int = 9
    speed: str = "max"
    drain: float = 0.0  # seconds the agent waits for the broker after the replay
    heartbeat: float = 900.0  # simulated seconds between heartbeats
    fault: str | None = None  # a deliberate bug (see ``FAULTS``), to show the checks notice

    def to_json(self) -> dict[str, Any]:
        return {
            "trace": str(self.trace),
            "outbox": str(self.outbox),
            "reports": str(self.reports),
            "broker": list(self.broker) if self.broker is not None else None,
            "closed_port": self.closed_port,
            "speed": self.speed,
            "drain": self.drain,
            "heartbeat": self.heartbeat,
            "fault": self.fault,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentSpec:
        broker = data.get("broker")
        return cls(
            trace=Path(data["trace"]),
            outbox=Path(data["outbox"]),
            reports=Path(data["reports"]),
            broker=(str(broker[0]), int(broker[1])) if broker else None,
            closed_port=int(data.get("closed_port", 9)),
            speed=str(data.get("speed", "max")),
            drain=float(data.get("drain", 0.0)),
            heartbeat=float(data.get("heartbeat", 900.0)),
            fault=data.get("fault"),
        )

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command that runs this agent in a process of its own."""
        return [python, "-m", "agent.devtools.crash", "agent", "--spec", json.dumps(self.to_json())]


def agent_runtime(spec: AgentSpec, hook: Callable[[AlertMessage], None] | None = None) -> Runtime:
    """The hub's runtime as ``spec`` asks: replay driver, SQLite outbox, MQTT uplink."""
    from agent.clock import SimClock
    from agent.config import validate_config
    from agent.outbox import open_outbox
    from agent.runtime import Runtime
    from agent.traces.format import read_header
    from drivers.replay.config import ReplayConfig

    header = read_header(spec.trace)
    host, port = spec.broker if spec.broker is not None else ("127.0.0.1", spec.closed_port)
    raw: dict[str, Any] = {
        "hub": {"id": HUB, "timezone": header.tz},
        "uplink": {
            "type": "mqtt",
            "host": host,
            "port": port,
            "prefix": PREFIX,
            "keepalive": 10,
            "publish_timeout": 5,
            "will_delay": 1,
            "reconnect_min": 0.05,
            "reconnect_max": 0.5,
        },
        "heartbeat": {"interval": spec.heartbeat},
        "outbox": {"max_bytes": MAX_BYTES},
        "detection": {"help_button": {"resolve_after": RESOLVE_AFTER}},
    }
    config = validate_config(raw, "<crash harness>")
    speed: float | str = spec.speed if spec.speed == "max" else float(spec.speed)
    replay = ReplayConfig(type="replay", path=spec.trace, speed=speed)
    config = config.model_copy(update={"drivers": [replay]})
    outbox = open_outbox(spec.outbox, MAX_BYTES)
    if spec.fault is not None:
        outbox = _with_fault(outbox, spec.fault)
    return Runtime(
        config, clock=SimClock(header.zone), home=header.home, outbox=outbox, alert_hook=hook
    )


#: deliberate bugs an agent can be run with, so that a test shows the checks catch them
FAULTS: Final = {
    "forget": "every 50th alert is reported accepted but never stored",
    "nosync": "alerts are committed without a sync (synchronous=OFF)",
}


def _with_fault(outbox: Outbox, fault: str) -> Outbox:
    from agent.outbox.sqlite import SqliteOutbox

    if fault == "forget":
        return cast("Outbox", _ForgetfulOutbox(outbox, 50))
    if fault == "nosync" and isinstance(outbox, SqliteOutbox):
        outbox._set_sync("OFF")
        outbox._set_sync = lambda level: None  # type: ignore[method-assign]
        return outbox
    raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")


class _ForgetfulOutbox:
    """An outbox with a bug: ``add`` returns for every ``every``-th alert without storing it.

    Everything else goes to the real outbox.
    """

    def __init__(self, inner: Outbox, every: int) -> None:
        self._inner = inner
        self._every = every
        self._alerts = 0

    def add(
        self, message: AlertMessage | HeartbeatMessage, now: float, *more: Any, **kw: Any
    ) -> int:
        from agent.messages import AlertMessage

        if type(message) is AlertMessage:
            self._alerts += 1
            if self._alerts % self._every == 0:
                return 0
        result: int = self._inner.add(message, now, *more, **kw)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def run_agent(spec: AgentSpec) -> int:
    """Run one agent to the end of its trace (or until it is killed); its exit status."""
    import asyncio

    fd = os.open(spec.reports, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def report(message: AlertMessage) -> None:
        os.write(fd, report_line(message))  # one write(2): whole, or not at all

    try:
        runtime = agent_runtime(spec, report)
        asyncio.run(runtime.run(drain_timeout=spec.drain))
    finally:
        os.close(fd)
    return 0


def _preload() -> None:
    """Import what an agent round needs, so that a forked child starts at once."""
    import asyncio  # noqa: F401

    import agent.config
    import agent.outbox.sqlite
    import agent.runtime
    import agent.traces.format
    import agent.uplink
    import detection.registry  # noqa: F401
    import drivers.registry
    import drivers.replay.driver  # noqa: F401

    agent.config.validate_config({"hub": {"id": HUB}}, "<preload>")  # warms pydantic's caches


# -- the zygote: one process that forks an agent per round -----------------------------


@dataclass(frozen=True, slots=True)
class Ended:
    """How one forked agent ended."""

    pid: int
    killed: bool  # by our SIGKILL, as planned
    status: int  # exit status, or minus the number of the signal that ended it
    ran: float  # seconds from fork to its end


def _fork_agent(spec: AgentSpec, delay: float) -> Ended:
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the agent
        code = 70
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            code = run_agent(spec)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    if not _wait_for_exit(pid, delay):
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    ran = time.monotonic() - started
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return Ended(pid, sig == signal.SIGKILL, -sig, ran)
    return Ended(pid, False, os.WEXITSTATUS(status), ran)


def _wait_for_exit(pid: int, timeout: float) -> bool:
    """True when ``pid`` ended within ``timeout`` seconds (it is not reaped here)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # a kernel without pidfd: poll instead
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            time.sleep(0.001)
        return False
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(pidfd)


def serve_zygote(orders: IO[str], replies: IO[str]) -> int:
    """Read orders (``{"agent": spec, "delay": s}``), run each agent, answer how it ended."""
    _preload()
    replies.write(json.dumps({"ready": os.getpid()}) + "\n")
    replies.flush()
    for line in orders:
        if not line.strip():
            continue
        order = json.loads(line)
        ended = _fork_agent(AgentSpec.from_json(order["agent"]), float(order["delay"]))
        replies.write(
            json.dumps(
                {"pid": ended.pid, "killed": ended.killed, "status": ended.status, "ran": ended.ran}
            )
            + "\n"
        )
        replies.flush()
    return 0


class Zygote:
    """The harness's side of ``python -m agent.devtools.crash zygote``."""

    def __init__(self, log_path: Path, python: str = sys.executable) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self._proc = subprocess.Popen(
            [python, "-m", "agent.devtools.crash", "zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._reply()  # imported and ready

    def run(self, spec: AgentSpec, delay: float) -> Ended:
        """Fork an agent for ``spec``, SIGKILL it after ``delay`` s unless it ended first."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"agent": spec.to_json(), "delay": delay}) + "\n")
        self._proc.stdin.flush()
        reply = self._reply()
        return Ended(int(reply["pid"]), bool(reply["killed"]), int(reply["status"]), reply["ran"])

    def _reply(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(10)
            raise RuntimeError(
                f"the zygote ended (status {self._proc.returncode});"
                f" its log:\n{log_tail(self.log_path)}"
            )
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


# -- reading an outbox file as a restarted agent would ---------------------------------


@dataclass(frozen=True, slots=True)
class OutboxFile:
    """What a copy of an outbox's files holds."""

    integrity: str  # what PRAGMA integrity_check said ("ok")
    alerts: list[Seen]  # in row order
    heartbeats: int
    dropped: int


def copy_outbox(path: Path, into: Path) -> Path:
    """Copy the outbox's files (not ``-shm``: SQLite rebuilds it from the WAL) into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    copy = into / path.name
    for suffix in ("", "-wal", "-journal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    for suffix in ("", "-wal", "-journal"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            shutil.copyfile(src, f"{copy}{suffix}")
    return copy


def read_outbox_file(path: Path) -> OutboxFile:
    """Check and read an outbox file with plain SQLite (recovery may change the file)."""
    if not path.exists():
        return OutboxFile("ok", [], 0, 0)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")  # a scratch copy: no need to sync its checkpoint
        return _read_outbox(db)
    except sqlite3.DatabaseError as err:
        return OutboxFile(f"unreadable: {err}", [], 0, 0)
    finally:
        db.close()


def _read_outbox(db: sqlite3.Connection) -> OutboxFile:
    integrity = "; ".join(str(r[0]) for r in db.execute("PRAGMA integrity_check"))
    if integrity != "ok":
        return OutboxFile(integrity, [], 0, 0)
    tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master")}
    if "items" not in tables:  # ended before the schema was made
        return OutboxFile(integrity, [], 0, 0)
    alerts: list[Seen] = []
    heartbeats = 0
    for topic, payload in db.execute("SELECT topic, payload FROM items ORDER BY id"):
        if topic == "alert":
            alerts.append(seen_in_payload(payload))
        else:
            heartbeats += 1
    row = db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
    return OutboxFile(integrity, alerts, heartbeats, int(row[0]) if row else 0)


# -- the kill harness ------------------------------------------------------------------


class CrashCheckFailed(AssertionError):
    """An accepted alert was lost, a file was damaged, or alerts came out of order."""


@dataclass
class HarnessReport:
    """What a harness run did."""

    seed: int
    kills: int = 0  # while alerts flowed: the agent had reported accepted alerts
    early_kills: int = 0  # before the agent had accepted any (while it started)
    rounds: int = 0
    finished: int = 0  # rounds whose agent ended by itself before its delay
    accepted: int = 0  # distinct alert messages known to have been accepted
    received: int = 0  # distinct alert messages the subscriber received
    resent: int = 0  # of those, received more than once (with their same ids)
    most_waiting: int = 0  # most alerts found waiting in the outbox after a kill
    delays: list[float] = field(default_factory=list)
    rounds_ran: list[float] = field(default_factory=list)  # fork to death, per round
    seconds: float = 0.0

    def text(self) -> str:
        delays = sorted(self.delays) or [0.0]
        ran = sorted(self.rounds_ran) or [0.0]
        return (
            f"seed {self.seed}: {self.kills} kills while alerts flowed and "
            f"{self.early_kills} while the agent started, in {self.rounds} rounds "
            f"({self.finished} ended by themselves), {self.seconds:.1f} s; "
            f"delays {delays[0] * 1000:.0f}-{delays[-1] * 1000:.0f} ms, "
            f"median round {ran[len(ran) // 2] * 1000:.0f} ms; "
            f"{self.accepted} alert messages accepted, {self.received} received "
            f"({self.resent} more than once, same ids), at most {self.most_waiting} waiting"
        )


class KillHarness:
    """Kills agents on one outbox file at random instants and checks after every kill.

    ``broker`` is ``(host, port)`` of a running broker, or None for a broker that is down
    for the whole run. ``seed`` makes the delays and speeds; it is in every failure.
    ``fault`` runs every agent with one of ``FAULTS``, to show that the checks fail.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        seed: int,
        broker: tuple[str, int] | None = None,
        max_delay: float = 0.3,
        presses: int = 200,
        settle: float = 20.0,
        fault: str | None = None,
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.broker = broker
        self.max_delay = max_delay
        self.presses = presses
        self.settle = settle
        self.fault = fault
        self.outbox = self.dir / "outbox.db"
        self.reports = self.dir / "reports.txt"
        self.trace = self.dir / "round.jsonl"
        self.scratch = self.dir / "check"
        self.report = HarnessReport(seed)
        self._rng = random.Random(seed)
        self._offset = 0  # in the reports file
        self._accepted: dict[str, tuple[Seen, str]] = {}  # key -> (message, how first known)
        self._undelivered: dict[str, Seen] = {}  # accepted, not yet received
        self._cond = threading.Condition()
        self._received: Counter[str] = Counter()
        self._arrivals: list[Seen] = []  # first arrivals, in order
        self._last: dict[str, Any] = {}  # the last round, for messages
        self._started = time.monotonic()

    # -- the run

    def run(
        self, kills: int, progress: Callable[[HarnessReport], None] | None = None
    ) -> HarnessReport:
        """Kill agents until ``kills`` were killed while alerts flowed, then check all.

        Kills that come before an agent accepted its first alert (while it starts and
        opens the outbox) happen too, and are checked alike, but are not counted.
        """
        from agent.devtools.broker import Subscriber, free_port

        self._started = time.monotonic()
        closed_port = free_port()
        with contextlib.ExitStack() as stack:
            if self.broker is not None:
                host, port = self.broker
                sub = Subscriber(host, port, ALERT_TOPIC, qos=1, on_receive=self._on_receive)
                stack.callback(sub.stop)
                sub.start()
            zygote = stack.enter_context(Zygote(self.dir / "agents.log"))
            while self.report.kills < kills:
                self._round(zygote, closed_port)
                if progress is not None:
                    progress(self.report)
            if self.broker is not None:
                self._final_round(zygote)
            self._check_rounds()
        self._count()
        return self.report

    def _round(self, zygote: Zygote, closed_port: int) -> None:
        number = self.report.rounds
        self.report.rounds += 1
        write_press_trace(self.trace, T0 + number * ROUND_SPAN, self.presses)
        speed = self._rng.choice(SPEEDS)
        delay = self._rng.uniform(0.0, self.max_delay)
        self._last = {"round": number, "delay": round(delay, 4), "speed": speed}
        spec = AgentSpec(
            self.trace,
            self.outbox,
            self.reports,
            self.broker,
            closed_port,
            speed,
            drain=0.0,
            fault=self.fault,
        )
        ended = zygote.run(spec, delay)
        self._last["ran"] = round(ended.ran, 4)
        self.report.seconds = time.monotonic() - self._started
        self.report.delays.append(delay)
        self.report.rounds_ran.append(ended.ran)
        if not ended.killed and ended.status != 0:
            self._fail(f"the agent ended by itself with status {ended.status}", zygote)
        reported = self._offset
        self._check(zygote)
        if not ended.killed:
            self.report.finished += 1
        elif self._offset > reported:  # it had accepted alerts: killed while they flowed
            self.report.kills += 1
        else:
            self.report.early_kills += 1

    def _final_round(self, zygote: Zygote) -> None:
        """One more agent, not killed: it sends what waits and ends; all must arrive."""
        number = self.report.rounds
        self.report.rounds += 1
        write_press_trace(self.trace, T0 + number * ROUND_SPAN, 1)
        self._last = {"round": number, "delay": None, "speed": "max", "final": True}
        spec = AgentSpec(self.trace, self.outbox, self.reports, self.broker, drain=self.settle)
        ended = zygote.run(spec, self.settle + 30.0)
        if ended.status != 0:
            self._fail(f"the last agent ended with status {ended.status}", zygote)
        waiting = self._check(zygote)
        if waiting:
            self._fail(f"{len(waiting)} alerts still wait after the last agent drained", zygote)
        self._wait_delivered(list(self._undelivered))
        if self._undelivered:
            first = next(iter(self._undelivered))
            self._fail(
                f"{len(self._undelivered)} accepted alerts never arrived, e.g. {first!r}", zygote
            )

    # -- the checks

    def _check(self, zygote: Zygote) -> list[Seen]:
        """After an agent ended: the file is sound and holds every undelivered alert."""
        found = read_outbox_file(copy_outbox(self.outbox, self.scratch))
        if found.integrity != "ok":
            self._fail(f"PRAGMA integrity_check: {found.integrity}", zygote)
        if found.dropped:
            self._fail(f"the outbox dropped {found.dropped} items for room", zygote)
        reported, self._offset = read_reports(self.reports, self._offset)
        for seen in reported:
            self._accept(seen, f"reported in round {self.report.rounds - 1}")
        for seen in found.alerts:
            self._accept(seen, f"in the outbox after round {self.report.rounds - 1}")
        self.report.most_waiting = max(self.report.most_waiting, len(found.alerts))
        waiting = {s.key for s in found.alerts}
        self._forget_delivered()
        missing = [k for k in self._undelivered if k not in waiting]
        if missing and self.broker is not None:
            self._wait_delivered(missing)  # acknowledged by the broker, maybe still on the way
            missing = [k for k in missing if k in self._undelivered]
        if missing:
            key = missing[0]
            seen, how = self._accepted[key]
            self._fail(
                f"{len(missing)} accepted alert messages lost: {key!r} (round {seen.round}, "
                f"{how}) is neither in the outbox nor received",
                zygote,
            )
        return found.alerts

    def _accept(self, seen: Seen, how: str) -> None:
        with self._cond:  # the subscriber's thread adds what it receives
            if seen.key not in self._accepted:
                self._accepted[seen.key] = (seen, how)
                if seen.key not in self._received:
                    self._undelivered[seen.key] = seen

    def _forget_delivered(self) -> None:
        with self._cond:
            for key in [k for k in self._undelivered if k in self._received]:
                del self._undelivered[key]

    def _wait_delivered(self, keys: Sequence[str]) -> None:
        with self._cond:
            self._cond.wait_for(lambda: all(k in self._received for k in keys), self.settle)
        self._forget_delivered()

    def _on_receive(self, message: Received) -> None:
        seen = seen_in_payload(message.payload)
        with self._cond:
            if seen.key not in self._received:
                self._arrivals.append(seen)
            self._received[seen.key] += 1
            self._accepted.setdefault(seen.key, (seen, "received"))  # sent, so accepted
            self._cond.notify_all()

    def _check_rounds(self) -> None:
        """First arrivals in the order made; no round has a gap in its seq numbers."""
        with self._cond:
            arrivals = list(self._arrivals)
            accepted = [seen for seen, _ in self._accepted.values()]
        for before, after in itertools.pairwise(arrivals):
            if after < before:
                self._fail(f"{after.key!r} (round {after.round}) arrived before {before.key!r}")
        seqs: dict[int, set[int]] = {}
        for seen in accepted:
            seqs.setdefault(seen.round, set()).add(seen.seq)
        for number, found in sorted(seqs.items()):
            gaps = sorted(set(range(min(found), max(found) + 1)) - found)
            if gaps:
                self._fail(f"round {number} lost the alert messages with seq {gaps[:10]}")

    def _count(self) -> None:
        with self._cond:
            self.report.received = len(self._received)
            self.report.resent = sum(1 for n in self._received.values() if n > 1)
            self.report.accepted = len(self._accepted)
        self.report.seconds = time.monotonic() - self._started

    def _fail(self, what: str, zygote: Zygote | None = None) -> None:
        self._count()
        tail = log_tail(zygote.log_path) if zygote is not None else "(no log)"
        raise CrashCheckFailed(
            f"{what}\n  seed {self.seed}, last round {self._last}; {self.report.text()}\n"
            f"  files in {self.dir}\n  the agents' log, last lines:\n{tail}"
        )


# -- the power cut ---------------------------------------------------------------------

#: the system calls strace must record for ``PowerCutModel``
STRACE_CALLS: Final = (
    "open,openat,creat,close,dup,dup2,dup3,write,pwrite64,writev,pwritev,pwritev2,ftruncate,"
    "truncate,fsync,fdatasync,sync_file_range,unlink,unlinkat,rename,renameat,renameat2"
)


def strace_argv(strace: str, log_prefix: Path, argv: Sequence[str]) -> list[str]:
    """Run ``argv`` under strace, one log per thread (``<prefix>.<tid>``), data in full."""
    return [strace, "-ff", "-o", str(log_prefix), "-xx", "-s", str(1 << 20),
            "-e", "signal=none", "-e", f"trace={STRACE_CALLS}", *argv]  # fmt: skip


def run_traced(
    spec: AgentSpec,
    strace: str,
    log_prefix: Path,
    *,
    kill_after_reports: int | None = None,
    stderr: Path | None = None,
    timeout: float = 300.0,
) -> Path:
    """Run one agent under strace; the log of its I/O.

    With ``kill_after_reports`` the agent is killed with SIGKILL as soon as it has
    reported that many more accepted alerts. The log returned is that of the one thread
    that opened the outbox: SQLite does all its I/O on the thread of its connection, so
    that log holds it all, in order.
    """
    before = _lines(spec.reports)
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(stderr.open("ab")) if stderr is not None else subprocess.DEVNULL
        proc = subprocess.Popen(strace_argv(strace, log_prefix, spec.argv()), stderr=err)
        try:
            if kill_after_reports is not None:
                deadline = time.monotonic() + timeout
                while proc.poll() is None and time.monotonic() < deadline:
                    if _lines(spec.reports) >= before + kill_after_reports:
                        for pid in _children(proc.pid):
                            os.kill(pid, signal.SIGKILL)
                        break
                    time.sleep(0.002)
            proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    killed = {0, 128 + signal.SIGKILL, -signal.SIGKILL}
    if proc.returncode not in (killed if kill_after_reports is not None else {0}):
        raise RuntimeError(f"the traced agent ended with status {proc.returncode}")
    needle = "".join(f"\\x{b:02x}" for b in str(spec.outbox).encode())
    logs = sorted(log_prefix.parent.glob(log_prefix.name + ".*"))
    found = [p for p in logs if needle in p.read_text(encoding="ascii", errors="replace")]
    if len(found) != 1:
        raise RuntimeError(f"{len(found)} strace logs open the outbox, not one: {found}")
    return found[0]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (here: the agent that strace started)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    return [int(c) for c in text.split()]


_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')


def _text(escaped: str) -> bytes:
    return bytes.fromhex(escaped.replace("\\x", ""))


@dataclass(frozen=True, slots=True)
class Call:
    """One recorded system call: its name, its arguments (strings decoded), its result."""

    name: str
    args: list[bytes | str]
    result: int
    line: str


def read_strace_log(path: Path) -> Iterator[Call]:
    """The calls of one strace log (written with ``-xx``), in order."""
    with path.open("r", encoding="ascii", errors="replace") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if line.startswith(("+++", "---")) or not line:
                continue
            m = _CALL.match(line)
            if m is None:
                raise ValueError(f"{path}: cannot read the strace line {line[:200]!r}")
            name, body, result = m.groups()
            args: list[bytes | str] = []
            pos = 0
            while pos < len(body):
                if body[pos] == '"':
                    s = _STRING.match(body, pos)
                    if s is None:
                        raise ValueError(f"{path}: bad string in {line[:200]!r}")
                    if s.group(2):
                        raise ValueError(f"{path}: strace cut a string short: raise -s")
                    args.append(_text(s.group(1)))
                    pos = s.end()
                else:
                    end = body.find(", ", pos)
                    end = len(body) if end < 0 else end
                    args.append(body[pos:end])
                    pos = end
                if body.startswith(", ", pos):
                    pos += 2
            yield Call(name, args, -1 if result == "?" else int(result), line)


class _Inode:
    """One file: its contents now, as of its last sync, and the writes since."""

    __slots__ = ("durable", "now", "pending")

    def __init__(self) -> None:
        self.now = bytearray()
        self.durable = b""
        self.pending: list[tuple[int, bytes | None, int]] = []  # (offset, data, truncate size)

    def write(self, offset: int, data: bytes) -> None:
        _apply(self.now, offset, data, -1)
        self.pending.append((offset, data, -1))

    def truncate(self, size: int) -> None:
        _apply(self.now, 0, None, size)
        self.pending.append((0, None, size))

    def sync(self) -> None:
        self.durable = bytes(self.now)
        self.pending.clear()

    def after_cut(self, rng: random.Random | None) -> bytes:
        """What a power cut leaves: the synced bytes, and with ``rng`` some later writes."""
        if rng is None or not self.pending:
            return self.durable
        content = bytearray(self.durable)
        for offset, data, size in self.pending:
            if rng.random() < 0.5:
                _apply(content, offset, data, size)
        return bytes(content)


def _apply(content: bytearray, offset: int, data: bytes | None, size: int) -> None:
    if data is None:
        del content[size:]
        content.extend(b"\0" * (size - len(content)))
        return
    if len(content) < offset:
        content.extend(b"\0" * (offset - len(content)))
    content[offset : offset + len(data)] = data


@dataclass(frozen=True, slots=True)
class Cut:
    """The disk after a power cut at one instant, and what had been accepted by then."""

    files: dict[str, bytes]  # file name (in the outbox's directory) -> contents
    accepted: list[Seen]  # in the order accepted
    where: str  # the instant, for messages: the log and its line


class PowerCutModel:
    """Replays strace logs of agents on one outbox and yields the disk after a cut.

    Tracked: the outbox file and its ``-wal`` and ``-journal`` (the ``-shm`` is rebuilt
    after a reboot), the directory that holds them (a new or removed name lasts only once
    the directory is synced) and the reports file (whose lines mark acceptances).
    ``cuts`` yields the disk just before each sync and at the end of each log: between two
    syncs the synced bytes do not change while acceptances can only add up, so these are
    the hardest instants. With ``rng``, each cut comes a second time with a random part
    of the unsynced writes kept.
    """

    def __init__(self, outbox: Path, reports: Path) -> None:
        self.dir = str(outbox.parent)
        self.names = {outbox.name + s for s in ("", "-wal", "-journal")}
        self.reports = str(reports)
        self._now: dict[str, _Inode] = {}  # names in the directory now
        self._durable: dict[str, _Inode] = {}  # names a cut would leave
        self._fds: dict[int, _Inode | str] = {}  # fd -> file, or "dir" / "reports"
        self._tail = b""  # a report line not yet complete
        self.accepted: list[Seen] = []
        self.syncs = 0

    def cuts(self, log: Path, rng: random.Random | None = None) -> Iterator[Cut]:
        """Feed one process's log (call in the order the processes ran)."""
        self._fds.clear()  # a new process: no descriptors yet
        line = 0
        for line, call in enumerate(read_strace_log(log), start=1):
            if call.result < 0:
                continue
            name = call.name
            if name in ("fsync", "fdatasync"):
                target = self._fds.get(int(str(call.args[0])))
                if target is None or target == "reports":
                    continue
                yield from self._cut(f"{log.name}:{line}", rng)
                self.syncs += 1
                if target == "dir":
                    self._durable = dict(self._now)
                elif isinstance(target, _Inode):
                    target.sync()
            else:
                self._apply(call, log, line)
        yield from self._cut(f"{log.name}:end", rng)

    def _cut(self, where: str, rng: random.Random | None) -> Iterator[Cut]:
        accepted = list(self.accepted)
        yield Cut({n: f.after_cut(None) for n, f in self._durable.items()}, accepted, where)
        if rng is not None:
            files = {n: f.after_cut(rng) for n, f in self._durable.items()}
            yield Cut(files, accepted, where + " (some unsynced writes kept)")

    def _file(self, path: str) -> str | None:
        """The tracked name of ``path``, "" for the directory itself, None if not tracked."""
        head, _, tail = path.rpartition("/")
        if path == self.dir:
            return ""
        if head == self.dir and tail in self.names:
            return tail
        return None

    def _apply(self, call: Call, log: Path, line: int) -> None:
        name, args = call.name, call.args
        if name in ("open", "openat", "creat"):
            path_arg = args[1] if name == "openat" else args[0]
            flags = str(args[2] if name == "openat" else args[1]) if name != "creat" else "O_CREAT"
            assert isinstance(path_arg, bytes)
            path = path_arg.decode()
            if name == "openat" and args[0] != "AT_FDCWD" and not path.startswith("/"):
                return  # relative to another directory: never how the outbox opens its files
            if path == self.reports:
                self._fds[call.result] = "reports"
                return
            tracked = self._file(path)
            if tracked is None:
                self._fds.pop(call.result, None)
                return
            if tracked == "":
                self._fds[call.result] = "dir"
                return
            inode = self._now.get(tracked)
            if inode is None:
                if "O_CREAT" not in flags and name != "creat":
                    raise ValueError(f"{log}:{line}: {tracked} opened, but never seen made")
                inode = self._now[tracked] = _Inode()
            if "O_TRUNC" in flags or name == "creat":
                inode.truncate(0)
            self._fds[call.result] = inode
        elif name == "close":
            self._fds.pop(int(str(args[0])), None)
        elif name in ("dup", "dup2", "dup3"):
            target = self._fds.get(int(str(args[0])))
            if target is None:
                self._fds.pop(call.result, None)
            else:
                self._fds[call.result] = target
        elif name in ("write", "pwrite64"):
            target = self._fds.get(int(str(args[0])))
            data = args[1]
            assert isinstance(data, bytes)
            if target == "reports":
                self._report(data[: call.result])
            elif isinstance(target, _Inode):
                if name == "write":
                    raise ValueError(f"{log}:{line}: write(2) without an offset on a tracked file")
                target.write(int(str(args[3])), data[: call.result])
        elif name == "ftruncate":
            target = self._fds.get(int(str(args[0])))
            if isinstance(target, _Inode):
                target.truncate(int(str(args[1])))
        elif name in ("unlink", "unlinkat"):
            path_arg = args[1] if name == "unlinkat" else args[0]
            assert isinstance(path_arg, bytes)
            tracked = self._file(path_arg.decode())
            if tracked:
                self._now.pop(tracked, None)
        elif self._touches(args):  # writev, rename...: SQLite does not use them on its files
            raise ValueError(f"{log}:{line}: {name} on a tracked file is not modelled")

    def _touches(self, args: list[bytes | str]) -> bool:
        """Whether a call's arguments name a tracked file or one of its descriptors."""
        first = str(args[0]) if args else ""
        if first.isdigit() and isinstance(self._fds.get(int(first)), _Inode):
            return True
        return any(
            isinstance(a, bytes) and self._file(a.decode(errors="replace")) is not None
            for a in args
        )

    def _report(self, data: bytes) -> None:
        self._tail += data
        *lines, self._tail = self._tail.split(b"\n")
        self.accepted.extend(seen_in_report(raw.decode()) for raw in lines if raw)


@dataclass(frozen=True, slots=True)
class CutResult:
    """What an agent restarted on the disk after a cut finds."""

    integrity: str
    alerts: list[Seen]  # as the outbox hands them out


def open_after_cut(cut: Cut, into: Path, outbox_name: str) -> CutResult:
    """Write the cut's files into ``into``, check them, and open them with the outbox."""
    from agent.outbox.sqlite import SqliteOutbox

    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    for name, content in cut.files.items():
        (into / name).write_bytes(content)
    path = into / outbox_name
    checked = read_outbox_file(path)
    if checked.integrity != "ok":
        return CutResult(checked.integrity, [])
    box = SqliteOutbox(path, MAX_BYTES)
    try:
        items = box.take(1 << 30)
        alerts = [seen_in_payload(it.payload) for it in items if it.topic == "alert"]
    finally:
        box.close()
    aside = sorted(p.name for p in into.iterdir() if ".corrupt-" in p.name)
    if aside:
        return CutResult(f"the outbox moved the file aside: {aside}", alerts)
    return CutResult("ok", alerts)


def check_cut(result: CutResult, cut: Cut, delivered: Iterable[str] = ()) -> str | None:
    """What is wrong after a cut: damage, an accepted alert missing, alerts out of order."""
    if result.integrity != "ok":
        return f"after a cut at {cut.where}: {result.integrity}"
    present = {s.key for s in result.alerts}
    sent = set(delivered)
    lost = [s.key for s in cut.accepted if s.key not in present and s.key not in sent]
    if lost:
        return (
            f"after a cut at {cut.where}: {len(lost)} accepted alert messages lost,"
            f" first {lost[0]!r} ({len(cut.accepted)} accepted by then)"
        )
    order = {s.key: n for n, s in enumerate(cut.accepted)}
    ranks = [order[s.key] for s in result.alerts if s.key in order]
    if ranks != sorted(ranks):
        return f"after a cut at {cut.where}: alerts wait out of the order they were accepted"
    return None


# -- the command line ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.devtools.crash", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("agent", help="run one agent on a trace, reporting what it accepted")
    a.add_argument("--spec", required=True, help="the AgentSpec as JSON")
    sub.add_parser("zygote", help="fork agents as told on stdin (JSON lines)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s pid %(process)d %(name)s %(levelname)s %(message)s",
    )
    if args.command == "agent":
        return run_agent(AgentSpec.from_json(json.loads(args.spec)))
    return serve_zygote(sys.stdin, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
