"""HLK-LD2410 report frames: framing and decoding, no I/O.

The radar streams a report about ten times a second (the HLK-LD2410 serial protocol,
section 2.3; the same layout is read by ESPHome's ``ld2410`` component and Tasmota's
``xsns_102_ld2410``)::

    F4 F3 F2 F1 | len (LE16) | payload (len bytes) | F8 F7 F6 F5

    payload: type (0x02 basic, 0x01 engineering) | 0xAA | target data | 0x55 | 0x00

    target data, basic (9 bytes):
        state (0 none, 1 moving, 2 stationary, 3 both)
        moving target distance cm (LE16) | moving target energy (0-100)
        stationary target distance cm (LE16) | stationary target energy (0-100)
        detection distance cm (LE16)
    engineering adds (after the basic 9):
        max moving gate | max stationary gate
        moving energy of gates 0-8 (9 bytes) | stationary energy of gates 0-8 (9 bytes)
        then, on the LD2410B/C, light level (0-255) and OUT pin state (0/1)

Command acknowledgements (``FD FC FB FA`` ... ``04 03 02 01``) are framed too, so that
they are not taken for garbage, and decode to ``None``: the driver sends no commands.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from drivers.radar import FrameParser, Framing

REPORT_HEAD = b"\xf4\xf3\xf2\xf1"
REPORT_TAIL = b"\xf8\xf7\xf6\xf5"
ACK_HEAD = b"\xfd\xfc\xfb\xfa"
ACK_TAIL = b"\x04\x03\x02\x01"
_TAIL_OF = {REPORT_HEAD: REPORT_TAIL, ACK_HEAD: ACK_TAIL}

GATES = 9  # distance gates 0-8, 0.75 m each by default

#: data type byte -> engineering mode?
_DATA_TYPES: dict[int, bool] = {0x02: False, 0x01: True}
#: target state byte -> (moving, stationary)
_TARGET_STATES: dict[int, tuple[bool, bool]] = {
    0x00: (False, False),
    0x01: (True, False),
    0x02: (False, True),
    0x03: (True, True),
}
_PAYLOAD_HEAD = 0xAA
_PAYLOAD_END = b"\x55\x00"  # end mark, then the check byte (always 0)
# state, moving cm, moving energy, stationary cm, stationary energy, detection cm
_TARGET = struct.Struct("<BHBHBH")
# max moving gate, max stationary gate, moving energies, stationary energies
_GATES = struct.Struct(f"<BB{GATES}s{GATES}s")


class MalformedReport(ValueError):
    """A frame whose framing was fine but whose content is not a report."""


def _check_frame(frame: bytes) -> str | None:
    if frame[-4:] != _TAIL_OF[frame[:4]]:
        return "wrong tail"
    return None


def _check_header(header: bytes) -> str | None:
    return None  # nothing to check before the tail: the length is bounded by max_length


FRAMING = Framing(
    name="ld2410",
    starts=(REPORT_HEAD, ACK_HEAD),
    length_at=4,
    byteorder="little",
    header_size=6,
    overhead=10,  # head 4, length 2, tail 4
    max_length=64,  # an engineering report is 35; a long acknowledgement about 30
    check_header=_check_header,
    check_frame=_check_frame,
)


def parser() -> FrameParser:
    return FrameParser(FRAMING)


@dataclass(frozen=True, slots=True)
class Report:
    """One LD2410 report. Distances in cm, energies 0-100 as the radar gives them."""

    engineering: bool
    moving: bool
    stationary: bool
    moving_distance: int
    moving_energy: int
    stationary_distance: int
    stationary_energy: int
    detection_distance: int
    max_moving_gate: int | None = None
    max_stationary_gate: int | None = None
    moving_gates: tuple[int, ...] = ()
    stationary_gates: tuple[int, ...] = ()
    light: int | None = None
    out_pin: int | None = None

    @property
    def presence(self) -> bool:
        """Someone there: a moving or a stationary target."""
        return self.moving or self.stationary

    def target(self) -> str:
        """For people: ``"moving 1.2 m, stationary 0.8 m"``, or ``"none"``."""
        parts = []
        if self.moving:
            parts.append(f"moving {self.moving_distance / 100:.1f} m")
        if self.stationary:
            parts.append(f"stationary {self.stationary_distance / 100:.1f} m")
        return ", ".join(parts) or "none"

    def energy(self) -> str:
        return f"moving {self.moving_energy}, stationary {self.stationary_energy}"


def decode(frame: bytes) -> Report | None:
    """A framed LD2410 frame to its report; ``None`` for a command acknowledgement.

    Raises ``MalformedReport`` when the payload is not a report the protocol describes.
    """
    if frame[:4] == ACK_HEAD:
        return None
    payload = frame[6:-4]
    if len(payload) < 2 + _TARGET.size + 2:
        raise MalformedReport(f"payload of {len(payload)} bytes is too short for a report")
    engineering = _DATA_TYPES.get(payload[0])
    if engineering is None:
        raise MalformedReport(f"unknown data type 0x{payload[0]:02x}")
    if payload[1] != _PAYLOAD_HEAD:
        raise MalformedReport(f"payload head 0x{payload[1]:02x}, not 0xaa")
    if payload[-2:] != _PAYLOAD_END:
        raise MalformedReport(f"payload end {payload[-2:].hex(' ')}, not 55 00")
    body = payload[2:-2]
    state, m_dist, m_energy, s_dist, s_energy, d_dist = _TARGET.unpack_from(body)
    flags = _TARGET_STATES.get(state)
    if flags is None:
        raise MalformedReport(f"unknown target state 0x{state:02x}")
    moving, stationary = flags
    if not engineering:
        if len(body) != _TARGET.size:
            raise MalformedReport(f"basic target data of {len(body)} bytes, not 9")
        return Report(False, moving, stationary, m_dist, m_energy, s_dist, s_energy, d_dist)
    if len(body) < _TARGET.size + _GATES.size:
        raise MalformedReport(f"engineering target data of {len(body)} bytes is too short")
    max_m, max_s, m_gates, s_gates = _GATES.unpack_from(body, _TARGET.size)
    extra = body[_TARGET.size + _GATES.size :]
    return Report(
        engineering,
        moving,
        stationary,
        m_dist,
        m_energy,
        s_dist,
        s_energy,
        d_dist,
        max_moving_gate=max_m,
        max_stationary_gate=max_s,
        moving_gates=tuple(m_gates),
        stationary_gates=tuple(s_gates),
        light=extra[0] if len(extra) >= 1 else None,
        out_pin=extra[1] if len(extra) >= 2 else None,
    )
