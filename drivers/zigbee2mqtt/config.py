"""Configuration of the Zigbee2MQTT driver: where the local broker is, and the base topic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from agent.config import DriverConfig
from agent.units import Duration


class Zigbee2MqttConfig(DriverConfig):
    type: Literal["zigbee2mqtt"] = "zigbee2mqtt"
    host: str = Field(
        default="localhost",
        min_length=1,
        description="the local MQTT broker Zigbee2MQTT publishes to (on the hub itself)",
    )
    port: int = Field(default=1883, ge=1, le=65535, description="its plain MQTT port")
    username: str | None = Field(
        default=None, min_length=1, description="a broker user allowed to read the base topic"
    )
    password: SecretStr | None = Field(default=None, description="that user's password")
    base_topic: str = Field(
        default="zigbee2mqtt",
        description="Zigbee2MQTT's mqtt.base_topic: every topic it publishes starts with it",
    )
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the MQTT client id; by default leefsamen-hub-zigbee2mqtt (with the "
        "instance name, if any)",
    )
    keepalive: Duration = Field(
        default=60.0,
        ge=5,
        le=3600,
        description="MQTT keepalive: a broker that stops answering is noticed within about "
        "twice this",
    )
    connect_timeout: Duration = Field(
        default=10.0, gt=0, description="how long the broker has to accept the connection"
    )
    repeat_after: Duration = Field(
        default=3600.0,
        ge=0,
        description="a measurement (temperature, humidity, light, battery) that has not "
        "changed is passed on again after this long, when the device reports it, so a steady "
        "thermometer is not taken for a silent one; 0: only changes",
    )

    @field_validator("base_topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/"):
            raise ValueError("the base topic is a topic like 'zigbee2mqtt', without '/' around it")
        if "+" in value or "#" in value or "\x00" in value:
            raise ValueError("the base topic cannot hold the MQTT wildcards '+' or '#'")
        if "//" in value:
            raise ValueError("the base topic cannot hold an empty level ('//')")
        return value

    @field_validator("username", "client_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must be printable text")
        return value
