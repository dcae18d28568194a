"""The real edge (Outbox + Uplink) against the real ingester, Mosquitto and PostgreSQL: what the
edge tests prove with a fake gateway and the gateway tests prove with a plain publisher, proven
together.

* bad readings from a hub: dead-lettered centrally with a reason, named in the receipt, moved to
  the hub's own dead letters with the same reason and never re-sent; the good ones are stored;
* a full outbox is reported by the hub and recorded by the gateway (``hubs.status``);
* presence: the hub's heartbeat and its last will (a cut link) reach ``hubs``/``devices``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from edge.config import HubConfig, Limits, MqttConfig
from edge.outbox import Outbox, OutboxFull
from edge.uplink import Uplink
from tests.fixtures.fix_mqtt import Mosquitto
from tests.fixtures.fix_proxy import TcpProxy
from tests.gateway.ingest_support import HUB, prepare_db, reading, running
from wire import contract

pytestmark = pytest.mark.integration


def wire(r: dict[str, Any]) -> contract.Reading:
    return msgspec.convert(r, contract.Reading)


def hub_config(tmp_path: Path, url: str, **limits: Any) -> HubConfig:
    return HubConfig(
        hub_id=HUB,
        mqtt=MqttConfig(url=url, keepalive=5),
        data_dir=str(tmp_path / "hub"),
        heartbeat_seconds=limits.pop("heartbeat", 0.3),
        limits=Limits(
            receipt_timeout_seconds=0.5,
            receipt_timeout_max_seconds=1.0,
            reconnect_max_seconds=0.5,
            **limits,
        ),
    )


@contextlib.asynccontextmanager
async def hub_running(uplink: Uplink) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    try:
        await asyncio.wait_for(uplink.connected.wait(), 10)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_rejected_readings_reach_the_hubs_dead_letters_and_are_not_resent(
    fresh_db: str, mosquitto: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = mosquitto()
    good = [reading(1), reading(2)]
    bad = [
        (reading(3, device="oxi-9"), f"device: 'oxi-9' is not bound on hub '{HUB}'"),
        (
            reading(4, value="101"),
            "value: 101 % is outside the plausible range 0-100 % for MDC 150456 (SpO2)",
        ),
        (reading(5, mdc=123456), "mdc: unknown MDC code 123456"),
    ]
    box = Outbox(tmp_path / "hub" / "outbox.sqlite3")
    sent = [good[0], *(b for b, _ in bad), good[1]]
    box.add([wire(r) for r in sent])
    uplink = Uplink(hub_config(tmp_path, broker.url), box)
    async with running(fresh_db, broker.url) as h, hub_running(uplink):
        await until(lambda: box.stats().pending == 0)
        await asyncio.sleep(1.5)  # > the receipt timeout: nothing comes back
        stored = h.query("SELECT key FROM readings ORDER BY time")
        central = h.query("SELECT hub_id, topic, reading_key, reason FROM dead_letters ORDER BY id")
        seen = h.ingester.counters.readings
    local = [(d.key, d.reason, d.source) for d in box.dead_letters()]
    assert stored == [(r["key"],) for r in good]
    assert central == [(HUB, contract.readings_topic(HUB), r["key"], why) for r, why in bad]
    assert local == [(r["key"], why, "gateway") for r, why in bad]
    assert seen == len(sent)  # each reading crossed once: no re-send of the rejected ones
    assert uplink.state.counters["uplink.readings_sent"] == len(sent)
    assert uplink.state.counters["uplink.rejected"] == len(bad)
    box.close()


async def test_full_outbox_is_reported_and_recorded_centrally(
    fresh_db: str, mosquitto: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = mosquitto()
    prepare_db(fresh_db)
    box = Outbox(tmp_path / "hub" / "outbox.sqlite3", max_rows=10, soft_fraction=0.8)
    box.add([wire(reading(100 + i, kind="continuous")) for i in range(4)])
    spot = 0
    with pytest.raises(OutboxFull):
        while spot < 20:
            box.add([wire(reading(spot))])
            spot += 1
    full = box.stats()
    assert full == contract.OutboxState(
        pending=10, bytes=full.bytes, dropped_continuous=4, full=True
    )
    assert spot == 10  # every spot reading that did not fit was refused, none dropped
    # one status on connect (heartbeat far away), published before any ingester runs
    uplink = Uplink(hub_config(tmp_path, broker.url, heartbeat=3600), box)
    async with hub_running(uplink), running(fresh_db, broker.url, prepare=False) as h:
        await until(lambda: box.stats().pending == 0)
        reported = h.query("SELECT state, status FROM hubs WHERE hub_id = %s", (HUB,))
        stored = h.query("SELECT count(*) FROM readings WHERE kind = 'spot'")
    # the clean stop publishes "offline" with the drained outbox; read it with the next run
    async with running(fresh_db, broker.url, prepare=False) as h:
        await until(lambda: h.ingester.counters.status_updates >= 1)
        after = h.query("SELECT state, status -> 'outbox' FROM hubs WHERE hub_id = %s", (HUB,))
    state, status = reported[0]
    assert state == "online"
    assert isinstance(status, dict)
    assert status["outbox"] == {
        "pending": 10,
        "bytes": full.bytes,
        "dropped_continuous": 4,
        "full": True,
    }
    assert stored == [(10,)]
    assert after == [
        ("offline", {"pending": 0, "bytes": 0, "dropped_continuous": 4, "full": False})
    ]
    box.close()


async def test_heartbeat_and_last_will_update_presence(
    fresh_db: str, mosquitto: Callable[..., Mosquitto], tmp_path: Path, tcp_proxy: type[TcpProxy]
) -> None:
    broker = mosquitto()
    proxy = tcp_proxy(broker.url)
    box = Outbox(tmp_path / "hub" / "outbox.sqlite3")
    uplink = Uplink(hub_config(tmp_path, proxy.url()), box)
    seen_at = datetime.now(UTC).replace(microsecond=123000)
    uplink.state.seen("oxi-1", seen_at)

    async with running(fresh_db, broker.url) as h:

        def hub_row() -> tuple[Any, ...]:
            return h.query("SELECT state, last_seen FROM hubs WHERE hub_id = %s", (HUB,))[0]

        async def state_becomes(want: str) -> None:
            deadline = asyncio.get_running_loop().time() + 15
            while (await asyncio.to_thread(hub_row))[0] != want:
                assert asyncio.get_running_loop().time() < deadline, f"hub never {want}"
                await asyncio.sleep(0.05)

        async with hub_running(uplink):
            await state_becomes("online")
            first = hub_row()[1]
            device = h.query("SELECT last_seen FROM devices WHERE device_id = 'oxi-1'")
            await asyncio.sleep(0.8)  # heartbeats every 0.3 s advance last_seen
            assert hub_row()[1] > first
            assert proxy.cut() == 1  # no DISCONNECT: the broker publishes the will
            await state_becomes("offline")
            status = h.query("SELECT status FROM hubs WHERE hub_id = %s", (HUB,))[0][0]
            await state_becomes("online")  # the hub reconnects by itself
    assert device == [(seen_at,)]
    assert isinstance(status, dict) and (status["hub"], status["state"]) == (HUB, "offline")
    assert json.loads(json.dumps(status["devices"])) == [
        {
            "device": "oxi-1",
            "last_seen": seen_at.isoformat().replace("+00:00", "Z"),
            "battery": None,
        }
    ]
    box.close()


async def test_reading_too_large_for_any_message_is_kept_locally_not_resent(
    fresh_db: str, mosquitto: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    """Found by this audit: the gateway dead-letters an oversized payload without a receipt (it
    does not parse it), so the hub re-sent such a reading forever (one 256 KiB central dead
    letter per receipt timeout). The hub now keeps it in its own dead letters and sends the rest."""
    broker = mosquitto()
    huge, ok = reading(1, device_time="x" * contract.MAX_PAYLOAD_BYTES), reading(2)
    box = Outbox(tmp_path / "hub" / "outbox.sqlite3")
    box.add([wire(huge), wire(ok)])
    size = len(contract.encode(wire(huge)))
    uplink = Uplink(hub_config(tmp_path, broker.url), box)
    async with running(fresh_db, broker.url) as h, hub_running(uplink):
        await until(lambda: box.stats().pending == 0)
        await asyncio.sleep(1.5)  # > the receipt timeout
        stored = h.query("SELECT key FROM readings")
        central = h.query("SELECT count(*) FROM dead_letters")
        seen = h.ingester.counters.readings
    assert stored == [(ok["key"],)]
    assert central == [(0,)]
    assert seen == 1
    assert [(d.key, d.reason) for d in box.dead_letters()] == [
        (
            huge["key"],
            f"reading: {size} bytes cannot be sent in a message under the gateway's "
            f"limit of {contract.MAX_PAYLOAD_BYTES} bytes",
        )
    ]
    assert uplink.state.counters["uplink.oversized"] == 1
    box.close()
