"""The Zigbee2MQTT driver: Zigbee sensors, as Zigbee2MQTT publishes them on the local broker.

The driver subscribes to ``<base_topic>/#`` on the hub's own broker, learns the devices
from ``bridge/devices``, matches each to the home map by friendly name, then by IEEE
address (``ctx.home.sensor_for_device``), and turns the state messages of matched
devices into events with ``decode``. Messages that arrive before the device list (the
broker sends retained messages in no particular order) wait for it, a bounded number.

Health (``ctx.health.details``): ``broker`` (connected or why not), ``bridge`` (online,
offline, unknown), ``devices`` (known to Zigbee2MQTT, the coordinator not counted),
``matched`` (of those, in the home map) and ``strangers`` (the others, each logged once
at info so an installer sees an unpaired device). ``ctx.health.alive()`` is called on
every message and every second the broker session is open. Losing the broker raises
``TransientError``: the runtime starts the driver again with backoff.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.errors import TransientError
from agent.events import MEASUREMENT_KINDS, EventKind, SensorEvent
from drivers.base import Driver, DriverContext
from drivers.zigbee2mqtt import decode
from drivers.zigbee2mqtt.config import Zigbee2MqttConfig
from drivers.zigbee2mqtt.decode import Device, Malformed, Topic
from drivers.zigbee2mqtt.transport import LocalSubscriber

#: messages kept while the device list has not arrived yet; the oldest go first
EARLY_LIMIT = 2000


@dataclass(slots=True)
class _DeviceState:
    """What the driver remembers of one device (by IEEE address: a rename keeps it)."""

    last: dict[str, Any] | None = None  # the previous state message
    online: bool | None = None
    json_actions: bool = False  # actions come inside the JSON state: /action is a copy
    sent: dict[EventKind, float] = field(default_factory=dict)  # measurement -> mono


class Zigbee2MqttDriver(Driver):
    config_model = Zigbee2MqttConfig

    def __init__(self, config: Zigbee2MqttConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self._prefix = config.base_topic + "/"
        self._devices: dict[str, Device] | None = None  # friendly name -> device
        self._groups: set[str] = set()
        self._sensor_of: dict[str, str | None] = {}  # IEEE address -> sensor id
        self._state: dict[str, _DeviceState] = {}
        self._early: deque[tuple[str, bytes, bool]] = deque(maxlen=EARLY_LIMIT)
        self._early_dropped = 0
        self._bridge_online: bool | None = None
        self._told: set[str] = set()  # things logged once per run
        self._subscriber: LocalSubscriber | None = None
        details = ctx.health.details
        details.clear()  # what an earlier run of this driver said is history
        details["broker"] = f"{config.host}:{config.port} not connected yet"
        details["bridge"] = "unknown"
        details["devices"] = "unknown: waiting for bridge/devices"

    # ---- the contract -------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.cfg
        password = cfg.password.get_secret_value() if cfg.password is not None else None
        suffix = f"-{cfg.name}" if cfg.name else ""
        subscriber = LocalSubscriber(
            host=cfg.host,
            port=cfg.port,
            client_id=cfg.client_id or f"leefsamen-hub-zigbee2mqtt{suffix}"[:64],
            topics=[f"{cfg.base_topic}/#"],
            on_message=self._on_message,
            on_alive=self.ctx.health.alive,
            log=self.ctx.log,
            username=cfg.username,
            password=password,
            keepalive=cfg.keepalive,
            timeout=cfg.connect_timeout,
            stall_after=cfg.stall_after,
        )
        self._subscriber = subscriber
        details = self.ctx.health.details
        try:
            await subscriber.connect()
        except TransientError as err:
            details["broker"] = str(err)[:120]
            raise
        details["broker"] = f"{subscriber.where} connected"
        self.ctx.log.info("subscribed to %s/# on %s", cfg.base_topic, subscriber.where)
        reason = await subscriber.wait_lost()
        details["broker"] = f"{subscriber.where} lost ({reason})"[:120]
        raise TransientError(f"the connection to the local MQTT broker {subscriber.where} was lost")

    async def close(self) -> None:
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.close()

    def sensors(self) -> list[str]:
        """The home-map sensors matched to a Zigbee device, and, before the device list
        is known, those whose device (or id) is an IEEE address: they can only be Zigbee."""
        found = {sid for sid in self._sensor_of.values() if sid is not None}
        for sid, spec in self.ctx.home.sensors.items():
            if decode.IEEE_ADDRESS.match(spec.device or sid):
                found.add(sid)
        return sorted(found)

    # ---- messages -----------------------------------------------------------------------

    def _on_message(self, topic: str | None, payload: bytes, retained: bool) -> None:
        """Every message under the base topic, on the loop's thread, in the broker's order."""
        self.ctx.health.alive()
        if topic is None:
            self._malformed("a topic that is not UTF-8")
            return
        if not topic.startswith(self._prefix):
            return
        rel = topic[len(self._prefix) :]
        if rel.startswith("bridge/"):
            self._on_bridge(rel[len("bridge/") :], payload)
        elif self._devices is None:
            if len(self._early) == self._early.maxlen:
                self._early_dropped += 1
                self.ctx.health.details["early_dropped"] = str(self._early_dropped)
            self._early.append((rel, payload, retained))
        else:
            self._on_device_topic(rel, payload, retained)

    def _on_bridge(self, what: str, payload: bytes) -> None:
        try:
            if what == "state":
                self._on_bridge_state(decode.parse_online(payload))
            elif what == "devices":
                devices, problems = decode.parse_devices(payload)
                for problem in problems:
                    self._malformed(f"bridge/devices: {problem}")
                self._on_devices(devices)
            elif what == "groups":
                self._groups, problems = decode.parse_groups(payload)
                for problem in problems:
                    self._malformed(f"bridge/groups: {problem}")
        except Malformed as err:
            self._malformed(f"bridge/{what}: {err}")

    def _on_bridge_state(self, online: bool) -> None:
        was, self._bridge_online = self._bridge_online, online
        self.ctx.health.details["bridge"] = "online" if online else "offline"
        if not online and was is not False:
            self.ctx.log.warning(
                "Zigbee2MQTT is offline (bridge/state): no Zigbee sensor reports until it is back"
            )
        elif online and was is False:
            self.ctx.log.info("Zigbee2MQTT is online again")

    def _on_devices(self, devices: list[Device]) -> None:
        home = self.ctx.home
        log = self.ctx.log
        by_name: dict[str, Device] = {}
        sensor_of: dict[str, str | None] = {}
        strangers = 0
        for device in devices:
            by_name[device.name] = device
            if device.coordinator:
                continue
            sid = home.sensor_for_device(device.name) or home.sensor_for_device(device.ieee)
            sensor_of[device.ieee] = sid
            if sid is None:
                strangers += 1
                self._once(
                    f"stranger:{device.ieee}",
                    "Zigbee device %r (%s, %s) is not in the home map: its reports are ignored",
                    device.name,
                    device.ieee,
                    device.model or "unknown model",
                )
                continue
            if not device.interviewed:
                self._once(
                    f"interview:{device.ieee}",
                    "Zigbee device %r (sensor %s) is not fully paired (interview not "
                    "completed): it may report nothing; pair it again",
                    device.name,
                    sid,
                )
            if device.exposes and not device.exposes & _READ_KEYS:
                self._once(
                    f"exposes:{device.ieee}",
                    "Zigbee device %r (sensor %s, %s) exposes nothing this hub reads",
                    device.name,
                    sid,
                    device.model or "unknown model",
                )
        matched = {sid for sid in sensor_of.values() if sid is not None}
        for sid, spec in home.sensors.items():
            address = spec.device or sid
            if decode.IEEE_ADDRESS.match(address) and sid not in matched:
                self._once(
                    f"missing:{sid}",
                    "sensor %s names Zigbee device %s, which Zigbee2MQTT does not know: "
                    "is it paired?",
                    sid,
                    address,
                )
        first = self._devices is None
        self._devices = by_name
        self._sensor_of = sensor_of
        details = self.ctx.health.details
        details["devices"] = str(len(sensor_of))
        details["matched"] = str(len(sensor_of) - strangers)
        details["strangers"] = str(strangers)
        if first:
            log.info(
                "Zigbee2MQTT knows %d device(s); %d in the home map",
                len(sensor_of),
                len(sensor_of) - strangers,
            )
            early, self._early = self._early, deque(maxlen=EARLY_LIMIT)
            for rel, payload, retained in early:
                self._on_device_topic(rel, payload, retained)

    def _on_device_topic(self, rel: str, payload: bytes, retained: bool) -> None:
        assert self._devices is not None
        where, name = decode.route(rel, self._devices, self._groups)
        if where is Topic.UNKNOWN:
            self._once(
                f"topic:{rel}",
                "ignoring %s%s: no such device or group",
                self._prefix,
                rel,
                level=logging.DEBUG,
            )
            return
        if where in (Topic.OTHER, Topic.GROUP):
            return
        device = self._devices[name]
        sensor = self._sensor_of.get(device.ieee)
        if sensor is None:
            return  # a stranger (logged when the device list came) or the coordinator
        state = self._state.setdefault(device.ieee, _DeviceState())
        try:
            if where is Topic.STATE:
                self._on_state(sensor, device, state, decode.parse_state(payload), retained)
            elif where is Topic.AVAILABILITY:
                self._on_availability(sensor, state, decode.parse_online(payload))
            elif where is Topic.ACTION and not retained:
                self._on_action_topic(sensor, state, decode.parse_text(payload))
        except Malformed as err:
            self._malformed(f"{self._prefix}{rel}: {err}")

    def _on_state(
        self,
        sensor: str,
        device: Device,
        state: _DeviceState,
        cur: dict[str, Any],
        retained: bool,
    ) -> None:
        update = decode.decode_state(state.last, cur, retained=retained)
        state.last = cur
        for problem in update.problems:
            self._malformed(f"{device.name}: {problem}")
        if update.lqi is not None:
            self.ctx.signal(sensor, update.lqi, "lqi")
        if update.saw_action:
            state.json_actions = True
        now = self.ctx.clock.monotonic()
        for reading in update.readings:
            if reading.kind is EventKind.BUTTON and not self._button_allowed(sensor, reading):
                continue
            self._emit(sensor, reading.kind, reading.value)
            if reading.kind in MEASUREMENT_KINDS:
                state.sent[reading.kind] = now
        refresh = self.cfg.repeat_after
        if refresh > 0:
            for reading in update.steady:
                if now - state.sent.get(reading.kind, -math.inf) >= refresh:
                    self._emit(sensor, reading.kind, reading.value)
                    state.sent[reading.kind] = now

    def _on_availability(self, sensor: str, state: _DeviceState, online: bool) -> None:
        if state.online is online:
            return
        state.online = online
        self._emit(sensor, EventKind.AVAILABILITY, 1.0 if online else 0.0)

    def _on_action_topic(self, sensor: str, state: _DeviceState, action: str) -> None:
        """``<name>/action``: Home Assistant's copy of the JSON action, or, with
        ``advanced.output: attribute``, the only one. A device that has sent actions
        inside its JSON state in this run sends copies here: they are not presses."""
        if not action or state.json_actions:
            return
        value = decode.action_value(action)
        if value is None:
            return
        reading = decode.Reading(EventKind.BUTTON, value, "action")
        if self._button_allowed(sensor, reading):
            self._emit(sensor, EventKind.BUTTON, value)

    def _button_allowed(self, sensor: str, reading: decode.Reading) -> bool:
        """A press reaches the help-button rule only from a sensor the home map does not
        declare as something else: a motion sensor's or a wall switch's stray action
        must never raise an urgent alert."""
        spec = self.ctx.home.get(sensor)
        if spec is None or spec.kind in (None, EventKind.BUTTON):
            return True
        self._once(
            f"button:{sensor}",
            "sensor %s (kind %s) sent a button %s; ignored: only a sensor of kind "
            "button (or without a kind) is a help button",
            sensor,
            spec.kind.value,
            reading.key,
        )
        return False

    # ---- helpers ------------------------------------------------------------------------

    def _emit(self, sensor: str, kind: EventKind, value: float) -> None:
        clock = self.ctx.clock
        self.ctx.health.events += 1
        self.ctx.emit(SensorEvent(sensor, kind, value, clock.wall(), clock.monotonic()))

    def _malformed(self, what: str) -> None:
        self.ctx.health.malformed(what, self.ctx.log)

    def _once(self, key: str, message: str, *args: object, level: int = logging.INFO) -> None:
        """Log ``message`` (at info) the first time ``key`` comes up in this run."""
        if key in self._told:
            return
        self._told.add(key)
        self.ctx.log.log(level, message, *args)


#: Every state key the hub reads, to tell an installer about a device that has none.
_READ_KEYS = frozenset({*decode.RULES, *decode.ACTION_KEYS})
