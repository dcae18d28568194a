"""A simulated home hub for the chaos matrix: the REAL edge :class:`edge.outbox.Outbox` and
:class:`edge.uplink.Uplink`, fed by a generator of spot readings with ground-truth numbers.

Run as ``python -m tests.chaos.hub --hub-id H --url mqtt://... --data-dir D --quota Q --rate R``.

Ground truth: reading number ``g`` (0, 1, 2, ...) of a hub is a PLX spot-check SpO2 record from
device ``<hub>-d<g mod devices>`` with device sequence number ``g`` (``Reading.sequence``), turned
into a wire reading by the edge's own :func:`edge.readings.to_readings` (so its key is the key the
edge computes). The generator commits each chunk of readings together with the next ``g`` (state
``chaos.next``) in ONE outbox transaction: after a SIGKILL the hub restarts at the first number it
had not committed, and ``chaos.next`` is exactly the number of readings committed ("sent"). When
the outbox is full the generator waits (the device keeps its records) and counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from drivers.observation import DeviceTime, Kind, Measurement, Observation, Quantity
from edge.config import HubConfig, Limits, MqttConfig
from edge.outbox import Outbox, OutboxFull
from edge.readings import RecordContext, to_readings
from edge.uplink import Uplink
from wire import contract

log = logging.getLogger(__name__)

NEXT = "chaos.next"
TZ = "Europe/Copenhagen"
#: Seconds between generator ticks; each tick commits what the rate allows since the last one.
TICK = 0.05
MAX_CHUNK = 500


def device_of(hub: str, g: int, devices: int) -> str:
    return f"{hub}-d{g % devices}"


def patient_of(hub: str) -> str:
    return f"{hub}-p"


def spo2_record(hub: str, g: int, devices: int, now: datetime, tz: ZoneInfo) -> contract.Reading:
    """Ground-truth reading ``g`` of ``hub`` (a PLX spot-check record, as the edge makes it)."""
    local = now.astimezone(tz)
    m = Measurement(
        source="2a5e",
        raw=g.to_bytes(8, "little") + b"\x5e\x2a",
        observations=(
            Observation(
                150456, Quantity(Decimal(90 + g % 10), "%", 262688), loinc=("59408-5", "2708-6")
            ),
        ),
        kind=Kind.SPOT,
        timestamp=DeviceTime(
            local.year, local.month, local.day, local.hour, local.minute, local.second
        ),
        clock_set=True,
        sequence=g,
    )
    ctx = RecordContext(
        device=device_of(hub, g, devices),
        patient=patient_of(hub),
        received_at=now,
        received_ns=time.time_ns(),
        clock_set_by_hub=True,
        tz=tz,
        hub_clock="synchronized",
    )
    (reading,) = to_readings(m, ctx)
    return reading


async def generate(
    outbox: Outbox,
    uplink: Uplink,
    hub: str,
    *,
    quota: int,
    rate: float,
    devices: int,
    stop: asyncio.Event,
) -> None:
    """Commit readings ``chaos.next .. quota-1`` at ``rate`` per second."""
    tz = ZoneInfo(TZ)
    g = int(outbox.get_state(NEXT) or 0)
    started, base = time.monotonic(), g
    while g < quota and not stop.is_set():
        due = min(quota, base + int((time.monotonic() - started) * rate) + 1)
        n = min(due - g, MAX_CHUNK)
        if n > 0:
            now = datetime.now(UTC)
            chunk = [spo2_record(hub, i, devices, now, tz) for i in range(g, g + n)]
            try:
                outbox.add(chunk, state={NEXT: str(g + n)})
            except OutboxFull:
                uplink.state.count("chaos.outbox_full")
            else:
                g += n
                uplink.wake()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK)
    log.info("hub %s: generator done at %d", hub, g)


def hub_config(args: argparse.Namespace) -> HubConfig:
    return HubConfig(
        hub_id=args.hub_id,
        mqtt=MqttConfig(url=args.url, keepalive=10, session_expiry_seconds=3600),
        data_dir=args.data_dir,
        timezone=TZ,
        heartbeat_seconds=args.heartbeat,
        limits=Limits(
            batch_size=args.batch,
            in_flight_messages=args.window,
            receipt_timeout_seconds=args.receipt_timeout,
            receipt_timeout_max_seconds=max(args.receipt_timeout * 4, args.receipt_timeout),
            reconnect_max_seconds=2.0,
        ),
    )


async def run(args: argparse.Namespace) -> int:
    config = hub_config(args)
    outbox = Outbox(
        config.outbox_path,
        max_rows=config.limits.outbox_max_rows,
        max_bytes=config.limits.outbox_max_bytes,
        soft_fraction=config.limits.outbox_soft_fraction,
    )
    uplink = Uplink(config, outbox)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gen = asyncio.create_task(
        generate(
            outbox,
            uplink,
            config.hub_id,
            quota=args.quota,
            rate=args.rate,
            devices=args.devices,
            stop=stop,
        )
    )
    try:
        await uplink.run(stop)
    finally:
        stop.set()
        await gen
        outbox.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.chaos.hub")
    p.add_argument("--hub-id", required=True)
    p.add_argument("--url", required=True, help="broker URL (through the hub's TCP proxy)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--quota", type=int, required=True, help="readings to generate in all")
    p.add_argument("--rate", type=float, required=True, help="readings per second")
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--receipt-timeout", type=float, default=5.0)
    p.add_argument("--heartbeat", type=float, default=2.0)
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
