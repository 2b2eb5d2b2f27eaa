"""The broker down for a simulated week while alerts and heartbeats are made.

The hub's runtime replays a week of a home (with help-button presses) at full speed
through the SQLite outbox and the MQTT uplink while the broker is down; only then does
the broker start. Every alert message the engine made must arrive exactly once, in the
order made, and of the week's heartbeats only the newest (they coalesce in the outbox).
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.devtools.broker import ACL_OPEN, ACL_READ_ONLY, Mosquitto, Subscriber
from agent.devtools.crash import HUB, PREFIX, AgentSpec, agent_runtime
from agent.messages import AlertMessage, encode
from agent.traces.format import write_trace
from agent.traces.simulate import parse_incident, simulate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

WAIT = 30.0
START = date(2026, 11, 2)
TZ = ZoneInfo("Europe/Amsterdam")
PRESSES = tuple(f"help_button@d{day}T{9 + day}:{5 * day:02d}" for day in range(1, 8))


def simulated_week(folder: Path) -> Path:
    incidents = [parse_incident(text, START, TZ) for text in PRESSES]
    sim = simulate(7, 23, START, TZ, "typical", incidents)
    path = folder / "week.jsonl"
    write_trace(path, sim.header, sim.events)
    return path


def test_a_week_offline_then_every_alert_arrives_once_in_order(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A week without a broker: then each alert once, in order; one heartbeat, the newest."""
    mosquitto.stop()
    spec = AgentSpec(
        simulated_week(tmp_path),
        tmp_path / "outbox.db",
        tmp_path / "reports.txt",
        broker=(mosquitto.host, mosquitto.port),
    )
    made: list[bytes] = []

    def hook(message: AlertMessage) -> None:
        made.append(encode(message))

    runtime = agent_runtime(spec, hook)
    sub = Subscriber(mosquitto.host, mosquitto.port, f"{PREFIX}/{HUB}/#", qos=1)

    async def main() -> None:
        run = asyncio.create_task(runtime.run(drain_timeout=WAIT))
        async with asyncio.timeout(WAIT):  # the week replays at full speed, then drains
            while not runtime.driver_health or any(
                h.state != "stopped" for h in runtime.driver_health.values()
            ):
                await asyncio.sleep(0.01)
        assert runtime.uplink.stats.acked == 0 and not runtime.uplink.connected
        assert runtime.outbox.depth() >= len(made)  # the week's alerts, and one heartbeat
        # The broker returns, refusing publishes until the subscriber listens again.
        mosquitto.set_acl(ACL_READ_ONLY)
        await asyncio.to_thread(mosquitto.start)
        await asyncio.to_thread(sub.start)
        mosquitto.set_acl(ACL_OPEN)
        await run

    try:
        asyncio.run(main())
        got = sub.wait_until(
            lambda ms: (
                sum(m.topic.endswith("/alert") for m in ms) >= len(made)
                and any(m.topic.endswith("/heartbeat") for m in ms)
            ),
            WAIT,
            "the week's alerts and a heartbeat",
        )
    finally:
        sub.stop()
    alerts = [m.payload for m in got if m.topic.endswith("/alert")]
    beats = [json.loads(m.payload) for m in got if m.topic.endswith("/heartbeat")]
    kinds = {json.loads(p)["kind"] for p in made}
    print(f"{len(made)} alert messages: {sorted(kinds)}; {runtime.stats.heartbeats} heartbeats")
    assert len(made) >= 2 * len(PRESSES) and "help_button" in kinds
    assert alerts == made  # every alert message once, in the order made
    assert runtime.stats.heartbeats > 7 * 24 * 3  # one every 15 simulated minutes
    assert len(beats) == 1  # coalesced while the broker was down
    assert beats[0]["uptime_s"] >= 6 * 86400  # the newest: the one made at the week's end
    assert beats[0]["outbox"]["depth"] >= len(made)  # and it says what was waiting
