"""A serial port read from the event loop without blocking it.

pyserial opens and configures the port (raw mode, the line speed, an exclusive lock so
that two processes never share a radar) and leaves its descriptor non-blocking; the
descriptor is watched with ``loop.add_reader`` and read with a zero timeout when it is
ready, so the loop never waits on the device.

A radar that streams (the LD2410 reports ten times a second) would wake the hub at
every report. With ``read_every`` the descriptor is left unwatched for that long after
each read, and the kernel's buffer gathers the reports meanwhile: one wake-up takes
them all (2 s of LD2410 reports are under 1 KB; a pseudo-terminal holds 4 KB, a USB
serial adapter more).

A device that goes away shows as a read error (``EIO`` when a USB adapter is pulled or
a pseudo-terminal's other side closes), as "ready but no data" (a hang-up), or as its
device node vanishing: each raises ``TransientError`` and the runtime starts the driver
again with backoff, which opens the port anew when the device is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import termios
from typing import Any

import serial  # type: ignore[import-untyped]

from agent.errors import TransientError

READ_SIZE = 4096
#: bytes kept for the driver at most; it takes them at every wake-up, so this is slack
MAX_BUFFERED = 64 * 1024
#: a pseudo-terminal has no line speed; one that refuses a custom rate is opened at this
PTY_FALLBACK_BAUDRATE = 38400
# Linux Unix98 pseudo-terminal slaves (/dev/pts/N) have these device majors
_PTY_MAJORS = range(136, 144)


def is_pseudo_terminal(path: str) -> bool:
    """Whether ``path`` (symbolic links followed) is a pseudo-terminal's slave side."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISCHR(st.st_mode):
        return False
    real = os.path.realpath(path)
    return real.startswith("/dev/pts/") or os.major(st.st_rdev) in _PTY_MAJORS


class SerialTransport:
    """One serial port: ``open``, then ``await read(timeout)`` until it fails, ``close``."""

    def __init__(
        self, path: str, baudrate: int, log: logging.Logger, read_every: float = 0.0
    ) -> None:
        self.path = path
        self.baudrate = baudrate
        self.log = log
        self.read_every = read_every
        self._rewatch: asyncio.TimerHandle | None = None
        self._serial: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._buf = bytearray()
        self._ready = asyncio.Event()
        self._error: BaseException | None = None
        self.dropped = 0  # bytes dropped because the driver did not take them in time
        self.wakes = 0  # reads that brought bytes: what the radar costs the hub's loop
        self.opened_at: int | None = None  # the rate the port was opened at

    # ---- opening ------------------------------------------------------------------------
    def _serial_at(self, baudrate: int) -> Any:
        port = serial.Serial()
        port.port = self.path
        port.baudrate = baudrate
        port.timeout = 0  # reads return what is there, at once
        port.exclusive = True
        port.open()
        return port

    def open(self) -> None:
        """Open the port; ``TransientError`` says why it cannot be opened now."""
        path = self.path
        if not os.path.exists(path):  # follows links: a dangling by-id link is no device
            raise TransientError(f"no device at {path}")
        try:
            try:
                port = self._serial_at(self.baudrate)
                self.opened_at = self.baudrate
            except (ValueError, termios.error) as err:
                # pyserial sets a rate outside the termios table through an ioctl that
                # some kernels refuse on a pseudo-terminal (a test rig, a serial-over-IP
                # bridge); a pseudo-terminal has no line speed, so any rate will do there.
                if not is_pseudo_terminal(path):
                    raise TransientError(
                        f"cannot set {self.baudrate} baud on {path}: {err}"
                    ) from err
                self.log.info(
                    "%s is a pseudo-terminal that refuses %d baud (%s); opened at %d, "
                    "which makes no difference there",
                    path,
                    self.baudrate,
                    err,
                    PTY_FALLBACK_BAUDRATE,
                )
                port = self._serial_at(PTY_FALLBACK_BAUDRATE)
                self.opened_at = PTY_FALLBACK_BAUDRATE
        except (serial.SerialException, OSError, ValueError, termios.error) as err:
            raise TransientError(f"cannot open {path}: {err}") from err
        self._serial = port
        self._fd = port.fileno()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)

    # ---- reading ------------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data: bytes = self._serial.read(READ_SIZE)
        except (serial.SerialException, OSError) as err:
            self._fail(err)
            return
        if not data:
            return  # woken for nothing
        self.wakes += 1
        self._buf += data
        if self.read_every > 0 and self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)  # let the next reports gather in the kernel
            self._rewatch = self._loop.call_later(self.read_every, self._watch_again)
        if len(self._buf) > MAX_BUFFERED:
            excess = len(self._buf) - MAX_BUFFERED
            del self._buf[:excess]
            self.dropped += excess
        self._ready.set()

    def _watch_again(self) -> None:
        self._rewatch = None
        if self._loop is not None and self._fd is not None:
            self._loop.add_reader(self._fd, self._on_readable)

    def _fail(self, err: BaseException) -> None:
        self._error = err
        self._unwatch()
        self._ready.set()

    def _unwatch(self) -> None:
        if self._rewatch is not None:
            self._rewatch.cancel()
            self._rewatch = None
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        self._fd = None

    def _gone(self) -> TransientError:
        return TransientError(f"radar at {self.path} is gone: {self._error}")

    async def read(self, timeout: float | None) -> bytes:
        """What arrived since the last call; ``b""`` when ``timeout`` seconds pass
        without anything. ``TransientError`` once the device is gone (after the bytes
        that came before it went)."""
        if self._serial is None:
            raise RuntimeError("read before open")
        if not self._buf:
            if self._error is not None:
                raise self._gone()
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return b""
            if not self._buf:
                raise self._gone()
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def check_present(self) -> None:
        """``TransientError`` if the device node has gone (a quiet unplug)."""
        if not os.path.exists(self.path):
            self._error = FileNotFoundError(f"{self.path} vanished")
            raise self._gone()

    def close(self) -> None:
        self._unwatch()
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(Exception):  # a device already gone cannot be closed
                port.close()
