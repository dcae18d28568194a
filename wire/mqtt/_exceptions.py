"""One exception hierarchy for the MQTT client: callers and tests branch on the class (and
``code``), never on message text."""

from __future__ import annotations


class MqttError(Exception):
    """Base: the connection failed, was refused or lost, or an operation timed out."""


class ConnectRefused(MqttError):
    """CONNACK with a failure code (MQTT 5 reason code or MQTT 3.1.1 return code)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class MqttTimeout(MqttError, TimeoutError):
    """An acknowledgement (CONNACK, PUBACK, SUBACK, PINGRESP) did not arrive in time."""


class ConnectionLost(MqttError):
    """The connection ended (or was never up) before the operation completed."""


class PublishRefused(MqttError):
    """A PUBLISH or SUBSCRIBE refused: by the broker (``code`` its reason code) or locally because
    it breaks the protocol or the broker's announced limits (``code`` None)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ProtocolError(MqttError):
    """The peer sent something malformed or not allowed by the spec (the connection is ended)."""
