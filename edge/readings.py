"""Decoded device records -> wire readings (one :class:`wire.contract.Reading` per metric).

Idempotency (reference §7.1, the PHD IG conditional-create recipe): the key is built from the
device, the patient, the metric's MDC code, and a *time token* taken from the device's own record:

* its timestamp fields exactly as sent (``2024-05-17T14:03:09``, ``0000-00-00T14:03:09`` when the
  date is unknown, ``+<offset>m`` when a glucose time offset is present), never the corrected time,
  so a device that re-sends its memory (A&D) produces the same keys again;
* its sequence number (glucose: sequence *and* base time, reference §5.3 step 5);
* for records with neither (continuous streams): the hub's receive time in nanoseconds, fixed once
  here, before the reading enters the outbox.

The supplemental part is the decoder key, the metric's value and unit as sent (``120mm[Hg]``,
``nan%``) and, when a record carries the same MDC code twice, the occurrence number. The value is
there because a device timestamp is not always unique: a device that does not know the date sends
only the time of day, a clock reset restarts at 2000-01-01, two records can share a second. A
replay carries the same values, so it still gets the same keys; two different measurements that
share a timestamp do not collapse into one. The group id (shared by the metrics of one record) is
derived from the time token and the record's raw bytes.

Clock provenance (``time_source``, see :data:`wire.contract.TimeSource`):

=================== ============================================================================
device              device timestamp known and the hub set the device clock on this connection
device-unverified   device timestamp known, the hub could not set the clock
device-unset        the device says its clock is not set, the date is unknown, or the timestamp is
                    implausible (before 2015: a reset clock; over 26 h ahead of the hub): ``time``
                    is the hub's receive time, ``device_time`` keeps the raw fields
hub                 the record has no timestamp: ``time`` is the hub's receive time
=================== ============================================================================
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from drivers.observation import DeviceTime, Kind, Measurement, Quantity
from edge.clock import local_to_utc
from wire import contract
from wire.contract import HubClock, TimeSource

#: Kinds that become readings; the others are counted (battery level goes into the hub status).
FORWARDED_KINDS = frozenset({Kind.SPOT, Kind.CONTINUOUS})

#: A device timestamp before this cannot be a real measurement time: it is a clock that was reset
#: (A&D and PLX devices restart at 2000-01-01 or their factory date after a battery change).
PLAUSIBLE_SINCE = datetime(2015, 1, 1, tzinfo=UTC)
#: A device timestamp further ahead of the hub's receive time than this is a wrong clock too.
PLAUSIBLE_AHEAD = timedelta(hours=26)
FLAG_CLOCK_IMPLAUSIBLE = "device-clock-implausible"


@dataclass(frozen=True, slots=True)
class RecordContext:
    """What the hub knows about one record besides its bytes."""

    device: str
    patient: str
    received_at: datetime  # UTC, aware
    received_ns: int  # the same instant, ns since the epoch (time token for timestamp-less records)
    clock_set_by_hub: bool  # the hub wrote the device clock on this connection
    tz: ZoneInfo
    hub_clock: HubClock = "unknown"


def is_forwarded(m: Measurement) -> bool:
    return m.kind in FORWARDED_KINDS


def device_time_text(t: DeviceTime) -> str:
    """The device's timestamp fields as sent, ISO-like, no zone; unknown date fields stay 0."""
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hours:02d}:{t.minutes:02d}:{t.seconds:02d}"
    if t.offset_minutes:
        text += f"{t.offset_minutes:+d}m"
    return text


def value_token(q: Quantity) -> str:
    """The metric's value and unit as sent: ``120mm[Hg]``, ``nan/min``."""
    return f"{q.value if q.value is not None else q.special}{q.unit}"


def time_token(m: Measurement, received_ns: int) -> str:
    parts: list[str] = []
    if m.sequence is not None:
        parts.append(f"seq{m.sequence}")
    if m.timestamp is not None:
        parts.append(device_time_text(m.timestamp))
    if not parts:
        parts.append(f"rx{received_ns}")
    return "@".join(parts)


def effective_time(
    m: Measurement, ctx: RecordContext
) -> tuple[datetime, TimeSource, str | None, tuple[str, ...]]:
    """(time UTC, time_source, device_time, extra flags) for a record."""
    ts = m.timestamp
    if ts is None:
        return ctx.received_at, "hub", None, ()
    raw = device_time_text(ts)
    naive = ts.naive()
    if m.clock_set is False or naive is None:
        flags = ("device-clock-not-set",) if m.clock_set is False else ("device-date-unknown",)
        return ctx.received_at, "device-unset", raw, flags
    utc, tflags = local_to_utc(naive, ctx.tz)
    if utc < PLAUSIBLE_SINCE or utc > ctx.received_at + PLAUSIBLE_AHEAD:
        # A reset or wrong device clock (the record was stamped before this hub set it): the
        # device's time is kept as sent, the reading is placed at the hub's receive time.
        return ctx.received_at, "device-unset", naive.isoformat(), (FLAG_CLOCK_IMPLAUSIBLE,)
    source: TimeSource = "device" if ctx.clock_set_by_hub else "device-unverified"
    return utc, source, naive.isoformat(), tflags


def to_readings(m: Measurement, ctx: RecordContext) -> list[contract.Reading]:
    """One reading per observation of a forwarded record ([] for the other kinds)."""
    if not is_forwarded(m):
        return []
    token = time_token(m, ctx.received_ns)
    when, source, device_time, time_flags = effective_time(m, ctx)
    raw = m.raw.hex()
    group = contract.idempotency_key(
        device=ctx.device,
        patient=ctx.patient,
        mdc=0,
        time_token=token,
        supplemental=f"{m.source}:{raw}",
    )
    seen: Counter[int] = Counter()
    out: list[contract.Reading] = []
    for obs in m.observations:
        occurrence = seen[obs.mdc]
        seen[obs.mdc] += 1
        q = obs.quantity
        supplemental = f"{m.source}:{value_token(q)}"
        if occurrence:
            supplemental += f"#{occurrence}"
        orig = obs.original
        out.append(
            contract.Reading(
                key=contract.idempotency_key(
                    device=ctx.device,
                    patient=ctx.patient,
                    mdc=obs.mdc,
                    time_token=token,
                    supplemental=supplemental,
                ),
                device=ctx.device,
                patient=ctx.patient,
                source=m.source,
                kind=str(m.kind),
                mdc=obs.mdc,
                loinc=list(obs.loinc),
                unit=q.unit,
                mdc_unit=q.mdc_unit,
                value=None if q.value is None else str(q.value),
                special=None if q.special is None else str(q.special),
                orig_value=None if orig is None or orig.value is None else str(orig.value),
                orig_unit=None if orig is None else orig.unit,
                panel=obs.panel,
                group=group,
                flags=_merge(m.flags, obs.flags, time_flags),
                time=when,
                time_source=source,
                device_time=device_time,
                received_at=ctx.received_at,
                hub_clock=ctx.hub_clock,
                sequence=m.sequence,
                user_id=m.user_id,
                raw=raw,
            )
        )
    return out


def _merge(*groups: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for g in groups:
        for f in g:
            if f not in out:
                out.append(f)
    return out
