"""``hub status``: what the hub is doing now, for the installer and the centre's support line.

Open alerts (id, kind, severity, since, room), the outbox (how many messages wait for the
centre, and how old the oldest is), the last publish the broker acknowledged, sensor
health (silent sensors, low batteries, each driver's state) and the mode (normal, away,
holiday, with its end).

The running agent is asked first, on its local status socket (``[local] socket``, see
``agent.localstatus``). When it does not answer, what can be known without it is read
from the outbox file (``[outbox] path``), read-only: the messages waiting, and the
engine's saved state (``detection.saved``: open alerts and mode). The report then says
plainly that the agent is not running and what is therefore unknown. Reading never
changes the file and never creates anything beside it: a file closed cleanly is read as
immutable (SQLite makes no ``-wal``/``-shm`` files that the service user could not open
afterwards), and one left by a crash, with its ``-wal`` and ``-shm``, in read-only mode.

Nothing sensor-level is shown: no events and no times of use, only the health summary
the heartbeat carries too. Exit 0 when the agent answered, 3 when it did not, 2 when the
configuration cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from rich.console import RenderableType

    from agent.config import Config

DEFAULT_CONFIG: Final = Path("/etc/leefsamen-hub/hub.toml")
EXIT_OK: Final = 0
EXIT_BAD_INPUT: Final = 2
EXIT_NOT_RUNNING: Final = 3
ASK_TIMEOUT: Final = 5.0  # seconds the agent has to answer on its socket

#: what only the running agent knows
UNKNOWN_WITHOUT_AGENT: Final = (
    "the connection to the centre",
    "the last acknowledged publish",
    "sensor health (silent sensors, low batteries)",
    "the drivers' state",
)


class OutboxUnreadable(Exception):
    """The outbox file cannot be read; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class SavedOutbox:
    """What the outbox file holds, read while the agent is not running."""

    depth: int  # messages waiting for the centre (alerts and the heartbeat)
    oldest: float | None  # wall time the oldest of them was stored
    dropped: int
    mode: str | None = None  # from the engine's saved state; None when there is none
    mode_until: float | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)  # since: wall seconds
    problem: str | None = None  # the engine's saved state could not be used: why


@dataclass
class Report:
    """The status, from the agent or from the outbox file; None is "not known"."""

    hub: str
    running: bool
    source: str  # "agent", "outbox file", or "nothing"
    why: str | None = None  # why the agent was not asked, or did not answer
    version: str | None = None
    uptime_s: int | None = None
    clock_synced: bool | None = None
    mode: str | None = None
    mode_until: str | None = None
    alerts: list[dict[str, Any]] | None = None
    depth: int | None = None
    oldest_s: int | None = None
    dropped: int | None = None
    connected: bool | None = None
    last_ack: str | None = None
    silent: list[str] | None = None
    battery_low: list[str] | None = None
    drivers: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "hub": self.hub,
            "agent": {
                "running": self.running,
                "detail": self.why,
                "version": self.version,
                "uptime_s": self.uptime_s,
            },
            "source": self.source,
            "clock_synced": self.clock_synced,
            "mode": self.mode,
            "mode_until": self.mode_until,
            "alerts": self.alerts,
            "outbox": {"depth": self.depth, "oldest_s": self.oldest_s, "dropped": self.dropped},
            "uplink": {"connected": self.connected, "last_ack": self.last_ack},
            "health": {
                "silent": self.silent,
                "battery_low": self.battery_low,
                "drivers": self.drivers,
            },
            "unknown": [] if self.running else list(UNKNOWN_WITHOUT_AGENT),
            "notes": self.notes,
        }


# ---- from the running agent ---------------------------------------------------------------
def from_agent(hub: str, snap: dict[str, Any]) -> Report:
    """The report from one snapshot of the agent's local status (sensor rows left out)."""
    uplink = snap.get("uplink", {})
    health = snap.get("health", {})
    return Report(
        hub=str(snap.get("hub", hub)),
        running=True,
        source="agent",
        version=snap.get("version"),
        uptime_s=snap.get("uptime_s"),
        clock_synced=snap.get("clock_synced"),
        mode=snap.get("mode"),
        mode_until=snap.get("mode_until"),
        alerts=[
            {k: a.get(k) for k in ("id", "kind", "severity", "since", "room")}
            for a in snap.get("alerts", [])
        ],
        depth=uplink.get("depth"),
        oldest_s=uplink.get("oldest_s"),
        dropped=uplink.get("dropped"),
        connected=uplink.get("connected"),
        last_ack=uplink.get("last_ack"),
        silent=list(health.get("silent", [])),
        battery_low=list(health.get("battery_low", [])),
        drivers=[
            {k: d.get(k) for k in ("name", "state", "restarts", "last_error")}
            for d in snap.get("drivers", [])
        ],
    )


def ask_agent(path: Path) -> dict[str, Any]:
    """One snapshot from the agent's socket; ``CheckError`` saying why there is none."""
    from agent.check import CheckError, snapshots

    stream = snapshots(path, timeout=ASK_TIMEOUT)
    for snap in stream:
        return snap
    raise CheckError(f"the agent at {path} closed the connection without a word")


# ---- from the outbox file -----------------------------------------------------------------
def _open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the file or create anything beside it.

    With its ``-wal`` and ``-shm`` present (the agent runs, or was killed) the file is
    read in read-only mode, which then needs nothing new; a file the agent closed
    cleanly has neither and is complete: it is read as immutable, so no ``-wal`` or
    ``-shm`` is made (as root, they would lock the service user out of its outbox).
    """
    uri = path.resolve().as_uri()
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    query = "mode=ro" if wal.exists() and shm.exists() else "immutable=1"
    return sqlite3.connect(f"{uri}?{query}", uri=True)


def read_outbox(path: Path) -> SavedOutbox:
    """What waits in the outbox file and the engine's saved state; ``OutboxUnreadable``."""
    from agent.outbox.sqlite import SCHEMA_VERSION

    if not path.exists():
        raise OutboxUnreadable(f"there is no outbox file at {path} (yet)")
    if not os.access(path, os.R_OK):
        raise OutboxUnreadable(f"not allowed to read {path}: run hub status with sudo")
    try:
        db = _open_read_only(path)
    except sqlite3.Error as err:
        raise OutboxUnreadable(f"{path} cannot be opened ({err})") from err
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise OutboxUnreadable(
                f"{path} was written by a newer agent (schema {version}, this one reads up "
                f"to {SCHEMA_VERSION}): update the hub"
            )
        depth, oldest_id = db.execute("SELECT count(*), min(id) FROM items").fetchone()
        oldest = None
        if oldest_id is not None:
            oldest = float(
                db.execute("SELECT created FROM items WHERE id = ?", (oldest_id,)).fetchone()[0]
            )
        row = db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        dropped = int(row[0]) if row is not None else 0
        blob = None
        if version >= 2:
            row = db.execute("SELECT value FROM state WHERE key = 'engine'").fetchone()
            blob = None if row is None else bytes(row[0])
    except sqlite3.Error as err:
        raise OutboxUnreadable(
            f"{path} cannot be read ({err}); the agent moves such a file aside when it "
            "starts and begins an empty one: what waited in it is not sent"
        ) from err
    finally:
        db.close()
    return _with_state(SavedOutbox(depth=int(depth), oldest=oldest, dropped=dropped), blob)


def _with_state(saved: SavedOutbox, blob: bytes | None) -> SavedOutbox:
    """The outbox's numbers with the engine's saved state (open alerts and mode) added."""
    from detection.saved import SavedStateError, decode_state

    if blob is None:
        return saved
    try:
        state = decode_state(blob)
    except SavedStateError as err:
        return SavedOutbox(
            saved.depth,
            saved.oldest,
            saved.dropped,
            problem=f"the engine's saved state cannot be used ({err.reason})",
        )
    alerts = [
        {"id": a.id, "kind": a.kind, "severity": a.severity.value, "since": a.since, "room": a.room}
        for a in state.open
    ]
    return SavedOutbox(
        saved.depth, saved.oldest, saved.dropped, state.mode.value, state.mode_until, alerts
    )


def from_outbox(config: Config, why: str, now: float) -> Report:
    """The report while the agent does not answer: what the outbox file says, read-only."""
    zone = config.zone
    report = Report(hub=config.hub.id, running=False, source="nothing", why=why)
    path = config.outbox.path
    if path is None:
        report.notes.append(
            "the outbox is kept in memory ([outbox] path is not set): nothing can be read "
            "while the agent is not running"
        )
        return report
    try:
        saved = read_outbox(path)
    except OutboxUnreadable as err:
        report.notes.append(str(err))
        return report
    report.source = "outbox file"
    report.notes.append(f"read from {path} (read-only), as the agent left it")
    report.depth = saved.depth
    report.dropped = saved.dropped
    if saved.oldest is not None:
        report.oldest_s = max(0, int(now - saved.oldest))
    if saved.problem is not None:
        report.notes.append(saved.problem)
        return report
    if saved.mode is None:
        report.notes.append("no engine state is saved: the agent starts with no open alerts")
        report.mode = config.hub.mode.value
        report.alerts = []
        return report
    report.mode = saved.mode
    if saved.mode_until is not None:
        report.mode_until = _iso(saved.mode_until, zone)
    report.alerts = [{**a, "since": _iso(float(a["since"]), zone)} for a in saved.alerts]
    return report


def _iso(wall: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(wall, tz=zone).isoformat()


def gather(config: Config, now: float | None = None) -> Report:
    """Ask the running agent; when it does not answer, read the outbox file."""
    from agent.check import CheckError

    now = time.time() if now is None else now
    path = config.local.socket
    if path is None:
        why = "[local] socket is not set, so the agent cannot be asked"
        return from_outbox(config, why, now)
    try:
        snap = ask_agent(path)
    except CheckError as err:
        return from_outbox(config, str(err), now)
    return from_agent(config.hub.id, snap)


# ---- for people -----------------------------------------------------------------------------
def _when(iso: str | None) -> str:
    if iso is None:
        return "?"
    with contextlib.suppress(ValueError):  # the agent gives the home's local time
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    return iso


def _duration(seconds: int | None) -> str:
    from agent.units import format_duration

    if seconds is None:
        return "?"
    return f"{seconds} s" if seconds < 60 else format_duration(seconds)


def render(report: Report) -> RenderableType:
    """The report as text: the agent, mode, centre and outbox, open alerts, health."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    head = Text(f"hub {report.hub}  ", style="bold")
    if report.running:
        head.append(f"agent running (v{report.version}, up {_duration(report.uptime_s)})")
        head.append("  clock: ")
        head.append(
            "synchronised" if report.clock_synced else "NOT synchronised",
            style="" if report.clock_synced else "yellow",
        )
    else:
        head.append("agent NOT running", style="bold red")
        head.append(f": {report.why}")
    parts.append(head)

    mode = Text("mode: ")
    if report.mode is None:
        mode.append("unknown", style="yellow")
    else:
        mode.append(report.mode, style="bold" if report.mode != "normal" else "")
        if report.mode_until is not None:
            mode.append(f" until {_when(report.mode_until)}")
    parts.append(mode)

    centre = Text("centre: ")
    if report.connected is None:
        centre.append("unknown", style="yellow")
    elif report.connected:
        centre.append("connected", style="green")
    else:
        centre.append("NOT connected", style="bold red")
    if report.depth is not None:
        centre.append(f"  outbox: {report.depth} waiting")
        if report.oldest_s is not None and report.depth:
            centre.append(f", the oldest {_duration(report.oldest_s)} old")
        if report.dropped:
            centre.append(f", {report.dropped} dropped (full)", style="yellow")
    else:
        centre.append("  outbox: unknown", style="yellow")
    centre.append("  last acknowledged: ")
    if report.running:
        centre.append(_when(report.last_ack) if report.last_ack else "none since the start")
    else:
        centre.append("unknown", style="yellow")
    parts.append(centre)

    if report.alerts is None:
        parts.append(Text("open alerts: unknown", style="yellow"))
    elif not report.alerts:
        parts.append(Text("open alerts: none"))
    else:
        table = Table(
            title=f"open alerts ({len(report.alerts)})", title_justify="left", show_edge=False
        )
        for column in ("id", "kind", "severity", "since", "room"):
            table.add_column(column, overflow="fold", no_wrap=column != "id")
        for alert in report.alerts:
            style = "bold red" if alert.get("severity") == "urgent" else ""
            table.add_row(  # Text, not markup: a room may be named "[annexe]"
                Text(str(alert.get("id"))),
                Text(str(alert.get("kind"))),
                Text(str(alert.get("severity"))),
                Text(_when(alert.get("since"))),
                Text(str(alert.get("room") or "")),
                style=style,
            )
        parts.append(table)

    if report.running:
        health = Text("sensors: ")
        health.append(f"silent: {', '.join(report.silent or []) or 'none'}")
        health.append(f"  battery low: {', '.join(report.battery_low or []) or 'none'}")
        parts.append(health)
        drivers = Text("drivers: ")
        for i, d in enumerate(report.drivers or []):
            if i:
                drivers.append("  ")
            ok = d.get("state") == "running"
            drivers.append(f"{d.get('name')} {d.get('state')}", style="green" if ok else "bold red")
            if not ok and d.get("last_error"):
                drivers.append(f" ({str(d['last_error'])[:60]})", style="red")
        if not report.drivers:
            drivers.append("none configured", style="yellow")
        parts.append(drivers)
    else:
        parts.append(
            Text(
                "unknown while the agent is not running: " + "; ".join(UNKNOWN_WITHOUT_AGENT),
                style="yellow",
            )
        )
    parts.extend(Text(note, style="dim") for note in report.notes)
    return Group(*parts)


def cmd_status(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.errors import ConfigError

    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    report = gather(config)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        from rich.console import Console

        Console().print(render(report))
    return EXIT_OK if report.running else EXIT_NOT_RUNNING


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "status",
        help="open alerts, the outbox, the last publish, sensor health and the mode",
        description="What the hub is doing: open alerts, messages waiting for the centre, "
        "the last publish it acknowledged, sensor health and the mode. Asks the running "
        "agent; when it does not answer, reads what it can from the outbox file. "
        f"Exit {EXIT_OK} when the agent answered, {EXIT_NOT_RUNNING} when it did not, "
        f"{EXIT_BAD_INPUT} when the configuration cannot be used.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="the hub's configuration (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)
