"""``python -m bench.ingester_proc '<json options>'``: telehub's ingester in a process of its own.

Runs :class:`gateway.ingest.Ingester` unchanged (acknowledge after commit, deduplication, rules),
with settings from the JSON options, and reports on stdout, one JSON object per line:

* ``{"event": "ready"}`` once connected and subscribed;
* ``{"event": "progress", "readings": n, "t": last_batch_monotonic, "batches": b}`` at most every
  50 ms while batches are being committed (``readings`` = stored + duplicates + rejected);
* ``{"event": "stopped", "counters": {...}}`` on exit (stdin closed or SIGTERM).

Options: ``database_url``, ``mqtt_url``, ``client_id``, ``group`` (shared subscription),
``receive_maximum``, ``batch_max_readings``, ``uvloop`` (bool).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from datetime import timedelta
from typing import Any

from gateway.ingest import Ingester, StoredBatch
from gateway.settings import GatewaySettings


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _main(opts: dict[str, Any]) -> None:
    settings = GatewaySettings(
        database_url=opts["database_url"],
        mqtt_url=opts["mqtt_url"],
        ingester_client_id=opts["client_id"],
        shared_subscription_group=opts.get("group"),
        session_expiry=timedelta(minutes=10),
        receive_maximum=int(opts.get("receive_maximum", 1000)),
        batch_max_readings=int(opts.get("batch_max_readings", 5000)),
        reconnect_min=0.1,
        reconnect_max=1.0,
    )
    state = {"readings": 0, "t": 0.0, "batches": 0, "reported": 0.0}

    def on_stored(b: StoredBatch) -> None:
        state["readings"] += len(b.stored) + len(b.duplicates) + len(b.rejected)
        state["batches"] += 1
        state["t"] = time.monotonic()

    ingester = Ingester(settings, on_stored=on_stored, migrate_schema=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    task = asyncio.create_task(ingester.run(stop))
    # the Ingester exposes ``connected`` as a flag only: polled until the session is up
    while not ingester.connected and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    _emit({"event": "ready"})
    sent = (0, 0)
    while not stop.is_set() and not task.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
        now = (int(state["readings"]), int(state["batches"]))
        if now != sent:
            sent = now
            _emit({"event": "progress", "readings": now[0], "batches": now[1], "t": state["t"]})
    stop.set()
    await asyncio.wait_for(task, 30)
    _emit({"event": "stopped", "counters": ingester.counters.snapshot()})


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    opts: dict[str, Any] = json.loads(sys.argv[1])
    if opts.get("uvloop"):
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.run(_main(opts))
    else:
        asyncio.run(_main(opts))


if __name__ == "__main__":
    main()
