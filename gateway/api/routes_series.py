"""The series API of the clinician workspace (issue 11 item 3): one metric of one patient in
time buckets, computed by the database from the aggregates (:mod:`gateway.db.series`;
TimescaleDB continuous aggregates or ``date_bin`` materialisations), never raw rows.

``GET /api/v1/patients/{id}/series?metric=<MDC>&bucket=day|hour&from=&to=``: days are the
patient's local days (``patients.timezone``), hours are UTC hours. Each bucket carries count,
min, max, mean, and the first and last values with their times. Scoped like every read (an
out-of-scope patient is 404 with a denied audit row) and audited in the read's transaction
(resource ``series``, the range and the bucket count).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, Field

from gateway.api.audit import AuditEntry, RequestId, write_audit
from gateway.api.auth import CurrentPrincipal, ensure_patient_visible
from gateway.api.context import Ctx
from gateway.api.errors import ApiError, error_responses
from gateway.api.hygiene import SAFE_TEXT
from gateway.db.series import Bucket, fetch_series
from gateway.notify.alerts import metric_name

router = APIRouter(prefix="/api/v1", responses=error_responses(400, 401, 413, 414, 503))

PatientId = Annotated[str, Path(min_length=1, max_length=200, pattern=SAFE_TEXT)]
#: the longest range per bucket size (hours: the readings API's own limit; days: ten years)
MAX_SPAN: Final = {Bucket.HOUR: timedelta(days=93), Bucket.DAY: timedelta(days=3660)}
DEFAULT_SPAN: Final = {Bucket.HOUR: timedelta(days=2), Bucket.DAY: timedelta(days=30)}


class PointOut(BaseModel):
    start: datetime = Field(description="The bucket's start (UTC instant).")
    unit: str
    n: int
    min: str
    max: str
    mean: str
    first_value: str
    first_time: datetime
    last_value: str
    last_time: datetime


class SeriesOut(BaseModel):
    patient_id: str
    metric: int
    metric_name: str | None
    bucket: Bucket
    timezone: str = Field(description="The zone of the day buckets (the patient's).")
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    points: list[PointOut]


@router.get(
    "/patients/{patient_id}/series",
    summary="One metric of a patient in time buckets (local days or UTC hours), oldest first",
    responses=error_responses(404, 422),
)
async def get_series(
    *,
    ctx: Ctx,
    principal: CurrentPrincipal,
    rid: RequestId,
    patient_id: PatientId,
    metric: Annotated[int, Query(ge=0, le=2**31 - 1, description="MDC metric code.")],
    bucket: Bucket = Bucket.DAY,
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: Annotated[AwareDatetime | None, Query()] = None,
) -> SeriesOut:
    await ensure_patient_visible(ctx, principal, patient_id, request_id=rid, resource="series")
    end = to or datetime.now(UTC)
    start = from_ or end - DEFAULT_SPAN[bucket]
    if start >= end:
        raise ApiError(422, "invalid_request", "`from` must be before `to`")
    if end - start > MAX_SPAN[bucket]:
        raise ApiError(
            422,
            "invalid_request",
            f"{bucket.value} buckets may span at most {MAX_SPAN[bucket].days} days",
        )
    async with ctx.connect(principal) as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT timezone FROM patients WHERE patient_id = %s", (patient_id,)
        )
        row = await cur.fetchone()
        tz = str(row[0]) if row else "UTC"
        points = await fetch_series(conn, patient_id, metric, start, end, bucket=bucket, tz=tz)
        await write_audit(conn, AuditEntry(rid, principal, patient_id, "series",
                                           target=patient_id, range_from=start, range_to=end,
                                           row_count=len(points)))  # fmt: skip
    return SeriesOut(
        patient_id=patient_id,
        metric=metric,
        metric_name=metric_name(metric),
        bucket=bucket,
        timezone=tz,
        from_=start,
        to=end,
        points=[
            PointOut(
                start=p.start, unit=p.unit, n=p.n, min=str(p.min), max=str(p.max),
                mean=str(p.mean), first_value=str(p.first_value), first_time=p.first_time,
                last_value=str(p.last_value), last_time=p.last_time,
            )
            for p in points
        ],
    )  # fmt: skip
