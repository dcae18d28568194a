"""The wire: what a hub and the gateway agree on.

``wire.contract`` is the versioned message contract (topics, readings, receipts, hub status);
``wire.mqtt`` is the asyncio MQTT 5 / 3.1.1 client both sides use, with acknowledgement after
commit: a package whose public surface is ``wire/mqtt/__init__.py`` (private ``_client``,
``_codec`` — the sans-I/O packet reader — and ``_exceptions``). It depends on nothing of telehub
but ``drivers`` (the codes the contract names).
"""
