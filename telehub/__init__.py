"""telehub: the application on top of the parts — the ``telehub`` command, the demo and its
embedded services. The wire contract and MQTT client live in :mod:`wire`."""

__version__ = "0.1.0"
