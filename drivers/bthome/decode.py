"""BTHome v2 service data -> readings in the hub's kinds, through the bthome-ble library.

The library does the protocol (object table, factors, AES-CCM decryption, packet ids,
replay protection); this module only adds the table from the library's keys to
``EventKind`` and tells apart what a receiver must do with an advertisement:

- ``decode()``: one advertisement on its own, without history. Pure: the tests feed it
  the published example bytes.
- ``DeviceDecoder``: one device's advertisements in order, with one library parser kept
  for the device (as Home Assistant keeps one), so that its packet-id and encryption
  counter checks work. A device sends each advertisement several times and BlueZ hands
  the last one again whenever only its signal strength changed: those come back as
  ``Status.REPEAT`` and must be dropped.

Only the first byte of the service data is read here (version and encryption flags),
to tell a frame that is not BTHome v2 from one whose key is wrong.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from habluetooth import BluetoothServiceInfoBleak
from sensor_state_data import BinarySensorDeviceClass, SensorDeviceClass, Units

from agent.events import EventKind

SERVICE_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"

_ENCRYPTED = 0x01  # bit 0 of the first byte ("device information")
_MAC_INCLUDED = 0x02  # bit 1: the device's address follows, 6 bytes
_COUNTER_AND_MIC = 8  # an encrypted frame ends with a 4-byte counter and a 4-byte MIC

#: binary sensors of the library (BTHome objects 0x0F-0x2D) that the hub uses
BINARY_KINDS: dict[str, EventKind] = {
    "motion": EventKind.MOTION,  # 0x21: 1 motion detected
    "occupancy": EventKind.PRESENCE,  # 0x23: 1 detected
    "presence": EventKind.PRESENCE,  # 0x25: 1 home
    "moving": EventKind.VIBRATION,  # 0x22: 1 the thing it is fixed to moves
    "vibration": EventKind.VIBRATION,  # 0x2C
    "opening": EventKind.CONTACT,  # 0x11: 1 open, as the hub's contact
    "door": EventKind.CONTACT,  # 0x1A: 1 open
    "window": EventKind.CONTACT,  # 0x2D: 1 open
    "garage_door": EventKind.CONTACT,  # 0x1B: 1 open
    "moisture": EventKind.WATER_LEAK,  # 0x20: 1 wet
    "smoke": EventKind.SMOKE,  # 0x29: 1 smoke
    "tamper": EventKind.TAMPER,  # 0x2B: 1 tampered
    "battery": EventKind.BATTERY_LOW,  # 0x15: 1 low
}

#: measurements of the library that the hub uses, in the hub's units already
SENSOR_KINDS: dict[str, EventKind] = {
    "temperature": EventKind.TEMPERATURE,  # degrees Celsius
    "humidity": EventKind.HUMIDITY,  # percent
    "battery": EventKind.BATTERY,  # percent
    "illuminance": EventKind.ILLUMINANCE,  # lux
}

#: button events (BTHome object 0x3A) -> the hub's button value (1 press, 2 long press)
BUTTON_VALUES: dict[str, float] = {
    "press": 1.0,
    "double_press": 1.0,
    "triple_press": 1.0,
    "long_press": 2.0,
    "long_double_press": 2.0,
    "long_triple_press": 2.0,
    "hold_press": 2.0,
}

_PACKET_ID = str(SensorDeviceClass.PACKET_ID)  # "packet_id"
_SIGNAL = str(SensorDeviceClass.SIGNAL_STRENGTH)  # the library adds the RSSI to every update
_NUMBERED = re.compile(r"^(.+?)_([0-9]+)$")  # "temperature_2": a device's second thermometer


class Status(StrEnum):
    OK = "ok"  # new data (possibly none the hub uses)
    REPEAT = "repeat"  # an advertisement already handled, or an older one: drop
    MALFORMED = "malformed"  # not BTHome v2, or no object could be read
    NO_KEY = "no_key"  # encrypted, and no key is configured for the device
    BAD_KEY = "bad_key"  # encrypted, and the configured key does not decrypt it
    PLAINTEXT = "plaintext"  # unencrypted, although a key is configured: refused


_KEY_TROUBLE = frozenset({Status.NO_KEY, Status.BAD_KEY, Status.PLAINTEXT})


@dataclass(frozen=True, slots=True)
class Reading:
    kind: EventKind
    value: float
    key: str  # the library's name, e.g. "window", "button_2"


@dataclass(frozen=True, slots=True)
class Decoded:
    status: Status
    readings: tuple[Reading, ...] = ()
    packet_id: int | None = None
    reason: str = ""  # why a frame is malformed or refused, for a log line

    @property
    def kinds(self) -> dict[EventKind, float]:
        """kind -> value of the readings (the first one of each kind)."""
        out: dict[EventKind, float] = {}
        for r in self.readings:
            out.setdefault(r.kind, r.value)
        return out


class _Parser(BTHomeBluetoothDeviceData):
    """The library's parser, noting which values this very advertisement produced.

    The library's update keeps every value it ever saw; a receiver that emits events
    needs only the new ones (events, such as a button press, are fresh by design).
    """

    def __init__(self, bindkey: bytes | None) -> None:
        self.fresh_values: list[tuple[str, Any]] = []
        self.fresh_binary: list[tuple[str, bool | None]] = []
        super().__init__(bindkey=bindkey)

    def update_sensor(
        self,
        key: str,
        native_unit_of_measurement: Units | None,
        native_value: Any,
        device_class: SensorDeviceClass | None = None,
        name: str | None = None,
        device_id: str | None = None,
    ) -> None:
        if key != _SIGNAL:
            self.fresh_values.append((key, native_value))
        super().update_sensor(
            key, native_unit_of_measurement, native_value, device_class, name, device_id
        )

    def update_binary_sensor(
        self,
        key: str,
        native_value: bool | None,
        device_class: BinarySensorDeviceClass | None = None,
        name: str | None = None,
        device_id: str | None = None,
    ) -> None:
        self.fresh_binary.append((key, native_value))
        super().update_binary_sensor(key, native_value, device_class, name, device_id)


def _service_info(address: str, data: bytes, at: float) -> BluetoothServiceInfoBleak:
    return BluetoothServiceInfoBleak(
        name=address,
        address=address,
        rssi=-127,  # the driver reports the signal itself
        manufacturer_data={},
        service_data={SERVICE_UUID: data},
        service_uuids=[SERVICE_UUID],
        source="local",
        device=BLEDevice(address, None, None),
        advertisement=None,
        connectable=False,
        time=at,
        tx_power=None,
    )


def _framing(data: bytes) -> str | None:
    """What makes ``data`` unusable before any object is read; None when it may be fine."""
    if not data:
        return "empty service data"
    version = data[0] >> 5
    if version != 2:
        return f"not BTHome v2 (version bits {version})"
    body = len(data) - 1 - (6 if data[0] & _MAC_INCLUDED else 0)
    if data[0] & _ENCRYPTED:
        if body < _COUNTER_AND_MIC + 1:
            return f"encrypted frame too short ({len(data)} bytes)"
    elif body < 1:
        return "no objects"
    return None


def _base(key: str) -> tuple[str, int]:
    """``"button_2"`` -> ``("button", 2)``; ``"window"`` -> ``("window", 1)``."""
    match = _NUMBERED.match(key)
    if match is None:
        return key, 1
    return match.group(1), int(match.group(2))


def _readings(parser: _Parser, events: dict[Any, Any]) -> tuple[Reading, ...]:
    out: list[Reading] = []
    for key, value in parser.fresh_binary:
        base, n = _base(key)
        kind = BINARY_KINDS.get(base)
        if kind is not None and n == 1 and value is not None:
            out.append(Reading(kind, 1.0 if value else 0.0, key))
    for key, value in parser.fresh_values:
        base, n = _base(key)
        kind = SENSOR_KINDS.get(base)
        if kind is not None and n == 1 and isinstance(value, int | float):
            out.append(Reading(kind, float(value), key))
    for device_key, event in events.items():
        # every button of a device is the device's button (a help pendant has one)
        if _base(device_key.key)[0] == "button":
            pressed = BUTTON_VALUES.get(event.event_type)
            if pressed is not None:
                out.append(Reading(EventKind.BUTTON, pressed, device_key.key))
    return tuple(out)


def _packet_id(parser: _Parser) -> int | None:
    for key, value in parser.fresh_values:
        if key == _PACKET_ID and isinstance(value, int | float):
            return int(value)
    return None


def _update(parser: _Parser, address: str, data: bytes, at: float) -> tuple[Decoded, bool]:
    """Feed one frame to ``parser``; (the verdict, whether the frame gave any new value)."""
    parser.fresh_values.clear()
    parser.fresh_binary.clear()
    info = _service_info(address, data, at)
    try:
        update = parser.update(info)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error) as err:
        return Decoded(Status.MALFORMED, reason=f"unreadable ({type(err).__name__})"), False
    if parser.fresh_values or parser.fresh_binary or update.events:
        return Decoded(Status.OK, _readings(parser, update.events), _packet_id(parser)), True
    encrypted = bool(data[0] & _ENCRYPTED)
    if parser.downgrade_detected:
        return Decoded(Status.PLAINTEXT, reason="unencrypted, although a key is configured"), False
    if encrypted and parser.bindkey is None:
        return Decoded(Status.NO_KEY, reason="encrypted, and no key is configured"), False
    if encrypted and parser.decryption_failed:
        return Decoded(Status.BAD_KEY, reason="cannot decrypt: wrong key"), False
    if parser.last_service_info is info:
        return Decoded(Status.OK), False  # read, and nothing in it (a button's "none")
    return Decoded(Status.MALFORMED, reason="no object could be read"), False


def decode(data: bytes, address: str, key: bytes | None = None, at: float = 0.0) -> Decoded:
    """One advertisement's BTHome service data, on its own: the readings it carries.

    ``address`` is the sender's Bluetooth address (part of the nonce of an encrypted
    frame); ``key`` its 16-byte key, if it encrypts. Never raises for any ``data``.
    """
    return _alone(data, address, key, at)[0]


def _alone(data: bytes, address: str, key: bytes | None, at: float) -> tuple[Decoded, bool]:
    problem = _framing(data)
    if problem is not None:
        return Decoded(Status.MALFORMED, reason=problem), False
    return _update(_Parser(key), address, data, at)


class DeviceDecoder:
    """One device's advertisements, in the order they arrive."""

    def __init__(self, address: str, key: bytes | None = None) -> None:
        self.address = address
        self._key = key
        self._parser = _Parser(key)
        self._last_data: bytes | None = None
        self._last_packet: int | None = None

    def feed(self, data: bytes, at: float) -> Decoded:
        """The verdict on the next service data from this device; ``at`` in seconds (monotonic).

        A frame identical to the previous one is a repeat, whatever the time between them
        (BlueZ hands the last one again with every new signal strength); so is a new frame
        with the packet id of the last one accepted, as the BTHome format asks. The
        library drops, within 4 s, frames with an older packet id, and encrypted frames
        whose counter went back (replays).
        """
        if data == self._last_data:
            return Decoded(Status.REPEAT, reason="the same advertisement again")
        self._last_data = data
        problem = _framing(data)
        if problem is not None:
            return Decoded(Status.MALFORMED, reason=problem)
        result, produced = _update(self._parser, self.address, data, at)
        if not produced:
            if result.status in _KEY_TROUBLE:
                return result
            # Nothing new: the library's packet-id or counter check dropped it, or the
            # frame holds nothing (readable). The same frame without history tells which.
            alone, alone_produced = _alone(data, self.address, self._key, at)
            if alone_produced:
                return Decoded(Status.REPEAT, reason="an old packet id or counter")
            return alone
        if result.packet_id is not None:
            if result.packet_id == self._last_packet:
                return Decoded(Status.REPEAT, reason=f"packet id {result.packet_id} again")
            self._last_packet = result.packet_id
        return result
