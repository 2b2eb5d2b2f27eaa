"""The one event type every driver produces and every detector consumes.

Values are floats so that the hot path stays free of type switches:

===============  ===============================================
kind             value
===============  ===============================================
motion           1 motion seen, 0 cleared
presence         1 someone present (radar), 0 nobody
contact          1 open, 0 closed (doors, windows, cupboards)
pressure         1 occupied (bed, chair mat), 0 free
appliance        1 switched on / drawing power, 0 off
flush            1 toilet flushed / water flowing, 0 stopped
button           1 pressed, 2 long press (help button)
fall             1 fall detected, 0 cleared
smoke            1 smoke alarm, 0 clear
water_leak       1 leak, 0 dry
tamper           1 tampered, 0 normal
vibration        1 vibration, 0 still
temperature      degrees Celsius
humidity         relative humidity, percent
illuminance      lux
battery          percent (0-100)
battery_low      1 low, 0 fine
link_quality     vendor link quality (0-255)
availability     1 online, 0 offline (the device itself)
===============  ===============================================
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class EventKind(StrEnum):
    MOTION = "motion"
    PRESENCE = "presence"
    CONTACT = "contact"
    PRESSURE = "pressure"
    APPLIANCE = "appliance"
    FLUSH = "flush"
    BUTTON = "button"
    FALL = "fall"
    SMOKE = "smoke"
    WATER_LEAK = "water_leak"
    TAMPER = "tamper"
    VIBRATION = "vibration"
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    ILLUMINANCE = "illuminance"
    BATTERY = "battery"
    BATTERY_LOW = "battery_low"
    LINK_QUALITY = "link_quality"
    AVAILABILITY = "availability"


#: Kinds whose state change means a person did something in the home.
ACTIVITY_KINDS: frozenset[EventKind] = frozenset(
    {
        EventKind.MOTION,
        EventKind.PRESENCE,
        EventKind.CONTACT,
        EventKind.PRESSURE,
        EventKind.APPLIANCE,
        EventKind.FLUSH,
        EventKind.BUTTON,
        EventKind.VIBRATION,
    }
)

#: Kinds that carry a measurement rather than a state.
MEASUREMENT_KINDS: frozenset[EventKind] = frozenset(
    {
        EventKind.TEMPERATURE,
        EventKind.HUMIDITY,
        EventKind.ILLUMINANCE,
        EventKind.BATTERY,
        EventKind.LINK_QUALITY,
    }
)


class SensorEvent(NamedTuple):
    """Something a sensor reported.

    ``wall`` is POSIX seconds from the wall clock (may jump, may be unsynchronised);
    ``mono`` is seconds from a monotonic clock (for durations). Drivers fill both from
    the injected clock; the replay driver fills them from the trace. A named tuple:
    immutable, and cheap to build on the hot path (a year of a busy home is 1.6 M).
    """

    sensor: str
    kind: EventKind
    value: float
    wall: float
    mono: float
