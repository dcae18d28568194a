"""Latency at a fixed rate: publish → commit (receipt) and publish → alert (NOTIFY).

The publishers are paced (:mod:`bench.publisher`) at ``rate`` readings/s, one reading per message
(live hubs publish what they have, a reading or a few, as it comes). Two listeners in processes of
their own record monotonic arrival times:

* *commit*: the ingester publishes each message's receipt right after its transaction commits;
  a subscriber to every hub's receipts topic records when the receipt arrives. publish → receipt
  is therefore publish → commit plus one broker hop (the time a hub learns its reading is safe).
* *alert*: one reading per *probe* patient breaches the patient's rule (SpO2 85 % < 90 %), ten
  probes per second. The ingester raises the alert in the batch transaction and PostgreSQL
  delivers ``NOTIFY telehub_alerts, '<alert_id>'`` at commit, which a ``LISTEN`` connection
  records; the alert's ``reading_key`` leads back to the probe's publish time. This is publish →
  the moment the webhook worker and the live stream (which LISTEN on the same channel) are woken.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import statistics
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from bench import env
from bench.generate import Household, Message, Workload, make_workload, messages
from bench.ingest import Ingesters
from bench.publisher import interleave_send_times, publish
from wire import contract

PROBES_PER_SECOND = 10


class _MsgId(msgspec.Struct):
    msg_id: str


def _receipts_child(port: int, expected: int, conn: Connection) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    dec = msgspec.json.Decoder(_MsgId)
    got: dict[str, float] = {}

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        got.setdefault(dec.decode(msg.payload).msg_id, time.monotonic())

    def on_subscribe(*args: object) -> None:
        conn.send("ready")

    c = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id="bench-receipts",
        protocol=paho.MQTTv311,
        clean_session=True,
    )
    c.on_message = on_message
    c.on_connect = lambda client, *a: client.subscribe("telehub/v1/hubs/+/receipts", qos=0)
    c.on_subscribe = on_subscribe
    c.connect("127.0.0.1", port)
    while not conn.poll():
        c.loop(0.05)
    conn.recv()  # "stop"
    t_end = time.monotonic() + 5
    while len(got) < expected and time.monotonic() < t_end:
        c.loop(0.05)
    c.disconnect()
    conn.send(got)


def _notify_child(dsn: str, conn: Connection) -> None:
    got: list[tuple[int, float]] = []
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("LISTEN telehub_alerts")
        conn.send("ready")
        while not conn.poll():
            for n in db.notifies(timeout=0.05):
                got.append((int(n.payload), time.monotonic()))
        conn.recv()
        for n in db.notifies(timeout=1.0):
            got.append((int(n.payload), time.monotonic()))
    conn.send(got)


def _pct(values: Sequence[float], p: float) -> float:
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def _stats(ms: Sequence[float]) -> dict[str, Any]:
    if not ms:
        return {"samples": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "samples": len(ms),
        "p50_ms": round(_pct(ms, 50), 2),
        "p99_ms": round(_pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def latency_workload(
    homes: Sequence[Household], rate: float, seconds: float, seed: int
) -> tuple[Workload, list[Message]]:
    readings = int(rate * seconds)
    records = max(1, math.ceil(readings / (3 * len(homes))))
    probes = min(len(homes), int(PROBES_PER_SECOND * seconds))
    wl = make_workload(homes, records, seed=seed, probes=probes)
    return wl, messages(wl, 1, limit=readings)


def run_latency(
    workdir: Path,
    dsn: str,
    homes: Sequence[Household],
    *,
    rate: float,
    seconds: float,
    publishers: int = 2,
    seed: int = 7,
) -> dict[str, Any]:
    wl, msgs = latency_workload(homes, rate, seconds, seed)
    key_msg: dict[str, str] = {}
    probe_keys = set(wl.probe_keys)
    for m in msgs:
        if m.probe:
            for raw in contract.decode_message(m.payload).readings:
                k = contract.decode_reading(raw).key
                if k in probe_keys:
                    key_msg[k] = m.msg_id
    env.reset(dsn)
    ctx = mp.get_context("fork")
    with env.broker(workdir / f"broker-latency-{int(rate)}") as b, Ingesters(dsn, b.url) as ing:
        r_parent, r_child = ctx.Pipe()
        n_parent, n_child = ctx.Pipe()
        pr = ctx.Process(target=_receipts_child, args=(b.port, len(msgs), r_child), daemon=True)
        pn = ctx.Process(target=_notify_child, args=(dsn, n_child), daemon=True)
        pr.start()
        pn.start()
        try:
            for c in (r_parent, n_parent):
                if not c.poll(30) or c.recv() != "ready":
                    raise env.BenchError("a latency listener did not start")
            results = publish(b.port, msgs, processes=publishers, rate=rate)
            ing.wait_for(sum(m.readings for m in msgs), timeout=seconds + 60)
            r_parent.send("stop")
            n_parent.send("stop")
            receipts: dict[str, float] = r_parent.recv() if r_parent.poll(30) else {}
            notifies: list[tuple[int, float]] = n_parent.recv() if n_parent.poll(30) else []
        finally:
            for p in (pr, pn):
                p.join(10)
                if p.is_alive():
                    p.kill()
    sent = interleave_send_times(msgs, publishers, results)
    commit_ms = [(receipts[m] - t) * 1000 for m, t in sent.items() if m in receipts]
    first_notify: dict[int, float] = {}
    for alert_id, t in notifies:
        first_notify.setdefault(alert_id, t)
    with psycopg.connect(dsn) as conn:
        alerts = conn.execute("SELECT alert_id, reading_key FROM alerts").fetchall()
    alert_ms = [
        (first_notify[a] - sent[key_msg[k]]) * 1000
        for a, k in alerts
        if a in first_notify and k in key_msg and key_msg[k] in sent
    ]
    span = max(r.t_sent for r in results) - min(r.t_start for r in results)
    return {
        "rate_target": rate,
        "rate_achieved": round(len(msgs) / span, 1) if span > 0 else None,
        "seconds": seconds,
        "messages": len(msgs),
        "receipts_seen": len(commit_ms),
        "probes": len(key_msg),
        "alerts_seen": len(alert_ms),
        "publish_to_commit": _stats(commit_ms),
        "publish_to_alert": _stats(alert_ms),
    }
