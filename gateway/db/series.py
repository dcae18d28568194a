"""A patient's series of one metric in buckets, from the aggregates (never a raw scan).

What the clinician workspace's series API calls: :func:`fetch_series` (or :func:`series_sql` and
:func:`to_points` for a connection of its own). It reads ``readings_hourly`` / ``readings_daily``
(:mod:`gateway.db.lifecycle`), which answer the same in both storage modes and include the rows
not yet materialised (real-time aggregation), so the newest reading is in the series at once.

Buckets: UTC hours, or days local to the patient (``tz``). Days of the region's own time zone
come from ``readings_daily``; days of any other zone are rolled up from the hourly buckets (exact
for zones whose offset is a whole number of hours, which is every zone the region serves).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

import psycopg

from gateway.db.lifecycle import REGION_TIMEZONE


class Bucket(StrEnum):
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One bucket: ``start`` (UTC instant of the bucket's start), the count and value range, the
    mean, and the first and last values with their event times."""

    start: datetime
    unit: str
    n: int
    min: Decimal
    max: Decimal
    mean: Decimal
    first_value: Decimal
    first_time: datetime
    last_value: Decimal
    last_time: datetime


_COLUMNS: Final = (
    "bucket, unit, n, min_value, max_value, mean_value, first_value, first_time, last_value, "
    "last_time"
)

_DIRECT: Final = (
    f"SELECT {_COLUMNS} FROM {{view}} WHERE patient_id = %(patient)s AND mdc = %(mdc)s "
    "AND bucket >= %(start)s AND bucket < %(end)s ORDER BY bucket, unit"
)

_ROLLUP: Final = """
SELECT (date_trunc('day', bucket AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s) AS day, unit,
       sum(n)::bigint, min(min_value), max(max_value), sum(sum_value) / sum(n),
       (array_agg(first_value ORDER BY first_time))[1], min(first_time),
       (array_agg(last_value ORDER BY last_time DESC))[1], max(last_time)
  FROM visible_readings_hourly
 WHERE patient_id = %(patient)s AND mdc = %(mdc)s AND bucket >= %(start)s AND bucket < %(end)s
 GROUP BY 1, unit ORDER BY 1, unit"""


def series_sql(bucket: Bucket, tz: str = REGION_TIMEZONE) -> str:
    """The query for ``bucket`` buckets (parameters ``patient``, ``mdc``, ``start``, ``end`` and,
    for rolled-up days, ``tz``). ``start``/``end`` should be bucket boundaries; a day bucket in
    ``tz`` covers the hours that start within it."""
    if bucket is Bucket.HOUR:
        return _DIRECT.format(view="visible_readings_hourly")
    if tz == REGION_TIMEZONE:
        return _DIRECT.format(view="visible_readings_daily")
    return _ROLLUP


def to_points(rows: list[tuple[Any, ...]]) -> list[SeriesPoint]:
    return [SeriesPoint(*row) for row in rows]


async def fetch_series(
    conn: psycopg.AsyncConnection[Any],
    patient_id: str,
    mdc: int,
    start: datetime,
    end: datetime,
    *,
    bucket: Bucket = Bucket.DAY,
    tz: str = REGION_TIMEZONE,
) -> list[SeriesPoint]:
    """The series of ``mdc`` for ``patient_id`` in [start, end), oldest bucket first."""
    params = {"patient": patient_id, "mdc": mdc, "start": start, "end": end, "tz": tz}
    async with conn.cursor() as cur:
        await cur.execute(series_sql(bucket, tz).encode(), params)
        return to_points(await cur.fetchall())
