"""The Bluetooth transport: bleak's scanner on BlueZ. The one part the tests replace.

``make_scanner`` is the seam: it returns an object with ``start()`` and ``stop()`` that
calls ``callback(BLEDevice, AdvertisementData)`` for each advertisement, as bleak does.
The tests put a fake in its place that delivers advertisements of their own; everything
after the callback is the real driver.

Passive scanning only listens. On BlueZ it goes through an advertisement monitor, which
needs "or patterns": ours matches service data of the BTHome UUID 0xFCD2, so BlueZ wakes
the hub for BTHome frames only. It needs BlueZ >= 5.56 started with ``--experimental``;
``auto`` falls back to active scanning (which asks every device for its scan response)
when passive scanning cannot start.

bleak is imported here, lazily: validating a configuration loads no Bluetooth library.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol

from agent.errors import TransientError

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

AdvertisementCallback = Callable[["BLEDevice", "AdvertisementData"], None]
ScanMode = Literal["active", "passive"]

BTHOME_UUID16 = b"\xd2\xfc"  # 0xFCD2, little-endian, as it stands in the service data AD
START_TIMEOUT = 30.0  # a BlueZ that does not answer in this time will not
STOP_TIMEOUT = 10.0


class Scanner(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class BluetoothUnavailable(TransientError):
    """The adapter, BlueZ or the system bus is not there (yet): retry later."""


def make_scanner(callback: AdvertisementCallback, mode: ScanMode, adapter: str | None) -> Scanner:
    """A bleak scanner for BTHome advertisements on ``adapter`` (None: BlueZ's default)."""
    from bleak import BleakScanner
    from bleak.args.bluez import BlueZScannerArgs, OrPattern
    from bleak.assigned_numbers import AdvertisementDataType

    bluez: BlueZScannerArgs = {}
    if adapter is not None:
        bluez["adapter"] = adapter
    if mode == "passive":
        bluez["or_patterns"] = [
            OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, BTHOME_UUID16)
        ]
    # No service-UUID filter for active scanning: BlueZ lists the UUIDs a device
    # advertises, and a BTHome frame need not name 0xFCD2 there; the driver filters.
    return BleakScanner(callback, None, mode, bluez=bluez)


def explain(err: BaseException) -> str:
    """What a failure to scan means, in words an installer can act on."""
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError

    if isinstance(err, BleakBluetoothNotAvailableError):
        return f"no usable Bluetooth adapter: {err.args[0]}"
    if isinstance(err, BleakDBusError):
        if err.dbus_error in (
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NameHasNoOwner",
        ):
            return "BlueZ (bluetoothd) is not running"
        return f"BlueZ refused: {err}"
    if isinstance(err, FileNotFoundError | ConnectionRefusedError):
        return "no D-Bus system bus (is dbus running?)"
    if isinstance(err, PermissionError):
        return "not allowed to use Bluetooth over D-Bus (check the service's user and groups)"
    if isinstance(err, TimeoutError):
        return "BlueZ did not answer in time"
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


async def _start(callback: AdvertisementCallback, mode: ScanMode, adapter: str | None) -> Scanner:
    scanner = make_scanner(callback, mode, adapter)
    try:
        await asyncio.wait_for(scanner.start(), START_TIMEOUT)
    except TimeoutError:
        await stop_scanner(scanner, logging.getLogger(__name__))
        raise
    return scanner


async def start_scanner(
    callback: AdvertisementCallback,
    mode: Literal["auto", "passive", "active"],
    adapter: str | None,
    log: logging.Logger,
) -> tuple[Scanner, ScanMode]:
    """Start scanning; the scanner and the mode it runs in.

    Raises ``BluetoothUnavailable`` with the reason when no scanner can start.
    """
    where = adapter or "the default adapter"
    if mode in ("auto", "passive"):
        try:
            return await _start(callback, "passive", adapter), "passive"
        except Exception as err:
            if mode == "passive":
                raise BluetoothUnavailable(
                    f"passive scanning on {where} failed: {explain(err)}"
                ) from err
            log.info("passive scanning unavailable (%s); scanning actively", explain(err))
    try:
        return await _start(callback, "active", adapter), "active"
    except Exception as err:
        raise BluetoothUnavailable(f"cannot scan on {where}: {explain(err)}") from err


async def stop_scanner(scanner: Scanner, log: logging.Logger) -> None:
    """Stop scanning; a scanner that is already gone is not an error."""
    try:
        await asyncio.wait_for(scanner.stop(), STOP_TIMEOUT)
    except Exception as err:
        log.debug("stopping the scanner: %s", explain(err))
