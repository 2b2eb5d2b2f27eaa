"""Seeed MR60FDA2 fall radar frames: framing and decoding, no I/O.

The frame is Seeed's "TinyFrame" layout, as ESPHome's ``seeed_mr60fda2`` component and
Seeed's own mmWave library read it (115200 baud, 8N1)::

    SOF 0x01 | ID (BE16) | LEN (BE16) | TYPE (BE16) | HEAD_CKSUM | DATA (LEN) | DATA_CKSUM

Both checksums are the bitwise inverse of the XOR of the bytes they cover: the seven
bytes before ``HEAD_CKSUM``, and the ``DATA`` bytes. ``ID`` is a running frame number.

The types decoded here carry one flag in the first data byte (non-zero: yes):

- ``0x0E02`` fall detected;
- ``0x0F09`` human presence.

Every other type that frames correctly (parameter results, point clouds, height upload,
...) is a valid frame this driver has no use for: ``Report.state`` is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.radar import FrameParser, Framing

SOF = 0x01
FALL = 0x0E02
PRESENCE = 0x0F09

#: frame types with a yes/no flag in the first data byte, and what the flag means
STATE_TYPES: dict[int, str] = {FALL: "fall", PRESENCE: "presence"}

#: names of the other types the fall radar is known to send, for logs
OTHER_TYPES: dict[int, str] = {
    0x0E04: "installation height result",
    0x0E06: "radar parameters",
    0x0E08: "fall threshold result",
    0x0E0A: "fall sensitivity result",
    0x0E0C: "alarm area result",
    0x0E0E: "height upload",
    0x0A04: "point cloud target info",
    0x0A08: "point cloud detection",
    0x2110: "reset to defaults result",
    0x010E: "user log",
}

HEADER_SIZE = 8  # SOF, ID 2, LEN 2, TYPE 2, HEAD_CKSUM


class MalformedReport(ValueError):
    """A frame whose framing was fine but whose content the type does not allow."""


def checksum(data: bytes) -> int:
    """The inverse of the XOR of ``data``, as the radar computes both checksums."""
    x = 0
    for b in data:
        x ^= b
    return ~x & 0xFF


def _check_header(header: bytes) -> str | None:
    if checksum(header[:7]) != header[7]:
        return "wrong header checksum"
    return None


def _check_frame(frame: bytes) -> str | None:
    if checksum(frame[HEADER_SIZE:-1]) != frame[-1]:
        return "wrong data checksum"
    return None


FRAMING = Framing(
    name="mr60fda2",
    starts=(bytes([SOF]),),
    length_at=3,
    byteorder="big",
    header_size=HEADER_SIZE,
    overhead=HEADER_SIZE + 1,
    max_length=512,  # Seeed's library buffer; a point cloud is the longest frame
    check_header=_check_header,
    check_frame=_check_frame,
)


def parser() -> FrameParser:
    return FrameParser(FRAMING)


def encode(frame_id: int, frame_type: int, data: bytes) -> bytes:
    """A frame as the radar would send it (for tests and tools)."""
    header = bytes([SOF]) + b"".join(
        v.to_bytes(2, "big") for v in (frame_id, len(data), frame_type)
    )
    return header + bytes([checksum(header)]) + data + bytes([checksum(data)])


def type_name(frame_type: int) -> str:
    return STATE_TYPES.get(frame_type) or OTHER_TYPES.get(frame_type) or f"0x{frame_type:04x}"


@dataclass(frozen=True, slots=True)
class Report:
    """One frame: its number, its type, and for fall and presence frames the flag."""

    frame_id: int
    frame_type: int
    state: bool | None

    @property
    def kind(self) -> str | None:
        """``"fall"`` or ``"presence"``; ``None`` for a type this driver does not use."""
        return STATE_TYPES.get(self.frame_type)


def decode(frame: bytes) -> Report:
    """A framed MR60FDA2 frame to its report; ``MalformedReport`` when a fall or
    presence frame has no data byte."""
    frame_id = int.from_bytes(frame[1:3], "big")
    frame_type = int.from_bytes(frame[5:7], "big")
    data = frame[HEADER_SIZE:-1]
    if frame_type not in STATE_TYPES:
        return Report(frame_id, frame_type, None)
    if not data:
        raise MalformedReport(f"{STATE_TYPES[frame_type]} frame without data")
    return Report(frame_id, frame_type, data[0] != 0)
