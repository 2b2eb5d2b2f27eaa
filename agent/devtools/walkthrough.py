"""A simulated installer's walk-through, to watch with ``hub check``.

Starts a private Mosquitto (standing in for both the hub's local broker, on which
Zigbee2MQTT publishes, and the centre), writes a hub configuration with a Zigbee2MQTT
driver and a home of six sensors, runs the real agent (``hub run``) on it, and then plays
Zigbee2MQTT: the device list, and one sensor after another being triggered, the way an
installer walks from room to room. Watch it with the command it prints::

    python -m agent.devtools.walkthrough --step 3
    hub check --socket /tmp/walkthrough-.../hub.sock      # in another terminal

The payloads are Zigbee2MQTT's own formats for these device types (see
drivers/zigbee2mqtt/README.md). Nothing here is needed on a hub.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.devtools.broker import Mosquitto


@dataclass(frozen=True)
class Stop:
    """One sensor on the walk: where it is and what triggering it publishes."""

    sensor: str
    room: str
    role: str
    kind: str
    device: str  # Zigbee2MQTT friendly name
    ieee: str
    model: str
    exposes: tuple[str, ...]
    trigger: dict[str, object]
    baseline: dict[str, object]


WALK: tuple[Stop, ...] = (
    Stop(
        "front-door",
        "Hallway",
        "front_door",
        "contact",
        "hallway/front door",
        "0x00158d0001a00001",
        "MCCGQ11LM",
        ("contact", "battery", "voltage"),
        {"contact": False, "battery": 91, "linkquality": 120},
        {"contact": True, "battery": 91, "linkquality": 120},
    ),
    Stop(
        "hall-motion",
        "Hallway",
        "hallway",
        "motion",
        "hallway/motion",
        "0x00158d0001a00002",
        "RTCGQ11LM",
        ("occupancy", "illuminance", "battery"),
        {"occupancy": True, "illuminance": 12, "battery": 78, "linkquality": 96},
        {"occupancy": False, "illuminance": 12, "battery": 78, "linkquality": 96},
    ),
    Stop(
        "kitchen-motion",
        "Kitchen",
        "kitchen",
        "motion",
        "kitchen/motion",
        "0x00158d0001a00003",
        "RTCGQ11LM",
        ("occupancy", "illuminance", "battery"),
        {"occupancy": True, "illuminance": 40, "battery": 64, "linkquality": 72},
        {"occupancy": False, "illuminance": 40, "battery": 64, "linkquality": 72},
    ),
    Stop(
        "living-temp",
        "Living",
        "living",
        "temperature",
        "living/climate",
        "0x00158d0001a00004",
        "WSDCGQ11LM",
        ("temperature", "humidity", "battery"),
        {"temperature": 20.5, "humidity": 48, "battery": 100, "linkquality": 140},
        {},
    ),
    Stop(
        "bathroom-motion",
        "Bathroom",
        "bathroom",
        "motion",
        "bathroom/motion",
        "0x00158d0001a00005",
        "RTCGQ11LM",
        ("occupancy", "battery"),
        {"occupancy": True, "battery": 12, "linkquality": 51},
        {"occupancy": False, "battery": 12, "linkquality": 51},
    ),
    Stop(
        "help-button",
        "Living",
        "wearable",
        "button",
        "pendant",
        "0x00158d0001a00006",
        "WXKG11LM",
        ("action", "battery"),
        {"action": "single", "battery": 88, "linkquality": 110},
        {"battery": 88, "linkquality": 110},
    ),
)


def config_text(broker: Mosquitto, socket_path: Path, hub_id: str = "h-walk") -> str:
    """The hub configuration of the walk-through home (TOML)."""
    lines = [
        "[hub]",
        f'id = "{hub_id}"',
        "[uplink]",
        f'host = "{broker.host}"',
        f"port = {broker.port}",
        "[local]",
        f'socket = "{socket_path}"',
        "[[drivers]]",
        'type = "zigbee2mqtt"',
        f'host = "{broker.host}"',
        f"port = {broker.port}",
    ]
    for stop in WALK:
        lines += [
            f"[home.sensors.{stop.sensor}]",
            f'room = "{stop.room}"',
            f'role = "{stop.role}"',
            f'kind = "{stop.kind}"',
            f'device = "{stop.device}"',
        ]
    return "\n".join(lines) + "\n"


def device_list() -> list[dict[str, object]]:
    """``zigbee2mqtt/bridge/devices`` for the walk-through home (the newer format)."""
    devices: list[dict[str, object]] = [
        {
            "ieee_address": "0x00124b0000000000",
            "friendly_name": "Coordinator",
            "type": "Coordinator",
            "interview_completed": True,
            "definition": None,
        }
    ]
    for stop in WALK:
        devices.append(
            {
                "ieee_address": stop.ieee,
                "friendly_name": stop.device,
                "type": "EndDevice",
                "power_source": "Battery",
                "interview_completed": True,
                "interviewing": False,
                "supported": True,
                "definition": {
                    "model": stop.model,
                    "vendor": "Xiaomi",
                    "exposes": [{"type": "binary", "property": p} for p in stop.exposes],
                },
            }
        )
    return devices


class Zigbee2Mqtt:
    """Plays Zigbee2MQTT on the broker: what it retains at start, and live reports."""

    def __init__(self, broker: Mosquitto, base: str = "zigbee2mqtt") -> None:
        self.base = base
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="walkthrough-z2m")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: object, retain: bool = False) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.client.publish(f"{self.base}/{topic}", data, qos=1, retain=retain).wait_for_publish(5)

    def start(self) -> None:
        self.publish("bridge/state", {"state": "online"}, retain=True)
        self.publish("bridge/devices", device_list(), retain=True)
        for stop in WALK:
            self.publish(f"{stop.device}/availability", {"state": "online"}, retain=True)
            if stop.baseline:
                self.publish(stop.device, stop.baseline, retain=True)

    def trigger(self, stop: Stop) -> None:
        self.publish(stop.device, stop.trigger)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextmanager
def walkthrough_home(
    workdir: Path,
) -> Iterator[tuple[Mosquitto, Zigbee2Mqtt, Path, subprocess.Popen[bytes]]]:
    """Broker, Zigbee2MQTT and the running agent; everything stopped on the way out."""
    socket_path = workdir / "hub.sock"
    broker = Mosquitto().start()
    z2m: Zigbee2Mqtt | None = None
    agent: subprocess.Popen[bytes] | None = None
    log_file = (workdir / "agent.log").open("wb")
    try:
        z2m = Zigbee2Mqtt(broker)
        z2m.start()
        config = workdir / "hub.toml"
        config.write_text(config_text(broker, socket_path), encoding="utf-8")
        hub = Path(sys.executable).with_name("hub")
        command = [str(hub)] if hub.exists() else [sys.executable, "-m", "agent.cli"]
        agent = subprocess.Popen(
            [*command, "-v", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            if agent.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "agent.log").read_text(errors="replace")
                raise RuntimeError(f"the agent did not start:\n{log}")
            time.sleep(0.05)
        yield broker, z2m, socket_path, agent
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        log_file.close()
        if z2m is not None:
            z2m.close()
        broker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", type=float, default=3.0, help="seconds between sensors")
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds before the walk begins (start hub check meanwhile)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="walkthrough-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with walkthrough_home(workdir) as (_broker, z2m, socket_path, _agent):
        print(f"agent running; watch it with:\n  hub check --socket {socket_path}", flush=True)
        time.sleep(args.wait)
        for stop in WALK:
            print(f"{stop.room}: triggering {stop.sensor} ({stop.kind})", flush=True)
            z2m.trigger(stop)
            time.sleep(args.step)
        print("walk done; Ctrl-C to stop the agent", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
