"""The data lifecycle in both storage modes: aggregates and the series query, late readings,
retention per data class that never drops what no aggregate holds. TimescaleDB mode runs against
PGlite + TimescaleDB 2.23 (tests/fixtures/fix_pglite.py), plain mode against PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Protocol

import psycopg
import pytest

from gateway.db import migrate
from gateway.db.lifecycle import REFRESH_START_OFFSET
from gateway.db.series import Bucket, series_sql
from tests.fixtures.fix_pglite import Pglite, PgliteError

pytestmark = pytest.mark.integration

SPO2 = 150456


class Sql(Protocol):
    def execute(self, sql: str, params: Any = ()) -> list[list[Any]]: ...


class Pg:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> list[list[Any]]:
        cur = self.conn.execute(sql.encode(), params or None)
        return [list(r) for r in cur.fetchall()] if cur.description else []


@pytest.fixture
def plain(fresh_db: str) -> Iterator[Pg]:
    assert migrate(fresh_db, prefer="partitioned") == "partitioned"
    with psycopg.connect(fresh_db, autocommit=True, options="-c timezone=UTC") as conn:
        conn.execute("SELECT set_config('telehub.system', 'test', false)")  # gateway.db.rls
        yield Pg(conn)


_COLS = (
    "time, key, patient_id, hub_id, device_id, source, kind, mdc, loinc, unit, mdc_unit, value, "
    "grp, flags, time_source, received_at, hub_clock, raw, stored_at"
)
_VALUES = (
    "(%s::timestamptz, %s, %s, 'h', 'd', 's', %s, %s, '{}', %s, 262688, %s::numeric, 'g', '{}', "
    "'hub', %s::timestamptz, 'sync', '\\x00', coalesce(%s::timestamptz, now()))"
)


def put(
    db: Sql,
    time: str,
    key: str,
    value: str,
    *,
    kind: str = "spot",
    patient: str = "p1",
    stored_at: str | None = None,
    on_conflict: bool = True,
) -> int:
    """Insert one reading the ingester's careful way; returns how many rows were stored."""
    sql = f"INSERT INTO readings ({_COLS}) VALUES {_VALUES}"
    if on_conflict:
        sql += " ON CONFLICT (key, time) DO NOTHING"
    rows = db.execute(
        sql + " RETURNING key",
        (time, key, patient, kind, SPO2, "%", value, time, stored_at),
    )
    return len(rows)


def series(
    db: Sql, bucket: Bucket, start: str, end: str, tz: str = "Europe/Copenhagen"
) -> list[tuple[Any, ...]]:
    cols = "b, unit, n, lo, hi, mean, fv, ft, lv, lt"
    sql = (
        "SELECT to_char(b AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), n::int, lo::text, hi::text,"
        " round(mean, 2)::text, fv::text, to_char(ft AT TIME ZONE 'UTC', 'DD HH24:MI'), lv::text"
        f" FROM ({series_sql(bucket, tz)}) s({cols})"
    )
    params = {"patient": "p1", "mdc": SPO2, "start": start, "end": end, "tz": tz}
    return [tuple(r) for r in db.execute(sql, params)]


def _day_readings(db: Sql) -> None:
    # Copenhagen is UTC+1 in December: 23:30 UTC on the 1st is 00:30 on the 2nd there
    put(db, "2025-12-01 08:10Z", "a", "97")
    put(db, "2025-12-01 08:40Z", "b", "95")
    put(db, "2025-12-01 22:50Z", "c", "93")
    put(db, "2025-12-01 23:30Z", "d", "90")
    put(db, "2025-12-02 07:00Z", "e", "94.5")
    put(db, "2025-12-02 07:05Z", "f", "88", patient="p2")  # another patient: not in p1's series


EXPECTED_DAYS = [
    ("2025-11-30 23:00", 3, "93", "97", "95.00", "97", "01 08:10", "93"),
    ("2025-12-01 23:00", 2, "90", "94.5", "92.25", "90", "01 23:30", "94.5"),
]
EXPECTED_UTC_DAYS = [
    ("2025-12-01 00:00", 4, "90", "97", "93.75", "97", "01 08:10", "90"),
    ("2025-12-02 00:00", 1, "94.5", "94.5", "94.50", "94.5", "02 07:00", "94.5"),
]
EXPECTED_HOURS_0800 = ("2025-12-01 08:00", 2, "95", "97", "96.00", "97", "01 08:10", "95")


def _check_series(db: Sql) -> None:
    days = series(db, Bucket.DAY, "2025-11-30 23:00Z", "2025-12-02 23:00Z")
    assert days == EXPECTED_DAYS
    # another zone: rolled up from the hours
    assert series(db, Bucket.DAY, "2025-12-01Z", "2025-12-03Z", tz="UTC") == EXPECTED_UTC_DAYS
    hours = series(db, Bucket.HOUR, "2025-12-01Z", "2025-12-03Z")
    assert len(hours) == 4 and hours[0] == EXPECTED_HOURS_0800


def _after_refresh(db: Sql, refresh: Callable[[], object]) -> None:
    """A reading past the materialised horizon is in the series at once (real-time aggregation);
    a late one into a materialised bucket once the next refresh (its window reaches back past
    the longest hub offline time) has run."""
    put(db, "2025-12-03 08:00Z", "g", "99")
    put(db, "2025-12-02 07:30Z", "late", "80")
    days = series(db, Bucket.DAY, "2025-11-30 23:00Z", "2025-12-03 23:00Z")
    assert days[1][1] == 2 and days[2][1:4] == (1, "99", "99")
    refresh()
    days = series(db, Bucket.DAY, "2025-11-30 23:00Z", "2025-12-03 23:00Z")
    assert days[1][1:4] == (3, "80", "94.5") and days[2][1:4] == (1, "99", "99")


# -- TimescaleDB (PGlite) --------------------------------------------------------------------------


def _refresh(db: Pglite, end: str | None = None) -> None:
    for view in ("readings_hourly", "readings_daily"):
        db.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, {end or 'NULL'})")


def _job(db: Pglite, proc: str) -> int:
    rows = db.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s", [proc]
    )
    assert len(rows) == 1
    return int(rows[0][0])


def test_timescale_policies_and_settings(pglite: Pglite) -> None:
    jobs = pglite.execute(
        "SELECT proc_name, hypertable_name, schedule_interval::text, config::text"
        " FROM timescaledb_information.jobs WHERE job_id >= 1000 ORDER BY proc_name, job_id"
    )
    # migration 92 re-creates the aggregates (current versions only) and with them their policies
    assert [j[0] for j in jobs] == [
        "policy_compression",
        "policy_refresh_continuous_aggregate",
        "policy_refresh_continuous_aggregate",
        "telehub_lifecycle_job",
    ]
    assert sorted(j[1] for j in jobs[1:3]) == ["readings_daily", "readings_hourly"]
    assert '"compress_after": "35 days"' in jobs[0][3]
    assert f'"start_offset": "{REFRESH_START_OFFSET}"' in jobs[1][3]
    settings = pglite.execute(
        "SELECT segmentby::text, orderby::text"
        " FROM timescaledb_information.hypertable_columnstore_settings"
        " WHERE hypertable = 'readings'::regclass"
    )
    assert settings == [["", 'patient_id,mdc,"time" DESC']]  # migration 95
    dims = pglite.execute(
        "SELECT time_interval::text FROM timescaledb_information.dimensions"
        " WHERE hypertable_name = 'readings'"
    )
    assert dims == [["1 day"]]
    real_time = pglite.execute(
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        " ORDER BY view_name"
    )
    assert real_time == [["readings_daily", False], ["readings_hourly", False]]


def test_timescale_series_real_time_then_materialised(pglite: Pglite) -> None:
    _day_readings(pglite)
    _check_series(pglite)  # nothing materialised yet: real-time aggregation
    _refresh(pglite)
    _check_series(pglite)
    _after_refresh(pglite, lambda: _refresh(pglite))


def test_late_reading_into_a_compressed_chunk_is_stored_exactly_once(pglite: Pglite) -> None:
    old = "now() - INTERVAL '60 days'"
    t0 = pglite.execute(f"SELECT ({old})::text")[0][0]
    for i in range(50):
        put(pglite, f"{t0}", f"k{i}", str(90 + i % 10), patient=f"p{i % 5}")
    compress = _job(pglite, "policy_compression")
    pglite.execute(f"CALL run_job({compress})")
    chunks = pglite.execute(
        "SELECT is_compressed FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'readings'"
    )
    assert chunks == [[True]]
    late = "late-1"
    assert put(pglite, t0, late, "91") == 1  # the hub's replay, weeks later
    assert put(pglite, t0, late, "91") == 0  # and its redelivery: a duplicate, not stored
    with pytest.raises(PgliteError) as err:  # the optimistic way meets the unique index too
        put(pglite, t0, late, "91", on_conflict=False)
    assert err.value.code == "23505"
    assert pglite.execute("SELECT count(*)::int FROM readings WHERE key = %s", [late]) == [[1]]
    assert pglite.execute("SELECT count(*)::int FROM readings") == [[51]]


def test_timescale_retention_keeps_what_no_aggregate_holds(pglite: Pglite) -> None:
    old = pglite.execute("SELECT (now() - INTERVAL '100 days')::text")[0][0]
    recent = pglite.execute("SELECT (now() - INTERVAL '2 days')::text")[0][0]
    put(pglite, old, "c-old", "96", kind="continuous", stored_at=old)
    put(pglite, recent, "c-new", "95", kind="continuous", stored_at=recent)
    put(pglite, old, "s-old", "94", stored_at=old)
    lifecycle = _job(pglite, "telehub_lifecycle_job")
    pglite.execute(f"CALL run_job({lifecycle})")  # nothing materialised: nothing dropped
    assert pglite.execute("SELECT count(*)::int FROM readings") == [[3]]
    _refresh(pglite, "now() - INTERVAL '1 hour'")
    # a replay of 100-day-old samples arrives after the refresh: in no aggregate, so it stays
    put(pglite, old, "c-replayed", "80", kind="continuous")
    pglite.execute(f"CALL run_job({lifecycle})")
    keys = pglite.execute("SELECT key FROM readings ORDER BY key")
    assert keys == [["c-new"], ["c-replayed"], ["s-old"]]
    # the aggregate still holds the dropped sample
    hour = pglite.execute(
        "SELECT n::int, min_value::text FROM readings_hourly WHERE bucket = time_bucket("
        "INTERVAL '1 hour', %s::timestamptz) AND patient_id = 'p1'",
        [old],
    )
    assert hour == [[2, "94"]]
    runs = pglite.execute("SELECT detail->>'continuous_deleted' FROM telehub_job_runs ORDER BY 1")
    assert sorted(r[0] for r in runs) == ["0", "1"]


# -- plain PostgreSQL ------------------------------------------------------------------------------


def test_plain_series_real_time_then_materialised(plain: Pg) -> None:
    _day_readings(plain)
    _check_series(plain)  # nothing materialised: the views aggregate the raw rows
    plain.execute("SELECT telehub_refresh_aggregates('2025-11-01Z', '2025-12-03Z')")
    assert plain.execute("SELECT count(*)::int FROM readings_hourly_mat") == [[5]]
    _check_series(plain)
    _after_refresh(
        plain,
        lambda: plain.execute("SELECT telehub_refresh_aggregates('2025-11-01Z', '2025-12-04Z')"),
    )


def _supersede_and_correct(db: Sql, refresh: Callable[[], object]) -> None:
    """A reading version superseded by ``telehub reprocess`` (migration 92) leaves the aggregates,
    live and materialised; its correction counts instead."""
    _day_readings(db)
    refresh()
    db.execute("UPDATE readings SET superseded_at = now(), superseded_run = 1 WHERE key = 'a'")
    put(db, "2025-12-01 08:10Z", "a2", "91")
    refresh()
    days = series(db, Bucket.DAY, "2025-11-30 23:00Z", "2025-12-02 23:00Z")
    assert days[0] == ("2025-11-30 23:00", 3, "91", "95", "93.00", "91", "01 08:10", "93")
    assert days[1] == EXPECTED_DAYS[1]


def test_timescale_aggregates_hold_current_versions_only(pglite: Pglite) -> None:
    _supersede_and_correct(pglite, lambda: _refresh(pglite))


def test_plain_aggregates_hold_current_versions_only(plain: Pg) -> None:
    _supersede_and_correct(
        plain,
        lambda: plain.execute("SELECT telehub_refresh_aggregates('2025-11-01Z', '2025-12-04Z')"),
    )


def test_plain_retention_keeps_what_no_aggregate_holds(plain: Pg) -> None:
    old = plain.execute("SELECT (now() - INTERVAL '100 days')::text")[0][0]
    recent = plain.execute("SELECT (now() - INTERVAL '2 days')::text")[0][0]
    put(plain, old, "c-old", "96", kind="continuous", stored_at=old)
    put(plain, recent, "c-new", "95", kind="continuous", stored_at=recent)
    put(plain, old, "s-old", "94", stored_at=old)
    dead = "INSERT INTO dead_letters (received_at, reason, payload) VALUES (%s, 'r', '\\x00')"
    plain.execute(dead, [old])
    plain.execute(dead, [recent])
    first = plain.execute("SELECT telehub_lifecycle_run()")[0][0]
    # the first run materialises the whole history, then drops what expired
    assert first["continuous_deleted"] == 1 and first["dead_letters_deleted"] == 1
    put(plain, old, "c-replayed", "80", kind="continuous")
    second = plain.execute("SELECT telehub_lifecycle_run()")[0][0]
    assert second["continuous_deleted"] == 0
    keys = plain.execute("SELECT key FROM readings ORDER BY key")
    assert keys == [["c-new"], ["c-replayed"], ["s-old"]]
    hour = plain.execute(
        "SELECT n::int, min_value::text FROM readings_hourly WHERE patient_id = 'p1' AND bucket ="
        " date_bin(INTERVAL '1 hour', %s::timestamptz, TIMESTAMPTZ '2000-01-01Z')",
        [old],
    )
    assert hour == [[2, "94"]]


def test_plain_retention_drops_whole_partitions_of_expired_spot_data(plain: Pg) -> None:
    plain.execute("UPDATE telehub_retention SET keep = '20 years' WHERE data_class = 'aggregates'")
    plain.execute("SELECT telehub_ensure_partitions(0, 0, '2010-03-15Z')")
    put(plain, "2010-03-10Z", "ancient", "97", stored_at="2010-03-10Z")
    put(plain, "2010-06-10Z", "ancient-default", "97", stored_at="2010-06-10Z")
    out = plain.execute("SELECT telehub_lifecycle_run()")[0][0]
    assert out["spot_partitions_dropped"] == 1
    assert plain.execute("SELECT to_regclass('readings_p2010_03')") == [[None]]
    assert plain.execute("SELECT count(*)::int FROM readings") == [[0]]
    # the aggregates outlive the raw rows (a class of their own)
    assert plain.execute("SELECT count(*)::int FROM readings_daily_mat") == [[2]]


def test_retention_is_configurable_per_class(plain: Pg) -> None:
    old = plain.execute("SELECT (now() - INTERVAL '20 days')::text")[0][0]
    plain.execute(
        "INSERT INTO dead_letters (received_at, reason, payload) VALUES (%s, 'r', '')", [old]
    )
    plain.execute(
        "UPDATE telehub_retention SET keep = INTERVAL '7 days' WHERE data_class = 'dead_letters'"
    )
    assert plain.execute("SELECT telehub_lifecycle_run()")[0][0]["dead_letters_deleted"] == 1
    with pytest.raises(psycopg.errors.CheckViolation):
        plain.execute("UPDATE telehub_retention SET keep = INTERVAL '-1 day'")


def _held(db: Sql, key: str, stored_at: str, dismissed: bool = False) -> None:
    db.execute(
        "INSERT INTO held_records (key, hub_id, device_id, source, reason, received_at,"
        " stored_at, raw, dismissed_at) VALUES (%s, 'h', 'd', '2a9d', 'unknown-user', %s, %s,"
        " '\\x00', CASE WHEN %s THEN now() END)",
        [key, stored_at, stored_at, dismissed],
    )


def _held_retention(db: Sql) -> None:
    """Held records (no patient) expire after 90 days, dismissed or not; configurable."""
    assert db.execute(
        "SELECT keep::text FROM telehub_retention WHERE data_class = 'held_records'"
    ) == [["90 days"]]
    old = db.execute("SELECT (now() - INTERVAL '91 days')::text")[0][0]
    recent = db.execute("SELECT (now() - INTERVAL '89 days')::text")[0][0]
    _held(db, "old", old)
    _held(db, "old-dismissed", old, dismissed=True)
    _held(db, "recent", recent)
    assert db.execute("SELECT telehub_lifecycle_run()")[0][0]["held_records_deleted"] == 2
    assert db.execute("SELECT key FROM held_records") == [["recent"]]
    db.execute("UPDATE telehub_retention SET keep = NULL WHERE data_class = 'held_records'")
    _held(db, "old-kept", old)
    assert "held_records_deleted" not in db.execute("SELECT telehub_lifecycle_run()")[0][0]
    assert db.execute("SELECT count(*)::int FROM held_records") == [[2]]


def test_plain_held_records_expire(plain: Pg) -> None:
    _held_retention(plain)


def test_timescale_held_records_expire(pglite: Pglite) -> None:
    _held_retention(pglite)


# -- telehub db status ---------------------------------------------------------------------------


def test_status_timescale(pglite: Pglite) -> None:
    from gateway.db.status import db_status

    t0 = pglite.execute("SELECT (now() - INTERVAL '60 days')::text")[0][0]
    for i in range(200):
        put(pglite, t0, f"k{i}", str(90 + i % 10), patient=f"p{i % 5}")
    pglite.execute(f"CALL run_job({_job(pglite, 'policy_compression')})")
    pglite.execute(f"CALL run_job({_job(pglite, 'telehub_lifecycle_job')})")
    st = db_status(pglite.execute)
    assert st.mode == "timescaledb" and st.chunks == 1 and st.compressed_chunks == 1
    assert st.compression_ratio is not None and st.compression_ratio > 1
    names = [p.name for p in st.policies]
    assert names.count("policy_refresh_continuous_aggregate") == 2
    compression = st.policies[names.index("policy_compression")]
    assert '"compress_after": "35 days"' in compression.config
    # run_job in the foreground does not write job_stats (the background worker does; PGlite has
    # none): the last runs of the lifecycle job are recorded by telehub itself
    assert st.lifecycle_last_run is not None
    text = st.render()
    assert "storage mode: timescaledb" in text and "compression ratio:" in text
    assert "continuous    90 days" in text


def test_status_plain_via_cli(fresh_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    from telehub.cli import main

    assert main(["db", "status", "--database-url", fresh_db]) == 0
    assert "storage mode: none" in capsys.readouterr().out
    assert main(["db", "migrate", "--database-url", fresh_db]) in (0,)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("SELECT telehub_lifecycle_run()")
    assert main(["db", "status", "--database-url", fresh_db]) == 0
    out = capsys.readouterr().out
    mode = "partitioned" if "partitioned" in out else "timescaledb"
    assert f"storage mode: {mode}" in out
    assert "lifecycle run: last 20" in out and "dead_letters  90 days" in out


async def test_fetch_series_for_the_api(plain: Pg, fresh_db: str) -> None:
    """The function the clinician workspace's series API calls, on an async connection."""
    from datetime import datetime

    from gateway.db.series import fetch_series

    _day_readings(plain)
    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        await conn.execute("SELECT set_config('telehub.system', 'test', false)")
        start, end = (
            datetime.fromisoformat("2025-11-30T23:00Z"),
            datetime.fromisoformat("2025-12-02T23:00Z"),
        )
        points = await fetch_series(conn, "p1", SPO2, start, end)
        assert [(p.n, str(p.min), str(p.max), p.first_value) for p in points] == [
            (3, "93", "97", Decimal(97)),
            (2, "90", "94.5", Decimal(90)),
        ]
        assert points[1].first_time == datetime.fromisoformat("2025-12-01T23:30Z")
        assert await fetch_series(conn, "nobody", SPO2, start, end) == []
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            await fetch_series(conn, "p1", SPO2, start, end, tz="Mars/Olympus")


def test_timescale_retention_in_a_compressed_chunk(pglite: Pglite) -> None:
    """Expired continuous samples go from a compressed chunk; the spot readings beside them
    stay, still compressed-chunk readable."""
    old = pglite.execute("SELECT (now() - INTERVAL '100 days')::text")[0][0]
    for i in range(20):
        put(pglite, old, f"c{i}", "96", kind="continuous", patient=f"p{i % 2}", stored_at=old)
    put(pglite, old, "spot", "94", stored_at=old)
    pglite.execute(f"CALL run_job({_job(pglite, 'policy_compression')})")
    _refresh(pglite, "now() - INTERVAL '1 hour'")
    pglite.execute(f"CALL run_job({_job(pglite, 'telehub_lifecycle_job')})")
    assert pglite.execute("SELECT key, kind FROM readings") == [["spot", "spot"]]
    assert pglite.execute(
        "SELECT sum(n)::int FROM readings_hourly WHERE bucket = time_bucket(INTERVAL '1 hour',"
        " %s::timestamptz)",
        [old],
    ) == [[21]]
