"""The edge agent: scan for allow-listed devices, run their sessions, and the uplink.

* BLE: one scan window after another; an advertisement from an allow-listed address starts a
  session for that device (one per device, at most ``max_ble_sessions`` at a time); every other
  advertisement is ignored and counted (``ble.ignored_advertisements``). After a failed session the
  device is left alone for ``retry_seconds`` (doubling up to 5 min); after a normal one for 1 s.
* Serial: one long-lived session per serial binding (reopens the port itself).
* Uplink: the MQTT side (:mod:`edge.uplink`).

``stop`` ends everything cleanly: sessions disconnect, the uplink publishes ``offline``, the
outbox is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edge.ble.transport import BleTransport, TransportError
from edge.config import DeviceBinding, HubConfig
from edge.outbox import Outbox, OutboxFull
from edge.sessions.ble import SessionAborted, run_ble_session
from edge.sessions.common import DriverLookup, SessionEnv, default_lookup
from edge.sessions.serial import PortLister, SerialConfigError, list_ports, run_serial_session
from edge.status import HubState
from edge.uplink import Uplink
from wire import contract

log = logging.getLogger(__name__)

RETRY_MAX = 300.0
SHUTDOWN_TIMEOUT = 15.0


@dataclass(slots=True)
class _Retry:
    not_before: float = 0.0
    delay: float = 0.0


@dataclass
class AgentParts:
    """What ``run_agent`` built (tests and the CLI inspect it through ``on_start``)."""

    outbox: Outbox
    state: HubState
    uplink: Uplink
    env: SessionEnv
    sessions: dict[str, asyncio.Task[None]] = field(default_factory=dict)


def open_outbox(config: HubConfig) -> Outbox:
    lim = config.limits
    return Outbox(
        config.outbox_path,
        max_rows=lim.outbox_max_rows,
        max_bytes=lim.outbox_max_bytes,
        soft_fraction=lim.outbox_soft_fraction,
    )


async def run_agent(
    config: HubConfig,
    transport: BleTransport,
    *,
    stop: asyncio.Event | None = None,
    serial_ports: PortLister | None = None,
    lookup: DriverLookup | None = None,
    parts: list[AgentParts] | None = None,
) -> None:
    """Run until ``stop`` is set. ``serial_ports`` lists ports for ``usb = "vid:pid"`` bindings
    (default: pyserial's enumeration). ``parts``, if given, receives the live components."""
    stop = stop or asyncio.Event()
    outbox = open_outbox(config)
    state = HubState()
    uplink = Uplink(config, outbox, state)
    env = SessionEnv(config, outbox, state, lookup or default_lookup(), on_new=uplink.wake)
    me = AgentParts(outbox, state, uplink, env)
    set_overflow = getattr(transport, "set_overflow", None)
    if set_overflow is not None:
        set_overflow(_overflow_sink(outbox, state, uplink.wake))
    if parts is not None:
        parts.append(me)
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(uplink.run(stop), name="uplink")]
    if any(d.is_ble for d in config.devices):
        tasks.append(asyncio.create_task(_ble_loop(me, transport, stop), name="ble-scan"))
    for d in config.devices:
        if not d.is_ble:
            tasks.append(
                asyncio.create_task(
                    _serial(env, d, stop, serial_ports or list_ports), name=f"serial:{d.device_id}"
                )
            )
    try:
        await stop.wait()
    finally:
        stop.set()
        done, pending = await asyncio.wait(
            [*tasks, *me.sessions.values()], timeout=SHUTDOWN_TIMEOUT
        )
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.error("task %s failed", t.get_name(), exc_info=t.exception())
        outbox.close()
        log.info("agent stopped")


def _overflow_sink(
    outbox: Outbox, state: HubState, on_new: Callable[[], None] = lambda: None
) -> Callable[[str, str, bytes], None]:
    """Keep a BLE notification the transport's queue had no room for: it is already confirmed
    to the device, so it goes straight into the outbox database — a local dead letter, and a
    held record (``queue-overflow``, raw bytes) that the gateway stores for review and raises as
    a technical alert — and is counted in the hub status (``ble.notifications_kept``)."""

    def sink(address: str, characteristic: str, data: bytes) -> None:
        outbox.dead_letter(
            data,
            "BLE notification queue full: confirmed record kept undecoded for review",
            device=address,
            source=characteristic,
        )
        ns = time.time_ns()
        held = contract.HeldRecord(
            key=contract.held_key(address, characteristic, data, ns),
            device=address,
            source=characteristic,
            reason="queue-overflow",
            received_at=datetime.fromtimestamp(ns / 1e9, UTC),
            raw=data.hex(),
        )
        try:
            if outbox.add_held([held]):
                on_new()
        except OutboxFull:
            state.count("outbox.refused")  # the dead letter above still holds the bytes
        state.count("ble.notifications_kept")

    return sink


async def _serial(
    env: SessionEnv, binding: DeviceBinding, stop: asyncio.Event, ports: PortLister
) -> None:
    try:
        await run_serial_session(env, binding, stop, ports=ports)
    except SerialConfigError as exc:
        env.state.count("serial.misconfigured")
        log.error("%s", exc)


async def _ble_loop(me: AgentParts, transport: BleTransport, stop: asyncio.Event) -> None:
    cfg = me.env.config
    retry: dict[str, _Retry] = {}
    while not stop.is_set():
        try:
            adverts = await asyncio.wait_for(
                transport.scan(cfg.ble.scan_seconds), cfg.ble.scan_seconds + 10.0
            )
        except (TransportError, TimeoutError) as exc:
            me.state.count("ble.scan_failed")
            log.warning("BLE scan failed: %s", exc)
            await _sleep_unless(stop, max(cfg.ble.scan_pause_seconds, 1.0))
            continue
        now = time.monotonic()
        for adv in adverts:
            binding = cfg.ble_binding(adv.address)
            if binding is None:
                me.state.count("ble.ignored_advertisements")
                continue
            device = binding.device_id
            me.state.seen(device)
            if device in me.sessions or stop.is_set():
                continue
            if retry.get(device, _Retry()).not_before > now:
                continue
            if len(me.sessions) >= cfg.limits.max_ble_sessions:
                me.state.count("ble.sessions_deferred")
                continue
            task = asyncio.create_task(
                _ble_session(me, transport, binding, stop, retry), name=f"ble:{device}"
            )
            me.sessions[device] = task
        await _sleep_unless(stop, cfg.ble.scan_pause_seconds)


async def _ble_session(
    me: AgentParts,
    transport: BleTransport,
    binding: DeviceBinding,
    stop: asyncio.Event,
    retry: dict[str, _Retry],
) -> None:
    device = binding.device_id
    r = retry.setdefault(device, _Retry())
    try:
        assert binding.address is not None
        await run_ble_session(me.env, binding, transport.link(binding.address), stop)
        r.delay = 0.0
        r.not_before = time.monotonic() + 1.0
    except (TransportError, SessionAborted) as exc:
        r.delay = min(max(r.delay * 2, me.env.config.ble.retry_seconds), RETRY_MAX)
        r.not_before = time.monotonic() + r.delay
        me.state.count("ble.sessions_failed")
        log.info("%s: session failed (%s); retry in %.0fs", device, exc, r.delay)
    finally:
        me.sessions.pop(device, None)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
