"""What every device session shares: the environment, and the record sink.

:class:`RecordSink` is the one path from a decoded record (or a decode error) to the outbox:

* decode errors are counted and logged with the source/field/offset (never values) and the raw
  bytes are kept in the outbox database's local dead-letter table for support;
* kinds that are not clinical readings (intermediate, control solution, device state) are counted
  and not forwarded; a battery level goes into the hub status;
* records of a shared device's unmapped or unknown (0xFF) user are kept for review (dead letters),
  counted in the hub status and never forwarded;
* continuous samples are downsampled to at most one record per second per device (the first
  record of each wall-clock second of the hub's receive time is kept, the rest are counted as
  ``records.downsampled``): the gateway stores and alerts on 1 Hz oximetry, a 75 Hz serial stream
  would only fill the outbox;
* everything else becomes readings and is committed to the outbox in one transaction, *before* the
  session returns from the notify handler (so before an indication is confirmed).
  :class:`edge.outbox.OutboxFull` propagates: the transfer is not confirmed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from drivers.codes import MDC_ATTR_VAL_BATT_CHARGE
from drivers.driver import Driver, Framer
from drivers.errors import DecodeError
from drivers.observation import Kind, Measurement
from edge.clock import HubClockCache
from edge.config import UNKNOWN_DEVICE_USER, DeviceBinding, HubConfig
from edge.outbox import Outbox, OutboxFull
from edge.readings import RecordContext, to_readings
from edge.status import HubState
from wire import contract
from wire.contract import HubClock

log = logging.getLogger(__name__)

#: Errors a buggy decoder might raise besides DecodeError; kept as dead letters like bad bytes
#: (a decoder bug must not crash the session, and the bytes are what support needs to fix it).
DECODER_BUG_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    ArithmeticError,
)


class DriverLookup(Protocol):
    """The part of :mod:`drivers.registry` the edge uses (the module itself satisfies it)."""

    def by_characteristic(self, uuid_any_form: str) -> Driver | None: ...

    def get(self, key: str) -> Driver: ...

    def match_usb(self, vid: int, pid: int) -> list[Driver]: ...


def default_lookup() -> DriverLookup:
    from drivers import registry

    return registry


@dataclass
class SessionEnv:
    """Shared by all sessions of one agent."""

    config: HubConfig
    outbox: Outbox
    state: HubState
    lookup: DriverLookup
    hub_clock: Callable[[], HubClock] = field(default_factory=HubClockCache)
    on_new: Callable[[], None] = lambda: None  # the uplink's wake()
    now_ns: Callable[[], int] = time.time_ns
    #: device -> last wall-clock second a continuous record was kept (downsampling)
    last_second: dict[str, int] = field(default_factory=dict)


class RecordSink:
    """Decoded records of one device on one connection -> outbox."""

    def __init__(
        self, env: SessionEnv, binding: DeviceBinding, *, clock_set_by_hub: bool = False
    ) -> None:
        self.env = env
        self.binding = binding
        self.device = binding.device_id
        self.clock_set_by_hub = clock_set_by_hub
        self.last_activity = time.monotonic()
        self.records = 0  # decoded records handled on this connection
        self.stored = 0  # new readings committed on this connection

    def decode(self, driver: Driver, data: bytes) -> Measurement | DecodeError:
        try:
            return driver.decode(data)
        except DecodeError as exc:
            return exc
        except DECODER_BUG_ERRORS as exc:
            self.env.state.count("decode.decoder_bug")
            return DecodeError(driver.key, "?", 0, f"decoder raised {type(exc).__name__}")

    def handle_bytes(self, driver: Driver, data: bytes, framer: Framer | None = None) -> int:
        """Decode ``data`` (whole record, or a chunk for ``framer``) and store the results."""
        items: Sequence[Measurement | DecodeError]
        items = framer.feed(data) if framer is not None else [self.decode(driver, data)]
        return sum(self.handle(item, raw=data) for item in items)

    def handle(
        self,
        item: Measurement | DecodeError,
        *,
        raw: bytes,
        state: Mapping[str, str] | None = None,
    ) -> int:
        """Store one record; return the number of new readings. ``state`` (e.g. the RACP last
        sequence) is committed in the same transaction, whether or not the record is forwarded.
        Raises OutboxFull (nothing committed)."""
        env = self.env
        self.last_activity = time.monotonic()
        if isinstance(item, DecodeError):
            self._dead_letter(item, raw)
            return 0
        self.records += 1
        m = item
        env.state.seen(self.device)
        readings = []
        held: contract.HeldRecord | None = None
        if m.kind is Kind.DEVICE:
            self._device_record(m)
        elif m.kind in (Kind.INTERMEDIATE, Kind.CONTROL):
            env.state.count(f"records.{m.kind}")
        else:
            patient = self.binding.patient_for(m.user_id)
            ns = env.now_ns()
            if patient is None:
                held = self._unattributed(m, raw, ns)
            elif m.kind is Kind.CONTINUOUS and not self._keep_continuous(ns):
                env.state.count("records.downsampled")
            else:
                ctx = RecordContext(
                    device=self.device,
                    patient=patient,
                    received_at=datetime.fromtimestamp(ns / 1e9, UTC),
                    received_ns=ns,
                    clock_set_by_hub=self.clock_set_by_hub,
                    tz=env.config.tz,
                    hub_clock=env.hub_clock(),
                )
                readings = to_readings(m, ctx)
        if not readings and not state and held is None:
            return 0
        try:
            if held is not None and env.outbox.add_held([held]):
                env.on_new()  # sent to the gateway for review, like a reading
            new = env.outbox.add(readings, state=state)
        except OutboxFull:
            env.state.count("outbox.refused")
            log.error("%s: outbox full; record not confirmed (the device keeps it)", self.device)
            raise
        if readings:
            env.state.count("records.forwarded")
            env.state.count("readings.new", new)
            env.state.count("readings.duplicate", len(readings) - new)
            self.stored += new
            if new:
                env.on_new()
        return new

    def _unattributed(self, m: Measurement, raw: bytes, ns: int) -> contract.HeldRecord:
        """A record that belongs to no known patient: never a reading of anyone. It is kept in
        the local dead letters, counted in the hub status (``records.unknown_user`` /
        ``records.unmapped_user``) and returned as a held record, which goes to the gateway
        for review (``held_records``, a technical alert for the hub's organisation)."""
        unknown = m.user_id == UNKNOWN_DEVICE_USER
        self.env.state.count("records.unknown_user" if unknown else "records.unmapped_user")
        reason = (
            "unknown device user (0xFF): not attributed to any patient; kept for review"
            if unknown
            else f"device user {m.user_id} is not mapped to a patient; kept for review"
        )
        log.info("%s: record of an unattributed device user kept for review", self.device)
        self.env.outbox.dead_letter(
            raw, reason, device=self.device, source=m.source, field="user id"
        )
        return contract.HeldRecord(
            key=contract.held_key(self.device, m.source, raw),
            device=self.device,
            source=m.source,
            reason="unknown-user" if unknown else "unmapped-user",
            received_at=datetime.fromtimestamp(ns / 1e9, UTC),
            raw=raw.hex(),
            user_id=m.user_id,
            values=[
                contract.HeldValue(
                    mdc=o.mdc,
                    value=None if o.quantity.value is None else str(o.quantity.value),
                    unit=o.quantity.unit,
                    special=None if o.quantity.special is None else str(o.quantity.special),
                )
                for o in m.observations
            ],
        )

    def _keep_continuous(self, ns: int) -> bool:
        second = ns // 1_000_000_000
        if self.env.last_second.get(self.device) == second:
            return False
        self.env.last_second[self.device] = second
        return True

    def _device_record(self, m: Measurement) -> None:
        self.env.state.count("records.device")
        for obs in m.observations:
            v = obs.quantity.value
            if obs.mdc == MDC_ATTR_VAL_BATT_CHARGE and v is not None:
                self.env.state.battery(self.device, int(v))

    def _dead_letter(self, err: DecodeError, raw: bytes) -> None:
        self.env.state.count("decode.errors")
        log.warning(
            "%s: undecodable record from %s: field %r at offset %d",
            self.device,
            err.source,
            err.field,
            err.offset,
        )
        self.env.outbox.dead_letter(
            raw,
            err.reason,
            device=self.device,
            source=err.source,
            field=err.field,
            offset=err.offset,
        )
