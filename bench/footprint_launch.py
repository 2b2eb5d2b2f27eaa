"""The agent process of bench/footprint.py: ``hub run`` with only the hardware boundaries
replaced, fed from the benchmark through standard input.

    python bench/footprint_launch.py [--gpio] [--ble] [--ready-modules FILE] run --config F
    python bench/footprint_launch.py --week-rss FILE [--tracemalloc] replay TRACE ...

Everything after the launcher's own options goes to ``agent.cli.main``, so the process
imports and runs what a real hub imports and runs. What is replaced, and only when asked:

- ``--gpio``: gpiozero's ``MockFactory`` becomes the pin factory (the driver takes it for
  ``pin_factory = "mock"``), and input levels come from the benchmark;
- ``--ble``: the Bluetooth adapter, at the seam the tests use
  (``drivers.bthome.scanner.make_scanner``): a scanner that hands the benchmark's
  advertisements to the driver's callback, in the event loop, as bleak does;
- ``--ready-modules FILE``: when the agent tells systemd READY=1, the names of the modules
  imported by then are written to FILE (what the start-up had to import);
- ``--week-rss FILE``: for a replay, one JSON line a simulated week, ``{"week": N,
  "rss_kb": ...}``, read from /proc/self/status when the runtime's heartbeat (every 15
  simulated minutes) is the first past the week's end. With ``--tracemalloc`` the
  replay is traced and the last line also says where memory grew from the end of week 2
  to the end of the last full week (``"growth"``: the ten biggest increases, each with
  the four innermost frames of where it was allocated).

Lines on standard input, one a line, read by a thread (as a pin library's callbacks and
BlueZ's messages also arrive from outside the loop)::

    gpio PIN 0|1
    ble ADDRESS SERVICE_DATA_HEX RSSI

The launcher imports nothing heavy itself before ``agent.cli.main`` runs: gpiozero's mock
factory only with ``--gpio`` (the driver imports gpiozero anyway), bleak only once the
first advertisement is delivered (the driver imported it already).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVICE_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"  # BTHome


class Air:
    """The fake radio: every scanner the driver made, and a way to deliver to them."""

    def __init__(self) -> None:
        self.scanners: list[FakeScanner] = []
        self._lock = threading.Lock()

    def make(self, callback: Any, mode: str, adapter: str | None) -> FakeScanner:
        scanner = FakeScanner(callback)
        with self._lock:
            self.scanners = [s for s in self.scanners if s.running] + [scanner]
        return scanner

    def send(self, address: str, data: bytes, rssi: int) -> None:
        """From the feeder thread: into each running scanner's loop."""
        with self._lock:
            live = [s for s in self.scanners if s.running and s.loop is not None]
        for scanner in live:
            assert scanner.loop is not None
            scanner.loop.call_soon_threadsafe(scanner.deliver, address, data, rssi)


class FakeScanner:
    """What bleak's scanner does for the driver: call back with (device, advertisement)."""

    def __init__(self, callback: Any) -> None:
        self.callback = callback
        self.running = False
        self.loop: Any = None

    async def start(self) -> None:
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def deliver(self, address: str, data: bytes, rssi: int) -> None:
        from bleak.backends.device import BLEDevice
        from bleak.backends.scanner import AdvertisementData

        if not self.running:
            return
        path = f"/org/bluez/hci0/dev_{address.replace(':', '_')}"
        device = BLEDevice(address, None, {"path": path, "props": {}})
        adv = AdvertisementData(
            local_name=None,
            manufacturer_data={},
            service_data={SERVICE_UUID: data},
            service_uuids=[SERVICE_UUID],
            tx_power=None,
            rssi=rssi,
            platform_data=(path, {}),
        )
        self.callback(device, adv)


def feed(pins: Any, air: Air | None) -> None:
    """The feeder thread: apply each line of standard input until it closes."""
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "gpio" and pins is not None:
            pin = pins.pin(int(parts[1]))
            if parts[2] == "1":
                pin.drive_high()
            else:
                pin.drive_low()
        elif parts[0] == "ble" and air is not None:
            air.send(parts[1], bytes.fromhex(parts[2]), int(parts[3]))


def on_ready_write_modules(path: Path) -> None:
    """Wrap ``Notifier.ready``: at READY=1, write the names of the modules imported."""
    from agent.sdnotify import Notifier

    real = Notifier.ready

    def ready(self: Notifier, status: str) -> bool:
        path.write_text("\n".join(sorted(sys.modules)) + "\n", encoding="utf-8")
        return real(self, status)

    Notifier.ready = ready  # type: ignore[method-assign]


WEEK = 7 * 86400.0


class WeekProbe:
    """RSS (and, when traced, a tracemalloc snapshot) at each simulated week's end."""

    def __init__(self, path: Path, traced: bool) -> None:
        self.out = path.open("w", encoding="utf-8")
        self.traced = traced
        self.week = 0
        self.rss_kb = 0
        self.first: Any = None  # the snapshot at the end of week 2
        self.last: Any = None  # and the latest one

    def install(self) -> None:
        from agent.runtime import Runtime

        real = Runtime._heartbeat
        probe = self

        def heartbeat(runtime: Runtime) -> None:
            real(runtime)
            start = runtime.stats.first_wall
            if start is not None:
                probe.at(int((runtime.clock.wall() - start) // WEEK))

        Runtime._heartbeat = heartbeat  # type: ignore[method-assign,assignment]
        if self.traced:
            import tracemalloc

            tracemalloc.start(8)

    def at(self, week: int) -> None:
        if week <= self.week:
            return
        self.week = week
        self.rss_kb = int(re.search(r"VmRSS:\s+(\d+)", _status())[1])  # type: ignore[index]
        row: dict[str, Any] = {"week": week, "rss_kb": self.rss_kb}
        if self.traced:
            import tracemalloc

            row["traced_kb"] = tracemalloc.get_traced_memory()[0] // 1024
            snapshot = tracemalloc.take_snapshot()
            if week == 2:
                self.first = snapshot
            elif week > 2:
                self.last = snapshot
        self.out.write(json.dumps(row) + "\n")
        self.out.flush()

    def close(self) -> None:
        """The growth between the snapshots, as a last line; then close the file."""
        if self.first is not None and self.last is not None:
            import tracemalloc

            ignore = [
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, __file__),
            ]
            old = self.first.filter_traces(ignore)
            new = self.last.filter_traces(ignore)
            top = [s for s in new.compare_to(old, "traceback") if s.size_diff > 0][:10]
            growth = [
                f"{s.size_diff / 1024:+.0f} kB in {s.count_diff:+d} blocks at "
                + " <- ".join(
                    f"{_short(f.filename)}:{f.lineno}" for f in list(s.traceback)[::-1][:4]
                )
                for s in top
            ]
            row = {"week": self.week, "rss_kb": self.rss_kb, "growth": growth}
            self.out.write(json.dumps(row) + "\n")
        self.out.close()


def _status() -> str:
    with open("/proc/self/status", encoding="ascii") as f:
        return f.read()


def _short(filename: str) -> str:
    for marker in ("/site-packages/", str(ROOT) + "/", "/lib/python"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> int:
    args = sys.argv[1:]
    gpio = ble = traced = False
    ready_modules: Path | None = None
    week_rss: Path | None = None
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if option == "--gpio":
            gpio = True
        elif option == "--ble":
            ble = True
        elif option == "--ready-modules":
            ready_modules = Path(args.pop(0))
        elif option == "--week-rss":
            week_rss = Path(args.pop(0))
        elif option == "--tracemalloc":
            traced = True
        else:
            print(f"footprint_launch: unknown option {option}", file=sys.stderr)
            return 2
    if ready_modules is not None:
        on_ready_write_modules(ready_modules)
    if week_rss is not None:
        probe = WeekProbe(week_rss, traced)
        probe.install()
        try:
            from agent.cli import main as hub_main

            return hub_main(args)
        finally:
            probe.close()
    pins = air = None
    if gpio:
        from gpiozero import Device  # type: ignore[import-untyped]
        from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]

        pins = Device.pin_factory = MockFactory()
    if ble:
        from drivers.bthome import scanner

        air = Air()
        scanner.make_scanner = air.make
    if pins is not None or air is not None:
        threading.Thread(target=feed, args=(pins, air), name="feeder", daemon=True).start()
    from agent.cli import main as hub_main

    return hub_main(args)


if __name__ == "__main__":
    sys.exit(main())
