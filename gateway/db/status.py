"""``telehub db status``: the storage mode and the state of the data lifecycle.

Reports the mode, the chunk (TimescaleDB) or partition (plain PostgreSQL) counts, the compression
ratio, the policies (TimescaleDB jobs; retention per data class) and their last runs. Works on any
``query(sql) -> rows`` so the TimescaleDB branch is tested against PGlite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Query = Callable[[str], Sequence[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    target: str
    schedule: str
    config: str
    last_run: str | None
    last_status: str | None


@dataclass(frozen=True, slots=True)
class DbStatus:
    mode: str  # "timescaledb", "partitioned" or "none" (not migrated)
    chunks: int = 0  # chunks or partitions of readings
    compressed_chunks: int = 0
    bytes_before_compression: int = 0
    bytes_after_compression: int = 0
    retention: tuple[tuple[str, str | None, str], ...] = ()
    policies: tuple[Policy, ...] = ()
    materialised_until: str | None = None
    lifecycle_last_run: str | None = None
    lifecycle_last_detail: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def compression_ratio(self) -> float | None:
        if not self.bytes_after_compression:
            return None
        return self.bytes_before_compression / self.bytes_after_compression

    def render(self) -> str:
        lines = [f"storage mode: {self.mode}"]
        unit = "chunks" if self.mode == "timescaledb" else "partitions"
        lines.append(f"readings {unit}: {self.chunks}")
        if self.mode == "timescaledb":
            ratio = self.compression_ratio
            lines.append(
                f"compressed chunks: {self.compressed_chunks}, compression ratio: "
                + (f"{ratio:.1f}x" if ratio is not None else "n/a (nothing compressed yet)")
            )
        lines.append(f"aggregates materialised until: {self.materialised_until or 'never'}")
        lines.append("retention per data class:")
        lines += [f"  {c:<13} {k or 'never':<10} {why}" for c, k, why in self.retention]
        if self.policies:
            lines.append("policies (jobs):")
            lines += [
                f"  {p.name} on {p.target} every {p.schedule}: last run "
                f"{p.last_run or 'never'} ({p.last_status or '-'}) {p.config}"
                for p in self.policies
            ]
        lines.append(
            f"lifecycle run: last {self.lifecycle_last_run or 'never'}"
            + (f" {self.lifecycle_last_detail}" if self.lifecycle_last_detail else "")
        )
        return "\n".join(lines)


def _one(query: Query, sql: str) -> Any:
    rows = query(sql)
    return rows[0][0] if rows else None


def db_status(query: Query) -> DbStatus:
    kind = _one(
        query, "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass('readings')"
    )
    if kind is None:
        return DbStatus("none", notes=("not migrated: run `telehub db migrate`",))
    mode = "partitioned" if kind == "p" else "timescaledb"
    retention = tuple(
        (str(c), None if k is None else str(k), str(r))
        for c, k, r in query(
            "SELECT data_class, keep::text, reason FROM telehub_retention ORDER BY data_class"
        )
    )
    last = query(
        "SELECT finished_at::text, detail::text FROM telehub_job_runs WHERE job = 'lifecycle'"
        " ORDER BY run_id DESC LIMIT 1"
    )
    common: dict[str, Any] = {
        "retention": retention,
        "materialised_until": _one(query, "SELECT telehub_materialised_until()::text"),
        "lifecycle_last_run": last[0][0] if last else None,
        "lifecycle_last_detail": last[0][1] if last else None,
    }
    if mode == "partitioned":
        parts = _one(
            query,
            "SELECT count(*)::int FROM pg_inherits WHERE inhparent = 'readings'::regclass",
        )
        return DbStatus(mode, chunks=int(parts), **common)
    chunks = query(
        "SELECT count(*)::int, (count(*) FILTER (WHERE is_compressed))::int"
        " FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
    )[0]
    sizes = query(
        "SELECT coalesce(sum(before_compression_total_bytes), 0)::bigint::text,"
        " coalesce(sum(after_compression_total_bytes), 0)::bigint::text"
        " FROM hypertable_columnstore_stats('readings')"
    )[0]
    policies = tuple(
        Policy(str(n), str(t or ""), str(s), str(cfg or ""), lr, ls)
        for n, t, s, cfg, lr, ls in query(
            "SELECT j.proc_name, coalesce(j.hypertable_name, ''), j.schedule_interval::text,"
            " coalesce(j.config::text, ''), s.last_run_started_at::text, s.last_run_status"
            " FROM timescaledb_information.jobs j"
            " LEFT JOIN timescaledb_information.job_stats s USING (job_id)"
            " WHERE j.job_id >= 1000 ORDER BY j.job_id"
        )
    )
    return DbStatus(
        mode,
        chunks=int(chunks[0]),
        compressed_chunks=int(chunks[1]),
        bytes_before_compression=int(sizes[0]),
        bytes_after_compression=int(sizes[1]),
        policies=policies,
        **common,
    )
