"""The data lifecycle of ``readings`` and its neighbours: chunking, compression, aggregates and
retention per data class, in both storage modes (migrations 40-43; docs/operations.md).

Timings, all derived from one figure, the longest plausible time a hub is offline
(:data:`LONGEST_HUB_OFFLINE`, 30 days: a patient away for a month with the hub unplugged; a meter
that keeps months of memory is replayed as well, and is handled as a late reading like any other):

* chunks (TimescaleDB) are :data:`CHUNK_INTERVAL` long, chosen from the measured row size and rate
  (docs/operations.md): at 1 Hz continuous samples a chunk of a day is what 25 % of memory holds;
* a chunk is compressed :data:`COMPRESS_AFTER` after its end (past the offline time, so replays land
  in row-store chunks; a later one still lands, once, in the compressed chunk);
* the aggregates' refresh reaches back :data:`REFRESH_START_OFFSET` (past the offline time), so
  late readings are in them;
* continuous samples are dropped after their retention *and* only below the aggregates'
  materialised horizon (``telehub_materialised_until()``), never before
  :data:`MIN_RAW_RETENTION` (past the refresh window, so an aggregate is never refreshed over a
  window whose raw samples are already gone).

Aggregates: ``readings_hourly`` (UTC hours) and ``readings_daily`` (days of
:data:`REGION_TIMEZONE`) per patient, metric (``mdc``) and unit: ``n``, ``min_value``,
``max_value``, ``mean_value``, ``sum_value``, ``first_value``/``first_time``,
``last_value``/``last_time``. Under TimescaleDB they are continuous aggregates with real-time
aggregation; on plain PostgreSQL they are views over materialised tables (``*_mat``, refreshed by
``telehub_refresh_aggregates``) plus the raw rows past the materialised horizon: the same columns
and the same answers, so :mod:`gateway.db.series` reads them the same way in both modes.

Retention per data class (``telehub_retention``, one row per class, ``keep`` editable with SQL):
spot measurements, aggregates and alerts are kept for years; continuous samples at full rate,
dead letters and finished delivery attempts expire. ``telehub_lifecycle_run()`` applies it
(TimescaleDB: a daily ``add_job``; plain PostgreSQL: the ingester's maintenance loop) and records
each run in ``telehub_job_runs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from gateway.db.schema import StorageMode

LONGEST_HUB_OFFLINE: Final = "30 days"
CHUNK_INTERVAL: Final = "1 day"
COMPRESS_AFTER: Final = "35 days"
REFRESH_START_OFFSET: Final = "35 days"
MIN_RAW_RETENTION: Final = "36 days"
REGION_TIMEZONE: Final = "Europe/Copenhagen"
#: pg_advisory_xact_lock key of a lifecycle run ("telehub" in ASCII, truncated, + 3).
LIFECYCLE_LOCK_KEY: Final = 0x74656C6568756203

#: (data class, default keep (None: never expires), why)
RETENTION_DEFAULTS: Final[tuple[tuple[str, str | None, str], ...]] = (
    ("spot", "10 years", "clinical record: kept for years (Danish record-keeping: 10 years)"),
    ("alerts", None, "clinical record with its audit trail: never expired automatically"),
    ("aggregates", "10 years", "trend history: outlives the raw continuous samples"),
    ("continuous", "90 days", "1 Hz samples: useful raw for weeks, then only as aggregates"),
    ("dead_letters", "90 days", "operational: long enough to investigate and re-send"),
    ("deliveries", "90 days", "operational: finished alert delivery attempts"),
)

_AGG_COLUMNS = """
    count(value) AS n,
    min(value) AS min_value,
    max(value) AS max_value,
    avg(value) AS mean_value,
    sum(value) AS sum_value,
    {first} AS first_value,
    min(time) AS first_time,
    {last} AS last_value,
    max(time) AS last_time"""

_TS_AGG = _AGG_COLUMNS.format(first="first(value, time)", last="last(value, time)")
_PG_AGG = _AGG_COLUMNS.format(
    first="(array_agg(value ORDER BY time))[1]", last="(array_agg(value ORDER BY time DESC))[1]"
)

#: bucket expressions of the two aggregates
BUCKETS: Final = {
    "readings_hourly": (
        "time_bucket(INTERVAL '1 hour', time)",
        "date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    ),
    "readings_daily": (
        f"time_bucket(INTERVAL '1 day', time, '{REGION_TIMEZONE}')",
        f"(date_trunc('day', time AT TIME ZONE '{REGION_TIMEZONE}') AT TIME ZONE "
        f"'{REGION_TIMEZONE}')",
    ),
}
_ROUND: Final = {"readings_hourly": "1 hour", "readings_daily": "1 day"}


def v40(mode: StorageMode) -> list[str]:
    values = ", ".join(
        f"('{c}', {f'INTERVAL {k!r}' if k else 'NULL'}, '{r}')" for c, k, r in RETENTION_DEFAULTS
    )
    return [
        """
        CREATE TABLE IF NOT EXISTS telehub_retention (
            data_class text PRIMARY KEY CHECK (data_class IN
                ('spot', 'alerts', 'aggregates', 'continuous', 'dead_letters', 'deliveries')),
            keep interval NULL CHECK (keep IS NULL OR keep > INTERVAL '0'),
            reason text NOT NULL
        )""",
        f"INSERT INTO telehub_retention VALUES {values} ON CONFLICT DO NOTHING",
        """
        CREATE TABLE IF NOT EXISTS telehub_job_runs (
            run_id bigserial PRIMARY KEY,
            job text NOT NULL,
            started_at timestamptz NOT NULL,
            finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            detail jsonb NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS telehub_job_runs_job ON telehub_job_runs (job, run_id DESC)",
        """
        CREATE TABLE IF NOT EXISTS telehub_aggregate_state (
            aggregate text PRIMARY KEY,
            materialised_until timestamptz NOT NULL
        )""",
    ]


#: From migration 92 on, the aggregates hold only current readings (a reading version superseded
#: by ``telehub reprocess`` is kept for audit, but counted nowhere).
CURRENT_ONLY: Final = " AND superseded_at IS NULL"


def _aggregate_select(
    name: str, mode: StorageMode, where: str = "", *, current_only: bool = False
) -> str:
    ts_bucket, pg_bucket = BUCKETS[name]
    bucket = ts_bucket if mode == "timescaledb" else pg_bucket
    agg = _TS_AGG if mode == "timescaledb" else _PG_AGG
    if current_only:
        where = CURRENT_ONLY + where
    return (
        f"SELECT patient_id, mdc, unit, {bucket} AS bucket,{agg}\n"
        f"    FROM readings WHERE value IS NOT NULL{where}\n"
        f"    GROUP BY patient_id, mdc, unit, {bucket}"
    )


def _refresh_block(name: str, mode: StorageMode, current_only: bool) -> str:
    """plpgsql: recompute the buckets of ``name`` in [window_start, window_end) (whole buckets)."""
    bucket = BUCKETS[name][1]
    select = _aggregate_select(
        name, mode, " AND time >= lo AND time < hi", current_only=current_only
    ).replace("\n", " ")
    lo = bucket.replace("time", "window_start")
    hi = bucket.replace("time", "window_end")
    return f"""
        lo := {lo};
        hi := {hi};
        IF hi > lo THEN
            DELETE FROM {name}_mat WHERE bucket >= lo AND bucket < hi;
            INSERT INTO {name}_mat {select};
            GET DIAGNOSTICS n = ROW_COUNT;
            UPDATE telehub_aggregate_state SET materialised_until = greatest(materialised_until, hi)
             WHERE aggregate = '{name}';
            total := total + n;
        END IF;"""


def v41(mode: StorageMode) -> list[str]:
    return aggregates(mode, current_only=False)


def aggregates(mode: StorageMode, *, current_only: bool) -> list[str]:
    """The aggregates (migration 41; again by migration 92 with ``current_only``)."""
    if mode == "timescaledb":
        out: list[str] = []
        for name in BUCKETS:
            select = _aggregate_select(name, mode, current_only=current_only)
            out.append(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} WITH (timescaledb.continuous,"
                f" timescaledb.materialized_only = false) AS\n{select}\n"
                "WITH NO DATA"
            )
        out.append(
            "CREATE OR REPLACE FUNCTION telehub_materialised_until() RETURNS timestamptz "
            "LANGUAGE sql STABLE AS $fn$ SELECT min(_timescaledb_functions.to_timestamp("
            "_timescaledb_functions.cagg_watermark(c.mat_hypertable_id))) "
            "FROM _timescaledb_catalog.continuous_agg c "
            "WHERE c.user_view_name IN ('readings_hourly', 'readings_daily') $fn$"
        )
        return out
    out = []
    for name in BUCKETS:
        out += [
            f"""
            CREATE TABLE IF NOT EXISTS {name}_mat (
                patient_id text NOT NULL, mdc integer NOT NULL, unit text NOT NULL,
                bucket timestamptz NOT NULL, n bigint NOT NULL, min_value numeric,
                max_value numeric, mean_value numeric, sum_value numeric, first_value numeric,
                first_time timestamptz, last_value numeric, last_time timestamptz,
                PRIMARY KEY (patient_id, mdc, unit, bucket)
            )""",
            f"INSERT INTO telehub_aggregate_state VALUES ('{name}', '-infinity') "
            "ON CONFLICT DO NOTHING",
            # materialised buckets, then the raw rows past the horizon (real-time aggregation)
            f"""
            CREATE OR REPLACE VIEW {name} AS
            SELECT patient_id, mdc, unit, bucket, n, min_value, max_value, mean_value, sum_value,
                   first_value, first_time, last_value, last_time
              FROM {name}_mat
             WHERE bucket < (SELECT materialised_until FROM telehub_aggregate_state
                              WHERE aggregate = '{name}')
            UNION ALL
            {
                _aggregate_select(
                    name,
                    mode,
                    " AND time >= (SELECT materialised_until FROM telehub_aggregate_state"
                    f" WHERE aggregate = '{name}')",
                    current_only=current_only,
                )
            }""",
        ]
    refresh = "\n".join(_refresh_block(name, mode, current_only) for name in BUCKETS)
    return [
        *out,
        f"""
        CREATE OR REPLACE FUNCTION telehub_refresh_aggregates(
            window_start timestamptz DEFAULT now() - INTERVAL '{REFRESH_START_OFFSET}',
            window_end timestamptz DEFAULT now()
        ) RETURNS bigint LANGUAGE plpgsql AS $fn$
        DECLARE lo timestamptz; hi timestamptz; n bigint; total bigint := 0;
        BEGIN
        {refresh}
        RETURN total;
        END $fn$""",
        "CREATE OR REPLACE FUNCTION telehub_materialised_until() RETURNS timestamptz "
        "LANGUAGE sql STABLE AS $fn$ SELECT min(materialised_until) FROM telehub_aggregate_state "
        "WHERE aggregate IN ('readings_hourly', 'readings_daily') $fn$",
    ]


def v42(mode: StorageMode) -> list[str]:
    if mode != "timescaledb":
        return []  # monthly partitions (migration 1); no compression without TimescaleDB
    return [
        # the columnstore API below is TimescaleDB 2.18+: say so rather than fail on a name
        "DO $do$ BEGIN IF (SELECT string_to_array(split_part(extversion, '-', 1), '.')::int[]"
        " FROM pg_extension WHERE extname = 'timescaledb') < ARRAY[2, 18] THEN RAISE EXCEPTION"
        " 'telehub needs TimescaleDB 2.18 or later (columnstore API); this server has %',"
        " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'); END IF; END $do$",
        f"SELECT set_chunk_time_interval('readings', INTERVAL '{CHUNK_INTERVAL}')",
        # the idempotency key readings_key_time (migration 1) exists before compression
        "ALTER TABLE readings SET (timescaledb.enable_columnstore = true,"
        " timescaledb.segmentby = 'patient_id', timescaledb.orderby = 'mdc, time DESC')",
        f"CALL add_columnstore_policy('readings', after => INTERVAL '{COMPRESS_AFTER}',"
        " if_not_exists => true)",
        *aggregate_policies(),
    ]


def aggregate_policies() -> list[str]:
    """The refresh policies of the continuous aggregates (TimescaleDB)."""
    policy = (
        "SELECT add_continuous_aggregate_policy('{name}', start_offset => INTERVAL '{start}', "
        "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '{every}', "
        "if_not_exists => true)"
    )
    return [
        policy.format(name="readings_hourly", start=REFRESH_START_OFFSET, every="15 minutes"),
        policy.format(name="readings_daily", start=REFRESH_START_OFFSET, every="1 hour"),
    ]


_HELD_DELETE: Final = """
        IF keep_held IS NOT NULL THEN
            DELETE FROM held_records WHERE stored_at < at - keep_held;
            GET DIAGNOSTICS n = ROW_COUNT;
            result := result || jsonb_build_object('held_records_deleted', n);
        END IF;"""


def _keep(data_class: str) -> str:
    return f"(SELECT keep FROM telehub_retention WHERE data_class = '{data_class}')"


def v95(mode: StorageMode) -> list[str]:
    """Columnstore without ``segmentby``, ordered by patient, metric and time (chunks compressed
    from now on; compressed chunks keep theirs). Measured on a generated year of spot readings
    (``bench/year.py``): a daily chunk holds ~9 rows per patient, so segments by patient made
    batches of 9 rows and compressed 1.1x; ordered by patient they compress 4.7x, and the
    continuous samples 5.8x either way (docs/operations.md)."""
    if mode != "timescaledb":
        return []
    return [
        "ALTER TABLE readings SET (timescaledb.segmentby = '',"
        " timescaledb.orderby = 'patient_id, mdc, time DESC')"
    ]


#: Migration 93's class: records the hub could not attribute (gateway/ingest/held.py).
HELD_RETENTION: Final = (
    "held_records",
    "90 days",
    "no patient: long enough to map the device user or dismiss; never a clinical record",
)
_CLASSES_V93: Final = (*(c for c, _, _ in RETENTION_DEFAULTS), HELD_RETENTION[0])


def v93(mode: StorageMode) -> list[str]:
    """Held records get a retention class of their own; the run deletes them when expired."""
    classes = ", ".join(f"'{c}'" for c in _CLASSES_V93)
    c, keep, why = HELD_RETENTION
    return [
        "ALTER TABLE telehub_retention"
        " DROP CONSTRAINT IF EXISTS telehub_retention_data_class_check",
        f"ALTER TABLE telehub_retention ADD CONSTRAINT telehub_retention_data_class_check"
        f" CHECK (data_class IN ({classes}))",
        f"INSERT INTO telehub_retention VALUES ('{c}', INTERVAL '{keep}', '{why}')"
        " ON CONFLICT DO NOTHING",
        *v43(mode, held=True),
    ]


def v43(mode: StorageMode, *, held: bool = False) -> list[str]:
    if mode == "timescaledb":
        drop_spot = """
            IF keep_spot IS NOT NULL THEN
                SELECT count(*) INTO n FROM drop_chunks('readings',
                    older_than => least(at - keep_spot, materialised));
                result := result || jsonb_build_object('spot_chunks_dropped', n);
            END IF;
            IF keep_agg IS NOT NULL THEN
                SELECT count(*) INTO n
                  FROM drop_chunks('readings_hourly', older_than => at - keep_agg);
                SELECT n + count(*) INTO n
                  FROM drop_chunks('readings_daily', older_than => at - keep_agg);
                result := result || jsonb_build_object('aggregate_chunks_dropped', n);
            END IF;"""
        refresh = ""
    else:
        drop_spot = """
            IF keep_spot IS NOT NULL THEN
                n := 0;
                FOR part IN
                    SELECT c.relname FROM pg_inherits i
                      JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'readings'::regclass
                       AND c.relname ~ '^readings_p[0-9]{4}_[0-9]{2}$'
                       AND (to_date(substr(c.relname, 11), 'YYYY_MM')
                            + INTERVAL '1 month')::timestamp AT TIME ZONE 'UTC'
                           <= least(at - keep_spot, materialised)
                LOOP
                    EXECUTE format('DROP TABLE %I', part);
                    n := n + 1;
                END LOOP;
                DELETE FROM readings_default WHERE time < least(at - keep_spot, materialised);
                result := result || jsonb_build_object('spot_partitions_dropped', n);
            END IF;
            IF keep_agg IS NOT NULL THEN
                DELETE FROM readings_hourly_mat WHERE bucket < at - keep_agg;
                DELETE FROM readings_daily_mat WHERE bucket < at - keep_agg;
            END IF;"""
        # the first run materialises the whole history, later ones the refresh window
        refresh = f"""
        result := result || jsonb_build_object('aggregate_rows_refreshed',
            telehub_refresh_aggregates(CASE WHEN materialised = '-infinity'
                THEN coalesce((SELECT min(time) FROM readings), at)
                ELSE at - INTERVAL '{REFRESH_START_OFFSET}' END, at));
        materialised := telehub_materialised_until();"""
    fn = f"""
    CREATE OR REPLACE FUNCTION telehub_lifecycle_run(at timestamptz DEFAULT now())
    RETURNS jsonb LANGUAGE plpgsql AS $fn$
    DECLARE
        started timestamptz := clock_timestamp();
        keep_cont interval := greatest({_keep("continuous")}, INTERVAL '{MIN_RAW_RETENTION}');
        keep_spot interval := {_keep("spot")};
        keep_agg interval := {_keep("aggregates")};
        keep_dead interval := {_keep("dead_letters")};
        keep_deliv interval := {_keep("deliveries")};{
        f'''
        keep_held interval := {_keep("held_records")};'''
        if held
        else ""
    }
        materialised timestamptz;
        result jsonb := '{{}}';
        n bigint;
        part text;
    BEGIN
        -- one run at a time (every ingester's maintenance loop calls it)
        IF NOT pg_try_advisory_xact_lock({LIFECYCLE_LOCK_KEY}) THEN
            RETURN jsonb_build_object('skipped', 'another run holds the lock');
        END IF;
        materialised := coalesce(telehub_materialised_until(), '-infinity');{refresh}
        -- continuous samples: only below what the aggregates have materialised
        IF keep_cont IS NOT NULL THEN
            -- and only rows stored while a refresh window still covered them (a replay older
            -- than the window is in no aggregate: it stays)
            DELETE FROM readings WHERE kind = 'continuous'
               AND time < least(at - keep_cont, materialised)
               AND stored_at < time + INTERVAL '{REFRESH_START_OFFSET}' - INTERVAL '1 day';
            GET DIAGNOSTICS n = ROW_COUNT;
            result := result || jsonb_build_object('continuous_deleted', n);
        END IF;
        IF keep_dead IS NOT NULL THEN
            DELETE FROM dead_letters WHERE received_at < at - keep_dead;
            GET DIAGNOSTICS n = ROW_COUNT;
            result := result || jsonb_build_object('dead_letters_deleted', n);
        END IF;
        IF keep_deliv IS NOT NULL THEN
            DELETE FROM alert_deliveries
             WHERE coalesce(delivered_at, next_attempt_at) < at - keep_deliv;
            GET DIAGNOSTICS n = ROW_COUNT;
            result := result || jsonb_build_object('deliveries_deleted', n);
        END IF;{_HELD_DELETE if held else ""}{drop_spot}
        result := result || jsonb_build_object('materialised_until', materialised);
        INSERT INTO telehub_job_runs (job, started_at, detail)
            VALUES ('lifecycle', started, result);
        RETURN result;
    END $fn$"""
    out = [fn]
    if mode == "timescaledb":
        out += [
            "CREATE OR REPLACE PROCEDURE telehub_lifecycle_job(job_id integer, config jsonb) "
            "LANGUAGE plpgsql AS $fn$ BEGIN PERFORM telehub_lifecycle_run(); END $fn$",
            "SELECT add_job('telehub_lifecycle_job', INTERVAL '1 day') WHERE NOT EXISTS ("
            "SELECT 1 FROM timescaledb_information.jobs WHERE proc_name = 'telehub_lifecycle_job')",
        ]
    return out
