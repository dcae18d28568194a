"""The glucose meter answers RACP exactly as reference §5.3 says."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from drivers.glucose import MEASUREMENT_UUID, GlucoseRecord
from drivers.racp import (
    RACP_UUID,
    RacpNumberOfRecords,
    RacpRequest,
    RacpResponseCode,
    abort,
    delete_all,
    report_all,
    report_greater_or_equal,
    report_number_of_records,
)
from simulators.ble import AttErrorCode, GattError, SimulatedLink, SimulatedRadio
from simulators.clock import SimTime
from simulators.devices.glucose import GlucoseMeter
from simulators.faults import Faults
from simulators.physiology import Physiology, Profile
from tests.simulators.conftest import Collector

ADDR = "C0:00:00:00:00:03"
PHYS = Physiology(Profile.NORMAL, 5)


@pytest.fixture
def meter(radio: SimulatedRadio, world: SimTime) -> GlucoseMeter:
    m = GlucoseMeter(ADDR, PHYS, world=world, first_sequence=100)
    radio.add(m)
    for _ in range(5):
        m.take_reading()
    return m


class Central:
    """A GLS client on one link: records and RACP responses, in arrival order."""

    def __init__(self, link: SimulatedLink) -> None:
        self.link = link
        self.records = Collector()
        self.responses = Collector()

    @classmethod
    async def connect(cls, radio: SimulatedRadio, racp: bool = True) -> Central:
        link = radio.link(ADDR)
        await link.connect(1.0)
        c = cls(link)
        await link.start_notify(MEASUREMENT_UUID, c.records)
        if racp:
            await link.start_notify(RACP_UUID, c.responses)
        return c

    async def request(self, data: bytes | RacpRequest, responses: int = 1) -> list[bytes]:
        raw = data if isinstance(data, bytes) else data.encode()
        before = len(self.responses.items)
        await self.link.write(RACP_UUID, raw, response=True, timeout=1.0)
        for _ in range(400):
            if len(self.responses.items) >= before + responses:
                break
            await asyncio.sleep(0.005)
        return self.responses.items[before:]

    def sequences(self) -> list[int]:
        return [GlucoseRecord.parse(b).sequence_number for b in self.records.items]


async def test_report_greater_or_equal(radio: SimulatedRadio, meter: GlucoseMeter) -> None:
    c = await Central.connect(radio)
    got = await c.request(report_greater_or_equal(102))
    assert got == [b"\x06\x00\x01\x01"]
    assert c.records.items == [meter._data[s] for s in (102, 103, 104)]
    assert [GlucoseRecord.parse(b) for b in c.records.items] == meter.records[2:]
    assert RacpResponseCode.parse(got[0]).success


async def test_report_all_count_first_last_le_range(
    radio: SimulatedRadio, meter: GlucoseMeter
) -> None:
    c = await Central.connect(radio)
    assert await c.request(report_number_of_records()) == [b"\x05\x00\x05\x00"]
    assert RacpNumberOfRecords.parse(b"\x05\x00\x05\x00") == RacpNumberOfRecords(5)
    assert await c.request(report_all()) == [b"\x06\x00\x01\x01"]
    assert c.sequences() == [100, 101, 102, 103, 104]
    c.records.items.clear()
    assert await c.request(b"\x01\x05") == [b"\x06\x00\x01\x01"]
    assert await c.request(b"\x01\x06") == [b"\x06\x00\x01\x01"]
    assert await c.request(b"\x01\x02\x01\x65\x00") == [b"\x06\x00\x01\x01"]  # <= 101
    assert await c.request(b"\x01\x04\x01\x66\x00\x67\x00") == [b"\x06\x00\x01\x01"]  # 102..103
    assert c.sequences() == [100, 104, 100, 101, 102, 103]
    assert await c.request(b"\x04\x03\x01\x67\x00") == [b"\x05\x00\x02\x00"]  # count >= 103


async def test_no_records_and_errors(radio: SimulatedRadio, meter: GlucoseMeter) -> None:
    c = await Central.connect(radio)
    assert await c.request(report_greater_or_equal(105)) == [b"\x06\x00\x01\x06"]
    assert await c.request(b"\x01\x00") == [b"\x06\x00\x01\x03"]  # null operator
    assert await c.request(b"\x01\x07") == [b"\x06\x00\x01\x04"]  # reserved operator
    assert await c.request(b"\x01\x03") == [b"\x06\x00\x01\x05"]  # >= without operand
    assert await c.request(b"\x01\x03\x01\x05") == [b"\x06\x00\x01\x05"]  # short operand
    assert await c.request(b"\x01\x01\x00") == [b"\x06\x00\x01\x05"]  # all + operand
    assert await c.request(b"\x01\x04\x01\x05\x00\x01\x00") == [b"\x06\x00\x01\x05"]  # a > b
    time_filter = b"\x01\x03\x02\xe8\x07\x05\x11\x00\x00\x00"
    assert await c.request(time_filter) == [b"\x06\x00\x01\x09"]
    assert await c.request(b"\x07\x01") == [b"\x06\x00\x07\x02"]  # unknown op code
    assert await c.request(b"\x05\x00") == [b"\x06\x00\x05\x02"]  # a response is not a request
    assert await c.request(b"\x03\x01") == [b"\x06\x00\x03\x03"]  # abort, non-null operator
    assert await c.request(b"\x02\x00") == [b"\x06\x00\x02\x03"]
    assert await c.request(b"\x02\x03\x01\x00\x00") == [b"\x06\x00\x02\x04"]
    assert c.records.items == []
    assert len(meter.records) == 5


async def test_att_errors(radio: SimulatedRadio, meter: GlucoseMeter) -> None:
    c = await Central.connect(radio, racp=False)
    with pytest.raises(GattError) as err:
        await c.link.write(RACP_UUID, report_all().encode(), response=True, timeout=1.0)
    assert err.value.code == AttErrorCode.CCCD_IMPROPERLY_CONFIGURED
    await c.link.start_notify(RACP_UUID, c.responses)
    # A slow central keeps the report running; a second request meets "procedure in progress".
    c.records.delay = 0.02
    await c.link.write(RACP_UUID, report_all().encode(), response=True, timeout=1.0)
    with pytest.raises(GattError) as err:
        await c.link.write(RACP_UUID, report_all().encode(), response=True, timeout=1.0)
    assert err.value.code == AttErrorCode.PROCEDURE_ALREADY_IN_PROGRESS


async def test_abort_stops_the_report(radio: SimulatedRadio, meter: GlucoseMeter) -> None:
    c = await Central.connect(radio)
    c.records.delay = 0.02
    await c.link.write(RACP_UUID, report_all().encode(), response=True, timeout=1.0)
    await asyncio.sleep(0.03)
    got = await c.request(abort())
    assert got == [b"\x06\x00\x03\x01"]  # and no "06 00 01 01" for the aborted report
    await asyncio.sleep(0.1)
    assert c.responses.items == [b"\x06\x00\x03\x01"]
    assert 0 < len(c.records.items) < 5
    assert await c.request(abort()) == [b"\x06\x00\x03\x01"]  # nothing running: success


async def test_sequence_numbers_persist_and_delete_resets(
    radio: SimulatedRadio, meter: GlucoseMeter
) -> None:
    meter.power_cycle()
    assert meter.take_reading().sequence_number == 105
    c = await Central.connect(radio)
    assert await c.request(delete_all()) == [b"\x06\x00\x02\x01"]
    assert await c.request(report_number_of_records()) == [b"\x05\x00\x00\x00"]
    assert meter.take_reading().sequence_number == 100


async def test_advertises_until_everything_was_reported(
    radio: SimulatedRadio, meter: GlucoseMeter
) -> None:
    assert meter.advertising
    c = await Central.connect(radio)
    await c.request(report_greater_or_equal(103))
    await c.link.disconnect()
    assert not meter.advertising
    meter.take_reading()
    assert meter.advertising
    c = await Central.connect(radio)
    await c.request(report_number_of_records())
    await c.link.disconnect()
    assert meter.advertising  # counted, not reported: it still wants to be read


async def test_idle_timeout_disconnects(radio: SimulatedRadio, world: SimTime) -> None:
    m = GlucoseMeter(ADDR, PHYS, world=world, idle_timeout=2.0)  # 40 ms at speed 50
    radio.add(m)
    m.take_reading()
    c = await Central.connect(radio)
    await asyncio.wait_for(c.link.wait_disconnected(), 1.0)
    assert c.link.disconnect_reason == "idle timeout"


async def test_faults_mid_transfer_duplicate_invalid(radio: SimulatedRadio, world: SimTime) -> None:
    m = GlucoseMeter(
        ADDR,
        PHYS,
        world=world,
        faults=Faults(disconnect_after=2, invalid_readings=frozenset({1})),
    )
    radio.add(m)
    for _ in range(4):
        m.take_reading(Decimal(101))
    c = await Central.connect(radio)
    await c.link.write(RACP_UUID, report_all().encode(), response=True, timeout=1.0)
    await asyncio.wait_for(c.link.wait_disconnected(), 1.0)
    assert c.sequences() == [1, 2] and c.responses.items == []
    invalid = GlucoseRecord.parse(c.records.items[1])
    assert (invalid.concentration, invalid.status) == (None, ("sample-size-insufficient",))
    m.faults = Faults(duplicate=True)
    m.start_advertising()
    c = await Central.connect(radio)
    assert await c.request(report_greater_or_equal(4)) == [b"\x06\x00\x01\x01"]
    assert c.sequences() == [4, 4]
