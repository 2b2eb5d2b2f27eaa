"""``hub check``: the installer's live walk-through of the home.

Connects to the running agent's local status socket (``[local] socket``, see
``agent.localstatus``) and shows every sensor of the home map: room, role, driver, the last
thing it said and how long ago, battery and signal. A sensor turns green while it is
triggered (for ``fresh`` seconds after a motion, a door opening, a press), and stays marked
as having responded for the rest of the walk-through; sensors that have not responded since
the check began are listed at the end, as are devices that are heard but are not in the
home map. The header says whether the hub reaches the centre.

``--once --json`` prints one snapshot with the walk-through state for scripts. The pure
parts (``walk_states``, ``render``) are what the tests check; ``watch`` only moves lines
from the socket to the screen.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from agent.events import MEASUREMENT_KINDS
from agent.units import format_duration

DEFAULT_FRESH = 10.0  # seconds a trigger stays green


class CheckError(Exception):
    """The agent cannot be watched: not running, no socket configured, a garbled answer."""


class Walk(StrEnum):
    NOW = "now"  # triggered in the last ``fresh`` seconds: green
    RESPONDED = "responded"  # triggered since the check began
    WAITING = "waiting"  # not since the check began: walk there and trigger it


_MEASURING = frozenset(k.value for k in MEASUREMENT_KINDS)


@dataclass
class WalkThrough:
    """What the installer has seen since the check began (client-side, in memory)."""

    fresh: float = DEFAULT_FRESH
    started: float = field(default_factory=time.monotonic)
    responded: dict[str, float] = field(default_factory=dict)  # sensor -> when (monotonic)

    def update(self, snapshot: dict[str, Any], now: float | None = None) -> dict[str, Walk]:
        """Each sensor's walk-through state after this snapshot, received at ``now``."""
        now = time.monotonic() if now is None else now
        states: dict[str, Walk] = {}
        for row in snapshot.get("sensors", []):
            sid = row["id"]
            ago = _trigger_ago(row)
            if ago is not None and now - ago >= self.started - 0.5:
                self.responded.setdefault(sid, now - ago)
            if ago is not None and ago <= self.fresh:
                states[sid] = Walk.NOW
            elif sid in self.responded:
                states[sid] = Walk.RESPONDED
            else:
                states[sid] = Walk.WAITING
        return states


def _trigger_ago(row: dict[str, Any]) -> float | None:
    """Seconds since the sensor was triggered: activity, or a thermometer's reading."""
    value = row.get("reading_ago_s") if row.get("kind") in _MEASURING else row.get("active_ago_s")
    return None if value is None else float(value)


# ---- rendering --------------------------------------------------------------------------
def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    return f"{format_duration(seconds)} ago"


def _value(kind: str | None, value: float | None) -> str:
    if kind is None or value is None:
        return ""
    named = {
        "motion": ("clear", "motion"),
        "presence": ("nobody", "present"),
        "contact": ("closed", "open"),
        "pressure": ("free", "occupied"),
        "button": ("released", "pressed"),
        "fall": ("clear", "FALL"),
        "smoke": ("clear", "SMOKE"),
        "water_leak": ("dry", "LEAK"),
        "availability": ("offline", "online"),
        "battery_low": ("fine", "low"),
    }.get(kind)
    if named is not None:
        if kind == "button" and value >= 2:
            return "button long press"
        return f"{kind} {named[1] if value >= 1 else named[0]}"
    unit = {"temperature": " °C", "humidity": " %", "illuminance": " lx", "battery": " %"}
    return f"{kind} {value:g}{unit.get(kind, '')}"


def _last(row: dict[str, Any]) -> str:
    """The sensor's own reading (its kind in the home map) if it gave one, else its last word."""
    if row.get("reading") is not None and row.get("kind") is not None:
        return _value(row["kind"], row["reading"])
    return _value(row.get("last_kind"), row.get("last_value"))


def _battery(row: dict[str, Any]) -> Text:
    battery, low = row.get("battery"), row.get("battery_low")
    if battery is None and low is None:
        return Text("")
    text = f"{battery:.0f} %" if battery is not None else ("low" if low else "ok")
    return Text(text, style="bold red" if low or (battery is not None and battery < 15) else "")


def _signal(row: dict[str, Any]) -> str:
    value, unit = row.get("signal"), row.get("signal_unit")
    if value is None:
        return ""
    return f"{value:.0f} {unit}" if unit == "dBm" else f"{value:.0f} {unit or ''}".strip()


_STYLE = {Walk.NOW: "bold black on green", Walk.RESPONDED: "green", Walk.WAITING: "dim"}
_MARK = {Walk.NOW: "● now", Walk.RESPONDED: "✓", Walk.WAITING: "…"}


def render(snapshot: dict[str, Any], states: dict[str, Walk]) -> RenderableType:
    """The whole screen for one snapshot: header, sensors, then what is still missing."""
    uplink = snapshot.get("uplink", {})
    head = Text()
    head.append(f"hub {snapshot.get('hub', '?')}  ", style="bold")
    head.append(f"v{snapshot.get('version', '?')}  ")
    if uplink.get("connected"):
        head.append("centre: connected ✓", style="bold green")
    else:
        waiting = uplink.get("depth", 0)
        head.append(f"centre: NOT connected ({waiting} waiting)", style="bold red")
    head.append("  clock: ")
    head.append(
        "synchronised" if snapshot.get("clock_synced") else "NOT synchronised",
        style="" if snapshot.get("clock_synced") else "yellow",
    )
    head.append(f"  mode: {snapshot.get('mode', '?')}")

    drivers = Text("drivers: ")
    for i, d in enumerate(snapshot.get("drivers", [])):
        if i:
            drivers.append("  ")
        ok = d.get("state") == "running"
        drivers.append(f"{d['name']} {d.get('state')}", style="green" if ok else "bold red")
        if not ok and d.get("last_error"):
            drivers.append(f" ({d['last_error'][:60]})", style="red")
    if not snapshot.get("drivers"):
        drivers.append("none configured", style="yellow")

    rows = snapshot.get("sensors", [])
    seen = [r for r in rows if states.get(r["id"]) is not Walk.WAITING]
    waiting = [r for r in rows if states.get(r["id"]) is Walk.WAITING]
    table = Table(expand=True, show_lines=False, pad_edge=False)
    for col in ("", "sensor", "room", "role", "driver", "last", "when", "battery", "signal"):
        table.add_column(col, no_wrap=col in ("", "sensor", "when"))
    for row in [*seen, *waiting]:
        state = states.get(row["id"], Walk.WAITING)
        offline = row.get("online") is False
        table.add_row(
            _MARK[state],
            # Text, not markup: the installer's labels and rooms are printed as written
            Text(row.get("label") or row["id"]),
            Text(row.get("room", "")),
            Text(row.get("role", "")),
            Text(row.get("driver") or ""),
            "OFFLINE" if offline else _last(row),
            _ago(row.get("last_ago_s")),
            _battery(row),
            _signal(row),
            style="bold red" if offline else _STYLE[state],
        )
    done = Text()
    if rows and not waiting:
        done.append(f"All {len(rows)} sensors responded ✓", style="bold green")
    elif rows:
        done.append(f"Not seen yet ({len(waiting)} of {len(rows)}): ", style="bold yellow")
        done.append(", ".join(f"{r['id']} ({r.get('room', '')})" for r in waiting))
    else:
        done.append("The home map has no sensors: add them to the configuration", style="yellow")
    parts: list[RenderableType] = [head, drivers, table, done]
    strangers = snapshot.get("strangers", [])
    if strangers:
        parts.append(
            Text(
                "Heard but not in the home map: "
                + ", ".join(f"{s['id']} ({s['events']})" for s in strangers),
                style="yellow",
            )
        )
    parts.append(Text("Ctrl-C to leave", style="dim"))
    return Group(*parts)


def as_json(snapshot: dict[str, Any], states: dict[str, Walk]) -> dict[str, Any]:
    """The snapshot for scripts, each sensor with its walk-through state."""
    sensors = [
        {**row, "walk": states.get(row["id"], Walk.WAITING).value}
        for row in snapshot.get("sensors", [])
    ]
    return {
        **snapshot,
        "sensors": sensors,
        "not_seen": [s["id"] for s in sensors if s["walk"] == Walk.WAITING.value],
    }


# ---- the socket ---------------------------------------------------------------------------
def snapshots(path: Path, timeout: float = 5.0) -> Iterator[dict[str, Any]]:
    """Snapshots from the agent at ``path`` until it closes the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError as err:
            raise CheckError(
                f"no agent socket at {path}: is the hub agent running? "
                "(systemctl status leefsamen-hub)"
            ) from err
        except PermissionError as err:
            raise CheckError(
                f"not allowed to open {path}: run as the hub's user or a member of its group"
            ) from err
        except OSError as err:
            raise CheckError(f"the agent does not answer at {path}: {err.strerror}") from err
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError as err:
                raise CheckError(f"the agent at {path} stopped answering") from err
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    snap = json.loads(line)
                except ValueError as err:
                    raise CheckError(f"the agent at {path} sent something unreadable") from err
                if not isinstance(snap, dict) or snap.get("v") != 1:
                    raise CheckError(f"the agent at {path} speaks another version: update hub")
                yield snap
    finally:
        sock.close()


def once(path: Path, fresh: float) -> tuple[dict[str, Any], dict[str, Walk]]:
    walk = WalkThrough(fresh=fresh)
    walk.started = -float("inf")  # a single look: anything ever triggered counts as seen
    for snap in snapshots(path):
        return snap, walk.update(snap)
    raise CheckError(f"the agent at {path} closed the connection without a word")


def watch(path: Path, fresh: float, console: Console | None = None) -> None:
    """The live view until Ctrl-C or until the agent goes away."""
    from rich.live import Live

    console = console or Console()
    walk = WalkThrough(fresh=fresh)
    with Live(console=console, auto_refresh=False, screen=False) as live:
        for snap in snapshots(path):
            live.update(render(snap, walk.update(snap)), refresh=True)
    raise CheckError(f"the agent at {path} closed the connection (stopped or restarted)")
