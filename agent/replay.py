"""A runtime that replays a trace: what ``hub replay``, the demo, the golden tests and
the benchmarks share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from agent.clock import SimClock
from agent.config import MemoryUplinkConfig, load_config, validate_config
from agent.messages import AlertMessage
from agent.runtime import Runtime
from agent.traces.format import read_header
from drivers.replay.config import ReplayConfig

log = logging.getLogger(__name__)


def replay_runtime(
    trace: Path,
    config_path: Path | None,
    speed: float | str = "max",
    alert_hook: Callable[[AlertMessage], None] | None = None,
) -> Runtime:
    """A runtime that replays ``trace`` with the configuration at ``config_path``.

    Without a configuration the hub is called "replay" and publishes to memory. The home
    map comes from the configuration when it has one, else from the trace's header.
    """
    header = read_header(trace)
    if config_path is not None:
        config = load_config(config_path)
    else:
        config = validate_config({"hub": {"id": "replay", "timezone": header.tz}}, "<defaults>")
        config = config.model_copy(update={"uplink": MemoryUplinkConfig(type="memory")})
    replay = ReplayConfig(type="replay", path=trace, speed=speed)
    config = config.model_copy(update={"drivers": [replay]})
    home = config.home if config.home.sensors else header.home
    if config.hub.timezone != header.tz:
        log.warning(
            "the trace was recorded in %s; the configuration says %s: using the trace's",
            header.tz,
            config.hub.timezone,
        )
    return Runtime(config, clock=SimClock(header.zone), home=home, alert_hook=alert_hook)
