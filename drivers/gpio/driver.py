"""The GPIO driver: PIR motion sensors, reed contacts and a help button on the Pi's own
pins, through gpiozero; a status LED and a buzzer for the installer and the person.

Threads. gpiozero calls back on its own threads (lgpio's, RPi.GPIO's; the caller's for
mock pins). The callback does one thing: ``loop.call_soon_threadsafe`` into the event
loop. Everything else (debounce timers, long-press timers, ``ctx.emit``) runs in the
loop's thread.

Debounce. The driver debounces in software, the same way on every pin library: an edge
starts (or restarts) a timer of ``debounce`` seconds; when it runs out, the pin's level
is read and, if it differs from the last reported state, the change is reported. A level
must hold for ``debounce`` to count, so a bounce burst is one change and a short spike is
none. gpiozero's own ``bounce_time`` is not used: RPi.GPIO drops every edge for that long
after one (and so can miss the final level) and the mock pins ignore it.

Times. Events carry ``ctx.clock`` times read in the loop when the level is confirmed,
that is ``debounce`` plus a few milliseconds after the edge. Stamping at the edge would
be a few milliseconds more exact, but an event could then be older than timers the engine
has already fired; in the loop every event is in order with everything else.

Start and restart. The levels found at start are taken as they are and not reported: a
(re)start of the driver is not a person opening a door. Every ``POLL_INTERVAL`` seconds
the inputs are read again, which catches an edge the pin library missed and serves as
the driver's sign of life (``stall_after``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from gpiozero import LED, Buzzer, DigitalInputDevice  # type: ignore[import-untyped]

from agent.errors import TransientError
from agent.events import EventKind, SensorEvent
from drivers.base import Driver, DriverContext, Indication
from drivers.gpio.config import GpioConfig, InputConfig, OutputConfig
from drivers.gpio.pins import (
    INDICATIONS,
    LONG_PRESS_EVENT,
    STARTING,
    STEADY,
    Blink,
    LedPattern,
    events_for,
    is_active,
    pin_name,
)

#: Seconds between two readings of every input: a missed edge is caught, and it is the
#: driver's sign of life.
POLL_INTERVAL = 5.0

#: What "auto" tries, in order: the two libraries for the Pi's own GPIO chip.
AUTO_FACTORIES = ("lgpio", "rpigpio")

_PULL_UP: dict[str, bool | None] = {"up": True, "down": False, "none": None}


@dataclass
class _Input:
    """One configured input while the driver runs."""

    cfg: InputConfig
    debounce: float
    active_high: bool
    mapped: bool
    device: Any = None
    active: bool = False  # the debounced state: motion / open / pressed
    settle: asyncio.TimerHandle | None = None
    hold: asyncio.TimerHandle | None = None


def load_pin_factory(name: str) -> tuple[Any, bool]:
    """gpiozero's pin factory ``name`` and whether the driver owns (and closes) it.

    ``"mock"`` takes ``Device.pin_factory`` when that is a ``MockFactory`` already (as a
    test sets it, to reach the pins), or makes a new one. A factory that cannot be loaded
    (not a Pi, no GPIO chip, no permission, the library not installed) is a
    ``TransientError``.
    """
    if name == "mock":
        from gpiozero import Device
        from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]

        current = Device.pin_factory
        if isinstance(current, MockFactory):
            return current, False
        return MockFactory(), True
    failures: list[str] = []
    for candidate in AUTO_FACTORIES if name == "auto" else (name,):
        try:
            (point,) = entry_points(group="gpiozero_pin_factories", name=candidate)
            return point.load()(), True
        except Exception as err:
            failures.append(f"{candidate}: {type(err).__name__}: {err}")
    raise TransientError(
        "no GPIO pin library could be opened ("
        + "; ".join(failures)
        + "): is this a Raspberry Pi with lgpio or RPi.GPIO installed, and may this "
        "user open /dev/gpiochip* (group gpio)?"
    )


class GpioDriver(Driver):
    config_model = GpioConfig

    def __init__(self, config: GpioConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._factory: Any = None
        self._owns_factory = False
        self._inputs: list[_Input] = []
        self._led: Any = None
        self._buzzer: Any = None
        self._lasting: LedPattern = STARTING  # the LED's pattern between short ones
        self._restore: asyncio.TimerHandle | None = None  # a short LED pattern is on
        self._failure: TransientError | None = None
        self._failed = asyncio.Event()
        self._closed = False

    def sensors(self) -> list[str]:
        return [inp.sensor for inp in self.cfg.inputs]

    # ---- life ----------------------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._factory, self._owns_factory = load_pin_factory(self.cfg.pin_factory)
        self._led = self._open_output("led", self.cfg.led, LED)
        self._buzzer = self._open_output("buzzer", self.cfg.buzzer, Buzzer)
        if self._led is not None:
            self._show(self._lasting)
        self._open_inputs()
        self._describe()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._failed.wait(), timeout=POLL_INTERVAL)
            if self._failure is not None:
                raise self._failure
            self._poll()

    async def close(self) -> None:
        self._closed = True
        for inp in self._inputs:
            for handle in (inp.settle, inp.hold):
                if handle is not None:
                    handle.cancel()
            inp.settle = inp.hold = None
        if self._restore is not None:
            self._restore.cancel()
            self._restore = None
        devices = [(inp.cfg.sensor, inp.device) for inp in self._inputs]
        devices += [("led", self._led), ("buzzer", self._buzzer)]
        for what, device in devices:
            if device is None:
                continue
            try:
                device.close()  # stops a blink, releases the pin's reservation
            except Exception as err:
                self.ctx.log.warning("%s did not close cleanly: %s", what, err)
        self._inputs = []
        self._led = self._buzzer = None
        if self._factory is not None and self._owns_factory:
            try:
                self._factory.close()
            except Exception as err:
                self.ctx.log.warning("the pin library did not close cleanly: %s", err)
        self._factory = None

    # ---- opening -------------------------------------------------------------------
    def _open_output(self, what: str, cfg: OutputConfig | None, cls: Any) -> Any:
        if cfg is None:
            return None
        try:
            return cls(cfg.pin, active_high=cfg.active_high, pin_factory=self._factory)
        except Exception as err:
            raise TransientError(
                f"{pin_name(cfg.pin)} ({what}) cannot be opened: {type(err).__name__}: {err}"
            ) from err

    def _open_inputs(self) -> None:
        home = self.ctx.home
        for index, cfg in enumerate(self.cfg.inputs):
            wiring = cfg.wiring
            mapped = cfg.sensor in home
            if not mapped:
                self.ctx.log.info(
                    "sensor %r on %s is not in the home map: its events are dropped",
                    cfg.sensor,
                    pin_name(cfg.pin),
                )
            inp = _Input(
                cfg=cfg,
                debounce=self.cfg.debounce if cfg.debounce is None else cfg.debounce,
                active_high=wiring.active_when == "high",
                mapped=mapped,
            )
            self._inputs.append(inp)
            pull_up = _PULL_UP[wiring.pull]
            try:
                device = DigitalInputDevice(
                    cfg.pin,
                    pull_up=pull_up,
                    active_state=True if pull_up is None else None,
                    bounce_time=None,
                    pin_factory=self._factory,
                )
                inp.device = device
                inp.active = is_active(self._level(inp), wiring.active_when)
                callback = functools.partial(self._from_thread, index)
                device.when_activated = callback
                device.when_deactivated = callback
            except Exception as err:
                raise TransientError(
                    f"{pin_name(cfg.pin)} ({cfg.sensor}) cannot be opened: "
                    f"{type(err).__name__}: {err}"
                ) from err

    def _describe(self) -> None:
        pins = [f"{pin_name(inp.cfg.pin)} {inp.cfg.sensor}" for inp in self._inputs]
        for what, out in (("led", self.cfg.led), ("buzzer", self.cfg.buzzer)):
            if out is not None:
                pins.append(f"{pin_name(out.pin)} {what}")
        details = self.ctx.health.details
        details["pin_factory"] = type(self._factory).__name__
        details["pins"] = ", ".join(pins)
        unmapped = [inp.cfg.sensor for inp in self._inputs if not inp.mapped]
        if unmapped:
            details["unmapped"] = ", ".join(unmapped)
        else:
            details.pop("unmapped", None)

    # ---- inputs: gpiozero's thread -> the loop ---------------------------------------
    def _from_thread(self, index: int) -> None:
        """An edge, in gpiozero's thread: hop into the loop, nothing else."""
        loop = self._loop
        if loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while stopping
            loop.call_soon_threadsafe(self._edge, index)

    def _edge(self, index: int) -> None:
        if self._closed:
            return
        inp = self._inputs[index]
        if inp.settle is not None:
            inp.settle.cancel()
            inp.settle = None
        if inp.debounce <= 0:
            self._settle(index)
        else:
            assert self._loop is not None
            inp.settle = self._loop.call_later(inp.debounce, self._settle, index)

    def _level(self, inp: _Input) -> bool:
        """The pin's level now (True = high)."""
        return bool(inp.device.pin.state)

    def _settle(self, index: int) -> None:
        """The level held for ``debounce``: report it if the state changed."""
        if self._closed:
            return
        inp = self._inputs[index]
        inp.settle = None
        try:
            level = self._level(inp)
        except Exception as err:
            self._fail(inp, err)
            return
        active = level is inp.active_high
        if active is inp.active:
            return  # a bounce or a spike that came back
        inp.active = active
        for kind, value in events_for(inp.cfg.kind, active):
            self._emit(inp, kind, value)
        hold = inp.cfg.hold_time
        if hold is not None:
            if inp.hold is not None:
                inp.hold.cancel()
                inp.hold = None
            if active:
                assert self._loop is not None
                inp.hold = self._loop.call_later(hold, self._held, index)

    def _held(self, index: int) -> None:
        """A button still pressed ``long_press`` after its press: a long press."""
        if self._closed:
            return
        inp = self._inputs[index]
        inp.hold = None
        if inp.active:
            self._emit(inp, *LONG_PRESS_EVENT)

    def _emit(self, inp: _Input, kind: EventKind, value: float) -> None:
        if not inp.mapped:
            return
        clock = self.ctx.clock
        self.ctx.emit(SensorEvent(inp.cfg.sensor, kind, value, clock.wall(), clock.monotonic()))
        self.ctx.health.events += 1

    def _poll(self) -> None:
        """Read every input: a missed edge is caught; a pin that cannot be read fails."""
        for index, inp in enumerate(self._inputs):
            try:
                level = self._level(inp)
            except Exception as err:
                raise self._fail(inp, err) from err
            if (level is inp.active_high) is not inp.active and inp.settle is None:
                self._edge(index)
        self.ctx.health.alive()

    def _fail(self, inp: _Input, err: Exception) -> TransientError:
        """Remember that a pin cannot be read; ``run`` raises it and the runtime restarts."""
        self._failure = TransientError(
            f"{pin_name(inp.cfg.pin)} ({inp.cfg.sensor}) cannot be read: "
            f"{type(err).__name__}: {err}"
        )
        self._failed.set()
        return self._failure

    # ---- the status LED and the buzzer ---------------------------------------------------
    def indicate(self, what: Indication) -> None:
        try:
            self._indicate(what)
        except Exception as err:  # an LED must never take the hub down
            self.ctx.log.debug("indication %s not shown: %s", what, err)

    def _indicate(self, what: Indication) -> None:
        show = INDICATIONS[what]
        led = show.led
        if led is not None and show.lasting:
            self._lasting = led
            if self._led is not None and self._restore is None:
                self._show(led)
        elif isinstance(led, Blink) and self._led is not None and self._loop is not None:
            if self._restore is not None:
                self._restore.cancel()
            self._show(led)
            self._restore = self._loop.call_later(led.duration, self._end_short)
        if show.buzzer is not None and self._buzzer is not None:
            beep = show.buzzer
            self._buzzer.beep(on_time=beep.on, off_time=beep.off, n=beep.n, background=True)

    def _end_short(self) -> None:
        """A short LED pattern is over: back to the lasting one."""
        self._restore = None
        if self._led is None or self._closed:
            return
        try:
            self._show(self._lasting)
        except Exception as err:
            self.ctx.log.debug("LED pattern not restored: %s", err)

    def _show(self, pattern: LedPattern) -> None:
        if pattern == STEADY:
            self._led.on()
        else:
            assert isinstance(pattern, Blink)
            self._led.blink(on_time=pattern.on, off_time=pattern.off, n=pattern.n, background=True)
