"""The MQTT side of the hub: outbox -> gateway, receipts -> outbox, status heartbeat.

* One connection at a time, reconnected with bounded exponential backoff (with jitter).
* Last will: retained ``HubStatus(state="offline")`` on ``status_topic(hub)``; on connect a retained
  ``online`` status, then a heartbeat every ``heartbeat_seconds`` with the outbox state, devices
  last seen and counters. A clean stop publishes ``offline`` itself (a clean DISCONNECT does not
  fire the will).
* Receipts: subscribed at QoS 1 with a persistent session (``clean_start=False`` + session expiry on
  MQTT 5, ``clean_session=False`` on 3.1.1), so receipts sent while the hub was away arrive on
  reconnect. They are acknowledged (manual PUBACK) only after the outbox transaction that applies
  them has committed.
* Publishing: ``ReadingsMessage`` of up to ``batch_size`` readings (and under the gateway's payload
  limit), QoS 1, with up to ``in_flight_messages`` messages awaiting a receipt. A reading leaves
  the outbox only on a receipt (stored, duplicate, or rejected -> local dead letter).
* Re-sending: on every (re)connect all in-flight rows go back to the queue (same keys, new message
  ids). A message with no receipt after ``receipt_timeout_seconds`` is re-queued too; the timeout
  doubles on each expiry (up to ``receipt_timeout_max_seconds``) and resets on the next receipt, so
  a gateway that is down while the broker is up does not get the backlog re-queued every minute.
* Fairness: after a reconnect the rows that were already queued are the *backlog*; batches alternate
  between the oldest backlog rows and rows newer than the reconnect, so a long replay does not
  delay live readings (each stream stays in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass

import msgspec

from edge.config import HubConfig
from edge.outbox import HELD, Outbox, OutboxRow
from edge.status import HubState
from wire import contract
from wire.mqtt import MqttClient, MqttError, MqttSettings, Will

log = logging.getLogger(__name__)

#: Room left in a message for the envelope (hub id, msg id, timestamps, brackets, commas).
_ENVELOPE_BYTES = 4096
_PUBLISH_TIMEOUT = 10.0
_IDLE_POLL = 1.0


@dataclass(slots=True)
class _InFlight:
    keys: int
    sent: float  # monotonic
    timeout: float


class Uplink:
    def __init__(
        self,
        config: HubConfig,
        outbox: Outbox,
        state: HubState | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.state = state or HubState()
        m = config.mqtt
        self.settings = MqttSettings.from_url(
            m.url,
            protocol=m.protocol,
            ca_file=m.ca_file,
            cert_file=m.cert_file,
            key_file=m.key_file,
            keepalive=m.keepalive,
        )
        if m.username is not None:
            self.settings = MqttSettings(
                host=self.settings.host,
                port=self.settings.port,
                username=m.username,
                password=m.resolved_password(),
                tls=self.settings.tls,
                ca_file=m.ca_file,
                cert_file=m.cert_file,
                key_file=m.key_file,
                protocol=m.protocol,
                keepalive=m.keepalive,
            )
        # The client id is the hub id: the broker binds it to the hub's identity (dynamic
        # security for passwords; use_username_as_clientid with the certificate's CN).
        self.client_id = config.hub_id
        self.hub = config.hub_id
        lim = config.limits
        self._window = lim.in_flight_messages
        self._batch = lim.batch_size
        self._max_bytes = contract.MAX_PAYLOAD_BYTES - _ENVELOPE_BYTES
        self._base_timeout = lim.receipt_timeout_seconds
        self._max_timeout = lim.receipt_timeout_max_seconds
        self._timeout = self._base_timeout
        self._inflight: dict[str, _InFlight] = {}
        self._wake = asyncio.Event()
        self._backlog_upto = 0
        self._backlog_turn = True
        #: set while a session is up (subscribed, online status published); for tests and status
        self.connected = asyncio.Event()

    # -- called by the sessions --------------------------------------------------------------
    def wake(self) -> None:
        """New rows in the outbox: publish now instead of at the next poll."""
        self._wake.set()

    # -- main loop ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        delay = 1.0
        cap = self.config.limits.reconnect_max_seconds
        while not stop.is_set():
            client = self._client()
            try:
                await client.connect()
            except MqttError as exc:
                self.state.count("mqtt.connect_failed")
                log.warning(
                    "mqtt connect to %s:%d failed: %s", self.settings.host, self.settings.port, exc
                )
                await _sleep_unless(stop, delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, cap)
                continue
            delay = 1.0
            self.state.count("mqtt.connected")
            try:
                await self._session(client, stop)
            except MqttError as exc:
                log.warning("mqtt connection lost: %s", exc)
            finally:
                self.connected.clear()
                with contextlib.suppress(MqttError):
                    await client.disconnect()
            if not stop.is_set():
                await _sleep_unless(stop, random.uniform(0.2, 1.0))

    def _client(self) -> MqttClient:
        will = Will(
            contract.status_topic(self.hub),
            contract.encode(self.state.status(self.hub, "offline", None)),
            qos=1,
            retain=True,
        )
        return MqttClient(
            self.settings,
            self.client_id,
            clean_start=False,
            session_expiry=self.config.mqtt.session_expiry_seconds,
            manual_ack=True,
            will=will,
            max_inflight=max(self._window + 4, 20),
        )

    async def _session(self, client: MqttClient, stop: asyncio.Event) -> None:
        # Everything that was in flight on the last connection is sent again (same keys).
        requeued = self.outbox.requeue()
        if requeued:
            self.state.count("uplink.requeued_on_connect", requeued)
        self._inflight.clear()
        self._backlog_upto = self.outbox.max_seq()
        self._backlog_turn = True
        await client.subscribe(contract.receipts_topic(self.hub), qos=1)
        # Receipts the broker kept for us while we were away: apply before re-sending.
        while (msg := client.get_nowait()) is not None:
            self._on_message(client, msg.topic, msg.payload)
            client.ack(msg)
        await self._publish_status(client, "online")
        self.connected.set()
        log.info("hub %s online (outbox %d pending)", self.hub, self.outbox.stats().pending)
        tasks = {
            asyncio.create_task(self._receiver(client), name="uplink-receiver"),
            asyncio.create_task(self._publisher(client), name="uplink-publisher"),
            asyncio.create_task(self._heartbeat(client), name="uplink-heartbeat"),
            asyncio.create_task(stop.wait(), name="uplink-stop"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            exc = None if t.cancelled() else t.exception()
            if exc is not None:
                raise exc
        if stop.is_set():
            with contextlib.suppress(MqttError):
                await self._publish_status(client, "offline")

    # -- status ---------------------------------------------------------------------------------
    async def _publish_status(self, client: MqttClient, state: str) -> None:
        status = self.state.status(
            self.hub, "online" if state == "online" else "offline", self.outbox.stats()
        )
        await client.publish(
            contract.status_topic(self.hub),
            contract.encode(status),
            qos=1,
            retain=True,
            timeout=_PUBLISH_TIMEOUT,
        )

    async def _heartbeat(self, client: MqttClient) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            await self._publish_status(client, "online")

    # -- receipts -------------------------------------------------------------------------------
    async def _receiver(self, client: MqttClient) -> None:
        async for msg in client.messages():
            self._on_message(client, msg.topic, msg.payload)
            client.ack(msg)

    def _on_message(self, client: MqttClient, topic: str, payload: bytes) -> None:
        if topic != contract.receipts_topic(self.hub):
            self.state.count("uplink.unexpected_messages")
            return
        try:
            receipt = contract.decode_receipt(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.state.count("uplink.bad_receipts")
            log.warning("undecodable receipt (%d bytes): %s", len(payload), exc)
            return
        done = [*receipt.stored, *receipt.duplicates]
        rejected = [(r.key, r.reason) for r in receipt.rejected if r.key is not None]
        whole = [r.reason for r in receipt.rejected if r.key is None]
        if whole:
            # the message was rejected as a whole (key null): none of its readings is re-sent
            named = {*done, *(k for k, _ in rejected)}
            rejected += [
                (k, whole[0]) for k in self.outbox.in_flight(receipt.msg_id) if k not in named
            ]
        removed = self.outbox.apply_receipt(done, rejected)
        self.state.count("uplink.receipts")
        self.state.count("uplink.stored", len(receipt.stored))
        self.state.count("uplink.duplicates", len(receipt.duplicates))
        if receipt.rejected:
            self.state.count("uplink.rejected", len(receipt.rejected))
            log.warning(
                "gateway rejected %d reading(s) of message %s (kept as local dead letters)",
                len(receipt.rejected),
                receipt.msg_id,
            )
        entry = self._inflight.pop(receipt.msg_id, None)
        if entry is not None:
            # Rows of the message the receipt did not mention: send them again.
            leftover = self.outbox.requeue(receipt.msg_id)
            if leftover:
                self.state.count("uplink.requeued_unreceipted", leftover)
        self._timeout = self._base_timeout
        log.debug("receipt %s: %d removed", receipt.msg_id, removed)
        self._wake.set()

    # -- publishing -----------------------------------------------------------------------------
    async def _publisher(self, client: MqttClient) -> None:
        topic = contract.readings_topic(self.hub)
        while True:
            self._expire_in_flight()
            if len(self._inflight) >= self._window:
                await self._wait_wake(_IDLE_POLL)
                continue
            batch = self._next_batch()
            rows = self._drop_oversized(batch)
            if not rows:
                if not batch:
                    await self._wait_wake(_IDLE_POLL)
                continue
            msg_id = uuid.uuid4().hex
            self.outbox.mark_in_flight((r.seq for r in rows), msg_id)
            payload = contract.encode_readings(
                self.hub,
                msg_id,
                [r.payload for r in rows if r.kind != HELD],
                [r.payload for r in rows if r.kind == HELD],
            )
            self._inflight[msg_id] = _InFlight(len(rows), time.monotonic(), self._timeout)
            fut = client.publish_nowait(topic, payload, qos=1)
            fut.add_done_callback(_retrieve)
            self.state.count("uplink.messages")
            self.state.count("uplink.readings_sent", len(rows))
            if fut.done() and fut.exception() is not None:
                raise MqttError(f"publish failed: {fut.exception()}")

    def _next_batch(self) -> list[OutboxRow]:
        backlog = (0, self._backlog_upto)
        live = (self._backlog_upto, None)
        order = (backlog, live) if self._backlog_turn else (live, backlog)
        for after, upto in order:
            if upto is not None and upto <= after:
                continue
            rows = self.outbox.pending(
                self._batch, after=after, upto=upto, max_bytes=self._max_bytes
            )
            if rows:
                self._backlog_turn = upto is None  # next time, the other stream first
                return rows
        return []

    def _drop_oversized(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """A reading that alone cannot fit a message under the gateway's payload limit would be
        dead-lettered centrally without a receipt (the gateway does not parse an oversized
        payload) and re-sent forever: keep it in the local dead letters instead."""
        big = [r for r in rows if len(r.payload) > self._max_bytes]
        if not big:
            return rows
        self.outbox.apply_receipt(
            (),
            [
                (
                    r.key,
                    f"reading: {len(r.payload)} bytes cannot be sent in a message under the "
                    f"gateway's limit of {contract.MAX_PAYLOAD_BYTES} bytes",
                )
                for r in big
            ],
        )
        self.state.count("uplink.oversized", len(big))
        log.warning("%d reading(s) too large to send: moved to the local dead letters", len(big))
        return [r for r in rows if len(r.payload) <= self._max_bytes]

    def _expire_in_flight(self) -> None:
        now = time.monotonic()
        for msg_id, entry in list(self._inflight.items()):
            if now - entry.sent < entry.timeout:
                continue
            del self._inflight[msg_id]
            n = self.outbox.requeue(msg_id)
            self.state.count("uplink.receipt_timeouts")
            self._timeout = min(self._timeout * 2, self._max_timeout)
            log.warning(
                "no receipt for message %s in %.0fs: %d reading(s) re-queued",
                msg_id,
                entry.timeout,
                n,
            )

    async def _wait_wake(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()


def _retrieve(fut: asyncio.Future[None]) -> None:
    """PUBACK failures surface as a lost connection; don't warn about unretrieved exceptions."""
    if not fut.cancelled():
        fut.exception()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
