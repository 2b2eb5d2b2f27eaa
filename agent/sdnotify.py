"""Telling systemd how the agent is: the notify protocol, and the watchdog's rule.

The protocol (sd_notify(3)), spoken without libsystemd. systemd passes ``NOTIFY_SOCKET``:
the path of a Unix datagram socket, or a name in the abstract namespace when it starts with
``@``. Each datagram is newline-separated ``KEY=value`` assignments: ``READY=1`` (started:
the outbox is open and the uplink started), ``STATUS=...`` (the line ``systemctl status``
shows), ``STOPPING=1`` (the stop has begun, so the watchdog no longer applies) and
``WATCHDOG=1`` (still healthy). ``WATCHDOG_USEC`` is the watchdog interval; it is ours only
when ``WATCHDOG_PID`` is absent or is our own process id (a child that inherited the
variables must not ping for its parent). Without ``NOTIFY_SOCKET`` every call does
nothing. Nothing here raises into the agent: a failed send is logged once and counted.

The watchdog's rule (``Liveness``). systemd restarts the agent when the pings stop, so a
ping says "a restart would not help". Pings go out every third of the interval, and only
while both hold:

- the event loop keeps time: the pinging task measures how late its own wake-up came, and
  a lag above half the interval means the loop is stuck or starved;
- the outbox takes writes. Only real outcomes count: alerts and heartbeats stored or
  refused (no probe writes, which would wear the SD card). Writes that have failed
  without a success in between for longer than ``WRITE_GRACE`` withhold the pings, so
  systemd starts the agent afresh with the outbox opened anew. Not a full disk: a
  restart cannot free it, and restarts over and over would start every rule's timer
  afresh each time, so that no inactivity would ever last long enough to raise an alert.

One exception, on purpose: while an alert is held only in memory (the outbox refused it,
a full disk for one; the runtime keeps it and tries again), the pings go on. A restart
would lose that alert, and it cannot cure a full disk. The agent then logs, as a critical
message at most every ``HELD_LOG_EVERY`` seconds, why it keeps the watchdog quiet. Each
withheld episode is logged once as a warning when it begins, and once when it ends.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)

#: seconds that outbox writes may fail, with no success in between, before pings stop
WRITE_GRACE = 120.0
#: seconds between the critical messages while alerts are held only in memory
HELD_LOG_EVERY = 600.0
#: the ping period as a share of the watchdog interval
PINGS_PER_INTERVAL = 3


def _address(value: str) -> bytes | None:
    """``NOTIFY_SOCKET`` as a socket address; None for a form this module does not speak."""
    if value.startswith("/"):
        return os.fsencode(value)
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])  # the abstract namespace
    return None


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


class Notifier:
    """One process's line to systemd; every method is a no-op when systemd did not ask."""

    def __init__(self, socket_value: str | None, watchdog: float | None = None) -> None:
        self._address = _address(socket_value) if socket_value else None
        if socket_value and self._address is None:
            log.warning("NOTIFY_SOCKET %r is not a path or an abstract name: ignored", socket_value)
        self.watchdog = watchdog if self._address is not None else None
        self._sock: socket.socket | None = None
        self._failed = False
        self.failures = 0
        self._status: str | None = None

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> Notifier:
        """What systemd passed in the environment (``os.environ`` unless given)."""
        env = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        usec = _positive_int(env.get("WATCHDOG_USEC"))
        watchdog_pid = env.get("WATCHDOG_PID")
        if watchdog_pid is not None and _positive_int(watchdog_pid) != pid:
            usec = None  # meant for another process
        return cls(env.get("NOTIFY_SOCKET"), usec / 1e6 if usec is not None else None)

    @property
    def enabled(self) -> bool:
        """Whether systemd listens (``NOTIFY_SOCKET`` was given and usable)."""
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram; False if not sent."""
        if self._address is None:
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(data, self._address)
        except OSError as err:
            self.failures += 1
            if not self._failed:
                self._failed = True
                log.warning(
                    "cannot tell systemd (%s) via NOTIFY_SOCKET: %s; further failures are "
                    "counted, not logged",
                    assignments[0].split("=", 1)[0],
                    err,
                )
            return False
        return True

    def ready(self, status: str) -> bool:
        """Started: ``READY=1`` with the first status line."""
        self._status = _one_line(status)
        return self.send("READY=1", f"STATUS={self._status}")

    def status(self, text: str) -> bool:
        """The status line ``systemctl status`` shows; sent only when it changed."""
        line = _one_line(text)
        if line == self._status:
            return False
        self._status = line
        return self.send(f"STATUS={line}")

    def stopping(self, status: str) -> bool:
        """The stop has begun: ``STOPPING=1``; systemd's stop timeout runs from now."""
        self._status = _one_line(status)
        return self.send("STOPPING=1", f"STATUS={self._status}")

    def ping(self) -> bool:
        """``WATCHDOG=1``: healthy."""
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


class State(Enum):
    """What the watchdog's rule found at the last check."""

    HEALTHY = "healthy"
    LOOP_LAG = "loop_lag"  # withheld: the event loop does not keep time
    WRITES_FAIL = "writes_fail"  # withheld: the outbox refuses writes
    HELD = "held"  # pinging although writes fail: alerts held only in memory


@dataclass(frozen=True, slots=True)
class Verdict:
    ping: bool
    state: State


class Liveness:
    """The watchdog's rule (see the module docstring): whether to ping now.

    ``wrote`` is told every real outbox write's outcome; ``check`` is asked once per ping
    period with the loop lag just measured and the number of alerts held only in memory.
    ``clock`` is monotonic seconds (real time: it is this machine's disk and loop).
    """

    def __init__(
        self, grace: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.grace = WRITE_GRACE if grace is None else grace
        self._clock = clock
        self.failing_since: float | None = None  # first refusal since the last success
        self.state = State.HEALTHY
        self._held_logged = -float("inf")

    def wrote(self, ok: bool, disk_full: bool = False) -> None:
        """One outbox write's outcome: stored (True) or refused (False).

        A refusal because the disk is full does not count against the agent's health: a
        restart cannot free the disk, and restarting again and again would start every
        rule's timer afresh each time, so that no inactivity would ever be long enough to
        raise an alert. The runtime logs those refusals itself.
        """
        if ok:
            self.failing_since = None
        elif not disk_full and self.failing_since is None:
            self.failing_since = self._clock()

    def check(self, lag: float, lag_bound: float, held: int) -> Verdict:
        """Whether to ping, given the loop ``lag`` (s), its bound and alerts ``held``."""
        now = self._clock()
        failing = self.failing_since is not None and now - self.failing_since > self.grace
        if lag > lag_bound:
            state = State.LOOP_LAG
        elif failing and held:
            state = State.HELD
        elif failing:
            state = State.WRITES_FAIL
        else:
            state = State.HEALTHY
        self._report(state, now, lag, held)
        self.state = state
        return Verdict(ping=state in (State.HEALTHY, State.HELD), state=state)

    def _report(self, state: State, now: float, lag: float, held: int) -> None:
        """Log each episode once as it begins (and, while alerts are held, every so often)."""
        failing_for = 0.0 if self.failing_since is None else now - self.failing_since
        if state is State.HELD:
            if self.state is not State.HELD or now - self._held_logged >= HELD_LOG_EVERY:
                self._held_logged = now
                log.critical(
                    "the outbox has refused writes for %.0f s, but %d alert(s) are held only "
                    "in memory: the watchdog keeps being told all is well, because a restart "
                    "would lose them and cannot free the disk; free some disk space",
                    failing_for,
                    held,
                )
            return
        if state is self.state:
            return
        if state is State.LOOP_LAG:
            log.warning(
                "watchdog pings withheld: the event loop woke %.1f s late; systemd restarts "
                "the agent if this goes on",
                lag,
            )
        elif state is State.WRITES_FAIL:
            log.warning(
                "watchdog pings withheld: the outbox has refused every write for %.0f s and "
                "no alert is held in memory; systemd restarts the agent to open it anew",
                failing_for,
            )
        elif self.state is State.HELD:
            log.warning("the outbox takes writes again")
        else:
            log.warning("healthy again: watchdog pings resume")
