"""Acting on a running Mosquitto: install a new CRL, and end a revoked hub's live session.

Mosquitto checks the CRL when a TLS connection is made, so after ``telehub hub revoke`` and a
SIGHUP new connections with the revoked certificate fail — but a session that is already
connected stays up (Mosquitto 2.0.11; ``tests/deploy/test_broker_revoke.py`` shows both). To end
it, :func:`kick` asks the dynamic-security plugin over its control topic to disable the hub's
client, which disconnects every connection with that username, then enables it again (a hub that
rotated to a new certificate reconnects with it at once; the revoked one cannot, the CRL refuses
it). With ``remove`` the hub's client and role are deleted instead (decommissioning).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any, Final

from telehub.fleetca import CONTROL_RESPONSE_TOPIC, CONTROL_TOPIC, EnrolError
from wire.mqtt import MqttClient, MqttError, MqttSettings

TIMEOUT_S: Final = 10.0


class BrokerControlError(EnrolError):
    """The broker refused or did not answer a control command (the message says which)."""


def install_crl(crl: Path, dest: Path, broker_pid: int | None) -> None:
    """Copy the CRL to the broker's ``crlfile`` atomically, then SIGHUP the broker to reload."""
    tmp = dest.with_name(dest.name + ".new")
    shutil.copyfile(crl, tmp)
    os.replace(tmp, dest)
    if broker_pid is not None:
        os.kill(broker_pid, signal.SIGHUP)


async def _commands(url: str, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    settings = MqttSettings.from_url(url, protocol="5")
    try:
        async with MqttClient(settings, f"telehub-admin-{uuid.uuid4().hex[:8]}") as c:
            await c.subscribe(CONTROL_RESPONSE_TOPIC, qos=1, timeout=TIMEOUT_S)
            await c.publish(
                CONTROL_TOPIC, json.dumps({"commands": commands}).encode(), timeout=TIMEOUT_S
            )
            async with asyncio.timeout(TIMEOUT_S):
                async for m in c.messages():
                    got: list[dict[str, Any]] = json.loads(m.payload).get("responses", [])
                    if [r.get("command") for r in got] == [x["command"] for x in commands]:
                        return got
    except (MqttError, OSError, TimeoutError) as e:
        raise BrokerControlError(f"broker control at {settings.host}:{settings.port}: {e}") from e
    raise BrokerControlError("the broker closed the control connection without an answer")


async def kick(url: str, username: str, *, remove: bool = False) -> None:
    """End every live session of ``username`` (a hub id); ``remove``: delete its client too."""
    if remove:
        commands = [
            {"command": "deleteClient", "username": username},
            {"command": "deleteRole", "rolename": f"hub:{username}"},
        ]
    else:
        commands = [
            {"command": "disableClient", "username": username},
            {"command": "enableClient", "username": username},
        ]
    for r in await _commands(url, commands):
        if r.get("error"):
            raise BrokerControlError(f"{r.get('command')} {username}: {r['error']}")
