"""The live agent's footprint: start-up, memory, growth over a soak, and CPU.

The agent runs as it does on a hub: its own process (``hub run``, or
``bench/footprint_launch.py``, which replaces only the hardware boundaries and then calls
``agent.cli.main(["run", ...])``), a TLS uplink to a real Mosquitto in the role of the
centre, systemd's notify socket and watchdog (``WatchdogSec=30s``, as the unit), the
SQLite outbox, the event store and the local status socket.

The home is a simulated busy home (``agent.traces.simulate``, profile ``busy``, about
4,500 events a day) wired as a hub would be: most sensors are Zigbee devices published
by a stand-in for Zigbee2MQTT on the hub's own Mosquitto, with the payloads and the
device list of a recorded installation (``../shared/data/zigbee2mqtt-snapshots``, the
capture tests/test_zigbee2mqtt.py replays; its 54 devices stay in the list as the rest of
the network); the hallway PIR, the front door, the help button and the bed and chair
mats are on the Pi's pins (gpiozero's mock pins, driven from the benchmark); an LD2410
radar in the bedroom streams its published report frames at 10 Hz into a
pseudo-terminal. The hub "with every driver" also hears three sensors as BTHome devices
(one of them encrypted) and a neighbour's thermometer, through the Bluetooth adapter's
replacement (the seam tests/test_bthome.py uses).

1. Start-up: from just before ``Popen`` to READY=1 on the notify socket, ``hub run`` of
   the typical hub, median of repeats after a warm-up run. Baseline: ``python -c pass``
   and ``python -c "import asyncio, sqlite3, paho.mqtt.client"`` from the same
   interpreter, started to exit. Goal: <= 1 s. Also: what the process had imported by
   READY (``python -X importtime``, the modules listed at READY), by package.
2. Memory: a simulated day sent compressed in time (``--day-seconds``, 90 s by default:
   960 times real time), then a real-time window (``--window``) at the true rate, from
   08:00 of the next day. Peak RSS: VmHWM at the end; steady RSS: the median VmRSS,
   sampled each second over the second half of the window. Typical hub (Zigbee2MQTT,
   GPIO, radar): goal <= 50 MB; every driver including BTHome: goal <= 70 MB. Baseline:
   the RSS of ``python -c "import asyncio, sqlite3, paho.mqtt.client, numpy"``. Also
   the RSS each big import costs in a fresh interpreter, alone and after asyncio,
   sqlite3 and paho.
3. Soak: ``hub replay`` (the same Runtime) of ``--soak-weeks`` simulated weeks of the busy
   home, with the SQLite outbox, the event store and the routine file on disk, in its own
   process; VmRSS is read in that process at each simulated week boundary (a probe on the
   runtime's heartbeat, which runs every 15 simulated minutes). Growth: the least-squares
   slope over weeks 2..N. Goal: <= 1 MB per simulated week. Baseline: the first week's
   RSS. With ``--tracemalloc`` (or when the slope is over the goal) a second replay (at
   most 8 weeks) takes tracemalloc snapshots at the weeks and prints where memory grew.
   The replay's uplink is in memory and keeps its last 10 messages (its buffer is a
   test aid that a live hub does not have).
4. CPU: utime + stime of the typical hub over the real-time window, per hour. Goal:
   <= 3.6 s/h. Baselines over the same window: an idle ``hub run`` (the typical hub's
   configuration without the radar, its Zigbee2MQTT driver on a base topic nobody
   publishes to: timers, heartbeats, the watchdog) and a bare ``mosquitto_sub`` that
   receives the same Zigbee2MQTT traffic as the hub; and, to tell what the radar's 10
   frames a second cost, the typical hub without its radar, fed the same events.

    .venv/bin/python bench/footprint.py [--quick] [--window 600] [--day-seconds 90]
                                        [--startups 7] [--soak-weeks 12] [--tracemalloc]
                                        [--only startup,live,soak,imports]

The project is byte-compiled first (``compileall``, as pip does when it installs the hub):
an agent started from sources without .pyc files compiles them at each start, slower and
bigger. The defaults take about 15 minutes; ``--quick`` about 4. Nothing is asserted:
the figures are printed beside their baselines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.check import snapshots  # noqa: E402
from agent.config import TlsConfig  # noqa: E402
from agent.devtools.broker import Mosquitto  # noqa: E402
from agent.devtools.pki import TestPki  # noqa: E402
from agent.events import EventKind, SensorEvent  # noqa: E402
from agent.traces.format import write_trace  # noqa: E402
from agent.traces.simulate import default_home, simulate  # noqa: E402
from bench.common import CACHE, Figure, cpu_model, median, print_figures  # noqa: E402

PYTHON = sys.executable
HUB = str(Path(sys.executable).with_name("hub"))
LAUNCH = str(ROOT / "bench" / "footprint_launch.py")
CAPTURE = ROOT.parent / "shared" / "data" / "zigbee2mqtt-snapshots"
CAPTURE_FILE = "onConnect.2020-10-12.00e38ab.ndjson"

TZ = ZoneInfo("Europe/Amsterdam")
START = date(2025, 3, 3)  # a Monday
SEED = 1
WATCHDOG_USEC = "30000000"  # WatchdogSec=30s, as systemd/leefsamen-hub.service
MB = 1024.0
WAIT = 60.0  # an upper bound for the agent to get somewhere; never a speed requirement

GOAL_STARTUP_S = 1.0
GOAL_TYPICAL_MB = 50.0
GOAL_EVERY_MB = 70.0
GOAL_GROWTH_MB_WEEK = 1.0
GOAL_CPU_S_PER_H = 3.6

FLOOR_IMPORTS = "import asyncio, sqlite3, paho.mqtt.client, numpy"
LEAN_IMPORTS = "import asyncio, sqlite3, paho.mqtt.client"
#: what the big dependencies cost, each in a fresh interpreter
IMPORT_COSTS: dict[str, str] = {
    "numpy": "import numpy",
    "pydantic (a model built)": "import pydantic\nclass M(pydantic.BaseModel):\n    x: int = 0",
    "bleak + bthome-ble + dbus-fast": "import bleak, bthome_ble, dbus_fast",
    "gpiozero": "import gpiozero",
    "pyserial": "import serial",
    "rich (console)": "import rich.console",
    "cryptography (AES-CCM)": "from cryptography.hazmat.primitives.ciphers.aead import AESCCM",
    "paho-mqtt": "import paho.mqtt.client",
}


# ---- the process, from /proc --------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """The ``Vm*``/``Rss*`` lines of /proc/PID/status, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key.startswith(("Vm", "Rss")):
                out[key] = int(rest.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process so far, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_of(code: str) -> float:
    """VmRSS (MB) of a fresh interpreter at the end of ``code``."""
    probe = (
        "\nimport re\nprint(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    )
    done = subprocess.run(
        [PYTHON, "-c", code + probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return int(done.stdout.split()[-1]) / MB


def time_to_exit(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([PYTHON, "-c", code], check=True)
    return time.perf_counter() - t0


def compile_sources() -> None:
    """Byte-compile the project, as pip does when it installs the hub: an agent started
    from sources without .pyc files compiles them at every start (slower, and the
    compiler's memory shows in its RSS)."""
    subprocess.run(
        [PYTHON, "-m", "compileall", "-q", "agent", "detection", "drivers"], cwd=ROOT, check=True
    )


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


# ---- systemd's side -----------------------------------------------------------------------
class NotifySocket:
    """The datagram socket systemd binds for NOTIFY_SOCKET: READY is noted, the rest read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.ready_at: float | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"notify-{path.name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536).decode("utf-8", "replace")
            except OSError:
                return
            if "READY=1" in data.split("\n") and not self._ready.is_set():
                self.ready_at = time.perf_counter()
                self._ready.set()

    def wait_ready(self, proc: subprocess.Popen[bytes], log: Path) -> float:
        """When READY=1 came (perf_counter); a clear error if the agent ended instead."""
        deadline = time.monotonic() + WAIT
        while not self._ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise BenchError(f"the agent did not get ready (exit {proc.poll()}):\n{tail}")
        assert self.ready_at is not None
        return self.ready_at

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class BenchError(RuntimeError):
    """The benchmark could not set up or run what it measures."""


# ---- the home -----------------------------------------------------------------------------
#: sensors on the Pi's pins: (BCM pin, the GPIO driver's kind, active when high)
GPIO_INPUTS: dict[str, tuple[int, str, bool]] = {
    "hallway-motion": (17, "motion", True),  # a PIR module: high while it sees motion
    "front-door": (27, "contact", True),  # a reed switch to ground: open door = high
    "help-button": (22, "button", False),  # a push button to ground: pressed = low
    "bed": (23, "contact", False),  # a pressure mat as a switch to ground: occupied = low
    "chair": (24, "contact", False),
}
#: sensors the hub with every driver hears as BTHome devices: address, encrypted
BLE_SENSORS: dict[str, tuple[str, bool]] = {
    "bathroom-climate": ("54:48:E6:8F:80:A5", True),  # bthome.io's encryption example
    "bedroom-temp": ("A4:C1:38:5A:20:01", False),
    "kitchen-motion-2": ("A4:C1:38:5A:20:02", False),
}
BLE_KEY = "231d39c1d7cc1ab1aee224cd096db932"  # bthome.io's example key
BLE_STRANGER = "7C:C6:B6:00:00:01"  # the neighbour's thermometer, every minute
RADAR_SENSOR = "bedroom-radar"
#: Zigbee device models of the capture each kind of sensor is cloned from
ZIGBEE_TEMPLATE = {
    EventKind.MOTION: "hallway/motion",  # Philips Hue motion sensor 9290012607
    EventKind.CONTACT: "office/window",  # Sonoff SNZB-04
    EventKind.FLUSH: "entrance/door",  # SNZB-04 on the toilet-room door
    EventKind.TEMPERATURE: "office/sensor",  # TS0201 temperature and humidity
    EventKind.HUMIDITY: "office/sensor",
}

# HLK-LD2410 basic report frames, as published in its protocol notes (Tasmota's examples)
LD2410_NOBODY = bytes.fromhex(
    "F4 F3 F2 F1 0D 00 02 AA 00 00 00 00 00 00 37 00 00 55 00 F8 F7 F6 F5"
)
LD2410_STILL = bytes.fromhex("F4 F3 F2 F1 0D 00 02 AA 02 54 00 00 00 00 64 00 00 55 00 F8 F7 F6 F5")
LD2410_MOVING = bytes.fromhex(
    "F4 F3 F2 F1 0D 00 02 AA 03 46 00 34 00 00 3C 00 00 55 00 F8 F7 F6 F5"
)
RADAR_HZ = 10.0


def busy_trace(days: int) -> tuple[list[SensorEvent], Path]:
    """``days`` days of the busy home from ``START``: the events, and the trace file."""
    path = CACHE / f"footprint-busy-{days}d-seed{SEED}.jsonl"
    sim = simulate(days, SEED, START, TZ, "busy")
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_trace(tmp, sim.header, sim.events)
        tmp.rename(path)
    return sim.events, path


def friendly_name(sensor: str) -> str:
    """The Zigbee2MQTT friendly name of a sensor: ``room/what``, as installers name them."""
    room, _, rest = sensor.partition("-")
    return f"{room}/{rest.replace('-', ' ') or 'sensor'}"


def load_capture() -> list[tuple[str, Any]]:
    path = CAPTURE / CAPTURE_FILE
    if not path.exists():
        raise BenchError(
            f"the Zigbee2MQTT capture is not at {path}: the Zigbee devices are cloned from it "
            "(set up ../shared/data as for the tests)"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(item["topic"], item["payload"]) for item in map(json.loads, filter(None, lines))]


@dataclass
class Home:
    """The busy home as wired to the hub: which sensor goes through which driver."""

    ble: bool  # the hub with every driver: the BLE_SENSORS are BTHome devices
    sensors: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, ble: bool) -> Home:
        home = cls(ble)
        for sid, spec in default_home("busy").sensors.items():
            entry = spec.model_dump(mode="json", exclude_none=True)
            if ble and sid in BLE_SENSORS:
                entry["device"] = BLE_SENSORS[sid][0]
            elif sid not in GPIO_INPUTS:
                entry["device"] = friendly_name(sid)
            home.sensors[sid] = entry
        home.sensors[RADAR_SENSOR] = {"room": "Bedroom", "role": "bedroom", "kind": "presence"}
        return home


@dataclass
class Layout:
    """Where one hub keeps its state and how the benchmark reaches it."""

    name: str
    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "hub.toml"

    @property
    def socket(self) -> Path:
        return self.folder / "hub.sock"

    @property
    def notify(self) -> Path:
        return self.folder / "notify"

    @property
    def log(self) -> Path:
        return self.folder / "stderr.txt"


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def _table(header: str, values: dict[str, Any]) -> str:
    body = "".join(f"{_key(k)} = {_value(v)}\n" for k, v in values.items())
    return f"{header}\n{body}\n"


@dataclass
class HubSpec:
    """What one hub runs: its drivers, and where its brokers and devices are."""

    hub_id: str
    home: Home
    centre: Mosquitto
    tls: TlsConfig
    local: Mosquitto
    base_topic: str = "zigbee2mqtt"
    radar_port: str | None = None
    ble: bool = False

    def toml(self, layout: Layout) -> str:
        state = layout.folder
        assert self.centre.tls_port is not None
        text = _table("[hub]", {"id": self.hub_id, "timezone": TZ.key})
        text += _table(
            "[uplink]",
            {"host": self.centre.host, "port": self.centre.tls_port, "will_delay": "2m"},
        )
        text += _table(
            "[uplink.tls]", {"ca": str(self.tls.ca), "cert": str(self.tls.cert),
                             "key": str(self.tls.key)}
        )  # fmt: skip
        text += _table("[heartbeat]", {"interval": "15m"})
        text += _table("[local]", {"socket": str(layout.socket)})
        text += _table("[outbox]", {"path": str(state / "outbox.db")})
        text += _table(
            "[store]",
            {"path": str(state / "events.db"), "keep_days": 90, "flush_interval": "10m"},
        )
        text += _table("[detection.routine]", {"path": str(state / "routine.npz")})
        for sid, entry in self.home.sensors.items():
            text += _table(f"[home.sensors.{_key(sid)}]", entry)
        for driver in self.drivers():
            text += _table("[[drivers]]", driver)
        return text

    def drivers(self) -> list[dict[str, Any]]:
        drivers: list[dict[str, Any]] = [
            {
                "type": "zigbee2mqtt",
                "host": self.local.host,
                "port": self.local.port,
                "base_topic": self.base_topic,
                "client_id": f"{self.hub_id}-zigbee2mqtt",  # three hubs share one broker
            },
            {
                "type": "gpio",
                "pin_factory": "mock",
                "inputs": [
                    {"sensor": sid, "pin": pin, "kind": kind}
                    | ({} if high else {"active_when": "low", "pull": "up"})
                    for sid, (pin, kind, high) in GPIO_INPUTS.items()
                ],
                "led": {"pin": 5},
                "buzzer": {"pin": 6},
            },
        ]
        if self.radar_port is not None:
            drivers.append(
                {
                    "type": "radar",
                    "name": "bedroom-radar",
                    "model": "ld2410",
                    "port": self.radar_port,
                    "sensor": RADAR_SENSOR,
                    "presence_hold": "10s",
                    "motion_interval": "60s",
                }
            )
        if self.ble:
            keys = {addr: BLE_KEY for addr, encrypted in BLE_SENSORS.values() if encrypted}
            drivers.append({"type": "bthome", "adapter": "hci0", "stall_after": "5m", "keys": keys})
        return drivers


# ---- the devices --------------------------------------------------------------------------
class Radar:
    """An LD2410 on a pseudo-terminal: its report frames at 10 Hz, as the device sends them.

    The frame says what the person does in the bedroom: moving for a few seconds after a
    bedroom sensor saw movement, still while the bed mat is occupied, nobody otherwise.
    """

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no line discipline before the driver opens it
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.moving_until = 0.0
        self.in_bed = False
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._stream, name="radar", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def seen(self, event: SensorEvent) -> None:
        if event.sensor == "bed":
            self.in_bed = event.value > 0
        if event.sensor.startswith("bedroom-motion") and event.value > 0:
            self.moving_until = time.monotonic() + 3.0

    def frame(self) -> bytes:
        if time.monotonic() < self.moving_until:
            return LD2410_MOVING
        return LD2410_STILL if self.in_bed else LD2410_NOBODY

    def _stream(self) -> None:
        period = 1.0 / RADAR_HZ
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                os.write(self.master, self.frame())
            except BlockingIOError:
                self.dropped += 1  # nobody reads: a real UART drops it too
            except OSError:
                return
            due += period
            self._stop.wait(max(0.0, due - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class Zigbee:
    """Zigbee2MQTT's side of the hub's broker: the recorded network plus the home's sensors.

    Every sensor is a clone of a device of the capture (its ``bridge/devices`` entry and
    its state payload); each report publishes the device's whole cached state, as
    Zigbee2MQTT does, at QoS 0 and not retained (its defaults).
    """

    def __init__(self, broker: Mosquitto, sensors: dict[str, EventKind], seed: int) -> None:
        self.capture = load_capture()
        self.rng = random.Random(seed)
        templates = dict(self.capture)
        listed = next(payload for topic, payload in self.capture if topic == "bridge/devices")
        entries = {entry["friendly_name"]: entry for entry in listed}
        self.devices = list(listed)
        self.state: dict[str, dict[str, Any]] = {}
        self.names: dict[str, str] = {}
        for n, (sid, kind) in enumerate(sorted(sensors.items())):
            source = ZIGBEE_TEMPLATE[kind]
            name = friendly_name(sid)
            clone = json.loads(json.dumps(entries[source]))
            clone.update(friendly_name=name, ieee_address=f"0x00158d00{n:08x}",
                         network_address=1000 + n)  # fmt: skip
            self.devices.append(clone)
            self.state[name] = dict(templates[source])
            self.names[sid] = name
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id="zigbee2mqtt-bench"
        )
        self.client.max_queued_messages_set(0)
        self.client.connect(broker.host, broker.port, keepalive=60)
        self.client.loop_start()
        self.published = 0

    def _publish(self, topic: str, payload: Any, retain: bool = False) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.client.publish(f"zigbee2mqtt/{topic}", data, qos=0, retain=retain)
        self.published += 1

    def network(self) -> None:
        """What Zigbee2MQTT publishes when it starts: the capture, our devices in the list."""
        for topic, payload in self.capture:
            retain = topic.startswith("bridge/") or topic.endswith("/availability")
            self._publish(topic, self.devices if topic == "bridge/devices" else payload, retain)
        for name, state in self.state.items():
            self._publish(f"{name}/availability", "online", retain=True)
            self._publish(name, state)

    def report(self, event: SensorEvent) -> None:
        name = self.names[event.sensor]
        state = self.state[name]
        kind = event.kind
        if kind is EventKind.MOTION:
            state["occupancy"] = event.value > 0
        elif kind in (EventKind.CONTACT, EventKind.FLUSH):
            state["contact"] = event.value == 0  # Zigbee2MQTT: true = closed
        elif kind is EventKind.TEMPERATURE:
            state["temperature"] = round(event.value, 2)
        elif kind is EventKind.HUMIDITY:
            state["humidity"] = round(event.value, 2)
        elif kind is EventKind.BATTERY:
            state["battery"] = round(event.value)
        else:
            return
        state["linkquality"] = self.rng.randrange(40, 160)
        self._publish(name, state)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Bluetooth:
    """BTHome v2 advertisements as the devices send them (bthome.io/format), three times
    each as Shelly BLU devices repeat them; the encrypted one per bthome.io/encryption."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESCCM

        self.aes = AESCCM(bytes.fromhex(BLE_KEY), tag_length=4)
        self.packet: Counter[str] = Counter()
        self.counter = 0

    def frames(self, event: SensorEvent) -> list[tuple[str, bytes]]:
        address, encrypted = BLE_SENSORS[event.sensor]
        self.packet[address] = (self.packet[address] + 1) % 256
        objects = bytes([0x00, self.packet[address]])  # packet id
        kind, value = event.kind, event.value
        if kind is EventKind.TEMPERATURE:
            objects += b"\x02" + round(value * 100).to_bytes(2, "little", signed=True)
        elif kind is EventKind.HUMIDITY:
            objects += b"\x03" + round(value * 100).to_bytes(2, "little")
        elif kind is EventKind.MOTION:
            objects += bytes([0x21, 1 if value > 0 else 0])
        elif kind is EventKind.BATTERY:
            objects += bytes([0x01, round(value)])
        else:
            return []
        data = self._seal(address, objects) if encrypted else bytes([0x40]) + objects
        return [(address, data)] * 3

    def stranger(self, temperature: float) -> tuple[str, bytes]:
        self.packet[BLE_STRANGER] = (self.packet[BLE_STRANGER] + 1) % 256
        objects = bytes([0x00, self.packet[BLE_STRANGER], 0x02])
        return BLE_STRANGER, bytes([0x40]) + objects + round(temperature * 100).to_bytes(
            2, "little"
        )

    def _seal(self, address: str, payload: bytes) -> bytes:
        self.counter += 1
        info = 0x41
        count = self.counter.to_bytes(4, "little")
        nonce = bytes.fromhex(address.replace(":", "")) + b"\xd2\xfc" + bytes([info]) + count
        sealed = self.aes.encrypt(nonce, payload, None)
        return bytes([info]) + sealed[:-4] + count + sealed[-4:]


# ---- the hubs -----------------------------------------------------------------------------
@dataclass
class Agent:
    """One running agent process."""

    layout: Layout
    proc: subprocess.Popen[bytes]
    notify: NotifySocket
    started: float  # perf_counter just before Popen
    ready: float = 0.0
    feed: IO[bytes] | None = None
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        if self.feed is not None:
            with contextlib.suppress(BrokenPipeError):
                self.feed.write(line.encode() + b"\n")
                self.feed.flush()

    def snapshot(self) -> dict[str, Any]:
        for snap in snapshots(self.layout.socket):
            return snap
        raise BenchError(f"{self.layout.name}: the agent closed its status socket")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.feed is not None:
            with contextlib.suppress(OSError):
                self.feed.close()
        self.notify.close()
        return code


def start_agent(
    layout: Layout, spec: HubSpec, launcher: Sequence[str] | None, python_flags: Sequence[str] = ()
) -> Agent:
    """Write the configuration and start the agent; ``launcher``: its options, or None for
    plain ``hub run``. Returns once the process is started (not yet READY)."""
    layout.folder.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(spec.toml(layout), encoding="utf-8")
    with contextlib.suppress(FileNotFoundError):
        layout.notify.unlink()
    notify = NotifySocket(layout.notify)
    env = {**os.environ, "NOTIFY_SOCKET": str(layout.notify), "WATCHDOG_USEC": WATCHDOG_USEC}
    env.pop("WATCHDOG_PID", None)
    hub_args = ["run", "--config", str(layout.config)]
    if launcher is None and not python_flags:
        argv = [HUB, *hub_args]
    else:
        argv = [PYTHON, *python_flags, LAUNCH, *(launcher or ()), *hub_args]
    with layout.log.open("ab") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE if launcher else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=layout.folder,
        )
    return Agent(layout, proc, notify, t0, feed=proc.stdin)


def wait_ready(agent: Agent) -> float:
    agent.ready = agent.notify.wait_ready(agent.proc, agent.layout.log)
    return agent.ready - agent.started


def wait_drivers(agent: Agent, names: Sequence[str]) -> dict[str, Any]:
    """Until every named driver runs (and Zigbee2MQTT's broker session is up)."""
    deadline = time.monotonic() + WAIT
    while True:
        snap = agent.snapshot()
        drivers = {d["name"]: d for d in snap["drivers"]}
        up = all(drivers.get(n, {}).get("state") == "running" for n in names)
        z2m = [d for d in drivers.values() if d["name"].startswith("zigbee2mqtt")]
        gpio = [d for d in drivers.values() if d["name"].startswith("gpio")]
        if (
            up
            and all(d["details"].get("broker", "").endswith("connected") for d in z2m)
            and all("pins" in d["details"] for d in gpio)  # the pins are open
        ):
            return snap
        if time.monotonic() > deadline or agent.proc.poll() is not None:
            raise BenchError(f"{agent.layout.name}: drivers not running: {snap['drivers']}")
        time.sleep(0.2)


# ---- 1. start-up --------------------------------------------------------------------------
@dataclass
class Startup:
    ready_s: list[float]
    bare_s: list[float]
    lean_s: list[float]
    before_ready: list[tuple[str, float]]  # package, self import time (ms) before READY
    heavy_before: list[str]
    heavy_after: list[str]


HEAVY = ("numpy", "pydantic", "rich", "cryptography", "bleak", "bthome_ble", "dbus_fast",
         "habluetooth", "gpiozero", "serial", "paho", "ssl")  # fmt: skip


def measure_startup(env: Environment, repeats: int) -> Startup:
    """``hub run`` of the typical hub to READY, ``repeats`` times after one warm-up."""
    layout = Layout("startup", env.work / "startup")
    radar = Radar()
    spec = env.spec("h-startup", ble=False, radar_port=radar.path)
    ready: list[float] = []
    bare: list[float] = []
    lean: list[float] = []
    try:
        for i in range(repeats + 1):
            agent = start_agent(layout, spec, None)
            took = wait_ready(agent)
            agent.stop()
            if i:  # the first run warms the page cache and creates the state files
                ready.append(took)
                bare.append(time_to_exit("pass"))
                lean.append(time_to_exit(LEAN_IMPORTS))
        modules_file = layout.folder / "modules-at-ready.txt"
        log_start = layout.log.stat().st_size
        agent = start_agent(
            layout, spec, ["--ready-modules", str(modules_file)], python_flags=["-X", "importtime"]
        )
        wait_ready(agent)
        time.sleep(3.0)  # the drivers start and import what they need
        agent.stop()
    finally:
        radar.close()
    at_ready = set(modules_file.read_text(encoding="utf-8").split())
    per_package: Counter[str] = Counter()
    imported: set[str] = set()
    with layout.log.open(encoding="utf-8", errors="replace") as f:
        f.seek(log_start)
        for line in f:
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, _, name = line[len("import time:") :].split("|")
            module = name.strip()
            imported.add(module.split(".")[0])
            if module in at_ready:
                per_package[module.split(".")[0]] += int(own)
    tops = {m.split(".")[0] for m in at_ready}
    return Startup(
        ready_s=ready,
        bare_s=bare,
        lean_s=lean,
        before_ready=[(pkg, us / 1000) for pkg, us in per_package.most_common(8)],
        heavy_before=[h for h in HEAVY if h in tops],
        heavy_after=[h for h in HEAVY if h in imported and h not in tops],
    )


def startup_figures(s: Startup) -> list[Figure]:
    ready, bare, lean = median(s.ready_s), median(s.bare_s), median(s.lean_s)
    top = ", ".join(f"{pkg} {ms:.0f} ms" for pkg, ms in s.before_ready)
    return [
        Figure(
            name="start-up: process start to READY=1 (hub run, typical hub)",
            value=f"{ready:.2f} s (median of {len(s.ready_s)})",
            baseline=f"python -c pass: {bare:.2f} s; python importing asyncio, sqlite3, "
            f"paho: {lean:.2f} s (ratio {ready / lean:.1f})",
            goal=f"<= {GOAL_STARTUP_S:g} s",
            met=ready <= GOAL_STARTUP_S,
            note="imported by READY: "
            + (", ".join(s.heavy_before) or "none of the heavy ones")
            + "; after READY, in the drivers' tasks: "
            + (", ".join(s.heavy_after) or "none"),
        ),
        Figure(
            name="start-up: import time before READY, by package (python -X importtime)",
            value=top,
            baseline="",
            goal="",
            met=None,
            note="self time of each module imported by READY, summed by top-level package; "
            "importtime itself slows imports",
        ),
    ]


# ---- 2 and 4. the live hub: memory and CPU --------------------------------------------------
@dataclass
class Environment:
    """The brokers and certificates every live hub of a run shares."""

    work: Path
    centre: Mosquitto
    local: Mosquitto
    tls: TlsConfig

    def spec(
        self,
        hub_id: str,
        *,
        ble: bool,
        radar_port: str | None,
        base_topic: str = "zigbee2mqtt",
    ) -> HubSpec:
        return HubSpec(
            hub_id=hub_id,
            home=Home.of(ble),
            centre=self.centre,
            tls=self.tls,
            local=self.local,
            base_topic=base_topic,
            radar_port=radar_port,
            ble=ble,
        )


@contextlib.contextmanager
def environment() -> Iterator[Environment]:
    work = Path(tempfile.mkdtemp(prefix="fp-", dir="/tmp"))  # sun_path is 108 bytes
    pki = TestPki(work / "pki")
    pki.ca("ca")
    server = pki.server("broker", "ca")
    client = pki.issue("hub", "ca", "leefsamen-hub")
    centre = Mosquitto(tls=server)
    local = Mosquitto()
    try:
        centre.start()
        local.start()
        yield Environment(work, centre, local, client)
    finally:
        local.close()
        centre.close()
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Live:
    """What the live run measured."""

    typical: Agent
    every: Agent
    idle: Agent
    sub_cpu: float
    window_s: float
    cpu: dict[str, float]  # CPU seconds over the window, by agent name
    day_factor: float
    events_day: int
    events_window: int
    checks: dict[str, str]


class Sampler:
    """Reads /proc/PID/status of each agent every second, on its own thread."""

    def __init__(self, agents: Sequence[Agent]) -> None:
        self.agents = agents
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            for agent in self.agents:
                with contextlib.suppress(OSError):
                    agent.samples.append((now, proc_status(agent.pid)))


class Feed:
    """Sends the trace's events to the hubs through their drivers' boundaries."""

    def __init__(self, zigbee: Zigbee, radars: list[Radar], agents: list[Agent],
                 ble_agents: list[Agent]) -> None:  # fmt: skip
        self.zigbee = zigbee
        self.radars = radars
        self.agents = agents
        self.ble_agents = ble_agents
        self.bluetooth = Bluetooth()
        self.sent = 0
        self._stranger_due = 0.0

    def send(self, event: SensorEvent) -> None:
        for radar in self.radars:
            radar.seen(event)
        gpio = GPIO_INPUTS.get(event.sensor)
        if gpio is not None:
            pin, _, high = gpio
            if event.kind is not EventKind.BATTERY:  # wired: no battery
                level = (event.value > 0) == high
                for agent in self.agents:
                    agent.send(f"gpio {pin} {int(level)}")
        else:
            self.zigbee.report(event)
            if event.sensor in BLE_SENSORS:
                for address, data in self.bluetooth.frames(event):
                    for agent in self.ble_agents:
                        agent.send(f"ble {address} {data.hex()} -67")
        if event.wall >= self._stranger_due:  # the neighbour's thermometer, each minute
            self._stranger_due = event.wall + 60.0
            address, data = self.bluetooth.stranger(12.0 + (event.wall / 3600) % 6)
            for agent in self.ble_agents:
                agent.send(f"ble {address} {data.hex()} -91")
        self.sent += 1

    def play(self, events: Sequence[SensorEvent], t_from: float, t_to: float,
             factor: float) -> int:  # fmt: skip
        """The events in [t_from, t_to) at ``factor`` times real time; how many."""
        chosen = [e for e in events if t_from <= e.wall < t_to]
        start = time.monotonic()
        for event in chosen:
            delay = start + (event.wall - t_from) / factor - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.send(event)
        end = start + (t_to - t_from) / factor
        time.sleep(max(0.0, end - time.monotonic()))
        return len(chosen)


def local_midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp()


def measure_live(env: Environment, window: float, day_seconds: float) -> Live:
    """The three hubs and mosquitto_sub side by side: a compressed day, then the window."""
    events, _ = busy_trace(3)
    day0 = local_midnight(START)
    morning = local_midnight(START + timedelta(days=1)) + 8 * 3600
    radars = [Radar(), Radar()]
    specs = {
        "typical": env.spec("h-typical", ble=False, radar_port=radars[0].path),
        "every": env.spec("h-every", ble=True, radar_port=radars[1].path),
        "idle": env.spec("h-idle", ble=False, radar_port=None, base_topic="quiet"),
        "noradar": env.spec("h-noradar", ble=False, radar_port=None),
    }
    layouts = {name: Layout(name, env.work / name) for name in specs}
    agents: dict[str, Agent] = {}
    zigbee_sensors = {
        sid: EventKind(entry["kind"])
        for sid, entry in Home.of(False).sensors.items()
        if sid not in GPIO_INPUTS and sid != RADAR_SENSOR
    }
    zigbee = Zigbee(env.local, zigbee_sensors, SEED)
    sub: subprocess.Popen[bytes] | None = None
    try:
        for radar in radars:
            radar.start()
        agents["typical"] = start_agent(layouts["typical"], specs["typical"], ["--gpio"])
        agents["every"] = start_agent(layouts["every"], specs["every"], ["--gpio", "--ble"])
        agents["idle"] = start_agent(layouts["idle"], specs["idle"], None)
        agents["noradar"] = start_agent(layouts["noradar"], specs["noradar"], ["--gpio"])
        for agent in agents.values():
            wait_ready(agent)
        wait_drivers(agents["typical"], ["zigbee2mqtt-0", "gpio-1", "bedroom-radar"])
        wait_drivers(agents["every"], ["zigbee2mqtt-0", "gpio-1", "bedroom-radar", "bthome-3"])
        wait_drivers(agents["idle"], ["zigbee2mqtt-0", "gpio-1"])
        wait_drivers(agents["noradar"], ["zigbee2mqtt-0", "gpio-1"])
        fed = [agents["typical"], agents["every"], agents["noradar"]]
        for agent in fed:  # doors closed, nobody on the mats
            for pin, _, high in GPIO_INPUTS.values():
                agent.send(f"gpio {pin} {int(not high)}")
        sub = subprocess.Popen(
            ["mosquitto_sub", "-h", env.local.host, "-p", str(env.local.port), "-t",
             "zigbee2mqtt/#", "-q", "0"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        zigbee.network()
        feed = Feed(zigbee, radars, fed, [agents["every"]])
        factor = 86400.0 / day_seconds
        watched = [agents["typical"], agents["every"], agents["idle"]]
        with Sampler(watched):
            print(f"  a simulated day in {day_seconds:g} s ({factor:.0f} x real time) ...",
                  flush=True)  # fmt: skip
            n_day = feed.play(events, day0, day0 + 86400.0, factor)
            print(f"  {n_day:,} events; now {window:g} s at the true rate from 08:00 ...",
                  flush=True)  # fmt: skip
            time.sleep(2.0)  # the backlog of the day drains
            window_start = time.monotonic()
            cpu0 = {name: cpu_seconds(a.pid) for name, a in agents.items()}
            sub0 = cpu_seconds(sub.pid)
            for agent in watched:
                agent.samples.append((window_start, {"mark": 1}))
            n_window = feed.play(events, morning, morning + window, 1.0)
            cpu = {name: cpu_seconds(a.pid) - cpu0[name] for name, a in agents.items()}
            sub_cpu = cpu_seconds(sub.pid) - sub0
            span = time.monotonic() - window_start
            final = {name: proc_status(a.pid) for name, a in agents.items()}
        checks = {name: describe(agent) for name, agent in agents.items()}
        for name, agent in agents.items():
            agent.samples.append((time.monotonic(), final[name]))
    finally:
        if sub is not None:
            sub.terminate()
            sub.wait()
        codes = {name: agent.stop() for name, agent in agents.items()}
        zigbee.close()
        for radar in radars:
            radar.close()
    for name, code in codes.items():
        if code != 0:
            tail = layouts[name].log.read_text(encoding="utf-8", errors="replace")[-1500:]
            print(f"  warning: the {name} hub exited with {code}:\n{tail}", file=sys.stderr)
    return Live(
        typical=agents["typical"],
        every=agents["every"],
        idle=agents["idle"],
        sub_cpu=sub_cpu,
        window_s=span,
        cpu=cpu,
        day_factor=factor,
        events_day=n_day,
        events_window=n_window,
        checks=checks,
    )


def describe(agent: Agent) -> str:
    """What the agent says it did: each driver's state and the sensors it heard."""
    snap = agent.snapshot()
    parts = []
    for d in snap["drivers"]:
        extra = f", {d['restarts']} restarts" if d["restarts"] else ""
        extra += f", {d['malformed']} malformed" if d["malformed"] else ""
        parts.append(f"{d['name']} {d['state']}{extra}")
    rows = snap["sensors"]
    silent = [row["id"] for row in rows if not row["events"]]
    events = sum(row["events"] for row in rows)
    heard = f"{len(rows) - len(silent)}/{len(rows)} sensors heard"
    if silent and len(silent) < len(rows):
        heard += f" (not {', '.join(silent)})"
    return f"{'; '.join(parts)}; {heard}, {events:,} events"


def window_rss(agent: Agent) -> tuple[float, float, float]:
    """(peak, steady, anonymous) in MB: VmHWM at the end; the medians of VmRSS and of
    RssAnon (the part no file backs) over the second half of the true-rate window."""
    marks = [t for t, s in agent.samples if "mark" in s]
    start = marks[0] if marks else agent.samples[0][0]
    end = agent.samples[-1][0]
    half = start + (end - start) / 2
    window = [s for t, s in agent.samples if t >= half and "VmRSS" in s]
    steady = median([float(s["VmRSS"]) for s in window])
    anon = median([float(s["RssAnon"]) for s in window])
    return agent.samples[-1][1]["VmHWM"] / MB, steady / MB, anon / MB


def live_figures(live: Live, floor_mb: float) -> list[Figure]:
    per_hour = 3600.0 / live.window_s
    figures: list[Figure] = []
    base = f"python importing asyncio, sqlite3, paho, numpy: {floor_mb:.1f} MB"
    how = (
        f"a busy day ({live.events_day:,} events) at {live.day_factor:.0f} x real time, then "
        f"{live.window_s:.0f} s at the true rate ({live.events_window} events)"
    )
    for agent, label, goal in (
        (live.typical, "typical hub (Zigbee2MQTT, GPIO, radar)", GOAL_TYPICAL_MB),
        (live.every, "every driver (and BTHome)", GOAL_EVERY_MB),
    ):
        peak, steady, anon = window_rss(agent)
        check = live.checks["typical" if agent is live.typical else "every"]
        figures.append(
            Figure(
                name=f"memory: peak RSS, {label}",
                value=f"{peak:.1f} MB",
                baseline=f"{base} (ratio {peak / floor_mb:.2f})",
                goal=f"<= {goal:g} MB",
                met=peak <= goal,
                note=f"VmHWM after {how}; {check}",
            )
        )
        figures.append(
            Figure(
                name=f"memory: steady RSS, {label}",
                value=f"{steady:.1f} MB",
                baseline=f"{base} (ratio {steady / floor_mb:.2f})",
                goal=f"<= {goal:g} MB",
                met=steady <= goal,
                note="median VmRSS, sampled each second over the second half of the window; "
                f"of it, {anon:.1f} MB anonymous (RssAnon), the rest file-backed pages of "
                "libraries, shared with other processes",
            )
        )
    cpu = live.cpu["typical"] * per_hour
    idle = live.cpu["idle"] * per_hour
    noradar = live.cpu["noradar"] * per_hour
    sub = live.sub_cpu * per_hour
    figures.append(
        Figure(
            name="CPU: typical hub at a busy home's rate",
            value=f"{cpu:.2f} s/h ({live.cpu['typical']:.2f} s in {live.window_s:.0f} s)",
            baseline=f"idle hub run: {idle:.2f} s/h; mosquitto_sub receiving the same "
            f"Zigbee2MQTT traffic: {sub:.2f} s/h; the same hub and events without the "
            f"radar: {noradar:.2f} s/h",
            goal=f"<= {GOAL_CPU_S_PER_H:g} s/h",
            met=cpu <= GOAL_CPU_S_PER_H,
            note=f"utime+stime over the true-rate window (from 08:00, {live.events_window} "
            f"events, radar frames at {RADAR_HZ:g} Hz): the radar's share {cpu - noradar:.2f} "
            f"s/h; idle hub: {live.checks['idle']}",
        )
    )
    return figures


# ---- 3. soak ----------------------------------------------------------------------------------
@dataclass
class Soak:
    weeks: list[tuple[int, float]]  # week, VmRSS MB at its end
    slope: float
    growth: list[str]  # tracemalloc: where memory grew, when asked


def soak_config(folder: Path) -> Path:
    """A replay hub's configuration: the live hub's files on disk, the uplink in memory
    keeping only its last messages (MemoryUplink's own buffer is a test aid)."""
    text = _table("[hub]", {"id": "h-soak", "timezone": TZ.key})
    text += _table("[uplink]", {"type": "memory", "keep": 10})
    text += _table("[outbox]", {"path": str(folder / "outbox.db")})
    text += _table("[store]", {"path": str(folder / "events.db"), "keep_days": 90})
    text += _table("[detection.routine]", {"path": str(folder / "routine.npz")})
    path = folder / "soak.toml"
    path.write_text(text, encoding="utf-8")
    return path


def replay_weeks(trace: Path, folder: Path, traced: bool) -> list[dict[str, Any]]:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    out = folder / "weeks.jsonl"
    config = soak_config(folder)
    flags = ["--week-rss", str(out)] + (["--tracemalloc"] if traced else [])
    done = subprocess.run(
        [PYTHON, LAUNCH, *flags, "replay", str(trace), "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=folder,
    )
    if done.returncode != 0:
        raise BenchError(f"hub replay failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def slope(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares slope of y over x."""
    xs = [float(x) for x, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


TRACED_WEEKS = 8  # a traced replay is about 8 times slower


def measure_soak(work: Path, weeks: int, traced: bool) -> Soak:
    _, trace = busy_trace(7 * weeks + 1)  # a day more: the last week's end is passed
    rows = replay_weeks(trace, work / "soak", traced=False)
    points = [(row["week"], row["rss_kb"] / MB) for row in rows]
    growth_per_week = slope([p for p in points if p[0] >= 2])
    growth: list[str] = []
    if traced or growth_per_week > GOAL_GROWTH_MB_WEEK:
        if weeks > TRACED_WEEKS:
            _, trace = busy_trace(7 * TRACED_WEEKS + 1)
        traced_rows = replay_weeks(trace, work / "soak-traced", traced=True)
        growth = traced_rows[-1].get("growth", [])
    return Soak(points, growth_per_week, growth)


def soak_figures(s: Soak) -> list[Figure]:
    first = s.weeks[0][1]
    last = s.weeks[-1][1]
    trend = ", ".join(f"{mb:.1f}" for _, mb in s.weeks)
    note = f"VmRSS (MB) at the end of each week: {trend}"
    if s.growth:
        note += "; tracemalloc, growth from week 2 to the last: " + "; ".join(s.growth[:5])
    return [
        Figure(
            name=f"memory: growth over a soak ({len(s.weeks)} simulated weeks, busy home)",
            value=f"{s.slope:+.3f} MB/week",
            baseline=f"first week: {first:.1f} MB; last week: {last:.1f} MB",
            goal=f"<= {GOAL_GROWTH_MB_WEEK:g} MB/week",
            met=s.slope <= GOAL_GROWTH_MB_WEEK,
            note=note,
        )
    ]


# ---- imports ------------------------------------------------------------------------------------
def import_figures(floor_mb: float, bare_mb: float, lean_mb: float) -> list[Figure]:
    parts = []
    for name, code in IMPORT_COSTS.items():
        fresh = rss_of(code) - bare_mb
        over_lean = rss_of(LEAN_IMPORTS + "\n" + code) - lean_mb
        parts.append(f"{name} {fresh:.1f} MB ({over_lean:.1f})")
    return [
        Figure(
            name="memory: what each big import costs in RSS, alone (and after asyncio, "
            "sqlite3, paho)",
            value=", ".join(parts),
            baseline=f"python -c pass: {bare_mb:.1f} MB; importing asyncio, sqlite3, paho: "
            f"{lean_mb:.1f} MB; and numpy: {floor_mb:.1f} MB",
            goal="",
            met=None,
            note="each in a fresh interpreter; alone, an import also counts the standard "
            "library it pulls in, which the agent loads anyway",
        )
    ]


# ---- the whole benchmark ----------------------------------------------------------------------
PARTS = ("startup", "live", "soak", "imports")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer repeats")
    parser.add_argument("--window", type=float, help="seconds at the true rate (600; quick 120)")
    parser.add_argument("--day-seconds", type=float, help="a day sent in this long (90; quick 45)")
    parser.add_argument("--startups", type=int, help="start-ups to READY (7; quick 3)")
    parser.add_argument("--soak-weeks", type=int, help="simulated weeks (12; quick 6)")
    parser.add_argument("--tracemalloc", action="store_true", help="always trace the soak")
    parser.add_argument("--only", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    args = parser.parse_args(argv)
    quick = args.quick
    args.window = args.window or (120.0 if quick else 600.0)
    args.day_seconds = args.day_seconds or (45.0 if quick else 90.0)
    args.startups = args.startups or (3 if quick else 7)
    args.soak_weeks = args.soak_weeks or (6 if quick else 12)
    args.only = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = set(args.only) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
    if args.soak_weeks < 3:
        parser.error("--soak-weeks: at least 3 (the slope is over weeks 2..N)")
    return args


def figures_for(args: argparse.Namespace) -> list[Figure]:
    figures: list[Figure] = []
    compile_sources()
    floor = median([rss_of(FLOOR_IMPORTS) for _ in range(3)])
    bare = median([rss_of("pass") for _ in range(3)])
    lean = median([rss_of(LEAN_IMPORTS) for _ in range(3)])
    with environment() as env:
        if "startup" in args.only:
            print(f"start-up: {args.startups} runs of hub run to READY ...", flush=True)
            figures += startup_figures(measure_startup(env, args.startups))
        if "live" in args.only:
            print("live: typical hub, every driver, idle hub and mosquitto_sub ...", flush=True)
            figures += live_figures(measure_live(env, args.window, args.day_seconds), floor)
        if "soak" in args.only:
            print(f"soak: {args.soak_weeks} simulated weeks through hub replay ...", flush=True)
            figures += soak_figures(measure_soak(env.work, args.soak_weeks, args.tracemalloc))
    if "imports" in args.only:
        figures += import_figures(floor, bare, lean)
    return figures


def run(quick: bool) -> list[Figure]:
    """For bench/all.py."""
    return figures_for(parse_args(["--quick"] if quick else []))


def main() -> None:
    args = parse_args()
    t0 = time.monotonic()
    try:
        figures = figures_for(args)
    except BenchError as err:
        print(f"footprint: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print()
    print(f"machine: {machine()}")
    print(f"command: .venv/bin/python bench/footprint.py {' '.join(sys.argv[1:])}".rstrip())
    print_figures(figures)
    print(f"total {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
