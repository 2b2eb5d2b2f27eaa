"""Zigbee2MQTT's messages to readings: pure functions, tables, no I/O and no clock.

What Zigbee2MQTT (1.17 and newer, and 2.x) publishes under its base topic, relative to it:

- ``bridge/state``: ``online``/``offline``, a plain string in older versions and
  ``{"state": "online"}`` in newer ones (``advanced.legacy_availability_payload``);
- ``bridge/devices``: the device list, a JSON array of objects with ``ieee_address``,
  ``friendly_name``, ``type`` (``Coordinator``, ``Router``, ``EndDevice``),
  ``power_source``, ``interview_completed``, ``interviewing``, ``supported``, ``disabled``
  and ``definition`` (``model``, ``exposes``); ``bridge/groups`` likewise for groups;
- ``<friendly name>``: a device's (or a group's) state, one JSON object. Zigbee2MQTT
  publishes the whole cached state each time: a battery report repeats
  ``"occupancy": true``. Some keys are never cached (``action`` among them), so they
  appear only in the message of the report that carried them;
- ``<friendly name>/availability``: ``online``/``offline``, plain or ``{"state": ...}``;
- ``<friendly name>/action``: the bare action string, published after the JSON state
  when Home Assistant integration is on, and the only form with ``advanced.output:
  attribute``;
- ``<friendly name>/set``, ``/get``: commands *to* Zigbee2MQTT, never read here.

A friendly name may hold ``/`` and spaces, so a topic ``a/b`` is device ``a/b`` when
such a device exists and otherwise a subtopic of device ``a``: ``route`` decides with
the device list.

``decode_state`` compares a device's state with the previous one and says what to
pass on; see its docstring for the rules about repeated values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from agent.events import ACTIVITY_KINDS, MEASUREMENT_KINDS, EventKind

#: A Zigbee IEEE address as Zigbee2MQTT writes it.
IEEE_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{16}$")


class Malformed(ValueError):
    """A payload that is not what Zigbee2MQTT publishes on that topic."""


# ---- payloads ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise Malformed(f"{name} is not a JSON number")


def parse_json(payload: bytes) -> Any:
    """The JSON value of ``payload``; ``Malformed`` for anything else (NaN included)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Malformed("not UTF-8 text") from err
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise Malformed(f"not JSON ({err.msg} at {err.pos})") from err
    except RecursionError as err:
        raise Malformed("JSON nested too deeply") from err


def parse_state(payload: bytes) -> dict[str, Any]:
    """A device's state message: one JSON object."""
    value = parse_json(payload)
    if not isinstance(value, dict):
        raise Malformed(f"a state is a JSON object, not {_what(value)}")
    return value


_ONLINE = {"online": True, "offline": False}


def parse_online(payload: bytes) -> bool:
    """``bridge/state`` and ``<name>/availability``: True online, False offline.

    Both forms: the plain string (``legacy_availability_payload``, the default before
    Zigbee2MQTT 2.0) and ``{"state": "online"}``. Case is ignored: real installations
    have published ``{"state": "Offline"}``.
    """
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise Malformed("not UTF-8 text") from err
    found = _ONLINE.get(text.casefold())
    if found is not None:
        return found
    value = parse_json(payload)
    if isinstance(value, dict):
        value = value.get("state")
    if isinstance(value, str):
        found = _ONLINE.get(value.strip().casefold())
        if found is not None:
            return found
    raise Malformed(f"expected online or offline, got {text[:40]!r}")


def parse_text(payload: bytes) -> str:
    """A bare attribute message such as ``<name>/action``: its text, stripped."""
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise Malformed("not UTF-8 text") from err


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# ---- the device list ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    """One entry of ``bridge/devices``."""

    ieee: str
    name: str
    type: str = "Unknown"
    power_source: str | None = None
    interviewed: bool = True  # interview completed and not interviewing again
    supported: bool | None = None
    disabled: bool = False
    model: str | None = None
    exposes: frozenset[str] = frozenset()  # every property the definition exposes

    @property
    def coordinator(self) -> bool:
        return self.type == "Coordinator"


def _exposed(features: Any, into: set[str]) -> None:
    """The ``property`` of every expose, composite features included."""
    if not isinstance(features, list):
        return
    for item in features:
        if not isinstance(item, dict):
            continue
        prop = item.get("property")
        if isinstance(prop, str):
            into.add(prop)
        _exposed(item.get("features"), into)


def parse_devices(payload: bytes) -> tuple[list[Device], list[str]]:
    """``bridge/devices``: the devices, and a problem for each entry that was skipped.

    The array itself must be there (``Malformed`` otherwise); an entry without a string
    ``ieee_address`` and ``friendly_name`` is skipped and named in the problems. Other
    fields are optional: older versions lack some of them.
    """
    value = parse_json(payload)
    if not isinstance(value, list):
        raise Malformed(f"the device list is a JSON array, not {_what(value)}")
    devices: list[Device] = []
    problems: list[str] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            problems.append(f"device [{i}] is {_what(entry)}")
            continue
        ieee, name = entry.get("ieee_address"), entry.get("friendly_name")
        if not isinstance(ieee, str) or not isinstance(name, str) or not ieee or not name:
            problems.append(f"device [{i}] has no ieee_address or friendly_name")
            continue
        definition = entry.get("definition")
        model: str | None = None
        exposes: set[str] = set()
        if isinstance(definition, dict):
            raw_model = definition.get("model")
            model = raw_model if isinstance(raw_model, str) else None
            _exposed(definition.get("exposes"), exposes)
        kind = entry.get("type")
        power = entry.get("power_source")
        supported = entry.get("supported")
        devices.append(
            Device(
                ieee=ieee,
                name=name,
                type=kind if isinstance(kind, str) else "Unknown",
                power_source=power if isinstance(power, str) else None,
                interviewed=entry.get("interview_completed", True) is not False
                and entry.get("interviewing", False) is not True,
                supported=supported if isinstance(supported, bool) else None,
                disabled=entry.get("disabled", False) is True,
                model=model,
                exposes=frozenset(exposes),
            )
        )
    return devices, problems


def parse_groups(payload: bytes) -> tuple[set[str], list[str]]:
    """``bridge/groups``: the groups' friendly names (their topics are not devices)."""
    value = parse_json(payload)
    if not isinstance(value, list):
        raise Malformed(f"the group list is a JSON array, not {_what(value)}")
    names: set[str] = set()
    problems: list[str] = []
    for i, entry in enumerate(value):
        name = entry.get("friendly_name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name:
            names.add(name)
        else:
            problems.append(f"group [{i}] has no friendly_name")
    return names, problems


# ---- topics ---------------------------------------------------------------------------------


class Topic(Enum):
    STATE = "state"  # <name>
    AVAILABILITY = "availability"  # <name>/availability
    ACTION = "action"  # <name>/action (or the legacy <name>/click)
    OTHER = "other"  # a device's other subtopic: /set, /get, an endpoint, an attribute
    GROUP = "group"  # a group's topic
    UNKNOWN = "unknown"  # no device or group of that name


class Route(NamedTuple):
    topic: Topic
    name: str  # the device's (or group's) friendly name; "" when unknown


_ACTION_SUBTOPICS = frozenset({"action", "click"})


def route(rel: str, devices: Collection[str], groups: Collection[str] = ()) -> Route:
    """What topic ``rel`` (relative to the base topic, not ``bridge/...``) is.

    The device whose name is the whole topic wins; else the longest device name that is
    a prefix at a ``/`` boundary owns it and the rest is its subtopic.
    """
    if rel in devices:
        return Route(Topic.STATE, rel)
    cut = len(rel)
    while (cut := rel.rfind("/", 0, cut)) > 0:
        name, sub = rel[:cut], rel[cut + 1 :]
        if name in devices:
            if sub == "availability":
                return Route(Topic.AVAILABILITY, name)
            if sub in _ACTION_SUBTOPICS:
                return Route(Topic.ACTION, name)
            return Route(Topic.OTHER, name)
    if rel in groups:
        return Route(Topic.GROUP, rel)
    cut = len(rel)
    while (cut := rel.rfind("/", 0, cut)) > 0:
        if rel[:cut] in groups:
            return Route(Topic.GROUP, rel[:cut])
    return Route(Topic.UNKNOWN, "")


# ---- actions (buttons) ----------------------------------------------------------------------

#: Words of an action that mean the button was pressed (value 1)...
PRESS_WORDS = frozenset(
    {
        "single",
        "double",
        "triple",
        "quadruple",
        "many",
        "press",
        "pressed",
        "click",
        "toggle",
        "on",
        "off",
        "emergency",
        "sos",
        "panic",
    }
)
#: ...held or long-pressed (value 2; wins over a press word: "long_press")...
LONG_WORDS = frozenset({"hold", "long"})
#: ...or the end of a press or hold already counted: nothing ("on_press_release").
END_WORDS = frozenset({"release", "released", "stop"})


def action_value(action: str) -> float | None:
    """The ``button`` value of an action string: 1 press, 2 long press, None for nothing.

    Zigbee2MQTT's action names are words joined by ``_`` with a button's name or number
    around them: ``single``, ``hold``, ``long``, ``1_single``, ``button_2_hold``,
    ``single_left``, ``on_press``, ``arrow_left_click``. An empty action is the
    "cleared" message some setups send after each press. Actions of devices that are not
    buttons (a vibration sensor's ``tilt``, a cube's ``shake``, a dimmer's
    ``brightness_move_up``) hold none of the words and give None: they must never reach
    the help-button rule.
    """
    words = set(action.strip().casefold().replace("-", "_").split("_"))
    if words & END_WORDS:
        return None
    if words & LONG_WORDS:
        return 2.0
    if words & PRESS_WORDS:
        return 1.0
    return None


# ---- state ------------------------------------------------------------------------------------


def _boolean(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    raise Malformed(f"expected true or false, got {_what(value)}")


def _closed(value: Any) -> float:
    """Zigbee2MQTT's ``contact`` is true when the contact is closed: ours is 1 = open."""
    return 1.0 - _boolean(value)


def _number(low: float, high: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool):
            raise Malformed("expected a number, got a boolean")
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):  # early Zigbee2MQTT sent "battery": "100.00"
            try:
                number = float(value.strip())
            except ValueError:
                raise Malformed(f"expected a number, got {value[:20]!r}") from None
        else:
            raise Malformed(f"expected a number, got {_what(value)}")
        if not math.isfinite(number) or not low <= number <= high:
            raise Malformed(f"{number:g} is outside {low:g}..{high:g}")
        return number

    return convert


class Rule(NamedTuple):
    kind: EventKind
    convert: Callable[[Any], float]
    #: a repeated active value (1) in a new report may be a new trigger
    retrigger: bool = False


#: State keys and what they become. ``voltage`` is not here: a voltage is not a battery
#: percentage, and the curve between them differs per battery and device. ``pressure``
#: is air pressure in hPa, not a pressure mat. ``linkquality`` goes to ``ctx.signal``.
RULES: dict[str, Rule] = {
    "occupancy": Rule(EventKind.MOTION, _boolean, retrigger=True),
    "presence": Rule(EventKind.PRESENCE, _boolean, retrigger=True),
    "vibration": Rule(EventKind.VIBRATION, _boolean, retrigger=True),
    "contact": Rule(EventKind.CONTACT, _closed),
    "sos": Rule(EventKind.BUTTON, _boolean, retrigger=True),  # IAS SOS pendants
    "smoke": Rule(EventKind.SMOKE, _boolean),
    "water_leak": Rule(EventKind.WATER_LEAK, _boolean),
    "tamper": Rule(EventKind.TAMPER, _boolean),
    "battery_low": Rule(EventKind.BATTERY_LOW, _boolean),
    "temperature": Rule(EventKind.TEMPERATURE, _number(-60.0, 100.0)),
    "humidity": Rule(EventKind.HUMIDITY, _number(0.0, 100.0)),
    # Before 2.0 ``illuminance`` was a raw value on some devices and ``illuminance_lux``
    # the lux; from 2.0 ``illuminance`` is lux and ``illuminance_lux`` is gone.
    "illuminance_lux": Rule(EventKind.ILLUMINANCE, _number(0.0, 200_000.0)),
    "illuminance": Rule(EventKind.ILLUMINANCE, _number(0.0, 200_000.0)),
    "battery": Rule(EventKind.BATTERY, _number(0.0, 100.0)),
}

#: Keys of an action: never cached by Zigbee2MQTT, so present only in a fresh report.
ACTION_KEYS = ("action", "click")

#: Keys that change with every published message, or are never cached (Zigbee2MQTT's
#: own list of uncached properties): they say nothing about *what* was reported.
VOLATILE_KEYS = frozenset(
    {
        "linkquality",
        "last_seen",
        "elapsed",
        "action",
        "click",
        "button",
        "button_left",
        "button_right",
        "forgotten",
        "keyerror",
        "step_size",
        "transition_time",
        "group_list",
        "group_capacity",
        "no_occupancy_since",
        "step_mode",
        "duration",
        "from_side",
        "to_side",
    }
)
_VOLATILE_PREFIX = "action_"

#: Keys whose repeated value may itself be the news: a person moving again.
TRIGGER_KEYS = frozenset(key for key, rule in RULES.items() if rule.kind in ACTIVITY_KINDS)


class Reading(NamedTuple):
    kind: EventKind
    value: float
    key: str  # the vendor field it came from


@dataclass(slots=True)
class StateUpdate:
    """What one state message means, given the one before it."""

    readings: list[Reading] = field(default_factory=list)  # pass these on now
    steady: list[Reading] = field(default_factory=list)  # measurements reported unchanged
    lqi: float | None = None
    fresh: bool = True  # a new report from the device, as far as can be told
    saw_action: bool = False  # the message held a non-empty action (JSON output is on)
    problems: list[str] = field(default_factory=list)


def _converted(state: Mapping[str, Any] | None, key: str, rule: Rule) -> float | None:
    if state is None:
        return None
    raw = state.get(key)
    if raw is None:
        return None
    try:
        return rule.convert(raw)
    except Malformed:
        return None


def _volatile(key: str) -> bool:
    return key in VOLATILE_KEYS or key.startswith(_VOLATILE_PREFIX)


def decode_state(
    prev: Mapping[str, Any] | None, cur: Mapping[str, Any], *, retained: bool = False
) -> StateUpdate:
    """The readings of state message ``cur`` of one device, ``prev`` its previous one.

    Rules, because Zigbee2MQTT republishes the whole cached state with every report:

    - a state or a measurement is passed on when its value differs from ``prev`` (or
      there is no ``prev``). Unchanged measurements are listed in ``steady`` when the
      message is a fresh report (the driver passes them on at a slow pace);
    - activity (occupancy, presence, vibration, an SOS flag) is also passed on when the
      same active value comes again in a *bare* report: a fresh report in which nothing
      but the activity keys and the per-message keys (``linkquality``, ``last_seen``,
      uncached keys) changed. A battery, temperature, illuminance or any other change
      makes it a report of that other thing, with the cached activity riding along.
      This errs on the side of silence: a missed repeat of "motion" while motion is
      already on costs little, a false one could hide a person lying still;
    - ``contact`` is passed on only when it changes;
    - a report is not fresh when it carries the same ``last_seen`` as ``prev``: it is a
      re-publication of Zigbee2MQTT's cache (Home Assistant restarting, a ``/get``)
      without a new message from the device. Without ``last_seen`` this cannot be told
      and every message counts as fresh;
    - ``retained`` (a message the broker kept from before we subscribed): a baseline.
      States and measurements are passed on, activity and button presses are not: they
      happened at some earlier time;
    - ``action`` is never cached, so a non-empty action is always a new press (see
      ``action_value``); ``null`` or ``""`` is the "cleared" message, nothing;
    - a value of the wrong type is a problem, listed; the other keys still count.
      ``null`` is no value (Home Assistant integration publishes it for unknowns).
    """
    out = StateUpdate()
    lqi = cur.get("linkquality")
    if lqi is not None:
        if isinstance(lqi, int | float) and not isinstance(lqi, bool) and 0 <= lqi <= 255:
            out.lqi = float(lqi)
        else:
            out.problems.append(f"linkquality: expected 0..255, got {lqi!r:.20}")
    if prev is not None and "last_seen" in cur and cur.get("last_seen") == prev.get("last_seen"):
        out.fresh = False
    bare = out.fresh and prev is not None
    if bare:
        assert prev is not None
        for key, value in cur.items():
            if key in TRIGGER_KEYS or _volatile(key):
                continue
            if key not in prev or prev[key] != value:
                bare = False
                break

    for key, rule in RULES.items():
        raw = cur.get(key)
        if raw is None:
            continue
        if key == "illuminance" and cur.get("illuminance_lux") is not None:
            continue
        try:
            value = rule.convert(raw)
        except Malformed as err:
            out.problems.append(f"{key}: {err}")
            continue
        before = _converted(prev, key, rule)
        changed = before is None or before != value
        reading = Reading(rule.kind, value, key)
        if rule.kind in ACTIVITY_KINDS:
            if retained:
                continue
            if rule.kind is EventKind.BUTTON and value <= 0:
                continue  # an SOS flag clearing: a button has no "released" event
            if changed or (rule.retrigger and value > 0 and bare):
                out.readings.append(reading)
        elif changed:
            out.readings.append(reading)
        elif rule.kind in MEASUREMENT_KINDS and out.fresh and not retained:
            out.steady.append(reading)

    for key in ACTION_KEYS:
        raw = cur.get(key)
        if raw is None or raw == "":
            continue  # absent, or the "cleared" message
        if not isinstance(raw, str):
            out.problems.append(f"{key}: expected a string, got {_what(raw)}")
            break
        out.saw_action = True
        pressed = action_value(raw)
        sos = any(r.kind is EventKind.BUTTON for r in out.readings)  # one press, not two
        if pressed is not None and not retained and not sos:
            out.readings.append(Reading(EventKind.BUTTON, pressed, key))
        break  # "click" is the legacy twin of "action": one press, not two
    return out
