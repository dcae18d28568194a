"""telehub's asyncio MQTT 5 / 3.1.1 client, with acknowledgement under the caller's control.

The public surface is what this module exports; ``_client`` (the connection), ``_codec`` (the
sans-I/O packet encoder and reader) and ``_exceptions`` are private.
"""

from wire.mqtt._client import Message, MqttClient, MqttSettings, Protocol, Will
from wire.mqtt._exceptions import (
    ConnectionLost,
    ConnectRefused,
    MqttError,
    MqttTimeout,
    ProtocolError,
    PublishRefused,
)

__all__ = [
    "ConnectRefused",
    "ConnectionLost",
    "Message",
    "MqttClient",
    "MqttError",
    "MqttSettings",
    "MqttTimeout",
    "Protocol",
    "ProtocolError",
    "PublishRefused",
    "Will",
]
