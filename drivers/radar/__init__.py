"""Serial mmWave radars: the HLK-LD2410 presence radar and the Seeed MR60FDA2 fall radar.

``ld2410`` and ``mr60fda2`` frame and decode their vendor's bytes (pure functions, no
I/O), ``transport`` reads the serial port without blocking the event loop and ``driver``
turns readings into events. This module holds what both protocols share: a streaming
framer driven by a table (``Framing``) that describes where a frame starts, where its
length is and how it is checked.

The framer never trusts a frame it cannot check. A candidate whose length is impossible,
or whose tail or checksum is wrong, costs only its first byte: the search for the next
frame start begins one byte later, so a good frame hidden behind a truncated one is
still found. Bytes that are dropped on the way are reported as ``Junk`` (one per run of
dropped bytes), good frames as ``Frame``. The buffer never holds more than one frame's
worth of bytes plus what the last ``feed`` brought.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

#: a run of dropped bytes this long is reported at once, without waiting for a good frame
JUNK_REPORT_BYTES = 512


@dataclass(frozen=True, slots=True)
class Framing:
    """How one protocol delimits its frames.

    A frame is ``overhead + length`` bytes long, where ``length`` is the 16-bit field at
    ``length_at``. ``check_header`` sees the first ``header_size`` bytes (the length
    field included) and ``check_frame`` the whole frame; each returns ``None`` when the
    bytes are good, else a short reason.
    """

    name: str
    starts: tuple[bytes, ...]
    length_at: int
    byteorder: Literal["little", "big"]
    header_size: int
    overhead: int
    max_length: int
    check_header: Callable[[bytes], str | None]
    check_frame: Callable[[bytes], str | None]

    @property
    def max_frame(self) -> int:
        return self.overhead + self.max_length


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete frame whose framing checked out (the payload is not decoded yet)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Junk:
    """A run of ``size`` bytes that were dropped; ``reason`` is why the first one was.

    ``leading`` is true for bytes before the first good frame since the parser was
    made: opening a port while the device is sending starts in the middle of a frame.
    """

    reason: str
    size: int
    leading: bool


class FrameParser:
    """Feed it bytes as they come; it returns the frames (and dropped runs) they complete."""

    def __init__(self, framing: Framing) -> None:
        if any(len(s) > framing.header_size for s in framing.starts):
            raise ValueError("a frame start cannot be longer than the header")
        self.framing = framing
        self._buf = bytearray()
        self._junk_size = 0
        self._junk_reason = ""
        self._seen_frame = False

    @property
    def pending(self) -> int:
        """Bytes held back: the beginning of a frame not complete yet."""
        return len(self._buf)

    @property
    def unreported(self) -> int:
        """Bytes dropped but not yet reported as ``Junk`` (the run may go on)."""
        return self._junk_size

    def feed(self, data: bytes) -> list[Frame | Junk]:
        self._buf += data
        out: list[Frame | Junk] = []
        self._scan(out)
        if self._junk_size >= JUNK_REPORT_BYTES:
            self._flush_junk(out)
        return out

    def abandon(self) -> list[Frame | Junk]:
        """The line went quiet: whatever frame is still incomplete was cut off.

        Drops it (byte by byte, so that a complete frame behind it is still found) and
        reports every dropped run now.
        """
        out: list[Frame | Junk] = []
        self._scan(out)
        while self._buf:
            del self._buf[:1]
            self._skip(1, "truncated frame")
            self._scan(out)
        self._flush_junk(out)
        return out

    # ---- internals ------------------------------------------------------------------
    def _skip(self, size: int, reason: str) -> None:
        if not self._junk_size:
            self._junk_reason = reason
        self._junk_size += size

    def _flush_junk(self, out: list[Frame | Junk]) -> None:
        if self._junk_size:
            out.append(Junk(self._junk_reason, self._junk_size, not self._seen_frame))
            self._junk_size = 0
            self._junk_reason = ""

    def _find_start(self, pos: int) -> int:
        """The first frame start at or after ``pos``; a start cut off at the end of the
        buffer counts (it may complete with the next bytes); ``len`` when there is none."""
        buf = self._buf
        found = [i for s in self.framing.starts if (i := buf.find(s, pos)) >= 0]
        if found:
            return min(found)
        longest = max(len(s) for s in self.framing.starts)
        for i in range(max(pos, len(buf) - longest + 1), len(buf)):
            tail = bytes(buf[i:])
            if any(s.startswith(tail) for s in self.framing.starts):
                return i
        return len(buf)

    def _scan(self, out: list[Frame | Junk]) -> None:
        spec = self.framing
        buf = self._buf
        pos = 0
        while True:
            start = self._find_start(pos)
            if start > pos:
                self._skip(start - pos, "no frame start")
                pos = start
            if len(buf) - pos < spec.header_size:
                break  # nothing, or a start whose header has not all arrived
            header = bytes(buf[pos : pos + spec.header_size])
            field = header[spec.length_at : spec.length_at + 2]
            length = int.from_bytes(field, spec.byteorder)
            reason = (
                f"length {length} over {spec.max_length}"
                if length > spec.max_length
                else spec.check_header(header)
            )
            if reason is None:
                total = spec.overhead + length
                if len(buf) - pos < total:
                    break  # wait for the rest of the frame
                frame = bytes(buf[pos : pos + total])
                reason = spec.check_frame(frame)
                if reason is None:
                    self._flush_junk(out)
                    self._seen_frame = True
                    out.append(Frame(frame))
                    pos += total
                    continue
            self._skip(1, reason)  # not a frame after all: look again one byte later
            pos += 1
        del buf[:pos]
