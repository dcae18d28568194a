"""Glucose procedure: fetch stored records with the Record Access Control Point (reference §5.3).

1. Notifications on Glucose Measurement 0x2A18 (and Context 0x2A34 if present), indications on
   RACP 0x2A52; set the device clock.
2. Incremental sync ``01 03 01 <last+1>`` ("report records with sequence number >= last + 1") when
   the last sequence number of this device is known, else a full sync ``01 01``.
3. Records arrive as notifications; each one is committed to the outbox together with the new last
   sequence number (one transaction), so a power cut mid-transfer resumes where it stopped. Records
   that are not forwarded (control solution, unmapped user) advance the sequence too.
   A measurement flagged ``context-follows`` is held until its 0x2A34 context (same sequence
   number) arrives, then committed with the context's meal/tester/health flags; it is committed
   without them if the next measurement or the RACP response comes first.
4. The procedure ends with the RACP response ``06 00 01 <code>`` (1 success, 6 no records). If no
   response or record arrives for ``racp_timeout`` seconds, the hub writes abort ``03 00`` and
   drops the link (the sequence number is not advanced past what was committed).

Limitation: a device whose sequence numbers were reset ("delete all records", factory reset) below
the stored last sequence answers "no records" until it passes it again; support can clear the
``racp.last_seq.<device>`` state row to force a full sync (duplicates are removed by key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from drivers import racp
from drivers.errors import DecodeError
from drivers.glucose import GlucoseContext, apply_context
from drivers.observation import Measurement
from edge.ble.transport import TransportError
from edge.sessions.gatt import (
    GLUCOSE_CONTEXT,
    GLUCOSE_MEASUREMENT,
    RACP,
    GattConnection,
    SessionAborted,
    Subscription,
)

log = logging.getLogger(__name__)

STATE_PREFIX = "racp.last_seq."
MAX_SEQUENCE = 0xFFFF


def is_glucose(chars: set[str]) -> bool:
    return GLUCOSE_MEASUREMENT in chars and RACP in chars


def last_sequence_key(device: str) -> str:
    return STATE_PREFIX + device


class GlucoseProcedure:
    def __init__(self, conn: GattConnection) -> None:
        self.conn = conn
        self.device = conn.binding.device_id
        self.state_key = last_sequence_key(self.device)
        stored = conn.env.outbox.get_state(self.state_key)
        self.last_seq: int | None = int(stored) if stored is not None else None
        self.responses: asyncio.Queue[bytes] = asyncio.Queue(16)
        self._pending: Measurement | None = None
        self.records = 0

    # -- handlers (awaited by the transport, in arrival order) ----------------------------------
    async def on_measurement(self, sub: Subscription, data: bytes) -> None:
        assert sub.driver is not None
        self._flush()
        item = self.conn.sink.decode(sub.driver, bytes(data))
        if isinstance(item, DecodeError):
            self.conn.sink.handle(item, raw=bytes(data))
            return
        if "context-follows" in item.flags:
            self._pending = item
            return
        self._commit(item)

    async def on_context(self, sub: Subscription, data: bytes) -> None:
        try:
            ctx = GlucoseContext.parse(bytes(data))
        except DecodeError as exc:
            self._flush()
            self.conn.sink.handle(exc, raw=bytes(data))
            return
        pending = self._pending
        if pending is not None and pending.sequence == ctx.sequence_number:
            self._pending = None
            self._commit(apply_context(pending, ctx))
            return
        self.conn.env.state.count("glucose.orphan_context")
        self._flush()

    async def on_racp(self, sub: Subscription, data: bytes) -> None:
        try:
            self.responses.put_nowait(bytes(data))
        except asyncio.QueueFull:
            self.conn.env.state.count("racp.responses_dropped")

    def _flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._commit(pending)

    def _commit(self, m: Measurement) -> None:
        state = None
        new_last = self.last_seq
        if m.sequence is not None:
            new_last = m.sequence if self.last_seq is None else max(self.last_seq, m.sequence)
            state = {self.state_key: str(new_last)}
        self.conn.sink.handle(m, raw=m.raw, state=state)  # OutboxFull: last_seq not advanced
        self.last_seq = new_last
        self.records += 1

    # -- the procedure --------------------------------------------------------------------------
    def request(self) -> racp.RacpRequest:
        if self.last_seq is None or self.last_seq >= MAX_SEQUENCE:
            return racp.report_all()
        return racp.report_greater_or_equal(self.last_seq + 1)

    async def run(self, stop: asyncio.Event) -> str:
        conn = self.conn
        driver = conn.driver_for(GLUCOSE_MEASUREMENT)
        if driver is None:
            raise SessionAborted("no glucose driver in the registry")
        await conn.set_clock_early()
        if not await conn.subscribe(GLUCOSE_MEASUREMENT, driver, self.on_measurement):
            raise SessionAborted("cannot subscribe to Glucose Measurement")
        if GLUCOSE_CONTEXT in conn.chars:
            await conn.subscribe(GLUCOSE_CONTEXT, None, self.on_context)
        if not await conn.subscribe(RACP, None, self.on_racp):
            raise SessionAborted("cannot enable RACP indications")
        await conn.set_clock_late()
        await conn.read_battery()
        req = self.request()
        full = req.operator == racp.Operator.ALL_RECORDS
        log.info(
            "%s: RACP %s sync (last sequence %s)",
            self.device,
            "full" if full else "incremental",
            self.last_seq,
        )
        try:
            await conn.link.write(RACP, req.encode(), response=True, timeout=conn.timeout)
        except TransportError:
            self.conn.env.state.count("racp.request_failed")
            raise
        outcome = await self._await_response(stop)
        self._flush()
        log.info(
            "%s: RACP %s: %d record(s), %d new reading(s), last sequence %s",
            self.device,
            outcome,
            self.records,
            conn.sink.stored,
            self.last_seq,
        )
        return outcome

    async def _await_response(self, stop: asyncio.Event) -> str:
        conn = self.conn
        timeout = conn.env.config.ble.racp_timeout
        started = time.monotonic()
        gone = asyncio.ensure_future(conn.link.wait_disconnected())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while True:
                if conn.failed is not None:
                    raise SessionAborted(f"transfer refused: {type(conn.failed).__name__}")
                remaining = max(conn.sink.last_activity, started) + timeout - time.monotonic()
                if remaining <= 0:
                    conn.env.state.count("racp.timeouts")
                    await self._abort()
                    raise SessionAborted(f"no RACP response within {timeout:.0f}s: aborted")
                get = asyncio.ensure_future(self.responses.get())
                done, _ = await asyncio.wait(
                    {get, gone, stopped}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if get not in done:
                    get.cancel()
                    if stopped in done:
                        await self._abort()
                        return "stopped"
                    if gone in done:
                        self.conn.env.state.count("racp.disconnected")
                        raise SessionAborted("device disconnected during the RACP procedure")
                    continue
                data = get.result()
                outcome = self._response(data)
                if outcome is not None:
                    return outcome
        finally:
            for f in (gone, stopped):
                f.cancel()

    def _response(self, data: bytes) -> str | None:
        try:
            resp = racp.parse_response(data)
        except DecodeError as exc:
            self.conn.sink.handle(exc, raw=data)
            return None
        if isinstance(resp, racp.RacpNumberOfRecords):
            return None
        if resp.request_op_code != racp.OpCode.REPORT_STORED_RECORDS:
            return None
        if resp.success:
            return "complete"
        if resp.no_records:
            return "no-records"
        self.conn.env.state.count("racp.errors")
        raise SessionAborted(f"RACP request refused: {resp.code_name}")

    async def _abort(self) -> None:
        with contextlib.suppress(TransportError):
            await self.conn.link.write(
                RACP, racp.abort().encode(), response=True, timeout=self.conn.timeout
            )


async def run_glucose(conn: GattConnection, stop: asyncio.Event) -> str:
    return await GlucoseProcedure(conn).run(stop)
