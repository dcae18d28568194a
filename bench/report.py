"""The benchmark's output: one table on stdout and the same figures as JSON.

``FIGURES`` lists every figure the JSON must hold (dotted paths); the CI test checks them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

#: Dotted paths of the figures every run writes (values may be null only where noted).
FIGURES: Final = (
    "machine.cpus", "machine.load_before", "sizes.readings",
    "ceiling.readings_per_s", "ceiling.batched.readings_per_s", "ceiling.single.readings_per_s",
    "publishers_only.readings_per_s",
    "naive.per_message_1.readings_per_s", "naive.per_message_10.readings_per_s",
    "telehub.per_message_1.readings_per_s", "telehub.per_message_10.readings_per_s",
    "telehub.shared_2.per_message_1.readings_per_s",
    "telehub.shared_2.per_message_10.readings_per_s",
    "ratios.telehub_10_to_ceiling", "ratios.telehub_10_to_naive", "ratios.telehub_1_to_naive",
    "latency.rate_1000.publish_to_commit.p50_ms", "latency.rate_1000.publish_to_commit.p99_ms",
    "latency.rate_1000.publish_to_alert.p50_ms", "latency.rate_1000.publish_to_alert.p99_ms",
    "latency.rate_5000.publish_to_commit.p50_ms", "latency.rate_5000.publish_to_commit.p99_ms",
    "latency.rate_5000.publish_to_alert.p50_ms", "latency.rate_5000.publish_to_alert.p99_ms",
    "edge.idle.rss_mib", "edge.idle.cpu_percent",
    "edge.streaming.rss_mib", "edge.streaming.cpu_percent", "edge.streaming.readings_per_s",
    "edge.replay.readings_per_s", "edge.replay.x_live_rate",
    "programme.no_programme.per_message_10.readings_per_s",
    "programme.copd.per_message_10.readings_per_s",
    "programme.ratio_10", "programme.ratio_1",
    "programme.copd.latency_1000.publish_to_alert.p99_ms",
    "targets",
)  # fmt: skip


def get(data: dict[str, Any], path: str) -> Any:
    cur: Any = data
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(path)
        cur = cur[part]
    return cur


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""

    def t(value: Any, goal: str, ok: bool | None) -> dict[str, Any]:
        return {"value": value, "goal": goal, "met": ok}

    ratio = r["ratios"]["telehub_10_to_ceiling"]
    one = r["telehub"]["per_message_1"]["readings_per_s"]
    alert99 = r["latency"]["rate_1000"]["publish_to_alert"]["p99_ms"]
    rss = r["edge"]["idle"]["rss_mib"]
    cpu = r["edge"]["idle"]["cpu_percent"]
    replay = r["edge"]["replay"]["x_live_rate"]
    return {
        "ceiling_share_10": t(
            ratio, ">= 0.60 of the COPY ceiling at 10 readings/message", ratio >= 0.60
        ),
        "readings_per_s_1": t(one, ">= 25000 readings/s at 1 reading/message", one >= 25000),
        "alert_p99_1000": t(
            alert99,
            "p99 publish->alert <= 50 ms at 1000 readings/s",
            None if alert99 is None else alert99 <= 50,
        ),
        "edge_idle_rss": t(rss, "edge agent <= 48 MiB resident", rss <= 48),
        "edge_idle_cpu": t(cpu, "edge agent <= 1 % CPU idle", cpu <= 1.0),
        "replay_x_live": t(
            replay, "replay >= 5x the live rate", None if replay is None else replay >= 5
        ),
        **{
            f"programme_ratio_{n}": t(
                r["programme"][f"ratio_{n}"],
                f">= 0.9 of ingest without a programme at {n} reading(s)/message",
                r["programme"][f"ratio_{n}"] >= 0.9,
            )
            for n in (10, 1)
            if "programme" in r
        },
    }


def programme_table(r: dict[str, Any]) -> str:
    """Ingest without and with every patient on a programme's default rules."""
    p = r["programme"]
    lines = [f"programme {p['programme']}: readings/s without -> with, ratio (target >= 0.9)"]
    for n in (10, 1):
        key = f"per_message_{n}"
        lines.append(
            f"  {n:>2}/msg: {p['no_programme'][key]['readings_per_s']:.0f} -> "
            f"{p['copd'][key]['readings_per_s']:.0f}  ratio {p[f'ratio_{n}']}"
        )
    lat = p["copd"]["latency_1000"]["publish_to_alert"]
    lines.append(f"  p99 publish->alert at 1000/s (legacy alert): {lat['p99_ms']} ms")
    lines.append(f"  clinical alerts raised: {p['copd']['clinical_alerts']}")
    return "\n".join(lines)


def _n(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float | int):
        return f"{v:,.{digits}f}"
    return str(v)


def table(r: dict[str, Any]) -> str:
    ceiling = r["ceiling"]["readings_per_s"]
    naive = {per: r["naive"][f"per_message_{per}"]["readings_per_s"] for per in (1, 10)}
    rows: list[tuple[str, str, str, str]] = [
        ("database ceiling: binary COPY, no MQTT", _n(ceiling), "1.00", ""),
        (
            f"  (batched, one transaction per {r['ceiling']['batch']} rows)",
            _n(r["ceiling"]["batched"]["readings_per_s"]),
            "",
            "",
        ),
        ("  (one COPY, one transaction)", _n(r["ceiling"]["single"]["readings_per_s"]), "", ""),
        (
            "publishers alone (1 reading/message)",
            _n(r["publishers_only"]["readings_per_s"]),
            "",
            "",
        ),
    ]
    for per in (1, 10):
        v = r["naive"][f"per_message_{per}"]["readings_per_s"]
        rows.append(
            (
                f"naive: INSERT per reading, ack on receipt ({per}/msg)",
                _n(v),
                f"{v / ceiling:.2f}",
                "1.0",
            )
        )
    for label, key in (
        ("telehub, 1 ingester", "telehub"),
        ("telehub, 2 ingesters ($share)", "shared_2"),
    ):
        src = r["telehub"] if key == "telehub" else r["telehub"]["shared_2"]
        for per in (1, 10):
            v = src[f"per_message_{per}"]["readings_per_s"]
            rows.append(
                (f"{label} ({per}/msg)", _n(v), f"{v / ceiling:.2f}", f"{v / naive[per]:.1f}")
            )
    w = max(len(a) for a, *_ in rows)
    out = [f"{'readings/s':>{w + 12}}  {'÷ ceiling':>9}  {'÷ naive':>11}"]
    out += [f"{a:<{w}}  {b:>10}  {c:>9}  {d:>11}" for a, b, c, d in rows]
    out.append("")
    out.append("latency, 1 reading/message        p50 ms    p99 ms   max ms  samples")
    for rate in (1000, 5000):
        lat = r["latency"][f"rate_{rate}"]
        for what in ("publish_to_commit", "publish_to_alert"):
            s = lat[what]
            name = f"{rate:>5}/s {what.replace('_', ' ').replace('publish to', 'publish→')}"
            out.append(
                f"{name:<32} {_n(s['p50_ms'], 1):>7}  {_n(s['p99_ms'], 1):>8} "
                f"{_n(s['max_ms'], 1):>8}  {_n(s['samples']):>7}"
            )
    e = r["edge"]
    out.append("")
    out.append("edge agent                      RSS MiB   CPU %   readings/s")
    out.append(
        f"{'idle':<30} {_n(e['idle']['rss_mib'], 1):>8} "
        f"{_n(e['idle']['cpu_percent'], 2):>7} {_n(e['idle']['readings_per_s'], 1):>12}"
    )
    out.append(
        f"{'streaming':<30} {_n(e['streaming']['rss_mib'], 1):>8} "
        f"{_n(e['streaming']['cpu_percent'], 2):>7} "
        f"{_n(e['streaming']['readings_per_s'], 1):>12}"
    )
    rp = e["replay"]
    out.append(
        f"replay after a {rp['disconnect_s']:.0f} s disconnect: backlog {rp['backlog']} "
        f"readings drained at {_n(rp['readings_per_s'])} readings/s "
        f"({_n(rp['x_live_rate'], 1)}x the live rate)"
    )
    out.append("")
    out.append("targets")
    for t in r["targets"].values():
        mark = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
        out.append(f"  {mark:<8} {t['goal']}: {_n(t['value'], 2)}")
    return "\n".join(out)


def write_json(r: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=2, sort_keys=False) + "\n")
