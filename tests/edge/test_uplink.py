"""The uplink against a real Mosquitto: receipts, re-sends, last will, fairness."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edge.config import HubConfig, Limits, MqttConfig
from edge.outbox import Outbox
from edge.uplink import Uplink
from tests.edge.util import FakeGateway, TcpProxy, keys_of, reading
from wire import contract
from wire.mqtt import MqttClient, MqttSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def broker_url(mosquitto: type) -> str:
    """A private broker per test: other suites' chaos on the shared broker cannot interfere."""
    return str(mosquitto().url)


def hub_config(tmp_path: Path, url: str, protocol: str = "5", **limits: object) -> HubConfig:
    return HubConfig(
        hub_id=f"test-{uuid.uuid4().hex[:10]}",
        mqtt=MqttConfig(url=url, protocol=protocol),  # type: ignore[arg-type]
        data_dir=str(tmp_path),
        heartbeat_seconds=0.3,
        limits=Limits(**limits),  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    try:
        await asyncio.wait_for(uplink.connected.wait(), 10)
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


def _in_flight_keys(box: Outbox) -> set[str]:
    rows = box._db.execute("SELECT key FROM outbox WHERE msg_id IS NOT NULL").fetchall()
    return {str(r[0]) for r in rows}


def all_keys(box: Outbox) -> set[str]:
    """Queued and in-flight keys."""
    return {r.key for r in box.pending(10_000)} | _in_flight_keys(box)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_rows_deleted_only_after_the_receipt(
    tmp_path: Path, broker_url: str, protocol: str
) -> None:
    cfg = hub_config(tmp_path, broker_url, protocol)
    box = Outbox(tmp_path / "o.db")
    sent = [reading(f"k{i}") for i in range(5)]
    box.add(sent)
    uplink = Uplink(cfg, box)
    gw = FakeGateway(broker_url, cfg.hub_id, auto=False, protocol=protocol)
    async with gw, running(uplink):
        msg = await gw.next()
        assert msg.hub == cfg.hub_id and msg.v == contract.SCHEMA_VERSION
        assert [contract.decode_reading(r) for r in msg.readings] == sent
        await asyncio.sleep(0.3)  # no receipt yet: everything still in the outbox
        assert all_keys(box) == {r.key for r in sent}
        assert box.in_flight(msg.msg_id) == [r.key for r in sent]
        await gw.receipt(
            msg, stored=["k0", "k1", "k2"], duplicates=["k3"], rejected=[("k4", "unknown mdc")]
        )
        await until(lambda: box.stats().pending == 0)
    assert [(d.key, d.reason, d.raw) for d in box.dead_letters()] == [
        ("k4", "unknown mdc", contract.encode(sent[4]))
    ]
    assert uplink.state.counters["uplink.stored"] == 3
    assert uplink.state.counters["uplink.duplicates"] == 1
    assert uplink.state.counters["uplink.rejected"] == 1
    box.close()


async def test_message_rejected_whole_is_not_resent(tmp_path: Path, broker_url: str) -> None:
    """A receipt with a null key rejects the whole message: every reading becomes a local dead
    letter (the gateway could not read them), none is re-sent."""
    cfg = hub_config(tmp_path, broker_url, receipt_timeout_seconds=0.5)
    box = Outbox(tmp_path / "o.db")
    sent = [reading("a"), reading("b")]
    box.add(sent)
    uplink = Uplink(cfg, box)
    async with FakeGateway(broker_url, cfg.hub_id, auto=False) as gw, running(uplink):
        msg = await gw.next()
        await gw.receipt(msg, stored=[], rejected=[(None, "payload: malformed JSON")])
        await until(lambda: box.stats().pending == 0)
        with pytest.raises(TimeoutError):
            await gw.next(1.5)  # past the receipt timeout: nothing re-sent
    assert sorted((d.key, d.reason) for d in box.dead_letters()) == [
        ("a", "payload: malformed JSON"),
        ("b", "payload: malformed JSON"),
    ]
    assert all_keys(box) == set()
    box.close()


async def test_receipt_timeout_resends_same_keys(tmp_path: Path, broker_url: str) -> None:
    cfg = hub_config(tmp_path, broker_url, receipt_timeout_seconds=0.5)
    box = Outbox(tmp_path / "o.db")
    box.add([reading("a"), reading("b")])
    uplink = Uplink(cfg, box)
    async with FakeGateway(broker_url, cfg.hub_id, auto=False) as gw, running(uplink):
        first = await gw.next()
        second = await gw.next(5)  # no receipt for the first: re-sent after the timeout
        assert keys_of(second) == keys_of(first) == ["a", "b"]
        assert second.msg_id != first.msg_id
        await gw.receipt(first)  # a late receipt for the first message still counts
        await until(lambda: box.stats().pending == 0)
    assert uplink.state.counters["uplink.receipt_timeouts"] >= 1
    box.close()


async def test_broker_restart_resends_in_flight(tmp_path: Path, mosquitto: type) -> None:
    broker = mosquitto()
    cfg = hub_config(tmp_path, broker.url)
    box = Outbox(tmp_path / "o.db")
    box.add([reading("a"), reading("b")])
    uplink = Uplink(cfg, box)
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    try:
        async with FakeGateway(broker.url, cfg.hub_id, auto=False) as gw:
            await asyncio.wait_for(uplink.connected.wait(), 10)
            first = await gw.next()
            assert keys_of(first) == ["a", "b"]
            broker.kill()  # before any receipt
            await until(lambda: not uplink.connected.is_set())
            assert _in_flight_keys(box) == {"a", "b"} and box.stats().pending == 2
        broker.start()
        async with FakeGateway(broker.url, cfg.hub_id, auto=True) as gw2:
            await asyncio.wait_for(uplink.connected.wait(), 30)
            again = await gw2.next(30)
            assert keys_of(again) == ["a", "b"] and again.msg_id != first.msg_id
            await until(lambda: box.stats().pending == 0)
        assert uplink.state.counters["uplink.requeued_on_connect"] == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        box.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_receipts_sent_while_offline_arrive_on_reconnect(
    tmp_path: Path, broker_url: str, protocol: str
) -> None:
    cfg = hub_config(tmp_path, broker_url, protocol)
    box = Outbox(tmp_path / "o.db")
    box.add([reading("a")])
    async with FakeGateway(broker_url, cfg.hub_id, auto=False) as gw:
        async with running(Uplink(cfg, box)):
            msg = await gw.next()
        # the hub is gone (persistent session on the broker): the gateway answers now
        await gw.receipt(msg)
        await asyncio.sleep(0.2)
        assert box.stats().pending == 1
        uplink = Uplink(cfg, box)
        async with running(uplink):
            await until(lambda: box.stats().pending == 0)
    assert uplink.state.counters["uplink.receipts"] == 1
    assert len(gw.received) == 1  # applied before anything was re-sent
    box.close()


async def _status_subscriber(url: str, hub: str) -> MqttClient:
    sub = MqttClient(MqttSettings.from_url(url), f"status-{uuid.uuid4().hex[:8]}")
    await sub.connect()
    await sub.subscribe(contract.status_topic(hub), qos=1)
    return sub


async def _next_status(sub: MqttClient, timeout: float = 10.0) -> contract.HubStatus:
    async with asyncio.timeout(timeout):
        async for m in sub.messages():
            return contract.decode_status(m.payload)
    raise AssertionError("unreachable")


async def test_online_heartbeat_and_last_will_when_connection_cut(
    tmp_path: Path, broker_url: str
) -> None:
    proxy = await TcpProxy(broker_url).start()
    cfg = hub_config(tmp_path, proxy.url)
    box = Outbox(tmp_path / "o.db")
    box.add([reading("a")])
    uplink = Uplink(cfg, box)
    uplink.state.seen("AA:BB:CC:DD:EE:01")
    sub = await _status_subscriber(broker_url, cfg.hub_id)
    try:
        async with running(uplink):
            online = await _next_status(sub)
            assert (online.hub, online.state) == (cfg.hub_id, "online")
            assert online.outbox is not None and online.outbox.pending == 1
            assert [d.device for d in online.devices] == ["AA:BB:CC:DD:EE:01"]
            beat = await _next_status(sub, 3)  # heartbeat every 0.3 s
            assert beat.state == "online" and beat.at > online.at
            proxy.cut()  # no DISCONNECT: the broker publishes the will
            async with asyncio.timeout(10):
                while (s := await _next_status(sub)).state != "offline":
                    pass
            assert s.hub == cfg.hub_id
            # the hub reconnects by itself and says so
            async with asyncio.timeout(15):
                while (s := await _next_status(sub)).state != "online":
                    pass
        # clean stop: the hub publishes offline itself (retained)
        late = await _status_subscriber(broker_url, cfg.hub_id)
        retained = await _next_status(late)
        assert retained.state == "offline"
        await late.disconnect()
    finally:
        await sub.disconnect()
        await proxy.close()
        box.close()


async def test_backlog_alternates_with_live_readings(tmp_path: Path, broker_url: str) -> None:
    cfg = hub_config(tmp_path, broker_url, batch_size=10, in_flight_messages=1)
    box = Outbox(tmp_path / "o.db")
    box.add([reading(f"b{i:02d}") for i in range(30)])  # backlog from before the connect
    uplink = Uplink(cfg, box)
    async with FakeGateway(broker_url, cfg.hub_id, auto=False) as gw, running(uplink):
        first = await gw.next()
        box.add([reading(f"l{i}") for i in range(5)])  # live readings arrive meanwhile
        uplink.wake()
        gw.auto = True
        await gw.receipt(first)
        await until(lambda: box.stats().pending == 0)
    assert [keys_of(m) for m in gw.received] == [
        [f"b{i:02d}" for i in range(0, 10)],
        [f"l{i}" for i in range(5)],
        [f"b{i:02d}" for i in range(10, 20)],
        [f"b{i:02d}" for i in range(20, 30)],
    ]
    box.close()
