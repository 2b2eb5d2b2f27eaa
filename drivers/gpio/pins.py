"""Pure helpers of the GPIO driver: pin names, wiring defaults, what a level means, and
what the status LED and buzzer show. No gpiozero here: these are tables and functions.

Levels and meanings
-------------------

Every input has an *active* level: the level that means motion seen (``motion``), the
door or window open (``contact``) or the button pressed (``button``). The defaults fit
the usual wiring:

=========  ========  ===========  ==========================================================
kind       pull      active when  wiring
=========  ========  ===========  ==========================================================
motion     down      high         a PIR module's push-pull output (HC-SR501, AM312): high
                                  while it sees motion; unplugged reads "no motion"
contact    up        high         a normally-open reed switch between the pin and ground:
                                  the magnet closes it (door shut = low); the door opened,
                                  or a cut wire, reads high = **open**
button     up        low          a push button between the pin and ground: pressed = low
=========  ========  ===========  ==========================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.events import EventKind
from drivers.base import Indication

InputKind = Literal["motion", "contact", "button"]
Pull = Literal["up", "down", "none"]
Level = Literal["high", "low"]

#: BCM numbers of the GPIO pins on the 40-pin header of every Raspberry Pi since the B+.
BCM_MAX = 27

#: GPIO2 and GPIO3 (I2C) have 1.8 kOhm pull-ups on the board: they cannot pull down.
FIXED_PULL_UP = frozenset({2, 3})

#: Physical pin on the 40-pin header (J8) -> BCM number, for the GPIO pins only.
BOARD_TO_BCM: dict[int, int] = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24,
    19: 10, 21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12,
    33: 13, 35: 19, 36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip

_PIN_NAME = re.compile(r"(GPIO|BCM|BOARD)(\d{1,2})", re.IGNORECASE)


def parse_pin(value: object) -> int:
    """A pin as written in the configuration -> its BCM number.

    ``17``, ``"17"``, ``"GPIO17"`` and ``"BCM17"`` are BCM numbers; ``"BOARD11"`` is the
    physical pin 11 of the 40-pin header (which is GPIO17).
    """
    if isinstance(value, bool):
        raise ValueError("a pin is a BCM number like 17 or a name like 'GPIO17' or 'BOARD11'")
    if isinstance(value, int):
        bcm = value
    elif isinstance(value, str):
        text = value.strip()
        match = _PIN_NAME.fullmatch(text)
        if text.isdigit():
            bcm = int(text)
        elif match is None:
            raise ValueError(
                f"{value!r} is not a pin; write a BCM number like 17 or 'GPIO17', or 'BOARD11'"
            )
        elif match.group(1).upper() == "BOARD":
            board = int(match.group(2))
            if board not in BOARD_TO_BCM:
                raise ValueError(f"physical pin {board} of the header is not a GPIO pin")
            bcm = BOARD_TO_BCM[board]
        else:
            bcm = int(match.group(2))
    else:
        raise ValueError("a pin is a BCM number like 17 or a name like 'GPIO17' or 'BOARD11'")
    if not 0 <= bcm <= BCM_MAX:
        raise ValueError(f"GPIO{bcm} does not exist: BCM pin numbers go from 0 to {BCM_MAX}")
    return bcm


def pin_name(bcm: int) -> str:
    return f"GPIO{bcm}"


@dataclass(frozen=True, slots=True)
class Wiring:
    pull: Pull
    active_when: Level


#: The default wiring of each kind; see the module docstring.
DEFAULT_WIRING: dict[str, Wiring] = {
    "motion": Wiring(pull="down", active_when="high"),
    "contact": Wiring(pull="up", active_when="high"),
    "button": Wiring(pull="up", active_when="low"),
}

#: How long a help button must be held for its second event (value 2), by default.
DEFAULT_LONG_PRESS = 2.0


def is_active(level: bool, active_when: Level) -> bool:
    """Whether the pin's level (True = high) is the input's active level."""
    return level is (active_when == "high")


#: What an input reports when its debounced state becomes active / inactive.
_EVENTS: dict[tuple[str, bool], tuple[tuple[EventKind, float], ...]] = {
    ("motion", True): ((EventKind.MOTION, 1.0),),
    ("motion", False): ((EventKind.MOTION, 0.0),),
    ("contact", True): ((EventKind.CONTACT, 1.0),),  # open
    ("contact", False): ((EventKind.CONTACT, 0.0),),  # closed
    ("button", True): ((EventKind.BUTTON, 1.0),),  # pressed: at once, help must not wait
    ("button", False): (),  # a release says nothing
}

#: A button held for its ``long_press`` time reports this, after the press's 1.
LONG_PRESS_EVENT = (EventKind.BUTTON, 2.0)


def events_for(kind: str, active: bool) -> tuple[tuple[EventKind, float], ...]:
    """The events of an input whose debounced state changed to ``active``."""
    return _EVENTS[kind, active]


# ---- the status LED and the buzzer ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Blink:
    """``n`` times on for ``on`` seconds and off for ``off`` seconds; ``n=None``: forever."""

    on: float
    off: float
    n: int | None = None

    @property
    def duration(self) -> float:
        return float("inf") if self.n is None else self.n * (self.on + self.off)


STEADY: Literal["steady"] = "steady"
LedPattern = Blink | Literal["steady"]


@dataclass(frozen=True, slots=True)
class Show:
    """What one indication does. ``led=None`` leaves the LED alone; a ``lasting`` LED
    pattern is the one the LED returns to after a short one."""

    led: LedPattern | None = None
    buzzer: Blink | None = None
    lasting: bool = False


#: The LED before the uplink state is known: a steady 1 Hz blink.
STARTING = Blink(on=0.5, off=0.5)

INDICATIONS: dict[Indication, Show] = {
    Indication.UPLINK_UP: Show(led=STEADY, lasting=True),
    Indication.UPLINK_DOWN: Show(led=Blink(on=1.0, off=1.0), lasting=True),
    Indication.SENSOR_SEEN: Show(led=Blink(on=0.1, off=0.1, n=2)),
    Indication.SELF_TEST: Show(
        led=Blink(on=0.1, off=0.1, n=10), buzzer=Blink(on=0.1, off=0.1, n=2)
    ),
    Indication.HELP_RAISED: Show(buzzer=Blink(on=0.2, off=0.2, n=3)),
}
