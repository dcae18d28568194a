"""The ingest loop: MQTT in, PostgreSQL, receipts out, PUBACK after commit.

Connection: one psycopg AsyncConnection (autocommit; each batch is one explicit transaction) and
one :class:`wire.mqtt.MqttClient` with ``manual_ack=True``, ``clean_start=False``, a stable
client id and a session expiry (MQTT 5) or ``clean_session=False`` (3.1.1): the broker keeps
every unacknowledged QoS 1 message and redelivers it after a reconnect. Readings are subscribed
at QoS 1 on ``contract.READINGS_FILTER`` (as ``$share/<group>/...`` when a shared-subscription
group is configured under MQTT 5), statuses on ``contract.STATUS_FILTER`` (never shared: a shared
subscription gets no retained messages, and status updates are idempotent).

Adaptive batching, pipelined: wait for one message, then drain what is already queued
(``get_nowait``) and validate it. If no batch is being written, that is the next batch (under
light load one message: the lowest latency). While one is being written, the next one keeps
growing with whatever arrives, up to ``batch_max_readings`` readings, and is handed over when the
write ends: under load batches grow by themselves, and validating the next batch overlaps with the
database working on the current one (a second connection serves validation's lookups). There is
no timer. Batches are written, receipted and acknowledged strictly one after the other, in order.

Per batch:

1. validate every message (:mod:`gateway.ingest.validate`, :mod:`gateway.ingest.presence`) and
   check device bindings (:mod:`gateway.ingest.devices`);
2. store everything in one transaction (:mod:`gateway.ingest.store`) and commit;
3. only then publish one :class:`wire.contract.Receipt` per readings message on
   ``receipts_topic(hub)`` (QoS 1), and ``ack()`` every message of the batch: on the wire, the
   receipts precede the PUBACKs. The broker's PUBACKs of the receipts are awaited before the next
   batch's receipts go out (meanwhile the next batch is written), so at most one batch of
   receipts is unconfirmed; a refusal, or no PUBACK within ``RECEIPT_TIMEOUT``, ends the session.
   A receipt lost that way costs the hub a re-send after its receipt timeout, answered as
   duplicates: the readings are committed already.

If the database or the broker fails, nothing of the batch is acknowledged: the connections are
closed, re-opened with exponential backoff, the broker redelivers the unacknowledged messages, and
``ON CONFLICT (key, time) DO NOTHING`` makes the redelivery exact (already-committed readings are
reported as duplicates). If the database refuses the batch's data (a DataError/IntegrityError that
validation did not foresee), the batch is retried message by message and a message that fails on
its own is dead-lettered whole and acknowledged, so one poison message cannot block the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from gateway.db.context import enter_system, enter_system_sync, role_dsn
from gateway.db.migrate import ensure_partitions, migrate, run_lifecycle
from gateway.db.rls import AppRole
from gateway.ingest.devices import DeviceCache
from gateway.ingest.held import check_held
from gateway.ingest.model import (
    Counters,
    Reject,
    StoredBatch,
)
from gateway.ingest.outcome import Outcome, Settled, batch_write, settle
from gateway.ingest.presence import parse_status
from gateway.ingest.store import (
    StatusItem,
    WriteMode,
    WriteResult,
    prepare_session,
    write_batch,
)
from gateway.ingest.validate import (
    ParsedMessage,
    RejectedMessage,
    check_reading,
    key_of,
    parse_readings_message,
)
from gateway.settings import GatewaySettings
from wire import contract
from wire.mqtt import Message, MqttClient, MqttError, MqttSettings

log = logging.getLogger(__name__)

OnStored = Callable[[StoredBatch], None]

#: Readings validated in one go while a batch is being written (then the writer gets a turn).
VALIDATE_CHUNK = 100
#: Seconds the broker has to acknowledge a batch's receipts.
RECEIPT_TIMEOUT = 10.0

#: Errors after which the session is torn down and re-established (nothing acknowledged).
RECONNECT_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, MqttError, TimeoutError)
#: Errors meaning the database refused the data itself (poison isolation, see module doc).
DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


def _leaf(topic: str) -> str:
    return topic.rsplit("/", 1)[-1]


class Ingester:
    """The central ingester; :meth:`run` until ``stop`` is set. Counters in :attr:`counters`."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        on_stored: OnStored | None = None,
        migrate_schema: bool = True,
    ) -> None:
        self.settings = settings
        self.on_stored = on_stored
        self.migrate_schema = migrate_schema
        self.counters = Counters()
        self.cache = DeviceCache(settings.device_cache_refresh)
        self.write_mode = WriteMode()
        self._receipts: tuple[asyncio.Future[None], float] | None = None
        self.connected = False
        self.last_batch_at: datetime | None = None
        self._migrated = False
        self._session_was_up = False

    def health(self) -> dict[str, int | float | str | bool | None]:
        """Connection state, time of the last batch and the counters (for /health, metrics)."""
        out: dict[str, int | float | str | bool | None] = {
            "connected": self.connected,
            "last_batch_at": self.last_batch_at.isoformat() if self.last_batch_at else None,
        }
        out.update(self.counters.snapshot())
        return out

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Ingest until ``stop`` is set, reconnecting to the database and the broker with
        exponential backoff (``reconnect_min`` .. ``reconnect_max`` seconds)."""
        stop = stop or asyncio.Event()
        maintenance = asyncio.create_task(self._maintenance(stop), name="telehub-partitions")
        delay = self.settings.reconnect_min
        try:
            while not stop.is_set():
                try:
                    await self._session(stop)
                except RECONNECT_ERRORS as exc:
                    self.connected = False
                    if isinstance(exc, MqttError):
                        self.counters.mqtt_errors += 1
                    else:
                        self.counters.db_errors += 1
                    if self._session_was_up:  # it had worked: start the backoff afresh
                        delay = self.settings.reconnect_min
                    log.warning(
                        "ingester session ended (%s: %s); reconnecting in %.1fs",
                        type(exc).__name__,
                        _short(exc),
                        delay,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    delay = min(delay * 2, self.settings.reconnect_max)
        finally:
            self.connected = False
            maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await maintenance

    async def _session(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._session_was_up = False
        if self.migrate_schema and not self._migrated:
            await asyncio.to_thread(migrate, s.database_url)
            self._migrated = True
        timeout = max(1, int(s.db_timeout))
        dsn = role_dsn(s.database_url, AppRole.INGEST, s.ingest_database_url)
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=timeout)
        lookup = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=timeout
        )
        async with conn, lookup:
            async with asyncio.timeout(s.db_timeout):
                await enter_system(conn, "ingest")
                await enter_system(lookup, "ingest-lookup")
                await prepare_session(conn)
                await self.cache.load(lookup)
            # A shared-group member must not keep a long session: while it is gone for good the
            # broker would keep queueing its share. Clean start + a short expiry; what it had not
            # acknowledged gets no receipt and the hubs' outboxes send it again.
            shared = bool(s.shared_subscription_group) and s.mqtt_protocol == "5"
            expiry = s.shared_session_expiry if shared else s.session_expiry
            mqtt = MqttClient(
                MqttSettings.from_url(s.mqtt_url, protocol=s.mqtt_protocol, ca_file=s.mqtt_ca_file),
                s.ingester_client_id,
                clean_start=shared,
                session_expiry=int(expiry.total_seconds()),
                manual_ack=True,
                receive_maximum=s.receive_maximum,
                max_inflight=s.receive_maximum,
            )
            async with mqtt:
                readings_filter = contract.READINGS_FILTER
                if s.shared_subscription_group and s.mqtt_protocol == "5":
                    readings_filter = f"$share/{s.shared_subscription_group}/{readings_filter}"
                await mqtt.subscribe(readings_filter, qos=1)
                await mqtt.subscribe(contract.STATUS_FILTER, qos=1)
                self.connected = True
                self._session_was_up = True
                log.info("ingester connected (session present: %s)", mqtt.session_present)
                await self._consume(conn, lookup, mqtt, stop)
        self.connected = False

    async def _consume(
        self,
        conn: psycopg.AsyncConnection[Any],
        lookup: psycopg.AsyncConnection[Any],
        mqtt: MqttClient,
        stop: asyncio.Event,
    ) -> None:
        """Batches, pipelined (see the module docstring): ``conn`` writes, ``lookup`` serves
        validation while a write is in progress."""
        it = mqtt.messages().__aiter__()
        stopping = asyncio.ensure_future(stop.wait())
        nxt: asyncio.Future[Message] | None = None
        writer: asyncio.Task[StoredBatch] | None = None
        pending: list[Message] = []
        outcomes: list[Outcome] = []
        budget = self.settings.batch_max_readings
        try:
            while True:
                if writer is not None and writer.done():
                    writer.result()  # its error ends the session: nothing further is acked
                    writer = None
                if pending and writer is None:
                    writer = asyncio.create_task(self._finish(conn, mqtt, pending, outcomes))
                    pending, outcomes = [], []
                    budget = self.settings.batch_max_readings
                    await asyncio.sleep(0)  # the writer first: its COPY keeps the database busy
                chunk: list[Message] = []
                if nxt is not None and nxt.done():
                    chunk.append(nxt.result())
                    nxt = None
                room = min(budget, VALIDATE_CHUNK)
                budget -= room - self._drain(mqtt, chunk, room)
                if chunk:
                    async with asyncio.timeout(self.settings.db_timeout):
                        outcomes += await self._validate(lookup, chunk)
                    pending += chunk
                    if writer is not None:
                        # in slices, so that the writer's next statement is not held up
                        await asyncio.sleep(0)
                    continue
                if stop.is_set():
                    return
                waits: set[asyncio.Future[Any]] = {stopping}
                if writer is not None:
                    waits.add(writer)
                if budget > 0:
                    if nxt is None:
                        nxt = asyncio.ensure_future(anext(it))
                    waits.add(nxt)
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if nxt is not None and not nxt.done():
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, MqttError):
                    await nxt
            if writer is not None:
                # let the batch being written finish (commit, receipts, acks) unless it fails
                with contextlib.suppress(*RECONNECT_ERRORS):
                    await writer
            with contextlib.suppress(*RECONNECT_ERRORS):
                await self.confirm_receipts()

    def _drain(self, mqtt: MqttClient, batch: list[Message], budget: int) -> int:
        """Move already-received messages into ``batch`` while ``budget`` (readings) lasts;
        returns what is left of it."""
        # a cheap bound: readings messages are roughly counted by their "key" fields
        for m in batch:
            budget -= max(1, m.payload.count(b'"key"'))
        while budget > 0:
            more = mqtt.get_nowait()
            if more is None:
                break
            batch.append(more)
            budget -= max(1, more.payload.count(b'"key"'))
        return budget

    async def _maintenance(self, stop: asyncio.Event) -> None:
        """Create readings partitions ahead of time and (plain PostgreSQL) refresh the aggregates
        and apply retention, every ``partition_maintenance_interval``."""
        interval = self.settings.partition_maintenance_interval.total_seconds()
        while not stop.is_set():
            try:
                created = await asyncio.to_thread(self._ensure_partitions)
            except psycopg.Error as exc:  # retried at the next interval
                log.warning("partition maintenance failed: %s", type(exc).__name__)
            else:
                if created:
                    log.info("created %d readings partitions", created)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def _ensure_partitions(self) -> int:
        with psycopg.connect(
            self.settings.database_url, autocommit=True, connect_timeout=10
        ) as conn:
            enter_system_sync(conn, "lifecycle")  # the owner: partitions, refresh, retention
            created = ensure_partitions(conn)
            run_lifecycle(conn)
            return created

    # -- one batch --------------------------------------------------------------------------------
    async def _validate(
        self, conn: psycopg.AsyncConnection[Any], messages: list[Message]
    ) -> list[Outcome]:
        now = datetime.now(UTC)
        skew = self.settings.max_future_skew
        out: list[Outcome] = []
        for m in messages:
            hub = contract.hub_of_topic(m.topic)
            leaf = _leaf(m.topic)
            if hub is None or leaf not in ("readings", "status"):
                o = Outcome(m, hub, "other")
                o.message_reject = Reject(
                    "topic",
                    f"topic: {m.topic!r} is not a telehub readings/status topic",
                    None,
                    m.payload[: contract.MAX_PAYLOAD_BYTES],
                )
                out.append(o)
                continue
            if leaf == "status":
                o = Outcome(m, hub, "status")
                st = parse_status(hub, m.payload)
                if isinstance(st, Reject):
                    o.message_reject = st
                elif st is not None:
                    o.status = StatusItem(m.topic, st)
                out.append(o)
                continue
            o = Outcome(m, hub, "readings")
            out.append(o)
            parsed = parse_readings_message(hub, m.payload)
            if isinstance(parsed, RejectedMessage):
                o.msg_id, o.message_reject = parsed.msg_id, parsed.reject
                o.message_keys = parsed.keys
                continue
            assert isinstance(parsed, ParsedMessage)
            o.msg_id = parsed.msg_id
            if not self.cache.known_hub(hub) and not await self.cache.hub_known(conn, hub):
                o.message_reject = Reject(
                    "hub-unknown", f"hub: unknown hub {hub!r}", None, m.payload
                )
                o.message_keys = tuple(
                    k for raw in (*parsed.readings, *parsed.held) if (k := key_of(raw))
                )
                continue
            for raw in parsed.held:
                h = check_held(raw, hub, now=now, max_future_skew=skew)
                if isinstance(h, Reject):
                    o.rejected.append(h)
                else:
                    o.held.append(h)
            bound = self.cache.bound
            for raw in parsed.readings:
                r = check_reading(raw, hub, now=now, max_future_skew=skew)
                if isinstance(r, Reject):
                    o.rejected.append(r)
                    continue
                if bound(hub, r.device_id) == r.patient_id:  # the cached binding: no await
                    o.accepted.append(r)
                    continue
                bad = await self.cache.check(conn, r)
                if bad is not None:
                    o.rejected.append(Reject(bad.code, bad.reason, bad.key, bytes(raw)))
                else:
                    o.accepted.append(r)
        return out

    async def _write(
        self, conn: psycopg.AsyncConnection[Any], outcomes: list[Outcome]
    ) -> WriteResult:
        async with asyncio.timeout(self.settings.db_timeout):
            return await write_batch(conn, batch_write(outcomes), self.write_mode)

    async def _write_isolating_poison(
        self, conn: psycopg.AsyncConnection[Any], outcomes: list[Outcome]
    ) -> list[tuple[list[Outcome], WriteResult]]:
        try:
            return [(outcomes, await self._write(conn, outcomes))]
        except DATA_ERRORS as exc:
            if len(outcomes) == 1:
                o = outcomes[0]
                self.counters.poison_messages += 1
                log.error(
                    "database refused a message from hub %s (%s); dead-lettering it",
                    o.hub,
                    exc.sqlstate,
                )
                reason = (
                    f"storage: the database refused this message ({exc.sqlstate}: {_short(exc)})"
                )
                keys = (
                    tuple(r.key for r in o.accepted)
                    + tuple(h.key for h in o.held)
                    + tuple(r.key for r in o.rejected if r.key)
                    + o.message_keys
                )
                poisoned = Outcome(
                    o.message,
                    o.hub,
                    o.kind,
                    o.msg_id,
                    message_reject=Reject(
                        "storage", reason, None, o.message.payload[: contract.MAX_PAYLOAD_BYTES]
                    ),
                    message_keys=keys,
                )
                return [([poisoned], await self._write(conn, [poisoned]))]
            log.warning(
                "database refused a batch of %d messages (%s); retrying one by one",
                len(outcomes),
                exc.sqlstate,
            )
        results: list[tuple[list[Outcome], WriteResult]] = []
        for o in outcomes:
            results.extend(await self._write_isolating_poison(conn, [o]))
        return results

    async def process(
        self, conn: psycopg.AsyncConnection[Any], mqtt: MqttClient, messages: list[Message]
    ) -> StoredBatch:
        """Validate, store (one transaction), then publish receipts and ack every message."""
        async with asyncio.timeout(self.settings.db_timeout):
            outcomes = await self._validate(conn, messages)
        return await self._finish(conn, mqtt, messages, outcomes)

    async def _finish(
        self,
        conn: psycopg.AsyncConnection[Any],
        mqtt: MqttClient,
        messages: list[Message],
        outcomes: list[Outcome],
    ) -> StoredBatch:
        """Store validated messages (one transaction), then receipts, then acks."""
        results = await self._write_isolating_poison(conn, outcomes)
        await self.confirm_receipts()  # the previous batch's: long since confirmed, as a rule

        # committed: counters, then receipts, then PUBACKs (in this order on the wire)
        settled = settle(results)
        self._count(messages, outcomes, settled)
        if settled.receipts:
            self._receipts = (
                mqtt.publish_many(settled.receipts),
                asyncio.get_running_loop().time() + RECEIPT_TIMEOUT,
            )
        for m in messages:
            mqtt.ack(m)
        self.last_batch_at = datetime.now(UTC)
        batch = StoredBatch(
            settled.stored, settled.duplicates, settled.dead, settled.alerts, settled.status_updates
        )
        if self.on_stored is not None:
            self.on_stored(batch)
        return batch

    async def confirm_receipts(self) -> None:
        """Wait for the broker's PUBACKs of the last batch's receipts; MqttError if it refused
        one or stayed silent for ``RECEIPT_TIMEOUT`` seconds since they were published."""
        if self._receipts is None:
            return
        fut, deadline = self._receipts
        try:
            await asyncio.wait_for(fut, max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError as exc:
            raise MqttError(f"no PUBACK for receipts within {RECEIPT_TIMEOUT:.0f}s") from exc
        finally:
            self._receipts = None

    def _count(self, messages: list[Message], outcomes: list[Outcome], s: Settled) -> None:
        c = self.counters
        c.batches += 1
        c.received += len(messages)
        c.readings += sum(o.n_readings for o in outcomes)
        c.stored += len(s.stored)
        c.held_stored += s.held_stored
        c.duplicates += len(s.duplicates)
        c.rejected += len(s.dead)
        c.receipts += len(s.receipts)
        c.status_updates += s.status_updates
        c.rule_unit_skipped += s.rule_unit_skipped
        c.alerts_raised += len([a for a in s.alerts if a.new])
        c.alerts_updated += len([a for a in s.alerts if not a.new])
        by_code = Counter((d.hub_id or "", d.reject.code) for d in s.dead)
        for (hub, code), n in sorted(by_code.items()):
            c.rejected_by_code[code] += n
            log.warning("dead-lettered %d from hub %s: %s", n, hub, code)
        log.debug(
            "batch: %d messages, %d stored, %d duplicates, %d rejected, %d alerts",
            len(messages),
            len(s.stored),
            len(s.duplicates),
            len(s.dead),
            len(s.alerts),
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


async def run_ingester(
    settings: GatewaySettings,
    *,
    stop: asyncio.Event | None = None,
    on_stored: OnStored | None = None,
    migrate_schema: bool = True,
) -> None:
    """Run the ingester until ``stop`` is set (forever if None), reconnecting with backoff.

    ``on_stored`` is called after each committed and acknowledged batch (it must not block).
    For counters and health, construct an :class:`Ingester` and call :meth:`Ingester.run`.
    """
    await Ingester(settings, on_stored=on_stored, migrate_schema=migrate_schema).run(stop)
