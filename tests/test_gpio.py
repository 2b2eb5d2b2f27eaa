"""The GPIO driver on gpiozero's own mock pins: edges in, events out, LED and buzzer."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gpiozero import Device, DigitalInputDevice  # type: ignore[import-untyped]
from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]

from agent.clock import LiveClock
from agent.config import validate_config
from agent.errors import ConfigError, TransientError
from agent.events import EventKind, SensorEvent
from agent.homemap import HomeMap
from agent.messages import AlertMessage, AlertState, Severity
from agent.runtime import Runtime
from drivers.base import DriverContext, DriverHealth, Indication
from drivers.gpio import driver as gpio_driver
from drivers.gpio.config import GpioConfig
from drivers.gpio.driver import GpioDriver
from drivers.gpio.pins import (
    INDICATIONS,
    STEADY,
    Blink,
    events_for,
    is_active,
    parse_pin,
)

pytestmark = pytest.mark.timeout(60)

TZ = ZoneInfo("Europe/Amsterdam")
CLOCK = LiveClock(TZ, synced=True)
SAMPLE = Path(__file__).resolve().parents[1] / "drivers" / "gpio" / "sample.toml"
WAIT = 10.0  # generous: every wait ends as soon as its condition holds

HOME = {
    "sensors": {
        "hall_pir": {"room": "Hall", "role": "hallway", "kind": "motion"},
        "front_door": {"room": "Hall", "role": "front_door", "kind": "contact"},
        "help_button": {"room": "Living", "role": "wearable", "kind": "button"},
    }
}
PIR, DOOR, BUTTON, LED_PIN, BUZZER_PIN = 17, 27, 22, 5, 6
INPUTS = [
    {"sensor": "hall_pir", "pin": PIR, "kind": "motion"},
    {"sensor": "front_door", "pin": DOOR, "kind": "contact"},
    {"sensor": "help_button", "pin": BUTTON, "kind": "button", "long_press": 0.4},
]


@pytest.fixture
def factory() -> Iterator[Any]:
    """gpiozero's mock pins; ``pin_factory = "mock"`` drivers use this one."""
    saved = Device.pin_factory
    mock = MockFactory()
    Device.pin_factory = mock
    try:
        yield mock
    finally:
        mock.reset()
        Device.pin_factory = saved


async def until(ready: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not ready():
                await asyncio.sleep(0.005)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


class Harness:
    """One driver with a recording emit, run inside the test's event loop."""

    def __init__(self, raw: dict[str, Any], home: dict[str, Any] | None = None) -> None:
        self.events: list[SensorEvent] = []
        self.emit_threads: set[int] = set()
        self.health = DriverHealth(name="gpio")
        cfg = GpioConfig.model_validate({"pin_factory": "mock", **raw})
        ctx = DriverContext(
            clock=CLOCK,
            emit=self._emit,
            home=HomeMap.model_validate(HOME if home is None else home),
            health=self.health,
            log=logging.getLogger("drivers.gpio-test"),
        )
        self.driver = GpioDriver(cfg, ctx)
        self.task: asyncio.Task[None] | None = None

    def _emit(self, event: SensorEvent) -> None:
        self.emit_threads.add(threading.get_ident())
        self.events.append(event)

    def values(self, sensor: str | None = None) -> list[tuple[str, EventKind, float]]:
        return [(e.sensor, e.kind, e.value) for e in self.events if sensor in (None, e.sensor)]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Harness]:
        """The driver's ``run`` as a task; at the end it is cancelled and closed, as the
        runtime does, and an error it ended with is raised."""
        task = self.task = asyncio.create_task(self.driver.run())
        try:
            await until(
                lambda: "pins" in self.health.details or task.done(),
                "the driver to open its pins",
            )
            if task.done():
                task.result()
            yield self
        finally:
            task.cancel()
            (outcome,) = await asyncio.gather(task, return_exceptions=True)
            await self.driver.close()
        if isinstance(outcome, Exception):
            raise outcome


def has_events(h: Harness, n: int) -> bool:
    return len(h.events) >= n


def run(coro: Any) -> Any:
    """asyncio in debug mode: a loop call from another thread raises at once."""
    return asyncio.run(coro, debug=True)


# ---- pure helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "bcm"),
    [(17, 17), ("17", 17), ("GPIO17", 17), ("bcm4", 4), ("BOARD11", 17), ("BOARD13", 27),
     ("board40", 21), (0, 0), (27, 27)],
)  # fmt: skip
def test_pins_are_read_as_bcm_numbers(written: object, bcm: int) -> None:
    assert parse_pin(written) == bcm


@pytest.mark.parametrize(
    ("written", "message"),
    [(28, "GPIO28 does not exist"), (-1, "does not exist"), ("BOARD1", "not a GPIO pin"),
     ("BOARD6", "not a GPIO pin"), ("GPIO", "not a pin"), ("pin 4", "not a pin"),
     (True, "BCM number"), (4.0, "BCM number")],
)  # fmt: skip
def test_impossible_pins_are_refused(written: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pin(written)


def test_levels_mean_what_the_wiring_says() -> None:
    # a reed to ground with a pull-up: high = open; a button to ground: low = pressed
    assert is_active(True, "high") and not is_active(False, "high")
    assert is_active(False, "low") and not is_active(True, "low")
    assert events_for("contact", True) == ((EventKind.CONTACT, 1.0),)
    assert events_for("contact", False) == ((EventKind.CONTACT, 0.0),)
    assert events_for("motion", True) == ((EventKind.MOTION, 1.0),)
    assert events_for("motion", False) == ((EventKind.MOTION, 0.0),)
    assert events_for("button", True) == ((EventKind.BUTTON, 1.0),)
    assert events_for("button", False) == ()


def test_every_indication_has_a_pattern() -> None:
    assert set(INDICATIONS) == set(Indication)
    assert INDICATIONS[Indication.UPLINK_UP].led == STEADY
    down = INDICATIONS[Indication.UPLINK_DOWN].led
    assert isinstance(down, Blink) and down.n is None and down.on >= 0.5  # slow, lasting
    test = INDICATIONS[Indication.SELF_TEST]
    assert test.buzzer is not None and test.buzzer.n == 2
    assert isinstance(test.led, Blink) and test.led.duration == pytest.approx(2.0)
    help_ = INDICATIONS[Indication.HELP_RAISED]
    assert help_.buzzer is not None and help_.buzzer.n == 3 and help_.led is None


# ---- configuration -----------------------------------------------------------------------


def problems(driver: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        validate_config({"hub": {"id": "h-1"}, "drivers": [{"type": "gpio", **driver}]})
    return [str(p) for p in err.value.problems]


def test_the_sample_validates_with_the_documented_defaults() -> None:
    config = validate_config({"hub": {"id": "h-1"}, **tomllib.loads(SAMPLE.read_text())})
    (cfg,) = config.drivers
    assert isinstance(cfg, GpioConfig)
    pir, door, button = cfg.inputs
    assert (pir.wiring.pull, pir.wiring.active_when) == ("down", "high")
    assert (door.wiring.pull, door.wiring.active_when) == ("up", "high")  # high = open
    assert (button.wiring.pull, button.wiring.active_when) == ("up", "low")
    assert button.hold_time == 2.0 and pir.hold_time is None
    assert cfg.led is not None and cfg.led.pin == 5 and cfg.pin_factory == "auto"
    assert GpioDriver(cfg, _ctx()).sensors() == ["hall_pir", "front_door", "help_button"]


def _ctx() -> DriverContext:
    return DriverContext(
        clock=CLOCK,
        emit=lambda e: None,
        home=HomeMap(),
        health=DriverHealth(name="gpio"),
        log=logging.getLogger("x"),
    )


@pytest.mark.parametrize(
    ("driver", "where", "message"),
    [
        ({"inputs": [INPUTS[0], {**INPUTS[1], "pin": "GPIO17"}]}, "drivers[0]",
         "inputs[1].pin: GPIO17 is already used by inputs[0].pin"),
        ({"inputs": [INPUTS[0]], "led": {"pin": "BOARD11"}}, "drivers[0]",
         "led.pin: GPIO17 is already used by inputs[0].pin"),
        ({"inputs": INPUTS, "buzzer": {"pin": 5}, "led": {"pin": 5}}, "drivers[0]",
         "buzzer.pin: GPIO5 is already used by led.pin"),
        ({"inputs": [INPUTS[0], {**INPUTS[0], "pin": 4}]}, "drivers[0]",
         "inputs[1].sensor: 'hall_pir' is already on inputs[0]"),
        ({"inputs": [{**INPUTS[0], "kind": "radar"}]}, "drivers[0].inputs[0].kind",
         "'motion', 'contact' or 'button'"),
        ({"inputs": [{**INPUTS[0], "pin": 40}]}, "drivers[0].inputs[0].pin",
         "GPIO40 does not exist"),
        ({"inputs": [{**INPUTS[0], "long_press": "2s"}]}, "drivers[0].inputs[0]",
         "long_press is for buttons only"),
        ({"inputs": [{**INPUTS[1], "pin": 2, "pull": "none"}]}, "drivers[0].inputs[0]",
         "GPIO2 has a pull-up resistor on the board"),
        ({"inputs": [{**INPUTS[0], "sensor": "hall pir"}]}, "drivers[0].inputs[0].sensor",
         "should match pattern"),
        ({"inputs": [{**INPUTS[0], "active_when": "up"}]}, "drivers[0].inputs[0].active_when",
         "'high' or 'low'"),
        ({"inputs": [{**INPUTS[0], "pins": 4}]}, "drivers[0].inputs[0].pins", "unknown key"),
        ({"inputs": INPUTS, "debounce": "5s"}, "drivers[0].debounce", "less than or equal"),
        ({"inputs": INPUTS, "pin_factory": "gpiod"}, "drivers[0].pin_factory", "'mock'"),
        ({}, "drivers[0]", "nothing to do"),
    ],
)  # fmt: skip
def test_bad_configurations_are_refused_naming_the_key(
    driver: dict[str, Any], where: str, message: str
) -> None:
    found = problems(driver)
    assert any(p.startswith(f"{where}: ") and message in p for p in found), found


# ---- edges in, events out ----------------------------------------------------------------


def test_edges_become_events_in_the_loop_thread(
    factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PIR high/low, door open/closed, a press; gpiozero's threads never call emit."""
    monkeypatch.setattr(gpio_driver, "POLL_INTERVAL", 3600.0)  # edges only, no polling
    h = Harness({"inputs": INPUTS, "debounce": 0.01})
    pir, door, button = factory.pin(PIR), factory.pin(DOOR), factory.pin(BUTTON)

    async def scenario() -> None:
        loop_thread = threading.get_ident()
        async with h.running():
            # at start: pull-down PIR low, pull-up reed high (open), button high (up)
            assert (pir.state, door.state, button.state) == (False, True, True)
            assert h.events == []  # the levels found at start are not news
            for drive, count in [
                (pir.drive_high, 1), (pir.drive_low, 2), (door.drive_low, 3),
                (door.drive_high, 4), (button.drive_low, 5),
            ]:  # fmt: skip
                await asyncio.to_thread(drive)  # another thread, as gpiozero's would be
                await until(functools.partial(has_events, h, count), f"event {count}")
            await asyncio.to_thread(button.drive_high)  # a release says nothing
            await asyncio.sleep(0.1)
        assert h.emit_threads == {loop_thread}

    t0 = CLOCK.monotonic()
    run(scenario())
    assert h.values() == [
        ("hall_pir", EventKind.MOTION, 1.0),
        ("hall_pir", EventKind.MOTION, 0.0),
        ("front_door", EventKind.CONTACT, 0.0),  # magnet on the reed: closed
        ("front_door", EventKind.CONTACT, 1.0),  # open
        ("help_button", EventKind.BUTTON, 1.0),
    ]
    monos = [e.mono for e in h.events]
    assert monos == sorted(monos) and monos[0] >= t0
    assert h.health.events == 5


def test_the_wiring_is_configurable_per_input(factory: Any) -> None:
    """A normally-closed reed (open = low) and a PIR with an external pull (floating)."""
    h = Harness(
        {
            "debounce": 0,
            "inputs": [
                {**INPUTS[1], "active_when": "low"},
                {**INPUTS[0], "pull": "none", "active_when": "low"},
            ],
        }
    )
    door, pir = factory.pin(DOOR), factory.pin(PIR)

    async def scenario() -> None:
        async with h.running():
            assert door.pull == "up" and pir.pull == "floating"
            pir.drive_high()  # a floating pin starts low: active low means motion at start
            door.drive_low()
            await until(lambda: len(h.events) >= 2, "two events")

    run(scenario())
    assert h.values() == [
        ("hall_pir", EventKind.MOTION, 0.0),
        ("front_door", EventKind.CONTACT, 1.0),
    ]


async def _bounce(pin: Any, gaps: float) -> None:
    """A reed's bounce: low, high, low, high, low, each level held ``gaps`` seconds."""
    for drive in (pin.drive_low, pin.drive_high) * 2 + (pin.drive_low,):
        drive()
        await asyncio.sleep(gaps)


@pytest.mark.parametrize(("debounce", "expected"), [(0.25, [0.0]), (0, [0.0, 1.0, 0.0, 1.0, 0.0])])
def test_debounce_turns_a_bounce_burst_into_one_change(
    factory: Any, debounce: float, expected: list[float]
) -> None:
    """The mock pins ignore gpiozero's bounce_time; the driver's own debounce does not."""
    h = Harness({"inputs": [INPUTS[1]], "debounce": debounce})
    door = factory.pin(DOOR)

    async def scenario() -> None:
        async with h.running():
            await _bounce(door, 0.02)
            await until(lambda: len(h.events) >= len(expected), "the door's events")
            await asyncio.sleep(debounce + 0.1)  # nothing more comes

    run(scenario())
    assert [e.value for e in h.events] == expected


def test_a_spike_shorter_than_the_debounce_is_no_event(factory: Any) -> None:
    h = Harness({"inputs": [INPUTS[0]], "debounce": 0.5})
    pir = factory.pin(PIR)

    async def scenario() -> None:
        async with h.running():
            pir.drive_high()
            await asyncio.sleep(0.01)
            pir.drive_low()
            await asyncio.sleep(0.7)
            pir.drive_high()  # a real one
            await until(lambda: len(h.events) >= 1, "the real motion")

    run(scenario())
    assert h.values() == [("hall_pir", EventKind.MOTION, 1.0)]


def test_a_held_button_reports_a_press_at_once_and_a_long_press_later(factory: Any) -> None:
    h = Harness({"inputs": [INPUTS[2]], "debounce": 0.01})
    button = factory.pin(BUTTON)

    async def scenario() -> None:
        async with h.running():
            button.drive_low()
            await until(lambda: len(h.events) >= 1, "the press")
            assert h.values() == [("help_button", EventKind.BUTTON, 1.0)]  # not after 0.4 s
            await until(lambda: len(h.events) >= 2, "the long press")
            button.drive_high()
            # a short press: 1 only, also when its hold time has long passed
            await asyncio.sleep(0.05)
            button.drive_low()
            await until(lambda: len(h.events) >= 3, "the second press")
            await asyncio.sleep(0.05)
            button.drive_high()
            await asyncio.sleep(0.5)

    run(scenario())
    assert [e.value for e in h.events] == [1.0, 2.0, 1.0]
    press, held, _ = h.events
    assert held.mono - press.mono >= 0.4 - 0.01


def test_an_input_missing_from_the_home_map_is_opened_but_not_reported(
    factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness({"inputs": [INPUTS[0], {**INPUTS[1], "sensor": "back_door"}], "debounce": 0})
    pir, door = factory.pin(PIR), factory.pin(DOOR)

    async def scenario() -> None:
        async with h.running():
            assert h.health.details["unmapped"] == "back_door"
            door.drive_low()
            pir.drive_high()
            await until(lambda: len(h.events) >= 1, "the PIR's event")
            await asyncio.sleep(0.05)

    with caplog.at_level(logging.INFO, logger="drivers.gpio-test"):
        run(scenario())
    assert h.values() == [("hall_pir", EventKind.MOTION, 1.0)]
    told = [r for r in caplog.records if "back_door" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.INFO


def test_a_missed_edge_is_caught_by_the_next_reading(
    factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpio_driver, "POLL_INTERVAL", 0.05)
    h = Harness({"inputs": [INPUTS[1]], "debounce": 0})
    door = factory.pin(DOOR)

    async def scenario() -> None:
        async with h.running():
            alive = h.health.last_alive
            door.edges = "rising"  # the pin library loses the next falling edge
            door.drive_low()
            await asyncio.sleep(0)
            assert h.events == []
            await until(lambda: len(h.events) >= 1, "the poll to notice the closed door")
            assert h.health.last_alive > alive

    run(scenario())
    assert h.values() == [("front_door", EventKind.CONTACT, 0.0)]


def test_health_names_the_pins_and_the_pin_library(factory: Any) -> None:
    h = Harness({"inputs": INPUTS, "led": {"pin": LED_PIN}, "buzzer": {"pin": BUZZER_PIN}})

    async def scenario() -> None:
        async with h.running():
            pass

    run(scenario())
    assert h.health.details == {
        "pin_factory": "MockFactory",
        "pins": "GPIO17 hall_pir, GPIO27 front_door, GPIO22 help_button, GPIO5 led, GPIO6 buzzer",
    }


# ---- failures and restarts -------------------------------------------------------------


def test_a_pin_library_that_cannot_be_loaded_is_a_transient_error() -> None:
    for name in ("lgpio", "RPi"):
        with contextlib.suppress(ImportError):
            __import__(name)
            pytest.skip(f"{name} is installed here: this may be a Pi")
    h = Harness({"inputs": INPUTS, "pin_factory": "auto"})

    async def scenario() -> None:
        try:
            await h.driver.run()
        finally:
            await h.driver.close()

    with pytest.raises(TransientError) as err:
        run(scenario())
    text = str(err.value)
    assert "lgpio: ModuleNotFoundError" in text and "rpigpio: " in text
    assert "/dev/gpiochip" in text


def test_a_pin_held_elsewhere_fails_cleanly_and_the_restart_takes_it(factory: Any) -> None:
    """A pin in use: TransientError naming it; what was opened is released; the next
    instance (as the runtime's restart makes it) takes every pin and works."""
    blocker = DigitalInputDevice(BUTTON, pin_factory=factory)
    first = Harness({"inputs": INPUTS, "led": {"pin": LED_PIN}, "debounce": 0})
    second = Harness({"inputs": INPUTS, "led": {"pin": LED_PIN}, "debounce": 0})

    async def scenario() -> None:
        with pytest.raises(TransientError, match=r"GPIO22 \(help_button\) cannot be opened"):
            async with first.running():
                pass
        blocker.close()
        async with second.running():
            factory.pin(BUTTON).drive_low()
            factory.pin(PIR).drive_high()
            await until(lambda: len(second.events) >= 2, "events from the new instance")
            assert factory.pin(LED_PIN).state  # the LED works again (starting blink)

    run(scenario())
    assert first.events == []
    assert second.values() == [
        ("help_button", EventKind.BUTTON, 1.0),
        ("hall_pir", EventKind.MOTION, 1.0),
    ]
    # and everything is released again: a third instance could open every pin
    for pin in (PIR, DOOR, BUTTON, LED_PIN):
        DigitalInputDevice(pin, pin_factory=factory).close()


def test_closing_and_reopening_many_times_leaks_no_pin(factory: Any) -> None:
    raw = {"inputs": INPUTS, "led": {"pin": LED_PIN}, "buzzer": {"pin": BUZZER_PIN}}

    async def scenario() -> None:
        for _ in range(5):
            h = Harness(raw)
            async with h.running():
                h.driver.indicate(Indication.SELF_TEST)  # threads running at close

    run(scenario())
    assert not any(factory._reservations.values())  # gpiozero's own record


@pytest.mark.parametrize("found_by", ["poll", "edge"])
def test_a_pin_that_cannot_be_read_ends_the_run_for_a_restart(
    factory: Any, monkeypatch: pytest.MonkeyPatch, found_by: str
) -> None:
    """Found by the periodic reading, or at once by an edge's debounce reading."""
    monkeypatch.setattr(gpio_driver, "POLL_INTERVAL", 0.05 if found_by == "poll" else 3600.0)
    h = Harness({"inputs": INPUTS, "debounce": 0})
    door = factory.pin(DOOR)

    def unplugged() -> bool:
        raise OSError(19, "No such device")

    async def scenario() -> None:
        async with h.running():
            monkeypatch.setattr(door, "_get_state", unplugged)
            if found_by == "edge":
                door.drive_low()
            assert h.task is not None
            await h.task

    with pytest.raises(TransientError, match=r"GPIO27 \(front_door\) cannot be read: OSError"):
        run(scenario())
    assert h.events == []


# ---- the status LED and the buzzer -----------------------------------------------------


def changes(pin: Any) -> list[tuple[float, bool]]:
    """The pin's history since ``clear_states``: (seconds since the previous, state)."""
    return [(s.timestamp, bool(s.state)) for s in pin.states[1:]]


def flashes(history: list[tuple[float, bool]]) -> int:
    """How many times an LED that was on went off and came back, ending on."""
    states = [s for _, s in history]
    assert states == [False, True] * (len(states) // 2), states
    return len(states) // 2


@pytest.fixture
def outputs(factory: Any) -> Iterator[Harness]:
    yield Harness({"led": {"pin": LED_PIN}, "buzzer": {"pin": BUZZER_PIN}})


def test_the_led_blinks_at_start_then_shows_the_uplink(outputs: Harness, factory: Any) -> None:
    led = factory.pin(LED_PIN)

    async def scenario() -> None:
        async with outputs.running():
            await until(lambda: len(changes(led)) >= 2, "the starting blink")
            assert [s for _, s in changes(led)][:2] == [True, False]
            outputs.driver.indicate(Indication.UPLINK_UP)
            assert led.state
            led.clear_states()
            await asyncio.sleep(0.6)  # longer than the starting blink's half period
            assert changes(led) == [] and led.state  # steady
            led.clear_states()
            outputs.driver.indicate(Indication.UPLINK_DOWN)
            await until(lambda: len(changes(led)) >= 1, "the slow blink to turn off")
            # the LED was already on: the first change is to off, after a second on
            assert changes(led)[0][1] is False and changes(led)[0][0] >= 0.9

    run(scenario())


def test_an_uplink_state_given_before_the_run_is_shown_at_once(
    outputs: Harness, factory: Any
) -> None:
    outputs.driver.indicate(Indication.UPLINK_UP)  # the runtime tells a new driver at once

    async def scenario() -> None:
        async with outputs.running():
            led = factory.pin(LED_PIN)
            led.clear_states()
            await asyncio.sleep(0.6)
            assert led.state and changes(led) == []

    run(scenario())


def test_a_sensor_seen_flash_returns_to_the_uplink_state(outputs: Harness, factory: Any) -> None:
    led = factory.pin(LED_PIN)

    async def scenario() -> None:
        async with outputs.running():
            outputs.driver.indicate(Indication.UPLINK_UP)
            led.clear_states()
            outputs.driver.indicate(Indication.SENSOR_SEEN)
            await until(lambda: any(not s for _, s in changes(led)), "the flash")
            await asyncio.sleep(0.6)  # the flash (0.4 s) is over
            assert led.state
            seen = changes(led)
            await asyncio.sleep(0.3)
            assert changes(led) == seen  # steady again
            assert flashes(seen) in (1, 2)  # two; the second may be cut by the return

    run(scenario())


def test_the_self_test_beeps_twice_and_blinks_fast_for_two_seconds(
    outputs: Harness, factory: Any
) -> None:
    led, buzzer = factory.pin(LED_PIN), factory.pin(BUZZER_PIN)

    async def scenario() -> None:
        async with outputs.running():
            outputs.driver.indicate(Indication.UPLINK_UP)
            led.clear_states()
            buzzer.clear_states()
            outputs.driver.indicate(Indication.SELF_TEST)
            await until(lambda: len(changes(buzzer)) >= 4, "two beeps")
            outputs.driver.indicate(Indication.UPLINK_UP)  # told again: shown after the test
            await asyncio.sleep(2.4)  # back to steady on after 2 s
            assert led.state and not buzzer.state

    run(scenario())
    assert [s for _, s in changes(buzzer)] == [True, False, True, False]
    # ten flashes; the last may be cut by the return to steady on
    assert flashes(changes(led)) in (9, 10)


def test_help_raised_beeps_three_times_and_leaves_the_led(outputs: Harness, factory: Any) -> None:
    led, buzzer = factory.pin(LED_PIN), factory.pin(BUZZER_PIN)

    async def scenario() -> None:
        async with outputs.running():
            outputs.driver.indicate(Indication.UPLINK_UP)
            led.clear_states()
            buzzer.clear_states()
            outputs.driver.indicate(Indication.HELP_RAISED)
            await until(lambda: len(changes(buzzer)) >= 6, "three beeps")
            await asyncio.sleep(0.3)

    run(scenario())
    assert [s for _, s in changes(buzzer)] == [True, False] * 3
    assert all(t >= 0.15 for t, _ in changes(buzzer)[1:])
    assert changes(led) == []


def test_indicate_never_raises(outputs: Harness, factory: Any) -> None:
    for what in Indication:
        outputs.driver.indicate(what)  # before the run: nothing to show on yet

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the LED's thread is gone")

    async def scenario() -> None:
        async with outputs.running():
            assert outputs.driver._led is not None
            outputs.driver._led.blink = broken
            outputs.driver._buzzer.beep = broken
            for what in Indication:
                outputs.driver.indicate(what)
        for what in Indication:
            outputs.driver.indicate(what)  # after close

    run(scenario())


# ---- end to end through the runtime ------------------------------------------------------


def test_a_long_press_raises_an_urgent_alert_and_the_pir_reaches_the_engine(
    factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real runtime: its first start of the driver fails (the button's pin is held
    elsewhere), the restart takes the pins; a long press raises and updates the help
    alert, the buzzer tells the person, and a PIR edge reaches the engine."""
    monkeypatch.setattr("agent.runtime.DRIVER_BACKOFF_MIN", 0.01)
    config = validate_config(
        {
            "hub": {"id": "h-gpio"},
            "uplink": {"type": "memory"},
            "home": HOME,
            "drivers": [
                {
                    "type": "gpio",
                    "name": "pins",
                    "pin_factory": "mock",
                    "debounce": 0.01,
                    "inputs": INPUTS,
                    "led": {"pin": LED_PIN},
                    "buzzer": {"pin": BUZZER_PIN},
                }
            ],
        }
    )
    raised: list[AlertMessage] = []
    runtime = Runtime(config, clock=CLOCK, alert_hook=raised.append)
    blocker = DigitalInputDevice(BUTTON, pin_factory=factory)
    button, pir, buzzer = factory.pin(BUTTON), factory.pin(PIR), factory.pin(BUZZER_PIN)

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(drain_timeout=1.0))
        try:
            await until(lambda: "pins" in runtime.driver_health, "the driver to start")
            health = runtime.driver_health["pins"]
            await until(lambda: health.restarts >= 1, "the first start to fail")
            assert health.last_error is not None and "GPIO22" in health.last_error
            blocker.close()
            await until(lambda: "pins" in health.details and health.state == "running", "up")
            await until(lambda: button.when_changed is not None, "the button's pin")
            buzzer.clear_states()
            button.drive_low()
            await until(lambda: len(raised) >= 2, "the alert and its long-press update")
            button.drive_high()
            await until(lambda: len(changes(buzzer)) >= 6, "the help beeps")
            before = runtime.stats.events
            pir.drive_high()
            await until(lambda: runtime.stats.events > before, "the PIR's event")
        finally:
            runtime.request_stop()
            await task

    run(scenario())
    first, update = raised[:2]
    assert (first.kind, first.state, first.severity) == (
        "help_button",
        AlertState.RAISED,
        Severity.URGENT,
    )
    assert first.room == "Living"
    assert update.state is AlertState.UPDATED and "long-pressed" in update.summary
    assert "hall_pir" in runtime.health.last_seen
    assert runtime.stats.unknown_sensors == {}
    assert not any(factory._reservations.values())  # all released at stop
