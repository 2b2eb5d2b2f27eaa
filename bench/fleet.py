"""A fleet upstream: N simulated hubs against one local Mosquitto, N = 1,000 and 10,000.

Each simulated hub (``bench/fleetclient.py``) speaks to the broker as the agent's
``MqttUplink`` does, byte for byte (checked at the start of every run against a real
``MqttUplink`` recorded through a relay): MQTT 5, client id = hub id, topics
``leefsamen/<hub_id>/...``, retained "online" status with a Will "offline", heartbeats
with the message expiry property, alerts at QoS 1 built with the agent's own models, a
PINGREQ when idle, and reconnection with ``agent.uplink.retry_delay`` between the
default bounds. The hubs run in ``--workers`` processes (default 2, one per core of the
machine this was written on), one asyncio loop each. The broker runs as the test broker
does (``agent.devtools.broker.Mosquitto``, no persistence) but logs errors only and has
no connection limit; this process raises its open-file limit to the hard limit.

Time is compressed by ``--scale`` S: a heartbeat every interval/S and a PINGREQ after
keepalive/S idle (the ``[heartbeat]`` and ``[uplink]`` defaults), and S times the real
alert rate (``--alerts-per-day``, default 3 per hub: the busiest replayed home,
Kasteren, has 2.3). Rates are printed as measured and divided by S ("real time");
timeouts are not compressed.

Measured:
- the load generator: paho driven as the uplink drives it, against fleetclient's own
  encoder, 1,000 hubs: CPU per connection, per heartbeat, when idle, and memory per hub;
- TLS: ``--tls-hubs`` hubs connect at once over TLS (EC P-256 certificates both ways, a
  full handshake each): broker CPU and memory per connection. Baseline: the same hubs
  over plain TCP, each to a fresh broker;
- per N, connect: every hub starts at once; time until all have their CONNACK and until
  every retained "online" is acknowledged;
- per N, steady: PUBLISH messages per second received by a subscriber on
  ``leefsamen/#`` (``mosquitto_sub``, QoS 1), broker CPU (utime + stime of the mosquitto
  process from /proc, as % of one core) and RSS; medians over three parts of the window.
  Then the hubs stop producing and every acknowledged message must have reached the
  subscriber: one missing raises ``FleetError``. Then the broker's CPU with every hub
  connected and silent. Baseline, in the same run, before the fleet connects: one
  client publishing the same messages at the same rate, and the same client unpaced
  with 64 in flight;
- per N, restart: the broker is killed (SIGKILL) and started again on the same port
  after each of ``--outages`` seconds; connections per second, the peak second and the
  time until all N are back. Baseline: no jitter, every hub retrying every 1 s (all at
  once). The machine's two cores run the broker and the hubs alike: where the load
  generator is busy, it, not the broker, sets the pace (its CPU is printed);
- computed, not measured (``--model``): when 100,000 hubs would be back after each of
  ``--model-outages`` seconds, with ``retry_delay`` itself and a broker that takes all.

There is no goal: the figures feed docs/scaling.md. Nothing is asserted about time.

    .venv/bin/python bench/fleet.py [--hubs 1000,10000] [--scale 60] [--seconds 30]
        [--outages 0,15] [--repeat 1] [--alerts-per-day 3] [--workers 2]
        [--tls-hubs 1000] [--model 100000] [--no-compare] [--quick]

The default run takes about 8 minutes on 2 cores; ``--quick`` (1,000 hubs, short
windows, one restart) under 2.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.devtools.broker import BrokerTls, Mosquitto  # noqa: E402
from agent.devtools.pki import TestPki  # noqa: E402
from agent.messages import encode  # noqa: E402
from agent.uplink import retry_delay  # noqa: E402
from bench import fleetclient as fc  # noqa: E402
from bench.common import Figure, cpu_model, median, print_figures  # noqa: E402

CLIENT: Final = Path(__file__).with_name("fleetclient.py")
TICK: Final = os.sysconf("SC_CLK_TCK")
#: appended to the broker's configuration: log errors only (the test broker logs every
#: packet, which would be most of its work here), no connection limit, no queue limit
BROKER_CONF: Final = """
log_type none
log_type error
log_type warning
connection_messages false
max_connections -1
max_queued_messages 0
"""
FD_MARGIN: Final = 64  # open files besides the hubs' sockets, per process


class FleetError(RuntimeError):
    """The run cannot give true figures: messages missing, hubs not back, a limit hit."""


# -- the broker, seen from /proc -----------------------------------------------------


def broker_pid(broker: Mosquitto) -> int:
    """The pid of the mosquitto process that runs ``broker``'s configuration."""
    wanted = str(broker.conf_path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in argv:
            return int(entry.name)
    raise FleetError(f"no mosquitto process runs {broker.conf_path}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def mosquitto_version(binary: str) -> str:
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].strip() if first else "unknown"


# -- the subscriber --------------------------------------------------------------------


class Subscriber:
    """``mosquitto_sub`` on ``leefsamen/#`` at QoS 1; counts messages by last topic level."""

    def __init__(self, broker: Mosquitto) -> None:
        binary = shutil.which("mosquitto_sub")
        if binary is None:
            raise SystemExit("mosquitto_sub is not installed (package mosquitto-clients)")
        self._proc = subprocess.Popen(
            [binary, "-h", broker.host, "-p", str(broker.port), "-V", "5", "-q", "1",
             "-t", f"{fc.UPLINK.prefix}/#", "-F", "%t", "-R", "-i", "fleet-subscriber"],
            stdout=subprocess.PIPE, text=True, bufsize=1 << 16,
        )  # fmt: skip
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._wait_ready(broker)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            kind = line.rstrip("\n").rpartition("/")[2]
            with self._lock:
                self._counts[kind] += 1

    def _wait_ready(self, broker: Mosquitto) -> None:
        """Publish a probe until it comes back: then the subscription is in place."""
        deadline = time.monotonic() + 20
        while not self.counts()["ready"]:
            if time.monotonic() > deadline:
                raise FleetError("mosquitto_sub did not receive the probe within 20 s")
            subprocess.run(
                ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1",
                 "-t", f"{fc.UPLINK.prefix}/probe/ready", "-m", "ready"],
                check=True,
            )  # fmt: skip
            time.sleep(0.2)

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> None:
        if self.running:
            self._proc.terminate()
            self._proc.wait(10)


def wait_delivered(sub: Subscriber, offset: Counter[str], acked: Counter[str], what: str) -> None:
    """Every acknowledged message must reach the subscriber; ``FleetError`` if one is missing."""
    deadline = time.monotonic() + 30
    while True:
        seen = sub.counts() - offset
        short = {k: acked[k] - seen[k] for k in fc.KINDS if seen[k] < acked[k]}
        if not short:
            return
        if time.monotonic() > deadline:
            raise FleetError(
                f"{what}: messages acknowledged by the broker never reached the subscriber: "
                f"missing {short} (acknowledged {dict(acked)}, received {dict(seen)})"
            )
        time.sleep(0.1)


# -- the load generator processes ------------------------------------------------------


@dataclass
class Totals:
    """The counters of all worker processes, added up."""

    ints: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    payload_bytes: Counter[str] = field(default_factory=Counter)
    packet_bytes: Counter[str] = field(default_factory=Counter)
    connects: list[float] = field(default_factory=list)
    cpu: float = 0.0
    rss_kb: int = 0
    tls_version: str = ""

    @property
    def connected(self) -> int:
        return self.ints["connected"]


class Workers:
    """The processes that run the hubs: ``fleetclient.py`` in fleet mode, one loop each."""

    def __init__(
        self,
        broker: Mosquitto,
        hubs: int,
        args: argparse.Namespace,
        nofile: int,
        tls: dict[str, str] | None = None,
        producing: bool = True,
    ) -> None:
        """Start the hubs in ``args.workers`` processes; over TLS when ``tls`` names the files."""
        self.procs: list[subprocess.Popen[str]] = []
        self.seen: list[int] = []  # CONNACK times already collected, per process
        self.started = time.monotonic()
        share = -(-hubs // args.workers)
        for first in range(0, hubs, share):
            spec = {
                "mode": "fleet", "host": broker.host, "first": first,
                "port": broker.port if tls is None else broker.tls_port,
                "count": min(share, hubs - first), "scale": args.scale,
                "alerts_per_day": args.alerts_per_day, "seed": args.seed + first,
                "nofile": nofile, "tls": tls, "producing": producing,
            }  # fmt: skip
            argv = [sys.executable, str(CLIENT), json.dumps(spec)]
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.procs.append(proc)
            self.seen.append(0)
        starts = []
        for proc in self.procs:
            ready = self._read(proc)
            if not ready.get("ready"):
                raise FleetError(f"a load generator did not start: {ready}")
            starts.append(ready["started"])
        self.started = min(starts)  # when the first hubs began to connect

    @staticmethod
    def _read(proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise FleetError(f"a load generator ended (status {proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def command(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(order) + "\n")
            proc.stdin.flush()
        return [self._read(proc) for proc in self.procs]

    def stats(self) -> Totals:
        totals = Totals()
        for i, proc in enumerate(self.procs):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"cmd": "stats", "since": self.seen[i]}) + "\n")
            proc.stdin.flush()
        for i, proc in enumerate(self.procs):
            out = self._read(proc)
            self.seen[i] = out["connects_total"]
            totals.connects += out["connects"]
            for key in ("sent", "acked", "payload_bytes", "packet_bytes"):
                getattr(totals, key).update(out[key])
            for key in ("attempts", "failed", "lost", "pings", "ping_timeouts", "refused",
                        "timeouts", "bytes_in", "connected", "busy"):  # fmt: skip
                totals.ints[key] += out[key]
            totals.cpu += out["cpu"]
            totals.rss_kb += out["rss_kb"]
        totals.connects.sort()
        totals.tls_version = out["tls_version"]
        return totals

    def stop(self) -> None:
        try:
            self.command({"cmd": "stop"})
        finally:
            for proc in self.procs:
                if proc.stdin is not None:
                    proc.stdin.close()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    """``fleetclient.py`` in a one-shot mode (baseline, comparison); its JSON answer."""
    done = subprocess.run(
        [sys.executable, str(CLIENT), json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise FleetError(f"{spec['mode']} failed (status {done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the phases ----------------------------------------------------------------------


@dataclass
class Steady:
    """One steady window (or part of one)."""

    seconds: float
    received: Counter[str]  # by the subscriber
    broker_cpu: float  # seconds
    generator_cpu: float  # seconds, all worker processes
    pings: int
    wire_out: int  # MQTT bytes the hubs wrote
    wire_in: int  # and read

    @property
    def messages(self) -> int:
        return sum(self.received[k] for k in fc.KINDS)


@dataclass
class Storm:
    """One broker restart: when each hub got its CONNACK again."""

    jitter: bool
    outage: float
    down_s: float  # from the kill until the broker listened again
    connects: list[float]  # CONNACK times, seconds after the broker listened again, sorted
    failed: int  # connection attempts refused or timed out meanwhile
    broker_cpu_peak: float  # % of a core, the busiest 0.5 s
    generator_cpu: float  # % of a core, from the kill until all were back

    def per_bin(self, width: float = 1.0) -> list[int]:
        if not self.connects:
            return []
        bins = [0] * (int(self.connects[-1] / width) + 1)
        for t in self.connects:
            bins[max(0, int(t / width))] += 1
        return bins

    @property
    def peak(self) -> int:
        """Connections in the busiest second (bins from the moment the broker listened)."""
        return max(self.per_bin(), default=0)

    @property
    def peak_rate(self) -> float:
        """The busiest 100 ms, as connections per second."""
        return max(self.per_bin(0.1), default=0) * 10

    def back(self, fraction: float) -> float:
        """Seconds after the broker listened again until ``fraction`` of the hubs were back."""
        if not self.connects:
            return 0.0
        return self.connects[max(0, math.ceil(fraction * len(self.connects)) - 1)]


@dataclass
class FleetRun:
    hubs: int
    connect_s: float = 0.0
    online_s: float = 0.0
    connect_generator_cpu: float = 0.0
    connect_broker_cpu: float = 0.0
    broker_rss_connected_kb: int = 0
    broker_rss_kb: int = 0
    broker_rss_before_kb: int = 0
    steady: list[Steady] = field(default_factory=list)
    payload: dict[str, float] = field(default_factory=dict)  # mean bytes by kind
    packet_bytes: Counter[str] = field(default_factory=Counter)
    storms: list[Storm] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    capacity: dict[str, Any] = field(default_factory=dict)
    baseline_broker_cpu: float = 0.0
    quiet_cpu: float = 0.0  # % of a core, every hub connected and silent
    capacity_broker_cpu: float = 0.0
    delivered: int = 0


def wait_for(
    workers: Workers, done: Any, timeout: float, what: str, every: float = 0.1
) -> list[Totals]:
    """Poll the workers until ``done(totals)``; every poll's totals. ``FleetError`` on timeout."""
    deadline = time.monotonic() + timeout
    polls = []
    while True:
        totals = workers.stats()
        polls.append(totals)
        if done(totals):
            return polls
        if time.monotonic() > deadline:
            raise FleetError(
                f"{what}: not done within {timeout:.0f} s "
                f"({totals.connected} connected, {dict(totals.ints)})"
            )
        time.sleep(every)


def measure_baseline(broker: Mosquitto, run: FleetRun, args: argparse.Namespace) -> None:
    """One client: the fleet's messages at the fleet's rate, then as fast as it goes."""
    pid = broker_pid(broker)
    rate = run.hubs * args.scale * (1 / fc.HEARTBEAT_INTERVAL + args.alerts_per_day / 86400)
    spec = {
        "mode": "single", "host": broker.host, "port": broker.port, "hubs": run.hubs,
        "seed": args.seed, "alerts_per_day": args.alerts_per_day, "rate": rate,
        "seconds": args.seconds, "window": 1, "nofile": 256,
    }  # fmt: skip
    cpu0 = cpu_seconds(pid)
    run.baseline = run_client(spec)
    run.baseline_broker_cpu = cpu_seconds(pid) - cpu0
    spec.update(rate=0, seconds=min(args.seconds, 10), window=64)
    cpu0 = cpu_seconds(pid)
    run.capacity = run_client(spec)
    run.capacity_broker_cpu = cpu_seconds(pid) - cpu0
    for result in (run.baseline, run.capacity):
        if result["acked"] != result["sent"]:
            raise FleetError(f"single client: sent {result['sent']}, acked {result['acked']}")


def connect_fleet(broker: Mosquitto, workers: Workers, run: FleetRun, cpu0: float) -> None:
    """All hubs start at once; until every CONNACK and every retained "online" is in."""
    n = run.hubs
    polls = wait_for(
        workers,
        lambda t: t.connected >= n and t.acked["status"] >= n,
        timeout=120 + n / 50,
        what=f"connecting {n} hubs",
    )
    connects = sorted(c for p in polls for c in p.connects)
    if len(connects) < n:
        raise FleetError(f"only {len(connects)} CONNACKs for {n} hubs")
    run.connect_s = connects[n - 1] - workers.started
    run.online_s = time.monotonic() - workers.started  # within one poll (0.1 s)
    run.connect_generator_cpu = polls[-1].cpu
    run.connect_broker_cpu = cpu_seconds(broker_pid(broker)) - cpu0
    run.broker_rss_connected_kb = fc.rss_kb(broker_pid(broker))


def measure_steady(
    broker: Mosquitto, sub: Subscriber, workers: Workers, run: FleetRun, args: argparse.Namespace
) -> None:
    """Three parts of the steady window, then a check that nothing went missing."""
    pid = broker_pid(broker)
    part = args.seconds / 3
    before, cpu0, at = workers.stats(), cpu_seconds(pid), time.monotonic()
    counts0 = sub.counts()
    first = before
    for _ in range(3):
        time.sleep(part)
        after, cpu1, now = workers.stats(), cpu_seconds(pid), time.monotonic()
        counts1 = sub.counts()
        run.steady.append(
            Steady(
                seconds=now - at,
                received=counts1 - counts0,
                broker_cpu=cpu1 - cpu0,
                generator_cpu=after.cpu - before.cpu,
                pings=after.ints["pings"] - before.ints["pings"],
                wire_out=sum(after.packet_bytes.values()) - sum(before.packet_bytes.values()),
                wire_in=after.ints["bytes_in"] - before.ints["bytes_in"],
            )
        )
        before, cpu0, at, counts0 = after, cpu1, now, counts1
    if before.ints["lost"] or before.ints["timeouts"] or before.ints["refused"]:
        raise FleetError(f"hubs lost connections or publishes in the steady window: {before.ints}")
    run.broker_rss_kb = fc.rss_kb(pid)
    run.packet_bytes = before.packet_bytes - first.packet_bytes
    run.payload = {
        k: before.payload_bytes[k] / before.acked[k] for k in fc.KINDS if before.acked[k]
    }


def measure_quiet(broker: Mosquitto, workers: Workers, run: FleetRun, seconds: float) -> None:
    """Broker CPU with every hub connected and silent: what connections cost by themselves."""
    workers.command({"cmd": "quiet", "on": True})
    wait_for(workers, lambda t: t.ints["busy"] == 0, 60, "emptying the queues")
    time.sleep(2)  # the last PUBACKs and PINGRESPs
    pid = broker_pid(broker)
    before, cpu0, t0 = workers.stats(), cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    after, cpu1, t1 = workers.stats(), cpu_seconds(pid), time.monotonic()
    workers.command({"cmd": "quiet", "on": False})
    sent = sum(after.packet_bytes.values()) - sum(before.packet_bytes.values())
    if sent:
        raise FleetError(f"the hubs sent {sent} bytes while they should have been quiet")
    run.quiet_cpu = pct(cpu1 - cpu0, t1 - t0)


def check_delivery(sub: Subscriber, offset: Counter[str], workers: Workers, run: FleetRun) -> None:
    """Stop producing, let the queues empty, and match the subscriber against the PUBACKs."""
    workers.command({"cmd": "produce", "on": False})
    totals = wait_for(workers, lambda t: t.ints["busy"] == 0, 60, "emptying the queues")[-1]
    if totals.sent != totals.acked:
        raise FleetError(f"publishes not acknowledged: sent {totals.sent}, acked {totals.acked}")
    wait_delivered(sub, offset, totals.acked, f"fleet of {run.hubs}")
    run.delivered = sum(totals.acked.values())
    workers.command({"cmd": "produce", "on": True})


def measure_storm(
    broker: Mosquitto, workers: Workers, run: FleetRun, jitter: bool, outage: float
) -> Storm:
    """Kill the broker, wait ``outage`` s, start it again; until every hub is back."""
    n = run.hubs
    workers.command({"cmd": "jitter", "on": jitter})
    wait_for(workers, lambda t: t.connected >= n, 60, "hubs connected before the restart")
    before = workers.stats()
    killed = time.monotonic()
    broker.kill()
    time.sleep(outage)
    broker.start()
    up = time.monotonic()
    pid = broker_pid(broker)
    samples: list[tuple[float, float]] = [(up, cpu_seconds(pid))]
    connects: list[float] = []
    last = before

    def back(totals: Totals) -> bool:
        nonlocal last
        connects.extend(totals.connects)
        samples.append((time.monotonic(), cpu_seconds(pid)))
        last = totals
        return totals.connected >= n and len(connects) >= n

    wait_for(workers, back, 120 + fc.UPLINK.reconnect_max + outage, f"{n} hubs back", 0.5)
    if len(connects) != n:
        raise FleetError(f"{len(connects)} reconnections for {n} hubs (some were dropped again)")
    peak = max(
        ((c1 - c0) / (t1 - t0) * 100 for (t0, c0), (t1, c1) in itertools.pairwise(samples)),
        default=0.0,
    )
    return Storm(
        jitter=jitter,
        outage=outage,
        down_s=up - killed,
        connects=sorted(t - up for t in connects),
        failed=last.ints["failed"] - before.ints["failed"],
        broker_cpu_peak=peak,
        generator_cpu=(last.cpu - before.cpu) / (time.monotonic() - killed) * 100,
    )


def measure_fleet(hubs: int, args: argparse.Namespace, nofile: int) -> FleetRun:
    """One fresh broker, the baseline, then the fleet: connect, steady, restarts."""
    run = FleetRun(hubs)
    with Mosquitto(extra_conf=BROKER_CONF, start_timeout=30) as broker:
        sub = Subscriber(broker)
        try:
            print(f"  {hubs:,} hubs: baseline (one client) ...", flush=True)
            measure_baseline(broker, run, args)
            acked = Counter(run.baseline["acked"]) + Counter(run.capacity["acked"])
            wait_delivered(sub, Counter(), acked, "single client")
            offset = sub.counts()
            run.broker_rss_before_kb = fc.rss_kb(broker_pid(broker))
            print(f"  {hubs:,} hubs: connecting ...", flush=True)
            cpu0 = cpu_seconds(broker_pid(broker))
            workers = Workers(broker, hubs, args, nofile)
            try:
                connect_fleet(broker, workers, run, cpu0)
                warm = workers.started + fc.HEARTBEAT_INTERVAL / args.scale + 1
                time.sleep(max(0.0, warm - time.monotonic()))
                print(f"  {hubs:,} hubs: steady window {args.seconds:.0f} s ...", flush=True)
                measure_steady(broker, sub, workers, run, args)
                check_delivery(sub, offset, workers, run)
                measure_quiet(broker, workers, run, args.seconds / 3)
                sub.stop()
                for outage in args.outages:
                    for _ in range(args.repeat):
                        for jitter in (True, False):
                            name = "full jitter" if jitter else "no jitter"
                            print(f"  {hubs:,} hubs: restart, {outage:g} s down, {name} ...",
                                  flush=True)  # fmt: skip
                            run.storms.append(measure_storm(broker, workers, run, jitter, outage))
            finally:
                workers.stop()
        finally:
            sub.stop()
    return run


@dataclass
class Connects:
    """A fleet connecting at once to a fresh broker: the broker's cost per connection."""

    tls: bool
    seconds: float  # until every retained "online" was acknowledged
    broker_cpu: float  # seconds
    broker_rss_kb: int  # growth
    generator_cpu: float  # seconds
    version: str  # TLS version negotiated, or ""


def measure_connects(
    hubs: int,
    args: argparse.Namespace,
    nofile: int,
    server: BrokerTls,
    files: dict[str, str] | None,
) -> Connects:
    """``hubs`` hubs connect at once, over TLS when ``files`` is given; nothing else is sent."""
    with Mosquitto(tls=server, extra_conf=BROKER_CONF, start_timeout=30) as broker:
        pid = broker_pid(broker)
        rss0, cpu0 = fc.rss_kb(pid), cpu_seconds(pid)
        workers = Workers(broker, hubs, args, nofile, tls=files, producing=False)
        try:
            last = wait_for(
                workers,
                lambda t: t.connected >= hubs and t.acked["status"] >= hubs,
                120 + hubs / 20,
                f"connecting {hubs} hubs {'with' if files else 'without'} TLS",
            )[-1]
            took = time.monotonic() - workers.started
            time.sleep(1)  # what the handshakes leave behind, not what they use meanwhile
            cpu1, rss1 = cpu_seconds(pid), fc.rss_kb(pid)
        finally:
            workers.stop()
    return Connects(files is not None, took, cpu1 - cpu0, rss1 - rss0, last.cpu, last.tls_version)


def measure_tls(hubs: int, args: argparse.Namespace, nofile: int) -> list[Connects]:
    """Plain and TLS connections, alternately, each to a fresh broker with a TLS listener.

    Certificates as the field uses them (deploy/broker/README.md): EC P-256, the broker
    requires a client certificate from the hubs' CA.
    """
    out: list[Connects] = []
    with tempfile.TemporaryDirectory(prefix="fleet-pki-") as tmp:
        pki = TestPki(Path(tmp))
        pki.ca()
        server = pki.server()
        hub = pki.issue("hub", "ca", fc.hub_name(0))
        files = {"ca": str(hub.ca), "cert": str(hub.cert), "key": str(hub.key)}
        for _ in range(args.tls_repeat):
            for use in (None, files):
                out.append(measure_connects(hubs, args, nofile, server, use))
    return out


def tls_figure(results: list[Connects], hubs: int) -> Figure:
    def cost(tls: bool) -> tuple[float, float, float]:
        runs = [r for r in results if r.tls == tls]
        return (
            median([r.broker_cpu / hubs * 1e6 for r in runs]),
            median([r.broker_rss_kb / hubs for r in runs]),
            median([r.seconds for r in runs]),
        )

    tls_cpu, tls_rss, tls_s = cost(True)
    plain_cpu, plain_rss, plain_s = cost(False)
    version = next((r.version for r in results if r.tls), "")
    return Figure(
        f"{hubs:,} hubs connecting over TLS",
        f"broker {tls_cpu:,.0f} µs CPU and {tls_rss:.1f} KiB per connection; all online in "
        f"{tls_s:.1f} s",
        f"plain TCP, same broker: {plain_cpu:,.0f} µs and {plain_rss:.1f} KiB "
        f"(TLS x{tls_cpu / max(plain_cpu, 1e-9):.1f} CPU); all online in {plain_s:.1f} s",
        "",
        None,
        f"{version}, EC P-256 certificates both ways, a full handshake each (as the uplink); "
        f"CONNECT, subscription and retained status included; median of {len(results) // 2}",
    )


def compare_clients(args: argparse.Namespace, count: int) -> dict[str, list[dict[str, Any]]]:
    """paho (as the uplink drives it) and the fleet's own encoder, alternately, twice each."""
    out: dict[str, list[dict[str, Any]]] = {"compare-paho": [], "compare-raw": []}
    with Mosquitto(extra_conf=BROKER_CONF, start_timeout=30) as broker:
        for _ in range(2):
            for mode, results in out.items():
                spec = {
                    "mode": mode, "host": broker.host, "port": broker.port, "count": count,
                    "publishes": 3, "idle": 3.0, "nofile": count + FD_MARGIN,
                }  # fmt: skip
                results.append(run_client(spec))
    return out


def check_framing() -> None:
    """A SimHub's first packets must be exactly what the real ``MqttUplink`` sends."""
    hub = fc.hub_name(7)
    heartbeat = fc.heartbeat_message(hub, 86400)
    with Mosquitto(extra_conf=BROKER_CONF) as broker:
        recorded = asyncio.run(fc.record_agent(broker.host, broker.port, hub, heartbeat))
    got = fc.split_packets(recorded)[:4]
    want = fc.simulated_first_packets(hub, encode(heartbeat))
    names = ("CONNECT", "SUBSCRIBE", "PUBLISH status", "PUBLISH heartbeat")
    for name, real, simulated in zip(names, got, want, strict=False):
        if real != simulated:
            raise FleetError(
                f"{name}: the simulated hub differs from the real uplink\n"
                f"  uplink:    {real.hex()}\n  simulated: {simulated.hex()}"
            )
    if len(got) < len(want):
        raise FleetError(f"the real uplink sent only {len(got)} packets: {recorded.hex()}")


# -- figures -------------------------------------------------------------------------


def pct(cpu: float, seconds: float) -> float:
    return cpu / seconds * 100


def fleet_figures(run: FleetRun, args: argparse.Namespace) -> list[Figure]:
    n, s = run.hubs, args.scale
    rate = median([st.messages / st.seconds for st in run.steady])
    cpu = median([pct(st.broker_cpu, st.seconds) for st in run.steady])
    gen = median([pct(st.generator_cpu, st.seconds) for st in run.steady])
    pings = median([st.pings / st.seconds for st in run.steady])
    wire = median([(st.wire_out + st.wire_in) / st.seconds for st in run.steady])
    base_rate = sum(run.baseline["acked"].values()) / run.baseline["seconds"]
    base_cpu = pct(run.baseline_broker_cpu, run.baseline["seconds"])
    cap_rate = sum(run.capacity["acked"].values()) / run.capacity["seconds"]
    cap_cpu = pct(run.capacity_broker_cpu, run.capacity["seconds"])
    per_conn = (run.broker_rss_kb - run.broker_rss_before_kb) / n
    sizes = ", ".join(f"{k} {v:.0f} B" for k, v in run.payload.items())
    label = f"fleet {n:,}"
    figures = [
        Figure(
            f"{label}: all connected",
            f"{run.connect_s:.1f} s to the last CONNACK",
            f'every retained "online" acknowledged after {run.online_s:.1f} s',
            "",
            None,
            f"all {n:,} started at once; load generator used {run.connect_generator_cpu:.1f} CPU s",
        ),
        Figure(
            f"{label}: messages accepted",
            f"{rate:,.0f} msg/s at {s:g}x ({rate / s:,.1f} msg/s real time)",
            f"one client, same messages and rate: {base_rate:,.0f} msg/s",
            "",
            None,
            f"PUBLISH received on {fc.UPLINK.prefix}/# (QoS 1); also {pings:,.0f} PINGREQ/s; "
            f"{wire / 1024:,.0f} KiB/s MQTT both ways; payloads {sizes}; "
            f"{run.delivered:,} acknowledged, 0 missing",
        ),
        Figure(
            f"{label}: broker CPU",
            f"{cpu:.1f} % of a core at {s:g}x (about {cpu / s:.2f} % real time)",
            f"one client, same messages: {base_cpu:.1f} % (ratio {cpu / max(base_cpu, 0.01):.1f});"
            f" one client unpaced: {cap_rate:,.0f} msg/s at {cap_cpu:.0f} %",
            "",
            None,
            f"mosquitto utime+stime over the window, median of 3; load generator {gen:.0f} %; "
            f"all {n:,} connected and silent: {run.quiet_cpu:.2f} %",
        ),
        Figure(
            f"{label}: broker memory",
            f"RSS {run.broker_rss_kb / 1024:.1f} MiB, {per_conn:.1f} KiB per hub",
            f"broker before the fleet: {run.broker_rss_before_kb / 1024:.1f} MiB",
            "",
            None,
            "each hub: a session, a Will, a retained status, a subscription",
        ),
    ]
    for outage in args.outages:
        storms = [st for st in run.storms if st.outage == outage]
        jit = [st for st in storms if st.jitter]
        fixed = [st for st in storms if not st.jitter]
        if jit and fixed:
            figures.append(storm_figure(label, outage, jit, fixed))
    return figures


def storm_text(storms: list[Storm]) -> str:
    return (
        f"peak {median([st.peak for st in storms]):,.0f} connects in one second "
        f"({median([st.peak_rate for st in storms]):,.0f}/s over the busiest 100 ms); "
        f"half back after {median([st.back(0.5) for st in storms]):.1f} s, 99 % after "
        f"{median([st.back(0.99) for st in storms]):.1f} s, all after "
        f"{median([st.back(1.0) for st in storms]):.1f} s"
    )


def storm_figure(label: str, outage: float, jit: list[Storm], fixed: list[Storm]) -> Figure:
    n = len(jit[0].connects)
    return Figure(
        f"{label}: reconnect after a restart ({outage:g} s down)",
        f"full jitter: {storm_text(jit)}",
        f"no jitter (all retry every {fc.UPLINK.reconnect_min:g} s): {storm_text(fixed)}",
        "",
        None,
        f"{n:,} hubs; times from the broker listening again; broker CPU peak "
        f"{median([st.broker_cpu_peak for st in jit]):.0f} % vs "
        f"{median([st.broker_cpu_peak for st in fixed]):.0f} % of a core; load generator "
        f"{median([st.generator_cpu for st in jit]):.0f} % vs "
        f"{median([st.generator_cpu for st in fixed]):.0f} %",
    )


def compare_figure(result: dict[str, list[dict[str, Any]]], count: int) -> Figure:
    def per(mode: str, key: str, unit: float) -> float:
        return median([r[key] for r in result[mode]]) / unit

    raw, paho = "compare-raw", "compare-paho"
    return Figure(
        f"load generator, {count:,} hubs in one process",
        f"own encoder: {per(raw, 'connect_s', count) * 1e6:,.0f} µs per connect, "
        f"{per(raw, 'publish_s', 3 * count) * 1e6:,.0f} µs per heartbeat, "
        f"{per(raw, 'rss_connected_kb', count):.1f} KiB per hub, idle "
        f"{per(raw, 'idle_s', 3) * 100:.1f} % CPU",
        f"paho as the uplink drives it: {per(paho, 'connect_s', count) * 1e6:,.0f} µs, "
        f"{per(paho, 'publish_s', 3 * count) * 1e6:,.0f} µs, "
        f"{per(paho, 'rss_connected_kb', count):.1f} KiB, idle "
        f"{per(paho, 'idle_s', 3) * 100:.1f} %",
        "",
        None,
        "CPU of the generator process; connect includes the birth; median of 2",
    )


def storm_model(hubs: int, outage: float, jitter: bool, seed: int) -> list[float]:
    """When each hub is back, computed: seconds after the broker returns, sorted.

    Each hub lost its connection at 0 and retries after ``retry_delay`` (or the fixed
    ``reconnect_min``) as the uplink does, with no alert waiting; an attempt before
    ``outage`` fails at once (connection refused), the first one after it succeeds: a
    broker that accepts all.
    """
    rng = random.Random(seed)
    u = fc.UPLINK
    low, high, spread = u.reconnect_min, u.reconnect_max, u.reconnect_spread
    back = []
    for _ in range(hubs):
        t, attempt, lost = 0.0, 0, True
        while True:
            if jitter:
                delay, attempt = retry_delay(attempt, lost, False, low, high, spread, rng)
            else:
                delay = low
            t += delay
            lost = False
            if t >= outage:
                back.append(t - outage)
                break
    return sorted(back)


def print_model(hubs: int, outages: list[float], seed: int) -> None:
    """The reconnection of ``hubs`` hubs after each outage, computed with ``storm_model``.

    At most 20,000 hubs are drawn and the counts scaled up: the shape does not depend on
    the number of hubs, only the height.
    """
    drawn = min(hubs, 20_000)
    every = fc.UPLINK.reconnect_min
    print(f"computed, {hubs:,} hubs ({drawn:,} drawn), a broker that takes every connection "
          f"at once; no jitter: all {hubs:,} retry in the same instant, every {every:g} s, "
          "and all are back at the first try after the return")  # fmt: skip
    for outage in outages:
        back = storm_model(drawn, outage, True, seed)
        scaled = [t for t in back for _ in range(hubs // drawn)]
        storm = Storm(True, outage, outage, scaled, 0, 0.0, 0.0)
        print(f"  {outage:6g} s down, full jitter: {storm_text([storm])}")


def print_storms(run: FleetRun) -> None:
    for st in run.storms:
        mode = "full jitter" if st.jitter else "no jitter"
        bins = st.per_bin()
        shown = " ".join(str(b) for b in bins[:40]) + (" ..." if len(bins) > 40 else "")
        print(f"    {run.hubs:,} hubs, {st.outage:g} s down ({st.down_s:.1f} s with the "
              f"restart), {mode}: connects per second from the restart: {shown}; "
              f"{st.failed:,} attempts refused meanwhile")  # fmt: skip


def machine() -> str:
    model = cpu_model()
    binary = Mosquitto(extra_conf=BROKER_CONF).binary
    return f"{os.cpu_count()} cores, {model}, {mosquitto_version(binary)}"


# -- entry points --------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hubs", default="1000,10000", help="fleet sizes, comma separated")
    parser.add_argument("--scale", type=float, default=60.0, help="time compression")
    parser.add_argument("--seconds", type=float, default=30.0, help="steady window")
    parser.add_argument("--outages", default="0,15", help="seconds down per restart")
    parser.add_argument("--repeat", type=int, default=1, help="restarts per outage and mode")
    parser.add_argument("--alerts-per-day", type=float, default=3.0, help="per hub, real time")
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument("--tls-hubs", type=int, default=1000, help="0: no TLS measurement")
    parser.add_argument("--tls-repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--model", type=int, default=100_000, metavar="HUBS",
        help="also compute the reconnection of this many hubs after outages (0: do not)",
    )  # fmt: skip
    parser.add_argument("--model-outages", default="0,15,60,300,3600")
    parser.add_argument("--no-compare", action="store_true", help="skip paho vs own encoder")
    parser.add_argument("--quick", action="store_true", help="1,000 hubs, short windows")
    args = parser.parse_args(argv)
    try:
        args.hub_counts = [int(x) for x in args.hubs.split(",") if x.strip()]
        args.outages = [float(x) for x in args.outages.split(",") if x.strip()]
        args.model_outages = [float(x) for x in args.model_outages.split(",") if x.strip()]
    except ValueError:
        parser.error("--hubs and --outages take comma-separated numbers")
    if args.quick:
        args.hub_counts, args.seconds, args.outages, args.repeat = [1000], 12.0, [0.0], 1
    if not args.hub_counts or min(args.hub_counts) < 1 or args.scale <= 0 or args.seconds < 3:
        parser.error("--hubs must be positive, --scale > 0 and --seconds >= 3")
    if args.workers < 1 or args.repeat < 1 or args.tls_repeat < 1 or args.tls_hubs < 0:
        parser.error("--workers, --repeat and --tls-repeat must be at least 1")
    return args


def open_files(hubs: int, workers: int) -> tuple[int, str]:
    """Raise our limit on open files for the broker (which inherits it) and the hubs."""
    wanted = hubs + FD_MARGIN  # the broker holds one socket per hub
    soft, hard = fc.raise_nofile(wanted)
    note = f"RLIMIT_NOFILE soft {soft}, hard {hard}"
    if soft < wanted:
        raise FleetError(
            f"{hubs:,} hubs need {wanted:,} open files in the broker, but the hard limit is "
            f"{hard:,}: raise it (ulimit -Hn, or LimitNOFILE) or run fewer hubs"
        )
    if -(-hubs // workers) + FD_MARGIN > soft:
        raise FleetError(f"too many hubs per load generator for {soft} open files")
    return soft, note


def figures_for(args: argparse.Namespace) -> list[Figure]:
    logging.basicConfig(level=logging.WARNING)
    figures: list[Figure] = []
    print("checking the simulated hub's packets against the real MqttUplink ...", flush=True)
    check_framing()
    print("  CONNECT, SUBSCRIBE, PUBLISH status and heartbeat: identical bytes")
    if not args.no_compare:
        count = 1000
        open_files(count, 1)
        print(f"load generator: paho vs own encoder, {count:,} hubs ...", flush=True)
        figures.append(compare_figure(compare_clients(args, count), count))
    if args.tls_hubs > 0:
        soft, _ = open_files(args.tls_hubs, args.workers)
        print(f"{args.tls_hubs:,} hubs connecting with and without TLS ...", flush=True)
        figures.append(tls_figure(measure_tls(args.tls_hubs, args, soft), args.tls_hubs))
    for hubs in args.hub_counts:
        soft, note = open_files(hubs, args.workers)
        print(f"fleet of {hubs:,} ({note}) ...", flush=True)
        t0 = time.monotonic()
        run = measure_fleet(hubs, args, soft)
        print_storms(run)
        figures += fleet_figures(run, args)
        print(f"  took {time.monotonic() - t0:.0f} s")
    return figures


def run(quick: bool) -> list[Figure]:
    """For bench/all.py: the default run, or 1,000 hubs with short windows."""
    return figures_for(parse_args(["--quick"] if quick else []))


def main() -> None:
    args = parse_args()
    t0 = time.monotonic()
    try:
        figures = figures_for(args)
    except FleetError as err:
        print(f"fleet: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print()
    print(f"machine: {machine()}")
    print(f"command: .venv/bin/python bench/fleet.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"scale {args.scale:g}x: heartbeat every {fc.HEARTBEAT_INTERVAL / args.scale:g} s, "
          f"ping after {fc.UPLINK.keepalive / args.scale:g} s idle, "
          f"{args.alerts_per_day:g} alerts per hub per real day")  # fmt: skip
    print_figures(figures)
    if args.model > 0:
        print_model(args.model, args.model_outages, args.seed)
    print(f"total {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
