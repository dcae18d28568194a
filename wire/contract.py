"""The edge <-> gateway contract: MQTT topics and versioned JSON payloads (docs/protocol.md).

msgspec Structs: strict, typed validation at the boundary, fast enough for the ingest hot path and
light enough for a Raspberry Pi-class hub.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "telehub/v1"

#: Largest readings payload the gateway accepts (bytes); larger ones are dead-lettered.
MAX_PAYLOAD_BYTES: Final = 256 * 1024


def readings_topic(hub: str) -> str:
    return f"{TOPIC_ROOT}/hubs/{hub}/readings"


def status_topic(hub: str) -> str:
    return f"{TOPIC_ROOT}/hubs/{hub}/status"


def receipts_topic(hub: str) -> str:
    return f"{TOPIC_ROOT}/hubs/{hub}/receipts"


READINGS_FILTER: Final = f"{TOPIC_ROOT}/hubs/+/readings"
STATUS_FILTER: Final = f"{TOPIC_ROOT}/hubs/+/status"


def hub_of_topic(topic: str) -> str | None:
    """The hub id in ``telehub/v1/hubs/<hub>/<leaf>``, or None if the topic is not ours."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "telehub" or parts[1] != "v1" or parts[2] != "hubs":
        return None
    return parts[3] or None


# Clock provenance -------------------------------------------------------------------------------
#: Where a reading's ``time`` came from.
#:  device           the device's own timestamp, device clock set by this hub on connect
#:  device-unverified the device's own timestamp; the hub could not set or check its clock
#:  device-unset     the device says its clock is not set (PLX flag), sent an unknown date or an
#:                   implausible one (a reset clock);
#:                   ``time`` is then the hub receive time; ``device_time`` keeps the raw fields
#:  hub              the device sends no timestamp (continuous streams): the hub's receive time
TimeSource = Literal["device", "device-unverified", "device-unset", "hub"]
#: Whether the hub's own clock was synchronised (NTP) when it stamped ``received_at``.
HubClock = Literal["synchronized", "unsynchronized", "unknown"]


class Reading(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """One metric of one device record. See docs/protocol.md for every field."""

    key: str  # idempotency key, computed once at the edge (idempotency_key())
    device: str  # device identity: BLE address or serial/USB identity
    patient: str  # patient the device is bound to on this hub
    source: str  # decoder that produced it: "2a35", "nonin-df2", ...
    kind: str  # "spot" | "continuous"
    mdc: int  # MDC metric code
    loinc: list[str] = []
    unit: str  # UCUM
    mdc_unit: int
    value: str | None  # decimal as text, precision kept ("2.00"); None iff special
    special: str | None = None  # "nan", "nres", "+inf", "-inf", "reserved", ...
    orig_value: str | None = None  # as the device sent it, when converted
    orig_unit: str | None = None
    panel: int | None = None  # compound code, e.g. 150020 (BP panel)
    group: str  # shared by the metrics of one record (e.g. sys/dia/mean/pulse)
    flags: list[str] = []  # status flags of the record and metric
    time: datetime  # effective time (UTC): see time_source
    time_source: TimeSource
    device_time: str | None = None  # device's own local timestamp, ISO without zone, or raw
    received_at: datetime  # hub receive time (UTC)
    hub_clock: HubClock = "unknown"
    sequence: int | None = None  # device sequence number, if any
    user_id: int | None = None  # device user index, if any
    raw: str  # hex of the record's bytes


class ReadingsMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the edge publishes on ``readings_topic(hub)``.

    ``readings`` is decoded reading by reading on the gateway (msgspec.Raw), so one bad reading is
    dead-lettered while the good ones in the same message are stored.
    """

    v: int
    hub: str
    msg_id: str
    sent_at: datetime
    readings: list[msgspec.Raw]
    #: records that belong to no patient (``HeldRecord``), kept for review; receipted by key
    #: like readings. Optional: a hub with none leaves it out.
    held: list[msgspec.Raw] = []


#: Why a record is held instead of being a reading:
#:  unknown-user   a shared device's "unknown user" (User ID 0xFF): a guest, never a patient
#:  unmapped-user  a device user index the hub's binding maps to no patient
#:  queue-overflow a BLE notification the hub's queue had no room for, kept undecoded
HeldReason = Literal["unknown-user", "unmapped-user", "queue-overflow"]


class HeldValue(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded metric of a held record (no patient): for the reviewer's eyes."""

    mdc: int
    value: str | None
    unit: str
    special: str | None = None


class HeldRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """A device record the hub could attribute to no patient (docs/protocol.md, "HeldRecord")."""

    key: str  # BLAKE2b-128 of "held-<device>-<source>-<raw hex>[-<rx ns>]", hex
    device: str
    source: str  # decoder key, or the characteristic UUID for an undecoded notification
    reason: HeldReason
    received_at: datetime
    raw: str  # hex of the exact bytes
    user_id: int | None = None
    values: list[HeldValue] = []


def held_key(device: str, source: str, raw: bytes, received_ns: int | None = None) -> str:
    """The held record's key: the same record re-sent by the device gets the same key; an
    undecoded notification (no record identity) is told apart by its receive time."""
    text = f"held-{device}-{source}-{raw.hex()}"
    if received_ns is not None:
        text += f"-{received_ns}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class Rejection(msgspec.Struct, frozen=True):
    key: str | None  # the reading's key if it could be read, else None
    reason: str


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """Sent by the gateway on ``receipts_topic(hub)`` after the database commit."""

    v: int = SCHEMA_VERSION
    msg_id: str
    stored: list[str] = []  # keys committed now
    duplicates: list[str] = []  # keys that were already stored (also safe to delete)
    rejected: list[Rejection] = []  # keys the gateway will never accept: stop resending


class OutboxState(msgspec.Struct, frozen=True, kw_only=True):
    pending: int = 0
    bytes: int = 0
    dropped_continuous: int = 0
    full: bool = False


class DeviceSeen(msgspec.Struct, frozen=True):
    device: str
    last_seen: datetime
    battery: int | None = None  # Battery Level (%) when the device reports one


class HubStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Retained on ``status_topic(hub)``: heartbeat while online, last will when gone."""

    v: int = SCHEMA_VERSION
    hub: str
    state: Literal["online", "offline"]
    at: datetime
    outbox: OutboxState | None = None
    devices: list[DeviceSeen] = []
    counters: dict[str, int] = {}  # the hub's own counters (decode errors, dropped, unmapped, ...)


# Idempotency ------------------------------------------------------------------------------------
def idempotency_key(
    *, device: str, patient: str, mdc: int, time_token: str, supplemental: str = ""
) -> str:
    """The PHD IG conditional-create recipe, hashed to a fixed width.

    ``<device>-<patient>-<MDC type>-<device timestamp or sequence>-<supplemental>``: built from the
    device's own timestamp (or sequence number), never the corrected time, so that a device that
    re-sends its memory (A&D) produces the same key again. For records with no device timestamp the
    edge passes its own receive time, fixed once when the reading enters the outbox.
    """
    text = f"{device}-{patient}-{mdc}-{time_token}-{supplemental}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_encoder = msgspec.json.Encoder()
_message_decoder = msgspec.json.Decoder(ReadingsMessage)
_reading_decoder = msgspec.json.Decoder(Reading)
_held_decoder = msgspec.json.Decoder(HeldRecord)
_receipt_decoder = msgspec.json.Decoder(Receipt)
_status_decoder = msgspec.json.Decoder(HubStatus)


def encode(obj: msgspec.Struct) -> bytes:
    return _encoder.encode(obj)


def encode_readings(
    hub: str, msg_id: str, readings: list[bytes], held: list[bytes] | None = None
) -> bytes:
    """Build a ReadingsMessage from already-encoded readings (the outbox stores them encoded)
    and, if any, already-encoded held records."""
    msg = ReadingsMessage(
        v=SCHEMA_VERSION,
        hub=hub,
        msg_id=msg_id,
        sent_at=datetime.now(UTC),
        readings=[msgspec.Raw(r) for r in readings],
        held=[msgspec.Raw(h) for h in held or ()],
    )
    return _encoder.encode(msg)


def decode_held(raw: bytes | msgspec.Raw) -> HeldRecord:
    return _held_decoder.decode(raw)


def decode_message(payload: bytes) -> ReadingsMessage:
    return _message_decoder.decode(payload)


def decode_reading(raw: bytes | msgspec.Raw) -> Reading:
    return _reading_decoder.decode(raw)


def decode_receipt(payload: bytes) -> Receipt:
    return _receipt_decoder.decode(payload)


def decode_status(payload: bytes) -> HubStatus:
    return _status_decoder.decode(payload)
