"""The serial radar driver: framing and decoding with published frames, then the real
driver on a pseudo-terminal pair (the radar's side is the master), then the runtime.

LD2410 vectors are the example report frames in Tasmota's ``xsns_102_ld2410.ino`` and in
the HLK-LD2410 protocol notes quoted by ESPHome users; MR60FDA2 vectors follow ESPHome's
``seeed_mr60fda2`` framing, and the checksum is checked against the command frames ESPHome
sends and against frames captured from a Seeed MR60BHA2 (the same framing) in an ESPHome
log (limengdu/MR60BHA2_ESPHome_external_components#3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tomllib
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import serial  # type: ignore[import-untyped]

from agent.clock import LiveClock
from agent.config import validate_config
from agent.errors import ConfigError, TransientError
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap
from agent.messages import AlertMessage, Severity
from agent.runtime import Runtime
from drivers.base import DriverContext, DriverHealth
from drivers.radar import JUNK_REPORT_BYTES, Frame, FrameParser, Junk, ld2410, mr60fda2
from drivers.radar import driver as radar_driver
from drivers.radar.config import RadarConfig
from drivers.radar.driver import MotionGate, PresenceHold, RadarDriver
from drivers.radar.transport import SerialTransport, is_pseudo_terminal

TZ = ZoneInfo("Europe/Amsterdam")


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


# ---- published LD2410 frames (Tasmota xsns_102_ld2410.ino, HLK-LD2410 protocol) ----------
NO_TARGET = hx("F4 F3 F2 F1 0D 00 02 AA 00 00 00 00 00 00 37 00 00 55 00 F8 F7 F6 F5")
BOTH = hx("F4 F3 F2 F1 0D 00 02 AA 03 46 00 34 00 00 3C 00 00 55 00 F8 F7 F6 F5")
STATIONARY = hx("F4 F3 F2 F1 0D 00 02 AA 02 54 00 00 00 00 64 00 00 55 00 F8 F7 F6 F5")
STATIONARY_81 = hx("F4 F3 F2 F1 0D 00 02 AA 02 51 00 00 00 00 3B 00 00 55 00 F8 F7 F6 F5")
BOTH_DETECT = hx("f4 f3 f2 f1 0d 00 02 aa 03 4f 00 64 4c 00 64 32 00 55 00 f8 f7 f6 f5")
ENGINEERING = hx(
    "F4 F3 F2 F1 23 00 01 AA 00 1E 00 00 1E 00 0D 00 00 08 08 13 0E 07 02 05 07 03 04 05"
    " 00 00 0D 06 05 05 05 05 05 62 00 55 00 F8 F7 F6 F5"
)
ACK_CONFIG = hx("FD FC FB FA 08 00 FF 01 00 00 01 00 40 00 04 03 02 01")

# ---- MR60FDA2 frames: SOF, ID, LEN, TYPE, ~XOR header, data, ~XOR data -----------------
FALL_ON = hx("01 00 01 00 01 0E 02 F2 01 FE")
FALL_OFF = hx("01 00 02 00 01 0E 02 F1 00 FF")
PRESENT = hx("01 00 03 00 01 0F 09 FA 01 FE")
ABSENT = hx("01 00 04 00 01 0F 09 FD 00 FF")
# captured from an MR60BHA2 (heart-rate radar, same framing): valid, of no use here
BHA2_CAPTURED = [
    hx("01 69 75 00 04 0A 15 F9 00 00 00 00 FF"),
    hx("01 69 76 00 04 0A 16 F9 00 00 00 00 FF"),
    hx("01 69 77 00 04 0A 14 FA 00 00 00 00 FF"),
]

GARBAGE = hx("00 13 F4 F3 55 AA 01 FF 7E")  # has a partial LD2410 head and an MR60 SOF in it


def frames_of(results: list[Frame | Junk]) -> list[bytes]:
    return [r.data for r in results if isinstance(r, Frame)]


def junk_of(results: list[Frame | Junk]) -> list[Junk]:
    return [r for r in results if isinstance(r, Junk)]


# ---- LD2410 decoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "moving", "stationary", "fields"),
    [
        (NO_TARGET, False, False, (0, 0, 0, 0x37, 0)),
        (BOTH, True, True, (70, 52, 0, 60, 0)),
        (STATIONARY, False, True, (84, 0, 0, 100, 0)),
        (STATIONARY_81, False, True, (81, 0, 0, 59, 0)),
        (BOTH_DETECT, True, True, (79, 100, 76, 100, 50)),
    ],
)
def test_ld2410_published_basic_frames_decode(
    frame: bytes, moving: bool, stationary: bool, fields: tuple[int, ...]
) -> None:
    report = ld2410.decode(frame)
    assert report is not None and not report.engineering
    assert (report.moving, report.stationary, report.presence) == (
        moving,
        stationary,
        moving or stationary,
    )
    got = (
        report.moving_distance,
        report.moving_energy,
        report.stationary_distance,
        report.stationary_energy,
        report.detection_distance,
    )
    assert got == fields


def test_ld2410_engineering_frame_has_the_gates_light_and_out_pin() -> None:
    report = ld2410.decode(ENGINEERING)
    assert report is not None and report.engineering and not report.presence
    assert (report.moving_distance, report.stationary_distance, report.stationary_energy) == (
        30,
        30,
        13,
    )
    assert (report.max_moving_gate, report.max_stationary_gate) == (8, 8)
    assert report.moving_gates == (0x13, 0x0E, 7, 2, 5, 7, 3, 4, 5)
    assert report.stationary_gates == (0, 0, 0x0D, 6, 5, 5, 5, 5, 5)
    assert (report.light, report.out_pin) == (0x62, 0)


def test_ld2410_target_text_is_for_people() -> None:
    both = ld2410.decode(BOTH_DETECT)
    nobody = ld2410.decode(NO_TARGET)
    assert both is not None and nobody is not None
    assert both.target() == "moving 0.8 m, stationary 0.8 m"
    assert nobody.target() == "none"


def test_ld2410_command_acknowledgement_is_a_frame_but_no_report() -> None:
    assert frames_of(ld2410.parser().feed(ACK_CONFIG)) == [ACK_CONFIG]
    assert ld2410.decode(ACK_CONFIG) is None


@pytest.mark.parametrize(
    ("index", "value", "why"),
    [
        (6, 0x05, "unknown data type"),
        (7, 0xAB, "payload head"),
        (8, 0x04, "unknown target state"),
        (17, 0x54, "payload end"),
        (18, 0x01, "payload end"),  # the check byte is always 0
    ],
)
def test_ld2410_bad_payload_is_malformed(index: int, value: int, why: str) -> None:
    frame = bytearray(STATIONARY)
    frame[index] = value
    # the framing is still fine: only decoding can tell
    assert frames_of(ld2410.parser().feed(bytes(frame))) == [bytes(frame)]
    with pytest.raises(ld2410.MalformedReport, match=why):
        ld2410.decode(bytes(frame))


def test_ld2410_basic_report_of_the_wrong_size_is_malformed() -> None:
    payload = STATIONARY[6:-4]
    longer = payload[:-2] + b"\x00" + payload[-2:]
    frame = ld2410.REPORT_HEAD + len(longer).to_bytes(2, "little") + longer + ld2410.REPORT_TAIL
    with pytest.raises(ld2410.MalformedReport, match="not 9"):
        ld2410.decode(frame)


# ---- framing: re-synchronisation ----------------------------------------------------------

LD_STREAM = GARBAGE + NO_TARGET + STATIONARY + GARBAGE + BOTH + ENGINEERING + ACK_CONFIG
LD_FRAMES = [NO_TARGET, STATIONARY, BOTH, ENGINEERING, ACK_CONFIG]
MR_STREAM = GARBAGE + PRESENT + FALL_ON + GARBAGE + BHA2_CAPTURED[0] + FALL_OFF + ABSENT
MR_FRAMES = [PRESENT, FALL_ON, BHA2_CAPTURED[0], FALL_OFF, ABSENT]


def summary(results: list[Frame | Junk]) -> tuple[list[bytes], list[tuple[int, bool]]]:
    return frames_of(results), [(j.size, j.leading) for j in junk_of(results)]


@pytest.mark.parametrize(
    ("make", "stream", "expected"),
    [(ld2410.parser, LD_STREAM, LD_FRAMES), (mr60fda2.parser, MR_STREAM, MR_FRAMES)],
    ids=["ld2410", "mr60fda2"],
)
def test_a_stream_split_at_every_offset_gives_the_same_frames(
    make: Callable[[], FrameParser], stream: bytes, expected: list[bytes]
) -> None:
    whole = make().feed(stream)
    frames, junk = summary(whole)
    assert frames == expected
    # the garbage before the first frame is "leading", the one between frames is not
    assert junk == [(len(GARBAGE), True), (len(GARBAGE), False)]
    for cut in range(1, len(stream)):
        parser = make()
        assert summary(parser.feed(stream[:cut]) + parser.feed(stream[cut:])) == (frames, junk)
        assert parser.pending == 0
    parser = make()
    byte_by_byte = [r for b in stream for r in parser.feed(bytes([b]))]
    assert summary(byte_by_byte) == (frames, junk)


def test_ld2410_truncated_frame_then_a_good_one() -> None:
    parser = ld2410.parser()
    results = parser.feed(STATIONARY + BOTH[:12] + NO_TARGET + BOTH)
    assert frames_of(results) == [STATIONARY, NO_TARGET, BOTH]
    assert [(j.reason, j.size) for j in junk_of(results)] == [("wrong tail", 12)]


@pytest.mark.parametrize(
    ("make", "frames"),
    [(ld2410.parser, (STATIONARY, BOTH, NO_TARGET)), (mr60fda2.parser, (FALL_ON, PRESENT, ABSENT))],
    ids=["ld2410", "mr60fda2"],
)
def test_garbage_inside_a_frame_or_a_cut_frame_costs_only_that_frame(
    make: Callable[[], FrameParser], frames: tuple[bytes, bytes, bytes]
) -> None:
    first, second, third = frames
    for cut in range(1, len(first)):
        spoiled = first[:cut] + GARBAGE + first[cut:]  # noise on the line mid-frame
        results = make().feed(spoiled + second + first[:cut] + third)  # and a cut-off one
        assert frames_of(results) == [second, third], cut
        assert sum(j.size for j in junk_of(results)) == len(spoiled) + cut


def test_ld2410_wrong_tail_drops_only_that_frame() -> None:
    bad = STATIONARY[:-1] + b"\xf4"
    results = ld2410.parser().feed(NO_TARGET + bad + BOTH)
    assert frames_of(results) == [NO_TARGET, BOTH]
    assert [j.reason for j in junk_of(results)] == ["wrong tail"]


def test_ld2410_impossible_length_is_dropped_without_waiting() -> None:
    parser = ld2410.parser()
    results = parser.feed(ld2410.REPORT_HEAD + b"\xff\x00" + STATIONARY)
    assert frames_of(results) == [STATIONARY]
    assert junk_of(results)[0].reason == "length 255 over 64"
    assert parser.pending == 0


def test_mr60fda2_wrong_checksums_drop_only_that_frame() -> None:
    bad_head = bytearray(FALL_ON)
    bad_head[7] ^= 0x01
    bad_data = bytearray(PRESENT)
    bad_data[-1] ^= 0x80
    parser = mr60fda2.parser()
    results = parser.feed(ABSENT + bytes(bad_head) + FALL_OFF + bytes(bad_data) + PRESENT)
    assert frames_of(results) == [ABSENT, FALL_OFF, PRESENT]
    reasons = [j.reason for j in junk_of(results)]
    assert reasons == ["wrong header checksum", "wrong data checksum"]


def test_a_truncated_frame_is_given_up_when_the_line_goes_quiet() -> None:
    """A cut-off long frame must not hold back the fall frame behind it for long."""
    cloud = mr60fda2.encode(7, 0x0A08, bytes(range(200)))
    parser = mr60fda2.parser()
    assert parser.feed(cloud[:40] + FALL_ON) == []  # it could still be the long frame
    assert parser.pending == 40 + len(FALL_ON)
    results = parser.abandon()
    assert frames_of(results) == [FALL_ON]
    assert [(j.reason, j.size) for j in junk_of(results)] == [("truncated frame", 40)]
    assert parser.pending == 0


def test_the_buffer_stays_bounded_under_endless_garbage() -> None:
    rng = random.Random(2410)
    for make in (ld2410.parser, mr60fda2.parser):
        parser = make()
        dropped = 0
        for _ in range(200):
            results = parser.feed(rng.randbytes(1000))
            assert not frames_of(results)
            dropped += sum(j.size for j in junk_of(results))
            assert parser.pending <= parser.framing.max_frame
        # junk is reported as it piles up, not only when a good frame comes
        assert dropped >= 200 * 1000 - JUNK_REPORT_BYTES - parser.framing.max_frame
        assert frames_of(parser.feed(NO_TARGET if make is ld2410.parser else FALL_ON))


# ---- MR60FDA2 decoding ----------------------------------------------------------------------


def test_mr60fda2_checksum_is_the_inverted_xor_esphome_uses() -> None:
    # ESPHome's "get radar parameters" and "reset radar" commands end in their header checksum
    assert mr60fda2.checksum(hx("01 00 00 00 00 0E 06")) == 0xF6
    assert mr60fda2.checksum(hx("01 00 00 00 00 21 10")) == 0xCF
    assert mr60fda2.checksum(hx("00 00 00 00")) == 0xFF
    assert mr60fda2.encode(1, mr60fda2.FALL, b"\x01") == FALL_ON


def test_mr60fda2_captured_frames_of_other_types_are_valid_but_unused() -> None:
    results = mr60fda2.parser().feed(b"".join(BHA2_CAPTURED))
    assert frames_of(results) == BHA2_CAPTURED and not junk_of(results)
    reports = [mr60fda2.decode(f) for f in BHA2_CAPTURED]
    assert [(r.frame_id, r.frame_type, r.kind, r.state) for r in reports] == [
        (0x6975, 0x0A15, None, None),
        (0x6976, 0x0A16, None, None),
        (0x6977, 0x0A14, None, None),
    ]


@pytest.mark.parametrize(
    ("frame", "kind", "state"),
    [(FALL_ON, "fall", True), (FALL_OFF, "fall", False), (PRESENT, "presence", True),
     (ABSENT, "presence", False)],
)  # fmt: skip
def test_mr60fda2_fall_and_presence_frames_decode(frame: bytes, kind: str, state: bool) -> None:
    report = mr60fda2.decode(frame)
    assert (report.kind, report.state) == (kind, state)


def test_mr60fda2_fall_frame_without_data_is_malformed() -> None:
    empty = mr60fda2.encode(9, mr60fda2.FALL, b"")
    assert frames_of(mr60fda2.parser().feed(empty)) == [empty]
    with pytest.raises(mr60fda2.MalformedReport):
        mr60fda2.decode(empty)


# ---- event logic --------------------------------------------------------------------------


def test_presence_rises_at_once_and_falls_only_after_the_hold() -> None:
    hold = PresenceHold(10.0)
    assert hold.update(False, 0.0) is None  # unknown, not yet held long enough
    assert hold.update(False, 10.0) is False  # nobody at start: said once, after the hold
    assert hold.update(False, 11.0) is None
    assert hold.update(True, 12.0) is True
    assert [hold.update(True, t) for t in (12.1, 12.2)] == [None, None]
    assert hold.update(False, 20.0) is None
    assert hold.due() == 30.0
    assert hold.update(True, 29.0) is None  # back within the hold: no flap
    assert hold.update(False, 30.0) is None
    assert hold.tick(39.9) is None
    assert hold.tick(40.0) is False
    assert hold.due() == float("inf")


def test_motion_is_said_at_most_once_an_interval() -> None:
    gate = MotionGate(60.0)
    assert gate.update(False, 0.0) is None
    assert gate.update(True, 1.0) is True
    assert [gate.update(True, t) for t in (1.1, 30.0, 60.9)] == [None, None, None]
    assert gate.update(True, 61.0) is True  # still moving a minute later: activity again
    assert gate.update(False, 62.0) is None
    assert gate.tick(120.9) is None
    assert gate.tick(121.0) is False
    assert gate.update(True, 122.0) is True


# ---- configuration -------------------------------------------------------------------------


def radar(**over: Any) -> dict[str, Any]:
    return {"type": "radar", "model": "ld2410", "port": "/dev/ttyUSB0", "sensor": "r1", **over}


def test_config_defaults_follow_the_model() -> None:
    ld = RadarConfig.model_validate(radar())
    assert (ld.baudrate, ld.stall_after, ld.presence_hold, ld.motion) == (256000, 10.0, 10.0, True)
    assert ld.read_every == 2.0  # ten reports a second, gathered: one wake-up every 2 s
    mr = RadarConfig.model_validate(radar(model="mr60fda2"))
    assert (mr.baudrate, mr.stall_after, mr.read_every) == (115200, None, 0.0)  # falls at once
    own = RadarConfig.model_validate(radar(baudrate=115200, stall_after="30s", presence_hold="1m"))
    assert (own.baudrate, own.stall_after, own.presence_hold) == (115200, 30.0, 60.0)
    # a short stall limit gathers less by itself, so a healthy radar is never taken for lost
    assert RadarConfig.model_validate(radar(stall_after="3s")).read_every == 1.0
    assert RadarConfig.model_validate(radar(read_every="500ms")).read_every == 0.5


@pytest.mark.parametrize(
    ("over", "where"),
    [
        ({"model": "mr60fda2", "motion": False}, "motion applies to model ld2410 only"),
        ({"model": "ld2450"}, "drivers[0].model"),
        ({"sensor": "bad id"}, "drivers[0].sensor"),
        ({"baudrate": 0}, "drivers[0].baudrate"),
        ({"presence_hold": "soon"}, "drivers[0].presence_hold"),
        ({"read_every": "6s"}, "drivers[0].read_every"),
        ({"read_every": "2s", "stall_after": "3s"}, "at most a third of stall_after"),
        ({"parity": "N"}, "drivers[0].parity: unknown key"),
    ],
)
def test_config_problems_are_named(over: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"hub": {"id": "h-1"}, "drivers": [radar(**over)]})
    assert where in str(err.value)


def test_the_sample_configuration_is_valid() -> None:
    sample = Path(__file__).parents[1] / "drivers" / "radar" / "sample.toml"
    config = validate_config({"hub": {"id": "h-1"}, **tomllib.loads(sample.read_text())})
    (driver,) = config.drivers
    assert isinstance(driver, RadarConfig) and driver.model == "ld2410"


# ---- the real driver on a pseudo-terminal ---------------------------------------------------


class Pty:
    """A pseudo-terminal pair: the driver opens the slave by path, the test is the radar."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no line discipline before the driver opens it
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.open = True

    def write(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.master, data)

    def close(self) -> None:
        """Unplug: the radar's side goes away."""
        if self.open:
            self.open = False
            os.close(self.master)
            os.close(self.slave)


@pytest.fixture
def ptys() -> Iterator[Callable[[], Pty]]:
    made: list[Pty] = []

    def make() -> Pty:
        made.append(Pty())
        return made[-1]

    yield make
    for p in made:
        p.close()


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``cond`` until it holds; fail after ``timeout`` (a bound, not a speed test)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def stream_until(
    pty: Pty, frame: bytes, cond: Callable[[], bool], every: float = 0.03
) -> None:
    """Send ``frame`` again and again, as the radar does, until ``cond`` holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 10.0
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        pty.write(frame)
        await asyncio.sleep(every)


class Harness:
    """A radar driver with a real context, outside the runtime."""

    def __init__(self, sensors: dict[str, Any] | None = None, **over: Any) -> None:
        self.events: list[SensorEvent] = []
        self.health = DriverHealth(name="radar-test")
        home = HomeMap.model_validate(
            {"sensors": sensors or {"r1": {"room": "Bedroom", "role": "bedroom"}}}
        )
        self.cfg = RadarConfig.model_validate(radar(**over))
        ctx = DriverContext(
            clock=LiveClock(TZ, synced=True),
            emit=self.events.append,
            home=home,
            health=self.health,
            log=logging.getLogger("drivers.radar-test"),
        )
        self.driver = RadarDriver(self.cfg, ctx)
        self.task: asyncio.Task[None] | None = None

    def seen(self) -> list[tuple[EventKind, float]]:
        return [(e.kind, e.value) for e in self.events]

    def opened(self) -> bool:
        return self.health.details.get("link", "").startswith("open")

    async def start(self) -> None:
        self.task = asyncio.create_task(self.driver.run())
        await wait_until(lambda: self.opened() or (self.task is not None and self.task.done()))

    async def stop(self) -> BaseException | None:
        assert self.task is not None
        if not self.task.done():
            self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            return None
        except Exception as err:
            return err
        finally:
            await self.driver.close()
        return None


def test_ld2410_on_a_pty_reports_presence_and_motion_on_change(
    ptys: Callable[[], Pty],
) -> None:
    pty = ptys()

    async def scenario() -> Harness:
        h = Harness(port=pty.path, presence_hold="0.3s", motion_interval="0.3s", read_every=0)
        await h.start()
        # someone sitting still: ten reports a second, one presence event
        await stream_until(pty, STATIONARY, lambda: h.driver.frames >= 20)
        assert h.seen() == [(EventKind.PRESENCE, 1.0)]
        assert h.health.details["target"] == "stationary 0.0 m"
        # a second of moving about, in one burst: one motion event
        pty.write(BOTH * 10)
        await wait_until(lambda: h.driver.frames >= 30)
        assert h.seen()[1:] == [(EventKind.MOTION, 1.0)]
        assert h.health.details["target"] == "moving 0.7 m, stationary 0.0 m"
        assert h.health.details["energy"] == "moving 52, stationary 60"
        # still again: motion clears after its interval, presence stays
        await stream_until(pty, STATIONARY, lambda: len(h.events) >= 3)
        assert h.seen()[2:] == [(EventKind.MOTION, 0.0)]
        # gone: presence 0 once the hold has passed, and only once
        await stream_until(pty, NO_TARGET, lambda: len(h.events) >= 4)
        frames = h.driver.frames
        await stream_until(pty, NO_TARGET, lambda: h.driver.frames >= frames + 10)
        assert h.seen()[3:] == [(EventKind.PRESENCE, 0.0)]
        assert h.health.details["target"] == "none"
        assert h.health.malformed_count == 0
        assert await h.stop() is None
        return h

    h = asyncio.run(scenario())
    assert all(e.sensor == "r1" for e in h.events)
    assert h.health.events == 4
    assert h.health.details["link"] == "closed"


def test_ld2410_reports_are_gathered_into_a_few_wake_ups_and_none_is_lost(
    ptys: Callable[[], Pty],
) -> None:
    """Ten reports a second would wake the hub ten times a second: with ``read_every``
    the kernel gathers them and one read takes them all."""
    pty = ptys()

    async def scenario() -> tuple[int, int, int]:
        h = Harness(port=pty.path, read_every="0.5s")
        await h.start()
        for _ in range(30):  # 1.5 s of a person sitting still
            pty.write(STATIONARY)
            await asyncio.sleep(0.05)
        await wait_until(lambda: h.driver.frames == 30)
        assert h.driver._transport is not None
        wakes = h.driver._transport.wakes
        assert await h.stop() is None
        return h.driver.frames, h.health.malformed_count, wakes

    frames, malformed, wakes = asyncio.run(scenario())
    assert (frames, malformed) == (30, 0)
    assert wakes <= 6, wakes  # about one a half second, not thirty


def test_a_frame_split_across_gathered_reads_is_not_junk(ptys: Callable[[], Pty]) -> None:
    """The rest of a frame may come with the next gathered read: waiting for it is no
    quiet line."""
    pty = ptys()

    async def scenario() -> tuple[int, int]:
        h = Harness(port=pty.path, read_every="1s")
        await h.start()
        pty.write(STATIONARY)
        await wait_until(lambda: h.driver.frames == 1)  # read now; the next read in 1 s
        pty.write(STATIONARY[:7])  # taken by the next read, alone
        await asyncio.sleep(1.2)
        pty.write(STATIONARY[7:])  # taken a second after that
        await wait_until(lambda: h.driver.frames == 2)
        assert await h.stop() is None
        return h.driver.frames, h.health.malformed_count

    assert asyncio.run(scenario()) == (2, 0)


def test_mr60fda2_on_a_pty_reports_falls_and_drops_garbage(ptys: Callable[[], Pty]) -> None:
    pty = ptys()

    async def scenario() -> Harness:
        h = Harness(model="mr60fda2", port=pty.path, presence_hold=0)
        await h.start()
        assert h.health.details["link"] == "open at 115200 baud"
        pty.write(PRESENT + FALL_ON)
        await wait_until(lambda: len(h.events) >= 2)
        assert h.seen() == [(EventKind.PRESENCE, 1.0), (EventKind.FALL, 1.0)]
        # garbage between frames: counted, dropped, and the next frames still decode
        pty.write(FALL_ON + GARBAGE + BHA2_CAPTURED[1] + GARBAGE[:4])
        await asyncio.sleep(0.05)
        pty.write(GARBAGE[4:] + FALL_OFF + ABSENT)
        await wait_until(lambda: len(h.events) >= 4)
        assert h.seen()[2:] == [(EventKind.FALL, 0.0), (EventKind.PRESENCE, 0.0)]
        # two runs of garbage; the second, split across two reads, still counts once
        assert h.health.malformed_count == 2
        assert h.health.details["other frames"] == "1"  # the heart-rate frame: valid, unused
        assert h.health.details["fall"] == "no"
        assert await h.stop() is None
        return h

    asyncio.run(scenario())


def test_unplugging_the_radar_ends_the_driver_with_a_transient_error(
    ptys: Callable[[], Pty],
) -> None:
    pty = ptys()

    async def scenario() -> BaseException | None:
        h = Harness(port=pty.path)
        await h.start()
        await stream_until(pty, STATIONARY, lambda: bool(h.events))
        pty.close()
        assert h.task is not None
        await wait_until(h.task.done)
        return await h.stop()

    err = asyncio.run(scenario())
    assert isinstance(err, TransientError)
    assert f"radar at {pty.path} is gone" in str(err)


def test_a_device_node_that_vanishes_quietly_ends_the_driver(
    ptys: Callable[[], Pty], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(radar_driver, "PRESENT_CHECK", 0.2)  # 5 s on a hub
    pty = ptys()
    link = tmp_path / "usb-Seeed_MR60FDA2-if00"
    link.symlink_to(pty.path)

    async def scenario() -> BaseException | None:
        h = Harness(model="mr60fda2", port=str(link))
        await h.start()
        pty.write(PRESENT)
        await wait_until(lambda: bool(h.events))
        link.unlink()  # udev removes the by-id link; the old descriptor stays silent
        assert h.task is not None
        await wait_until(h.task.done)
        return await h.stop()

    err = asyncio.run(scenario())
    assert isinstance(err, TransientError) and "vanished" in str(err)


def test_a_silent_ld2410_is_a_lost_device(ptys: Callable[[], Pty]) -> None:
    pty = ptys()

    async def scenario() -> BaseException | None:
        h = Harness(port=pty.path, stall_after="0.3s")
        assert h.cfg.read_every == pytest.approx(0.1)
        await h.start()
        pty.write(b"\x00\x11\x22" * 10)  # the wrong baud rate looks like this
        assert h.task is not None
        await wait_until(h.task.done)
        return await h.stop()

    err = asyncio.run(scenario())
    assert isinstance(err, TransientError)
    assert "no frame from the radar" in str(err) and "baud rate" in str(err)


def test_no_device_and_not_a_serial_port_are_transient(tmp_path: Path) -> None:
    log = logging.getLogger("test")

    async def scenario() -> None:
        with pytest.raises(TransientError, match=f"no device at {tmp_path}/ttyUSB9"):
            SerialTransport(str(tmp_path / "ttyUSB9"), 256000, log).open()
        plain = tmp_path / "plain"
        plain.write_bytes(b"")
        with pytest.raises(TransientError, match="cannot open"):
            SerialTransport(str(plain), 256000, log).open()

    asyncio.run(scenario())


def test_a_port_is_read_by_one_driver_at_a_time(ptys: Callable[[], Pty]) -> None:
    pty = ptys()
    log = logging.getLogger("test")

    async def scenario() -> None:
        first = SerialTransport(pty.path, 256000, log)
        first.open()
        try:
            with pytest.raises(TransientError, match="exclusively lock"):
                SerialTransport(pty.path, 256000, log).open()
        finally:
            first.close()
        again = SerialTransport(pty.path, 256000, log)
        again.open()  # free again once the first let go
        again.close()

    asyncio.run(scenario())


def test_a_pty_that_refuses_256000_baud_is_opened_anyway(
    ptys: Callable[[], Pty], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Some kernels refuse the custom-rate ioctl on a pseudo-terminal; it has no speed."""
    pty = ptys()
    log = logging.getLogger("test")
    assert is_pseudo_terminal(pty.path) and not is_pseudo_terminal("/dev/null")

    async def open_at(rate: int) -> int | None:
        port = SerialTransport(pty.path, rate, log)
        port.open()
        port.close()
        return port.opened_at

    assert asyncio.run(open_at(256000)) == 256000  # this kernel takes it

    def refuse(self: Any, baudrate: int) -> None:  # what an older kernel answers
        raise ValueError(f"Failed to set custom baud rate ({baudrate}): [Errno 22]")

    monkeypatch.setattr(serial.Serial, "_set_special_baudrate", refuse)
    with caplog.at_level(logging.INFO, logger="test"):
        assert asyncio.run(open_at(256000)) == 38400
    assert "refuses 256000 baud" in caplog.text


def test_a_radar_not_in_the_home_map_sends_nothing(
    ptys: Callable[[], Pty], caplog: pytest.LogCaptureFixture
) -> None:
    pty = ptys()

    async def scenario() -> Harness:
        h = Harness(sensors={"other": {"room": "Hall", "role": "hallway"}}, port=pty.path)
        await h.start()
        await stream_until(pty, BOTH, lambda: h.driver.frames >= 5)
        await h.stop()
        return h

    with caplog.at_level(logging.INFO):
        h = asyncio.run(scenario())
    assert h.events == []
    assert caplog.text.count("'r1' is not in the home map") == 1


# ---- through the runtime ----------------------------------------------------------------------


@pytest.fixture
def fast_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.runtime.DRIVER_BACKOFF_MIN", 0.01)


def point(link: Path, target: str) -> None:
    """Re-point ``link`` at ``target`` at once, as udev does with /dev/serial/by-id."""
    tmp = link.with_suffix(".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def recording(runtime: Runtime) -> list[SensorEvent]:
    """Every event the engine receives (the engine still gets each one)."""
    seen: list[SensorEvent] = []
    engine_on_event = runtime.engine.on_event

    def record(event: SensorEvent) -> None:
        seen.append(event)
        engine_on_event(event)

    runtime.engine.on_event = record  # type: ignore[method-assign]
    return seen


@pytest.mark.usefixtures("fast_restart")
def test_a_replugged_radar_is_read_again_after_the_runtime_restarts_it(
    ptys: Callable[[], Pty], tmp_path: Path
) -> None:
    first = ptys()
    link = tmp_path / "usb-1a86_USB_Serial-if00-port0"
    point(link, first.path)
    config = validate_config(
        {
            "hub": {"id": "h-radar"},
            "uplink": {"type": "memory"},
            "home": {"sensors": {"bed.radar": {"room": "Bedroom", "role": "bedroom"}}},
            "drivers": [
                {"type": "radar", "name": "bedroom-radar", "model": "ld2410",
                 "port": str(link), "sensor": "bed.radar", "presence_hold": "0.2s"},
            ],
        }
    )  # fmt: skip
    runtime = Runtime(config, clock=LiveClock(TZ, synced=True))
    seen = recording(runtime)

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        await wait_until(lambda: "bedroom-radar" in runtime.driver_health)
        health = runtime.driver_health["bedroom-radar"]
        await stream_until(first, STATIONARY, lambda: len(seen) >= 1)
        first.close()  # unplugged
        await wait_until(lambda: health.restarts >= 1)
        assert health.last_error is not None and "TransientError" in health.last_error
        second = ptys()  # plugged back in: a new device node, the same by-id link
        point(link, second.path)
        await wait_until(lambda: health.details.get("link", "").startswith("open"))
        await stream_until(second, NO_TARGET, lambda: len(seen) >= 2)
        await stream_until(second, BOTH, lambda: len(seen) >= 4)
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    assert [(e.sensor, e.kind, e.value) for e in seen] == [
        ("bed.radar", EventKind.PRESENCE, 1.0),  # before the unplug
        ("bed.radar", EventKind.PRESENCE, 0.0),  # after it: nobody there now
        ("bed.radar", EventKind.PRESENCE, 1.0),
        ("bed.radar", EventKind.MOTION, 1.0),
    ]
    assert runtime.stats.unknown_sensors == {}


@pytest.mark.usefixtures("fast_restart")
def test_a_fall_on_the_mr60fda2_raises_an_urgent_alert_and_ld2410_presence_reaches_the_engine(
    ptys: Callable[[], Pty],
) -> None:
    bedroom, bathroom = ptys(), ptys()
    config = validate_config(
        {
            "hub": {"id": "h-radar"},
            "uplink": {"type": "memory"},
            "home": {
                "sensors": {
                    "bed.radar": {"room": "Bedroom", "role": "bedroom", "kind": "presence"},
                    "bath.fall": {"room": "Bathroom", "role": "bathroom", "kind": "fall"},
                }
            },
            "drivers": [
                {"type": "radar", "name": "bedroom-radar", "model": "ld2410",
                 "port": bedroom.path, "sensor": "bed.radar", "presence_hold": "0.2s"},
                {"type": "radar", "name": "bathroom-fall", "model": "mr60fda2",
                 "port": bathroom.path, "sensor": "bath.fall"},
            ],
        }
    )  # fmt: skip
    alerts: list[AlertMessage] = []
    runtime = Runtime(config, clock=LiveClock(TZ, synced=True), alert_hook=alerts.append)
    seen = recording(runtime)

    def kinds() -> list[tuple[str, EventKind, float]]:
        return [(e.sensor, e.kind, e.value) for e in seen]

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        await wait_until(lambda: len(runtime.driver_health) == 2)
        falls = runtime.driver_health["bathroom-fall"]
        await stream_until(bedroom, BOTH, lambda: ("bed.radar", EventKind.PRESENCE, 1.0) in kinds())
        await wait_until(lambda: falls.details.get("link", "").startswith("open"))
        await stream_until(
            bathroom, PRESENT + FALL_ON, lambda: any(a.kind == "fall" for a in alerts)
        )
        # the person gets up and is seen in the bedroom again: the fall alert resolves
        await stream_until(bathroom, FALL_OFF + ABSENT, lambda: falls.details.get("fall") == "no")
        await stream_until(
            bedroom, NO_TARGET, lambda: ("bed.radar", EventKind.PRESENCE, 0.0) in kinds()
        )
        await stream_until(bedroom, BOTH, lambda: sum(a.kind == "fall" for a in alerts) >= 2)
        runtime.request_stop()
        await task

    asyncio.run(scenario())
    raised, resolved = [a for a in alerts if a.kind == "fall"]
    assert (raised.kind, raised.severity, raised.state.value, raised.room) == (
        "fall",
        Severity.URGENT,
        "raised",
        "Bathroom",
    )
    assert (resolved.kind, resolved.state.value) == ("fall", "resolved")
    assert "Bedroom" in resolved.summary
    assert kinds().count(("bath.fall", EventKind.FALL, 1.0)) == 1  # sent on change only
    assert runtime.stats.alerts["fall:raised"] == 1
    assert runtime.health.last_seen.keys() == {"bed.radar", "bath.fall"}
    assert sum(h.malformed_count for h in runtime.driver_health.values()) == 0
