"""Glucose meter: GLS 0x1808, Glucose Measurement 0x2A18 (notify), RACP 0x2A52 (write + indicate).

Records are kept with persistent sequence numbers (they survive :meth:`GlucoseMeter.power_cycle`;
"delete all records" resets them when ``reset_sequence_on_delete``). The central pulls them with
RACP (reference §5.3), answered exactly as a GLS server does:

* ``01 01`` all / ``01 02 01 <seq>`` <= / ``01 03 01 <seq>`` >= / ``01 04 01 <a> <b>`` range /
  ``01 05`` first / ``01 06`` last: the matching records as notifications in sequence order, then
  ``06 00 01 01``, or ``06 00 01 06`` when nothing matches.
* ``04 <operator> ...``: ``05 00 <count LE16>``.
* ``02 01``: delete all, ``06 00 02 01``.
* ``03 00``: abort; the running report stops and ``06 00 03 01`` follows (no other response).
* Errors: unknown op code ``06 00 <op> 02``; null operator where one is needed ``.. 03``;
  reserved operator ``.. 04``; bad operand ``.. 05``; user-facing-time filter ``.. 09``.
* ATT errors: 0x81 when RACP indications are not enabled, 0x80 when a procedure is running.

The meter advertises after a new reading until a central has had every record reported to it,
and disconnects after ``idle_timeout`` simulated seconds without a request (as meters do).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from drivers.errors import DecodeError
from drivers.glucose import MEASUREMENT_UUID, SERVICE, GlucoseRecord
from drivers.racp import (
    RACP_UUID,
    FilterType,
    OpCode,
    Operator,
    RacpNumberOfRecords,
    RacpRequest,
    RacpResponseCode,
    ResponseCode,
)
from edge.ble.transport import uuid16
from simulators.ble.gatt import AttError, AttErrorCode, Characteristic, Prop, Service
from simulators.ble.peripheral import Peripheral
from simulators.clock import DeviceClock, SimTime
from simulators.devices.common import Battery, DeviceInfo, TimeCharacteristics, TimeSync
from simulators.faults import Faults
from simulators.physiology import Physiology

GLUCOSE_FEATURE = uuid16(0x2A51)
#: Glucose Feature (16 bit): b0 low battery, b1 sensor malfunction, b2 sample size, b3 strip
#: insertion error detection supported. The drivers have no record for 0x2A51 (not a reading).
FEATURE_VALUE = (0b1111).to_bytes(2, "little")
CAPILLARY_WHOLE_BLOOD = 1
FINGER = 1
CONTROL_SOLUTION_TYPE = 10
CONTROL_SOLUTION_LOCATION = 4
RECORD_INTERVAL = 0.01  # simulated seconds between record notifications


class GlucoseMeter(Peripheral):
    """A GLS glucose meter with RACP."""

    def __init__(
        self,
        address: str,
        physiology: Physiology,
        *,
        world: SimTime | None = None,
        name: str | None = None,
        first_sequence: int = 1,
        time_offset: int | None = 0,
        time_sync: TimeSync = TimeSync.CURRENT_TIME,
        reset_sequence_on_delete: bool = True,
        idle_timeout: float = 30.0,
        battery_level: int | None = 80,
        clock: DeviceClock | None = None,
        faults: Faults | None = None,
    ) -> None:
        world = world if world is not None else SimTime()
        self.physiology = physiology
        self.clock = clock if clock is not None else DeviceClock(world)
        self.faults = faults if faults is not None else Faults()
        self.time_offset = time_offset
        self.reset_sequence_on_delete = reset_sequence_on_delete
        self.idle_timeout = idle_timeout
        self.first_sequence = first_sequence
        self.next_sequence = first_sequence
        self.records: list[GlucoseRecord] = []
        self._data: dict[int, bytes] = {}  # sequence -> bytes on air (faults applied)
        self._ordinals = 0
        self._reported_up_to: int | None = None  # highest sequence reported on the last link
        self._procedure: asyncio.Task[None] | None = None
        self._busy = False  # a procedure runs (ends when its final response is sent)
        self._abort = False
        self.requests: list[RacpRequest] = []
        self.time = TimeCharacteristics(
            self.clock, time_sync, lambda: None, lambda: self.faults.ignore_time_write
        )
        serial = address.replace(":", "")[-6:].upper()
        self.info = DeviceInfo("Simulated", "GLS meter", serial)
        chars = [
            Characteristic(MEASUREMENT_UUID, Prop.NOTIFY),
            Characteristic(GLUCOSE_FEATURE, Prop.READ, FEATURE_VALUE),
            Characteristic(RACP_UUID, Prop.WRITE | Prop.INDICATE, on_write=self._racp_write),
        ]
        if self.time.date_time is not None:
            chars.append(self.time.date_time)
        services = [Service(SERVICE, tuple(chars)), self.info.service()]
        cts = self.time.cts_service()
        if cts is not None:
            services.append(cts)
        self.battery = Battery(battery_level) if battery_level is not None else None
        if self.battery is not None:
            services.append(self.battery.service)
        super().__init__(
            address, name or f"Meter {serial}", services, world=world, advertised_services=[SERVICE]
        )

    # -- readings ---------------------------------------------------------------------------------
    def take_reading(self, mg_dl: Decimal | None = None, *, control: bool = False) -> GlucoseRecord:
        """A finger-stick test (``control``: a control-solution test, type 10 / location 4)."""
        n = self._ordinals
        self._ordinals += 1
        if self.faults.clock_reset_before == n:
            self.clock.reset()
        seq = self.next_sequence
        self.next_sequence = (self.next_sequence + 1) & 0xFFFF
        t = self.clock.device_time()
        if n in self.faults.invalid_readings:
            record = GlucoseRecord(seq, t, self.time_offset, status=("sample-size-insufficient",))
        else:
            value = mg_dl if mg_dl is not None else self.physiology.glucose_mg_dl(n)
            record = GlucoseRecord(
                seq,
                t,
                self.time_offset,
                value.scaleb(-5),  # mg/dL -> kg/L, exponent -5 as meters send it
                "kg/L",
                CONTROL_SOLUTION_TYPE if control else CAPILLARY_WHOLE_BLOOD,
                CONTROL_SOLUTION_LOCATION if control else FINGER,
            )
        self.records.append(record)
        self._data[seq] = self.faults.truncate(n, record.encode())
        if not self.connected:
            self.start_advertising()
        return record

    def power_cycle(self) -> None:
        """Batteries out and in: records and sequence numbers survive; the link does not."""
        if self.connection is not None:
            self.connection.close("power cycle")

    def delete_all(self) -> None:
        self.records.clear()
        self._data.clear()
        if self.reset_sequence_on_delete:
            self.next_sequence = self.first_sequence

    # -- connection -------------------------------------------------------------------------------
    def on_connect(self) -> None:
        self._reported_up_to = None
        self._abort = False
        self.spawn(self._idle_watch(), "idle")

    def on_disconnect(self, reason: str) -> None:
        self._procedure = None
        self._busy = False
        latest = self.records[-1].sequence_number if self.records else None
        if latest is not None and self._reported_up_to != latest:
            self.start_advertising()
        else:
            self.stop_advertising()

    async def _idle_watch(self) -> None:
        conn = self.connection
        seen = -1
        while conn is not None and conn.is_open:
            busy = self._busy
            if conn.activity == seen and not busy:
                await self.disconnect("idle timeout")
                return
            seen = conn.activity
            await self.world.sleep(self.idle_timeout)

    # -- RACP -------------------------------------------------------------------------------------
    async def _racp_write(self, data: bytes) -> None:
        if not self.is_subscribed(RACP_UUID):
            raise AttError(AttErrorCode.CCCD_IMPROPERLY_CONFIGURED, "RACP indications disabled")
        running = self._busy
        if not data:
            raise AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, "empty RACP write")
        if running and data[0] != OpCode.ABORT_OPERATION:
            raise AttError(AttErrorCode.PROCEDURE_ALREADY_IN_PROGRESS, "procedure running")
        try:
            request = RacpRequest.parse(data)
        except DecodeError:
            request = None
        if request is not None:
            self.requests.append(request)
        if request is not None and request.op_code == OpCode.ABORT_OPERATION:
            self.spawn(self._abort_procedure(request), "racp-abort")
            return
        self._busy = True
        self._procedure = self.spawn(self._run(data, request), "racp")

    async def _respond(self, op_code: int, code: ResponseCode) -> None:
        await self._final(RacpResponseCode(op_code, code).encode())

    async def _final(self, response: bytes) -> None:
        """The response that ends a procedure: the central may write again once it has it."""
        self._busy = False
        await self.indicate(RACP_UUID, response)

    async def _run(self, data: bytes, request: RacpRequest | None) -> None:
        if request is None:  # op code 0 or >= 5, or a lone octet
            code = ResponseCode.OP_CODE_NOT_SUPPORTED
            if len(data) < 2 and data[0] in (1, 2, 3, 4):
                code = ResponseCode.INVALID_OPERATOR
            await self._respond(data[0], code)
            return
        op = request.op_code
        if op == OpCode.DELETE_STORED_RECORDS:
            await self._delete(request)
            return
        selected = self._select(request)
        if isinstance(selected, ResponseCode):
            await self._respond(op, selected)
        elif op == OpCode.REPORT_NUMBER_OF_STORED_RECORDS:
            await self._final(RacpNumberOfRecords(len(selected)).encode())
        elif not selected:
            await self._respond(op, ResponseCode.NO_RECORDS_FOUND)
        else:
            await self._report(selected)

    async def _delete(self, request: RacpRequest) -> None:
        op = request.op_code
        if request.operator == Operator.NULL:
            await self._respond(op, ResponseCode.INVALID_OPERATOR)
        elif request.operator != Operator.ALL_RECORDS:
            await self._respond(op, ResponseCode.OPERATOR_NOT_SUPPORTED)
        elif request.operand:
            await self._respond(op, ResponseCode.INVALID_OPERAND)
        else:
            self.delete_all()
            await self._respond(op, ResponseCode.SUCCESS)

    def _select(self, request: RacpRequest) -> list[GlucoseRecord] | ResponseCode:
        """The records a report/count request selects, or the error response code."""
        operator = request.operator
        records = sorted(self.records, key=lambda r: r.sequence_number)
        if operator == Operator.NULL:
            return ResponseCode.INVALID_OPERATOR
        if operator > Operator.LAST_RECORD:
            return ResponseCode.OPERATOR_NOT_SUPPORTED
        if operator in (Operator.ALL_RECORDS, Operator.FIRST_RECORD, Operator.LAST_RECORD):
            if request.operand:
                return ResponseCode.INVALID_OPERAND
            if operator == Operator.ALL_RECORDS:
                return records
            return records[:1] if operator == Operator.FIRST_RECORD else records[-1:]
        if not request.operand:
            return ResponseCode.INVALID_OPERAND
        if request.operand[0] == FilterType.USER_FACING_TIME:
            return ResponseCode.OPERAND_NOT_SUPPORTED
        if request.operand[0] != FilterType.SEQUENCE_NUMBER:
            return ResponseCode.OPERAND_NOT_SUPPORTED
        try:
            bounds = request.sequence_operand()
        except DecodeError:
            return ResponseCode.INVALID_OPERAND
        if operator == Operator.LESS_THAN_OR_EQUAL_TO:
            return [r for r in records if r.sequence_number <= bounds[0]]
        if operator == Operator.GREATER_THAN_OR_EQUAL_TO:
            return [r for r in records if r.sequence_number >= bounds[0]]
        low, high = bounds
        if low > high:
            return ResponseCode.INVALID_OPERAND
        return [r for r in records if low <= r.sequence_number <= high]

    async def _report(self, records: list[GlucoseRecord]) -> None:
        for k, record in enumerate(records):
            if self.faults.disconnect_after is not None and k >= self.faults.disconnect_after:
                await self.disconnect("fault: disconnect mid-transfer")
                return
            if self.faults.cut_during == k:
                await self.disconnect("fault: link lost mid-transfer")
                return
            if self._abort:
                return
            data = self._data[record.sequence_number]
            for _ in range(2 if self.faults.duplicate else 1):
                await self.notify(MEASUREMENT_UUID, data)
            await self.world.sleep(RECORD_INTERVAL)
        if self._abort:
            return
        self._reported_up_to = max(self._reported_up_to or 0, records[-1].sequence_number)
        await self._respond(OpCode.REPORT_STORED_RECORDS, ResponseCode.SUCCESS)

    async def _abort_procedure(self, request: RacpRequest) -> None:
        op = request.op_code
        if request.operator != Operator.NULL:
            await self._respond(op, ResponseCode.INVALID_OPERATOR)
            return
        if request.operand:
            await self._respond(op, ResponseCode.INVALID_OPERAND)
            return
        procedure = self._procedure
        if procedure is not None and not procedure.done():
            self._abort = True
            await asyncio.wait({procedure})
            self._abort = False
        await self._respond(op, ResponseCode.SUCCESS)
