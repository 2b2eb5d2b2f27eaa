"""The hub's configuration: one TOML file, one pydantic model, validated before any I/O.

``load_config`` reads the file and returns a ``Config`` or raises ``ConfigError`` listing
every problem with its key path, such as ``drivers[0].speed: ...``. Validation opens no
socket, serial port or database; paths are checked for shape, not existence.

Drivers are validated in a second step through the registry, so that each driver owns
its own configuration model (``drivers/<name>/config.py``) and outside drivers can bring
theirs: the result is the same single ``Config`` with typed driver sections.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from agent.detectconfig import DetectionConfig, Section
from agent.errors import ConfigError, Problem
from agent.homemap import HomeMap
from agent.messages import HubId, Mode
from agent.units import Duration


class HubSection(Section):
    id: HubId
    timezone: str = "Europe/Amsterdam"
    wall_clock: Literal["auto", "synced", "unsynced"] = Field(
        default="auto",
        description="auto asks the kernel whether NTP has synchronised the clock",
    )
    mode: Mode = Field(
        default=Mode.NORMAL,
        description="the mode of a new hub; once the centre has set one, a restart keeps "
        "that (with an [outbox] path)",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(
                f"unknown time zone {value!r} (use a name like Europe/Amsterdam)"
            ) from err
        return value


class TlsConfig(Section):
    ca: Path
    cert: Path
    key: Path


class MqttUplinkConfig(Section):
    type: Literal["mqtt"] = "mqtt"
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = "leefsamen"
    client_id: str | None = None
    tls: TlsConfig | None = None
    keepalive: Duration = Field(
        default=300.0,
        gt=0,
        description="MQTT keepalive: a ping when nothing else was sent this long; the broker "
        "takes the hub for gone after 1.5 times this (then will_delay). Each ping costs 48 "
        "bytes with TLS: at 60 s they were two thirds of a hub's daily traffic",
    )
    publish_timeout: Duration = 10.0
    will_delay: Duration = Field(
        default=120.0, description="a Wi-Fi blip shorter than this is not 'hub offline'"
    )
    heartbeat_expiry: Duration = 900.0
    reconnect_min: Duration = 1.0
    reconnect_max: Duration = 300.0
    reconnect_spread: Duration = Field(
        default=30.0,
        ge=0,
        description="after losing an established connection, the first attempt comes at a "
        "random moment within this (at most reconnect_max), so that a fleet dropped by a "
        "broker restart comes back spread out; not while an alert waits. Keep it well under "
        "will_delay, or a blip shows as 'hub offline'",
    )


class MemoryUplinkConfig(Section):
    """Keeps what would be published in memory: benchmarks and tests."""

    type: Literal["memory"]
    keep: int = Field(
        default=1000,
        ge=0,
        description="the last this many messages are kept to be read back; older ones are "
        "forgotten, so that a replay of a year does not hold every heartbeat",
    )


def _mqtt_by_default(value: Any) -> Any:
    """An ``[uplink]`` table without ``type`` is the MQTT uplink, as the defaults say."""
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": "mqtt"}
    return value


UplinkConfig = Annotated[
    MqttUplinkConfig | MemoryUplinkConfig,
    Field(discriminator="type"),
    BeforeValidator(_mqtt_by_default),
]


class OutboxConfig(Section):
    """Messages waiting for the broker, and what the engine must keep across a restart."""

    path: Path | None = Field(
        default=None,
        description="SQLite file: waiting alerts, open alerts, sequence numbers and the mode "
        "survive a restart; none keeps them in memory, lost at a restart",
    )
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)


class LocalConfig(Section):
    """What the agent offers inside the home, to people standing next to the hub."""

    socket: Path | None = Field(
        default=None,
        description="Unix socket on which hub check watches the sensors live (mode 0660); "
        "none: no live view",
    )


class HeartbeatConfig(Section):
    interval: Duration = Field(default=900.0, gt=0)


class StoreConfig(Section):
    """The local event store: the raw record, which never leaves the home."""

    path: Path | None = Field(default=None, description="SQLite file; none keeps no record")
    keep_days: int = Field(default=90, ge=1)
    flush_interval: Duration = Field(
        default=600.0,
        gt=0,
        description="events are written in one batch this often: an SD card lasts years "
        "(a power cut loses at most this much of the raw record, never an alert)",
    )


class DriverConfig(BaseModel):
    """Common part of every driver section; each driver extends it (see the registry)."""

    model_config = ConfigDict(extra="forbid")

    #: a driver that can run only once per hub (it owns a process-wide resource)
    single_instance: ClassVar[bool] = False

    type: str
    name: str | None = Field(default=None, description="an instance name, for logs and health")
    stall_after: Duration | None = Field(
        default=None,
        gt=0,
        description="no sign of life from the driver for this long means it hangs: it is "
        "restarted (none: a quiet driver is fine)",
    )


class Config(Section):
    hub: HubSection
    uplink: UplinkConfig = Field(default_factory=MqttUplinkConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    home: HomeMap = Field(default_factory=HomeMap)
    drivers: list[DriverConfig] = Field(default_factory=list)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.hub.timezone)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _input_path(loc: tuple[int | str, ...], data: Any) -> tuple[int | str, ...]:
    """The key path of an error in the input, without the tags pydantic adds for unions."""
    path: list[int | str] = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and i == len(loc) - 1:
            path.append(part)  # a missing or unknown key: name it
        # anything else is a union tag or a validator's name, not part of the input
    return tuple(path)


def problems_of(
    err: ValidationError, data: Any, prefix: tuple[int | str, ...] = ()
) -> list[Problem]:
    """pydantic's errors as problems with key paths like ``drivers[0].speed``."""
    problems = []
    for e in err.errors(include_url=False):
        loc = (*prefix, *_input_path(tuple(e["loc"]), data))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        problems.append(Problem(_where(loc), msg))
    return problems


def validate_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    """The whole configuration, drivers included, or ``ConfigError`` with every problem."""
    from drivers.registry import validate_driver_section

    problems: list[Problem] = []
    raw_drivers = raw.get("drivers", [])
    base = dict(raw)
    base["drivers"] = []
    config: Config | None = None
    try:
        config = Config.model_validate(base)
    except ValidationError as err:
        problems.extend(problems_of(err, base))
    drivers: list[DriverConfig] = []
    if not isinstance(raw_drivers, list):
        problems.append(Problem("drivers", "must be a list of [[drivers]] tables"))
        raw_drivers = []
    for i, section in enumerate(raw_drivers):
        parsed, found = validate_driver_section(section, ("drivers", i))
        problems.extend(found)
        if parsed is not None:
            drivers.append(parsed)
    if len(drivers) > 1 and any(d.type == "replay" for d in drivers):
        problems.append(Problem("drivers", "a replay driver cannot run beside live drivers"))
    for kind in sorted({d.type for d in drivers if d.single_instance}):
        if sum(d.type == kind for d in drivers) > 1:
            problems.append(
                Problem("drivers", f"only one {kind!r} driver can run on a hub; merge the tables")
            )
    names = [d.name for d in drivers if d.name is not None]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem("drivers", f"two drivers are named {dup!r}; names must differ"))
    if problems or config is None:
        raise ConfigError(source, problems)
    return config.model_copy(update={"drivers": drivers})


def load_config(path: Path) -> Config:
    """Read and validate a TOML file; the only I/O is reading that file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        problem = Problem("", f"cannot read the file: {err.strerror}")
        raise ConfigError(str(path), [problem]) from err
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), [Problem("", "the file is not UTF-8 text")]) from err
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), [Problem("", f"not valid TOML: {err}")]) from err
    return validate_config(raw, str(path))
