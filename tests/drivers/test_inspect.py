"""``telehub decode`` (drivers.inspect.main): JSON out, errors and exit statuses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from drivers import weight
from drivers.catalog import Registry
from drivers.driver import Driver, SerialParams
from drivers.errors import DecodeError
from drivers.inspect import main, to_jsonable
from drivers.observation import DeviceTime, Kind, Measurement, Observation, Quantity


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, registry: Registry | None = None
) -> tuple[int, str, str]:
    code = main(list(argv), registry)
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_bpm_prints_the_measurement(capsys: pytest.CaptureFixture[str]) -> None:
    # A&D UA-651BLE reading (HEADS-project/ThingML-BLE AND_Medical_UA651BLE.md), hex with spaces.
    code, out, err = run(
        capsys, "0x2A35", "16 7d 00 50 00 66 00", "e1:07:01:10:0c:27:36", "40-00-00-00"
    )
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert doc["source"] == "2a35"
    assert doc["raw"] == "167d0050006600e10701100c2736400000 00".replace(" ", "")
    assert doc["kind"] == "spot"
    assert doc["timestamp"] == {
        "year": 2017,
        "month": 1,
        "day": 16,
        "hours": 12,
        "minutes": 39,
        "seconds": 54,
        "offset_minutes": 0,
        "iso": "2017-01-16T12:39:54",
    }
    assert doc["observations"][0] == {
        "mdc": 150021,
        "quantity": {"value": "125", "unit": "mm[Hg]", "mdc_unit": 266016, "special": None},
        "loinc": ["8480-6"],
        "original": None,
        "panel": 150020,
        "flags": [],
    }
    assert [o["quantity"]["value"] for o in doc["observations"]] == ["125", "80", "102", "64"]


def test_special_values_precision_and_unknown_date(capsys: pytest.CaptureFixture[str]) -> None:
    # Nordic BPM _some (kPa, converted) and a NaN record with an unknown year.
    code, out, _ = run(capsys, "2a35", "15bdf00b009ff03c001200")
    assert code == 0
    obs = json.loads(out)["observations"][0]
    assert obs["quantity"]["value"] == "141.8"
    assert obs["original"] == {"value": "18.9", "unit": "kPa", "mdc_unit": 265987, "special": None}
    code, out, _ = run(capsys, "2a35", "02ff07ff07ff070000041114293b")
    doc = json.loads(out)
    assert doc["observations"][0]["quantity"]["special"] == "nan"
    assert doc["timestamp"]["iso"] is None and doc["timestamp"]["month"] == 4


def test_decode_error_goes_to_stderr_with_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "2a35", "0x03020304050607")
    assert (code, out) == (1, "")
    assert json.loads(err) == {
        "error": {
            "source": "2a35",
            "field": "time stamp",
            "offset": 7,
            "reason": "truncated: needs 7 octet(s), 0 left",
        }
    }


def test_unknown_key_bad_hex_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "2a3x", "00")
    assert (code, out) == (2, "")
    assert "no driver or parser for '2a3x'" in err
    code, _, err = run(capsys, "2a35", "zz")
    assert code == 2 and "bad hex" in err
    code, _, err = run(capsys)
    assert code == 2 and "give <key> <hex> or --list" in err
    code, _, err = run(capsys, "--bogus")
    assert code == 2 and "unrecognized arguments" in err
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "telehub decode" in out


def test_records_of_non_measurement_characteristics(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "2a49", "0700")
    assert code == 0
    assert json.loads(out) == {
        "body_movement_detection": True,
        "cuff_fit_detection": True,
        "irregular_pulse_detection": True,
        "pulse_rate_range_detection": False,
        "measurement_position_detection": False,
        "multiple_bonds": False,
    }
    # Current Time (reference §1.3 example): 2024-05-17 14:03:09, Friday, 128/256 s, manual.
    code, out, _ = run(capsys, "2a2b", "e807051 10e03090580 01".replace(" ", ""))
    doc = json.loads(out)
    assert code == 0
    assert doc["time"]["iso"] == "2024-05-17T14:03:09"
    assert (doc["day_of_week"], doc["fractions256"], doc["adjust_reasons"], doc["raw"]) == (
        5,
        128,
        ["manual-time-update"],
        "e8070511 0e030905 8001".replace(" ", ""),
    )
    code, _, err = run(capsys, "2a60", "01")
    assert code == 1 and json.loads(err)["error"]["field"] == "supported features"


@dataclass
class PairFramer:
    """Test framer: records are 2 octets; a 0xEE octet is a sync error."""

    buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Measurement | DecodeError]:
        out: list[Measurement | DecodeError] = []
        for b in data:
            if b == 0xEE:
                out.append(DecodeError("pairs", "sync", 0, "bad octet"))
                continue
            self.buf.append(b)
            if len(self.buf) == 2:
                out.append(Measurement(source="pairs", raw=bytes(self.buf), observations=()))
                self.buf.clear()
        return out

    def flush(self) -> list[DecodeError]:
        held, self.buf = len(self.buf), bytearray()
        return [DecodeError("pairs", "frame", 0, f"{held} left")] if held else []


PAIRS = Driver(
    key="pairs",
    name="Pairs",
    decode=lambda data: Measurement(source="pairs", raw=data, observations=()),
    transport="serial",
    kind=Kind.CONTINUOUS,
    usb_ids=((0x10C4, 0xEA60),),
    serial=SerialParams(19200, parity="O"),
    framer=PairFramer,
)


def test_stream_protocol_goes_through_the_framer(capsys: pytest.CaptureFixture[str]) -> None:
    reg = Registry([PAIRS])
    code, out, err = run(capsys, "pairs", "0102 0304", registry=reg)
    assert (code, err) == (0, "")
    assert [m["raw"] for m in json.loads(out)] == ["0102", "0304"]
    code, out, err = run(capsys, "pairs", "0102 0304 05", registry=reg)  # a trailing half-frame
    assert code == 1
    assert [m["raw"] for m in json.loads(out)] == ["0102", "0304"]
    assert json.loads(err)["error"] == {
        "source": "pairs",
        "field": "frame",
        "offset": 0,
        "reason": "1 left",
    }
    code, out, err = run(capsys, "pairs", "01ee02", registry=reg)
    assert code == 1
    assert [m["raw"] for m in json.loads(out)] == ["0102"]
    assert json.loads(err)["error"]["reason"] == "bad octet"


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    reg = Registry([*weight.DRIVERS, PAIRS], weight.PARSERS)
    code, out, _ = run(capsys, "--list", registry=reg)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert rows == [
        {
            "key": "2a9d",
            "name": "Weight Measurement",
            "type": "measurement",
            "kind": "spot",
            "transport": "ble",
            "characteristic": "00002a9d-0000-1000-8000-00805f9b34fb",
            "service": "0000181d-0000-1000-8000-00805f9b34fb",
            "name_patterns": [],
            "usb_ids": [],
            "serial": None,
        },
        {
            "key": "pairs",
            "name": "Pairs",
            "type": "measurement",
            "kind": "continuous",
            "transport": "serial",
            "characteristic": None,
            "service": None,
            "name_patterns": [],
            "usb_ids": ["10c4:ea60"],
            "serial": {"baudrate": 19200, "bytesize": 8, "parity": "O", "stopbits": 1},
        },
        {
            "key": "2a9e",
            "name": "Weight Scale Feature",
            "type": "record",
            "characteristic": "00002a9e-0000-1000-8000-00805f9b34fb",
        },
    ]


def test_list_default_registry(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--list")
    keys = [json.loads(line)["key"] for line in out.splitlines()]
    assert code == 0
    assert {"2a9d", "2a9c", "2a35", "2a36", "2a5e", "2a5f", "2a1c", "2a1e", "2a2b"} <= set(keys)


def test_to_jsonable() -> None:
    m = Measurement(
        source="x",
        raw=bytearray(b"\x01"),  # type: ignore[arg-type]
        observations=(Observation(1, Quantity(None, "%", 2)),),
        timestamp=DeviceTime(2024, 1, 2, 3, 4, 5, offset_minutes=30),
    )
    doc = to_jsonable(m)
    assert doc["raw"] == "01"
    assert doc["timestamp"]["iso"] == "2024-01-02T03:34:05"
    assert to_jsonable([1, "a"]) == [1, "a"]


# -- end of input flushes the framers (real registry) -------------------------------------------
@pytest.mark.parametrize(
    ("key", "hexes", "records", "errors"),
    [
        # a whole Contec frame (B0 0x86, pleth 0, B2 0x05, PR 72, SpO2 97), then 2 of 5 octets
        ("contec-cms50d", "8600054861 8600", 1, [("frame", 5)]),
        # trailing octets without the sync bit: garbage pending at the end
        ("contec-cms50d", "8600054861 0102", 1, [("sync", 5)]),
        # garbage then a cut frame: both reported, in stream order
        ("berrymed-ble", "01 86000548", 0, [("sync", 0), ("frame", 1)]),
        # CMS50D-BT parameters frame (see test_contec_bt) then a cut header
        ("contec-cms50d-bt", "eb010548627f001a eb01", 1, [("frame", 8)]),
        # Jumper: a parameters frame with its last octet missing
        ("jumper-ble", "814861", 0, [("frame", 0)]),
    ],
)
def test_truncated_or_bad_trailing_input_is_an_error(
    capsys: pytest.CaptureFixture[str],
    key: str,
    hexes: str,
    records: int,
    errors: list[tuple[str, int]],
) -> None:
    code, out, err = run(capsys, key, hexes)
    assert code == 1
    assert len(json.loads(out)) == records
    got = [json.loads(line)["error"] for line in err.splitlines()]
    assert [(e["field"], e["offset"]) for e in got] == errors


def test_df2_partial_packet_at_end_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.drivers.test_nonin import PUFFERFISH_PACKET

    code, out, _ = run(capsys, "nonin-df2", PUFFERFISH_PACKET.hex())
    assert (code, len(json.loads(out))) == (0, 1)
    code, out, err = run(capsys, "nonin-df2", PUFFERFISH_PACKET[:62].hex())  # 12 frames + 2
    assert (code, json.loads(out)) == (1, [])
    got = [json.loads(line)["error"] for line in err.splitlines()]
    assert [(e["field"], e["offset"]) for e in got] == [("packet", 0), ("frame", 60)]
    assert "12 of 25 frames" in got[0]["reason"]


def test_flush_leaves_the_framer_reusable() -> None:
    from drivers.contec import ContecFramer

    f = ContecFramer()
    assert f.feed(bytes.fromhex("8600")) == []
    (e,) = f.flush()
    assert (e.field, e.offset) == ("frame", 0)
    assert f.flush() == []
    (m,) = f.feed(bytes.fromhex("8600054861"))
    assert isinstance(m, Measurement)


# -- every field, absent distinguished from zero / unknown -----------------------------------------
# Built by hand from the GATT XML field tables (oesmith/gatt-xml, reference §9).
def fields_of(capsys: pytest.CaptureFixture[str], key: str, hexes: str) -> dict[str, Any]:
    code, out, err = run(capsys, key, hexes)
    assert (code, err) == (0, "")
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_temperature_type_absent_vs_type_2(capsys: pytest.CaptureFixture[str]) -> None:
    # flags 0x04 (b2 Temperature Type present), 36.4 Cel = FLOAT 6C 01 00 FF, type 2 (body)
    with_type = fields_of(capsys, "2a1c", "04 6c0100ff 02")
    without = fields_of(capsys, "2a1c", "00 6c0100ff")
    assert with_type["fields"]["temperature_type"] == 2
    assert without["fields"]["temperature_type"] is None
    assert (with_type["flags_word"], with_type["flags_bits"]) == (4, [2])
    assert (without["flags_word"], without["flags_bits"]) == (0, [])


def test_user_id_absent_vs_unknown_user(capsys: pytest.CaptureFixture[str]) -> None:
    # Weight 0x2A9D: flags b2 User ID present; 0x3840 x 0.005 kg = 72 kg; User ID 0xFF = unknown
    unknown = fields_of(capsys, "2a9d", "04 4038 ff")
    absent = fields_of(capsys, "2a9d", "00 4038")
    assert unknown["fields"]["user_id"] == 255
    assert absent["fields"]["user_id"] is None


def test_reserved_flag_bits_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    # Weight flags 0x80: b7 is reserved for future use; shown, not hidden
    doc = fields_of(capsys, "2a9d", "80 4038")
    assert doc["flags_bits"] == [7]


def test_glucose_time_offset_zero_vs_absent(capsys: pytest.CaptureFixture[str]) -> None:
    # flags b0 Time Offset present; sequence 1; base time 2017-01-16 12:39:54; offset 0 min
    zero = fields_of(capsys, "2a18", "01 0100 e10701100c2736 0000".replace(" ", ""))
    absent = fields_of(capsys, "2a18", "00 0100 e10701100c2736".replace(" ", ""))
    assert zero["fields"]["time_offset"] == 0
    assert absent["fields"]["time_offset"] is None


def test_heart_rate_energy_and_rr(capsys: pytest.CaptureFixture[str]) -> None:
    # flags 0x1E: contact detected (b1-2 = 3), energy (b3), RR (b4); HR 72; 16 kJ; RR 1024, 1280
    doc = fields_of(capsys, "2a37", "1e 48 1000 0004 0005")
    assert doc["fields"]["energy_expended"] == 16
    assert doc["fields"]["rr_intervals"] == [1024, 1280]
    assert doc["flags_bits"] == [1, 2, 3, 4]


def test_body_composition_has_a_16_bit_flags_word(capsys: pytest.CaptureFixture[str]) -> None:
    # flags 0x0004 (b2 User ID), body fat 0x00FA x 0.1 = 25.0 %, user 3
    doc = fields_of(capsys, "2a9c", "0400 fa00 03")
    assert (doc["flags_word"], doc["flags_bits"]) == (4, [2])
    assert doc["fields"]["user_id"] == 3


def test_nonin_ble_status_word_and_battery_voltage(capsys: pytest.CaptureFixture[str]) -> None:
    # test_nonin.test_ble_typical's record: STATUS 0x15 (b0 b2 b4), battery 0x1E = 3.0 V (0.1 V)
    doc = fields_of(capsys, "nonin-ble", "0a151e00c8002a610048")
    assert (doc["flags_word"], doc["flags_bits"]) == (0x15, [0, 2, 4])
    assert doc["fields"]["battery_decivolts"] == 30


def test_record_without_a_field_table_prints_the_measurement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = fields_of(capsys, "2a19", "64")  # Battery Level 100 %
    assert "fields" not in doc and doc["source"] == "2a19"


def test_vendor_stream_records_show_pleth_and_signal_strength(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Contec frame built from reference §6.3: signal strength 6, pleth 63, bar graph 5, PR 72
    code, out, _ = run(capsys, "contec-cms50d", "963f254861")
    assert code == 0
    (doc,) = json.loads(out)
    assert doc["fields"]["frame"]["signal_strength"] == 6
    assert doc["fields"]["frame"]["pleth"] == 63
    assert doc["fields"]["status_b0"] == 0x96
    code, out, _ = run(capsys, "berrymed-ble", "963f254861")
    assert json.loads(out)[0]["fields"]["flags"] == ["no-signal", "searching"]


def test_framed_record_without_a_frame_view(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.drivers.test_nonin import PUFFERFISH_PACKET

    code, out, _ = run(capsys, "nonin-df2", PUFFERFISH_PACKET.hex())
    assert code == 0 and "fields" not in json.loads(out)[0]


def test_plx_status_words_raw_with_reserved_bits(capsys: pytest.CaptureFixture[str]) -> None:
    # PLX Spot-check 0x2A5E built from the GATT XML (plx_spot_check_measurement): flags 0x06
    # (b1 Measurement Status, b2 Device and Sensor Status present); SpO2 SFLOAT 0x0062 = 98,
    # PR 0x0048 = 72; Measurement Status 0x0021 (b0 is RFU, b5 "measurement ongoing");
    # Device and Sensor Status 0x000001 (b0 "extended display update ongoing").
    doc = fields_of(capsys, "2a5e", "06 6200 4800 2100 010000")
    wire = {w["field"]: w for w in doc["wire"]}
    assert wire["measurement status"] == {
        "field": "measurement status",
        "offset": 5,
        "octets": "2100",
        "value": 0x21,
        "bits": [0, 5],
    }
    assert wire["device and sensor status"]["bits"] == [0]
    assert wire["device and sensor status"]["offset"] == 7
    assert [w["offset"] for w in doc["wire"]] == [0, 1, 3, 5, 7]


def test_wire_shows_signed_and_time_fields(capsys: pytest.CaptureFixture[str]) -> None:
    # Glucose: time offset -60 min = 0xFFC4 (sint16 LE C4 FF)
    doc = fields_of(capsys, "2a18", "01 0100 e10701100c2736 c4ff")
    wire = {w["field"]: w for w in doc["wire"]}
    assert wire["time offset"]["value"] == -60
    assert any(w["octets"] == "e10701100c2736" for w in doc["wire"])


# RACP, built from the GATT XML record_access_control_point table: op codes 1-6, operators 0-6,
# filter type 0x01 = sequence number, response codes (1 = success, 6 = no records found).
@pytest.mark.parametrize(
    ("hex_", "names"),
    [
        ("0101", {"op_code_name": "report-stored-records", "operator_name": "all-records"}),
        (
            "0104 01 0100 ff00",
            {
                "operator_name": "within-range-of",
                "operand_filter_type_name": "sequence-number",
                "operand_sequence_numbers": [1, 255],
            },
        ),
        (
            "0103 02 0000",  # filter type 2 (user facing time): named, not decoded as numbers
            {"operand_filter_type_name": "user-facing-time", "operand_sequence_numbers": None},
        ),
        ("0107", {"operator_name": "reserved"}),
        (
            "0600 0106",
            {
                "op_code_name": "response-code",
                "operator_name": "null",
                "request_op_code_name": "report-stored-records",
                "response_code_name": "no-records-found",
            },
        ),
        ("0500 0a00", {"op_code_name": "number-of-stored-records-response", "count": 10}),
    ],
)
def test_racp_names(capsys: pytest.CaptureFixture[str], hex_: str, names: dict[str, Any]) -> None:
    doc = fields_of(capsys, "2a52", hex_)
    assert {k: doc[k] for k in names} == names
