"""``hub provision pair``: the installer in the hallway pairs the home's Zigbee sensors.

Talks to Zigbee2MQTT on the hub's own broker (host, port and base topic from the
configuration's ``zigbee2mqtt`` driver table) and writes the home map:

1. reads ``<base>/bridge/info`` (the version), ``bridge/devices`` and ``bridge/groups``,
   which Zigbee2MQTT keeps retained; nothing there within ``READY_TIMEOUT``: exit 1;
2. asks Zigbee2MQTT to permit joining (``bridge/request/permit_join``) for
   ``PERMIT_SECONDS``, asking again every ``RENEW_AFTER`` seconds while the session
   lasts. The payload follows the bridge's version: ``{"value": true, "time": 254}`` for
   1.x (which requires ``value``), ``{"time": 254}`` for 2.x (which reads only ``time``);
   both fields when the version is unknown. Each request carries a ``transaction`` and
   its answer (``bridge/response/permit_join``) is awaited;
3. says "trigger the sensor now" and waits for either a device that joins (the
   ``bridge/event`` ``device_joined``, then ``device_interview`` ``successful``) or a live
   report (``<base>/<friendly name>``, not retained) from a device that is not in the home
   map yet. A device of the home map is named as such and not offered again;
4. shows it (friendly name, IEEE address, model, what it exposes), proposes a kind from
   what it exposes (contact, occupancy→motion, presence, water_leak, smoke, vibration,
   sos/action→button, temperature, humidity, illuminance), asks the room, the role (a
   numbered menu of ``agent.homemap.Role``) and a sensor id (suggested from room and
   kind); an answer that does not fit is asked again;
5. appends ``[home.sensors.<id>]`` with ``device = "<IEEE address>"`` to ``hub.toml``
   after the last sensor table, and replaces the file only once ``load_config`` has
   accepted the result (``agent.provision.replace_config``; the file as it was before
   the session is kept as ``hub.toml.bak``). One sensor at a time: each is complete or
   not written at all;
6. at the end, or on Ctrl-C (also SIGTERM or a lost terminal) at any point, asks
   Zigbee2MQTT to stop permitting joins; a sensor whose questions were not finished is
   not written. Then restarts the agent (``systemctl try-restart leefsamen-hub``) when run
   as root where systemctl exists, unless told not to; otherwise says how to.

The questions and answers go through a ``PairingIo`` so that tests can answer them; the
terminal one uses ``input`` and ``print``. Exit 0 done, 1 Zigbee2MQTT not reachable or
interrupted, 2 a configuration that cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from agent.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from agent.errors import ConfigError
from agent.events import EventKind
from agent.homemap import HomeMap, Role

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from drivers.zigbee2mqtt.config import Zigbee2MqttConfig
    from drivers.zigbee2mqtt.decode import Device

PERMIT_SECONDS = 254  # the longest one request may open the network (Zigbee 3.0, Zigbee2MQTT)
RENEW_AFTER = 200.0  # ask again before the network closes by itself
READY_TIMEOUT = 10.0  # for Zigbee2MQTT's retained bridge/devices after subscribing
ANSWER_TIMEOUT = 10.0  # for an answer on bridge/response/...
SERVICE = "leefsamen-hub"


class PairingError(Exception):
    """Pairing cannot go on: the broker or Zigbee2MQTT is not there."""


class PairingIo(Protocol):
    """How the session talks to the installer."""

    def ask(self, prompt: str) -> str:
        """One answer; ``EOFError`` or ``KeyboardInterrupt`` end the session."""
        ...

    def say(self, text: str) -> None: ...


class TerminalIo:
    """The installer's terminal.

    Answers are read from the terminal's own file descriptor once ``select`` says a line
    is there, and ``select`` wakes at least every half second: a signal (Ctrl-C, SIGTERM,
    SIGHUP) is acted on at once, never left waiting behind a blocking read until Enter is
    pressed, which ``input`` allows when the signal comes just before it starts reading.
    Reading the descriptor rather than ``sys.stdin`` leaves lines typed ahead in the
    terminal, where the next question finds them."""

    def ask(self, prompt: str) -> str:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        fd = sys.stdin.fileno()
        while not select.select([fd], [], [], 0.5)[0]:
            pass
        data = os.read(fd, 4096)
        if not data:
            raise EOFError
        return data.decode(sys.stdin.encoding or "utf-8", errors="replace").rstrip("\r\n")

    def say(self, text: str) -> None:
        print(text, flush=True)


# ---- Zigbee2MQTT's conventions -------------------------------------------------------------
def major_version(version: str | None) -> int | None:
    """``"1.25.0-dev"`` -> 1; None when there is no version or it is not one."""
    match = re.match(r"\s*(\d+)\.", version or "")
    return int(match.group(1)) if match else None


def permit_payload(version: str | None, seconds: int) -> dict[str, Any]:
    """The ``permit_join`` request that Zigbee2MQTT ``version`` accepts; 0 seconds closes.

    1.x (the API of 1.17 and later) requires ``value`` and takes an optional ``time``;
    2.x reads only ``time`` (0 closes) and refuses a request without it. Unknown: both,
    which each of them reads its own way."""
    major = major_version(version)
    if major is None:
        return {"value": seconds > 0, "time": seconds}
    if major >= 2:
        return {"time": seconds}
    return {"value": True, "time": seconds} if seconds > 0 else {"value": False}


#: What a device exposes -> the kind proposed for it, first match wins. Vibration comes
#: before action: an Aqara vibration sensor names its vibrations in ``action``.
KIND_OF_EXPOSE: tuple[tuple[str, EventKind], ...] = (
    ("contact", EventKind.CONTACT),
    ("occupancy", EventKind.MOTION),
    ("presence", EventKind.PRESENCE),
    ("water_leak", EventKind.WATER_LEAK),
    ("smoke", EventKind.SMOKE),
    ("vibration", EventKind.VIBRATION),
    ("sos", EventKind.BUTTON),
    ("action", EventKind.BUTTON),
    ("click", EventKind.BUTTON),
    ("temperature", EventKind.TEMPERATURE),
    ("humidity", EventKind.HUMIDITY),
    ("illuminance_lux", EventKind.ILLUMINANCE),
    ("illuminance", EventKind.ILLUMINANCE),
)

#: Kinds a sensor of the home map may be declared as (not the side readings).
SENSOR_KINDS = tuple(
    k
    for k in EventKind
    if k
    not in (
        EventKind.BATTERY,
        EventKind.BATTERY_LOW,
        EventKind.LINK_QUALITY,
        EventKind.AVAILABILITY,
        EventKind.TAMPER,
    )
)

ROLE_HELP: dict[Role, str] = {
    Role.BEDROOM: "movement in a bedroom",
    Role.BED: "a bed mat or bed-exit sensor: lying in bed",
    Role.BATHROOM: "movement or use of the bathroom",
    Role.TOILET: "a toilet flush or the toilet room's door",
    Role.KITCHEN: "kitchen movement, fridge, cupboards, appliances",
    Role.LIVING: "living room movement, TV",
    Role.SEAT: "a chair mat: sitting",
    Role.HALLWAY: "a passage between rooms",
    Role.FRONT_DOOR: "the door the person leaves and returns by",
    Role.OUTSIDE_DOOR: "another door to the outside (garden, balcony)",
    Role.WINDOW: "a window contact",
    Role.WEARABLE: "worn by the person (pendant, watch)",
    Role.OTHER: "anything else inside the home",
}

#: Room names (English and Dutch) that say the role of a sensor in them.
ROLE_OF_ROOM: dict[str, Role] = {
    "bedroom": Role.BEDROOM,
    "slaapkamer": Role.BEDROOM,
    "bathroom": Role.BATHROOM,
    "badkamer": Role.BATHROOM,
    "toilet": Role.TOILET,
    "wc": Role.TOILET,
    "kitchen": Role.KITCHEN,
    "keuken": Role.KITCHEN,
    "living": Role.LIVING,
    "living room": Role.LIVING,
    "livingroom": Role.LIVING,
    "lounge": Role.LIVING,
    "woonkamer": Role.LIVING,
    "huiskamer": Role.LIVING,
    "hallway": Role.HALLWAY,
    "hall": Role.HALLWAY,
    "gang": Role.HALLWAY,
    "hal": Role.HALLWAY,
}


def propose_kind(exposes: frozenset[str]) -> EventKind | None:
    return next((kind for key, kind in KIND_OF_EXPOSE if key in exposes), None)


def slug(text: str) -> str:
    """``"Living room"`` -> ``"living-room"``: ASCII letters, digits and '-'."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")


def suggest_id(room: str, kind: EventKind | None, home: HomeMap) -> str:
    """``<room>-<kind>``, numbered when taken (kitchen-motion, kitchen-motion-2, ...)."""
    base = "-".join(p for p in (slug(room)[:40], kind.value if kind else "sensor") if p)
    taken = {sid.casefold() for sid in home.sensors}
    for n in itertools.count(1):
        candidate = base if n == 1 else f"{base}-{n}"
        if candidate.casefold() not in taken and home.sensor_for_device(candidate) is None:
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


# ---- the connection to Zigbee2MQTT ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Message:
    topic: str  # relative to the base topic
    payload: bytes
    retained: bool


class Bridge:
    """A paho client on its own thread: messages under ``<base>/#`` into a queue, and
    requests to Zigbee2MQTT answered through ``bridge/response/<name>``."""

    def __init__(self, cfg: Zigbee2MqttConfig) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.cfg = cfg
        self.where = f"{cfg.host}:{cfg.port}"
        self._base = cfg.base_topic + "/"
        self._queue: queue.Queue[Message] = queue.Queue()
        self._answers: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"leefsamen-hub-pair-{uuid.uuid4().hex[:8]}",
        )
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else None
            self._client.username_pw_set(cfg.username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect_timeout = cfg.connect_timeout
        self._started = False

    def connect(self) -> None:
        try:
            self._client.connect(self.cfg.host, self.cfg.port, keepalive=30)
        except OSError as err:
            raise PairingError(
                f"cannot reach the hub's MQTT broker at {self.where}: {err.strerror or err}"
            ) from None
        # The network thread must never take the signals meant for the session: one that
        # lands there would leave the main thread waiting at a prompt, deaf to Ctrl-C.
        # A thread starts with its creator's signal mask.
        stop = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        try:
            self._client.loop_start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self._started = True
        if not self._subscribed.wait(self.cfg.connect_timeout) or self._refused:
            why = self._refused or "no answer"
            raise PairingError(f"the MQTT broker at {self.where} did not let us in: {why}")

    def close(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False
        sock = self._client.socket()  # the thread may stop before it closed the socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def get(self, timeout: float) -> Message | None:
        try:
            return self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def request(self, name: str, payload: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Publish a request; Zigbee2MQTT's answer, or None when none came in time."""
        transaction = f"leefsamen-{uuid.uuid4().hex[:10]}"
        body = json.dumps({**payload, "transaction": transaction})
        self._client.publish(f"{self._base}bridge/request/{name}", body, qos=1)
        with self._cond:
            self._cond.wait_for(lambda: transaction in self._answers, timeout)
            return self._answers.pop(transaction, None)

    # paho's thread
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._subscribed.set()
            return
        client.subscribe(f"{self._base}#", qos=0)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._refused = f"the subscription to {self._base}# was refused"
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        if not topic.startswith(self._base):
            return
        rel = topic[len(self._base) :]
        if rel.startswith("bridge/response/"):
            try:
                answer = json.loads(message.payload)
            except ValueError:
                return
            if isinstance(answer, dict) and isinstance(answer.get("transaction"), str):
                with self._cond:
                    self._answers[answer["transaction"]] = answer
                    self._cond.notify_all()
            return
        self._queue.put(Message(rel, bytes(message.payload), bool(message.retain)))


# ---- a session ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A device offered to the installer."""

    name: str
    ieee: str
    model: str | None
    exposes: frozenset[str]
    interviewed: bool = True


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or a lost terminal: stop, close the network, write nothing more."""


@dataclass
class Session:
    """One pairing session: what Zigbee2MQTT said, and what was added to the home map."""

    config: Path
    home: HomeMap
    bridge: Bridge
    io: PairingIo
    wait: float
    renew_after: float = RENEW_AFTER
    version: str | None = None
    devices: dict[str, Device] = field(default_factory=dict)  # friendly name -> device
    groups: set[str] = field(default_factory=set)
    added: list[str] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)  # IEEE addresses declined this session
    opened_at: float | None = None
    _have_devices: bool = False
    _have_info: bool = False
    _backup_done: bool = False

    # -- Zigbee2MQTT's state --
    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Take in the retained bridge topics; ``PairingError`` if there is no device list."""
        deadline = time.monotonic() + timeout
        while not (self._have_devices and self._have_info):
            message = self.bridge.get(deadline - time.monotonic())
            if message is None:
                break
            self.take(message, set())
        if not self._have_devices:
            raise PairingError(
                f"Zigbee2MQTT has published no device list on {self.bridge.cfg.base_topic}/bridge"
                f"/devices at {self.bridge.where}: is it running (systemctl status zigbee2mqtt), "
                "and is base_topic in hub.toml its mqtt.base_topic?"
            )

    def take(self, message: Message, told: set[str]) -> Candidate | None:
        """Learn from one message; a device to offer, if this message brings one."""
        from drivers.zigbee2mqtt import decode

        topic = message.topic
        try:
            if topic == "bridge/devices":
                devices, _ = decode.parse_devices(message.payload)
                self.devices = {d.name: d for d in devices}
                self._have_devices = True
            elif topic == "bridge/groups":
                self.groups, _ = decode.parse_groups(message.payload)
            elif topic == "bridge/info":
                info = decode.parse_json(message.payload)
                version = info.get("version") if isinstance(info, dict) else None
                self.version = version if isinstance(version, str) else None
                self._have_info = True
            elif topic == "bridge/state":
                if not decode.parse_online(message.payload):
                    self.io.say("Zigbee2MQTT says it is offline: nothing can pair until it is back")
            elif topic == "bridge/event":
                return self._event(decode.parse_json(message.payload), told)
            elif not topic.startswith("bridge/") and not message.retained:
                return self._report(topic, message.payload, told)
        except decode.Malformed:
            return None
        return None

    def _device(self, ieee: str) -> Device | None:
        return next(
            (d for d in self.devices.values() if d.ieee.casefold() == ieee.casefold()), None
        )

    def _known(self, name: str, ieee: str, told: set[str]) -> bool:
        """Whether the device is in the home map (saying so once) or was declined."""
        sid = self.home.sensor_for_device(name) or self.home.sensor_for_device(ieee)
        if sid is not None:
            if ieee not in told:
                told.add(ieee)
                spec = self.home.sensors[sid]
                self.io.say(
                    f"  {name} ({ieee}) is sensor {sid} ({spec.room}, {spec.role.value}): "
                    "already in the home map"
                )
            return True
        if ieee in self.skipped:
            if ieee not in told:
                told.add(ieee)
                self.io.say(f"  {name} ({ieee}) was skipped before; ignoring it")
            return True
        return False

    def _event(self, event: Any, told: set[str]) -> Candidate | None:
        from drivers.zigbee2mqtt import decode

        if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            return None
        kind, data = event.get("type"), event["data"]
        ieee, name = data.get("ieee_address"), data.get("friendly_name")
        if not isinstance(ieee, str) or not isinstance(name, str):
            return None
        if kind == "device_joined":
            self.io.say(
                f"  a new device joined: {ieee}. Zigbee2MQTT is asking it what it is; keep it "
                "awake (press its button every few seconds) until it is shown here"
            )
        elif kind == "device_interview" and data.get("status") == "failed":
            self.io.say(
                f"  Zigbee2MQTT could not finish pairing {ieee}: reset the device and try again"
            )
        elif kind == "device_interview" and data.get("status") == "successful":
            if self._known(name, ieee, told):
                return None
            device = self._device(ieee)
            if device is None:  # the event's own definition, read as a device list entry
                entry = {
                    "ieee_address": ieee,
                    "friendly_name": name,
                    "definition": data.get("definition"),
                }
                devices, _ = decode.parse_devices(json.dumps([entry]).encode())
                device = devices[0] if devices else None
            if device is not None:
                return self._candidate(device, frozenset())
        return None

    def _report(self, topic: str, payload: bytes, told: set[str]) -> Candidate | None:
        from drivers.zigbee2mqtt import decode

        where, name = decode.route(topic, self.devices, self.groups)
        if where not in (decode.Topic.STATE, decode.Topic.ACTION):
            return None
        device = self.devices[name]
        if device.coordinator or self._known(device.name, device.ieee, told):
            return None
        keys = (
            frozenset({"action"})
            if where is decode.Topic.ACTION
            else frozenset(decode.parse_state(payload))
        )
        return self._candidate(device, keys)

    def _candidate(self, device: Device, reported: frozenset[str]) -> Candidate:
        return Candidate(
            name=device.name,
            ieee=device.ieee,
            model=device.model,
            exposes=device.exposes | reported,
            interviewed=device.interviewed,
        )

    # -- the network --
    def permit(self, seconds: int) -> bool:
        """Ask Zigbee2MQTT to open (``seconds`` > 0) or close the network; whether it did."""
        answer = self.bridge.request(
            "permit_join", permit_payload(self.version, seconds), ANSWER_TIMEOUT
        )
        if answer is None:
            if seconds:
                self.io.say(
                    "Zigbee2MQTT did not answer the request to let devices join; sensors "
                    "paired before can still be added by triggering them"
                )
            return False
        if answer.get("status") != "ok":
            error = str(answer.get("error") or "no reason given")[:200]
            self.io.say(
                f"Zigbee2MQTT refused to {'open' if seconds else 'close'} the network: {error}"
            )
            return False
        return True

    def open_network(self, quiet: bool = False) -> None:
        """Ask for joins to be permitted, again once ``renew_after`` has passed. Marked open
        before asking: an interruption while the request is under way still closes it."""
        if self.opened_at is not None and time.monotonic() - self.opened_at < self.renew_after:
            return
        first = self.opened_at is None
        self.opened_at = time.monotonic()
        if self.permit(PERMIT_SECONDS) and first and not quiet:
            self.io.say("The Zigbee network is open for new devices.")

    def close_network(self) -> None:
        if self.opened_at is None:
            return
        self.opened_at = None
        if self.permit(0):
            self.io.say("The Zigbee network is closed to new devices again.")
        else:
            self.io.say(f"Zigbee2MQTT closes the network by itself within {PERMIT_SECONDS} s.")

    # -- waiting for a device --
    def watch(self) -> Candidate | None:
        """The next device to offer, or None when ``wait`` seconds pass without one."""
        told: set[str] = set()
        deadline = time.monotonic() + self.wait
        while True:
            self.open_network(quiet=True)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            message = self.bridge.get(min(left, 1.0))
            if message is not None:
                found = self.take(message, told)
                if found is not None:
                    return found

    # -- the questions --
    def ask(self, prompt: str, check: Callable[[str], Any], default: str | None = None) -> Any:
        """Ask until ``check`` accepts the answer (it raises ``ValueError`` with the reason)."""
        shown = f"{prompt} [{default}]: " if default else f"{prompt}: "
        while True:
            answer = self.io.ask(shown).strip()
            if not answer and default is not None:
                answer = default
            try:
                if not answer:
                    raise ValueError("an answer is needed")
                return check(answer)
            except ValueError as err:
                self.io.say(f"  {err}")

    def yes(self, prompt: str, default: bool = True) -> bool:
        def check(answer: str) -> bool:
            word = answer.casefold()
            if word in ("y", "yes", "j", "ja"):
                return True
            if word in ("n", "no", "nee"):
                return False
            raise ValueError("please answer y or n")

        return bool(self.ask(f"{prompt} (y/n)", check, "y" if default else "n"))

    def show(self, c: Candidate) -> None:
        from drivers.zigbee2mqtt import decode

        read_keys = frozenset({*decode.RULES, *decode.ACTION_KEYS})
        read = sorted(c.exposes & read_keys)
        other = sorted(c.exposes - read_keys - {"linkquality", "last_seen"})
        self.io.say("")
        self.io.say(f"Found: {c.name}")
        self.io.say(f"  IEEE address  {c.ieee}")
        self.io.say(f"  model         {c.model or 'unknown'}")
        self.io.say(f"  exposes       {', '.join(read) or 'nothing this hub reads'}")
        if other:
            self.io.say(f"  and also      {', '.join(other)}")
        if not c.interviewed:
            self.io.say(
                "  Zigbee2MQTT has not finished pairing it: it may report nothing; pair it again"
            )

    def kind(self, c: Candidate) -> EventKind | None:
        proposed = propose_kind(c.exposes)
        names = ", ".join(k.value for k in SENSOR_KINDS)

        def check(answer: str) -> EventKind | None:
            if answer.casefold() == "none":
                return None
            kind = next((k for k in SENSOR_KINDS if k.value == answer.casefold()), None)
            if kind is None:
                raise ValueError(f"a kind is one of: {names} (or none)")
            return kind

        result: EventKind | None = self.ask("Kind", check, proposed.value if proposed else None)
        return result

    def room(self) -> str:
        rooms = self.home.rooms()
        if rooms:
            self.io.say("Rooms so far: " + ", ".join(f"{i} {r}" for i, r in enumerate(rooms, 1)))

        def check(answer: str) -> str:
            if answer.isdigit():
                n = int(answer)
                if 1 <= n <= len(rooms):
                    return rooms[n - 1]
                raise ValueError(f"there is no room number {n}; type a name for a new room")
            if len(answer) > 64 or not answer.isprintable():
                raise ValueError("a room is a name of at most 64 printable characters")
            return answer

        result: str = self.ask("Room (a number above, or a new name)", check)
        return result

    def role(self, room: str) -> Role:
        roles = list(Role)
        self.io.say("Role: what the sensor tells about the person")
        for i, r in enumerate(roles, 1):
            self.io.say(f"  {i:2} {r.value:<13} {ROLE_HELP[r]}")
        guess = ROLE_OF_ROOM.get(room.casefold().strip())

        def check(answer: str) -> Role:
            if answer.isdigit() and 1 <= int(answer) <= len(roles):
                return roles[int(answer) - 1]
            try:
                return Role(answer.casefold())
            except ValueError:
                raise ValueError(f"a number from 1 to {len(roles)}, or a role's name") from None

        result: Role = self.ask("Role", check, guess.value if guess else None)
        return result

    def sensor_id(self, room: str, kind: EventKind | None) -> str:
        from pydantic import TypeAdapter, ValidationError

        from agent.homemap import SensorId

        def check(answer: str) -> str:
            try:
                TypeAdapter(SensorId).validate_python(answer)
            except ValidationError:
                raise ValueError(
                    "a sensor id is letters, digits, '-', '_', '.' and ':', starting with a "
                    "letter or digit, at most 64"
                ) from None
            if any(s.casefold() == answer.casefold() for s in self.home.sensors):
                raise ValueError(f"{answer} is already a sensor of this home; choose another")
            if self.home.sensor_for_device(answer) is not None:
                raise ValueError(f"{answer} is a device of another sensor; choose another")
            return answer

        result: str = self.ask("Sensor id", check, suggest_id(room, kind, self.home))
        return result

    # -- one sensor --
    def offer(self, c: Candidate) -> None:
        self.show(c)
        if propose_kind(c.exposes) is None and not self.yes(
            "It reports nothing this hub reads (lights and plugs are no sensors). Add it anyway?",
            default=False,
        ):
            self.skipped.add(c.ieee)
            self.io.say("  not added")
            return
        kind = self.kind(c)
        room = self.room()
        role = self.role(room)
        sid = self.sensor_id(room, kind)
        what = f"{sid}: {room}, {role.value}, {kind.value if kind else 'no kind'}, device {c.ieee}"
        if not self.yes(f"Add {what}?"):
            self.skipped.add(c.ieee)
            self.io.say("  not added")
            return
        if self.write(sid, room, role, kind, c):
            self.added.append(sid)
            self.io.say(f"  added {sid} to {self.config}")

    def write(self, sid: str, room: str, role: Role, kind: EventKind | None, c: Candidate) -> bool:
        """Append the sensor's table; whether the configuration took it."""
        from agent.config import load_config
        from agent.provision import replace_config

        try:
            text = self.config.read_text(encoding="utf-8")
            new = sensor_table_added(text, sid, room, role, kind, c)
        except (OSError, UnicodeDecodeError, ValueError, tomllib.TOMLDecodeError) as err:
            self.io.say(f"  not added: cannot edit {self.config}: {err}")
            return False
        try:
            replace_config(self.config, new, backup=not self._backup_done)
        except ConfigError as err:
            self.io.say(f"  not added: the configuration would not be valid:\n{err}")
            return False
        except OSError as err:
            self.io.say(f"  not added: cannot write {self.config}: {err.strerror or err}")
            return False
        self._backup_done = True
        self.home = load_config(self.config).home
        return True


def _after_last_sensor(lines: list[str]) -> int | None:
    """The line after the last ``[home.sensors...]`` table and its pairs, if there is one."""
    from agent.provision import statements

    stmts = statements(lines)
    end = None
    for i, stmt in enumerate(stmts):
        if stmt.key is None and not stmt.array and stmt.table[:2] == ("home", "sensors"):
            last = stmt.last
            for pair in itertools.takewhile(lambda s: s.key is not None, stmts[i + 1 :]):
                last = pair.last
            end = last + 1
    return end


def sensor_table_added(
    text: str, sid: str, room: str, role: Role, kind: EventKind | None, c: Candidate
) -> str:
    """``text`` with ``[home.sensors.<sid>]`` after the last sensor table, or at the end;
    every other line as it was. Checked by parsing: ``ValueError`` if it did not work."""
    from agent.provision import TomlEditor, toml_key, toml_string

    spec: dict[str, str] = {"room": room, "role": role.value}
    if kind is not None:
        spec["kind"] = kind.value
    spec["device"] = c.ieee
    about = [c.model] if c.model else []
    name = " ".join(c.name.split())[:60]
    if name.casefold() != c.ieee.casefold():
        about.append(f"Zigbee2MQTT name {toml_string(name)}")
    block = ["\n", f"[home.sensors.{toml_key(sid)}]\n"]
    block += [f"{key} = {toml_string(value)}\n" for key, value in spec.items()]
    if about:
        block[-1] = block[-1].rstrip("\n") + f"  # {', '.join(about)}\n"
    expected = tomllib.loads(text)
    expected.setdefault("home", {}).setdefault("sensors", {})[sid] = spec
    editor = TomlEditor(text)
    for at in (_after_last_sensor(editor.lines), len(editor.lines)):
        if at is None:
            continue
        lines = [*editor.lines[:at], *block, *editor.lines[at:]]
        result = "".join(lines)
        with contextlib.suppress(tomllib.TOMLDecodeError):
            if tomllib.loads(result) == expected:
                return result
    raise ValueError("the sensor's table could not be added by lines")


# ---- the command ------------------------------------------------------------------------
def _zigbee_table(config: Any, name: str | None) -> Zigbee2MqttConfig | str:
    from drivers.zigbee2mqtt.config import Zigbee2MqttConfig

    tables = [d for d in config.drivers if isinstance(d, Zigbee2MqttConfig)]
    if name is not None:
        tables = [d for d in tables if d.name == name]
    if not tables:
        which = f" named {name!r}" if name else ""
        return f"no zigbee2mqtt driver{which} in the configuration: pairing needs one"
    if len(tables) > 1:
        return "several zigbee2mqtt drivers: choose one with --driver NAME"
    return tables[0]


def restart_agent(
    io: PairingIo, allowed: bool, run: Callable[[list[str]], int] | None = None
) -> None:
    """Restart the agent so that it reads the new home map, where this can be done."""
    systemctl = shutil.which("systemctl")
    if allowed and os.geteuid() == 0 and systemctl:
        command = [systemctl, "try-restart", SERVICE]
        runner = run or (lambda argv: subprocess.run(argv, check=False, timeout=90).returncode)
        try:
            code = runner(command)
        except (OSError, subprocess.TimeoutExpired) as err:
            code = -1
            io.say(f"could not restart the agent: {err}")
        if code == 0:
            io.say(f"restarted the agent ({SERVICE}, if it was running)")
            return
    io.say(f"Restart the agent to use them: sudo systemctl restart {SERVICE}")


def run_pairing(
    config_path: Path,
    io: PairingIo,
    *,
    wait: float = 120.0,
    restart: bool = True,
    driver: str | None = None,
    renew_after: float = RENEW_AFTER,
    ready_timeout: float = READY_TIMEOUT,
    run: Callable[[list[str]], int] | None = None,
) -> int:
    """A whole session; the exit code."""
    from agent.config import load_config

    try:
        config = load_config(config_path)
    except ConfigError as err:
        io.say(str(err))
        return EXIT_BAD_INPUT
    table = _zigbee_table(config, driver)
    if isinstance(table, str):
        io.say(f"hub provision: {table}")
        return EXIT_BAD_INPUT
    bridge = Bridge(table)
    session = Session(config_path, config.home, bridge, io, wait, renew_after)
    interrupted = False
    try:
        bridge.connect()
        session.wait_ready(ready_timeout)
        io.say(
            f"Zigbee2MQTT {session.version or '(version unknown)'} at {bridge.where}: "
            f"{sum(not d.coordinator for d in session.devices.values())} device(s), "
            f"{len(config.home)} sensor(s) in the home map"
        )
        _pair_loop(session)
    except PairingError as err:
        io.say(f"hub provision: {err}")
        return EXIT_FAILED
    except (KeyboardInterrupt, EOFError, Interrupted):
        interrupted = True
        io.say("\nStopped; a sensor whose questions were not all answered was not added.")
    finally:
        with contextlib.suppress(KeyboardInterrupt, Interrupted):
            session.close_network()
        bridge.close()
    if session.added:
        io.say(f"Added {len(session.added)} sensor(s): {', '.join(session.added)}")
        restart_agent(io, restart, run)
    else:
        io.say("No sensor was added.")
    return EXIT_FAILED if interrupted else EXIT_OK


def _pair_loop(session: Session) -> None:
    io = session.io
    while True:
        session.open_network()
        io.say(
            "Trigger the sensor now: press its button, open and close the door, walk past it. "
            "A new one: hold its reset button until it blinks."
        )
        candidate = session.watch()
        if candidate is None:
            if not session.yes(f"Nothing in {session.wait:g} s. Keep waiting?"):
                return
            continue
        session.offer(candidate)
        if not session.yes("Pair another sensor?"):
            return


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (the installer's ssh session lost) end the session as Ctrl-C does,
    so that the network is closed and nothing is half-written."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def cmd_pair(args: argparse.Namespace) -> int:
    config: Path = args.config or args.etc / "hub.toml"
    if not sys.stdin.isatty():
        print(
            "hub provision: pairing asks questions and needs a terminal (use --from FILE or "
            "--boot for first boot)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if args.wait <= 0:
        print("hub provision: --wait must be positive", file=sys.stderr)
        return EXIT_BAD_INPUT
    with _signals_interrupt():
        return run_pairing(
            config, TerminalIo(), wait=args.wait, restart=not args.no_restart, driver=args.driver
        )
