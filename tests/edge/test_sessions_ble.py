"""BLE sessions against the simulated radio and simulated devices (simulators.ble)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from drivers import racp, registry
from drivers.glucose import GlucoseRecord
from edge.config import BleConfig, DeviceBinding, HubConfig, MqttConfig
from edge.outbox import HELD, Outbox
from edge.readings import RecordContext, device_time_text, to_readings
from edge.sessions.ble import SessionAborted, run_ble_session
from edge.sessions.common import SessionEnv
from edge.sessions.glucose import last_sequence_key
from edge.status import HubState
from simulators.ble import SimulatedRadio
from simulators.clock import DeviceClock, SimTime
from simulators.devices.blood_pressure import BloodPressureMonitor
from simulators.devices.common import TimeSync
from simulators.devices.glucose import GlucoseMeter
from simulators.devices.pulse_oximeter import PulseOximeter
from simulators.faults import Faults
from simulators.physiology import Physiology, Profile
from wire import contract

CPH = ZoneInfo("Europe/Copenhagen")
NS = 1_715_940_000_123_456_789  # fixed hub receive time for deterministic readings
ADDR = "00:09:1F:00:00:01"


def make_env(
    tmp_path: Path,
    binding: DeviceBinding,
    *,
    fixed_time: bool = True,
    max_rows: int = 10_000,
    **ble: float,
) -> SessionEnv:
    cfg = HubConfig(
        hub_id="hub-t",
        mqtt=MqttConfig(url="mqtt://127.0.0.1"),
        data_dir=str(tmp_path),
        devices=[binding],
        ble=msgspec.convert(ble, BleConfig),
    )
    box = Outbox(tmp_path / "o.db", max_rows=max_rows, soft_fraction=1.0)
    env = SessionEnv(cfg, box, HubState(), registry, hub_clock=lambda: "synchronized")
    if fixed_time:
        env.now_ns = lambda: NS
    return env


def stored(box: Outbox) -> list[contract.Reading]:
    return [contract.decode_reading(r.payload) for r in box.pending(100_000) if r.kind != HELD]


def held(box: Outbox) -> list[contract.HeldRecord]:
    return [contract.decode_held(r.payload) for r in box.pending(100_000) if r.kind == HELD]


def expected(
    binding: DeviceBinding, key: str, data: bytes, *, clock_set: bool, patient: str = "patient-a"
) -> list[contract.Reading]:
    m = registry.decode(key, data)
    ctx = RecordContext(
        device=binding.device_id,
        patient=patient,
        received_at=datetime.fromtimestamp(NS / 1e9, ZoneInfo("UTC")),
        received_ns=NS,
        clock_set_by_hub=clock_set,
        tz=CPH,
        hub_clock="synchronized",
    )
    return to_readings(m, ctx)


async def session(
    env: SessionEnv,
    binding: DeviceBinding,
    radio: SimulatedRadio,
    stop: asyncio.Event | None = None,
    timeout: float = 10.0,
) -> str:
    assert binding.address is not None
    return await asyncio.wait_for(
        run_ble_session(env, binding, radio.link(binding.address), stop or asyncio.Event()),
        timeout,
    )


async def test_spot_upload_sets_clock_and_stores_before_confirming(tmp_path: Path) -> None:
    world = SimTime()
    clock = DeviceClock(world, offset=-(datetime.now() - datetime(2000, 1, 1)) / 2)  # way off
    bp = BloodPressureMonitor(
        ADDR,
        Physiology(Profile.NORMAL, 1),
        world=world,
        clock=clock,
        intermediate_cuff_pressure=True,
    )
    r0, r1 = bp.take_reading(), bp.take_reading()
    radio = SimulatedRadio(world=world)
    radio.add(bp)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding)

    assert await session(env, binding, radio) == "disconnected"  # the cuff hangs up when done

    assert bp.confirmed == [0, 1] and bp.unsent == ()
    assert stored(env.outbox) == (
        expected(binding, "2a35", r0.data, clock_set=True)
        + expected(binding, "2a35", r1.data, clock_set=True)
    )
    values = [r.value for r in stored(env.outbox)[:4]]
    v0 = Physiology(Profile.NORMAL, 1).blood_pressure(0)
    assert values == [str(v0.systolic), str(v0.diastolic), str(v0.mean), str(v0.pulse_rate)]
    # Both readings were stamped by the cuff's wrong clock (~2012) before the hub set it: their
    # time is the hub's receive time, the device's own time is kept and flagged, never trusted.
    assert {
        (
            r.time_source,
            r.device_time[:4] if r.device_time else None,
            "device-clock-implausible" in r.flags,
        )
        for r in stored(env.outbox)
    } == {("device-unset", r0.record.time_stamp.naive().isoformat()[:4], True)}  # type: ignore[union-attr]
    # the hub wrote its local wall-clock time (Date Time 0x2A08, A&D style)
    assert clock.sets == 1
    assert abs((clock.now() - datetime.now(CPH).replace(tzinfo=None)).total_seconds()) < 5
    assert env.state.counters["ble.clock_set"] == 1
    assert env.state.device_battery(ADDR) == 100  # Battery Level read once per connection


async def test_battery_level_goes_to_status_not_readings(tmp_path: Path) -> None:
    meter = GlucoseMeter(ADDR, Physiology(Profile.NORMAL, 2), battery_level=63)
    radio = SimulatedRadio()
    radio.add(meter)
    meter.take_reading()
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding)
    await session(env, binding, radio)
    assert env.state.device_battery(ADDR) == 63
    assert [r.mdc for r in stored(env.outbox)] == [160184]  # the glucose value only
    status = env.state.status("hub-t", "online", None)
    assert [(d.device, d.battery) for d in status.devices] == [(ADDR, 63)]


async def test_history_replay_is_deduplicated(tmp_path: Path) -> None:
    bp = BloodPressureMonitor(ADDR, Physiology(Profile.NORMAL, 1), resend_history=True)
    bp.take_reading()
    radio = SimulatedRadio()
    radio.add(bp)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding)
    await session(env, binding, radio)
    first = stored(env.outbox)
    bp.take_reading()
    env.now_ns = lambda: NS + 10**12  # a later connection
    await session(env, binding, radio)
    after = stored(env.outbox)
    assert bp.confirmed == [0, 0, 1]  # the device re-sent reading 0
    assert len(first) == 4 and after[:4] == first and len(after) == 8
    assert env.state.counters["readings.duplicate"] == 4


async def test_outbox_full_leaves_the_record_on_the_device(tmp_path: Path) -> None:
    bp = BloodPressureMonitor(ADDR, Physiology(Profile.NORMAL, 1))
    bp.take_reading()
    bp.take_reading()
    radio = SimulatedRadio()
    radio.add(bp)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding, max_rows=6)  # room for one record of 4 readings
    with pytest.raises(SessionAborted, match="OutboxFull"):
        await session(env, binding, radio)
    assert bp.confirmed == [0]
    assert [r.ordinal for r in bp.unsent] == [1]  # not confirmed: the cuff keeps it
    assert len(stored(env.outbox)) == 4
    assert env.state.counters["outbox.refused"] == 1


async def test_undecodable_record_is_dead_lettered(tmp_path: Path) -> None:
    bp = BloodPressureMonitor(
        ADDR, Physiology(Profile.NORMAL, 1), faults=Faults(truncate_readings=frozenset({0}))
    )
    bad = bp.take_reading()
    good = bp.take_reading()
    radio = SimulatedRadio()
    radio.add(bp)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding)
    await session(env, binding, radio)
    assert stored(env.outbox) == expected(binding, "2a35", good.data, clock_set=True)
    [dl] = env.outbox.dead_letters()
    assert (dl.device, dl.source, dl.raw) == (ADDR, "2a35", bad.data)
    assert dl.field is not None and dl.offset is not None and dl.reason
    assert env.state.counters["decode.errors"] == 1


async def test_shared_device_maps_users_and_counts_unmapped(tmp_path: Path) -> None:
    radio = SimulatedRadio()
    user2 = BloodPressureMonitor(ADDR, Physiology(Profile.NORMAL, 1), user_id=2)
    r = user2.take_reading()
    radio.add(user2)
    binding = DeviceBinding(address=ADDR, users={"1": "patient-a", "2": "patient-b"})
    env = make_env(tmp_path, binding)
    await session(env, binding, radio)
    assert stored(env.outbox) == expected(
        binding, "2a35", r.data, clock_set=True, patient="patient-b"
    )
    user2.user_id = 3
    user2.take_reading()
    await session(env, binding, radio)
    assert len(stored(env.outbox)) == 4
    assert env.state.counters["records.unmapped_user"] == 1
    assert user2.unsent == ()  # delivered to the hub, deliberately not forwarded
    [dl] = env.outbox.dead_letters()
    assert "user 3 is not mapped" in dl.reason
    [h] = held(env.outbox)  # and on its way to the gateway for review, without a patient
    assert (h.reason, h.user_id, h.device, h.source) == ("unmapped-user", 3, ADDR, "2a35")


@pytest.mark.parametrize(
    "binding",
    [
        DeviceBinding(address=ADDR, patient="patient-a"),  # a single-user binding
        DeviceBinding(address=ADDR, users={"1": "patient-b"}, patient="patient-a"),
    ],
)
async def test_unknown_user_record_is_never_attributed_but_kept(
    tmp_path: Path, binding: DeviceBinding
) -> None:
    radio = SimulatedRadio()
    guest = BloodPressureMonitor(ADDR, Physiology(Profile.NORMAL, 1), user_id=0xFF)
    r = guest.take_reading()
    radio.add(guest)
    env = make_env(tmp_path, binding)
    await session(env, binding, radio)
    assert stored(env.outbox) == []
    assert env.state.counters["records.unknown_user"] == 1
    [dl] = env.outbox.dead_letters()
    assert (dl.device, dl.source, dl.raw) == (ADDR, "2a35", r.data)
    assert "unknown device user (0xFF)" in dl.reason
    assert guest.unsent == ()  # confirmed to the device: kept on the hub, not lost
    [h] = held(env.outbox)
    assert (h.reason, h.user_id, bytes.fromhex(h.raw)) == ("unknown-user", 0xFF, r.data)
    assert h.key == contract.held_key(ADDR, "2a35", r.data)
    assert {v.mdc for v in h.values} >= {150021, 150022}
    assert "patient" not in contract.encode(h).decode()
    assert env.outbox.add_held([h]) == 0  # the same record again (a device replay): one row
    assert len(held(env.outbox)) == 1


async def test_plx_clock_not_set_and_continuous_downsampling(tmp_path: Path) -> None:
    world = SimTime(speed=10.0)  # 10 continuous samples per real second
    ox = PulseOximeter(
        ADDR, Physiology(Profile.NORMAL, 3), world=world, clock_set=False, time_sync=None
    )
    spot = ox.take_spot_check()
    radio = SimulatedRadio(world=world)
    radio.add(ox)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding, fixed_time=False)
    stop = asyncio.Event()
    task = asyncio.create_task(session(env, binding, radio, stop))
    await asyncio.sleep(2.5)
    stop.set()
    assert await task == "stopped"
    readings = stored(env.outbox)
    spots = [r for r in readings if r.kind == "spot"]
    assert spot.time_stamp is not None
    raw_time = device_time_text(spot.time_stamp)
    assert [(r.mdc, r.time_source, r.device_time, r.time) for r in spots] == [
        (mdc, "device-unset", raw_time, spots[0].received_at) for mdc in (150456, 149530, 150448)
    ]
    assert "device-clock-not-set" in spots[0].flags
    cont = [r for r in readings if r.kind == "continuous"]
    seconds = sorted({r.received_at.replace(microsecond=0) for r in cont})
    per_record = {r.group for r in cont}
    assert 2 <= len(per_record) <= 4  # at most one record per second of ~2.5 s
    assert len(seconds) == len(per_record)  # never two records in the same second
    assert {r.time_source for r in cont} == {"hub"}
    assert env.state.counters["records.downsampled"] >= 15
    assert env.state.counters["ble.clock_not_set"] == 1


async def test_glucose_racp_incremental_sync(tmp_path: Path) -> None:
    meter = GlucoseMeter(ADDR, Physiology(Profile.NORMAL, 4), first_sequence=10)
    radio = SimulatedRadio()
    radio.add(meter)
    recs = [meter.take_reading(), meter.take_reading(), meter.take_reading(control=True)]
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding)
    assert await session(env, binding, radio) == "complete"
    assert env.outbox.get_state(last_sequence_key(ADDR)) == "12"  # control record counted
    assert stored(env.outbox) == [
        *expected(binding, "2a18", recs[0].encode(), clock_set=True),
        *expected(binding, "2a18", recs[1].encode(), clock_set=True),
    ]
    assert env.state.counters["records.control"] == 1
    new = [meter.take_reading(Decimal("140")), meter.take_reading(Decimal("90"))]
    assert await session(env, binding, radio) == "complete"
    meter.start_advertising()  # (the meter only advertises with unreported records)
    assert await session(env, binding, radio) == "no-records"
    assert meter.requests == [
        racp.report_all(),
        racp.report_greater_or_equal(13),
        racp.report_greater_or_equal(15),
    ]
    readings = stored(env.outbox)
    v = Physiology(Profile.NORMAL, 4)
    assert [(r.sequence, r.value, r.unit) for r in readings] == [
        (10, str(v.glucose_mg_dl(0)), "mg/dL"),
        (11, str(v.glucose_mg_dl(1)), "mg/dL"),
        (13, "140", "mg/dL"),
        (14, "90", "mg/dL"),
    ]
    assert readings[2:] == [
        *expected(binding, "2a18", new[0].encode(), clock_set=True),
        *expected(binding, "2a18", new[1].encode(), clock_set=True),
    ]
    assert env.outbox.get_state(last_sequence_key(ADDR)) == "14"


class SilentMeter(GlucoseMeter):
    """Accepts RACP requests and never answers them."""

    async def _run(self, data: bytes, request: racp.RacpRequest | None) -> None:
        return None


async def test_racp_timeout_aborts(tmp_path: Path) -> None:
    meter = SilentMeter(ADDR, Physiology(Profile.NORMAL, 4))
    meter.take_reading()
    radio = SimulatedRadio()
    radio.add(meter)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding, racp_timeout=0.3)
    with pytest.raises(SessionAborted, match="no RACP response"):
        await session(env, binding, radio)
    assert meter.requests == [racp.report_all(), racp.abort()]
    assert env.state.counters["racp.timeouts"] == 1
    assert env.outbox.get_state(last_sequence_key(ADDR)) is None
    assert not meter.connected


async def test_device_without_clock_is_unverified(tmp_path: Path) -> None:
    world = SimTime()
    ox = PulseOximeter(
        ADDR, Physiology(Profile.NORMAL, 3), world=world, time_sync=None, interval=100.0
    )
    ox.take_spot_check()
    radio = SimulatedRadio(world=world)
    radio.add(ox)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding, idle_timeout=0.5)
    assert await session(env, binding, radio) == "idle"
    spots = [r for r in stored(env.outbox) if r.kind == "spot"]
    assert [r.time_source for r in spots] == ["device-unverified"] * 3  # SpO2, PR, PAI


async def test_connect_timeout_is_a_transport_error(tmp_path: Path) -> None:
    from edge.ble.transport import TransportError

    radio = SimulatedRadio()
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding, connect_timeout=0.2)
    with pytest.raises(TransportError):
        await session(env, binding, radio)
    assert env.state.counters["ble.connect_failed"] == 1


@pytest.mark.parametrize("sync", [TimeSync.CURRENT_TIME, TimeSync.BOTH])
async def test_current_time_written_before_subscribing(tmp_path: Path, sync: TimeSync) -> None:
    world = SimTime()
    clock = DeviceClock(world, is_set=False)  # factory default 2000-01-01
    bp = BloodPressureMonitor(
        ADDR, Physiology(Profile.NORMAL, 1), world=world, clock=clock, time_sync=sync
    )
    r = bp.take_reading()
    radio = SimulatedRadio(world=world)
    radio.add(bp)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding)
    await session(env, binding, radio)
    assert clock.sets == 1  # one write: Current Time (Date Time not needed after it)
    assert stored(env.outbox) == expected(binding, "2a35", r.data, clock_set=True)
    device_time = stored(env.outbox)[0].device_time
    assert device_time is not None
    assert device_time.startswith("2000-01-01")  # stamped before the set


async def test_vendor_uart_stream_through_the_framer(tmp_path: Path) -> None:
    """BerryMed over the ISSC transparent UART: 5-octet frames split across notifications."""
    from simulators.devices.berrymed import BerryMedOximeter

    ox = BerryMedOximeter(ADDR, Physiology(Profile.NORMAL, 8), search_notifications=0)
    radio = SimulatedRadio()
    radio.add(ox)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding, fixed_time=False)
    stop = asyncio.Event()
    task = asyncio.create_task(session(env, binding, radio, stop))
    async with asyncio.timeout(5):
        while len({r.group for r in stored(env.outbox)}) < 2:
            await asyncio.sleep(0.05)
    stop.set()
    assert await task == "stopped"
    readings = stored(env.outbox)
    assert {(r.source, r.kind, r.time_source) for r in readings} == {
        ("berrymed-ble", "continuous", "hub")
    }
    assert {r.mdc for r in readings} >= {150456, 149530}
    assert env.state.counters["records.downsampled"] > 0  # 60 frames/s


async def test_contec_bt_stream_starts_on_the_start_command(tmp_path: Path) -> None:
    """CMS50D-BT: nothing streams until the hub writes 9B 01 1C to 0xFF01 after subscribing."""
    from simulators.devices.contec_bt import ContecBtOximeter

    ox = ContecBtOximeter(ADDR, Physiology(Profile.NORMAL, 8))
    radio = SimulatedRadio()
    radio.add(ox)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding, fixed_time=False)
    stop = asyncio.Event()
    task = asyncio.create_task(session(env, binding, radio, stop))
    async with asyncio.timeout(5):
        while len(stored(env.outbox)) < 2:
            await asyncio.sleep(0.05)
    stop.set()
    assert await task == "stopped"
    assert ox.started
    readings = stored(env.outbox)
    assert {(r.source, r.kind, r.time_source) for r in readings} == {
        ("contec-cms50d-bt", "continuous", "hub")
    }
    assert {r.mdc for r in readings} == {150456, 149530}
    assert "decode.errors" not in env.state.counters  # every frame (waveform too) framed cleanly


async def test_contec_bt_refused_start_write_is_counted(tmp_path: Path) -> None:
    """A device that refuses the start command: counted, no records, the session still ends."""
    from simulators.ble.gatt import AttError, AttErrorCode
    from simulators.devices.contec_bt import ContecBtOximeter

    class Refusing(ContecBtOximeter):
        async def _on_write(self, data: bytes) -> None:
            raise AttError(AttErrorCode.WRITE_NOT_PERMITTED, "refused")

    ox = Refusing(ADDR, Physiology(Profile.NORMAL, 8))
    radio = SimulatedRadio()
    radio.add(ox)
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding, fixed_time=False)
    stop = asyncio.Event()
    task = asyncio.create_task(session(env, binding, radio, stop))
    async with asyncio.timeout(5):
        while env.state.counters.get("ble.start_write_failed", 0) < 1:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.2)  # a started device would have sent a notification by now
    stop.set()
    assert await task == "stopped"
    assert not ox.started and stored(env.outbox) == []


async def test_contec_bt_device_silent_without_the_start_command() -> None:
    """The simulator keeps the real device's rule: subscribed but not started sends nothing."""
    from simulators.ble.gatt import AttError
    from simulators.devices.contec_bt import ContecBtOximeter

    ox = ContecBtOximeter(ADDR, Physiology(Profile.NORMAL, 8))
    assert not ox.is_subscribed(ox.notify_uuid)
    with pytest.raises(AttError):
        await ox._on_write(b"\x9b\x00\x1b")
    assert not ox.started
    await ox._on_write(bytes.fromhex("9b011c"))
    assert ox.started


class ContextMeter(GlucoseMeter):
    """A meter that sends a Glucose Measurement Context (0x2A34) after flagged records."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        from drivers.glucose import CONTEXT_UUID
        from simulators.ble.gatt import Characteristic, Prop, Service

        svc = self.services[0]
        ctx_char = Characteristic(CONTEXT_UUID, Prop.NOTIFY)
        self.services = (Service(svc.uuid, (*svc.characteristics, ctx_char)), *self.services[1:])
        self._chars[ctx_char.uuid] = ctx_char

    async def _report(self, records: list[GlucoseRecord]) -> None:
        from drivers.glucose import CONTEXT_UUID, MEASUREMENT_UUID, GlucoseContext

        for rec in records:
            await self.notify(MEASUREMENT_UUID, rec.encode())
            if rec.context_follows:
                ctx = GlucoseContext(rec.sequence_number, meal=1)  # preprandial
                await self.notify(CONTEXT_UUID, ctx.encode())
        await self._respond(racp.OpCode.REPORT_STORED_RECORDS, racp.ResponseCode.SUCCESS)


async def test_glucose_context_flags_join_their_measurement(tmp_path: Path) -> None:
    meter = ContextMeter(ADDR, Physiology(Profile.NORMAL, 4))
    radio = SimulatedRadio()
    radio.add(meter)
    a = meter.take_reading()
    meter.records[-1] = dataclasses.replace(a, context_follows=True)
    b = meter.take_reading()
    binding = DeviceBinding(address=ADDR, patient="patient-a")
    env = make_env(tmp_path, binding)
    assert await session(env, binding, radio) == "complete"
    readings = stored(env.outbox)
    assert [(r.sequence, r.flags) for r in readings] == [
        (
            a.sequence_number,
            [
                "context-follows",
                "meal:preprandial",
                "sample-type:capillary-whole-blood",
                "sample-location:finger",
            ],
        ),
        (b.sequence_number, ["sample-type:capillary-whole-blood", "sample-location:finger"]),
    ]
    assert env.state.counters["glucose.orphan_context"] == 0
