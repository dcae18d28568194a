"""Hub presence: the retained ``HubStatus`` messages on ``telehub/v1/hubs/<hub>/status``.

A hub publishes ``state = "online"`` heartbeats (with its outbox state and the devices it saw) and
leaves a last will with ``state = "offline"``, which the broker publishes when the hub vanishes.
Each valid status updates ``hubs.state`` and ``hubs.status`` (the whole payload, jsonb);
heartbeats also advance ``hubs.last_seen`` (to the status time, never past the gateway clock) and
``devices.last_seen`` of the devices listed. The will's ``at`` is the time the will was set, not
when the hub vanished, so an offline status leaves ``last_seen`` alone. Messages are applied in
arrival order (the broker retains only the latest, so the last one applied is the current state).

An empty retained payload (a cleared retained message) is ignored. Invalid statuses and statuses
for hubs the database does not know are dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from gateway.ingest.model import Reject
from gateway.ingest.validate import utf8_error_at
from wire import contract

_NUL_ESCAPE = b"\\u0000"


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    hub: str
    state: str
    at: datetime
    payload: str  # the JSON as received (valid, NUL-free)
    devices: tuple[tuple[str, datetime], ...]


def parse_status(topic_hub: str, payload: bytes) -> StatusUpdate | Reject | None:
    """A status update, a rejection, or None for an empty (retained-clear) payload."""
    if not payload:
        return None
    if len(payload) > contract.MAX_PAYLOAD_BYTES:
        return Reject(
            "size",
            f"status: {len(payload)} bytes exceeds the limit of {contract.MAX_PAYLOAD_BYTES}",
            None,
            payload[: contract.MAX_PAYLOAD_BYTES],
        )
    if _NUL_ESCAPE in payload:
        return Reject("nul", "status: contains a NUL character (\\u0000)", None, payload)
    try:
        st = contract.decode_status(payload)
    except UnicodeDecodeError:
        return Reject(
            "utf8", f"status: not valid UTF-8 (byte {utf8_error_at(payload)})", None, payload
        )
    except msgspec.ValidationError as exc:
        reason = str(exc).replace("`", "'")
        return Reject("status-schema", f"status: {reason}", None, payload)
    except msgspec.DecodeError as exc:
        return Reject("json", f"status: malformed JSON: {exc}", None, payload)
    if st.v != contract.SCHEMA_VERSION:
        return Reject("version", f"v: unsupported schema version {st.v}", None, payload)
    if st.hub != topic_hub:
        return Reject(
            "hub-mismatch",
            f"hub: status hub {st.hub!r} does not match the topic's hub {topic_hub!r}",
            None,
            payload,
        )
    if st.at.tzinfo is None:
        return Reject("time", "at: has no UTC offset", None, payload)
    devices = tuple((d.device, d.last_seen) for d in st.devices if d.last_seen.tzinfo is not None)
    return StatusUpdate(st.hub, st.state, st.at, payload.decode(), devices)


async def apply_status(conn: psycopg.AsyncConnection[Any], update: StatusUpdate) -> bool:
    """Apply one status (inside the caller's transaction); False if the hub is unknown."""
    cur = await conn.execute(
        "UPDATE hubs SET state = %(state)s, status = %(payload)s::jsonb, "
        "last_seen = CASE WHEN %(state)s = 'online' "
        "  THEN GREATEST(last_seen, LEAST(%(at)s::timestamptz, now())) ELSE last_seen END "
        "WHERE hub_id = %(hub)s RETURNING hub_id",
        {"state": update.state, "payload": update.payload, "at": update.at, "hub": update.hub},
    )
    if await cur.fetchone() is None:
        return False
    if update.state == "online" and update.devices:
        async with conn.cursor() as c:
            await c.executemany(
                "UPDATE devices SET last_seen = GREATEST(last_seen, LEAST(%s::timestamptz, now())) "
                "WHERE hub_id = %s AND device_id = %s",
                [(seen, update.hub, device) for device, seen in update.devices],
            )
    return True
