"""Reconcile the database against the ground truth of the simulated hubs.

Ground truth: hub ``h`` committed readings ``0 .. sent[h]-1`` to its outbox (``chaos.next``); each
carries its number in ``readings.sequence`` and comes from device ``<h>-d<n mod devices>``.

* ``stored``: distinct ground-truth readings (hub, number) present in ``readings``;
* ``lost = sent - stored``;
* ``duplicates``: rows beyond one per ground-truth reading, whatever their keys; a reading stored
  under two different keys is counted here too, and separately as ``key_unstable`` (a key that
  changed between the first send and a re-send would be a bug in the edge);
* ``unexpected``: rows that belong to no ground-truth reading (a number the hub never committed,
  or the wrong device for the number): must be 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.chaos.cluster import Cluster


@dataclass(frozen=True, slots=True)
class Reconciliation:
    sent: int
    stored: int
    duplicates: int
    key_unstable: int
    unexpected: int
    dead_letters: int
    missing_sample: tuple[tuple[str, int], ...]

    @property
    def lost(self) -> int:
        return self.sent - self.stored

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.unexpected == 0

    def last_line(self) -> str:
        return (
            f"chaos: sent={self.sent} stored={self.stored} lost={self.lost} "
            f"duplicates={self.duplicates}"
        )


_SUMMARY = """
WITH truth AS (
    SELECT * FROM unnest(%(hubs)s::text[], %(sent)s::bigint[]) AS t(hub_id, sent)
), per AS (
    SELECT hub_id, sequence, count(*) AS n, count(DISTINCT key) AS keys,
           bool_and(device_id = hub_id || '-d' || (sequence %% %(devices)s)::text) AS device_ok
    FROM readings WHERE hub_id = ANY(%(hubs)s) GROUP BY hub_id, sequence
)
SELECT
    count(*) FILTER (WHERE p.sequence >= 0 AND p.sequence < t.sent AND p.device_ok),
    coalesce(sum(p.n - 1), 0),
    count(*) FILTER (WHERE p.keys > 1),
    coalesce(sum(p.n) FILTER (WHERE p.sequence IS NULL OR p.sequence < 0
                              OR p.sequence >= t.sent OR NOT p.device_ok), 0)
FROM per p JOIN truth t USING (hub_id)
"""

_MISSING = """
WITH truth AS (
    SELECT * FROM unnest(%(hubs)s::text[], %(sent)s::bigint[]) AS t(hub_id, sent)
)
SELECT t.hub_id, s.n FROM truth t CROSS JOIN LATERAL generate_series(0, t.sent - 1) AS s(n)
WHERE NOT EXISTS (SELECT 1 FROM readings r WHERE r.hub_id = t.hub_id AND r.sequence = s.n)
ORDER BY 1, 2 LIMIT 10
"""


def reconcile(cluster: Cluster) -> Reconciliation:
    """Run after every process has stopped (nothing is in motion any more)."""
    hubs = [h.hub_id for h in cluster.hubs]
    sent = [h.snapshot()[0] for h in cluster.hubs]
    params = {"hubs": hubs, "sent": sent, "devices": cluster.cfg.devices}
    stored, dups, unstable, unexpected = (int(str(v)) for v in _query(cluster, _SUMMARY, params)[0])
    # rows of other hubs (none expected) are unexpected too
    others = int(
        str(
            cluster.query("SELECT count(*) FROM readings WHERE NOT hub_id = ANY(%s)", (hubs,))[0][0]
        )
    )
    dead = int(str(cluster.query("SELECT count(*) FROM dead_letters")[0][0]))
    total = sum(sent)
    missing: tuple[tuple[str, int], ...] = ()
    if stored < total:
        missing = tuple((str(h), int(str(n))) for h, n in _query(cluster, _MISSING, params))
    return Reconciliation(total, stored, dups, unstable, unexpected + others, dead, missing)


def _query(cluster: Cluster, sql: str, params: dict[str, object]) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(cluster.dsn, connect_timeout=10) as conn:
        return conn.execute(sql.encode(), params).fetchall()
