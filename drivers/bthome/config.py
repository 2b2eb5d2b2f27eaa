"""Configuration of the BTHome driver. Pydantic only: no Bluetooth library is imported here."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, SecretStr, field_validator

from agent.config import DriverConfig
from agent.units import Duration

_ADDRESS = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_ADAPTER = re.compile(r"^hci[0-9]{1,3}$")
_KEY = re.compile(r"^[0-9a-fA-F]{32}$")


def normal_address(value: str) -> str:
    """``a4:c1:38:8d:18:b2`` -> ``A4:C1:38:8D:18:B2``; ValueError for anything else."""
    text = value.strip().upper().replace("-", ":")
    if not _ADDRESS.match(text):
        raise ValueError(f"{value!r} is not a Bluetooth address (write it like A4:C1:38:8D:18:B2)")
    return text


def _bind_key(value: SecretStr) -> SecretStr:
    # The message never repeats the key: it is a secret, also when it is mistyped.
    if not _KEY.match(value.get_secret_value().strip()):
        raise ValueError("a BTHome key is 32 hexadecimal digits (16 bytes)")
    return SecretStr(value.get_secret_value().strip().lower())


BindKey = Annotated[SecretStr, AfterValidator(_bind_key)]


class BTHomeConfig(DriverConfig):
    """BTHome v2 devices heard over one Bluetooth adapter."""

    # A mistyped key must not end up in an error message or a log.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["bthome"] = "bthome"
    adapter: str | None = Field(
        default=None,
        description='the Bluetooth adapter, e.g. "hci0"; none: the first powered one',
    )
    scanning_mode: Literal["auto", "passive", "active"] = Field(
        default="auto",
        description="passive only listens (needs BlueZ >= 5.56 started with --experimental); "
        "active also asks devices for their scan response; auto tries passive, then active",
    )
    keys: dict[str, BindKey] = Field(
        default_factory=dict,
        description="the key (32 hex digits) of each encrypted device, by Bluetooth address; "
        "a secret: never logged",
    )
    stall_after: Duration | None = Field(
        default=300.0,
        gt=0,
        description="no advertisement at all for this long means the scanner is wedged: it is "
        "restarted (none: never; a home whose devices only send when pressed needs a long one)",
    )

    @field_validator("adapter")
    @classmethod
    def _adapter(cls, value: str | None) -> str | None:
        if value is not None and not _ADAPTER.match(value):
            raise ValueError(f"{value!r} is not an adapter name (write it like hci0)")
        return value

    @field_validator("keys", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for address, key in value.items():
            if not isinstance(address, str):
                raise ValueError("keys are written as Bluetooth addresses")
            normal = normal_address(address)
            if normal in out:
                raise ValueError(f"two keys for device {normal}")
            out[normal] = key
        return out

    def key_for(self, address: str) -> bytes | None:
        """The key of the device at ``address`` (any case), as bytes; None without one."""
        key = self.keys.get(address.upper())
        return None if key is None else bytes.fromhex(key.get_secret_value())
