"""The naive baseline: what a quick script would do.

A paho-mqtt client (MQTT 3.1.1, clean session, automatic acknowledgement: paho sends the PUBACK
as soon as ``on_message`` returns, whatever happened to the data), stdlib ``json.loads`` of each
message and one autocommitted ``INSERT ... ON CONFLICT DO NOTHING`` per reading. No validation, no
device bindings, no rules, no receipts; a crash loses whatever was acknowledged but not inserted.

Run as ``python -m bench.naive '<json options>'`` (the child), driven by :func:`run_naive`. It
reports progress on stdout exactly like :mod:`bench.ingester_proc`, so :class:`Ingesters`-style
bookkeeping applies.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import env
from bench.cpu import CpuMeter
from bench.generate import Message
from bench.publisher import publish

_INSERT = (
    "INSERT INTO readings (time, key, patient_id, hub_id, device_id, source, kind, mdc, loinc, "
    "unit, mdc_unit, value, special, orig_value, orig_unit, panel, grp, flags, time_source, "
    "device_time, received_at, hub_clock, sequence, user_id, raw) VALUES (%s, %s, %s, %s, %s, "
    "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (key, time) DO NOTHING"
)


def _child(opts: dict[str, Any]) -> None:
    import paho.mqtt.client as paho
    import psycopg
    from paho.mqtt.enums import CallbackAPIVersion

    db = psycopg.connect(opts["database_url"], autocommit=True)
    state = {"n": 0, "t": 0.0}
    lock = threading.Lock()

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        hub = msg.topic.split("/")[3]
        body = json.loads(msg.payload)
        for r in body["readings"]:
            db.execute(_INSERT, (
                r["time"], r["key"], r["patient"], hub, r["device"], r["source"], r["kind"],
                r["mdc"], r["loinc"], r["unit"], r["mdc_unit"], r["value"], r.get("special"),
                r.get("orig_value"), r.get("orig_unit"), r.get("panel"), r["group"], r["flags"],
                r["time_source"], r.get("device_time"), r["received_at"], r["hub_clock"],
                r.get("sequence"), r.get("user_id"), bytes.fromhex(r["raw"]),
            ))  # fmt: skip
        with lock:
            state["n"] += len(body["readings"])
            state["t"] = time.monotonic()

    def on_connect(client: paho.Client, *args: object) -> None:
        client.subscribe("telehub/v1/hubs/+/readings", qos=1)

    def on_subscribe(*args: object) -> None:
        sys.stdout.write(json.dumps({"event": "ready"}) + "\n")
        sys.stdout.flush()

    host, port = opts["mqtt_url"].removeprefix("mqtt://").split(":")
    c = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id="bench-naive",
        protocol=paho.MQTTv311,
        clean_session=True,
    )
    c.on_message = on_message
    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.connect(host, int(port))
    c.loop_start()

    def report() -> None:
        last = -1
        while True:
            time.sleep(0.05)
            with lock:
                n, t = state["n"], state["t"]
            if n != last:
                last = int(n)
                sys.stdout.write(
                    json.dumps({"event": "progress", "readings": n, "batches": n, "t": t}) + "\n"
                )
                sys.stdout.flush()

    threading.Thread(target=report, daemon=True).start()
    sys.stdin.read()  # until the parent closes stdin
    c.loop_stop()
    c.disconnect()
    db.close()
    sys.stdout.write(json.dumps({"event": "stopped", "counters": {}}) + "\n")


def run_naive(
    workdir: Path, dsn: str, msgs: Sequence[Message], *, publishers: int = 2, label: str = "naive"
) -> dict[str, Any]:
    from bench.ingest import Ingesters

    readings = sum(m.readings for m in msgs)
    env.reset(dsn)
    with (
        env.broker(workdir / f"broker-{label}") as b,
        Ingesters(dsn, b.url, module="bench.naive") as ing,
    ):
        t_go = [0.0]
        meter = CpuMeter(ing.pids, b.pid)
        publish(
            b.port, msgs, processes=publishers, on_go=lambda: t_go.__setitem__(0, time.monotonic())
        )
        t_end = ing.wait_for(readings, timeout=max(120.0, readings / 100))
        cpu = meter.stop()
    seconds = t_end - t_go[0]
    stored = env.count_readings(dsn)
    if stored != readings:
        raise env.BenchError(f"{label}: {stored} readings stored, {readings} sent")
    return {
        "readings": readings,
        "messages": len(msgs),
        "seconds": round(seconds, 3),
        "readings_per_s": round(readings / seconds, 1),
        "cpu_cores": cpu,
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    _child(json.loads(sys.argv[1]))
