"""What validation made of each message of a batch, and what to tell the hubs after the commit.

:class:`Outcome` is one inbound message after validation; :func:`batch_write` assembles the
batch's database work; :func:`settle` turns the committed results into one
:class:`wire.contract.Receipt` per readings message (``stored``: inserted now, and by the first
message of the batch that carried the key; ``duplicates``: everything else that was valid;
``rejected``: each rejected reading with its reason, or every readable key of a message rejected
as a whole — the reading's key is None when it could not be read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gateway.ingest.held import HeldItem
from gateway.ingest.model import AlertChange, DeadLetter, NormalizedReading, Reject
from gateway.ingest.store import BatchWrite, StatusItem, WriteResult
from wire import contract
from wire.mqtt import Message


@dataclass
class Outcome:
    """What validation made of one inbound message."""

    message: Message
    hub: str | None
    kind: str  # "readings" | "status" | "other"
    msg_id: str | None = None
    accepted: list[NormalizedReading] = field(default_factory=list)
    held: list[HeldItem] = field(default_factory=list)  # valid records of no patient
    rejected: list[Reject] = field(default_factory=list)  # reading-level
    message_reject: Reject | None = None
    message_keys: tuple[str, ...] = ()  # keys readable in a message rejected as a whole
    status: StatusItem | None = None

    @property
    def n_readings(self) -> int:
        return len(self.accepted) + len(self.held) + len(self.rejected) + len(self.message_keys)


def batch_write(outcomes: list[Outcome]) -> BatchWrite:
    bw = BatchWrite()
    for o in outcomes:
        if o.message_reject is not None:
            bw.dead.append(DeadLetter(o.hub, o.message.topic, o.message_reject))
        bw.dead.extend(DeadLetter(o.hub, o.message.topic, r) for r in o.rejected)
        bw.readings.extend(o.accepted)
        bw.held.extend(o.held)
        if o.status is not None:
            bw.statuses.append(o.status)
        if o.kind == "readings" and o.message_reject is None and o.hub is not None:
            bw.hubs_seen.add(o.hub)
    return bw


@dataclass(frozen=True, slots=True)
class Settled:
    stored: tuple[NormalizedReading, ...]
    duplicates: tuple[str, ...]
    dead: tuple[DeadLetter, ...]
    alerts: tuple[AlertChange, ...]
    receipts: tuple[tuple[str, bytes], ...]  # (topic, payload)
    status_updates: int
    rule_unit_skipped: int
    held_stored: int = 0


def settle(results: list[tuple[list[Outcome], WriteResult]]) -> Settled:
    """Receipts and totals for committed results (groups in batch order)."""
    claimed: set[tuple[str, datetime]] = set()
    held_claimed: set[str] = set()
    stored: list[NormalizedReading] = []
    duplicates: list[str] = []
    dead: list[DeadLetter] = []
    alerts: list[AlertChange] = []
    receipts: list[tuple[str, bytes]] = []
    statuses = 0
    skipped = 0
    for group, result in results:
        dead.extend(result.dead)
        alerts.extend(result.alerts.changes)
        statuses += result.statuses_applied
        skipped += result.alerts.skipped_unit
        for o in group:
            if o.kind != "readings" or o.hub is None:
                continue
            rs: list[str] = []
            ds: list[str] = []
            for r in o.accepted:
                k = (r.key, r.time)
                if k in result.inserted and k not in claimed:
                    claimed.add(k)
                    stored.append(r)
                    rs.append(r.key)
                else:
                    ds.append(r.key)
            for h in o.held:
                if h.key in result.held_inserted and h.key not in held_claimed:
                    held_claimed.add(h.key)
                    rs.append(h.key)
                else:
                    ds.append(h.key)
            duplicates.extend(ds)
            rejected = [contract.Rejection(r.key, r.reason) for r in o.rejected]
            if o.message_reject is not None:
                reason = o.message_reject.reason
                rejected += [contract.Rejection(k, reason) for k in o.message_keys] or [
                    contract.Rejection(None, reason)
                ]
            if o.msg_id is not None:
                receipt = contract.Receipt(
                    msg_id=o.msg_id, stored=rs, duplicates=ds, rejected=rejected
                )
                receipts.append((contract.receipts_topic(o.hub), contract.encode(receipt)))
    return Settled(
        tuple(stored),
        tuple(duplicates),
        tuple(dead),
        tuple(alerts),
        tuple(receipts),
        statuses,
        skipped,
        len(held_claimed),
    )
