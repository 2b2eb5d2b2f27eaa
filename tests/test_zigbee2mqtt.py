"""The Zigbee2MQTT driver: decoding with literal vectors, then against a real Mosquitto.

The broker tests replay what real Zigbee2MQTT installations published (the captures in
``../shared/data/zigbee2mqtt-snapshots``, read in place, never copied) and our own
vectors for the odd cases (``tests/data/zigbee2mqtt/devices.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.clock import LiveClock
from agent.config import validate_config
from agent.devtools.broker import Mosquitto, find_mosquitto, free_port
from agent.errors import ConfigError, TransientError
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap
from agent.messages import AlertMessage, AlertState, Severity
from agent.runtime import Runtime
from drivers.base import DriverContext, DriverHealth
from drivers.zigbee2mqtt import decode
from drivers.zigbee2mqtt.config import Zigbee2MqttConfig
from drivers.zigbee2mqtt.decode import Malformed, Topic
from drivers.zigbee2mqtt.driver import Zigbee2MqttDriver

TZ = ZoneInfo("Europe/Amsterdam")
BASE = "zigbee2mqtt"
WAIT = 15.0  # an upper bound for things to happen, never a speed requirement
DATA = Path(__file__).parent / "data" / "zigbee2mqtt"
OLD = "onConnect.2020-10-12.00e38ab.ndjson"
NEW = "onConnect.2024-10-15.0a1c912.json"

K = EventKind
Event = tuple[str, EventKind, float]


# ---- decoding: literal vectors, no broker ---------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b"online", True),  # legacy_availability_payload (before 2.0)
        (b"offline", False),
        (b'{"state":"online"}', True),  # the JSON form
        (b'{"state":"Offline"}', False),  # as one real installation published it
        (b' "offline" ', False),
    ],
)
def test_availability_in_both_forms(payload: bytes, online: bool) -> None:
    assert decode.parse_online(payload) is online


@pytest.mark.parametrize(
    "payload", [b"", b"maybe", b'{"state": 1}', b"[1]", b"\xff\xfe", b'{"available": true}']
)
def test_availability_that_is_neither_is_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        decode.parse_online(payload)


@pytest.mark.parametrize(
    "payload", [b"not json", b"[1, 2]", b'"a string"', b"\xc3\x28", b'{"t": NaN}', b"null"]
)
def test_a_state_is_a_json_object(payload: bytes) -> None:
    with pytest.raises(Malformed):
        decode.parse_state(payload)


def test_topics_are_routed_with_the_device_list() -> None:
    devices = {"hall", "hall/door sensor", "0x00158d0000000a03"}
    groups = {"living/lights"}
    route = decode.route
    assert route("hall/door sensor", devices) == (Topic.STATE, "hall/door sensor")
    assert route("hall", devices) == (Topic.STATE, "hall")
    assert route("hall/availability", devices) == (Topic.AVAILABILITY, "hall")
    assert route("hall/door sensor/availability", devices) == (
        Topic.AVAILABILITY,
        "hall/door sensor",
    )
    assert route("hall/action", devices) == (Topic.ACTION, "hall")
    assert route("hall/set", devices) == (Topic.OTHER, "hall")
    assert route("hall/door sensor/get", devices) == (Topic.OTHER, "hall/door sensor")
    assert route("hall/door/set", devices) == (Topic.OTHER, "hall")  # device "hall", sub "door/set"
    assert route("hall/l1", devices) == (Topic.OTHER, "hall")  # an endpoint's republication
    assert route("living/lights", devices, groups) == (Topic.GROUP, "living/lights")
    assert route("living/lights/set", devices, groups) == (Topic.GROUP, "living/lights")
    assert route("garage", devices, groups) == (Topic.UNKNOWN, "")


@pytest.mark.parametrize(
    ("action", "value"),
    [
        ("single", 1.0),
        ("press", 1.0),
        ("on", 1.0),
        ("off", 1.0),
        ("toggle", 1.0),
        ("double", 1.0),
        ("emergency", 1.0),  # SOS buttons
        ("1_single", 1.0),
        ("single_left", 1.0),
        ("arrow_left_click", 1.0),
        ("on_press", 1.0),
        ("hold", 2.0),
        ("long", 2.0),
        ("long_press", 2.0),
        ("button_1_hold", 2.0),
        ("on_hold", 2.0),
        ("", None),  # the "cleared" action
        ("release", None),
        ("hold_release", None),
        ("on_press_release", None),
        ("brightness_stop", None),
        ("brightness_move_up", None),
        ("vibration", None),  # a vibration sensor's action is no button
        ("tilt", None),
        ("shake", None),
        ("rotate_left", None),
    ],
)
def test_actions_to_button_values(action: str, value: float | None) -> None:
    assert decode.action_value(action) == value


# A Philips Hue motion sensor (9290012607) as the 2020 capture shows it.
HUE = {
    "battery": 100,
    "illuminance": 0,
    "illuminance_lux": 0,
    "linkquality": 110,
    "occupancy": True,
    "temperature": 19.94,
}


def readings(update: decode.StateUpdate) -> list[tuple[EventKind, float]]:
    return [(r.kind, r.value) for r in update.readings]


def test_a_battery_report_repeating_occupancy_is_not_motion() -> None:
    cur = {**HUE, "battery": 99, "linkquality": 104}
    assert readings(decode.decode_state(HUE, cur)) == [(K.BATTERY, 99.0)]


def test_a_temperature_report_repeating_occupancy_is_not_motion() -> None:
    cur = {**HUE, "temperature": 20.1, "linkquality": 98}
    assert readings(decode.decode_state(HUE, cur)) == [(K.TEMPERATURE, 20.1)]


def test_a_bare_repeated_occupancy_is_a_new_trigger() -> None:
    cur = {**HUE, "linkquality": 98}  # only the per-message link quality differs
    assert readings(decode.decode_state(HUE, cur)) == [(K.MOTION, 1.0)]
    cleared = {**HUE, "occupancy": False}
    assert readings(decode.decode_state(cleared, {**cleared, "linkquality": 3})) == []


def test_last_seen_tells_a_republication_from_a_new_report() -> None:
    prev = {**HUE, "last_seen": "2026-03-01T10:00:00+01:00"}
    again = decode.decode_state(prev, dict(prev))
    assert readings(again) == [] and not again.fresh and again.steady == []
    new = decode.decode_state(prev, {**prev, "last_seen": "2026-03-01T10:01:30+01:00"})
    assert readings(new) == [(K.MOTION, 1.0)] and new.fresh


def test_unchanged_measurements_of_a_fresh_report_are_steady() -> None:
    update = decode.decode_state(HUE, {**HUE, "linkquality": 5})
    assert [(r.kind, r.value) for r in update.steady] == [
        (K.TEMPERATURE, 19.94),
        (K.ILLUMINANCE, 0.0),
        (K.BATTERY, 100.0),
    ]
    assert update.lqi == 5.0


def test_a_retained_state_is_a_baseline_without_activity() -> None:
    cur = {"occupancy": True, "contact": False, "smoke": False, "battery": 50, "action": "single"}
    update = decode.decode_state(None, cur, retained=True)
    assert readings(update) == [(K.SMOKE, 0.0), (K.BATTERY, 50.0)]
    assert update.steady == []


def test_contact_is_inverted_and_passed_on_only_when_it_changes() -> None:
    # Zigbee2MQTT: contact true = closed. Ours: contact 1 = open.
    closed = {"battery": 100, "battery_low": False, "contact": True, "tamper": False}
    assert readings(decode.decode_state(None, closed)) == [
        (K.CONTACT, 0.0),
        (K.TAMPER, 0.0),
        (K.BATTERY_LOW, 0.0),
        (K.BATTERY, 100.0),
    ]
    assert readings(decode.decode_state(closed, {**closed, "linkquality": 9})) == []
    assert readings(decode.decode_state(closed, {**closed, "contact": False})) == [(K.CONTACT, 1.0)]


def test_which_keys_are_read_and_which_are_not() -> None:
    # Zigbee2MQTT 1.x: illuminance raw, illuminance_lux in lux; the lux is taken.
    assert readings(decode.decode_state(None, {"illuminance": 30001, "illuminance_lux": 12})) == [
        (K.ILLUMINANCE, 12.0)
    ]
    assert readings(decode.decode_state(None, {"illuminance": 12})) == [(K.ILLUMINANCE, 12.0)]
    # a voltage is no battery percentage; air pressure is no pressure mat
    assert readings(decode.decode_state(None, {"voltage": 2900, "pressure": 1009.8})) == []
    assert readings(decode.decode_state(None, {"battery": "100.00"})) == [(K.BATTERY, 100.0)]
    water = {"water_leak": True, "presence": False}
    assert readings(decode.decode_state(None, water)) == [(K.PRESENCE, 0.0), (K.WATER_LEAK, 1.0)]


def test_wrong_types_are_problems_and_the_rest_still_counts() -> None:
    cur = {
        "occupancy": "yes",
        "temperature": "hot",
        "battery": 150,
        "humidity": 55.5,
        "linkquality": "good",
        "contact": None,  # null: no value, not a problem
    }
    update = decode.decode_state(None, cur)
    assert readings(update) == [(K.HUMIDITY, 55.5)]
    assert len(update.problems) == 4
    assert update.lqi is None


def test_actions_in_the_state() -> None:
    assert readings(decode.decode_state(None, {"action": "single"})) == [(K.BUTTON, 1.0)]
    assert readings(decode.decode_state(None, {"action": "hold", "click": "hold"})) == [
        (K.BUTTON, 2.0)
    ]
    cleared = decode.decode_state({"action": "single"}, {"action": ""})
    assert readings(cleared) == [] and not cleared.saw_action
    assert readings(decode.decode_state(None, {"action": None})) == []
    assert decode.decode_state(None, {"action": 5}).problems == [
        "action: expected a string, got a number"
    ]
    # an Aqara vibration sensor (DJT11LM): its action names the vibration, it is no button
    shaken = decode.decode_state(None, {"action": "vibration", "vibration": True})
    assert readings(shaken) == [(K.VIBRATION, 1.0)] and shaken.saw_action
    # an IAS SOS pendant: one press, whichever way it is told
    sos = decode.decode_state(None, {"sos": True, "action": "emergency"})
    assert readings(sos) == [(K.BUTTON, 1.0)]
    assert readings(decode.decode_state({"sos": True}, {"sos": False})) == []


def test_device_list_entries() -> None:
    devices, problems = decode.parse_devices((DATA / "devices.json").read_bytes())
    assert [d.name for d in devices][:3] == ["Coordinator", "hall", "hall/door sensor"]
    assert devices[0].coordinator and not devices[1].coordinator
    assert devices[1].exposes == {"occupancy", "illuminance", "battery"}
    assert devices[6].exposes == {"state"}
    assert problems == ["device [7] has no ieee_address or friendly_name"]
    with pytest.raises(Malformed):
        decode.parse_devices(b'{"devices": []}')


# ---- the captures ------------------------------------------------------------------------------


def load_capture(shared: Path, name: str) -> list[tuple[str, Any]]:
    """(topic relative to the base, payload) in the order Zigbee2MQTT published them."""
    path = shared / "zigbee2mqtt-snapshots" / name
    if name.endswith(".ndjson"):
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    else:
        items = json.loads(path.read_text(encoding="utf-8"))
    return [(item["topic"], item["payload"]) for item in items]


def devices_in(capture: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return next(payload for topic, payload in capture if topic == "bridge/devices")


def wire(payload: Any) -> bytes:
    return payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()


@pytest.mark.realdata
@pytest.mark.parametrize("name", [OLD, NEW])
def test_the_device_lists_of_real_installations(shared_data: Path, name: str) -> None:
    capture = load_capture(shared_data, name)
    raw = devices_in(capture)
    devices, problems = decode.parse_devices(wire(raw))
    assert problems == []
    assert len(devices) == len(raw)
    real = [d for d in devices if not d.coordinator]
    assert len(real) == sum(1 for entry in raw if entry["type"] != "Coordinator")
    assert {d.ieee for d in devices} == {entry["ieee_address"] for entry in raw}
    not_done = {
        e["friendly_name"] for e in raw if not e["interview_completed"] or e["interviewing"]
    }
    assert {d.name for d in devices if not d.interviewed} == not_done
    assert not_done  # both captures hold a device whose pairing did not finish


# ---- a driver on a real broker ------------------------------------------------------------------


def publish(broker: Mosquitto, messages: Iterable[tuple[str, bytes, bool]]) -> None:
    """Publish ``(topic, payload, retain)`` in order at QoS 1, each acknowledged."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"z2m-test-{uuid.uuid4().hex[:8]}",
    )
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        for topic, payload, retain in messages:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


async def apublish(broker: Mosquitto, *messages: tuple[str, Any, bool]) -> None:
    """``publish`` off the loop; topics are relative to the base, payloads JSON or text."""
    wired = [(f"{BASE}/{topic}", wire(payload), retain) for topic, payload, retain in messages]
    await asyncio.to_thread(publish, broker, wired)


async def until(ready: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not ready():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"{what}: not within {timeout} s")


def at(broker: Mosquitto) -> tuple[str, int]:
    return broker.host, broker.port


class Rig:
    """A driver with a real context: its events and signals are recorded."""

    def __init__(
        self, where: tuple[str, int], sensors: dict[str, dict[str, Any]], **cfg: Any
    ) -> None:
        self.events: list[Event] = []
        self.signals: list[tuple[str, float, str]] = []
        self.home = HomeMap.model_validate({"sensors": sensors})
        self.health = DriverHealth(name="zigbee")
        clock = LiveClock(TZ, synced=True)
        self.ctx = DriverContext(
            clock=clock,
            emit=self._emit,
            home=self.home,
            health=self.health,
            log=logging.getLogger("drivers.zigbee"),
            signal=lambda s, v, u: self.signals.append((s, v, u)),
        )
        self.config = Zigbee2MqttConfig(host=where[0], port=where[1], **cfg)
        self.driver = Zigbee2MqttDriver(self.config, self.ctx)

    def _emit(self, event: SensorEvent) -> None:
        assert event.sensor in self.home  # only sensors of the home map
        self.events.append((event.sensor, event.kind, event.value))

    def of(self, sensor: str) -> list[tuple[EventKind, float]]:
        return [(kind, value) for sid, kind, value in self.events if sid == sensor]

    def has(self, event: Event) -> Callable[[], bool]:
        return lambda: event in self.events

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        task = asyncio.create_task(self.driver.run())
        try:
            await until(
                lambda: self.health.details["broker"].endswith("connected") or task.done(),
                "the driver subscribed",
            )
            if task.done():
                task.result()
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.driver.close()


OLD_HOME: dict[str, dict[str, Any]] = {
    "hallway-motion": {"room": "Hallway", "role": "hallway", "device": "hallway/motion"},
    "office-window": {"room": "Office", "role": "window", "device": "office/window"},
    "bedroom-window": {"room": "Bedroom", "role": "window", "device": "bedroom/window"},
    "entrance-door": {"room": "Hallway", "role": "front_door", "device": "entrance/door"},
    # matched by IEEE address: office/sensor
    "office-climate": {"room": "Office", "role": "other", "device": "0xbc33acfffe6eb88a"},
}


@pytest.mark.realdata
def test_the_2020_capture_replayed_live(shared_data: Path, mosquitto: Mosquitto) -> None:
    """Zigbee2MQTT 1.15 (plain-string availability), published as it happened."""
    capture = load_capture(shared_data, OLD)
    rig = Rig(at(mosquitto), OLD_HOME)

    async def main() -> None:
        async with rig.running():
            # Retained where Zigbee2MQTT retains (bridge/*, availability); states are not.
            await apublish(
                mosquitto,
                *[
                    (t, p, t.startswith("bridge/") or t.endswith("/availability"))
                    for t, p in capture
                ],
                ("office/sensor/availability", "offline", False),  # the end marker
            )
            await until(rig.has(("office-climate", K.AVAILABILITY, 0.0)), "the end marker")

    asyncio.run(main())
    # device states came before bridge/devices: they waited for it, then counted
    assert rig.of("hallway-motion") == [
        (K.MOTION, 0.0),
        (K.TEMPERATURE, 19.94),
        (K.ILLUMINANCE, 0.0),
        (K.BATTERY, 100.0),
        (K.AVAILABILITY, 1.0),
    ]  # its state came twice: the second, unchanged, passed nothing on
    assert rig.of("office-window") == [
        (K.CONTACT, 0.0),  # "contact": true is a closed window
        (K.TAMPER, 0.0),
        (K.BATTERY_LOW, 0.0),
        (K.BATTERY, 100.0),
        (K.AVAILABILITY, 1.0),
    ]
    assert rig.of("bedroom-window")[0] == (K.CONTACT, 1.0)  # "contact": false is open
    assert rig.of("entrance-door")[0] == (K.CONTACT, 0.0)
    assert rig.of("office-climate") == [
        (K.TEMPERATURE, 21.1),
        (K.HUMIDITY, 63.4),
        (K.BATTERY, 30.0),  # and no battery made up from its voltage (2500 mV)
        (K.AVAILABILITY, 1.0),
        (K.AVAILABILITY, 0.0),
    ]
    assert ("office-climate", 47.0, "lqi") in rig.signals
    raw = devices_in(capture)
    known = sum(1 for entry in raw if entry["type"] != "Coordinator")
    details = rig.health.details
    assert details["devices"] == str(known)
    assert details["matched"] == "5" and details["strangers"] == str(known - 5)
    assert details["bridge"] == "online"
    assert rig.health.malformed_count == 0


NEW_HOME: dict[str, dict[str, Any]] = {
    "window": {"room": "Living", "role": "window", "device": "livingroom/window"},
    "ac-door": {"room": "Living", "role": "other", "device": "livingroom/ac power"},
    "climate": {"room": "Living", "role": "living", "device": "livingroom/temp_humidity"},
    "shaker": {"room": "Office", "role": "other", "device": "work/nur/jopa"},
    "lamp": {"room": "Living", "role": "other", "device": "hue1"},
    "remote": {"room": "Living", "role": "other", "device": "0xbc33acfffe17628b"},
    "outside": {"room": "Balcony", "role": "other", "device": "0x00158d0004866f11"},
}


@pytest.mark.realdata
def test_the_2024_capture_retained_is_a_baseline(shared_data: Path, mosquitto: Mosquitto) -> None:
    """Zigbee2MQTT 1.25 with retain on: what the broker kept is the baseline."""
    capture = load_capture(shared_data, NEW)
    state = dict(capture)
    rig = Rig(at(mosquitto), NEW_HOME)

    async def main() -> None:
        await apublish(mosquitto, *[(t, p, True) for t, p in capture])
        async with rig.running():
            await apublish(mosquitto, ("hue1/availability", {"state": "online"}, False))
            await until(rig.has(("lamp", K.AVAILABILITY, 1.0)), "the first marker")
            baseline = Counter(rig.events)
            rig.events.clear()
            jopa = state["work/nur/jopa"]
            await apublish(
                mosquitto,
                *[
                    ("livingroom/window", {**window, "last_seen": seen}, False)
                    for window, seen in [
                        ({**state["livingroom/window"], "contact": False}, "2022-05-16T21:10:00"),
                        ({**state["livingroom/window"], "contact": True}, "2022-05-16T21:10:30"),
                    ]
                ],
                # the same vibration again, in a new report that changed nothing else
                (
                    "work/nur/jopa",
                    {**jopa, "last_seen": "2022-05-16T21:12:00", "linkquality": 20},
                    False,
                ),
                # and again with a changed strength: a report of the strength
                (
                    "work/nur/jopa",
                    {**jopa, "last_seen": "2022-05-16T21:13:00", "strength": 31},
                    False,
                ),
                (
                    "livingroom/temp_humidity",
                    {**state["livingroom/temp_humidity"], "temperature": 25.9, "last_seen": "x"},
                    False,
                ),
                ("0xbc33acfffe17628b/availability", "online", False),  # the end marker
            )
            await until(rig.has(("remote", K.AVAILABILITY, 1.0)), "the end marker")
            assert baseline == Counter(
                [
                    # contact and vibration are left out: they happened before we looked
                    ("window", K.BATTERY, 100.0),
                    ("window", K.AVAILABILITY, 1.0),
                    ("ac-door", K.BATTERY, 100.0),  # a friendly name with a space
                    ("ac-door", K.AVAILABILITY, 1.0),
                    ("climate", K.TEMPERATURE, 25.84),
                    ("climate", K.HUMIDITY, 65.59),
                    ("climate", K.BATTERY, 100.0),
                    ("climate", K.AVAILABILITY, 1.0),
                    ("shaker", K.TEMPERATURE, 31.0),
                    ("shaker", K.BATTERY, 100.0),
                    ("lamp", K.AVAILABILITY, 0.0),  # {"state": "Offline"}
                    ("lamp", K.AVAILABILITY, 1.0),  # the first marker
                    ("remote", K.AVAILABILITY, 0.0),  # matched by its IEEE address
                    ("outside", K.TEMPERATURE, 32.9),  # its air pressure is not read
                    ("outside", K.HUMIDITY, 59.96),
                    ("outside", K.BATTERY, 0.0),
                    ("outside", K.AVAILABILITY, 1.0),
                ]
            )
            assert rig.events == [
                ("window", K.CONTACT, 1.0),  # opened
                ("window", K.CONTACT, 0.0),  # closed again
                ("shaker", K.VIBRATION, 1.0),
                ("climate", K.TEMPERATURE, 25.9),
                ("remote", K.AVAILABILITY, 1.0),
            ]

    asyncio.run(main())
    raw = devices_in(capture)
    known = sum(1 for entry in raw if entry["type"] != "Coordinator")
    assert rig.health.details["devices"] == str(known)
    assert rig.health.details["matched"] == str(len(NEW_HOME))
    assert rig.health.details["strangers"] == str(known - len(NEW_HOME))
    assert rig.health.malformed_count == 0


ODD_HOME: dict[str, dict[str, Any]] = {
    "hall-motion": {"room": "Hallway", "role": "hallway", "kind": "motion", "device": "hall"},
    "hall-door": {
        "room": "Hallway",
        "role": "front_door",
        "kind": "contact",
        "device": "hall/door sensor",
    },
    "help": {"room": "Living", "role": "wearable", "kind": "button", "device": "help button"},
    "pendant": {"room": "Living", "role": "wearable", "device": "0x00158d0000000a04"},
    "kitchen": {
        "room": "Kitchen",
        "role": "kitchen",
        "kind": "presence",
        "device": "kitchen/motion",
    },
}


def test_the_odd_cases(mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    devices = json.loads((DATA / "devices.json").read_text(encoding="utf-8"))
    hall = {"occupancy": True, "illuminance": 120, "battery": 90, "linkquality": 60}
    seen = "2026-03-01T10:00:00+01:00"
    steps: list[tuple[str, Any, bool]] = [
        ("hall", hall, False),  # before the device list: it waits for it
        ("bridge/devices", devices, True),  # holds one broken entry
        ("hall/door sensor", {"contact": False, "battery": 100}, False),  # not device "hall"
        ("hall/door sensor/availability", {"state": "online"}, False),
        ("hall/availability", "offline", False),
        ("hall/set", {"state": "ON"}, False),  # a command to Zigbee2MQTT: not ours
        ("hall/door sensor/get", {"contact": ""}, False),
        ("hall", {**hall, "linkquality": 50}, False),  # bare repeat: motion again
        ("hall", {**hall, "illuminance": 130}, False),  # a light report
        ("hall", "not json", False),
        ("hall", [1, 2], False),
        ("hall", {**hall, "illuminance": 130, "occupancy": "yes", "temperature": True}, False),
        ("hall", {**hall, "illuminance": 130, "occupancy": False}, False),
        ("help button", {"action": "single", "battery": 100}, False),
        ("help button", {"action": "", "battery": 100}, False),  # cleared
        ("help button/action", "single", False),  # Home Assistant's copy of that press
        ("help button", {"action": "hold", "battery": 100}, False),
        ("help button", {"action": None, "battery": 100}, False),
        ("help button", {"action": "release", "battery": 100}, False),
        ("pendant/action", "single", False),  # attribute output: the only copy
        ("pendant/action", "", False),
        ("kitchen/motion", {"presence": True, "action": "single"}, False),
        ("garage plug", {"state": "ON", "linkquality": 80}, False),  # a stranger
        ("shed/sensor", {"temperature": 5}, False),  # nobody Zigbee2MQTT knows
        ("bridge/state", "offline", False),
        ("hall", {**hall, "illuminance": 130, "last_seen": seen}, False),
        ("hall", {**hall, "illuminance": 130, "last_seen": seen}, False),  # a republication
        ("bridge/state", {"state": "online"}, False),
        ("hall/door sensor/availability", "offline", False),  # the end marker
    ]
    rig = Rig(at(mosquitto), ODD_HOME)

    async def main() -> None:
        async with rig.running():
            await apublish(mosquitto, *steps)
            await until(rig.has(("hall-door", K.AVAILABILITY, 0.0)), "the end marker")

    with caplog.at_level(logging.INFO, logger="drivers.zigbee"):
        asyncio.run(main())
    assert rig.events == [
        ("hall-motion", K.MOTION, 1.0),
        ("hall-motion", K.ILLUMINANCE, 120.0),
        ("hall-motion", K.BATTERY, 90.0),
        ("hall-door", K.CONTACT, 1.0),
        ("hall-door", K.BATTERY, 100.0),
        ("hall-door", K.AVAILABILITY, 1.0),
        ("hall-motion", K.AVAILABILITY, 0.0),
        ("hall-motion", K.MOTION, 1.0),
        ("hall-motion", K.ILLUMINANCE, 130.0),
        ("hall-motion", K.MOTION, 0.0),
        ("help", K.BATTERY, 100.0),
        ("help", K.BUTTON, 1.0),
        ("help", K.BUTTON, 2.0),
        ("pendant", K.BUTTON, 1.0),
        ("kitchen", K.PRESENCE, 1.0),  # and its action is no help call
        ("hall-motion", K.MOTION, 1.0),
        ("hall-door", K.AVAILABILITY, 0.0),
    ]
    # the broken device entry, two payloads that are no object, two wrong types
    assert rig.health.malformed_count == 5
    details = rig.health.details
    assert (details["devices"], details["matched"], details["strangers"]) == ("6", "5", "1")
    assert details["bridge"] == "online"
    messages = [r.getMessage() for r in caplog.records]
    assert any("Zigbee2MQTT is offline" in m for m in messages)
    assert any("'garage plug'" in m and "not in the home map" in m for m in messages)
    assert any("kitchen" in m and "ignored" in m for m in messages)
    assert ("hall-motion", 50.0, "lqi") in rig.signals
    assert rig.driver.sensors() == ["hall-door", "hall-motion", "help", "kitchen", "pendant"]


@pytest.mark.parametrize(("repeat_after", "times"), [(0.1, 2), ("1h", 1), (0, 1)])
def test_a_steady_measurement_is_repeated_at_a_slow_pace(
    mosquitto: Mosquitto, repeat_after: str | float, times: int
) -> None:
    """An unchanged temperature in a new report comes again once ``repeat_after`` has
    passed (so the sensor is not taken for silent); a re-publication never repeats it."""
    devices = json.loads((DATA / "devices.json").read_text(encoding="utf-8"))
    rig = Rig(at(mosquitto), ODD_HOME, repeat_after=repeat_after)
    report = {"temperature": 21.5, "occupancy": False, "linkquality": 40}

    async def main() -> None:
        async with rig.running():
            await apublish(
                mosquitto,
                ("bridge/devices", devices, True),
                ("hall", {**report, "last_seen": "10:00"}, False),
                ("hall", {**report, "last_seen": "10:00"}, False),  # a republication
                ("hall/availability", "online", False),  # a marker
            )
            await until(rig.has(("hall-motion", K.AVAILABILITY, 1.0)), "the marker")
            await asyncio.sleep(0.3)  # longer than the shortest repeat_after
            await apublish(
                mosquitto,
                ("hall", {**report, "last_seen": "10:30", "linkquality": 41}, False),
                ("hall", {**report, "last_seen": "10:30", "linkquality": 41}, False),
                ("hall/availability", "offline", False),  # the end marker
            )
            await until(rig.has(("hall-motion", K.AVAILABILITY, 0.0)), "the end marker")

    asyncio.run(main())
    assert rig.of("hall-motion") == [
        (K.MOTION, 0.0),
        (K.TEMPERATURE, 21.5),
        (K.AVAILABILITY, 1.0),
        *[(K.TEMPERATURE, 21.5)] * (times - 1),
        (K.AVAILABILITY, 0.0),
    ]


def test_sensors_named_by_ieee_address_are_claimed_before_the_device_list() -> None:
    rig = Rig(("127.0.0.1", 1883), ODD_HOME)
    assert rig.driver.sensors() == ["pendant"]


def test_no_broker_is_a_transient_error() -> None:
    port = free_port()  # nobody listens there
    rig = Rig(("127.0.0.1", port), {}, connect_timeout=2)
    driver = rig.driver

    async def main() -> None:
        try:
            with pytest.raises(TransientError, match=f"127.0.0.1:{port} cannot be reached"):
                await driver.run()
        finally:
            await driver.close()

    asyncio.run(main())
    assert "cannot be reached" in rig.health.details["broker"]


def test_a_refused_login_is_a_transient_error_that_says_why() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    with Mosquitto(allow_anonymous=False) as broker:
        rig = Rig(at(broker), {}, username="hub", password="wrong")

        async def main() -> None:
            try:
                with pytest.raises(TransientError, match="refused the connection"):
                    await rig.driver.run()
            finally:
                await rig.driver.close()

        asyncio.run(main())


def test_the_configuration() -> None:
    config = Zigbee2MqttConfig(password="s3cret", base_topic="home/zigbee")
    assert "s3cret" not in repr(config)
    for bad in ("", "/zigbee2mqtt", "zigbee2mqtt/", "zigbee/#", "a//b"):
        with pytest.raises(ConfigError, match="base_topic"):
            validate_config(
                {"hub": {"id": "h-1"}, "drivers": [{"type": "zigbee2mqtt", "base_topic": bad}]}
            )
    with pytest.raises(ConfigError, match="unknown key"):
        validate_config({"hub": {"id": "h-1"}, "drivers": [{"type": "zigbee2mqtt", "topic": "x"}]})


# ---- through the runtime ------------------------------------------------------------------------


PENDANT = [
    {
        "ieee_address": "0x00158d00000000b1",
        "friendly_name": "pendant",
        "type": "EndDevice",
        "interview_completed": True,
        "interviewing": False,
        "definition": {"model": "SNZB-01", "exposes": [{"property": "action"}]},
    },
    {
        "ieee_address": "0x00158d00000000b2",
        "friendly_name": "hall",
        "type": "EndDevice",
        "interview_completed": True,
        "interviewing": False,
        "definition": {"model": "RTCGQ11LM", "exposes": [{"property": "occupancy"}]},
    },
]


def runtime_for(broker: Mosquitto, driver: dict[str, Any] | None = None, **hooks: Any) -> Runtime:
    config = validate_config(
        {
            "hub": {"id": "h-zigbee"},
            "uplink": {"type": "memory"},
            "home": {
                "sensors": {
                    "help-button": {
                        "room": "Living",
                        "role": "wearable",
                        "kind": "button",
                        "device": "pendant",
                    },
                    "hall-motion": {"room": "Hallway", "role": "hallway", "device": "hall"},
                }
            },
            "drivers": [
                {
                    "type": "zigbee2mqtt",
                    "name": "zigbee",
                    "host": broker.host,
                    "port": broker.port,
                    "connect_timeout": "2s",
                    "keepalive": "10s",
                    **(driver or {}),
                }
            ],
        }
    )
    return Runtime(config, clock=LiveClock(TZ, synced=True), **hooks)


def test_a_press_on_the_pendant_raises_an_urgent_help_alert(mosquitto: Mosquitto) -> None:
    alerts: list[AlertMessage] = []
    runtime = runtime_for(mosquitto, alert_hook=alerts.append)

    async def main() -> None:
        await apublish(mosquitto, ("bridge/devices", PENDANT, True))
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        try:
            await until(lambda: "zigbee" in runtime.driver_health, "the driver started")
            details = runtime.driver_health["zigbee"].details
            await until(lambda: details.get("matched") == "2", "the device list read")
            await apublish(mosquitto, ("pendant", {"action": "single", "linkquality": 120}, False))
            await until(lambda: bool(alerts), "a help-button alert")
        finally:
            runtime.request_stop()
            await task

    asyncio.run(main())
    alert = alerts[0]
    assert (alert.kind, alert.severity, alert.state) == (
        "help_button",
        Severity.URGENT,
        AlertState.RAISED,
    )
    assert alert.room == "Living"
    assert runtime.stats.alerts["help_button:raised"] == 1


def test_a_quiet_zigbee_network_is_no_hung_driver(mosquitto: Mosquitto) -> None:
    """No device says anything for three times ``stall_after``: the open session is the
    driver's sign of life, given often enough (paho's timers run every quarter of it,
    not every quarter keepalive), so the driver is never restarted as hung."""
    runtime = runtime_for(mosquitto, driver={"stall_after": "1s", "keepalive": "60s"})

    async def main() -> tuple[str, int]:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        try:
            await until(lambda: "zigbee" in runtime.driver_health, "the driver started")
            health = runtime.driver_health["zigbee"]
            await until(lambda: health.details.get("broker", "").endswith("connected"), "up")
            await asyncio.sleep(3.0)  # three stall limits without a message
            return health.state, health.restarts
        finally:
            runtime.request_stop()
            await task

    assert asyncio.run(main()) == ("running", 0)


def test_events_flow_again_after_the_broker_restarts(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = runtime_for(mosquitto)

    async def motion_until_counted(what: str) -> None:
        before = runtime.stats.events
        occupied = True
        for _ in range(int(WAIT / 0.2)):
            await apublish(mosquitto, ("hall", {"occupancy": occupied}, False))
            occupied = not occupied
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    while runtime.stats.events == before:
                        await asyncio.sleep(0.01)
            if runtime.stats.events > before:
                return
        pytest.fail(f"{what}: no event within {WAIT} s")

    async def main() -> None:
        await apublish(mosquitto, ("bridge/devices", PENDANT, True))
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        try:
            await until(lambda: "zigbee" in runtime.driver_health, "the driver started")
            health = runtime.driver_health["zigbee"]
            await until(lambda: health.details.get("matched") == "2", "the device list read")
            await motion_until_counted("before the outage")
            await asyncio.to_thread(mosquitto.kill)
            await until(lambda: health.restarts >= 2, "a restart found no broker")
            assert health.last_error is not None
            assert "cannot be reached (Connection refused)" in health.last_error
            await asyncio.to_thread(mosquitto.start)
            await apublish(mosquitto, ("bridge/devices", PENDANT, True))  # not persisted
            await until(lambda: health.details.get("matched") == "2", "the device list again")
            await motion_until_counted("after the outage")
            assert health.details["broker"].endswith("connected")
        finally:
            runtime.request_stop()
            await task

    with caplog.at_level(logging.WARNING, logger="agent.runtime"):
        asyncio.run(main())
    assert "hall-motion" in runtime.health.last_seen
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent.runtime"]
    assert any("broker 127.0.0.1" in m and "was lost" in m for m in warnings)
