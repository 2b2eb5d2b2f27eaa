"""Injected clocks.

Durations come from ``monotonic()``; time of day from ``wall()`` in the home's time zone.
A Raspberry Pi has no real-time clock: until NTP has synchronised, wall time may be years
off and it jumps when the sync arrives. ``wall_synced()`` says whether to trust it.

``LiveClock`` reads the operating system; ``SimClock`` is driven by a trace so that a
year of a home replays in seconds and gives the same alerts as it would live.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from datetime import datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

# The wall clock is certainly wrong before this moment (2026-01-01T00:00:00Z): a Pi that
# booted without network starts from the last saved time or from 1970.
_EARLIEST_PLAUSIBLE = 1_767_225_600.0


class Clock(Protocol):
    """What every stage may ask of time."""

    @property
    def tz(self) -> ZoneInfo: ...

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    def wall_synced(self) -> bool: ...


def local_time(clock: Clock, wall: float | None = None) -> datetime:
    """The wall time (now, or ``wall``) as an aware datetime in the home's time zone."""
    return datetime.fromtimestamp(clock.wall() if wall is None else wall, tz=clock.tz)


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: only ``modes`` (in) and the return value matter;
    # the rest is padding large enough for every Linux ABI.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 256)]


_TIME_ERROR = 5  # adjtimex(2): clock not synchronised (STA_UNSYNC set)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, found once: ``find_library`` runs ``ldconfig -p`` at every call."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


# systemd-timesyncd (the default on Debian and Raspberry Pi OS) makes this file once it has
# synchronised the clock, and keeps it until the next boot (/run is in RAM).
TIMESYNCD_DIR = Path("/run/systemd/timesync")


def kernel_says_synced() -> bool | None:
    """Whether NTP has synchronised the clock; None where nothing can say.

    First the kernel's own flag (``adjtimex(2)`` with no change asked). Where that call is
    refused, as under the agent's unit (``ProtectClock=yes`` filters every clock call,
    the read-only one too: docs/systemd.md), the file systemd-timesyncd makes when it has
    synchronised. A host with another NTP daemon and that filter cannot say (None).
    """
    libc = _libc()
    state = -1
    if libc is not None:
        try:
            tx = _Timex()
            state = int(libc.adjtimex(ctypes.byref(tx)))
        except (OSError, AttributeError):
            state = -1
    if state >= 0:
        return state != _TIME_ERROR
    try:
        if (TIMESYNCD_DIR / "synchronized").exists():
            return True
        return False if TIMESYNCD_DIR.is_dir() else None
    except OSError:
        return None


class LiveClock:
    """The operating system's clocks.

    ``synced`` forces the answer (tests, or hubs with a GPS or RTC); by default the
    kernel's synchronisation flag decides, and a wall time before 2026 is never trusted.
    """

    def __init__(self, tz: ZoneInfo, synced: bool | None = None) -> None:
        self._tz = tz
        self._forced = synced

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def wall_synced(self) -> bool:
        if self._forced is not None:
            return self._forced
        if time.time() < _EARLIEST_PLAUSIBLE:
            return False
        kernel = kernel_says_synced()
        return True if kernel is None else kernel


class SimClock:
    """A clock moved by whoever drives the simulation (the replay driver).

    Between explicit settings, wall time advances with monotonic time, as it would live.
    Time never goes backwards on the monotonic axis: a ``set`` with an earlier monotonic
    value is an error of the caller.
    """

    def __init__(self, tz: ZoneInfo, wall: float = 0.0, mono: float = 0.0) -> None:
        self._tz = tz
        self._wall = wall
        self._mono = mono
        self._synced = True

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def wall_synced(self) -> bool:
        return self._synced

    def set(self, wall: float, mono: float, synced: bool = True) -> None:
        """Jump to the moment of a trace event."""
        if mono < self._mono:
            raise ValueError(f"monotonic time went back from {self._mono} to {mono}")
        self._wall = wall
        self._mono = mono
        self._synced = synced

    def advance_to(self, mono: float) -> None:
        """Let time pass until ``mono``; wall time follows."""
        if mono > self._mono:
            self._wall += mono - self._mono
            self._mono = mono
