"""The BTHome driver: published BTHome v2 frames through bthome-ble, and the driver with the
Bluetooth adapter replaced at the bleak boundary (``scanner.make_scanner``) by an injector
that hands ``(BLEDevice, AdvertisementData)`` to the same callback bleak would call.

Vectors are facts from the BTHome format (bthome.io/format, bthome.io/encryption) and from
bthome-ble's own tests: the encrypted example (key 231d39c1..., address 54:48:E6:8F:80:A5)
and a real thermometer's frame from the library maintainer's worked example.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from agent.clock import LiveClock
from agent.config import validate_config
from agent.errors import ConfigError, TransientError
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap
from agent.messages import AlertMessage, AlertState, Severity
from agent.runtime import Runtime
from drivers.base import DriverContext, DriverHealth
from drivers.bthome import driver as driver_module
from drivers.bthome import scanner
from drivers.bthome.config import BTHomeConfig
from drivers.bthome.decode import SERVICE_UUID, DeviceDecoder, Status, decode
from drivers.bthome.driver import BTHomeDriver, ScannerStalled
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(60)

TZ = ZoneInfo("Europe/Amsterdam")
PENDANT = "A4:C1:38:8D:18:B2"  # a help button worn by the person
HALL = "A4:C1:38:11:22:33"  # a motion sensor
DOOR = "A4:C1:38:44:55:66"  # a door/window sensor
THERMO = "54:48:E6:8F:80:A5"  # the address of bthome.io's encryption example
STRANGER = "7C:C6:B6:00:00:01"  # the neighbour's
KEY = "231d39c1d7cc1ab1aee224cd096db932"  # bthome.io's example key
WRONG_KEY = "231d39c1d7cc1ab1aee224cd096db933"

# bthome.io/encryption: temperature 25.06 °C and humidity 50.55 %, encrypted with KEY
# (device info 0x41, ciphertext, counter 00112233, MIC 78237214).
ENCRYPTED_EXAMPLE = bytes.fromhex("41a47266c95f730011223378237214")
# A real thermometer (bthome-ble issue 118, decoded there by the maintainer): packet id 63,
# battery 94 %, 21.78 °C, 60.60 %, 2.947 V.
THERMOMETER = bytes.fromhex("40003f015e02820803ac170c830b")


def frame(*objects: str, trigger: bool = True) -> bytes:
    """Unencrypted BTHome v2 service data: device info byte, then objects as hex."""
    return bytes([0x44 if trigger else 0x40]) + bytes.fromhex("".join(objects))


def encrypt(payload: bytes, key: str, address: str, counter: int) -> bytes:
    """An encrypted frame as bthome.io/encryption builds it (AES-CCM, 4-byte MIC).

    Nonce: address (6) + UUID 0xFCD2 little-endian (2) + device info (1) + counter (4).
    """
    info = 0x41
    count = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(address.replace(":", "")) + b"\xd2\xfc" + bytes([info]) + count
    sealed = AESCCM(bytes.fromhex(key), tag_length=4).encrypt(nonce, payload, None)
    return bytes([info]) + sealed[:-4] + count + sealed[-4:]


# ---- decoding: one frame on its own -----------------------------------------------------


def test_a_real_thermometer_frame() -> None:
    got = decode(THERMOMETER, "A4:C1:38:8D:18:B2")
    assert got.status is Status.OK and got.packet_id == 63
    assert got.kinds == {
        EventKind.BATTERY: 94.0,
        EventKind.TEMPERATURE: 21.78,
        EventKind.HUMIDITY: 60.6,
    }  # the voltage is not a kind of the hub's


def test_the_format_pages_object_examples() -> None:
    # bthome.io/format: 0161 battery 97 %, 02CA09 25.06 °C, 03BF13 50.55 %
    got = decode(frame("0161", "02ca09", "03bf13", trigger=False), PENDANT)
    assert got.kinds == {
        EventKind.BATTERY: 97.0,
        EventKind.TEMPERATURE: 25.06,
        EventKind.HUMIDITY: 50.55,
    }
    assert got.packet_id is None


@pytest.mark.parametrize(
    ("objects", "kind", "value"),
    [
        ("2101", EventKind.MOTION, 1.0),  # 0x21 motion: detected
        ("2100", EventKind.MOTION, 0.0),  # clear
        ("1101", EventKind.CONTACT, 1.0),  # 0x11 opening: 1 = open, as the hub's contact
        ("1100", EventKind.CONTACT, 0.0),  # 0 = closed
        ("1a01", EventKind.CONTACT, 1.0),  # 0x1A door: open
        ("2d00", EventKind.CONTACT, 0.0),  # 0x2D window: closed
        ("2301", EventKind.PRESENCE, 1.0),  # 0x23 occupancy: detected
        ("2c01", EventKind.VIBRATION, 1.0),  # 0x2C vibration
        ("2001", EventKind.WATER_LEAK, 1.0),  # 0x20 moisture: wet
        ("2901", EventKind.SMOKE, 1.0),  # 0x29 smoke
        ("1501", EventKind.BATTERY_LOW, 1.0),  # 0x15 battery: low
        ("3a01", EventKind.BUTTON, 1.0),  # 0x3A button: press
        ("3a02", EventKind.BUTTON, 1.0),  # double press: still a press
        ("3a03", EventKind.BUTTON, 1.0),  # triple press
        ("3a04", EventKind.BUTTON, 2.0),  # long press
        ("3a80", EventKind.BUTTON, 2.0),  # hold
        ("0564c300", EventKind.ILLUMINANCE, 500.2),  # 0x05 illuminance, 0.01 lux
    ],
)
def test_objects_become_the_hubs_kinds(objects: str, kind: EventKind, value: float) -> None:
    got = decode(frame("0009", objects), DOOR)
    assert got.status is Status.OK and got.packet_id == 9
    assert got.kinds == {kind: value}


def test_a_button_frame_without_an_event_is_no_press() -> None:
    # 0x3A 0x00: "none", what a Shelly button beacons between presses
    got = decode(frame("000a", "0164", "3a00"), PENDANT)
    assert got.status is Status.OK and got.kinds == {EventKind.BATTERY: 100.0}


def test_the_encryption_example_with_its_key() -> None:
    got = decode(ENCRYPTED_EXAMPLE, THERMO, bytes.fromhex(KEY))
    assert got.status is Status.OK
    assert got.kinds == {EventKind.TEMPERATURE: 25.06, EventKind.HUMIDITY: 50.55}


def test_the_encryption_example_with_a_wrong_key_or_none() -> None:
    assert decode(ENCRYPTED_EXAMPLE, THERMO, bytes.fromhex(WRONG_KEY)).status is Status.BAD_KEY
    assert decode(ENCRYPTED_EXAMPLE, THERMO, None).status is Status.NO_KEY
    # the right key from another address: the nonce differs, so does the verdict
    assert decode(ENCRYPTED_EXAMPLE, PENDANT, bytes.fromhex(KEY)).status is Status.BAD_KEY


def test_the_test_encryptor_reproduces_the_published_example() -> None:
    payload = bytes.fromhex("02ca0903bf13")  # 25.06 °C, 50.55 %
    assert encrypt(payload, KEY, THERMO, 0x33221100) == ENCRYPTED_EXAMPLE


def test_an_unencrypted_frame_from_a_device_with_a_key_is_refused() -> None:
    assert decode(frame("0001", "3a01"), PENDANT, bytes.fromhex(KEY)).status is Status.PLAINTEXT


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing at all
        bytes.fromhex("e1020c04"),  # version bits 7 (bthome-ble's "non-existing version")
        bytes.fromhex("20020c04"),  # version 1 in a v2 frame
        bytes.fromhex("4002ca"),  # temperature cut short
        bytes.fromhex("40ff01"),  # an object id that does not exist
        bytes.fromhex("40"),  # device info and nothing else
        bytes.fromhex("41a4726600"),  # "encrypted", too short for counter and MIC
    ],
)
def test_malformed_frames(data: bytes) -> None:
    got = decode(data, PENDANT)
    assert got.status is Status.MALFORMED and got.readings == () and got.reason


# ---- decoding: one device's frames in order -----------------------------------------------


def test_repeats_of_one_packet_id_are_dropped_and_a_new_one_is_not() -> None:
    dev = DeviceDecoder(PENDANT)
    press5 = frame("0005", "0164", "3a01")
    assert dev.feed(press5, 100.0).kinds == {EventKind.BATTERY: 100.0, EventKind.BUTTON: 1.0}
    # the device sends each advertisement several times; BlueZ repeats it with each RSSI
    assert dev.feed(press5, 100.1).status is Status.REPEAT
    assert dev.feed(press5, 900.0).status is Status.REPEAT
    # the same packet id with other bytes is still the same packet (within 4 s: the
    # library's check; later: ours, as the format asks)
    assert dev.feed(frame("0005", "0163", "3a01"), 900.2).status is Status.REPEAT
    assert dev.feed(frame("0005", "0162", "3a01"), 950.0).status is Status.REPEAT
    press6 = dev.feed(frame("0006", "0164", "3a01"), 950.5)
    assert press6.status is Status.OK and press6.packet_id == 6
    assert press6.kinds[EventKind.BUTTON] == 1.0
    # an older packet id right after: a late copy, dropped
    assert dev.feed(frame("0004", "0164", "3a04"), 950.6).status is Status.REPEAT


def test_a_frame_without_packet_id_handed_again_is_a_repeat() -> None:
    # BlueZ passes the cached service data again with every new RSSI, even minutes later
    dev = DeviceDecoder(PENDANT)
    assert dev.feed(frame("3a01"), 10.0).kinds == {EventKind.BUTTON: 1.0}
    assert dev.feed(frame("3a01"), 10.1).status is Status.REPEAT
    assert dev.feed(frame("3a01"), 300.0).status is Status.REPEAT
    assert dev.feed(frame("3a00"), 301.0).status is Status.OK  # released
    assert dev.feed(frame("3a01"), 302.0).kinds == {EventKind.BUTTON: 1.0}  # pressed again


def test_packet_ids_roll_over() -> None:
    dev = DeviceDecoder(PENDANT)
    assert dev.feed(frame("00ff", "3a01"), 10.0).status is Status.OK
    assert dev.feed(frame("0000", "3a01"), 10.5).status is Status.OK


def test_encrypted_repeats_and_a_replayed_old_frame_are_dropped() -> None:
    dev = DeviceDecoder(THERMO, bytes.fromhex(KEY))
    first = encrypt(bytes.fromhex("0007" + "3a01"), KEY, THERMO, 1000)
    later = encrypt(bytes.fromhex("0008" + "3a04"), KEY, THERMO, 1001)
    assert dev.feed(first, 10.0).kinds == {EventKind.BUTTON: 1.0}
    assert dev.feed(first, 10.2).status is Status.REPEAT
    assert dev.feed(later, 60.0).kinds == {EventKind.BUTTON: 2.0}
    # someone replays the first press a minute later: its counter went back
    assert dev.feed(first, 120.0).status is Status.REPEAT


# ---- configuration ----------------------------------------------------------------------


def test_the_configuration_keeps_keys_secret() -> None:
    cfg = BTHomeConfig.model_validate(
        {"type": "bthome", "adapter": "hci0", "keys": {THERMO.lower(): KEY.upper()}}
    )
    assert cfg.key_for(THERMO) == bytes.fromhex(KEY)
    assert cfg.key_for(PENDANT) is None
    assert KEY not in repr(cfg) and KEY not in cfg.model_dump_json()
    assert cfg.stall_after == 300.0 and cfg.scanning_mode == "auto"
    mistyped = KEY[:-1] + "g"
    with pytest.raises(ConfigError) as err:
        validate_config(
            {
                "hub": {"id": "h-1"},
                "drivers": [
                    {
                        "type": "bthome",
                        "adapter": "bluetooth0",
                        "scanning_mode": "loud",
                        "keys": {"A4:C1:38": KEY, PENDANT: mistyped},
                    }
                ],
            }
        )
    text = str(err.value)
    assert "drivers[0].adapter" in text and "drivers[0].scanning_mode" in text
    assert "not a Bluetooth address" in text
    assert mistyped not in text and KEY not in text


def test_the_configuration_loads_no_bluetooth_library() -> None:
    code = (
        "import sys; from agent.config import validate_config; "
        "validate_config({'hub': {'id': 'h-1'}, 'drivers': [{'type': 'bthome'}]}); "
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "('bleak', 'bthome_ble', 'habluetooth', 'dbus_fast')]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)


# ---- the driver, with the adapter replaced at the bleak boundary -------------------------


class FakeScanner:
    """Stands where bleak's ``BleakScanner`` stands: started, stopped, calling back."""

    def __init__(
        self, air: FakeAir, callback: scanner.AdvertisementCallback, mode: str, adapter: str | None
    ) -> None:
        self.air = air
        self.callback = callback
        self.mode = mode
        self.adapter = adapter
        self.running = False

    async def start(self) -> None:
        if self.air.failures:
            raise self.air.failures.pop(0)
        self.running = True

    async def stop(self) -> None:
        self.running = False


class FakeAir:
    """The radio around the hub: each scanner the driver makes, and what devices send."""

    def __init__(self) -> None:
        self.scanners: list[FakeScanner] = []
        self.failures: list[BaseException] = []  # raised by the next starts, in order

    def make(
        self, callback: scanner.AdvertisementCallback, mode: scanner.ScanMode, adapter: str | None
    ) -> FakeScanner:
        made = FakeScanner(self, callback, mode, adapter)
        self.scanners.append(made)
        return made

    @property
    def listening(self) -> bool:
        return any(s.running for s in self.scanners)

    def send(
        self, address: str, data: bytes | None, rssi: int = -60, uuid: str = SERVICE_UUID
    ) -> None:
        """One advertisement; ``data`` None: a device that sends no BTHome data."""
        live = [s for s in self.scanners if s.running]
        assert live, "no scanner is running"
        service_data = {} if data is None else {uuid: data}
        path = f"/org/bluez/hci0/dev_{address.replace(':', '_')}"
        device = BLEDevice(address, None, {"path": path, "props": {}})
        adv = AdvertisementData(
            local_name=None,
            manufacturer_data={},
            service_data=service_data,
            service_uuids=list(service_data),
            tx_power=None,
            rssi=rssi,
            platform_data=(path, {}),
        )
        for s in live:
            s.callback(device, adv)


@pytest.fixture
def air(monkeypatch: pytest.MonkeyPatch) -> FakeAir:
    fake = FakeAir()
    monkeypatch.setattr(scanner, "make_scanner", fake.make)
    return fake


HOME = HomeMap.model_validate(
    {
        "sensors": {
            "pendant": {"room": "Living", "role": "wearable", "device": PENDANT},
            "hall": {"room": "Hall", "role": "hallway", "kind": "motion", "device": HALL},
            "front-door": {"room": "Hall", "role": "front_door", "device": DOOR.lower()},
            "living-temp": {"room": "Living", "role": "living", "device": THERMO},
            "kitchen-pir": {"room": "Kitchen", "role": "kitchen"},  # a Zigbee one
        }
    }
)


class Rig:
    """One driver with its context; what it emitted and signalled."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.events: list[SensorEvent] = []
        self.signals: list[tuple[str, float, str]] = []
        self.health = DriverHealth(name="bthome-0")
        ctx = DriverContext(
            clock=LiveClock(TZ, synced=True),
            emit=self.events.append,
            home=HOME,
            health=self.health,
            log=logging.getLogger("drivers.bthome-0"),
            signal=lambda s, v, u: self.signals.append((s, v, u)),
        )
        self.driver = BTHomeDriver(BTHomeConfig.model_validate({"type": "bthome", **cfg}), ctx)

    def got(self, sensor: str | None = None) -> list[tuple[str, EventKind, float]]:
        return [(e.sensor, e.kind, e.value) for e in self.events if sensor in (None, e.sensor)]


async def until(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Wait for ``check()`` to hold; every wait ends on the condition, never on a sleep."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def running(rig: Rig, air: FakeAir) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(rig.driver.run())
    await until(lambda: air.listening or task.done(), "the scanner to start")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await rig.driver.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_button_presses_once_each_and_repeats_dropped(air: FakeAir) -> None:
    rig = Rig({"adapter": "hci0"})

    async def scenario() -> None:
        async with running(rig, air):
            press = frame("0005", "0164", "3a01")
            for _ in range(4):  # one press, sent four times
                air.send(PENDANT, press)
            air.send(PENDANT, frame("0005", "0163", "3a01"))  # same packet id
            air.send(PENDANT, frame("0006", "0164", "3a04"))  # the next: a long press
            air.send(PENDANT, frame("0006", "0164", "3a04"))

    run(scenario())
    assert rig.got() == [
        ("pendant", EventKind.BATTERY, 100.0),
        ("pendant", EventKind.BUTTON, 1.0),
        ("pendant", EventKind.BUTTON, 2.0),
    ]
    assert rig.health.details["repeats"] == "5" and rig.health.malformed_count == 0
    assert rig.health.details["scanner"] == "passive on hci0"
    assert air.scanners[0].adapter == "hci0" and not air.scanners[0].running  # closed


def test_states_on_change_measurements_on_change_motion_again_later(
    air: FakeAir, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig({})

    async def scenario() -> None:
        async with running(rig, air):
            air.send(DOOR, frame("0001", "1101"))  # opened
            air.send(DOOR, frame("0002", "1101"))  # still open (a beacon)
            air.send(DOOR, frame("0003", "1100"))  # closed
            air.send(THERMO, THERMOMETER)
            air.send(THERMO, bytes.fromhex("400040015e02820803ac170c830b"))  # all the same
            air.send(THERMO, bytes.fromhex("400041015e02840803ac170c830b"))  # 21.80 °C
            air.send(HALL, frame("0001", "2101"))
            air.send(HALL, frame("0002", "2101"))  # still moving, within a minute: no event
            monkeypatch.setattr(driver_module, "REASSERT_EVERY", 0.0)
            air.send(HALL, frame("0003", "2101"))  # still moving, a minute later: again
            air.send(HALL, frame("0004", "2100"))
            air.send(DOOR, frame("0005", "1100"))  # still closed: never again

    run(scenario())
    assert rig.got("front-door") == [
        ("front-door", EventKind.CONTACT, 1.0),
        ("front-door", EventKind.CONTACT, 0.0),
    ]
    assert [(k, v) for _, k, v in rig.got("living-temp")] == [
        (EventKind.BATTERY, 94.0),
        (EventKind.TEMPERATURE, 21.78),
        (EventKind.HUMIDITY, 60.6),
        (EventKind.TEMPERATURE, 21.8),
    ]
    assert [v for _, _, v in rig.got("hall")] == [1.0, 1.0, 0.0]
    assert rig.health.events == len(rig.events)
    assert all(e.wall > 1.7e9 and e.mono > 0 for e in rig.events)


def test_an_encrypted_device_with_its_key(air: FakeAir) -> None:
    rig = Rig({"keys": {THERMO: KEY}})

    async def scenario() -> None:
        async with running(rig, air):
            air.send(THERMO, ENCRYPTED_EXAMPLE)
            air.send(THERMO, ENCRYPTED_EXAMPLE)

    run(scenario())
    assert rig.got() == [
        ("living-temp", EventKind.TEMPERATURE, 25.06),
        ("living-temp", EventKind.HUMIDITY, 50.55),
    ]
    assert rig.health.malformed_count == 0


def test_a_wrong_key_is_counted_and_named_once(
    air: FakeAir, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig({"keys": {THERMO: WRONG_KEY}})

    async def scenario() -> None:
        async with running(rig, air):
            air.send(THERMO, ENCRYPTED_EXAMPLE)
            air.send(THERMO, encrypt(bytes.fromhex("02cb09"), KEY, THERMO, 0x33221101))

    with caplog.at_level(logging.DEBUG):
        run(scenario())
    assert rig.events == []
    assert rig.health.malformed_count == 2
    ours = [r for r in caplog.records if r.name == "drivers.bthome-0"]
    warnings = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert THERMO in warnings[0] and "wrong or missing key" in warnings[0]
    assert rig.health.details["undecryptable"] == "1"
    # the key is a secret: in no log line of any logger, at any level
    assert all(
        KEY not in r.getMessage() and WRONG_KEY not in r.getMessage() for r in caplog.records
    )


def test_an_encrypted_device_without_a_key(air: FakeAir, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig({})

    async def scenario() -> None:
        async with running(rig, air):
            air.send(THERMO, ENCRYPTED_EXAMPLE)

    with caplog.at_level(logging.INFO, logger="drivers.bthome-0"):
        run(scenario())
    assert rig.events == [] and rig.health.malformed_count == 1
    assert any("wrong or missing key" in m and THERMO in m for m in caplog.messages)


def test_strangers_are_ignored_counted_and_named_once(
    air: FakeAir, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig({})

    async def scenario() -> None:
        async with running(rig, air):
            for pid in ("0001", "0002", "0003"):
                air.send(STRANGER, frame(pid, "3a01"))
            air.send(STRANGER.lower(), frame("0004", "3a01"))

    with caplog.at_level(logging.INFO, logger="drivers.bthome-0"):
        run(scenario())
    assert rig.events == [] and rig.signals == []
    named = [m for m in caplog.messages if STRANGER in m]
    assert len(named) == 1 and "not in the home map" in named[0]
    assert rig.health.details["strangers"] == "1"


def test_malformed_data_is_counted_and_other_devices_only_show_life(air: FakeAir) -> None:
    rig = Rig({})

    async def scenario() -> None:
        async with running(rig, air):
            before = rig.health.last_alive
            await asyncio.sleep(0.01)
            air.send(HALL, None)  # a phone, a TV: no BTHome data
            assert rig.health.last_alive > before
            air.send(HALL, bytes.fromhex("4002ca"))  # cut short
            air.send(HALL, bytes.fromhex("e1020c04"))  # not v2
            air.send(HALL, b"")
            air.send(HALL, frame("0007", "2101"))  # and then a good one

    run(scenario())
    assert rig.health.malformed_count == 3
    assert rig.got() == [("hall", EventKind.MOTION, 1.0)]


def test_signal_strength_goes_to_hub_check_rate_limited(air: FakeAir) -> None:
    rig = Rig({})

    async def scenario() -> None:
        async with running(rig, air):
            air.send(HALL, frame("0001", "2101"), rssi=-71)
            air.send(HALL, frame("0002", "2100"), rssi=-65)
            air.send(DOOR, frame("0001", "1100"), rssi=-80)

    run(scenario())
    assert rig.signals == [("hall", -71.0, "dBm"), ("front-door", -80.0, "dBm")]
    assert all(e.kind is not EventKind.LINK_QUALITY for e in rig.events)


def test_the_driver_names_its_sensors(air: FakeAir) -> None:
    assert Rig({}).driver.sensors() == ["front-door", "hall", "living-temp", "pendant"]


# ---- the driver when Bluetooth is not there ---------------------------------------------

BLUEZ_GONE = BleakDBusError(
    "org.freedesktop.DBus.Error.ServiceUnknown",
    ["The name org.bluez was not provided by any .service files"],
)


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        (BleakError("adapter 'hci0' not found"), "adapter 'hci0' not found"),
        (
            BleakBluetoothNotAvailableError(
                "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
            ),
            "no usable Bluetooth adapter: No Bluetooth adapters found.",
        ),
        (BLUEZ_GONE, "BlueZ (bluetoothd) is not running"),
        (FileNotFoundError(2, "No such file or directory"), "no D-Bus system bus"),
        (PermissionError(13, "Permission denied"), "not allowed to use Bluetooth"),
    ],
)
def test_bluetooth_missing_is_transient_and_health_says_why(
    air: FakeAir, failure: BaseException, says: str
) -> None:
    rig = Rig({"adapter": "hci0", "scanning_mode": "active"})
    air.failures = [failure]
    with pytest.raises(TransientError) as err:
        run(rig.driver.run())
    assert says in str(err.value) and "hci0" in str(err.value)
    assert rig.health.details["scanner"].startswith("unavailable:")
    assert says in rig.health.details["scanner"]
    assert [s.mode for s in air.scanners] == ["active"]


def test_auto_falls_back_to_active_scanning(air: FakeAir, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig({"scanning_mode": "auto"})
    air.failures = [
        BleakError(
            "passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled "
            "and Linux kernel >= 5.10"
        )
    ]

    async def scenario() -> None:
        async with running(rig, air):
            air.send(PENDANT, frame("0001", "3a01"))

    with caplog.at_level(logging.INFO, logger="drivers.bthome-0"):
        run(scenario())
    assert [s.mode for s in air.scanners] == ["passive", "active"]
    assert rig.health.details["scanner"] == "active on the default adapter"
    assert any("passive scanning unavailable" in m for m in caplog.messages)
    assert rig.got() == [("pendant", EventKind.BUTTON, 1.0)]


def test_passive_only_does_not_fall_back(air: FakeAir) -> None:
    rig = Rig({"scanning_mode": "passive"})
    air.failures = [BleakError("passive scanning on Linux requires BlueZ >= 5.56")]
    with pytest.raises(TransientError, match=r"passive scanning .* failed"):
        run(rig.driver.run())
    assert [s.mode for s in air.scanners] == ["passive"]


def test_a_silent_scanner_is_taken_to_hang(air: FakeAir) -> None:
    rig = Rig({"stall_after": 0.15})

    async def scenario() -> None:
        task = asyncio.create_task(rig.driver.run())
        await until(lambda: air.listening, "the scanner to start")
        with pytest.raises(ScannerStalled, match="no Bluetooth advertisement"):
            await asyncio.wait_for(task, 10)
        await rig.driver.close()

    run(scenario())
    assert rig.health.details["scanner"].startswith("stalled: nothing heard")
    assert isinstance(ScannerStalled("x"), TransientError)
    assert not air.scanners[0].running


# ---- real bleak against a real D-Bus, with no Bluetooth behind it -------------------------


def test_real_bleak_without_a_system_bus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    rig = Rig({"adapter": "hci0"})
    with pytest.raises(TransientError, match="no D-Bus system bus"):
        run(rig.driver.run())
    assert "no D-Bus system bus" in rig.health.details["scanner"]


@pytest.fixture
def private_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private dbus-daemon standing in for the system bus: no BlueZ on it."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("dbus-daemon is not installed (Debian package dbus-daemon)")
    with tempfile.TemporaryDirectory(prefix="bus") as tmp:  # short: a socket path
        sock = Path(tmp) / "bus"
        conf = Path(tmp) / "bus.conf"
        conf.write_text(
            '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" '
            '"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">'
            f"<busconfig><type>session</type><listen>unix:path={sock}</listen>"
            "<auth>EXTERNAL</auth><policy context='default'><allow send_destination='*'/>"
            "<allow receive_sender='*'/><allow own='*'/></policy></busconfig>",
            encoding="utf-8",
        )
        proc = subprocess.Popen(
            [daemon, f"--config-file={conf}", "--nofork", "--print-address"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            address = proc.stdout.readline().decode().strip()  # printed once it listens
            assert address.startswith("unix:"), address
            monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
            yield address
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


async def _serve_bluez_without_adapters(address: str) -> Any:
    """Owns org.bluez and answers GetManagedObjects with nothing: BlueZ, no adapter."""
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=address).connect()

    def handler(msg: Message) -> Message | None:
        if msg.message_type is MessageType.METHOD_CALL and msg.member == "GetManagedObjects":
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [{}])
        if msg.message_type is MessageType.METHOD_CALL:
            return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "no")
        return None

    bus.add_message_handler(handler)
    await bus.request_name("org.bluez")
    return bus


def test_real_bleak_when_bluez_is_not_running(private_bus: str) -> None:
    rig = Rig({"adapter": "hci0"})
    with pytest.raises(TransientError, match=r"BlueZ \(bluetoothd\) is not running"):
        run(rig.driver.run())
    assert "not running" in rig.health.details["scanner"]


def test_real_bleak_when_the_adapter_is_missing(private_bus: str) -> None:
    async def scenario(adapter: str | None) -> str:
        bluez = await _serve_bluez_without_adapters(private_bus)
        try:
            rig = Rig({"adapter": adapter} if adapter else {})
            with pytest.raises(TransientError) as err:
                await rig.driver.run()
            assert rig.health.details["scanner"].startswith("unavailable:")
            return str(err.value)
        finally:
            bluez.disconnect()

    assert "adapter 'hci1' not found" in run(scenario("hci1"))
    assert "No Bluetooth adapters found" in run(scenario(None))


# ---- through the whole agent ------------------------------------------------------------


def hub(extra_home: dict[str, Any] | None = None, **driver: Any) -> Any:
    return validate_config(
        {
            "hub": {"id": "h-bt"},
            "uplink": {"type": "memory"},
            "home": {
                "sensors": {
                    "pendant": {"room": "Living", "role": "wearable", "device": PENDANT},
                    "hall": {"room": "Hall", "role": "hallway", "device": HALL},
                    **(extra_home or {}),
                }
            },
            "drivers": [{"type": "bthome", "adapter": "hci0", **driver}],
        }
    )


def test_a_pendant_press_raises_an_urgent_alert_and_motion_reaches_the_engine(
    air: FakeAir,
) -> None:
    alerts: list[AlertMessage] = []
    runtime = Runtime(hub(), clock=LiveClock(TZ, synced=True), alert_hook=alerts.append)

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        try:
            await until(lambda: air.listening, "the driver to scan")
            air.send(HALL, frame("0011", "0164", "2101"))
            air.send(HALL, frame("0011", "0164", "2101"))  # its repeat
            await until(lambda: "hall" in runtime.health.last_seen, "motion at the engine")
            press = frame("0022", "0163", "3a01")
            for _ in range(3):
                air.send(PENDANT, press)
            await until(lambda: alerts, "the help-button alert")
            air.send(STRANGER, frame("0001", "3a01"))
        finally:
            runtime.request_stop()
            await task

    run(scenario())
    [alert] = alerts
    assert alert.kind == "help_button" and alert.severity is Severity.URGENT
    assert alert.state is AlertState.RAISED and alert.room == "Living"
    assert runtime.stats.alerts == {"help_button:raised": 1}
    # hall: motion, battery; pendant: battery, button; the stranger never reached the engine
    assert runtime.stats.events == 4 and not runtime.stats.unknown_sensors
    health = runtime.driver_health["bthome-0"]
    assert health.restarts == 0 and health.details["repeats"] == "3"


def test_the_agent_keeps_running_until_the_adapter_appears(
    air: FakeAir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.runtime.DRIVER_BACKOFF_MIN", 0.01)
    alerts: list[AlertMessage] = []
    runtime = Runtime(
        hub(scanning_mode="active"), clock=LiveClock(TZ, synced=True), alert_hook=alerts.append
    )
    # the dongle is not plugged in yet, then BlueZ is restarting, then it works
    air.failures = [BleakError("adapter 'hci0' not found"), BLUEZ_GONE]

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        try:
            await until(lambda: air.listening, "the driver to scan at last")
            air.send(PENDANT, frame("0001", "3a04"))
            await until(lambda: alerts, "the help-button alert")
        finally:
            runtime.request_stop()
            await task

    run(scenario())
    health = runtime.driver_health["bthome-0"]
    assert health.restarts == 2 and len(air.scanners) == 3
    assert (
        health.last_error is not None and "BlueZ (bluetoothd) is not running" in health.last_error
    )
    assert health.details["scanner"] == "active on hci0"
    assert alerts[0].kind == "help_button" and "long-pressed" in alerts[0].summary
