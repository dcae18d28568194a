"""``telehub simulate``: simulated households in a process of their own.

Builds the demo households (:func:`simulators.fleet.demo_fleet`: cuff and scale for everyone,
thermometer, glucose meter and Nonin oximeter, or PLX oximeter, or heart-rate strap by profile;
with ``--serial`` a Contec CMS50D+ on a pty for the COPD patients), serves their BLE radio to edge
agents over TCP (:mod:`simulators.ble.server`) and keeps the serial devices on stable paths
(``--serial-dir``; a symlink to the pty, which stays open when the edge closes and reopens the
port). Every ``--reading-interval`` simulated seconds each patient measures again.

``--hub-config FILE`` writes an edge configuration that allow-lists every device with its
patient and points ``[ble]`` at this radio: ``telehub edge --config FILE`` then talks to the
simulated devices exactly as to hardware. ``--fault ADDRESS/field=value`` injects
:class:`simulators.faults.Faults` into one BLE device (JSON values: ``disconnect_after=1``,
``duplicate=true``, ``invalid_readings=[0,2]``); ``--serial-fault field=value`` does the same
with :class:`simulators.faults.SerialFaults` for every serial device.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from edge.ble.remote_transport import parse_endpoint
from simulators.ble.server import serve
from simulators.clock import SimTime
from simulators.faults import Faults, SerialFaults
from simulators.fleet import Binding, Fleet, demo_fleet

log = logging.getLogger(__name__)


class SimulateError(ValueError):
    """A command-line value that cannot be used (the message says which and why)."""


def _output(text: str) -> None:
    print(text, flush=True)  # noqa: T201 (the command's output)


def _assignments(items: Sequence[str], what: str, kind: type[Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(kind)}
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SimulateError(f"{what}: {item!r} is not field=value")
        if name not in known:
            raise SimulateError(
                f"{what}: {name!r} is not a fault of {kind.__name__} ({', '.join(sorted(known))})"
            )
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SimulateError(f"{what}: {name}: {value!r} is not a JSON value") from exc
    return out


def parse_faults(specs: Sequence[str]) -> dict[str, Faults]:
    """``ADDRESS/field=value`` (repeatable) → faults per upper-case address."""
    by_address: dict[str, dict[str, Any]] = {}
    for spec in specs:
        address, sep, assignment = spec.partition("/")
        if not sep or not address:
            raise SimulateError(f"--fault: {spec!r} is not ADDRESS/field=value")
        by_address.setdefault(address.upper(), {}).update(
            _assignments([assignment], "--fault", Faults)
        )
    try:
        return {a: msgspec.convert(v, Faults) for a, v in by_address.items()}
    except msgspec.ValidationError as exc:
        raise SimulateError(f"--fault: {exc}") from exc


def parse_serial_faults(specs: Sequence[str]) -> SerialFaults | None:
    if not specs:
        return None
    try:
        return msgspec.convert(_assignments(specs, "--serial-fault", SerialFaults), SerialFaults)
    except msgspec.ValidationError as exc:
        raise SimulateError(f"--serial-fault: {exc}") from exc


def device_id(b: Binding) -> str:
    """The device's identity on the wire: its BLE address, or a stable name for a serial one
    (the pty path changes from run to run unless ``--serial-dir`` is given)."""
    return b.address.upper() if b.transport == "ble" else f"{b.patient_id}-{b.family}"


def hub_config_toml(
    fleet: Fleet, *, hub_id: str, mqtt_url: str, data_dir: str, simulator: str
) -> str:
    """An edge configuration for every device of ``fleet`` on the simulated radio."""
    lines = [
        "# written by telehub simulate: every simulated device, bound to its patient",
        f"hub_id = {json.dumps(hub_id)}",
        f"data_dir = {json.dumps(data_dir)}",
        "heartbeat_seconds = 10",
        "",
        "[mqtt]",
        f"url = {json.dumps(mqtt_url)}",
        "",
        "[ble]",
        'transport = "simulated"',
        f"simulator = {json.dumps(simulator)}",
        "scan_seconds = 1.0",
        "scan_pause_seconds = 0.5",
        "idle_timeout = 5.0",
        "retry_seconds = 1.0",
    ]
    for b in fleet.bindings:
        lines += ["", "[[devices]]"]
        if b.transport == "ble":
            lines.append(f"address = {json.dumps(b.address.upper())}")
        else:
            lines += [
                f"port = {json.dumps(b.address)}",
                f"id = {json.dumps(device_id(b))}",
                f"driver = {json.dumps(b.driver_keys[0])}",
            ]
        lines.append(f"patient = {json.dumps(b.patient_id)}")
    return "\n".join(lines) + "\n"


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--listen",
        default="127.0.0.1:7800",
        help="host:port of the simulated radio (port 0: any free port)",
    )
    parser.add_argument("--patients", type=int, default=1, help="households (default 1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    parser.add_argument(
        "--reading-interval",
        type=float,
        default=3600.0,
        help="simulated seconds between two rounds of readings",
    )
    parser.add_argument(
        "--serial", action="store_true", help="also a Contec CMS50D+ on a pty for each COPD patient"
    )
    parser.add_argument("--serial-dir", help="directory for stable serial port paths")
    parser.add_argument("--hub-config", help="write an edge configuration for these devices")
    parser.add_argument("--hub-id", default="hub-sim-0001")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--data-dir", default="./telehub-sim-hub")
    parser.add_argument("--fault", action="append", default=[], metavar="ADDRESS/FIELD=VALUE")
    parser.add_argument("--serial-fault", action="append", default=[], metavar="FIELD=VALUE")
    return parser


async def run(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    """Serve the households until ``stop`` (or SIGINT/SIGTERM); 2 on a bad argument."""
    try:
        host, port = parse_endpoint(args.listen, any_port=True)
        faults = parse_faults(args.fault)
        serial_faults = parse_serial_faults(args.serial_fault)
        if args.patients < 1 or args.speed <= 0 or args.reading_interval <= 0:
            raise SimulateError("--patients, --speed and --reading-interval must be > 0")
    except (SimulateError, ValueError) as exc:
        _output(f"telehub simulate: {exc}")
        return 2
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    now_local = datetime.now(ZoneInfo("Europe/Copenhagen")).replace(tzinfo=None)
    world = SimTime(now_local, speed=args.speed)
    fleet = demo_fleet(args.patients, seed=args.seed, world=world, with_serial=args.serial)
    for address, f in faults.items():
        try:
            device = fleet.device(address)
        except KeyError:
            device = None
        if device is None or not hasattr(device, "faults"):
            await fleet.aclose()
            _output(f"telehub simulate: --fault: no simulated device {address} takes faults")
            return 2
        setattr(device, "faults", f)  # noqa: B010 (not every peripheral family has faults)
    serial_dir = Path(args.serial_dir) if args.serial_dir else None
    if serial_dir is not None:
        serial_dir.mkdir(parents=True, exist_ok=True)
    moved: dict[str, str] = {}
    for p in fleet.patients:
        for i, dev in enumerate(p.serial_devices):
            if serial_faults is not None:
                dev.faults = serial_faults
            if serial_dir is not None:
                new = str(serial_dir / f"{p.patient_id}-serial{i}")
                moved[dev.port] = new
                dev.port = new
    fleet.bindings = tuple(
        dataclasses.replace(b, address=moved[b.address]) if b.address in moved else b
        for b in fleet.bindings
    )
    server = await serve(fleet.radio, host, port)
    bound = server.sockets[0].getsockname()
    endpoint = f"{bound[0]}:{bound[1]}"
    try:
        await fleet.start()
        for b in fleet.bindings:
            _output(f"device {device_id(b)} {b.patient_id} {b.family} {b.transport} {b.address}")
        if args.hub_config:
            text = hub_config_toml(
                fleet,
                hub_id=args.hub_id,
                mqtt_url=args.mqtt_url,
                data_dir=args.data_dir,
                simulator=endpoint,
            )
            await asyncio.to_thread(Path(args.hub_config).write_text, text, encoding="utf-8")
        _output(f"listening {endpoint}")
        readings = asyncio.create_task(fleet.run(args.reading_interval), name="readings")
        try:
            await stop.wait()
        finally:
            readings.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await readings
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)
        await fleet.aclose()
    return 0


def main(argv: Sequence[str]) -> int:
    """``telehub simulate ARGS``."""
    parser = build_parser(
        argparse.ArgumentParser(
            prog="telehub simulate",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    args = parser.parse_args(list(argv))
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130
