"""Logging to the systemd journal with structure, through its native protocol.

Used by ``hub`` only when its stderr is connected to the journal, which is what systemd
does for a service: ``JOURNAL_STREAM`` then holds ``<device>:<inode>`` of that stream, and
it is the journal only if fd 2 still is that file (systemd.exec(5)). Elsewhere (a terminal,
a pipe, a test) the plain stderr format stays.

The protocol (systemd's "native journal protocol"), spoken without libsystemd: one
datagram per record to the Unix socket ``/run/systemd/journal/socket``, made of fields.
A field is ``NAME=value`` and a newline; a value that holds a newline is sent as ``NAME``,
a newline, its length as a 64-bit little-endian number, the bytes and a newline. A name
may appear more than once (several ``ALERT_ID``). The fields sent:

``MESSAGE``, ``PRIORITY`` (syslog level from the Python level), ``SYSLOG_IDENTIFIER``
(``leefsamen-hub``), ``LOGGER`` (the Python logger's name), ``CODE_FILE``, ``CODE_LINE``,
``CODE_FUNC``, ``HUB_ID`` (once the configuration named it: ``set_hub_id``) and
``ALERT_ID`` when a record carries ``extra={"alert_id": ...}`` (one id or a list), so that
``journalctl ALERT_ID=...`` finds every line about one alert.

What the records say is the callers' business; the rule for them is the project's: no
sensor event sequences or times of use at the default level, no secrets at any level.

Never raises into the agent. A record the journal cannot take (its socket missing or
refusing, a datagram too large even with the message cut short) goes to stderr instead;
the first such fall-back says why, once.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
IDENTIFIER = "leefsamen-hub"
STDERR_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: a message longer than this is cut before sending (the journal's own limits are larger,
#: but a datagram is bounded by the socket's send buffer)
MAX_MESSAGE = 48 * 1024
#: and cut to this when the datagram was still too large
SHORT_MESSAGE = 2 * 1024

_context: dict[str, str] = {}  # fields every record carries from now on


def set_hub_id(hub_id: str | None) -> None:
    """The hub id every later record carries as ``HUB_ID`` (None: none)."""
    if hub_id is None:
        _context.pop("HUB_ID", None)
    else:
        _context["HUB_ID"] = hub_id


def syslog_priority(levelno: int) -> int:
    """The syslog priority (0 emergency .. 7 debug) of a Python logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``fd`` is the stream systemd connected to the journal (``JOURNAL_STREAM``)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(fd)
        return (int(device), int(inode)) == (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return False


def encode_field(name: str, value: str) -> bytes:
    """One field of the native protocol; the length-prefixed form when needed."""
    data = value.encode("utf-8", "replace")
    key = name.encode("ascii")
    if b"\n" in data:
        return key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key + b"=" + data + b"\n"


def encode(fields: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(encode_field(name, value) for name, value in fields)


class JournalHandler(logging.Handler):
    """Sends each record to the journal as structured fields; stderr when it cannot."""

    def __init__(
        self,
        socket_path: Path | None = None,
        identifier: str = IDENTIFIER,
        fallback: TextIO | None = None,
    ) -> None:
        super().__init__()
        self.socket_path = JOURNAL_SOCKET if socket_path is None else socket_path
        self.identifier = identifier
        self._fallback = logging.StreamHandler(fallback if fallback is not None else sys.stderr)
        self._fallback.setFormatter(logging.Formatter(STDERR_FORMAT))
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._warned = False
        self.fallbacks = 0

    def fields(self, record: logging.LogRecord, message: str) -> list[tuple[str, str]]:
        out = [
            ("MESSAGE", message),
            ("PRIORITY", str(syslog_priority(record.levelno))),
            ("SYSLOG_IDENTIFIER", self.identifier),
            ("LOGGER", record.name),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", str(record.lineno)),
            ("CODE_FUNC", record.funcName),
        ]
        out.extend(_context.items())
        alert = getattr(record, "alert_id", None)
        ids = [alert] if isinstance(alert, str) else alert if isinstance(alert, list) else []
        out.extend(("ALERT_ID", str(a)) for a in ids)
        return out

    def _message(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            formatter = self.formatter or logging.Formatter()
            text = f"{text}\n{formatter.formatException(record.exc_info)}"
        if record.stack_info:
            text = f"{text}\n{record.stack_info}"
        return text

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self._message(record)
            if len(message) > MAX_MESSAGE:
                message = message[:MAX_MESSAGE] + " [cut short]"
            try:
                self._send(encode(self.fields(record, message)))
            except OSError as err:
                if err.errno != errno.EMSGSIZE:
                    raise
                short = message[:SHORT_MESSAGE] + " [cut short]"
                self._send(encode(self.fields(record, short)))
        except OSError as err:
            self._fall_back(record, err)
        except Exception:
            self.handleError(record)

    def _send(self, data: bytes) -> None:
        with self._sock_lock:
            if self._sock is None:
                sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
                try:
                    sock.connect(os.fspath(self.socket_path))
                except OSError:
                    sock.close()
                    raise
                self._sock = sock
            try:
                self._sock.send(data)
            except OSError as err:
                if err.errno != errno.EMSGSIZE:
                    # connect anew next time: journald may have been restarted
                    self._sock.close()
                    self._sock = None
                raise

    def _fall_back(self, record: logging.LogRecord, err: OSError) -> None:
        self.fallbacks += 1
        if not self._warned:
            self._warned = True
            note = logging.LogRecord(
                __name__,
                logging.WARNING,
                __file__,
                0,
                "the journal at %s cannot take log records (%s); writing them to stderr",
                (os.fspath(self.socket_path), err.strerror or err),
                None,
            )
            self._fallback.handle(note)
        self._fallback.handle(record)

    def close(self) -> None:
        with self._sock_lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        self._fallback.close()
        super().close()


def handler_for_stderr(environ: Mapping[str, str] | None = None) -> logging.Handler:
    """The handler ``hub`` logs through: the journal's when stderr is it, else stderr's."""
    if stderr_is_journal(environ):
        return JournalHandler()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    return handler
