"""The benchmark's workload: households, readings and pre-encoded MQTT messages.

Every household is one patient with one home hub and one PLX pulse oximeter streaming continuous
records at 1 Hz (each record is three readings: SpO2, pulse rate, pulse amplitude index). The
readings are made by the real code path of a hub: the record's bytes are encoded by
:mod:`drivers.pulse_oximeter`, decoded by :mod:`drivers.registry` and turned into wire readings by
:func:`edge.readings.to_readings`, so payloads, keys and field values are exactly what a hub sends
(about 520 bytes of JSON per reading).

Values are physiological and never breach the alert rule (SpO2 < 90 %), except the *probe*
readings of the latency runs, which do (SpO2 85 %), one per probe patient.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from drivers import registry
from drivers.observation import Measurement
from drivers.pulse_oximeter import PlxContinuousRecord, SpO2PR
from edge.readings import RecordContext, to_readings
from gateway.alerting.templates import Programme
from gateway.fleet import Device, Fleet, Hub, Org, Patient, Rule, Webhook
from wire import contract

#: when the benchmark's programmes take effect (before any generated reading)
PROGRAMMES_FROM = datetime(2020, 1, 1, tzinfo=UTC)

SPO2_MDC: Final = 150456
READINGS_PER_RECORD: Final = 3
PROBE_SPO2: Final = Decimal(85)
_TZ = ZoneInfo("Europe/Copenhagen")


@dataclass(frozen=True, slots=True)
class Household:
    patient: str
    hub: str
    device: str


@dataclass(frozen=True, slots=True)
class Message:
    """One pre-encoded ReadingsMessage."""

    topic: str
    msg_id: str
    payload: bytes
    readings: int
    probe: bool = False  # carries a reading that breaches the patient's rule


@dataclass(frozen=True, slots=True)
class Workload:
    households: tuple[Household, ...]
    #: per hub, its encoded readings in time order (the order the hub's outbox would send them)
    readings: dict[str, list[bytes]]
    #: keys of probe readings (a rule breach), in order
    probe_keys: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.readings.values())

    def all_readings(self) -> Iterator[tuple[str, bytes]]:
        """(hub, reading) for every reading, hub by hub."""
        for hub, rs in self.readings.items():
            for r in rs:
                yield hub, r


def households(n: int, prefix: str = "bench") -> tuple[Household, ...]:
    return tuple(
        Household(
            f"{prefix}-p{i:05d}",
            f"{prefix}-h{i:05d}",
            f"C0:FE:{i >> 16 & 0xFF:02X}:{i >> 8 & 0xFF:02X}:{i & 0xFF:02X}:01",
        )
        for i in range(n)
    )


def fleet_for(homes: Sequence[Household], programmes: Sequence[Programme] = ()) -> Fleet:
    """One hospital following every patient, a webhook (so that alerts create deliveries), each
    household's hub and device, and an SpO2 < 90 % rule per patient (every reading is evaluated).
    Patients and hubs shared by several households (devices) are declared once."""
    patients = list(dict.fromkeys(h.patient for h in homes))
    hubs = list(dict.fromkeys(h.hub for h in homes))
    return Fleet(
        orgs=[Org(id="bench-hospital", name="Bench hospital", kind="hospital")],
        patients=[
            Patient(
                id=p,
                orgs=["bench-hospital"],
                programmes=list(programmes),
                programmes_from=PROGRAMMES_FROM,
            )
            for p in patients
        ],
        hubs=[Hub(id=h, org="bench-hospital") for h in hubs],
        devices=[
            Device(id=h.device, hub=h.hub, patient=h.patient, model="bench device") for h in homes
        ],
        rules=[
            Rule(
                key="spo2-low",
                patient=p,
                mdc=SPO2_MDC,
                op="<",
                threshold=Decimal(90),
                unit="%",
                severity="critical",
                description="SpO2 below 90 %",
            )
            for p in patients
        ],
        webhooks=[Webhook(org="bench-hospital", url="https://hospital.invalid/telehub-hook")],
    )


class _Decoder:
    """Decoded PLX records by their bytes (there are only a few hundred distinct value sets)."""

    def __init__(self) -> None:
        self._cache: dict[bytes, Measurement] = {}

    def record(self, spo2: Decimal, pulse: Decimal, pai: Decimal) -> Measurement:
        data = PlxContinuousRecord(SpO2PR(spo2, pulse), pulse_amplitude_index=pai).encode()
        m = self._cache.get(data)
        if m is None:
            m = self._cache[data] = registry.decode("2a5f", data)
        return m


def make_workload(
    homes: Sequence[Household],
    records_per_home: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    probes: int = 0,
) -> Workload:
    """``records_per_home`` one-second records per household (3 readings each), starting at
    ``start`` (default: one day ago, so every reading lands in the current partitions).

    ``probes``: the first ``probes`` households get one breaching record (SpO2 85 %) each, spread
    evenly over the records' time span, and the probe readings' keys are returned in time order.
    """
    rng = random.Random(seed)
    dec = _Decoder()
    t0 = start or (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    base_ns = int(t0.timestamp()) * 1_000_000_000
    by_hub: dict[str, list[bytes]] = {}
    probe_at: list[tuple[int, str]] = []
    for i, home in enumerate(homes):
        out: list[bytes] = []
        probe_record = i * records_per_home // probes if i < probes else -1
        for k in range(records_per_home):
            spo2 = PROBE_SPO2 if k == probe_record else Decimal(rng.randint(93, 99))
            pulse = Decimal(rng.randint(58, 96))
            pai = Decimal(rng.randint(10, 90)) / 10
            # distinct receive instants across households (the key's time token)
            ns = base_ns + k * 1_000_000_000 + i * 1_000
            at = datetime.fromtimestamp(ns / 1e9, UTC)
            ctx = RecordContext(home.device, home.patient, at, ns, False, _TZ, "synchronized")
            for r in to_readings(dec.record(spo2, pulse, pai), ctx):
                out.append(contract.encode(r))
                if k == probe_record and r.mdc == SPO2_MDC:
                    probe_at.append((k * len(homes) + i, r.key))
        by_hub[home.hub] = out
    probe_at.sort()
    return Workload(tuple(homes), by_hub, tuple(k for _, k in probe_at))


def messages(workload: Workload, per_message: int, *, limit: int | None = None) -> list[Message]:
    """The workload as ReadingsMessages of ``per_message`` readings, interleaved hub by hub in
    round-robin (as live hubs would publish), each hub's readings in order. ``limit``: stop after
    that many readings."""
    probe = set(workload.probe_keys)
    per_hub: list[tuple[str, list[bytes]]] = list(workload.readings.items())
    out: list[Message] = []
    sent = 0
    offset = 0
    while per_hub and (limit is None or sent < limit):
        remaining: list[tuple[str, list[bytes]]] = []
        for hub, rs in per_hub:
            chunk = rs[offset : offset + per_message]
            if not chunk:
                continue
            if limit is not None and sent + len(chunk) > limit:
                chunk = chunk[: limit - sent]
            msg_id = uuid.uuid4().hex
            payload = contract.encode_readings(hub, msg_id, chunk)
            has_probe = bool(probe) and any(contract.decode_reading(r).key in probe for r in chunk)
            out.append(
                Message(contract.readings_topic(hub), msg_id, payload, len(chunk), has_probe)
            )
            sent += len(chunk)
            if limit is not None and sent >= limit:
                break
            if len(rs) > offset + per_message:
                remaining.append((hub, rs))
        per_hub = remaining
        offset += per_message
    return out
