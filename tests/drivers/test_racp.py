"""Record Access Control Point 0x2A52.

Vectors: reference device-formats.md §5.3 (``04 01``, ``05 00 nn nn``, ``01 03 01 <seq>``,
``01 01``, ``06 00 01 01``, ``06 00 01 06``, ``03 00``) and NordicSemiconductor/
Android-BLE-Common-Library ``ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/
RecordAccessControlPointDataCallbackTest.java``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.driver import Parser
from drivers.errors import DecodeError
from drivers.racp import (
    DRIVERS,
    PARSERS,
    OpCode,
    Operator,
    RacpNumberOfRecords,
    RacpRequest,
    RacpResponseCode,
    abort,
    delete_all,
    parse_racp,
    parse_response,
    report_all,
    report_greater_or_equal,
    report_number_of_records,
)

GE = "greater-than-or-equal-to"


def fields(e: DecodeError) -> tuple[str, str, int, str]:
    return (e.source, e.field, e.offset, e.reason)


# -- requests ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_", "data", "op_name", "operator_name"),
    [
        (report_all(), "0101", "report-stored-records", "all-records"),
        (report_number_of_records(), "0401", "report-number-of-stored-records", "all-records"),
        (abort(), "0300", "abort-operation", "null"),
        (delete_all(), "0201", "delete-stored-records", "all-records"),
        # Incremental sync after sequence 0x0133: ask for >= 0x0134.
        (report_greater_or_equal(0x0134), "0103013401", "report-stored-records", GE),
    ],
)  # fmt: skip
def test_reference_requests(
    request_: RacpRequest, data: str, op_name: str, operator_name: str
) -> None:
    raw = bytes.fromhex(data)
    assert request_.encode() == raw
    assert RacpRequest.parse(raw) == request_
    assert parse_racp(raw) == request_
    assert (request_.op_code_name, request_.operator_name) == (op_name, operator_name)


def test_request_names_for_reserved_values() -> None:
    r = RacpRequest.parse(bytes.fromhex("0107ff"))
    assert (r.op_code, r.operator, r.operand) == (1, 7, b"\xff")
    assert (r.op_code_name, r.operator_name) == ("report-stored-records", "reserved")


@pytest.mark.parametrize(
    ("data", "values"),
    [
        ("0103013401", (0x0134,)),
        ("0102010a00", (10,)),
        ("010401010002 00".replace(" ", ""), (1, 2)),
    ],
)
def test_sequence_operand(data: str, values: tuple[int, ...]) -> None:
    assert RacpRequest.parse(bytes.fromhex(data)).sequence_operand() == values


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("0101", "operator", 1, "operator 1 takes no filter"),
        ("0103", "filter type", 2, "not a sequence-number filter (0x01)"),
        ("0103020000", "filter type", 2, "not a sequence-number filter (0x01)"),
        ("01030134", "operand", 3, "needs 2 octet(s), got 1"),
        ("0104013400", "operand", 3, "needs 4 octet(s), got 2"),
    ],
)
def test_sequence_operand_errors(data: str, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        RacpRequest.parse(bytes.fromhex(data)).sequence_operand()
    assert fields(exc.value) == ("2a52", field, offset, reason)


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("", "op code/operator", 0, "truncated: 0 octet(s)"),
        ("01", "op code/operator", 0, "truncated: 1 octet(s)"),
        ("0501", "op code", 0, "5 is not a request op code (1-4)"),
        ("0001", "op code", 0, "0 is not a request op code (1-4)"),
    ],
)
def test_request_errors(data: str, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        RacpRequest.parse(bytes.fromhex(data))
    assert fields(exc.value) == ("2a52", field, offset, reason)


# -- responses ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected", "request_name", "code_name"),
    [
        # reference §5.3 end of procedure; Nordic onRecordAccessOperationCompleted{,WithNoRecords}
        ("06000101", RacpResponseCode(1, 1), "report-stored-records", "success"),
        ("06000106", RacpResponseCode(1, 6), "report-stored-records", "no-records-found"),
        # Nordic error codes 2-10 (12 is an unknown request op code, 10 an unknown code)
        ("06000c02", RacpResponseCode(12, 2), "reserved", "op-code-not-supported"),
        ("06000103", RacpResponseCode(1, 3), "report-stored-records", "invalid-operator"),
        ("06000204", RacpResponseCode(2, 4), "delete-stored-records", "operator-not-supported"),
        ("06000105", RacpResponseCode(1, 5), "report-stored-records", "invalid-operand"),
        ("06000307", RacpResponseCode(3, 7), "abort-operation", "abort-unsuccessful"),
        ("06000208", RacpResponseCode(2, 8), "delete-stored-records", "procedure-not-completed"),
        ("06000209", RacpResponseCode(2, 9), "delete-stored-records", "operand-not-supported"),
        ("0600010a", RacpResponseCode(1, 10), "report-stored-records", "reserved"),
    ],
)
def test_response_codes(
    data: str, expected: RacpResponseCode, request_name: str, code_name: str
) -> None:
    raw = bytes.fromhex(data)
    assert parse_response(raw) == expected
    assert RacpResponseCode.parse(raw) == expected
    assert parse_racp(raw) == expected
    assert expected.encode() == raw
    assert (expected.request_name, expected.code_name) == (request_name, code_name)
    assert (expected.success, expected.no_records) == (
        expected.response_code == 1,
        expected.response_code == 6,
    )


def test_number_of_records() -> None:
    # Nordic onNumberOfRecordsReceived_uint16: 05 00 02 01 -> 258.
    raw = bytes.fromhex("05000201")
    assert parse_response(raw) == RacpNumberOfRecords(258)
    assert RacpNumberOfRecords.parse(raw) == RacpNumberOfRecords(258)
    assert RacpNumberOfRecords(258).encode() == raw


@pytest.mark.parametrize(
    ("data", "field", "offset", "reason"),
    [
        ("", "op code/operator", 0, "truncated: 0 octet(s)"),
        ("06", "op code/operator", 0, "truncated: 1 octet(s)"),
        # Nordic onInvalidDataReceived_tooShort / _wrongOpCode: a request is not a response.
        ("0101", "op code", 0, "1 is not a response op code (5 or 6)"),
        ("0103010200", "op code", 0, "1 is not a response op code (5 or 6)"),
        ("07000101", "op code", 0, "7 is not a response op code (5 or 6)"),
        # Nordic onInvalidDataReceived_invalidOperator; reference §8.3.
        ("060101", "operator", 1, "a response carries the null operator, not 1"),
        ("05010100", "operator", 1, "a response carries the null operator, not 1"),
        # Nordic accepts 1- and 4-octet counts (uint8/uint32 tests); GLS/CGMS/PLXS define uint16.
        ("050001", "number of records", 2, "operand must be 2 octets, got 1"),
        ("050004030201", "number of records", 2, "operand must be 2 octets, got 4"),
        ("0500030201", "number of records", 2, "operand must be 2 octets, got 3"),
        ("060001", "request op code/response code", 2, "operand must be 2 octets, got 1"),
        ("0600010100", "request op code/response code", 2, "operand must be 2 octets, got 3"),
    ],
)  # fmt: skip
def test_response_errors(data: str, field: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        parse_response(bytes.fromhex(data))
    assert fields(exc.value) == ("2a52", field, offset, reason)


def test_typed_parse_rejects_the_other_response() -> None:
    with pytest.raises(DecodeError) as exc:
        RacpNumberOfRecords.parse(bytes.fromhex("06000101"))
    assert fields(exc.value) == ("2a52", "op code", 0, "6 is not op code 5")
    with pytest.raises(DecodeError) as exc:
        RacpResponseCode.parse(bytes.fromhex("05000201"))
    assert fields(exc.value) == ("2a52", "op code", 0, "5 is not op code 6")


def test_parse_racp_empty() -> None:
    with pytest.raises(DecodeError):
        parse_racp(b"")


def test_registry_entries() -> None:
    assert DRIVERS == ()
    assert (
        Parser(
            "2a52",
            "Record Access Control Point",
            parse_racp,
            "00002a52-0000-1000-8000-00805f9b34fb",
        ),
    ) == PARSERS


# -- properties --------------------------------------------------------------------------------
requests = st.builds(
    RacpRequest,
    op_code=st.sampled_from([1, 2, 3, 4]),
    operator=st.integers(0, 255),
    operand=st.binary(max_size=9),
)
responses = st.one_of(
    st.builds(RacpNumberOfRecords, st.integers(0, 0xFFFF)),
    st.builds(RacpResponseCode, st.integers(0, 255), st.integers(0, 255)),
)


@given(requests)
def test_request_roundtrip(r: RacpRequest) -> None:
    assert RacpRequest.parse(r.encode()) == r
    assert parse_racp(r.encode()) == r


@given(responses)
def test_response_roundtrip(r: RacpNumberOfRecords | RacpResponseCode) -> None:
    assert parse_response(r.encode()) == r
    assert type(r).parse(r.encode()) == r


@given(st.integers(0, 0xFFFF))
def test_report_greater_or_equal_roundtrip(seq: int) -> None:
    assert report_greater_or_equal(seq).sequence_operand() == (seq,)


@given(st.binary(max_size=8))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        r = parse_racp(data)
    except DecodeError:
        return
    assert r.encode() == data


def test_enums_match_the_reference() -> None:
    assert [int(o) for o in OpCode] == [1, 2, 3, 4, 5, 6]
    assert [int(o) for o in Operator] == [0, 1, 2, 3, 4, 5, 6]
