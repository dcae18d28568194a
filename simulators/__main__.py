"""Run a serial device simulator standalone: ``python -m simulators contec --profile hypoxic-copd``.

Prints the port path (open it with pyserial or point a real edge at it) and runs until Ctrl-C.
For BLE devices (and serial ones, with an edge configuration to match) in a process of their own,
use ``telehub simulate`` (simulators/serve.py, docs/simulators.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from simulators.clock import SimTime
from simulators.physiology import Physiology, Profile
from simulators.serial import ContecCms50d, NoninSerial, PtyDevice


def _output(text: str) -> None:
    """CLI output."""
    print(text, flush=True)  # noqa: T201


def _device(kind: str, physiology: Physiology, world: SimTime) -> PtyDevice:
    if kind == "contec":
        return ContecCms50d(physiology, world=world)
    return NoninSerial(physiology, data_format=8 if kind == "nonin-df8" else 2, world=world)


async def _run(args: argparse.Namespace) -> None:
    world = SimTime(speed=args.speed)
    device = _device(args.device, Physiology(Profile(args.profile), args.seed), world)
    await device.start()
    _output(device.port)
    try:
        await asyncio.Event().wait()
    finally:
        await device.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators")
    parser.add_argument("device", choices=["contec", "nonin-df2", "nonin-df8"])
    parser.add_argument("--profile", default="normal", choices=[p.value for p in Profile])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
