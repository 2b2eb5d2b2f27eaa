"""The uplink: press-to-alert latency, bytes written to disk per day, and 1,000 kill -9s.

1. Latency: a help-button press, given to the running hub as a live driver gives its
   events, until the alert is received by a subscriber (``mosquitto_sub``) through a
   real Mosquitto: through the engine, the SQLite outbox (synced), the MQTT uplink and
   the broker. p50/p99 over ``--presses`` presses, one at a time. Baseline, in the same
   run and interleaved with it: ``mosquitto_pub`` -> ``mosquitto_sub`` round trips on the
   same broker, timed from starting ``mosquitto_pub`` to the line from ``mosquitto_sub``.
   Goal: p99 <= 2 x baseline p99 + 5 ms.
2. Disk: a busy home (simulated, ``--days`` days) replayed by the hub with the event
   store, the learned routine's file and the SQLite outbox on disk, the uplink connected
   (in memory: every message is acknowledged at once and deleted). Bytes the process
   handed to write(2)/pwrite(2) and bytes it dirtied for the block layer
   (``/proc/self/io``), per simulated day; with strace present also fsyncs per day.
   Goal: <= 5 MB/day. A replay packs days into seconds, so the kernel may merge rewrites
   of one page that live hours apart would not: the write(2) figure is the honest bound.
3. kill -9: ``agent.devtools.crash.KillHarness`` with ``--kills`` kills (the test suite
   runs the same harness with 200).

    .venv/bin/python bench/uplink.py [--presses 1000] [--days 120] [--kills 1000]
                                     [--only latency,disk,kills] [--seed N]

Figures depend on the machine and above all on its disk's fsync; run on the target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.clock import LiveClock, SimClock  # noqa: E402
from agent.config import validate_config  # noqa: E402
from agent.devtools.broker import Mosquitto  # noqa: E402
from agent.devtools.crash import KillHarness  # noqa: E402
from agent.events import EventKind, SensorEvent  # noqa: E402
from agent.homemap import HomeMap, Role, SensorSpec  # noqa: E402
from agent.messages import AlertMessage  # noqa: E402
from agent.outbox import open_outbox  # noqa: E402
from agent.runtime import Runtime  # noqa: E402
from agent.traces.format import read_header  # noqa: E402
from bench.common import Figure, busy_home, median  # noqa: E402
from drivers.replay.config import ReplayConfig  # noqa: E402

HUB = "h-bench"
MB = 1024 * 1024


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


# -- 1. latency ----------------------------------------------------------------------


class SubscriberProcess:
    """``mosquitto_sub -v`` on a topic filter; each line timestamped when it is read."""

    def __init__(self, broker: Mosquitto, topic_filter: str) -> None:
        binary = shutil.which("mosquitto_sub")
        if binary is None:
            raise SystemExit("mosquitto_sub is not installed (package mosquitto-clients)")
        self._proc = subprocess.Popen(
            [binary, "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic_filter,
             "-v", "-i", "bench-sub"],
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )  # fmt: skip
        self._cond = threading.Condition()
        self.lines: list[tuple[float, str, str]] = []  # (perf_counter, topic, payload)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            now = time.perf_counter()
            topic, _, payload = line.rstrip("\n").partition(" ")
            with self._cond:
                self.lines.append((now, topic, payload))
                self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> tuple[float, str, str]:
        """The ``count``-th line (1-based), waiting for it if need be."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.lines) >= count, timeout):
                raise TimeoutError(f"mosquitto_sub: line {count} did not come in {timeout} s")
            return self.lines[count - 1]

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


@dataclass
class Latency:
    press_to_received: list[float] = field(default_factory=list)
    press_to_stored: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)


def baseline_round_trip(broker: Mosquitto, sub: SubscriberProcess, n: int) -> float:
    """One mosquitto_pub -> mosquitto_sub round trip, on a topic of its own."""
    count = len(sub.lines) + 1
    start = time.perf_counter()
    pub = subprocess.Popen(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1",
         "-t", "bench/rtt", "-m", str(n)]
    )  # fmt: skip
    arrived, topic, payload = sub.wait_for(count)
    pub.wait(10)
    if topic != "bench/rtt" or payload != str(n):
        raise RuntimeError(f"unexpected line {topic} {payload}")
    return arrived - start


async def measure_latency(broker: Mosquitto, presses: int, workdir: Path, seed: int) -> Latency:
    button = SensorSpec(room="living", role=Role.WEARABLE, kind=EventKind.BUTTON)
    config = validate_config(
        {
            "hub": {"id": HUB, "timezone": "Europe/Amsterdam"},
            "uplink": {"type": "mqtt", "host": broker.host, "port": broker.port},
            "home": HomeMap(sensors={"help-button": button}).model_dump(mode="json"),
        },
        "<bench>",
    )
    stored: dict[int, float] = {}

    def on_alert(message: AlertMessage) -> None:  # called once the outbox has it on disk
        stored[message.seq] = time.perf_counter()

    clock = LiveClock(ZoneInfo("Europe/Amsterdam"), synced=True)
    runtime = Runtime(
        config,
        clock=clock,
        outbox=open_outbox(workdir / "latency-outbox.db", config.outbox.max_bytes),
        alert_hook=on_alert,
    )
    sub = SubscriberProcess(broker, "#")
    result = Latency()
    rng = random.Random(seed)
    task = asyncio.create_task(runtime.run())
    try:
        while not runtime.uplink.connected:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the first heartbeat and "online" go out first
        blocks = 10
        warmup = 20
        for block in range(blocks):
            n = presses // blocks + (warmup if block == 0 else 0)
            for i in range(n):
                await asyncio.sleep(rng.uniform(0.005, 0.02))
                count = len(sub.lines) + 1
                seq = runtime.engine.seq
                pressed = time.perf_counter()
                now = clock.wall(), clock.monotonic()
                runtime.emit(SensorEvent("help-button", EventKind.BUTTON, 1.0, *now))
                while True:  # skip what is not this press's alert (a heartbeat, "online")
                    arrived, topic, payload = await asyncio.to_thread(sub.wait_for, count)
                    count += 1
                    if topic.endswith("/alert") and json.loads(payload)["seq"] == seq:
                        break
                if block == 0 and i < warmup:
                    continue
                result.press_to_received.append(arrived - pressed)
                result.press_to_stored.append(stored[seq] - pressed)
            for _ in range(presses // blocks):  # the baseline, interleaved
                result.baseline.append(baseline_round_trip(broker, sub, rng.randrange(1 << 30)))
    finally:
        runtime.request_stop()
        await task
        sub.stop()
    return result


# -- 2. disk -------------------------------------------------------------------------


def read_io() -> dict[str, int]:
    with open("/proc/self/io", encoding="ascii") as fh:
        return {k: int(v) for k, v in (line.split(": ") for line in fh)}


def disk_child(trace: Path, workdir: Path, store_flush: float | None) -> dict[str, Any]:
    """In a process of its own: replay ``trace`` with everything on disk, count the writes."""
    header = read_header(trace)
    store: dict[str, Any] = {"path": str(workdir / "events.db")}
    if store_flush is not None:
        store["flush_interval"] = store_flush
    config = validate_config(
        {
            "hub": {"id": HUB, "timezone": header.tz},
            "uplink": {"type": "memory"},
            "store": store,
            "detection": {"routine": {"path": str(workdir / "routine.npz")}},
        },
        "<bench>",
    )
    replay = ReplayConfig(type="replay", path=trace, speed="max")
    config = config.model_copy(update={"drivers": [replay]})
    runtime = Runtime(
        config,
        clock=SimClock(header.zone),
        home=header.home,
        outbox=open_outbox(workdir / "outbox.db", config.outbox.max_bytes),
    )
    before = read_io()
    started = time.perf_counter()
    stats = asyncio.run(runtime.run())
    took = time.perf_counter() - started
    after = read_io()
    days = ((stats.last_wall or 0) - (stats.first_wall or 0)) / 86400
    return {
        "days": days,
        "events": stats.events,
        "alerts": sum(stats.alerts.values()),
        "heartbeats": stats.heartbeats,
        "seconds": took,
        "io": {k: after[k] - before[k] for k in after},
        "files": {p.name: p.stat().st_size for p in sorted(workdir.iterdir()) if p.is_file()},
    }


#: which part of the hub a file belongs to, by the start of its name
PARTS = {
    "events.db": "event store",
    "outbox.db": "outbox",
    "routine": "learned routine",
    ".routine-": "learned routine",  # written to a temporary name, then renamed
    "disk": "directory (syncs of new names)",
}


def measure_disk(
    days: int, workdir: Path, store_flush: float | None, presses: bool = False
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The child's own figures, and per part of the hub [bytes, write calls, syncs]."""
    trace = busy_home(days, presses)
    where = workdir / ("disk-presses" if presses else "disk")
    where.mkdir()
    order = json.dumps({"trace": str(trace), "dir": str(where), "store_flush": store_flush})
    argv = [sys.executable, __file__, "--disk-child", order]
    strace = shutil.which("strace")
    log = workdir / "strace-disk.txt"
    if strace is not None:  # which file each write and sync went to
        argv = [strace, "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-y", "-s", "0",
                "-e", "trace=write,pwrite64,fsync,fdatasync", "-o", str(log), *argv]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    parts: dict[str, list[int]] = {}
    if strace is not None:
        pattern = re.compile(r"(\w+)\(\d+<([^>]*)>.*\)\s+=\s+(\d+)")
        with log.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = pattern.search(line)
                if m is None:
                    continue
                call, path, result = m.groups()
                name = Path(path).name
                part = next((v for k, v in PARTS.items() if name.startswith(k)), "other")
                figures = parts.setdefault(part, [0, 0, 0])
                if call in ("fsync", "fdatasync"):
                    figures[2] += 1
                else:
                    figures[0] += int(result)
                    figures[1] += 1
    return json.loads(done.stdout.strip().splitlines()[-1]), parts


# -- 3. kill -9 ----------------------------------------------------------------------


def measure_kills(broker: Mosquitto, kills: int, workdir: Path, seed: int) -> str:
    shown = [0]

    def progress(report: Any) -> None:
        if report.kills >= shown[0] + 100:
            shown[0] = report.kills
            print(f"  ... {report.kills} kills, {report.seconds:.0f} s", flush=True)

    harness = KillHarness(workdir / "kills", seed=seed, broker=(broker.host, broker.port))
    return harness.run(kills, progress).text()


# -- the table -----------------------------------------------------------------------


def latency_figures(presses: int, work: Path, seed: int) -> list[Figure]:
    with Mosquitto() as broker:
        lat = asyncio.run(measure_latency(broker, presses, work, seed))
    p99, b99 = percentile(lat.press_to_received, 99), percentile(lat.baseline, 99)
    goal = 2 * b99 + 0.005
    print(f"\nlatency, {len(lat.press_to_received)} presses one at a time "
          f"(baseline: {len(lat.baseline)} round trips, interleaved)")  # fmt: skip
    print(f"  {'':34} {'p50':>10} {'p99':>10} {'max':>10}")
    rows = [
        ("press -> alert at mosquitto_sub", lat.press_to_received),
        ("  of which press -> on disk", lat.press_to_stored),
        ("mosquitto_pub -> mosquitto_sub", lat.baseline),
    ]
    for name, values in rows:
        print(f"  {name:34} {ms(median(values))} {ms(percentile(values, 99))}"
              f" {ms(max(values))}")  # fmt: skip
    verdict = "met" if p99 <= goal else "NOT met"
    print(f"  goal p99 <= 2 x {ms(b99).strip()} + 5 ms = {ms(goal).strip()}: {verdict}")
    return [
        Figure(
            "help button to subscriber, through Mosquitto",
            f"p50 {ms(median(lat.press_to_received)).strip()}, p99 {ms(p99).strip()}",
            f"mosquitto_pub -> mosquitto_sub: p50 {ms(median(lat.baseline)).strip()}, "
            f"p99 {ms(b99).strip()}",
            "p99 <= 2 x baseline p99 + 5 ms",
            p99 <= goal,
            f"{len(lat.press_to_received)} presses; of which on disk (synced): p50 "
            f"{ms(median(lat.press_to_stored)).strip()}",
        )
    ]


def disk_figures(days: int, work: Path, store_flush: float | None) -> list[Figure]:
    result, by_part = measure_disk(days, work, store_flush)
    days_f = result["days"]
    io = result["io"]
    written = io["wchar"] / days_f
    dirtied = (io["write_bytes"] - io["cancelled_write_bytes"]) / days_f
    print(f"\ndisk, busy home: {days_f:.0f} simulated days, "
          f"{result['events'] / days_f:,.0f} events/day, {result['alerts']} alerts, "
          f"{result['heartbeats']} heartbeats, "
          f"replayed in {result['seconds']:.1f} s")  # fmt: skip
    print(f"  handed to write(2)/pwrite(2) {written / MB:8.2f} MB/day "
          f"({io['syscw'] / days_f:,.0f} calls/day)")  # fmt: skip
    print(f"  dirtied for the block layer   {dirtied / MB:8.2f} MB/day")
    for part, (size, calls, syncs) in sorted(by_part.items()):
        print(f"    {part:27} {size / days_f / MB:8.2f} MB/day "
              f"({calls / days_f:,.0f} writes, {syncs / days_f:,.0f} syncs a day)")  # fmt: skip
    sizes = ", ".join(f"{n} {s / MB:.1f} MB" for n, s in result["files"].items())
    print(f"  files at the end: {sizes}")
    worst = max(written, dirtied)
    print(f"  goal <= 5 MB/day: {'met' if worst <= 5 * MB else 'NOT met'}")
    figures = [
        Figure(
            "disk: bytes written a day, busy home",
            f"{written / MB:.2f} MB/day",
            f"dirtied for the block layer {dirtied / MB:.2f} MB/day",
            "<= 5 MB/day",
            worst <= 5 * MB,
            f"{days_f:.0f} simulated days replayed with the event store, the routine file "
            f"and the SQLite outbox on disk",
        )
    ]
    if not by_part:
        print("  strace is not installed: fsyncs per alert not measured")
        return figures
    # Fsyncs per alert: the same home with a help-button press every day, against the home
    # without; the outbox's extra syncs over its extra alert messages.
    pressed, pressed_parts = measure_disk(days, work, store_flush, presses=True)
    extra_alerts = pressed["alerts"] - result["alerts"]
    base_syncs = by_part.get("outbox", [0, 0, 0])[2]
    extra_syncs = pressed_parts.get("outbox", [0, 0, 0])[2] - base_syncs
    all_syncs = sum(v[2] for v in pressed_parts.values()) - sum(v[2] for v in by_part.values())
    amortised = extra_syncs / extra_alerts
    on_path = fsyncs_on_the_alert_path(work, 200)
    assert on_path is not None
    print(f"  with a help-button press a day: {extra_alerts} more alert messages, "
          f"{extra_syncs} more outbox syncs ({all_syncs} more in all): {amortised:.2f} per "
          f"alert, with the checkpoints at later heartbeats")  # fmt: skip
    print(f"  inside the store of an alert: {on_path:.2f} per alert (goal <= 1)")
    figures.append(
        Figure(
            "disk: fsyncs per alert",
            f"{on_path:.2f} when it is stored; {amortised:.2f} with the checkpoints it brings "
            "forward",
            f"the outbox's syncs without alerts: {base_syncs / days_f:.1f} a day "
            f"(checkpoints); every file's: {sum(v[2] for v in by_part.values()) / days_f:.1f}"
            " a day",
            "<= 1",
            on_path <= 1,
            f"200 alerts stored one by one, and {extra_alerts} alert messages from a press a "
            "day against none; strace counts fsync and fdatasync",
        )
    )
    return figures


ALERT_PROBE = """
import sys
sys.path.insert(0, sys.argv[2])
from bench.common import probe_alerts
probe_alerts(sys.argv[1], int(sys.argv[3]))
"""


def fsyncs_on_the_alert_path(work: Path, alerts: int) -> float | None:
    """Fsyncs per alert inside ``add``: ``alerts`` alerts stored one by one, each with a
    state record as the runtime stores them, counted by strace between two markers."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    log = work / "strace-alerts.txt"
    subprocess.run(
        [strace, "-f", "-qq", "-o", str(log), "-e", "trace=fsync,fdatasync,write",
         sys.executable, "-c", ALERT_PROBE, str(work / "probe.db"), str(ROOT), str(alerts)],
        check=True, capture_output=True,
    )  # fmt: skip
    inside, syncs = False, 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"START' in line:
            inside = True
        elif '"END' in line:
            inside = False
        elif inside and ("fsync(" in line or "fdatasync(" in line):
            syncs += 1
    return syncs / alerts


def kill_figures(kills: int, work: Path, seed: int) -> list[Figure]:
    print(f"\nkill -9 harness, {kills} kills, broker up:", flush=True)
    with Mosquitto() as broker:
        text = measure_kills(broker, kills, work, seed)  # raises if an alert was lost
    print("  " + text)
    print("  zero accepted alerts lost, PRAGMA integrity_check ok after every kill")
    return [Figure(f"kill -9, {kills} times", "0 accepted alerts lost", "", "0 lost", True, text)]


def run(quick: bool, presses: int = 1000, days: int = 120) -> list[Figure]:
    """Latency and disk for ``bench/all.py`` (quick: fewer presses, fewer days). The kill -9
    harness is not a budget figure: ``--only kills`` runs it, and the suite runs 200."""
    logging.basicConfig(level=logging.ERROR)
    if quick:
        presses, days = 100, 28
    seed = int.from_bytes(os.urandom(4), "big")
    with tempfile.TemporaryDirectory(prefix="bench-uplink-") as tmp:
        work = Path(tmp)
        return [*latency_figures(presses, work, seed), *disk_figures(days, work, None)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--presses", type=int, default=1000)
    parser.add_argument("--days", type=int, default=120, help="simulated days of a busy home")
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--only", default="latency,disk,kills", help="which parts to run")
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    parser.add_argument(
        "--store-flush",
        type=float,
        help="seconds between event store writes (default: the configuration's default)",
    )
    parser.add_argument("--disk-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.disk_child is not None:
        order = json.loads(args.disk_child)
        figures = disk_child(Path(order["trace"]), Path(order["dir"]), order["store_flush"])
        print(json.dumps(figures))
        return
    parts = set(args.only.split(","))
    print(f"uplink benchmark: {os.cpu_count()} cores; seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="bench-uplink-") as tmp:
        work = Path(tmp)
        if "latency" in parts:
            latency_figures(args.presses, work, args.seed)
        if "disk" in parts:
            disk_figures(args.days, work, args.store_flush)
        if "kills" in parts:
            kill_figures(args.kills, work, args.seed)


if __name__ == "__main__":
    main()
