"""telehub: the thin package shared by the edge agent and the gateway (wire contract, MQTT, CLI)."""

__version__ = "0.1.0"
