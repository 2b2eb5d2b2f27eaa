"""The BTHome driver: BLE advertisements from the home's BTHome v2 devices become events.

A device is matched to its sensor by Bluetooth address (``ctx.home.sensor_for_device``);
advertisements of any other device are ignored and named once in the log. Each
advertisement is decoded by ``decode.DeviceDecoder`` (repeats dropped there); what is new
becomes events: a button event at every press, a state (contact, motion, ...) when it
changes, a measurement when it changes. A motion or presence sensor that goes on reporting
"1" is passed on again at most every ``REASSERT_EVERY`` seconds: the person is still moving.

The scanner failing to start (no adapter, BlueZ or D-Bus not running) or hearing nothing
at all for ``stall_after`` raises ``TransientError``: the runtime starts the driver again
with backoff. ``ctx.health.details`` says what the scanner is doing.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

from agent.errors import TransientError
from agent.events import EventKind, SensorEvent
from drivers.base import Driver, DriverContext
from drivers.bthome import scanner as transport
from drivers.bthome.config import BTHomeConfig
from drivers.bthome.decode import SERVICE_UUID, Decoded, DeviceDecoder, Status

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

REASSERT_EVERY = 60.0  # seconds between two events of an unchanged motion/presence "1"
SIGNAL_EVERY = 10.0  # seconds between two signal-strength reports of one sensor
MAX_STRANGERS = 256  # strangers remembered by address (more are still counted)
WATCH_EVERY = 5.0  # seconds between two looks at the stall clock (at most)

#: kinds whose unchanged "1" still means something new: the person is still there
_REASSERTED = frozenset({EventKind.MOTION, EventKind.PRESENCE, EventKind.VIBRATION})
_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")

_KEY_WARNINGS = {
    Status.NO_KEY: "sends encrypted data and no key is configured for it (wrong or missing "
    "key: add it under keys); its data are dropped",
    Status.BAD_KEY: "sends data the configured key does not decrypt (wrong or missing key); "
    "its data are dropped",
    Status.PLAINTEXT: "sends unencrypted data although a key is configured for it (was it "
    "reset?); its data are dropped",
}


class ScannerStalled(TransientError):
    """No advertisement at all for ``stall_after``: the scanner is taken to be wedged."""


class BTHomeDriver(Driver):
    config_model = BTHomeConfig

    def __init__(self, config: BTHomeConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self._scanner: transport.Scanner | None = None
        self._decoders: dict[str, DeviceDecoder] = {}
        self._last: dict[tuple[str, EventKind], tuple[float, float]] = {}  # value, mono
        self._signal_at: dict[str, float] = {}
        self._strangers: set[str] = set()
        self._stranger_count = 0
        self._key_problems: set[str] = set()
        self._repeats = 0
        self._bug_logged = False
        self._heard = time.monotonic()

    def sensors(self) -> list[str]:
        """The home map's sensors whose device is a Bluetooth address."""
        return sorted(
            sid
            for sid, spec in self.ctx.home.sensors.items()
            if _ADDRESS.match(spec.device if spec.device is not None else sid)
        )

    @property
    def _where(self) -> str:
        return self.cfg.adapter or "the default adapter"

    async def run(self) -> None:
        health = self.ctx.health
        details = health.details
        details["scanner"] = f"starting on {self._where}"
        try:
            scanner, mode = await transport.start_scanner(
                self._on_advertisement, self.cfg.scanning_mode, self.cfg.adapter, self.ctx.log
            )
        except transport.BluetoothUnavailable as err:
            details["scanner"] = f"unavailable: {err}"
            raise
        self._scanner = scanner
        details["scanner"] = f"{mode} on {self._where}"
        self.ctx.log.info("scanning for BTHome devices (%s) on %s", mode, self._where)
        self._heard = time.monotonic()
        health.alive()
        stall = self.cfg.stall_after
        if stall is None:
            await asyncio.Event().wait()  # until cancelled
            return
        while True:
            await asyncio.sleep(min(stall / 4, WATCH_EVERY))
            quiet = time.monotonic() - self._heard
            if quiet > stall:
                details["scanner"] = f"stalled: nothing heard for {quiet:.0f} s"
                raise ScannerStalled(
                    f"no Bluetooth advertisement for {quiet:.0f} s on {self._where}: "
                    "the scanner seems wedged"
                )

    async def close(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            await transport.stop_scanner(scanner, self.ctx.log)

    # ---- one advertisement ----------------------------------------------------------------
    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """bleak's detection callback, in the event loop; never raises into bleak."""
        try:
            self._handle(device, adv)
        except Exception:
            self.ctx.health.malformed(f"{device.address}: an advertisement could not be handled")
            if not self._bug_logged:
                self._bug_logged = True
                self.ctx.log.exception(
                    "an advertisement of %s could not be handled", device.address
                )

    def _handle(self, device: BLEDevice, adv: AdvertisementData) -> None:
        now = time.monotonic()
        self._heard = now
        health = self.ctx.health
        health.alive()
        data = adv.service_data.get(SERVICE_UUID)
        if data is None:
            return  # another kind of device (active scanning hears them all)
        address = device.address.upper()
        sensor = self.ctx.home.sensor_for_device(address)
        if sensor is None:
            self._stranger(address)
            return
        if now - self._signal_at.get(sensor, -SIGNAL_EVERY) >= SIGNAL_EVERY:
            self._signal_at[sensor] = now
            self.ctx.signal(sensor, float(adv.rssi), "dBm")
        decoder = self._decoders.get(address)
        if decoder is None:
            decoder = self._decoders[address] = DeviceDecoder(address, self.cfg.key_for(address))
            health.details["devices"] = str(len(self._decoders))
        result = decoder.feed(bytes(data), self.ctx.clock.monotonic())
        status = result.status
        if status is Status.OK:
            self._emit(sensor, result)
        elif status is Status.REPEAT:
            self._repeats += 1
            health.details["repeats"] = str(self._repeats)
        elif status is Status.MALFORMED:
            health.malformed(f"{address}: {result.reason}", self.ctx.log)
        else:
            health.malformed(f"{address}: {result.reason}", self.ctx.log)
            if address not in self._key_problems:
                self._key_problems.add(address)
                health.details["undecryptable"] = str(len(self._key_problems))
                self.ctx.log.warning(
                    "BTHome device %s (sensor %s) %s", address, sensor, _KEY_WARNINGS[status]
                )

    def _stranger(self, address: str) -> None:
        if address in self._strangers:
            return
        self._stranger_count += 1
        self.ctx.health.details["strangers"] = str(self._stranger_count)
        if len(self._strangers) < MAX_STRANGERS:
            self._strangers.add(address)
            self.ctx.log.info(
                "BTHome device %s is not in the home map: ignored (name it as a sensor's "
                "device to use it)",
                address,
            )

    def _emit(self, sensor: str, result: Decoded) -> None:
        values: dict[EventKind, float] = {}
        for reading in result.readings:
            if reading.kind is EventKind.BUTTON:  # two buttons at once: the longest press
                values[reading.kind] = max(reading.value, values.get(reading.kind, 0.0))
            else:
                values.setdefault(reading.kind, reading.value)
        clock = self.ctx.clock
        mono = clock.monotonic()
        for kind, value in values.items():
            if not _is_news(kind, value, self._last.get((sensor, kind)), mono):
                continue
            self._last[(sensor, kind)] = (value, mono)
            self.ctx.health.events += 1
            self.ctx.emit(SensorEvent(sensor, kind, value, clock.wall(), mono))


def _is_news(kind: EventKind, value: float, last: tuple[float, float] | None, mono: float) -> bool:
    """Whether ``value`` is worth an event, after ``last`` (value, when) of the same kind."""
    if kind is EventKind.BUTTON or last is None or last[0] != value:
        return True  # every press; every change; the first report
    return kind in _REASSERTED and value > 0 and mono - last[1] >= REASSERT_EVERY
