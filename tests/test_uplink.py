"""The uplink against a real Mosquitto broker: topics, QoS, retain, will, outages, order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from agent.clock import LiveClock
from agent.config import MemoryUplinkConfig, MqttUplinkConfig, TlsConfig
from agent.devtools.broker import (
    ACL_OPEN,
    ACL_READ_ONLY,
    BrokerTls,
    Mosquitto,
    Received,
    Subscriber,
    find_mosquitto,
    free_port,
)
from agent.devtools.pki import TestPki
from agent.messages import StatusMessage, encode
from agent.outbox import OutboxItem
from agent.outbox.memory import MemoryOutbox
from agent.outbox.queue import Row
from agent.pahosocket import MISC_EVERY_MAX, misc_every
from agent.uplink import (
    MemoryUplink,
    MqttUplink,
    RefusedPayload,
    backoff_delay,
    checked_payload,
    make_uplink,
    retry_delay,
)
from tests.test_outbox import alert, heartbeat

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
HUB = "h-0412"  # the hub the sample messages name
BASE = f"leefsamen/{HUB}"
CLOCK = LiveClock(ZoneInfo("Europe/Amsterdam"), synced=True)
VERSION = "0.1.0"
WAIT = 20.0  # generous: these machines are noisy; every wait ends on an event


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def config(broker: Mosquitto, **changes: Any) -> MqttUplinkConfig:
    """Fast settings for tests: short backoff, a 1 s Will delay."""
    values: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "keepalive": 10,
        "publish_timeout": 5,
        "will_delay": 1,
        "heartbeat_expiry": 900,
        "reconnect_min": 0.05,
        "reconnect_max": 0.5,
    }
    values.update(changes)
    return MqttUplinkConfig(**values)


def new_uplink(cfg: MqttUplinkConfig, outbox: MemoryOutbox | None = None) -> MqttUplink:
    return MqttUplink(cfg, HUB, MemoryOutbox(1 << 20) if outbox is None else outbox, CLOCK, VERSION)


@contextlib.asynccontextmanager
async def running(uplink: MqttUplink) -> AsyncIterator[MqttUplink]:
    await uplink.start()
    try:
        yield uplink
    finally:
        await uplink.stop()


async def until(ready: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait, without blocking the loop, until ``ready()``; fail after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not ready():
                await asyncio.sleep(0.002)
    except TimeoutError:
        pytest.fail(f"{what}: not within {timeout} s")


def add_alerts(uplink: MqttUplink, outbox: MemoryOutbox, numbers: Iterable[int]) -> list[str]:
    ids = []
    for n in numbers:
        message = alert(n)
        outbox.add(message, now=CLOCK.wall())
        ids.append(message.id)
    uplink.notify()
    return ids


def on(topic: str) -> Callable[[list[Received]], list[Received]]:
    return lambda messages: [m for m in messages if m.topic == topic]


def alert_ids(messages: Iterable[Received]) -> list[str]:
    return [json.loads(m.payload)["id"] for m in messages if m.topic == f"{BASE}/alert"]


def first_arrivals(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


async def start_gated(broker: Mosquitto, sub: Subscriber, after: int = 0) -> None:
    """Start the broker refusing every publish until ``sub`` listens again, then open it.

    Without the gate the uplink could publish before the subscriber is back, and the
    test would miss messages the broker did take. ``after``: ``sub.subscriptions``
    read before the broker went down.
    """
    broker.set_acl(ACL_READ_ONLY)
    await asyncio.to_thread(broker.start)
    await asyncio.to_thread(sub.start)  # connects a subscriber that never was
    await asyncio.to_thread(sub.wait_subscribed, WAIT, after)
    broker.set_acl(ACL_OPEN)


def assert_no_alert_contents_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No log line, at any level, carries what an alert says."""
    leaked = [r.getMessage() for r in caplog.records if "No movement for" in r.getMessage()]
    assert not leaked


def test_alert_and_heartbeat_arrive_as_encoded(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Each message on its topic, QoS 1, not retained, byte-equal to encode(model)."""
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        outbox = MemoryOutbox(1 << 20)
        with Subscriber.on(mosquitto, f"{BASE}/#") as sub:
            async with running(new_uplink(config(mosquitto), outbox)) as uplink:
                outbox.add(alert(1), now=CLOCK.wall())
                outbox.add(heartbeat(60), now=CLOCK.wall())
                uplink.notify()
                assert await uplink.drain(WAIT)
                got = await sub.await_until(lambda m: len(m) >= 3, WAIT, "status+alert+beat")
                assert uplink.stats.acked == 2
                assert uplink.stats.last_ack_wall is not None
        (status,) = on(f"{BASE}/status")(got)[:1]
        (sent_alert,) = on(f"{BASE}/alert")(got)
        (beat,) = on(f"{BASE}/heartbeat")(got)
        assert (status.qos, status.retain) == (1, True)
        assert json.loads(status.payload)["state"] == "online"
        assert (sent_alert.qos, sent_alert.retain) == (1, False)
        assert sent_alert.payload == encode(alert(1))
        assert "MessageExpiryInterval" not in sent_alert.properties
        assert (beat.qos, beat.retain) == (1, False)
        assert beat.payload == encode(heartbeat(60))
        assert 0 < beat.properties["MessageExpiryInterval"] <= 900

    run(main())
    assert_no_alert_contents_logged(caplog)


def test_online_on_connect_and_will_after_a_crash(mosquitto: Mosquitto) -> None:
    """Retained "online" on connect; the Will's retained "offline" when the link dies."""

    async def main() -> None:
        with Subscriber.on(mosquitto, f"{BASE}/status") as sub:
            uplink = new_uplink(config(mosquitto, will_delay=1))
            await uplink.start()
            online = await sub.await_for(1, WAIT)
            assert json.loads(online[0].payload)["state"] == "online"
            assert online[0].retain
            await uplink.abort()  # no DISCONNECT: as a power cut would leave it
            got = await sub.await_for(2, WAIT)
        will = got[1]
        assert will.retain
        assert will.payload == encode(StatusMessage(state="offline", version=VERSION))
        with Subscriber.on(mosquitto, f"{BASE}/status") as late:
            (kept,) = await late.await_for(1, WAIT)
        assert kept.payload == will.payload  # retained for whoever looks later

    run(main())


def test_clean_stop_publishes_offline_and_no_will(mosquitto: Mosquitto) -> None:
    """stop() publishes a retained, timestamped "offline"; the Will never follows."""

    async def main() -> None:
        with Subscriber.on(mosquitto, f"{BASE}/status") as sub:
            uplink = new_uplink(config(mosquitto, will_delay=1))
            await uplink.start()
            await sub.await_for(1, WAIT)
            await uplink.stop()
            got = await sub.await_for(2, WAIT)
            await asyncio.sleep(2.5)  # longer than the Will delay: a Will would be here
            after = sub.messages
        offline = json.loads(got[1].payload)
        assert got[1].retain
        assert offline["state"] == "offline"
        assert "at" in offline  # the explicit goodbye; the Will carries no time
        assert after == got

    run(main())


def test_broker_down_at_start(mosquitto: Mosquitto) -> None:
    """Alerts wait in the outbox, then arrive once each, in order, when the broker starts."""

    async def main() -> None:
        mosquitto.stop()
        outbox = MemoryOutbox(1 << 20)
        sub = Subscriber(mosquitto.host, mosquitto.port, f"{BASE}/alert")
        try:
            async with running(new_uplink(config(mosquitto), outbox)) as uplink:
                ids = add_alerts(uplink, outbox, range(5))
                await until(lambda: uplink.stats.last_retry_delay is not None, "a failed try")
                assert not uplink.connected
                assert outbox.depth() == 5
                await start_gated(mosquitto, sub)
                assert await uplink.drain(WAIT)
                got = await sub.await_for(5, WAIT)
        finally:
            sub.stop()
        assert alert_ids(got) == ids

    run(main())


def test_heartbeats_coalesce_while_offline(mosquitto: Mosquitto) -> None:
    """Only the newest of the heartbeats queued during an outage reaches the broker."""

    async def main() -> None:
        mosquitto.stop()
        outbox = MemoryOutbox(1 << 20)
        sub = Subscriber(mosquitto.host, mosquitto.port, f"{BASE}/heartbeat")
        async with running(new_uplink(config(mosquitto), outbox)) as uplink:
            for uptime in (300, 600, 900):
                outbox.add(heartbeat(uptime), now=CLOCK.wall())
                uplink.notify()
            await until(lambda: uplink.stats.last_retry_delay is not None, "a failed attempt")
            try:
                await start_gated(mosquitto, sub)
                assert await uplink.drain(WAIT)
                got = await sub.await_for(1, WAIT)
            finally:
                sub.stop()
        assert [json.loads(m.payload)["uptime_s"] for m in got] == [900]
        assert uplink.stats.published == 1

    run(main())


def test_broker_killed_repeatedly_every_alert_arrives(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL mid-stream, three times: every alert arrives, in order of first arrival."""
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        outbox = MemoryOutbox(1 << 22)
        expected: list[str] = []
        with Subscriber.on(mosquitto, f"{BASE}/alert", qos=0) as sub:
            async with running(new_uplink(config(mosquitto), outbox)) as uplink:
                for cycle in range(3):
                    expected += add_alerts(uplink, outbox, range(cycle * 60, cycle * 60 + 60))
                    acked = uplink.stats.acked
                    await until(lambda a=acked: uplink.stats.acked >= a + 20, "alerts flowing")
                    before = sub.subscriptions
                    mosquitto.kill()
                    await until(lambda: not uplink.connected, "the loss noticed")
                    assert uplink.pending_acks == 0  # the waiting publish was settled
                    expected += add_alerts(uplink, outbox, [1000 + cycle])  # while it is down
                    await start_gated(mosquitto, sub, after=before)
                assert await uplink.drain(WAIT)
                got = await sub.await_until(
                    lambda m: set(alert_ids(m)) >= set(expected), WAIT, "every alert"
                )
                assert uplink.stats.reconnects >= 3
        assert first_arrivals(alert_ids(got)) == expected

    run(main())
    assert_no_alert_contents_logged(caplog)


def test_publish_timeout_leaves_items_in_the_outbox(mosquitto: Mosquitto) -> None:
    """A frozen broker: no PUBACK in time, the alert stays queued; it goes once it thaws."""

    async def main() -> None:
        outbox = MemoryOutbox(1 << 20)
        with Subscriber.on(mosquitto, f"{BASE}/#") as sub:
            async with running(new_uplink(config(mosquitto, publish_timeout=1), outbox)) as up:
                await sub.await_for(1, WAIT)  # "online" acknowledged: the link is up
                mosquitto.pause()
                try:
                    ids = add_alerts(up, outbox, [7])
                    await until(lambda: up.stats.failures >= 1, "a publish timeout")
                    assert outbox.depth() == 1  # still there, to be sent again
                    assert up.stats.acked == 0
                finally:
                    mosquitto.resume()
                assert await up.drain(WAIT)
                assert up.pending_acks == 0
                got = await sub.await_until(lambda m: bool(alert_ids(m)), WAIT, "the alert")
        assert first_arrivals(alert_ids(got)) == ids

    run(main())


def test_a_silent_broker_is_noticed_by_keepalive_alone_and_the_link_state_is_told(
    mosquitto: Mosquitto,
) -> None:
    """Nothing to publish and the broker frozen: the unanswered ping drops the link within
    about two keepalives (paho's timers run every quarter keepalive), and whoever asked
    (the status LED) hears of each change, with no polling."""

    async def main() -> list[bool]:
        told: list[bool] = []
        uplink = new_uplink(config(mosquitto, keepalive=2))
        uplink.on_link(told.append)
        assert told == [False]  # told at once: not connected yet
        async with running(uplink):
            await until(lambda: uplink.connected, "connected")
            assert await uplink.drain(WAIT)  # "online" acknowledged; now nothing to send
            mosquitto.pause()
            try:
                await until(lambda: not uplink.connected, "the silent broker noticed", 10.0)
            finally:
                mosquitto.resume()
            await until(lambda: uplink.connected, "connected again")
        return told

    assert run(main()) == [False, True, False, True, False]  # and down once stopped


def test_paho_timers_run_a_quarter_keepalive_apart_and_no_more_than_15_s() -> None:
    assert misc_every(2) == 0.5
    assert misc_every(300) == MISC_EVERY_MAX == 15.0
    assert misc_every(60, stall_after=20) == 5.0  # each run is the driver's sign of life


def test_refused_connection_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    """CONNACK "Not authorized": a clear error, retries, no crash; then it connects."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")

    def refusals() -> int:
        return sum("refused the connection: Not authorized" in r.message for r in caplog.records)

    async def main() -> None:
        with Mosquitto(allow_anonymous=False) as broker:
            outbox = MemoryOutbox(1 << 20)
            async with running(new_uplink(config(broker), outbox)) as uplink:
                add_alerts(uplink, outbox, [1])
                await until(lambda: refusals() >= 2, "two refused attempts")
                assert not uplink.connected
                broker.set_allow_anonymous(True)
                assert await uplink.drain(WAIT)

    with caplog.at_level(logging.INFO, logger="agent.uplink"):
        run(main())
    record = next(r for r in caplog.records if "refused the connection" in r.message)
    assert record.levelno == logging.ERROR
    assert HUB in record.message


def test_reconnect_delays_are_jittered() -> None:
    """Two uplinks facing the same dead broker choose different delays."""

    async def main() -> None:
        dead = MqttUplinkConfig(host="127.0.0.1", port=free_port(), reconnect_min=0.05)
        uplinks = [new_uplink(dead) for _ in range(2)]
        for uplink in uplinks:
            await uplink.start()
        try:
            await until(
                lambda: all(u.stats.last_retry_delay is not None for u in uplinks), "retries"
            )
        finally:
            for uplink in uplinks:
                await uplink.stop()
        first, second = (u.stats.last_retry_delay for u in uplinks)
        assert first != second

    run(main())


def test_backoff_spans_its_window_and_grows() -> None:
    """Full jitter: uniform over [min, min * 2^(n+1)], capped at max."""
    rng = random.Random(1)
    first = [backoff_delay(0, 1.0, 300.0, rng) for _ in range(2000)]
    assert 1.0 <= min(first) < 1.05
    assert 1.95 < max(first) <= 2.0
    late = [backoff_delay(20, 1.0, 300.0, rng) for _ in range(2000)]
    assert 1.0 <= min(late) < 10.0
    assert 290.0 < max(late) <= 300.0
    assert backoff_delay(3, 0.0, 0.0, rng) == 0.0


def test_the_first_retry_after_a_loss_is_spread_unless_an_alert_waits() -> None:
    rng = random.Random(2)
    # a fleet dropped together: spread over the whole spread, not the first 1-2 s
    first = [retry_delay(5, True, False, 1.0, 300.0, 30.0, rng) for _ in range(2000)]
    delays = [d for d, _ in first]
    assert 1.0 <= min(delays) < 1.1 and 29.9 < max(delays) <= 30.0
    assert sum(d <= 2.0 for d in delays) < 0.06 * len(delays)  # 1 in 29 falls in 1-2 s
    # a failure after it waits in a window twice as wide, then wider
    nxt = {n for _, n in first}
    assert nxt == {5}
    assert 32.0 <= max(backoff_delay(5, 1.0, 300.0, rng) for _ in range(2000)) <= 64.0
    # an alert waiting: the usual first window, and never more than the spread after
    assert all(
        1.0 <= retry_delay(0, True, True, 1.0, 300.0, 30.0, rng)[0] <= 2.0 for _ in range(500)
    )
    assert max(retry_delay(9, False, True, 1.0, 300.0, 30.0, rng)[0] for _ in range(500)) <= 30
    # not after a loss (the broker was down at the last try): the usual backoff goes on
    assert retry_delay(3, False, False, 1.0, 300.0, 30.0, random.Random(4)) == (
        backoff_delay(3, 1.0, 300.0, random.Random(4)),
        4,
    )
    # a spread no wider than the first window, or above the maximum
    assert retry_delay(0, True, False, 1.0, 300.0, 1.5, random.Random(4))[0] <= 2.0
    assert max(retry_delay(0, True, False, 1.0, 10.0, 30.0, rng)[0] for _ in range(500)) <= 10


def test_a_broker_restart_is_met_with_a_spread_retry(mosquitto: Mosquitto) -> None:
    """The first retry after losing the connection is drawn over ``reconnect_spread``."""

    async def main() -> None:
        cfg = config(mosquitto, reconnect_max=3.0, reconnect_spread=3.0)
        uplink = MqttUplink(cfg, HUB, MemoryOutbox(1 << 20), CLOCK, VERSION, rng=random.Random(0))
        async with running(uplink):
            await until(lambda: uplink.connected, "connected")
            mosquitto.kill()
            await until(lambda: not uplink.connected, "the loss noticed")
            await asyncio.to_thread(mosquitto.start)
            await until(lambda: uplink.connected, "back")
            # the draw of a spread retry, well past the old first window (0.05-0.1 s)
            assert uplink.stats.last_retry_delay == random.Random(0).uniform(0.05, 3.0)
            assert uplink.stats.reconnects == 1

    run(main())


def test_an_alert_does_not_wait_for_the_spread(mosquitto: Mosquitto) -> None:
    """An alert raised while the hub waits out a long spread goes within the first window."""

    async def main() -> None:
        cfg = config(mosquitto, reconnect_max=60.0, reconnect_spread=60.0)
        outbox = MemoryOutbox(1 << 20)
        # seed 0 draws a first retry 50.7 s after the loss
        uplink = MqttUplink(cfg, HUB, outbox, CLOCK, VERSION, rng=random.Random(0))
        with Subscriber.on(mosquitto, f"{BASE}/alert", qos=1) as sub:
            async with running(uplink):
                await until(lambda: uplink.connected, "connected")
                before = sub.subscriptions
                mosquitto.kill()
                await until(lambda: not uplink.connected, "the loss noticed")
                await until(lambda: uplink.stats.last_retry_delay is not None, "a retry chosen")
                assert uplink.stats.last_retry_delay is not None
                assert uplink.stats.last_retry_delay > 50
                await start_gated(mosquitto, sub, after=before)
                ids = add_alerts(uplink, outbox, [7])
                got = await sub.await_for(1, WAIT)  # not 50 s
                assert alert_ids(got) == ids
                assert uplink.stats.last_retry_delay <= 0.1

    run(main())


def test_only_outbound_models_are_published(mosquitto: Mosquitto) -> None:
    """Forged outbox items never reach the broker; they are counted and dropped."""
    good = encode(alert(1))
    forged = [
        OutboxItem(901, "events", b'{"events":["kitchen 07:02"]}', 1.0),
        OutboxItem(902, "alert", good[:-1] + b',"events":["kitchen 07:02"]}', 1.0),
        OutboxItem(903, "alert", good.replace(b",", b", "), 1.0),  # same data, other bytes
        OutboxItem(904, "heartbeat", good, 1.0),
    ]
    for item in forged:
        with pytest.raises(RefusedPayload):
            checked_payload(item)

    class ForgingOutbox(MemoryOutbox):
        """Hands out forged items once, as a buggy or hostile backend might."""

        def __init__(self) -> None:
            super().__init__(1 << 20)
            self.extra = list(forged)

        def take(self, limit: int) -> list[OutboxItem]:
            extra, self.extra = self.extra, []
            for item in extra:  # put in flight behind the queue's back
                size = len(item.payload)
                row = Row(item.id, item.topic, size, item.created, False, item.payload)
                self._queue.in_flight[item.id] = row
            return extra + super().take(limit)

    async def main() -> None:
        outbox = ForgingOutbox()
        with Subscriber.on(mosquitto, f"{BASE}/#") as sub:
            async with running(new_uplink(config(mosquitto), outbox)) as uplink:
                ids = add_alerts(uplink, outbox, [1])
                assert await uplink.drain(WAIT)
                got = await sub.await_until(lambda m: bool(alert_ids(m)), WAIT, "the alert")
                assert uplink.stats.refused == len(forged)
        assert alert_ids(got) == ids
        assert [m.payload for m in got if m.topic.endswith("/alert")] == [good]
        assert not [m for m in got if not m.topic.endswith(("/alert", "/status"))]
        with pytest.raises(TypeError):
            outbox.add(StatusMessage(state="online", version=VERSION), now=1.0)  # type: ignore[arg-type]

    run(main())


def test_memory_uplink_publishes_at_once() -> None:
    """The memory uplink keeps (topic, payload) in order and empties the outbox."""

    async def main() -> None:
        outbox = MemoryOutbox(1 << 20)
        uplink = make_uplink(MemoryUplinkConfig(type="memory"), HUB, outbox, CLOCK, VERSION)
        assert isinstance(uplink, MemoryUplink)
        outbox.add(alert(1), now=1.0)
        await uplink.start()
        outbox.add(heartbeat(5), now=2.0)
        outbox.add(alert(2), now=3.0)
        uplink.notify()
        assert await uplink.drain(1.0)
        assert list(uplink.sent) == [
            ("alert", encode(alert(1))),
            ("alert", encode(alert(2))),
            ("heartbeat", encode(heartbeat(5))),
        ]
        assert outbox.depth() == 0
        await uplink.stop()

    run(main())


def test_memory_uplink_keeps_only_the_last_messages_it_is_told_to() -> None:
    """A replay of a year publishes tens of thousands of heartbeats: only the last
    ``keep`` stay readable, all are counted."""

    async def main() -> None:
        outbox = MemoryOutbox(1 << 20)
        config = MemoryUplinkConfig(type="memory", keep=3)
        uplink = make_uplink(config, HUB, outbox, CLOCK, VERSION)
        assert isinstance(uplink, MemoryUplink)
        await uplink.start()
        for n in range(1, 6):
            outbox.add(alert(n), now=float(n))
            uplink.notify()
        assert list(uplink.sent) == [("alert", encode(alert(n))) for n in (3, 4, 5)]
        assert uplink.stats.published == 5
        await uplink.stop()

    run(main())


# -- TLS -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server: BrokerTls
    client: TlsConfig
    stranger: TlsConfig  # a hub certificate from another CA
    expired_client: TlsConfig  # the hub's CA, but valid for one day in 2020
    expired_server: BrokerTls  # the same for the broker


def _openssl(directory: Path, *args: str) -> None:
    TestPki(directory).openssl(*args)


def _make_ca(directory: Path, name: str) -> Path:
    return TestPki(directory).ca(name)


def _issue(
    directory: Path, name: str, ca: str, subject: str, extensions: str, expired: bool = False
) -> TlsConfig:
    """A certificate for ``subject`` ("/CN=..."); ``expired``: valid one day in 2020."""
    long_ago = datetime(2020, 1, 1, tzinfo=UTC) if expired else None
    return TestPki(directory).issue(
        name,
        ca,
        subject.removeprefix("/CN="),
        extensions,
        not_before=long_ago,
        not_after=None if long_ago is None else long_ago + timedelta(days=1),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA with a broker and a hub certificate; another CA with a hub certificate;
    expired broker and hub certificates from the test CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; it makes the test certificates")
    directory = tmp_path_factory.mktemp("pki")
    ca = _make_ca(directory, "ca")
    other = _make_ca(directory, "other-ca")
    names = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    server = _issue(directory, "broker", "ca", "/CN=localhost", names)
    client = _issue(directory, "hub", "ca", f"/CN={HUB}", "extendedKeyUsage=clientAuth")
    stranger = _issue(
        directory, "stranger", "other-ca", "/CN=h-9999", "extendedKeyUsage=clientAuth"
    )
    old_server = _issue(directory, "old-broker", "ca", "/CN=localhost", names, expired=True)
    old_client = _issue(
        directory, "old-hub", "ca", f"/CN={HUB}", "extendedKeyUsage=clientAuth", expired=True
    )
    return Pki(
        ca=ca,
        other_ca=other,
        server=BrokerTls(ca, server.cert, server.key, require_certificate=True),
        client=client,
        stranger=TlsConfig(ca=ca, cert=stranger.cert, key=stranger.key),
        expired_client=old_client,
        expired_server=BrokerTls(ca, old_server.cert, old_server.key, require_certificate=True),
    )


@pytest.fixture
def tls_broker(pki: Pki) -> Iterator[Mosquitto]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    with Mosquitto(tls=pki.server) as broker:
        yield broker


def test_tls_with_client_certificate(tls_broker: Mosquitto, pki: Pki) -> None:
    """Over TLS, with the hub's certificate, alerts arrive."""

    async def main() -> None:
        cfg = config(tls_broker, port=tls_broker.tls_port, tls=pki.client)
        outbox = MemoryOutbox(1 << 20)
        with Subscriber.on(tls_broker, f"{BASE}/alert") as sub:
            async with running(new_uplink(cfg, outbox)) as uplink:
                ids = add_alerts(uplink, outbox, [1, 2])
                assert await uplink.drain(WAIT)
                got = await sub.await_for(2, WAIT)
        assert alert_ids(got) == ids

    run(main())


@pytest.mark.parametrize(
    ("case", "hint"),
    [("untrusted broker", "is not trusted"), ("unknown hub", "certificate")],
)
def test_tls_failure_is_logged_and_retried(
    tls_broker: Mosquitto, pki: Pki, caplog: pytest.LogCaptureFixture, case: str, hint: str
) -> None:
    """A broker we do not trust, or a hub it does not know: a clear error, retries, no crash."""
    if case == "untrusted broker":
        tls = TlsConfig(ca=pki.other_ca, cert=pki.client.cert, key=pki.client.key)
    else:
        tls = pki.stranger

    def failures() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "agent.uplink" and r.levelno >= logging.WARNING and hint in r.message
        ]

    async def main() -> None:
        cfg = config(tls_broker, port=tls_broker.tls_port, tls=tls)
        async with running(new_uplink(cfg)) as uplink:
            await until(lambda: len(failures()) >= 2, "two failed handshakes")
            assert not uplink.connected

    with caplog.at_level(logging.INFO, logger="agent.uplink"):
        run(main())
    assert HUB in failures()[0].message


@pytest.mark.parametrize(
    ("case", "hints"),
    [
        # TLS 1.3: the broker refuses the hub's certificate after the handshake; the hub
        # says to check it, and paho's read logs the broker's alert, "certificate expired"
        ("expired hub certificate", ("check tls.cert", "certificate expired")),
        ("expired broker certificate", ("not trusted (certificate has expired)",)),
    ],
)
def test_an_expired_certificate_is_refused_clearly_and_retried(
    pki: Pki, caplog: pytest.LogCaptureFixture, case: str, hints: tuple[str, ...]
) -> None:
    """The hub's or the broker's certificate has expired: a clear error, retries, no crash."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    hub_expired = case == "expired hub certificate"
    server = pki.server if hub_expired else pki.expired_server
    tls = pki.expired_client if hub_expired else pki.client

    def said() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name.startswith("agent.uplink") and r.levelno >= logging.WARNING
        ]

    def clear_and_retried() -> bool:
        lines = said()
        tries = sum(hints[0] in line for line in lines)
        return tries >= 2 and all(any(h in line for line in lines) for h in hints)

    async def main(broker: Mosquitto) -> None:
        outbox = MemoryOutbox(1 << 20)
        cfg = config(broker, port=broker.tls_port, tls=tls)
        async with running(new_uplink(cfg, outbox)) as uplink:
            add_alerts(uplink, outbox, [1])
            await until(clear_and_retried, "two refused connections, each with its reason")
            assert not uplink.connected
            assert outbox.depth() == 1  # the alert waits for a certificate that works

    with Mosquitto(tls=server) as broker, caplog.at_level(logging.INFO, logger="agent.uplink"):
        run(main(broker))
    assert any(HUB in line and hints[0] in line for line in said())
