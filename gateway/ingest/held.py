"""Held records: device records a hub could attribute to no patient (docs/protocol.md,
"HeldRecord"), stored for review and never as readings.

A hub sends them in the ``held`` list of a readings message: a shared scale's guest measurement
(User ID 0xFF, ``unknown-user``), a device user the binding maps to no patient
(``unmapped-user``), a BLE notification the hub's queue had no room for, kept undecoded
(``queue-overflow``). Each is checked here (pure, :func:`check_held`), stored exactly once by its
key in ``held_records`` (``ON CONFLICT (key) DO NOTHING``) in the batch's transaction, receipted
like a reading (stored / duplicate / rejected), and counted into one live technical alert per
hub and kind (``technical_alerts``: ``held-records`` for records nobody owns, ``ble-overflow``
for notifications the hub could not queue) for the hub's organisation to review.

A held record never carries a patient id and is never attributed to one by the gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, get_args

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from gateway.ingest.model import Reject
from gateway.ingest.validate import key_of
from wire import contract

MAX_KEY_LENGTH: Final = 128
MAX_TEXT: Final = 200
MAX_VALUES: Final = 64
REASONS: Final = frozenset(get_args(contract.HeldReason))


class TechnicalKind(StrEnum):
    """What a technical alert is about (one live alert per hub and kind)."""

    HELD_RECORDS = "held-records"  # records no patient owns, waiting for review
    BLE_OVERFLOW = "ble-overflow"  # notifications the hub's queue could not take
    HUB_SILENT = "hub-silent"  # nothing heard from the hub (gateway.notify.hub_silence, A3)


def technical_kind(reason: str) -> TechnicalKind:
    return TechnicalKind.BLE_OVERFLOW if reason == "queue-overflow" else TechnicalKind.HELD_RECORDS


@dataclass(frozen=True, slots=True)
class HeldItem:
    """One valid held record of a hub (one ``held_records`` row)."""

    key: str
    hub_id: str
    device_id: str
    source: str
    reason: str
    user_id: int | None
    received_at: datetime
    raw: bytes
    values: tuple[dict[str, str | int | None], ...]


class _HeldIn(msgspec.Struct, frozen=True, kw_only=True):
    """contract.HeldRecord as the gateway reads it: ``reason`` as text, checked here with our
    own message (never a decoder's wording); unknown fields (``patient``!) are ignored."""

    key: str
    device: str
    source: str
    reason: str
    received_at: datetime
    raw: str
    user_id: int | None = None
    values: list[contract.HeldValue] = []


_decoder = msgspec.json.Decoder(_HeldIn)


def _bad(data: bytes, reason: str, key: str | None) -> Reject:
    return Reject("held", f"held: {reason}", key, data)


def check_held(
    raw: msgspec.Raw, hub: str, *, now: datetime, max_future_skew: timedelta
) -> HeldItem | Reject:
    """Decode and check one held record (code ``held``; the reason names the field)."""
    data = bytes(raw)
    if b"\\u0000" in data:
        return _bad(data, "contains a NUL character (\\u0000)", key_of(data))
    try:
        h = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        if isinstance(exc, msgspec.ValidationError):
            reason = "does not match the HeldRecord schema: " + str(exc).replace("`", "'")
        else:
            reason = "not a JSON object"
        return _bad(data, reason, key_of(data))
    if not 0 < len(h.key) <= MAX_KEY_LENGTH:
        return _bad(data, f"key: length {len(h.key)} is not within 1-{MAX_KEY_LENGTH}", None)
    for name, text in (("device", h.device), ("source", h.source)):
        if not 0 < len(text) <= MAX_TEXT:
            return _bad(data, f"{name}: length {len(text)} is not within 1-{MAX_TEXT}", h.key)
    if h.reason not in REASONS:
        return _bad(data, f"reason: unknown reason {h.reason!r}", h.key)
    if h.received_at.tzinfo is None or h.received_at.utcoffset() is None:
        return _bad(data, "received_at: has no UTC offset", h.key)
    if h.received_at > now + max_future_skew:
        return _bad(data, "received_at: in the future of the gateway clock", h.key)
    if h.user_id is not None and not 0 <= h.user_id <= 255:
        return _bad(data, f"user_id: {h.user_id} is not a device user index (0-255)", h.key)
    if len(h.values) > MAX_VALUES:
        return _bad(data, f"values: more than {MAX_VALUES}", h.key)
    try:
        raw_bytes = bytes.fromhex(h.raw)
    except ValueError:
        return _bad(data, "raw: not a hex string", h.key)
    if not raw_bytes:
        return _bad(data, "raw: empty", h.key)
    values = tuple(
        {"mdc": v.mdc, "value": v.value, "unit": v.unit, "special": v.special} for v in h.values
    )
    return HeldItem(
        key=h.key,
        hub_id=hub,
        device_id=h.device,
        source=h.source,
        reason=h.reason,
        user_id=h.user_id,
        received_at=h.received_at,
        raw=raw_bytes,
        values=values,
    )


async def store_held(
    conn: psycopg.AsyncConnection[Any], held: Sequence[HeldItem], now: datetime
) -> frozenset[str]:
    """Insert the batch's held records (inside its transaction); the keys stored now. Every hub
    and kind with a new record gets its live technical alert raised or counted up."""
    if not held:
        return frozenset()
    async with conn.cursor() as cur:
        await cur.execute(
            """INSERT INTO held_records (key, hub_id, device_id, source, reason, user_id,
                    received_at, raw, "values")
               SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                    %s::integer[], %s::timestamptz[], %s::bytea[], %s::jsonb[])
               ON CONFLICT (key) DO NOTHING RETURNING key, hub_id, reason""",
            (
                [h.key for h in held],
                [h.hub_id for h in held],
                [h.device_id for h in held],
                [h.source for h in held],
                [h.reason for h in held],
                [h.user_id for h in held],
                [h.received_at for h in held],
                [h.raw for h in held],
                [Jsonb(list(h.values)) for h in held],
            ),
        )
        rows = await cur.fetchall()
        counts: dict[tuple[str, TechnicalKind], int] = {}
        for _key, hub, reason in rows:
            k = (str(hub), technical_kind(str(reason)))
            counts[k] = counts.get(k, 0) + 1
        for (hub, kind), n in sorted(counts.items()):
            await cur.execute(
                """INSERT INTO technical_alerts (hub_id, kind, count, first_at, last_at, state)
                   VALUES (%s, %s, %s, %s, %s, 'open')
                   ON CONFLICT (hub_id, kind) WHERE state <> 'resolved'
                   DO UPDATE SET count = technical_alerts.count + EXCLUDED.count,
                                 last_at = EXCLUDED.last_at""",
                (hub, kind.value, n, now, now),
            )
    return frozenset(str(r[0]) for r in rows)
