"""``hub demo``: the whole path from a home to the centre, on one machine.

A simulated fortnight of a home with an incident, a private Mosquitto on a free port,
the hub replaying the home at full speed and publishing to it, and a subscriber in the
role of the centre printing each message as it arrives.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.devtools.broker import Mosquitto, Received, Subscriber, find_mosquitto
from agent.traces.format import Label, labels_path, write_labels, write_trace
from agent.traces.simulate import parse_incident, simulate
from agent.units import format_duration

START = date(2026, 11, 2)
TZ = ZoneInfo("Europe/Amsterdam")
HUB = "h-demo"
PREFIX = "leefsamen"


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%a %d %b %H:%M")


class Centre:
    """Prints what the centre receives, as it arrives; counts everything."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.alerts = 0
        self.heartbeats = 0
        self.bytes = 0
        self.statuses: list[str] = []
        self.raised: list[dict[str, Any]] = []

    def receive(self, msg: Received) -> None:
        with self.lock:
            self.bytes += len(msg.topic) + len(msg.payload)
            kind = msg.topic.rsplit("/", 1)[-1]
            body = json.loads(msg.payload)
            if kind == "alert":
                self.alerts += 1
                if body["state"] == "raised":
                    self.raised.append(body)
                print(
                    f"  {_when(body['at'])}  {body['severity'].upper():7} {body['kind']:12}"
                    f" {body['state']:9} {body.get('room') or '-':8} {body['summary']}",
                    flush=True,
                )
            elif kind == "heartbeat":
                self.heartbeats += 1
            elif kind == "status":
                self.statuses.append(body["state"])
                print(f"  status: hub {body['state']}", flush=True)


def run_demo(
    days: int = 14, seed: int = 7, incidents: list[str] | None = None, workdir: Path | None = None
) -> int:
    from agent.replay import replay_runtime

    binary = find_mosquitto()
    if binary is None:
        print("hub demo needs Mosquitto: sudo apt-get install mosquitto", file=sys.stderr)
        return 1
    specs = incidents if incidents is not None else [f"fall@d{days - 1}T10:40"]
    try:
        parsed = [parse_incident(text, START, TZ) for text in specs]
    except ValueError as err:
        print(f"--incident: {err}", file=sys.stderr)
        return 2
    work = workdir or Path(tempfile.mkdtemp(prefix="leefsamen-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    sim = simulate(days, seed, START, TZ, "typical", parsed)
    trace = work / "home.jsonl"
    write_trace(trace, sim.header, sim.events)
    write_labels(labels_path(trace), sim.labels)
    print(f"home:      simulated, {days} days from {START:%a %d %b %Y}, seed {seed}, {TZ.key}")
    print(f"           {len(sim.events):,} sensor events in {trace}")
    for label in sim.labels:
        if label.type == "incident":
            room = f" ({label.room})" if label.room else ""
            print(f"incident:  {label.label} on {label.start:%a %d %b %H:%M}{room}")
    with Mosquitto() as broker:
        print(f"broker:    private Mosquitto on {broker.host}:{broker.port}")
        config = work / "hub.toml"
        config.write_text(
            f'[hub]\nid = "{HUB}"\ntimezone = "{TZ.key}"\n\n'
            f'[uplink]\ntype = "mqtt"\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'prefix = "{PREFIX}"\n',
            encoding="utf-8",
        )
        centre = Centre()
        print(f"centre:    subscribed to {PREFIX}/{HUB}/#; what arrives:\n")
        with Subscriber(
            broker.host, broker.port, f"{PREFIX}/{HUB}/#", on_receive=centre.receive
        ).start() as sub:
            runtime = replay_runtime(trace, config, "max")
            t0 = time.perf_counter()
            stats = asyncio.run(runtime.run())
            elapsed = time.perf_counter() - t0
            sent = sum(n for key, n in stats.alerts.items())
            sub.wait_until(
                lambda _: centre.alerts >= sent and "offline" in centre.statuses,
                timeout=30.0,
                what="every alert and the offline status",
            )
    per_day = centre.bytes / max(days, 1)
    print(
        f"\nhub:       replayed {stats.events:,} events ({days} days) in {elapsed:.1f} s; "
        f"sent {sent} alert message(s)"
    )
    print(
        f"centre:    received {centre.alerts} alert message(s), {centre.heartbeats} heartbeat(s) "
        f"(coalesced while the hub ran ahead of the broker), {centre.bytes:,} bytes "
        f"({per_day / 1024:.1f} KB a simulated day)"
    )
    print("\ntruth:     what the simulation knows and the hub does not")
    for line in judge(centre.raised, sim.labels):
        print(f"  {line}")
    print(f"files:     {work}")
    return 0 if centre.alerts == sent else 1


def judge(raised: list[dict[str, Any]], labels: list[Label]) -> list[str]:
    """Each raised alert against the simulation's labels: an incident caught, or not."""
    lines = []
    incidents = [label for label in labels if label.type == "incident"]
    caught: set[int] = set()
    for body in raised:
        at = datetime.fromisoformat(body["at"])
        since = datetime.fromisoformat(body["since"])
        hit = next(
            (
                i
                for i, inc in enumerate(incidents)
                if inc.start - timedelta(minutes=5) <= at
                and body["kind"] in inc.expect
                and i not in caught
            ),
            None,
        )
        if hit is not None:
            caught.add(hit)
            inc = incidents[hit]
            delay = (at - inc.start).total_seconds()
            lines.append(
                f"{body['kind']} at {_when(body['at'])}: the {inc.label} of "
                f"{inc.start:%a %d %b %H:%M}, detected after {format_duration(delay)}"
            )
            continue
        during = [
            label.label
            for label in labels
            if label.type == "activity"
            and label.start <= at
            and (label.end or label.start) >= since
        ]
        what = f" (the person was: {', '.join(sorted(set(during)))})" if during else ""
        lines.append(f"{body['kind']} at {_when(body['at'])}: a false alarm{what}")
    for i, inc in enumerate(incidents):
        if i not in caught:
            lines.append(f"the {inc.label} of {inc.start:%a %d %b %H:%M} was not detected")
    return lines
