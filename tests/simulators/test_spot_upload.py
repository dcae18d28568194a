"""The A&D-style stored-reading upload: time write, oldest first, confirmation, history, faults."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from drivers.blood_pressure import (
    BPM_UUID,
    ICP_UUID,
    BloodPressureRecord,
    BloodPressureStatus,
    IntermediateCuffPressureRecord,
)
from drivers.errors import DecodeError
from drivers.gatt_time import device_time_from, encode_date_time
from drivers.observation import DeviceTime, Special
from drivers.weight import MEASUREMENT_UUID as WEIGHT_UUID
from drivers.weight import WeightRecord
from edge.ble.transport import TransportError
from simulators.ble import AttErrorCode, GattError, SimulatedRadio
from simulators.clock import FACTORY_TIME, DeviceClock, SimTime
from simulators.devices.blood_pressure import BloodPressureMonitor
from simulators.devices.common import TimeSync
from simulators.devices.scale import WeightScale
from simulators.faults import Faults
from simulators.physiology import BloodPressureValues, Physiology, Profile
from tests.simulators.conftest import CURRENT_TIME, DATE_TIME, NOW, Collector, upload

ADDR = "C0:00:00:00:00:01"
PHYS = Physiology(Profile.HEART_FAILURE, 7)


def scale(radio: SimulatedRadio, world: SimTime, **kw: object) -> WeightScale:
    s = WeightScale(ADDR, PHYS, world=world, **kw)  # type: ignore[arg-type]
    radio.add(s)
    return s


def weights(items: list[bytes]) -> list[Decimal | Special]:
    return [WeightRecord.parse(b).weight for b in items]


async def test_uploads_unsent_oldest_first_then_disconnects(
    radio: SimulatedRadio, world: SimTime
) -> None:
    s = scale(radio, world)
    assert not s.advertising
    readings = [s.take_reading() for _ in range(3)]
    assert s.advertising
    got, link = await upload(radio, ADDR, WEIGHT_UUID)
    assert [WeightRecord.parse(b) for b in got] == [r.record for r in readings]
    assert weights(got) == [PHYS.weight_kg(0), PHYS.weight_kg(1), PHYS.weight_kg(2)]
    assert (link.disconnect_reason, s.confirmed, s.unsent, s.advertising) == (
        "upload complete",
        [0, 1, 2],
        (),
        False,
    )
    # Nothing new: the device does not advertise, and a forced connection uploads nothing.
    s.start_advertising()
    again, _ = await upload(radio, ADDR, WEIGHT_UUID)
    assert again == []


@pytest.mark.parametrize("skip", ["time", "indications"])
async def test_without_time_write_or_indications_nothing_is_sent(
    radio: SimulatedRadio, world: SimTime, skip: str
) -> None:
    s = scale(radio, world)
    s.take_reading()
    link = radio.link(ADDR)
    await link.connect(1.0)
    got = Collector()
    if skip != "indications":
        await link.start_notify(WEIGHT_UUID, got)
    if skip != "time":
        data = encode_date_time(device_time_from(NOW))
        await link.write(DATE_TIME, data, response=True, timeout=1.0)
    # The device waits 5 simulated seconds (0.1 s here), then gives up and disconnects.
    await asyncio.wait_for(link.wait_disconnected(), 1.0)
    assert (got.items, link.disconnect_reason, len(s.unsent), s.advertising) == (
        [],
        "no time write",
        1,
        True,
    )


async def test_time_write_sets_the_clock_used_for_later_readings(
    radio: SimulatedRadio, world: SimTime
) -> None:
    s = scale(radio, world, clock=DeviceClock(world, offset=timedelta(hours=-3)))
    first = s.take_reading()
    assert first.record.time_stamp is not None
    before = first.record.time_stamp.naive()
    assert before is not None
    assert abs(before - (world.now() - timedelta(hours=3))) < timedelta(seconds=5)
    await upload(radio, ADDR, WEIGHT_UUID, when=datetime(2030, 1, 2, 3, 4, 5))
    assert s.clock.is_set and s.clock.sets == 1
    second = s.take_reading()
    assert second.record.time_stamp is not None
    stamped = second.record.time_stamp.naive()
    assert stamped is not None
    assert timedelta(0) <= stamped - datetime(2030, 1, 2, 3, 4, 5) < timedelta(seconds=30)


async def test_current_time_service_variant(radio: SimulatedRadio, world: SimTime) -> None:
    s = scale(radio, world, time_sync=TimeSync.CURRENT_TIME)
    s.take_reading()
    link = radio.link(ADDR)
    await link.connect(1.0)
    assert DATE_TIME not in await link.characteristics()
    await link.disconnect()
    s.start_advertising()
    got, _ = await upload(radio, ADDR, WEIGHT_UUID, time_char=CURRENT_TIME, when=NOW)
    assert len(got) == 1
    assert s.clock.now() - NOW < timedelta(seconds=30)


async def test_bad_time_writes_answer_att_errors(radio: SimulatedRadio, world: SimTime) -> None:
    s = scale(radio, world, time_sync=TimeSync.BOTH)
    s.take_reading()
    link = radio.link(ADDR)
    await link.connect(1.0)
    with pytest.raises(GattError) as err:
        await link.write(DATE_TIME, b"\xe8\x07\x05", response=True, timeout=1.0)
    assert err.value.code == AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH
    with pytest.raises(GattError) as err:  # month 13
        await link.write(DATE_TIME, b"\xe8\x07\x0d\x01\x00\x00\x00", response=True, timeout=1.0)
    assert err.value.code == AttErrorCode.VALUE_NOT_ALLOWED
    with pytest.raises(GattError) as err:
        await link.write(CURRENT_TIME, bytes(7), response=True, timeout=1.0)
    assert err.value.code == AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH
    assert s.clock.sets == 0


async def test_link_cut_before_confirmation_means_resent_next_time(
    radio: SimulatedRadio, world: SimTime
) -> None:
    s = scale(radio, world, faults=Faults(cut_during=1))
    readings = [s.take_reading() for _ in range(3)]
    got, link = await upload(radio, ADDR, WEIGHT_UUID)
    await asyncio.sleep(0.01)
    # Record 1 reached the central but was never confirmed: only record 0 counts as sent.
    assert weights(got) == [readings[0].record.weight, readings[1].record.weight]
    assert link.disconnect_reason == "link lost before confirmation"
    assert ([r.ordinal for r in s.unsent], s.advertising) == ([1, 2], True)
    s.faults = Faults()
    got2, _ = await upload(radio, ADDR, WEIGHT_UUID)
    assert weights(got2) == [readings[1].record.weight, readings[2].record.weight]
    assert s.confirmed == [0, 1, 2]


async def test_central_disconnecting_inside_its_handler_gets_a_replay(
    radio: SimulatedRadio, world: SimTime
) -> None:
    s = scale(radio, world)
    readings = [s.take_reading() for _ in range(2)]
    link_box: list[object] = []
    seen: list[bytes] = []

    async def crash_after_persisting(data: bytes) -> None:
        seen.append(data)
        link = link_box[0]
        assert hasattr(link, "disconnect")
        await link.disconnect()  # e.g. the hub reboots right after committing

    link = radio.link(ADDR)
    link_box.append(link)
    await link.connect(1.0)
    await link.start_notify(WEIGHT_UUID, crash_after_persisting)
    await link.write(DATE_TIME, encode_date_time(device_time_from(NOW)), response=True, timeout=1)
    await asyncio.wait_for(link.wait_disconnected(), 1.0)
    assert seen == [readings[0].data]
    assert [r.ordinal for r in s.unsent] == [0, 1]
    got, _ = await upload(radio, ADDR, WEIGHT_UUID)
    assert got == [readings[0].data, readings[1].data]


async def test_resend_history_replays_everything_oldest_first(
    radio: SimulatedRadio, world: SimTime
) -> None:
    s = scale(radio, world, resend_history=True)
    r0 = s.take_reading()
    first, _ = await upload(radio, ADDR, WEIGHT_UUID)
    assert first == [r0.data] and not s.advertising
    r1 = s.take_reading()
    second, _ = await upload(radio, ADDR, WEIGHT_UUID)
    assert second == [r0.data, r1.data]
    assert (s.confirmed, r0.deliveries, r1.deliveries) == ([0, 0, 1], 2, 1)


async def test_disconnect_after_and_duplicate_faults(radio: SimulatedRadio, world: SimTime) -> None:
    s = scale(radio, world, faults=Faults(disconnect_after=2))
    rs = [s.take_reading() for _ in range(3)]
    got, link = await upload(radio, ADDR, WEIGHT_UUID)
    assert (got, link.disconnect_reason) == (
        [rs[0].data, rs[1].data],
        "fault: disconnect mid-transfer",
    )
    s.faults = Faults(duplicate=True)
    got, _ = await upload(radio, ADDR, WEIGHT_UUID)
    assert got == [rs[2].data, rs[2].data]


async def test_value_faults_unsuccessful_truncated_clock_reset(
    radio: SimulatedRadio, world: SimTime
) -> None:
    s = scale(
        radio,
        world,
        faults=Faults(
            invalid_readings=frozenset({0}),
            truncate_readings=frozenset({1}),
            truncate_to=2,
            clock_reset_before=2,
        ),
    )
    r0, r1, _ = (s.take_reading() for _ in range(3))
    got, _ = await upload(radio, ADDR, WEIGHT_UUID)
    assert got[0][1:3] == b"\xff\xff"
    assert WeightRecord.parse(got[0]) == WeightRecord(
        False, Special.UNSUCCESSFUL, r0.record.time_stamp
    )
    assert got[1] == r1.record.encode()[:2]
    with pytest.raises(DecodeError):
        WeightRecord.parse(got[1])
    assert WeightRecord.parse(got[2]).time_stamp == DeviceTime(2000, 1, 1, 0, 0, 0)
    assert s.clock.is_set  # the central's time write set it again
    assert FACTORY_TIME.year == 2000


async def test_memory_is_bounded(radio: SimulatedRadio, world: SimTime) -> None:
    s = scale(radio, world)
    s.memory_size = 3
    for _ in range(5):
        s.take_reading()
    assert ([r.ordinal for r in s.memory], s.evicted) == ([2, 3, 4], 2)


async def test_ignore_time_write_fault(radio: SimulatedRadio, world: SimTime) -> None:
    clock = DeviceClock(world, is_set=False)
    s = scale(radio, world, clock=clock, faults=Faults(ignore_time_write=True))
    s.take_reading()
    got, _ = await upload(radio, ADDR, WEIGHT_UUID)
    assert len(got) == 1 and not clock.is_set
    assert s.take_reading().record.time_stamp == DeviceTime(2000, 1, 1, 0, 0, 0)


async def test_bp_cuff_icp_then_stays_connected(radio: SimulatedRadio, world: SimTime) -> None:
    values = BloodPressureValues(Decimal(182), Decimal(112), Decimal(143), Decimal(88))
    cuff = BloodPressureMonitor(
        ADDR, PHYS, world=world, intermediate_cuff_pressure=True, stay_connected=True
    )
    radio.add(cuff)
    cuff.start_advertising()
    link = radio.link(ADDR)
    await link.connect(1.0)
    icp, bpm = Collector(), Collector()
    await link.start_notify(ICP_UUID, icp)
    await link.start_notify(BPM_UUID, bpm)
    await link.write(DATE_TIME, encode_date_time(device_time_from(NOW)), response=True, timeout=1)
    reading = await cuff.measure(values)
    for _ in range(100):
        if bpm.items:
            break
        await asyncio.sleep(0.005)
    nan = Special.NAN
    assert [IntermediateCuffPressureRecord.parse(b) for b in icp.items] == [
        IntermediateCuffPressureRecord("mm[Hg]", Decimal(p), nan, nan) for p in range(0, 211, 10)
    ]
    assert [BloodPressureRecord.parse(b) for b in bpm.items] == [
        BloodPressureRecord(
            "mm[Hg]",
            Decimal(182),
            Decimal(112),
            Decimal(143),
            reading.record.time_stamp,
            Decimal(88),
            None,
            BloodPressureStatus(),
        )
    ]
    assert link.is_connected  # a live (stay_connected) cuff keeps the link
    await link.disconnect()


async def test_bp_error_record_is_all_nan_like_the_ua651(
    radio: SimulatedRadio, world: SimTime
) -> None:
    cuff = BloodPressureMonitor(
        ADDR, PHYS, world=world, faults=Faults(invalid_readings=frozenset({0}))
    )
    radio.add(cuff)
    r = cuff.take_reading()
    got, _ = await upload(radio, ADDR, BPM_UUID)
    t = r.record.time_stamp
    assert t is not None
    # The captured UA-651BLE error record: flags 0x16, 07FF x3, time stamp, 07FF, status 0000.
    assert got == [b"\x16\xff\x07\xff\x07\xff\x07" + encode_date_time(t) + b"\xff\x07\x00\x00"]
    assert BloodPressureRecord.parse(got[0]) == r.record


async def test_connect_refused_while_connected(radio: SimulatedRadio, world: SimTime) -> None:
    s = scale(radio, world)
    s.take_reading()
    link = radio.link(ADDR)
    await link.connect(1.0)
    with pytest.raises(TransportError):
        await radio.link(ADDR).connect(0.02)
    await link.disconnect()
