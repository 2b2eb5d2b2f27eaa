"""Commands from the centre: the models, their effects, the replies, and a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ConfigDict, ValidationError

from agent.clock import LiveClock, SimClock
from agent.commands import (
    LOG_LIMIT,
    MAX_PAYLOAD,
    Acknowledge,
    Rejected,
    SelfTest,
    SetMode,
    parse_command,
)
from agent.config import Config, MqttUplinkConfig, validate_config
from agent.devtools.broker import Mosquitto, Received, Subscriber
from agent.events import EventKind, SensorEvent
from agent.messages import AlertMessage, Mode, Outcome, ReplyMessage, encode
from agent.outbox.memory import MemoryOutbox
from agent.runtime import Runtime
from agent.uplink import (
    COMMAND_QUEUE,
    MAX_INBOUND,
    MemoryUplink,
    MqttUplink,
    RefusedPayload,
    checked_reply,
)

pytestmark = pytest.mark.timeout(90)

TZ = ZoneInfo("Europe/Amsterdam")
HUB = "h-0412"
PREFIX = "lfs"
BASE = f"{PREFIX}/{HUB}"
WAIT = 20.0  # generous: every wait ends on an event, this only bounds a failure
NOW = datetime(2026, 11, 10, 9, 0, tzinfo=TZ)
T0 = NOW.timestamp()
M0 = 1000.0  # the simulated monotonic clock at T0

SENSORS = {
    "living-motion": {"room": "living", "role": "living"},
    "front-door": {"room": "hall", "role": "front_door"},
    "button": {"room": "living", "role": "wearable"},
}


def cmd(**fields: Any) -> bytes:
    return json.dumps({"v": 1, **fields}).encode()


# ---- the models ------------------------------------------------------------------------


def test_each_command_parses_to_its_model() -> None:
    """Literal payloads in, the typed command out."""
    until = (NOW + timedelta(days=3)).isoformat()
    ack = parse_command("ack", cmd(id="c-1", alert="help_button-20261110T080000Z", by="op 7"), NOW)
    assert ack == Acknowledge(v=1, id="c-1", alert="help_button-20261110T080000Z", by="op 7")
    away = parse_command("mode", cmd(id="c-2", mode="away"), NOW)
    assert away == SetMode(v=1, id="c-2", mode=Mode.AWAY, until=None)
    holiday = parse_command("mode", cmd(id="c-3", mode="holiday", until=until), NOW)
    assert isinstance(holiday, SetMode) and holiday.until == NOW + timedelta(days=3)
    assert parse_command("selftest", cmd(id="c-4"), NOW) == SelfTest(v=1, id="c-4")


SOON = (NOW + timedelta(hours=2)).isoformat()


@pytest.mark.parametrize(
    ("name", "payload", "reason", "command_id"),
    [
        ("reboot", cmd(id="c-1"), "unknown command 'reboot' (known: ack, mode, selftest)", "c-1"),
        ("", cmd(id="c-1"), "unknown command ''", "c-1"),
        ("ack/x", cmd(id="c-1", alert="a"), "unknown command 'ack/x'", "c-1"),
        ("ack", b"{not json", "not valid JSON", None),
        ("ack", b"\xff\xfe\x00", "not valid JSON", None),
        ("ack", b"", "not valid JSON", None),
        ("ack", b'["c-1"]', "the payload must be a JSON object", None),
        (
            "ack",
            cmd(id="c-1", alert="a", rm="-rf"),
            "invalid ack command: rm: unknown field",
            "c-1",
        ),
        ("ack", cmd(id="c-1"), "invalid ack command: alert: missing", "c-1"),
        ("ack", cmd(id="c-1", alert=5), "alert: Input should be a valid string", "c-1"),
        ("ack", cmd(id="c-1", alert="has space"), "alert: String should match pattern", "c-1"),
        ("ack", cmd(id="c-1", alert="a", by="two\nlines"), "by: String should match", "c-1"),
        ("selftest", cmd(id=7), "id: Input should be a valid string", None),
        ("selftest", cmd(id="x" * 65), "id: String should match pattern", None),
        ("selftest", b'{"id":"c-1"}', "invalid selftest command: v: missing", "c-1"),
        ("selftest", b'{"v":2,"id":"c-1"}', "v: Input should be 1", "c-1"),
        ("selftest", b'{"v":true,"id":"c-1"}', "v: Input should be 1", "c-1"),
        ("selftest", b'{"v":"1","id":"c-1"}', "v: Input should be 1", "c-1"),
        ("mode", cmd(id="c-1", mode="AWAY"), "mode: Input should be 'normal', 'away' or", "c-1"),
        ("mode", cmd(id="c-1", mode="holiday"), "holiday mode needs an end time (until)", "c-1"),
        ("mode", cmd(id="c-1", mode="normal", until=SOON), "normal mode takes no end time", "c-1"),
        ("mode", cmd(id="c-1", mode="away", until="2026-11-10T11:00:00"), "timezone", "c-1"),
        ("mode", cmd(id="c-1", mode="away", until=1763000000), "until: Input should be", "c-1"),
        (
            "mode",
            cmd(id="c-1", mode="away", until=(NOW - timedelta(seconds=1)).isoformat()),
            "until: the end time has already passed",
            "c-1",
        ),
        (
            "mode",
            cmd(id="c-1", mode="holiday", until=(NOW + timedelta(days=61)).isoformat()),
            "until: at most 60 days ahead",
            "c-1",
        ),
        ("selftest", cmd(id="c-1", pad="x" * MAX_PAYLOAD), "payload too large: 4", None),
    ],
)
def test_anything_else_is_rejected_with_a_reason(
    name: str, payload: bytes, reason: str, command_id: str | None
) -> None:
    """Unknown names, broken JSON, extra, missing or mistyped fields: a reason, never a command."""
    got = parse_command(name, payload, NOW)
    assert isinstance(got, Rejected), got
    assert reason in got.reason
    assert len(got.reason) <= 200
    assert got.id == command_id


def test_a_reason_never_carries_the_input_and_stays_short() -> None:
    """The reason names fields and problems; control characters from the centre are masked."""
    many = {f"k{i}\n": i for i in range(30)}
    got = parse_command("ack", json.dumps({"v": 1, "id": "c-1", **many}).encode(), NOW)
    assert isinstance(got, Rejected)
    assert "\n" not in got.reason and len(got.reason) <= 200
    assert "(and 29 more)" in got.reason  # alert missing + 30 unknown keys, two shown
    sneaky = parse_command("ack", cmd(id="c-1", alert=["secret-value"]), NOW)
    assert isinstance(sneaky, Rejected) and "secret-value" not in sneaky.reason


def test_without_a_synchronised_clock_end_times_are_not_checked_by_the_parser() -> None:
    """``now`` None: the shape is still checked; the caller refuses the end time itself."""
    past = cmd(id="c-1", mode="away", until="2020-01-01T00:00:00+00:00")
    assert isinstance(parse_command("mode", past, None), SetMode)


def test_the_reply_is_an_outbound_model_with_nothing_else() -> None:
    reply = ReplyMessage(id="c-1", outcome=Outcome.REJECTED, reason="no open alert x", at=NOW)
    assert encode(reply) == (
        b'{"v":1,"id":"c-1","outcome":"rejected","reason":"no open alert x",'
        b'"at":"2026-11-10T09:00:00+01:00"}'
    )
    with pytest.raises(ValidationError):
        ReplyMessage(id="c-1", outcome=Outcome.DONE, at=NOW, room="living")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ReplyMessage(id="c-1", outcome=Outcome.DONE, at=NOW.replace(tzinfo=None))
    with pytest.raises(ValidationError):
        ReplyMessage(id="c-1", outcome=Outcome.REJECTED, reason="x" * 201, at=NOW)


def test_the_privacy_gate_refuses_a_reply_that_is_not_exactly_the_model() -> None:
    class Wider(ReplyMessage):
        model_config = ConfigDict(extra="allow")

    wide = Wider(id="c-1", outcome=Outcome.DONE, at=NOW, events=["bed 07:12"])  # type: ignore[call-arg]
    with pytest.raises(RefusedPayload):
        checked_reply(wide)
    unchecked = ReplyMessage.model_construct(
        id="c-1", outcome=Outcome.DONE, reason="x" * 500, at=NOW
    )
    with pytest.raises(RefusedPayload):
        checked_reply(unchecked)
    fine = ReplyMessage(id="c-1", outcome=Outcome.DONE, at=NOW)
    assert checked_reply(fine) == encode(fine)


# ---- the runtime in simulated time (as a replay drives it) ---------------------------------


def sim_config(outbox: Path | None = None) -> Config:
    return validate_config(
        {
            "hub": {"id": HUB},
            "uplink": {"type": "memory"},
            "outbox": {"path": str(outbox)} if outbox is not None else {},
            "detection": {"intrusion": {"exit_delay": "0s"}},
            "home": {"sensors": SENSORS},
        }
    )


class SimHub:
    """A runtime moved through simulated time the way the replay driver moves it.

    It starts ``start`` seconds after T0 (a later start plays a restart), with its outbox,
    and so the engine's saved state, in ``outbox`` when given.
    """

    def __init__(self, outbox: Path | None = None, start: float = 0.0) -> None:
        self.alerts: list[AlertMessage] = []
        self.clock = SimClock(TZ)
        self.runtime = Runtime(sim_config(outbox), clock=self.clock, alert_hook=self.alerts.append)
        self.runtime.set_clock(T0 + start, M0 + start, True)
        self.runtime.advance_to(M0 + start)
        uplink = self.runtime.uplink
        assert isinstance(uplink, MemoryUplink)
        self.uplink = uplink

    def event(self, sensor: str, kind: EventKind, value: float, at: float) -> None:
        """An event ``at`` seconds after T0."""
        self.runtime.step(SensorEvent(sensor, kind, value, T0 + at, M0 + at), True)

    def until(self, at: float) -> None:
        """Let time pass until ``at`` seconds after T0."""
        self.runtime.advance_to(M0 + at)

    def command(self, name: str, payload: bytes) -> dict[str, Any]:
        reply: dict[str, Any] = json.loads(self.uplink.command(name, payload))
        return reply

    def kinds(self) -> list[tuple[str, str]]:
        return [(a.kind, a.state.value) for a in self.alerts]


@pytest.fixture
def hub() -> SimHub:
    return SimHub()


def test_ack_resolves_the_open_alert_and_a_second_ack_is_rejected(hub: SimHub) -> None:
    hub.event("button", EventKind.BUTTON, 1.0, 60)
    (raised,) = hub.alerts
    assert raised.kind == "help_button"
    reply = hub.command("ack", cmd(id="c-1", alert=raised.id, by="operator 7"))
    assert (reply["id"], reply["outcome"]) == ("c-1", "done")
    assert "reason" not in reply
    assert hub.kinds() == [("help_button", "raised"), ("help_button", "resolved")]
    assert hub.alerts[-1].id == raised.id
    assert hub.alerts[-1].summary == "Acknowledged by the centre."
    assert hub.runtime.engine.open == {}
    again = hub.command("ack", cmd(id="c-2", alert=raised.id))
    assert again == {
        "v": 1,
        "id": "c-2",
        "outcome": "rejected",
        "reason": f"no open alert {raised.id}",
        "at": reply["at"],
    }
    unknown = hub.command("ack", cmd(id="c-3", alert="inactivity-20261110T080000Z"))
    assert unknown["reason"] == "no open alert inactivity-20261110T080000Z"
    assert len(hub.alerts) == 2  # the rejected ones changed nothing


def test_away_silences_the_person_rules(hub: SimHub) -> None:
    """The same quiet day: an inactivity alert at home, nothing while away."""
    at_home = SimHub()
    for sim in (hub, at_home):
        sim.event("living-motion", EventKind.MOTION, 1.0, 60)
    assert hub.command("mode", cmd(id="c-1", mode="away"))["outcome"] == "done"
    for sim in (hub, at_home):
        sim.until(12 * 3600)
    assert ("inactivity", "raised") in at_home.kinds()
    assert hub.kinds() == []
    assert hub.runtime.heartbeat_message().mode is Mode.AWAY
    assert at_home.runtime.heartbeat_message().mode is Mode.NORMAL


def test_setting_away_resolves_an_open_person_alert(hub: SimHub) -> None:
    hub.event("living-motion", EventKind.MOTION, 1.0, 60)
    hub.until(12 * 3600)
    assert hub.kinds() == [("inactivity", "raised")]
    hub.command("mode", cmd(id="c-1", mode="away"))
    assert hub.kinds()[-1] == ("inactivity", "resolved")
    assert hub.alerts[-1].summary == "The home was set to away."


def test_holiday_arms_intrusion_and_ends_by_itself_at_its_end_time(hub: SimHub) -> None:
    """The end time is a timer like any other: it fires at its moment in simulated time."""
    end = NOW + timedelta(hours=2)
    reply = hub.command("mode", cmd(id="c-1", mode="holiday", until=end.isoformat()))
    assert reply["outcome"] == "done"
    assert hub.runtime.heartbeat_message().mode is Mode.HOLIDAY
    hub.event("front-door", EventKind.CONTACT, 1.0, 3600)
    assert hub.kinds() == [("intrusion", "raised")]
    hub.until(2 * 3600 - 1)
    assert hub.runtime.engine.mode is Mode.HOLIDAY
    hub.until(3 * 3600)
    assert hub.runtime.engine.mode is Mode.NORMAL
    assert hub.runtime.heartbeat_message().mode is Mode.NORMAL
    resolved = hub.alerts[-1]
    assert (resolved.kind, resolved.state.value) == ("intrusion", "resolved")
    assert resolved.at == end  # at the end time itself, not when someone looked
    hub.event("front-door", EventKind.CONTACT, 1.0, 4 * 3600)
    assert len(hub.alerts) == 2  # disarmed: the person's own door again


def test_a_new_mode_replaces_the_end_time(hub: SimHub) -> None:
    hub.command("mode", cmd(id="c-1", mode="holiday", until=(NOW + timedelta(hours=1)).isoformat()))
    hub.command("mode", cmd(id="c-2", mode="away"))  # open-ended
    hub.until(5 * 3600)
    assert hub.runtime.engine.mode is Mode.AWAY
    later = NOW + timedelta(hours=8)
    hub.command("mode", cmd(id="c-3", mode="away", until=later.isoformat()))
    assert hub.runtime.engine.mode_until == later.timestamp()
    hub.command("mode", cmd(id="c-4", mode="normal"))
    assert hub.runtime.engine.mode_until is None
    assert hub.runtime.commands.next_wakeup == float("inf")
    hub.until(10 * 3600)
    assert hub.runtime.engine.mode is Mode.NORMAL


def test_the_end_time_outlives_a_restart(tmp_path: Path) -> None:
    """Holiday until 12:00 is stored with the engine's state; the next agent ends it then."""
    outbox = tmp_path / "outbox.db"
    first = SimHub(outbox)
    end = NOW + timedelta(hours=3)
    assert (
        first.command("mode", cmd(id="c-1", mode="holiday", until=end.isoformat()))["outcome"]
        == "done"
    )
    first.runtime.outbox.close()
    second = SimHub(outbox, start=3600)  # an hour later, on a new monotonic clock
    assert second.runtime.engine.mode is Mode.HOLIDAY
    second.until(3 * 3600 - 1)
    assert second.runtime.engine.mode is Mode.HOLIDAY
    second.until(3 * 3600)
    assert second.runtime.engine.mode is Mode.NORMAL
    second.runtime.outbox.close()
    third = SimHub(outbox, start=4 * 3600)
    assert (third.runtime.engine.mode, third.runtime.engine.mode_until) == (Mode.NORMAL, None)
    third.runtime.outbox.close()


def test_an_end_time_passed_while_the_hub_was_off_ends_the_mode_at_once(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.db"
    first = SimHub(outbox)
    end = NOW + timedelta(hours=1)
    first.command("mode", cmd(id="c-1", mode="away", until=end.isoformat()))
    first.runtime.outbox.close()
    second = SimHub(outbox, start=5 * 3600)  # it was off across the end time
    second.until(5 * 3600 + 1)
    assert second.runtime.engine.mode is Mode.NORMAL
    second.runtime.outbox.close()


def test_a_restored_end_time_waits_for_a_synchronised_clock(hub: SimHub) -> None:
    """Without a trustworthy wall clock the hub cannot tell when 12:00 is: it stays away."""
    hub.runtime.set_clock(T0 + 10, M0 + 10, False)
    hub.runtime.engine.set_mode(Mode.AWAY, until=T0 + 3600)  # as restore() leaves it
    hub.until(2 * 3600)
    assert hub.runtime.engine.mode is Mode.AWAY
    hub.runtime.set_clock(T0 + 2 * 3600 + 5, M0 + 2 * 3600 + 5, True)
    hub.until(2 * 3600 + 6)
    assert hub.runtime.engine.mode is Mode.NORMAL


def test_an_unsynchronised_clock_cannot_keep_an_end_time(hub: SimHub) -> None:
    hub.runtime.set_clock(T0 + 10, M0 + 10, False)
    until = (NOW + timedelta(hours=2)).isoformat()
    reply = hub.command("mode", cmd(id="c-1", mode="holiday", until=until))
    assert reply["outcome"] == "rejected"
    assert "not synchronised" in reply["reason"]
    assert hub.runtime.engine.mode is Mode.NORMAL
    assert hub.command("mode", cmd(id="c-2", mode="away"))["outcome"] == "done"


def test_selftest_raises_and_resolves_an_info_alert_at_most_once_a_minute(hub: SimHub) -> None:
    assert hub.command("selftest", cmd(id="s-1"))["outcome"] == "done"
    assert hub.kinds() == [("self_test", "raised"), ("self_test", "resolved")]
    assert {a.severity.value for a in hub.alerts} == {"info"}
    assert hub.alerts[0].id == hub.alerts[1].id
    assert hub.runtime.engine.open == {}
    too_soon = hub.command("selftest", cmd(id="s-2"))
    assert too_soon["outcome"] == "rejected" and "less than 60 s ago" in too_soon["reason"]
    hub.until(61)
    assert hub.command("selftest", cmd(id="s-3"))["outcome"] == "done"
    assert len(hub.alerts) == 4


def test_a_flood_of_bad_commands_is_logged_at_most_n_times_a_minute(
    hub: SimHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.commands")
    for i in range(LOG_LIMIT + 15):
        assert hub.command("nope", f"junk {i}".encode())["outcome"] == "rejected"
    logged = [r for r in caplog.records if r.name == "agent.commands"]
    assert len(logged) == LOG_LIMIT
    assert hub.runtime.commands.stats.unlogged == 15
    hub.until(61)
    hub.command("nope", b"junk")
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.commands"]
    assert "15 more rejected command(s) were not logged (at most 10 per 60 s)" in lines
    assert len(lines) == LOG_LIMIT + 2
    assert not any("junk" in line for line in lines)  # payloads are never logged
    stats = hub.runtime.commands.stats
    assert (stats.received, stats.rejected, stats.done) == (LOG_LIMIT + 16, LOG_LIMIT + 16, 0)


def test_the_uplink_bounds_the_commands_waiting_and_drops_what_is_not_a_command() -> None:
    """Inside paho's read only a bounded queue is touched; retained and foreign topics drop."""
    cfg = MqttUplinkConfig(prefix=PREFIX)
    uplink = MqttUplink(cfg, HUB, MemoryOutbox(1 << 20), LiveClock(TZ, True), "0.1.0")

    def message(topic: bytes, retain: bool = False) -> mqtt.MQTTMessage:
        msg = mqtt.MQTTMessage(mid=1, topic=topic)
        msg.payload = cmd(id="c-1")
        msg.retain = retain
        return msg

    on_message = uplink._on_message
    on_message(uplink._client, None, message(f"{BASE}/cmd/selftest".encode(), retain=True))
    on_message(uplink._client, None, message(b"lfs/h-0413/cmd/selftest"))
    on_message(uplink._client, None, message(b"\xff\xfe"))
    assert (uplink.stats.commands, uplink.stats.commands_dropped) == (0, 3)
    for _ in range(COMMAND_QUEUE + 5):
        on_message(uplink._client, None, message(f"{BASE}/cmd/selftest".encode()))
    on_message(uplink._client, None, message(f"{BASE}/cmd".encode()))
    assert (uplink.stats.commands, uplink.stats.commands_dropped) == (COMMAND_QUEUE, 9)


# ---- end to end, through a real broker ------------------------------------------------------


def live_config(broker: Mosquitto) -> Config:
    return validate_config(
        {
            "hub": {"id": HUB, "wall_clock": "synced"},
            "uplink": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "prefix": PREFIX,
                "publish_timeout": 5,
                "will_delay": 1,
                "reconnect_min": 0.05,
                "reconnect_max": 0.5,
            },
            "heartbeat": {"interval": "1s"},
            "detection": {"intrusion": {"exit_delay": "0s"}},
            "home": {"sensors": SENSORS},
        }
    )


class Centre:
    """The platform: publishes commands (QoS 1, waiting for the PUBACK) from its own client."""

    def __init__(self, broker: Mosquitto) -> None:
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"centre-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        connected = threading.Event()
        self._client.on_connect = lambda *_: connected.set()
        self._client.connect(broker.host, broker.port, keepalive=10)
        self._client.loop_start()
        if not connected.wait(WAIT):
            raise TimeoutError("the centre could not connect")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT)
        assert info.is_published()

    async def send(self, name: str, payload: bytes, hub: str = HUB) -> None:
        await asyncio.to_thread(self.publish, f"{PREFIX}/{hub}/cmd/{name}", payload)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def centre(mosquitto: Mosquitto) -> Iterator[Centre]:
    platform = Centre(mosquitto)
    try:
        yield platform
    finally:
        platform.close()


async def until(ready: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait, without blocking the loop, until ``ready()``; fail after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not ready():
                await asyncio.sleep(0.005)
    except TimeoutError:
        pytest.fail(f"{what}: not within {timeout} s")


@contextlib.asynccontextmanager
async def live_hub(broker: Mosquitto) -> AsyncIterator[Runtime]:
    """A running hub, connected and subscribed to its commands."""
    runtime = Runtime(live_config(broker), clock=LiveClock(TZ, synced=True))
    task = asyncio.create_task(runtime.run(drain_timeout=5.0))
    try:
        await until(lambda: runtime.uplink.stats.subscriptions >= 1 or task.done(), "subscribed")
        assert not task.done()
        yield runtime
    finally:
        runtime.request_stop()
        await task


def replies(messages: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.topic == f"{BASE}/reply"]


def alerts(messages: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.topic == f"{BASE}/alert"]


def reply_to(command_id: str) -> Callable[[list[Received]], bool]:
    return lambda ms: any(r.get("id") == command_id for r in replies(ms))


def the_reply(messages: list[Received], command_id: str) -> dict[str, Any]:
    (found,) = [r for r in replies(messages) if r.get("id") == command_id]
    return found


def test_ack_over_mqtt_resolves_the_alert_and_replies(mosquitto: Mosquitto, centre: Centre) -> None:
    async def main() -> None:
        with Subscriber.on(mosquitto, f"{PREFIX}/#") as sub:
            async with live_hub(mosquitto) as runtime:
                clock = runtime.clock
                runtime.emit(
                    SensorEvent("button", EventKind.BUTTON, 1.0, clock.wall(), clock.monotonic())
                )
                got = await sub.await_until(lambda ms: bool(alerts(ms)), WAIT, "the alert")
                (raised,) = alerts(got)
                assert (raised["kind"], raised["state"]) == ("help_button", "raised")
                await centre.send("ack", cmd(id="c-1", alert=raised["id"]))
                got = await sub.await_until(reply_to("c-1"), WAIT, "the reply")
                assert the_reply(got, "c-1")["outcome"] == "done"
                got = await sub.await_until(lambda ms: len(alerts(ms)) >= 2, WAIT, "resolved")
                resolved = alerts(got)[1]
                assert (resolved["id"], resolved["state"]) == (raised["id"], "resolved")
                assert runtime.engine.open == {}
                await centre.send("ack", cmd(id="c-2", alert=raised["id"]))
                got = await sub.await_until(reply_to("c-2"), WAIT, "the second reply")
                second = the_reply(got, "c-2")
                assert second["outcome"] == "rejected"
                assert second["reason"] == f"no open alert {raised['id']}"
        reply = next(m for m in got if m.topic == f"{BASE}/reply")
        assert (reply.qos, reply.retain) == (1, False)

    asyncio.run(main())


def test_away_over_mqtt_arms_intrusion_and_the_heartbeat_says_so(
    mosquitto: Mosquitto, centre: Centre
) -> None:
    def beat_says(mode: str) -> Callable[[list[Received]], bool]:
        return lambda ms: any(
            m.topic == f"{BASE}/heartbeat" and json.loads(m.payload)["mode"] == mode for m in ms
        )

    async def main() -> None:
        with Subscriber.on(mosquitto, f"{PREFIX}/#") as sub:
            async with live_hub(mosquitto) as runtime:
                await centre.send("mode", cmd(id="m-1", mode="away"))
                got = await sub.await_until(reply_to("m-1"), WAIT, "the reply")
                assert the_reply(got, "m-1")["outcome"] == "done"
                assert runtime.engine.mode is Mode.AWAY
                await sub.await_until(beat_says("away"), WAIT, "a heartbeat in away mode")
                clock = runtime.clock
                runtime.emit(
                    SensorEvent(
                        "front-door", EventKind.CONTACT, 1.0, clock.wall(), clock.monotonic()
                    )
                )
                got = await sub.await_until(lambda ms: bool(alerts(ms)), WAIT, "intrusion")
                assert [(a["kind"], a["state"]) for a in alerts(got)] == [("intrusion", "raised")]
                await centre.send("mode", cmd(id="m-2", mode="normal"))
                got = await sub.await_until(lambda ms: len(alerts(ms)) >= 2, WAIT, "resolved")
                assert alerts(got)[1]["state"] == "resolved"
                await sub.await_until(reply_to("m-2"), WAIT, "the reply")
                sub.clear()
                await sub.await_until(beat_says("normal"), WAIT, "a heartbeat in normal mode")

    asyncio.run(main())


def test_holiday_over_mqtt_ends_by_itself(mosquitto: Mosquitto, centre: Centre) -> None:
    async def main() -> None:
        with Subscriber.on(mosquitto, f"{PREFIX}/#") as sub:
            async with live_hub(mosquitto) as runtime:
                end = datetime.now(TZ) + timedelta(seconds=3)
                await centre.send("mode", cmd(id="h-1", mode="holiday", until=end.isoformat()))
                got = await sub.await_until(reply_to("h-1"), WAIT, "the reply")
                assert the_reply(got, "h-1")["outcome"] == "done"
                assert runtime.engine.mode is Mode.HOLIDAY
                await until(lambda: runtime.engine.mode is Mode.NORMAL, "back to normal")
                assert datetime.now(TZ) >= end - timedelta(seconds=0.5)  # not before its time
                assert runtime.engine.mode_until is None

    asyncio.run(main())


def test_selftest_over_mqtt_publishes_a_test_alert(mosquitto: Mosquitto, centre: Centre) -> None:
    async def main() -> None:
        with Subscriber.on(mosquitto, f"{PREFIX}/#") as sub:
            async with live_hub(mosquitto):
                await centre.send("selftest", cmd(id="t-1"))
                got = await sub.await_until(
                    lambda ms: reply_to("t-1")(ms) and len(alerts(ms)) >= 2, WAIT, "test alert"
                )
        assert the_reply(got, "t-1")["outcome"] == "done"
        sent = alerts(got)
        assert [(a["kind"], a["severity"], a["state"]) for a in sent] == [
            ("self_test", "info", "raised"),
            ("self_test", "info", "resolved"),
        ]
        for a in sent:
            AlertMessage.model_validate(a)

    asyncio.run(main())


def test_bad_commands_over_mqtt_are_each_rejected_and_the_hub_keeps_going(
    mosquitto: Mosquitto, centre: Centre
) -> None:
    bad = [
        ("ack", b"{garbage", None, "not valid JSON"),
        ("reboot", cmd(id="b-2"), "b-2", "unknown command 'reboot'"),
        ("ack", cmd(id="b-3", alert="a-1", shell="ls"), "b-3", "shell: unknown field"),
        ("mode", cmd(id="b-4", mode=1), "b-4", "mode: Input should be"),
        ("selftest", cmd(id="b-5", pad="x" * 10_000), None, "payload too large: 10"),
        ("ack", cmd(id="b-6", alert="help_button-20261110T080000Z"), "b-6", "no open alert"),
        ("", cmd(id="b-7"), "b-7", "unknown command ''"),
    ]

    async def main() -> None:
        with Subscriber.on(mosquitto, f"{PREFIX}/#") as sub:
            async with live_hub(mosquitto) as runtime:
                for name, payload, _id, _reason in bad:
                    topic = f"{BASE}/cmd/{name}" if name else f"{BASE}/cmd"
                    await asyncio.to_thread(centre.publish, topic, payload)
                # Beyond what the hub accepts at all: the broker keeps it from the hub.
                await centre.send("selftest", cmd(id="b-8", pad="x" * MAX_INBOUND))
                await centre.send("selftest", cmd(id="ok"))
                got = await sub.await_until(reply_to("ok"), WAIT, "the last reply")
                assert runtime.commands.stats.rejected == len(bad)
                assert runtime.engine.mode is Mode.NORMAL
        answered = replies(got)
        assert len(answered) == len(bad) + 1  # nothing for the packet the broker withheld
        assert the_reply(got, "ok")["outcome"] == "done"
        assert "b-8" not in {r.get("id") for r in answered}
        nameless = sorted(r["reason"] for r in answered if "id" not in r)
        assert len(nameless) == 2
        for _name, _payload, command_id, reason in bad:
            if command_id is None:
                assert any(reason in text for text in nameless), reason
                continue
            reply = the_reply(got, command_id)
            assert reply["outcome"] == "rejected"
            assert reason in reply["reason"]
        for m in got:
            if m.topic == f"{BASE}/reply":
                ReplyMessage.model_validate_json(m.payload)

    asyncio.run(main())


def test_commands_for_another_hub_are_never_seen(mosquitto: Mosquitto, centre: Centre) -> None:
    async def main() -> None:
        with Subscriber.on(mosquitto, f"{PREFIX}/#") as sub:
            async with live_hub(mosquitto) as runtime:
                for other in ("h-0413", "h-041", "h-04120"):
                    await centre.send("selftest", cmd(id=f"x-{other}"), hub=other)
                await asyncio.to_thread(
                    centre.publish, f"other/{HUB}/cmd/selftest", cmd(id="x-prefix")
                )
                await centre.send("selftest", cmd(id="mine"))
                got = await sub.await_until(reply_to("mine"), WAIT, "the reply")
                assert runtime.uplink.stats.commands == 1
                assert runtime.uplink.stats.commands_dropped == 0  # not even delivered
                assert runtime.commands.stats.received == 1
        assert [r["id"] for r in replies(got)] == ["mine"]
        assert not any(m.topic.endswith("/reply") and not m.topic.startswith(BASE) for m in got)

    asyncio.run(main())


def test_a_flood_is_answered_and_the_hub_still_works(
    mosquitto: Mosquitto, centre: Centre, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    flood = 60

    async def main() -> tuple[int, int]:
        with Subscriber.on(mosquitto, f"{PREFIX}/#") as sub:
            async with live_hub(mosquitto) as runtime:
                for i in range(flood):
                    await centre.send("nope", cmd(id=f"f-{i}"))
                await centre.send("selftest", cmd(id="after"))
                got = await sub.await_until(reply_to("after"), WAIT, "the last reply")
                dropped = runtime.uplink.stats.commands_dropped
                assert len(replies(got)) + dropped == flood + 1
                assert the_reply(got, "after")["outcome"] == "done"
                stats = runtime.commands.stats
                return stats.rejected, stats.unlogged

    rejected, unlogged = asyncio.run(main())
    warned = [r for r in caplog.records if r.name == "agent.commands" and "rejected" in r.msg]
    assert len(warned) + unlogged == rejected
    assert unlogged > 0 and len(warned) >= LOG_LIMIT  # logged up to the limit, then counted


def test_the_hub_subscribes_again_after_the_broker_restarts(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        async with live_hub(mosquitto) as runtime:
            await asyncio.to_thread(mosquitto.restart)  # no persistence: the session is gone
            await until(lambda: runtime.uplink.stats.subscriptions >= 2, "subscribed again")
            platform = await asyncio.to_thread(Centre, mosquitto)
            try:
                with Subscriber.on(mosquitto, f"{BASE}/reply") as sub:
                    await platform.send("selftest", cmd(id="r-1"))
                    got = await sub.await_until(reply_to("r-1"), WAIT, "the reply")
            finally:
                platform.close()
        assert the_reply(got, "r-1")["outcome"] == "done"

    asyncio.run(main())


def test_a_retained_command_is_not_run_at_connect(mosquitto: Mosquitto, centre: Centre) -> None:
    """A command left retained on the broker is not replayed to a hub that (re)connects."""
    centre.publish(f"{BASE}/cmd/mode", cmd(id="stale", mode="away"), retain=True)

    async def main() -> None:
        with Subscriber.on(mosquitto, f"{BASE}/reply") as sub:
            async with live_hub(mosquitto) as runtime:
                await centre.send("selftest", cmd(id="fresh"))
                got = await sub.await_until(reply_to("fresh"), WAIT, "the reply")
                assert runtime.engine.mode is Mode.NORMAL
                assert runtime.uplink.stats.commands_dropped == 0  # the broker kept it back
        assert [r["id"] for r in replies(got)] == ["fresh"]

    asyncio.run(main())
