"""Simulators from outside (issue 13 item 3): ``telehub simulate`` runs the devices in a process
of its own, ``telehub edge --config`` (another process) reaches them through the simulated-radio
transport its configuration selects and the serial pty on a stable path, exactly as it would
reach hardware; the readings of every device land in PostgreSQL through the real ingester. The
edge is stopped and started again: the serial port reopens on the same path. A fault injected
from the command line (the scale sends every record twice) changes nothing in what is stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from gateway.db import migrate
from gateway.fleet import Fleet, apply_fleet
from gateway.ingest import Ingester
from gateway.settings import GatewaySettings
from wire import contract
from wire.mqtt import MqttClient, MqttSettings

pytestmark = pytest.mark.integration

SCALE = "C0:FE:00:00:00:02"  # P001's scale (simulators.fleet addressing)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "telehub.cli", *args]


@contextlib.asynccontextmanager
async def process(argv: list[str], cwd: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _lines_until(proc: asyncio.subprocess.Process, prefix: str) -> list[str]:
    assert proc.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, f"process ended before {prefix!r}: {seen}"
            seen.append(line.strip())
            if line.startswith(prefix):
                return seen


async def _until(predicate: object, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.2)


async def test_a_bad_fault_is_refused_with_the_reason(tmp_path: Path) -> None:
    async with process(
        _cli("simulate", "--listen", "127.0.0.1:0", "--fault", f"{SCALE}/no_such_fault=1"), tmp_path
    ) as proc:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "--fault" in out.decode() and "no_such_fault" in out.decode()
    async with process(
        _cli("simulate", "--fault", "C0:FE:99:99:99:99/duplicate=true"), tmp_path
    ) as proc:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "no simulated device C0:FE:99:99:99:99" in out.decode()


async def test_the_edge_process_talks_to_the_simulator_process_as_to_hardware(
    fresh_db: str, mqtt_url: str, tmp_path: Path
) -> None:
    hub = f"hub-sim-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "hub.toml"
    sim_argv = _cli(
        "simulate",
        "--listen",
        "127.0.0.1:0",
        "--patients",
        "3",
        "--serial",
        "--speed",
        "1",
        "--serial-dir",
        str(tmp_path / "ports"),
        "--hub-config",
        str(config),
        "--hub-id",
        hub,
        "--mqtt-url",
        mqtt_url,
        "--data-dir",
        str(tmp_path / "hub-data"),
        "--fault",
        f"{SCALE}/duplicate=true",
    )
    migrate(fresh_db)
    settings = GatewaySettings(
        database_url=fresh_db,
        mqtt_url=mqtt_url,
        ingester_client_id=f"ingester-{uuid.uuid4().hex[:8]}",
        reconnect_min=0.05,
        reconnect_max=0.3,
        device_cache_refresh=0.2,
    )
    ingester = Ingester(settings, migrate_schema=False)
    gw_stop = asyncio.Event()
    gw = asyncio.create_task(ingester.run(gw_stop))

    def stored() -> dict[str, int]:
        with psycopg.connect(fresh_db) as conn:
            rows = conn.execute(
                "SELECT device_id, count(*) FROM readings WHERE hub_id = %s GROUP BY device_id",
                (hub,),
            ).fetchall()
        return {str(d): int(n) for d, n in rows}

    try:
        async with process(sim_argv, tmp_path) as sim:
            lines = await _lines_until(sim, "listening ")
            devices = [ln.split()[1:4] for ln in lines if ln.startswith("device ")]
            assert {family for _, _, family in devices} == {
                "blood-pressure",
                "weight",
                "thermometer",
                "glucose",
                "nonin-ble",
                "pulse-oximeter",
                "contec-serial",
            }
            with psycopg.connect(fresh_db) as conn:
                apply_fleet(
                    conn,
                    Fleet.from_dict(
                        {
                            "orgs": [{"id": "h", "name": "H", "kind": "hospital"}],
                            "patients": [
                                {"id": p, "orgs": ["h"]} for p in {p for _, p, _ in devices}
                            ],
                            "hubs": [{"id": hub, "org": "h"}],
                            "devices": [{"id": d, "hub": hub, "patient": p} for d, p, _ in devices],
                        }
                    ),
                )
            serial = next(d for d, _, family in devices if family == "contec-serial")
            assert "simulated" in config.read_text()
            await _until(lambda: ingester.connected)
            async with process(
                _cli("--log-level", "INFO", "edge", "--config", str(config)), tmp_path
            ) as edge:
                # every simulated device, BLE and serial, reaches PostgreSQL
                await _until(lambda: set(stored()) == {d for d, _, _ in devices})
                edge.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(edge.wait(), 30) == 0
            first = stored()[serial]
            # a second run of the edge: the serial device is found on the same path again
            async with process(_cli("edge", "--config", str(config)), tmp_path) as edge:
                await _until(lambda: stored()[serial] > first + 3)
                edge.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(edge.wait(), 30) == 0
            sim.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(sim.wait(), 30) == 0
    finally:
        gw_stop.set()
        await asyncio.wait_for(gw, 15)
        async with MqttClient(MqttSettings.from_url(mqtt_url), f"cleanup-{hub}") as c:
            await c.publish(contract.status_topic(hub), b"", retain=True)
    with psycopg.connect(fresh_db) as conn:
        n, keys, dead = conn.execute(
            "SELECT count(*), count(DISTINCT key), "
            "(SELECT count(*) FROM dead_letters WHERE hub_id = %s) FROM readings "
            "WHERE hub_id = %s AND device_id = %s",
            (hub, hub, SCALE),
        ).fetchone() or (0, 0, 0)
    # the scale sent every record twice; each weight is stored once, nothing was rejected
    assert n >= 1 and (n, dead) == (keys, 0)
