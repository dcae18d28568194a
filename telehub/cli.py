"""The ``telehub`` command.

Each subcommand imports only what it needs, so ``telehub edge`` runs on a hub without the gateway's
dependencies and ``telehub decode`` runs with neither.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run_until_signal(coro_factory: object) -> int:
    """Run an ``async def main(stop: asyncio.Event) -> int`` until it returns or SIGINT/SIGTERM."""

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        from telehub import sdnotify

        dog = asyncio.create_task(sdnotify.feed_watchdog(stop), name="watchdog")
        sdnotify.notify("READY=1")
        try:
            result: int = await coro_factory(stop)  # type: ignore[operator]
        finally:
            sdnotify.notify("STOPPING=1")
            stop.set()
            await asyncio.wait_for(dog, 5)
        return result

    return asyncio.run(runner())


def _cmd_demo(args: argparse.Namespace) -> int:
    from telehub.demo import DemoOptions, run_demo

    opts = DemoOptions(
        duration=args.duration,
        patients=args.patients,
        mqtt_url=args.mqtt_url,
        database_url=args.database_url,
        api_port=args.api_port,
        data_dir=Path(args.data_dir),
        seed=args.seed,
        keep_state=args.keep_state,
    )
    return _run_until_signal(lambda stop: run_demo(opts, stop))


def _cmd_edge(args: argparse.Namespace) -> int:
    from edge.main import run_from_config

    return _run_until_signal(lambda stop: run_from_config(Path(args.config), stop))


def _cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.main import run_from_env, run_ingester_from_env

    if args.ingest_only:
        return _run_until_signal(run_ingester_from_env)
    return _run_until_signal(lambda stop: run_from_env(stop, migrate_first=args.migrate))


def _cmd_db(args: argparse.Namespace) -> int:
    from gateway.main import db_command

    return db_command(args.action, database_url=args.database_url, fleet=args.fleet)


def _cmd_decode(argv: Sequence[str]) -> int:
    from drivers.inspect import main as decode_main

    return decode_main(list(argv))


#: Long-running services: their connections, sessions and state changes are logged at INFO.
SERVICES = frozenset({"edge", "gateway"})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="telehub", description=__doc__)
    p.add_argument(
        "--log-level",
        default=os.environ.get("TELEHUB_LOG_LEVEL"),
        help="default: INFO for the services (edge, gateway), WARNING for the other commands",
    )
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the whole chain on simulated devices (embedded defaults)")
    d.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    d.add_argument("--patients", type=int, default=3)
    d.add_argument(
        "--mqtt-url",
        default=os.environ.get("TELEHUB_MQTT_URL"),
        help="use this broker instead of an embedded one",
    )
    d.add_argument(
        "--database-url",
        default=os.environ.get("TELEHUB_DATABASE_URL"),
        help="use this PostgreSQL instead of an embedded one",
    )
    d.add_argument("--api-port", type=int, default=8080)
    d.add_argument(
        "--data-dir",
        default="var/demo",
        help="where the embedded database and hub outboxes live (default var/demo)",
    )
    d.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the last run's database and outboxes (default: start fresh, so alerts are "
        "raised again)",
    )
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(func=_cmd_demo)

    e = sub.add_parser("edge", help="run the edge agent on a home hub")
    e.add_argument("--config", required=True, help="hub configuration (TOML)")
    e.set_defaults(func=_cmd_edge)

    sub.add_parser(
        "simulate",
        add_help=False,
        help="simulated devices in a process of their own (BLE radio over TCP, serial ptys); "
        "telehub simulate --help",
    )

    g = sub.add_parser("gateway", help="run the ingester, alerting and the API (TELEHUB_* env)")
    g.add_argument("--migrate", action="store_true", help="apply database migrations first")
    g.add_argument(
        "--ingest-only",
        action="store_true",
        help="run only the ingester (scale ingest out behind shared subscriptions)",
    )
    g.set_defaults(func=_cmd_gateway)

    db = sub.add_parser("db", help="database administration")
    db.add_argument("action", choices=["migrate", "status", "seed"])
    db.add_argument("fleet", nargs="?", help="fleet file (TOML) for `seed`")
    db.add_argument("--database-url", default=os.environ.get("TELEHUB_DATABASE_URL"))
    db.set_defaults(func=_cmd_db)

    from telehub import hub_commands

    hub_commands.register(sub)

    sub.add_parser(
        "reprocess",
        help="decode stored readings' raw bytes again with the current drivers: the difference, "
        "or corrected versions with --apply (telehub reprocess --help)",
        add_help=False,
    )
    sub.add_parser(
        "rules",
        help="rules test FILE.toml...: run clinical alerting scenarios (docs/alerting.md)",
        add_help=False,
    )
    sub.add_parser(
        "decode",
        help="decode a device record: telehub decode <characteristic|protocol> <hex> | --list",
        add_help=False,
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `telehub decode --list | head`: the reader went away; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `decode` has its own argument parser (drivers.inspect); pass its arguments through untouched.
    if "decode" in args_list:
        i = args_list.index("decode")
        head = args_list[:i]
        if all(
            a.startswith("--log-level") or (j > 0 and head[j - 1] == "--log-level")
            for j, a in enumerate(head)
        ):
            _setup_logging("WARNING")
            return _cmd_decode(args_list[i + 1 :])
    if args_list[:1] == ["simulate"]:
        # the simulators have their own argument parser (simulators.serve), imported only here
        from simulators.serve import main as simulate_main

        _setup_logging("INFO")
        return simulate_main(args_list[1:])
    if args_list[:1] == ["reprocess"]:
        # the re-decoder has its own argument parser (telehub.reprocess)
        from telehub import reprocess

        _setup_logging("WARNING")
        return reprocess.main(args_list[1:])
    if args_list[:2] == ["rules", "test"]:
        # the scenario bench has its own argument parser (gateway.alerting.scenarios)
        from gateway.alerting import scenarios

        _setup_logging("WARNING")
        return scenarios.main(args_list[2:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    level = args.log_level or ("INFO" if args.command in SERVICES else "WARNING")
    _setup_logging(level)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
