"""Pairing sensors (``hub provision pair``) against a real Mosquitto acting as the hub's
local broker, with a Zigbee2MQTT played on it.

The played Zigbee2MQTT answers ``bridge/request/permit_join`` as the version it plays
does (1.x refuses a request without ``value``, 2.x one without ``time``) and lets a device
join only while joining is permitted, so a wrong request fails the test. Its payloads are
the recorded ones of a real installation (``../shared/data/zigbee2mqtt-snapshots``,
Zigbee2MQTT 1.25; skipped where absent) or, always, ones written here in Zigbee2MQTT 2.x's
format. The questions are answered through an injected ``PairingIo``, and once as a real
process in a pseudo-terminal, where Ctrl-C is a real SIGINT.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import pairing
from agent.config import load_config
from agent.devtools.broker import Mosquitto, free_port
from agent.events import EventKind
from agent.homemap import HomeMap, Role

pytestmark = pytest.mark.timeout(120)

HUB = str(Path(sys.executable).with_name("hub"))
BASE = "zigbee2mqtt"
WAIT = 20.0  # bounds a failure; every wait ends on an event
CAPTURE = "onConnect.2024-10-15.0a1c912.json"  # Zigbee2MQTT 1.25.0-dev


class FakeZigbee2Mqtt:
    """Zigbee2MQTT as seen on its MQTT topics, for one version."""

    def __init__(
        self,
        broker: Mosquitto,
        info: dict[str, Any],
        devices: list[dict[str, Any]],
        groups: list[dict[str, Any]] | None = None,
        behaves_as: int | None = None,
    ) -> None:
        self.info = info
        self.major = behaves_as or int(str(info["version"]).split(".")[0])
        self.devices = list(devices)
        self.groups = groups or []
        self.requests: list[dict[str, Any]] = []
        self.permitted = False
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"z2m-{uuid.uuid4().hex[:6]}"
        )
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        self.client.subscribe(f"{BASE}/bridge/request/#", qos=1)

    def publish(self, topic: str, payload: Any, retain: bool = False) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.client.publish(f"{BASE}/{topic}", data, qos=1, retain=retain).wait_for_publish(WAIT)

    def start(self) -> FakeZigbee2Mqtt:
        self.publish("bridge/state", {"state": "online"}, retain=True)
        self.publish("bridge/info", self.info, retain=True)
        self.publish("bridge/devices", self.devices, retain=True)
        self.publish("bridge/groups", self.groups, retain=True)
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        name = msg.topic.removeprefix(f"{BASE}/bridge/request/")
        message = json.loads(msg.payload)
        with self._lock:
            self.requests.append(message)
        if name != "permit_join" or not isinstance(message, dict):
            return
        # as bridge.ts permitJoin does: 1.x needs "value", 2.x needs "time"
        if self.major >= 2:
            ok = "time" in message
            data = {"time": message.get("time")}
            permitted = ok and int(message["time"]) > 0
        else:
            ok = "value" in message
            data = {"value": message.get("value")}
            permitted = ok and message["value"] in (True, "true")
        answer: dict[str, Any] = {"data": data if ok else {}, "status": "ok" if ok else "error"}
        if not ok:
            answer["error"] = "Invalid payload"
        else:
            self.permitted = permitted
        if "transaction" in message:
            answer["transaction"] = message["transaction"]
        client.publish(f"{BASE}/bridge/response/permit_join", json.dumps(answer), qos=1)

    def permit_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.requests]

    def join(self, entry: dict[str, Any]) -> None:
        """A device joins and is interviewed: possible only while joining is permitted."""
        assert self.permitted, "a device tried to join while Zigbee2MQTT did not permit it"
        ieee, name = entry["ieee_address"], entry["friendly_name"]
        self.devices.append({**entry, "interview_completed": False, "interviewing": True})
        self.publish("bridge/devices", self.devices, retain=True)
        self.publish(
            "bridge/event",
            {"type": "device_joined", "data": {"friendly_name": name, "ieee_address": ieee}},
        )
        self.publish(
            "bridge/event",
            {
                "type": "device_interview",
                "data": {"friendly_name": name, "status": "started", "ieee_address": ieee},
            },
        )
        self.devices[-1] = entry
        self.publish("bridge/devices", self.devices, retain=True)
        self.publish(
            "bridge/event",
            {
                "type": "device_interview",
                "data": {
                    "friendly_name": name,
                    "status": "successful",
                    "ieee_address": ieee,
                    "supported": True,
                    "definition": entry.get("definition"),
                },
            },
        )

    def report(self, name: str, state: dict[str, Any]) -> None:
        self.publish(name, state)


class ScriptedIo:
    """Answers in order, each for a question containing the expected text; actions run
    when the session says a text (in order: the first pending one that matches)."""

    def __init__(
        self,
        answers: list[tuple[str, str | type[BaseException]]],
        actions: list[tuple[str, Callable[[], None]]] | None = None,
    ) -> None:
        self.answers = deque(answers)
        self.actions = deque(actions or [])
        self.lines: list[str] = []

    def ask(self, prompt: str) -> str:
        self.lines.append(prompt)
        assert self.answers, f"an unexpected question: {prompt!r}"
        expect, answer = self.answers.popleft()
        assert expect in prompt, f"expected a question about {expect!r}, got {prompt!r}"
        if isinstance(answer, type):
            raise answer()
        return answer

    def say(self, text: str) -> None:
        self.lines.append(text)
        if self.actions and self.actions[0][0] in text:
            self.actions.popleft()[1]()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def hub_toml(path: Path, broker: Mosquitto, sensors: str = "") -> Path:
    path.write_text(
        '# the installer\'s hub\n[hub]\nid = "h-0412"\n\n[uplink]\ntype = "memory"\n\n'
        f"{sensors}"
        f'[[drivers]]\ntype = "zigbee2mqtt"\nhost = "{broker.host}"\nport = {broker.port}\n',
        encoding="utf-8",
    )
    return path


def pair(config: Path, io: ScriptedIo, **kwargs: Any) -> int:
    kwargs.setdefault("wait", WAIT)
    kwargs.setdefault("restart", False)
    kwargs.setdefault("ready_timeout", WAIT)
    return pairing.run_pairing(config, io, **kwargs)


# ---- payloads written here, in Zigbee2MQTT 2.x's format --------------------------------------
def device(ieee: str, name: str, model: str, props: list[str]) -> dict[str, Any]:
    return {
        "ieee_address": ieee,
        "friendly_name": name,
        "type": "EndDevice",
        "power_source": "Battery",
        "supported": True,
        "disabled": False,
        "interview_completed": True,
        "interviewing": False,
        "definition": {
            "model": model,
            "vendor": "Aqara",
            "description": f"{model} sensor",
            "exposes": [{"type": "binary", "name": p, "property": p, "access": 1} for p in props],
            "options": [],
        },
    }


COORDINATOR = {
    "ieee_address": "0x00124b0000000001",
    "friendly_name": "Coordinator",
    "type": "Coordinator",
    "interview_completed": True,
    "definition": None,
}
KNOWN = device("0x54ef44100000a001", "hall/motion", "RTCGQ14LM", ["occupancy", "battery"])
MOTION = device(
    "0x54ef44100000a002", "0x54ef44100000a002", "RTCGQ14LM", ["occupancy", "illuminance", "battery"]
)
DOOR = device("0x54ef44100000a003", "0x54ef44100000a003", "MCCGQ12LM", ["contact", "battery"])
PLUG = device("0x54ef44100000a004", "plug", "SP-EUC01", ["state", "power"])
V2_INFO = {
    "version": "2.1.1",
    "commit": "0a1b2c3",
    "permit_join": False,
    "permit_join_end": None,
    "coordinator": {"type": "EmberZNet"},
}
KNOWN_SENSOR = (
    '[home.sensors.hall-motion]\nroom = "Hallway"\nrole = "hallway"\ndevice = "hall/motion"\n\n'
)


@pytest.fixture
def v2(mosquitto: Mosquitto) -> Iterator[FakeZigbee2Mqtt]:
    fake = FakeZigbee2Mqtt(mosquitto, V2_INFO, [COORDINATOR, KNOWN, PLUG]).start()
    yield fake
    fake.stop()


def test_pairing_with_zigbee2mqtt_2(
    v2: FakeZigbee2Mqtt, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = hub_toml(tmp_path / "hub.toml", mosquitto, KNOWN_SENSOR)
    original = config.read_bytes()

    def first() -> None:
        v2.report("hall/motion", {"occupancy": True, "battery": 80, "linkquality": 90})
        v2.join(MOTION)

    io = ScriptedIo(
        [
            ("Kind [motion]", "battery"),  # not a sensor's kind: asked again
            ("Kind [motion]", ""),
            ("Room", "2"),  # not a room number: asked again
            ("Room", "Bathroom"),
            ("Role [bathroom]", "seat"),  # a role's name also does
            ("Sensor id [bathroom-motion]", "hall-motion"),  # taken: asked again
            ("Sensor id", "bath room"),  # not an id: asked again
            ("Sensor id", ""),
            ("Add bathroom-motion: Bathroom, seat, motion, device 0x54ef44100000a002?", "maybe"),
            ("Add", "y"),
            ("Pair another sensor?", "y"),
            ("It reports nothing this hub reads", ""),  # the plug: no by default
            ("Pair another sensor?", "y"),
            ("Kind [contact]", ""),
            ("Room", "1"),  # Bathroom, in order of names
            ("Role", "9"),
            ("Sensor id [bathroom-contact]", "front-door"),
            ("Add", ""),
            ("Pair another sensor?", "n"),
        ],
        [
            ("Trigger the sensor now", first),
            ("Trigger the sensor now", lambda: v2.report("plug", {"state": "ON", "power": 5})),
            (
                "Trigger the sensor now",
                lambda: (v2.report("plug", {"state": "OFF"}), v2.join(DOOR)),
            ),
        ],
    )
    assert pair(config, io) == 0, io.text
    assert not io.answers and not io.actions
    # 2.x: "time" only; opened first, closed last
    requests = v2.permit_requests()
    assert requests[0] == {"time": 254, "transaction": requests[0]["transaction"]}
    assert {k: v for k, v in requests[-1].items() if k != "transaction"} == {"time": 0}
    assert len({r["transaction"] for r in requests}) == len(requests)
    assert not v2.permitted
    text = io.text
    assert (
        "hall/motion (0x54ef44100000a001) is sensor hall-motion (Hallway, hallway): "
        "already in the home map" in text
    )
    assert "there is no room number 2" in text and "please answer y or n" in text
    assert "a kind is one of: motion, presence, contact" in text
    assert "exposes       nothing this hub reads\n  and also      power, state" in text
    assert "plug (0x54ef44100000a004) was skipped before" in text
    home = load_config(config).home
    assert home.sensors["bathroom-motion"].model_dump(exclude_none=True) == {
        "room": "Bathroom",
        "role": Role.SEAT,
        "kind": EventKind.MOTION,
        "device": "0x54ef44100000a002",
    }
    assert home.sensors["front-door"].role is Role.FRONT_DOOR
    assert home.sensors["front-door"].device == "0x54ef44100000a003"
    assert list(home.sensors) == ["hall-motion", "bathroom-motion", "front-door"]
    assert (tmp_path / "hub.toml.bak").read_bytes() == original  # as before the session
    new = config.read_text()
    assert new.startswith(original.decode().split("[[drivers]]")[0])  # nothing else moved
    assert new.index("[home.sensors.front-door]") < new.index("[[drivers]]")
    assert "Added 2 sensor(s): bathroom-motion, front-door" in text
    assert "Restart the agent to use them" in text


def test_ctrl_c_in_the_middle_closes_the_network_and_writes_nothing(
    v2: FakeZigbee2Mqtt, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = hub_toml(tmp_path / "hub.toml", mosquitto, KNOWN_SENSOR)
    original = config.read_bytes()
    io = ScriptedIo(
        [("Kind", ""), ("Room", "Kitchen"), ("Role", KeyboardInterrupt)],
        [("Trigger the sensor now", lambda: v2.join(MOTION))],
    )
    assert pair(config, io) == 1
    assert "Stopped" in io.text and "No sensor was added" in io.text
    assert config.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.toml"]  # no backup, no temp
    assert {k: v for k, v in v2.permit_requests()[-1].items() if k != "transaction"} == {"time": 0}
    assert not v2.permitted


def test_a_configuration_broken_meanwhile_is_not_replaced(
    v2: FakeZigbee2Mqtt, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The sensor's table is added only to a configuration that then validates."""
    config = hub_toml(tmp_path / "hub.toml", mosquitto)

    def break_it() -> None:  # someone edits hub.toml while the installer answers
        config.write_text(config.read_text() + '[[drivers]]\ntype = "teleporter"\n')

    io = ScriptedIo(
        [
            ("Kind", ""),
            ("Room", "Kitchen"),
            ("Role", ""),
            ("Sensor id", ""),
            ("Add", "y"),
            ("Pair another sensor?", "n"),
        ],
        [("Trigger the sensor now", lambda: v2.join(MOTION)), ("Found:", break_it)],
    )
    assert pair(config, io) == 0
    broken = config.read_text()
    assert "not added: the configuration would not be valid" in io.text
    assert "drivers[1].type: unknown driver 'teleporter'" in io.text
    assert "[home.sensors" not in broken and broken.endswith('type = "teleporter"\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.toml"]


def test_waiting_in_vain_asks_whether_to_go_on(
    v2: FakeZigbee2Mqtt, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = hub_toml(tmp_path / "hub.toml", mosquitto)
    io = ScriptedIo([("Nothing in 0.3 s. Keep waiting?", "y"), ("Keep waiting?", "n")])
    assert pair(config, io, wait=0.3) == 0
    assert "No sensor was added" in io.text
    assert not v2.permitted and len(v2.permit_requests()) >= 2


def test_joining_is_asked_again_before_it_runs_out(
    v2: FakeZigbee2Mqtt, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = hub_toml(tmp_path / "hub.toml", mosquitto)
    io = ScriptedIo([("Keep waiting?", "n")])
    assert pair(config, io, wait=1.5, renew_after=0.2) == 0
    opened = [r for r in v2.permit_requests() if r["time"] > 0]
    assert len(opened) >= 2  # renewed while waiting
    assert v2.permit_requests()[-1]["time"] == 0


@pytest.mark.parametrize("behaves_as", [1, 2])
def test_a_bridge_that_does_not_say_its_version_gets_both_fields(
    behaves_as: int, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    info = {k: v for k, v in V2_INFO.items() if k != "version"}
    fake = FakeZigbee2Mqtt(mosquitto, info, [COORDINATOR], behaves_as=behaves_as).start()
    config = hub_toml(tmp_path / "hub.toml", mosquitto)
    io = ScriptedIo(
        [
            ("Kind", ""),
            ("Room", "Hal"),
            ("Role [hallway]", ""),
            ("Sensor id", ""),
            ("Add", "y"),
            ("Pair another", "n"),
        ],
        [("Trigger the sensor now", lambda: fake.join(MOTION))],
    )
    try:
        assert pair(config, io, ready_timeout=1.0) == 0, io.text
    finally:
        fake.stop()
    assert "Zigbee2MQTT (version unknown)" in io.text
    requests = [{k: v for k, v in r.items() if k != "transaction"} for r in fake.requests]
    assert requests == [{"value": True, "time": 254}, {"value": False, "time": 0}]
    assert not fake.permitted


def test_a_refusal_is_shown(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A bridge that says 1.x but answers as 2.x: the 1.x close has no "time"."""
    info = {**V2_INFO, "version": "1.42.0"}
    fake = FakeZigbee2Mqtt(mosquitto, info, [COORDINATOR], behaves_as=2).start()
    config = hub_toml(tmp_path / "hub.toml", mosquitto)
    io = ScriptedIo([("Keep waiting?", "n")])
    try:
        assert pair(config, io, wait=0.2) == 0
    finally:
        fake.stop()
    assert "Zigbee2MQTT refused to close the network: Invalid payload" in io.text
    assert "closes the network by itself within 254 s" in io.text


def test_pairing_needs_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    assert main(["provision", "--config", str(tmp_path / "hub.toml")]) == 2
    assert "needs a terminal" in capsys.readouterr().err


@pytest.mark.parametrize("allowed", [True, False])
def test_the_agent_is_restarted_where_it_can_be(allowed: bool) -> None:
    ran: list[list[str]] = []
    io = ScriptedIo([])

    def run(argv: list[str]) -> int:
        ran.append(argv)
        return 0

    pairing.restart_agent(io, allowed, run)
    can = allowed and os.geteuid() == 0 and shutil.which("systemctl") is not None
    if can:
        assert [a[1:] for a in ran] == [["try-restart", "leefsamen-hub"]]
        assert "restarted the agent" in io.text
    else:
        assert ran == []
        assert "Restart the agent to use them: sudo systemctl restart leefsamen-hub" in io.text


def test_no_zigbee2mqtt_on_the_broker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = hub_toml(tmp_path / "hub.toml", mosquitto)
    io = ScriptedIo([])
    assert pair(config, io, ready_timeout=0.5) == 1
    assert "Zigbee2MQTT has published no device list on zigbee2mqtt/bridge/devices" in io.text


def test_no_broker(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[hub]\nid = "h-1"\n[uplink]\ntype = "memory"\n[[drivers]]\ntype = "zigbee2mqtt"\n'
        f'host = "127.0.0.1"\nport = {free_port()}\nconnect_timeout = "2s"\n',
        encoding="utf-8",
    )
    io = ScriptedIo([])
    assert pair(path, io) == 1
    assert "cannot reach the hub's MQTT broker at 127.0.0.1:" in io.text


def test_a_configuration_without_zigbee2mqtt(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[hub]\nid = "h-1"\n', encoding="utf-8")
    io = ScriptedIo([])
    assert pair(path, io) == 2
    assert "no zigbee2mqtt driver in the configuration" in io.text
    path.write_text('[hub]\nid = "H 1"\n', encoding="utf-8")
    assert pair(path, io) == 2
    assert "hub.id:" in io.text


# ---- a real installation's payloads (Zigbee2MQTT 1.25) ------------------------------------------
@pytest.mark.realdata
def test_pairing_with_a_recorded_zigbee2mqtt_1(
    shared_data: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    capture = {
        item["topic"]: item["payload"]
        for item in json.loads((shared_data / "zigbee2mqtt-snapshots" / CAPTURE).read_text())
    }
    info, devices = capture["bridge/info"], capture["bridge/devices"]
    assert info["version"].startswith("1.")
    window = next(d for d in devices if d["friendly_name"] == "livingroom/window")
    fake = FakeZigbee2Mqtt(
        mosquitto, info, [d for d in devices if d is not window], capture["bridge/groups"]
    ).start()
    config = hub_toml(
        tmp_path / "hub.toml",
        mosquitto,
        '[home.sensors.living-climate]\nroom = "Living"\nrole = "living"\n'
        'device = "livingroom/temp_humidity"\n\n',
    )

    def first() -> None:
        fake.report("livingroom/temp_humidity", capture["livingroom/temp_humidity"])
        fake.join(window)

    def second() -> None:
        fake.report("livingroom/window", {**capture["livingroom/window"], "contact": False})
        fake.report("0x00158d000224154d", {**capture["0x00158d000224154d"], "action": "single"})

    io = ScriptedIo(
        [
            ("Kind [contact]", ""),
            ("Room", "1"),
            ("Role [living]", "99"),
            ("Role", "window"),
            ("Sensor id [living-contact]", "living-window"),
            ("Add", "y"),
            ("Pair another sensor?", "yes"),
            ("Kind [button]", ""),
            ("Room", "Slaapkamer"),
            ("Role [bedroom]", "12"),
            ("Sensor id [slaapkamer-button]", "help-button"),
            ("Add", "y"),
            ("Pair another sensor?", "n"),
        ],
        [("Trigger the sensor now", first), ("Trigger the sensor now", second)],
    )
    try:
        assert pair(config, io) == 0, io.text
    finally:
        fake.stop()
    assert f"Zigbee2MQTT {info['version']}" in io.text
    assert "model         MCCGQ01LM" in io.text
    assert "exposes       battery, contact" in io.text
    assert "is sensor living-climate (Living, living): already in the home map" in io.text
    # the window, once added, is recognised by its IEEE address and not offered again
    assert "livingroom/window (0x00158d0001e1a85a) is sensor living-window" in io.text
    requests = fake.permit_requests()
    assert {k: v for k, v in requests[0].items() if k != "transaction"} == {
        "value": True,
        "time": 254,
    }
    assert {k: v for k, v in requests[-1].items() if k != "transaction"} == {"value": False}
    home = load_config(config).home
    assert 'device = "0x00158d0001e1a85a"  # MCCGQ01LM, Zigbee2MQTT name "livingroom/window"' in (
        config.read_text()
    )
    assert home.sensors["living-window"].device == "0x00158d0001e1a85a"
    assert home.sensors["living-window"].role is Role.WINDOW
    assert home.sensors["help-button"].model_dump(exclude_none=True) == {
        "room": "Slaapkamer",
        "role": Role.WEARABLE,
        "kind": EventKind.BUTTON,
        "device": "0x00158d000224154d",
    }
    assert 'device = "0x00158d000224154d"  # WXKG01LM\n' in (config.read_text())


# ---- the pure parts -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "seconds", "payload"),
    [
        ("1.25.0-dev", 254, {"value": True, "time": 254}),
        ("1.42.0", 0, {"value": False}),
        ("2.1.1", 254, {"time": 254}),
        ("2.0.0", 0, {"time": 0}),
        (None, 254, {"value": True, "time": 254}),  # both: each version reads its own
        ("next", 0, {"value": False, "time": 0}),
    ],
)
def test_permit_join_payloads(version: str | None, seconds: int, payload: dict[str, Any]) -> None:
    assert pairing.permit_payload(version, seconds) == payload


@pytest.mark.parametrize(
    ("exposes", "kind"),
    [
        ({"occupancy", "illuminance", "temperature", "battery"}, EventKind.MOTION),  # Hue motion
        ({"contact", "battery", "voltage"}, EventKind.CONTACT),
        ({"action", "battery"}, EventKind.BUTTON),
        ({"action", "vibration", "strength"}, EventKind.VIBRATION),  # Aqara DJT11LM
        ({"temperature", "humidity", "pressure"}, EventKind.TEMPERATURE),
        ({"water_leak", "battery"}, EventKind.WATER_LEAK),
        ({"state", "brightness"}, None),  # a light
    ],
)
def test_the_proposed_kind(exposes: set[str], kind: EventKind | None) -> None:
    assert pairing.propose_kind(frozenset(exposes)) is kind


def test_suggested_ids_are_free() -> None:
    home = HomeMap.model_validate(
        {
            "sensors": {
                "keuken-motion": {"room": "Keuken", "role": "kitchen"},
                "x": {"room": "Keuken", "role": "kitchen", "device": "keuken-motion-2"},
            }
        }
    )
    assert pairing.suggest_id("Keuken", EventKind.MOTION, home) == "keuken-motion-3"
    assert pairing.suggest_id("Woonkamer (groot)", None, home) == "woonkamer-groot-sensor"
    assert pairing.slug("Salle de bain à l'étage") == "salle-de-bain-a-l-etage"


# ---- a real process in a terminal ------------------------------------------------------------
class Terminal:
    """``hub provision pair`` in a pseudo-terminal that is its controlling terminal."""

    def __init__(self, argv: list[str]) -> None:
        if shutil.which("setsid") is None:
            pytest.skip("needs setsid (util-linux) to give the process its terminal")
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            ["setsid", "-w", "-c", *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "dumb"},
        )
        os.close(slave)
        self.screen = ""
        self.seen = 0

    def expect(self, text: str, timeout: float = WAIT) -> None:
        """Wait until ``text`` appears after what was expected last."""
        deadline = time.monotonic() + timeout
        while text not in self.screen[self.seen :]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} did not appear; the terminal shows:\n{self.screen}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    self.screen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the process is gone
                    raise AssertionError(f"{text!r} never came:\n{self.screen}") from None
        self.seen = self.screen.index(text, self.seen) + len(text)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self) -> int:
        return self.proc.wait(WAIT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_in_a_terminal_a_sensor_is_added_and_an_interrupt_closes_the_network(
    stop: str, v2: FakeZigbee2Mqtt, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = hub_toml(tmp_path / "hub.toml", mosquitto)
    term = Terminal([HUB, "provision", "pair", "--config", str(config), "--no-restart"])
    try:
        term.expect("Trigger the sensor now")
        v2.join(MOTION)
        term.expect("Kind [motion]: ")
        term.type("\r")
        term.expect("Room (a number above, or a new name): ")
        term.type("Gang\r")
        term.expect("Role [hallway]: ")
        term.type("\r")
        term.expect("Sensor id [gang-motion]: ")
        term.type("\r")
        term.expect("(y/n) [y]: ")
        term.type("y\r")
        term.expect("Pair another sensor? (y/n) [y]: ")
        term.type("\r")
        term.expect("Trigger the sensor now")
        v2.join(DOOR)
        term.expect("Kind [contact]: ")
        term.type("\r")
        term.expect("Room (a number above, or a new name): ")
        if stop == "ctrl-c":
            term.type("\x03")  # the terminal sends SIGINT to the process
        else:
            os.kill(_child_of(term.proc.pid), signal.SIGTERM)
        term.expect("Stopped")
        term.expect("Added 1 sensor(s): gang-motion")
        code = term.wait()
    finally:
        term.close()
    assert code == 1
    data = tomllib.loads(config.read_text())
    assert list(data["home"]["sensors"]) == ["gang-motion"]
    assert data["home"]["sensors"]["gang-motion"]["role"] == "hallway"
    assert v2.permit_requests()[-1]["time"] == 0 and not v2.permitted


def _child_of(pid: int) -> int:
    """The hub process: setsid itself when it did not need to fork, else its only child."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid
