"""The central ingester: MQTT → validation → PostgreSQL → alerts → receipts (see pipeline)."""

from gateway.ingest.model import (
    AlertChange,
    Counters,
    DeadLetter,
    NormalizedReading,
    Reject,
    StoredBatch,
)
from gateway.ingest.pipeline import Ingester, OnStored, run_ingester

__all__ = [
    "AlertChange",
    "Counters",
    "DeadLetter",
    "Ingester",
    "NormalizedReading",
    "OnStored",
    "Reject",
    "StoredBatch",
    "run_ingester",
]
