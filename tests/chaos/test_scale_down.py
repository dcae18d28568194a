"""Two ingesters share the readings (``$share/...``, MQTT 5); one is SIGKILLed for good under
load; the survivor and the hubs' outboxes (no receipt -> re-send) leave every reading stored
exactly once: shared members use clean start and a short session expiry, so the broker does not
keep queueing the dead member's share for days."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.cluster import Cluster, ClusterConfig, Proc
from tests.chaos.matrix import DEFAULT_ADMIN_DSN
from tests.chaos.reconcile import reconcile

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.slow]


class SharedCluster(Cluster):
    def _ingester_env(self) -> dict[str, str]:
        env = super()._ingester_env()
        env["TELEHUB_SHARED_SUBSCRIPTION_GROUP"] = "ingest"
        env["TELEHUB_SHARED_SESSION_EXPIRY"] = "5"
        return env


def test_scaling_two_ingesters_down_to_one_loses_and_doubles_nothing(tmp_path: Path) -> None:
    cluster = SharedCluster(
        ClusterConfig(
            workdir=tmp_path / "scale",
            readings=900,
            hubs=3,
            devices=2,
            rate=60.0,
            batch=10,
            window=4,
            receipt_timeout=3.0,
            postgres="shared",
            admin_dsn=DEFAULT_ADMIN_DSN,
        )
    )
    try:
        cluster.start()
        assert cluster.ingester is not None
        env = dict(cluster.ingester.env)
        env["TELEHUB_INGESTER_CLIENT_ID"] += "-2"
        second = Proc("ingester-2", cluster.ingester.argv, env, tmp_path / "ingester-2.log")
        second.start()
        deadline = time.monotonic() + 60
        while second.log_count("ingester connected") < 1:
            assert time.monotonic() < deadline, second.log_tail()
            time.sleep(0.1)
        time.sleep(4)  # both members take their share of the live load
        stored_before = cluster.stored() or 0
        second.kill()  # scaled down: gone for good, with its unacknowledged share
        total = sum(h.quota for h in cluster.hubs)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            committed, left, _ = cluster.outbox_totals()
            if committed >= total and left == 0:
                break
            time.sleep(0.5)
        cluster.stop_hubs()
        cluster.ingester.stop()
        result = reconcile(cluster)
        second.close()
    finally:
        cluster.close()
    assert stored_before > 0
    assert result.sent == total, result.last_line()
    assert result.clean, result.last_line()
    assert (result.lost, result.duplicates) == (0, 0)
