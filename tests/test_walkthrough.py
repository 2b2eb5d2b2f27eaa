"""An installer's walk-through, end to end with real parts: Mosquitto, the agent as its own
process (``hub run``) with the Zigbee2MQTT driver, Zigbee2MQTT's payloads on the broker,
and ``hub check`` in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.devtools.broker import Subscriber, find_mosquitto
from agent.devtools.walkthrough import WALK, walkthrough_home

pytestmark = pytest.mark.skipif(
    find_mosquitto() is None or shutil.which("tmux") is None,
    reason="needs mosquitto and tmux (deploy/dev/setup.sh dev installs both)",
)

HUB = str(Path(sys.executable).with_name("hub"))


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def workdir() -> Iterator[Path]:
    # short: a Unix socket path must fit in 108 bytes
    path = Path(tempfile.mkdtemp(prefix="walk-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def check_once(socket_path: Path) -> tuple[int, dict[str, object]]:
    out = subprocess.run(
        [HUB, "check", "--socket", str(socket_path), "--once", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return out.returncode, json.loads(out.stdout) if out.stdout else {}


def test_a_walk_through_the_home_turns_every_sensor_green_in_hub_check(workdir: Path) -> None:
    session = f"walk-{os.getpid()}-{time.monotonic_ns()}"
    with (
        walkthrough_home(workdir) as (broker, z2m, socket_path, agent),
        Subscriber.on(broker, "leefsamen/#") as upstream,
    ):
        code, snap = check_once(socket_path)
        assert code == 3, snap  # nothing walked yet
        assert snap["not_seen"] == [s.sensor for s in WALK]

        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                "160",
                "-y",
                "40",
                f"{HUB} check --socket {socket_path} --fresh 60",
            ],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )

        def screen() -> str:
            return subprocess.run(
                ["tmux", "capture-pane", "-p", "-e", "-t", session],
                capture_output=True,
                text=True,
                check=True,
            ).stdout

        try:
            wait_for("hub check to draw", lambda: "Not seen yet (6 of 6)" in plain(screen()))
            assert "centre: connected" in plain(screen())
            for n, stop in enumerate(WALK, start=1):
                z2m.trigger(stop)
                left = len(WALK) - n
                want = "All 6 sensors responded" if left == 0 else f"Not seen yet ({left} of 6)"
                wait_for(f"{stop.sensor} to respond", lambda w=want: w in plain(screen()))
                row = next(
                    line
                    for line in screen().splitlines()
                    if stop.sensor in plain(line) and stop.room in plain(line)
                )
                assert "42m" in row, f"{stop.sensor} is not green: {row!r}"
            final = plain(screen())
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)

        rows = {
            line.split("│")[2].strip(): line for line in final.splitlines() if line.count("│") > 3
        }
        assert "contact open" in rows["front-door"] and "zigbee2mqtt-0" in rows["front-door"]
        assert "12 %" in rows["bathroom-motion"] and "51 lqi" in rows["bathroom-motion"]
        assert "temperature 20.5 °C" in rows["living-temp"]

        code, snap = check_once(socket_path)
        assert code == 0 and snap["not_seen"] == []
        sensors = {s["id"]: s for s in snap["sensors"]}  # type: ignore[attr-defined]
        assert sensors["help-button"]["battery"] == 88
        assert agent.poll() is None  # the agent ran throughout

        # The pendant's press went to the centre as an alert; nothing of the walk-through
        # board did: no device name, battery level or signal strength upstream, and sensor
        # ids only where a heartbeat names a low battery (maintenance: bathroom-motion, 12 %).
        upstream.wait_until(lambda ms: any(m.topic.endswith("/alert") for m in ms), 20)
        parts = []
        for m in upstream.messages:
            body = json.loads(m.payload)
            if m.topic.endswith("/heartbeat"):
                assert set(body["sensors"]["battery_low"]) <= {"bathroom-motion"}
                body["sensors"]["battery_low"] = []
            parts.append(json.dumps(body).encode())
        sent = b"".join(parts)
        for stop in WALK:
            assert stop.device.encode() not in sent
            if stop.sensor != "bathroom-motion":  # named by its maintenance alert
                assert stop.sensor.encode() not in sent
        kinds = {
            json.loads(m.payload)["kind"] for m in upstream.messages if m.topic.endswith("/alert")
        }
        assert kinds == {"help_button", "battery_low"}, kinds
        assert b"lqi" not in sent and b"dBm" not in sent and b"zigbee" not in sent.lower()
        topics = {m.topic.rsplit("/", 1)[1] for m in upstream.messages}
        assert topics <= {"status", "heartbeat", "alert"}, topics
