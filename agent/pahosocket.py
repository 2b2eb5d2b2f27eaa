"""paho-mqtt's client over a socket that the event loop has already connected.

paho's own connect blocks on the name lookup, the TCP connect and the TLS handshake: on
flaky Wi-Fi that would stall the hub's only loop for seconds. paho 2.x has no public hook
for a ready socket, so this overrides its socket factory, the one private method relied
on (checked against paho 2.1 and 2.2). Used by the uplink (to the centre) and by the
Zigbee2MQTT driver (the hub's own broker).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

#: ``loop_misc`` (paho's keepalive timers) runs at most this far apart
MISC_EVERY_MAX = 15.0


def misc_every(keepalive: float, stall_after: float | None = None) -> float:
    """Seconds between ``loop_misc`` calls: a quarter of the keepalive (a PINGREQ leaves
    at most that late; the broker allows one and a half keepalives), a quarter of the
    driver's stall limit where it has one (each call is its sign of life), and no more
    than ``MISC_EVERY_MAX``. Waking once a second for this cost a hub more CPU than its
    sensors did."""
    every = min(MISC_EVERY_MAX, keepalive / 4)
    if stall_after is not None:
        every = min(every, stall_after / 4)
    return max(every, 0.05)


class PreparedSocketClient(mqtt.Client):
    """A paho client whose next ``reconnect()`` uses the socket given to ``use_socket``."""

    def __init__(
        self, client_id: str, protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5
    ) -> None:
        super().__init__(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            # MQTT 3.1.1 sessions are clean (nothing to resume); 5 sets it on connect
            clean_session=True if protocol != MQTTProtocolVersion.MQTTv5 else None,
            reconnect_on_failure=False,
        )
        self._prepared: socket.socket | None = None

    def use_socket(self, sock: socket.socket) -> None:
        """The socket the next ``reconnect()`` will use."""
        self._prepared = sock

    def _create_socket(self) -> SocketLike:
        sock, self._prepared = self._prepared, None
        if sock is None:
            raise ConnectionError("no connected socket was prepared for paho")
        return sock
