"""Hub status (heartbeat and last will) updates the hubs table."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

import pytest

from tests.fixtures.fix_mqtt import MosquittoFactory
from tests.gateway.ingest_support import HUB, NOW, running
from wire import contract

pytestmark = pytest.mark.integration


def _status(
    hub: str,
    state: Literal["online", "offline"],
    *,
    at: datetime = NOW,
    devices: Iterable[tuple[str, datetime]] = (),
) -> bytes:
    return contract.encode(
        contract.HubStatus(
            hub=hub,
            state=state,
            at=at,
            outbox=contract.OutboxState(pending=3, bytes=900),
            devices=[contract.DeviceSeen(d, t) for d, t in devices],
        )
    )


async def test_status_heartbeat_will_and_unknown_hub(
    fresh_db: str, mosquitto: MosquittoFactory
) -> None:
    broker = mosquitto()
    seen = NOW - timedelta(minutes=2)
    online = _status(HUB, "online", devices=[("oxi-1", seen), ("unbound", seen)])
    async with running(fresh_db, broker.url) as h:
        await h.publish(online, leaf="status", retain=True)
        assert (await h.batch()).status_updates == 1
        hub_online = h.query("SELECT state, last_seen, status FROM hubs WHERE hub_id = %s", (HUB,))
        device = h.query("SELECT last_seen FROM devices WHERE device_id = 'oxi-1'")

        offline = _status(HUB, "offline", at=NOW - timedelta(hours=5))
        await h.publish(offline, leaf="status", retain=True)
        await h.batch()
        hub_offline = h.query("SELECT state, last_seen, status FROM hubs WHERE hub_id = %s", (HUB,))

        await h.publish(_status("hub-x", "online"), hub="hub-x", leaf="status")
        await h.publish(_status("hub-2", "online"), hub=HUB, leaf="status")
        await h.publish(b"", leaf="status", retain=True)  # clears the retained status: ignored
        dead: list[object] = []
        while len(dead) < 2:
            dead.extend((await h.batch()).rejected)
        rows = h.query("SELECT hub_id, topic, reading_key, reason FROM dead_letters ORDER BY id")
        states = h.query("SELECT hub_id, state FROM hubs ORDER BY 1")
    assert hub_online == [("online", NOW, json.loads(online))]
    assert device == [(seen,)]
    assert hub_offline == [("offline", NOW, json.loads(offline))]
    assert rows == [
        ("hub-x", contract.status_topic("hub-x"), None, "hub: unknown hub 'hub-x'"),
        (
            HUB,
            contract.status_topic(HUB),
            None,
            f"hub: status hub 'hub-2' does not match the topic's hub '{HUB}'",
        ),
    ]
    assert states == [(HUB, "offline"), ("hub-2", "unknown")]


async def test_retained_status_is_read_at_start(fresh_db: str, mosquitto: MosquittoFactory) -> None:
    """A hub's retained status published while no ingester ran is applied when one starts."""
    from wire.mqtt import MqttClient, MqttSettings

    broker = mosquitto()
    async with MqttClient(MqttSettings.from_url(broker.url), "hub-pub") as pub:
        await pub.publish(contract.status_topic(HUB), _status(HUB, "online"), retain=True)
    async with running(fresh_db, broker.url) as h:
        await h.batch()
        assert h.query("SELECT state FROM hubs WHERE hub_id = %s", (HUB,)) == [("online",)]
