"""Record Access Control Point 0x2A52: requests the edge writes, responses the device indicates.

Reference device-formats.md §5.3 and §8.3; SIG GATT XML ``record_access_control_point``. Frame:
``Op Code (u8) | Operator (u8) | Operand``. Codes are kept as the integers sent (so unknown and
reserved values survive) and named through properties (``"reserved"`` when unassigned).

Requests (op codes 1-4) are built with :func:`report_all`, :func:`report_greater_or_equal`,
:func:`report_number_of_records`, :func:`abort` and :func:`delete_all`, and parsed with
:meth:`RacpRequest.parse` (the simulators answer them). The GLS operand of <=, >= and "within
range" starts with a filter type: 0x01 sequence number (uint16), 0x02 user-facing time.

Responses: :func:`parse_response` accepts only op code 5 (number of stored records, ``05 00
<uint16>``) and 6 (response code, ``06 00 <request op code> <code>``). Structurally invalid
responses are rejected: another op code, a non-null operator, or an operand of the wrong length.
The operand length is exact (no trailing octets): GLS, CGMS and PLXS define the record count as a
uint16, and accepting e.g. a 4-octet count by ignoring octets would silently change its value.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import ClassVar, Self

from drivers import _cursor as c
from drivers.driver import Driver, Parser
from drivers.errors import DecodeError

log = logging.getLogger(__name__)

SOURCE = "2a52"
RACP_UUID = "00002a52-0000-1000-8000-00805f9b34fb"
RESERVED = "reserved"


class OpCode(enum.IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class Operator(enum.IntEnum):
    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL_TO = 2
    GREATER_THAN_OR_EQUAL_TO = 3
    WITHIN_RANGE_OF = 4  # inclusive
    FIRST_RECORD = 5  # oldest
    LAST_RECORD = 6  # most recent


class FilterType(enum.IntEnum):
    """GLS operand filter type (first octet of the operand of <=, >=, within range)."""

    SEQUENCE_NUMBER = 1
    USER_FACING_TIME = 2


class ResponseCode(enum.IntEnum):
    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


REQUEST_OP_CODES = frozenset(
    {
        OpCode.REPORT_STORED_RECORDS,
        OpCode.DELETE_STORED_RECORDS,
        OpCode.ABORT_OPERATION,
        OpCode.REPORT_NUMBER_OF_STORED_RECORDS,
    }
)


#: Operators that take a filter -> how many filter values (GLS).
_FILTER_VALUES: dict[int, int] = {
    Operator.LESS_THAN_OR_EQUAL_TO: 1,
    Operator.GREATER_THAN_OR_EQUAL_TO: 1,
    Operator.WITHIN_RANGE_OF: 2,
}


def _name(kind: type[enum.IntEnum], value: int) -> str:
    """Kebab-case name of a code, ``"reserved"`` if unassigned."""
    try:
        return kind(value).name.lower().replace("_", "-")
    except ValueError:
        return RESERVED


@dataclass(frozen=True, slots=True)
class RacpRequest:
    """A request written to the RACP (op codes 1-4)."""

    SOURCE: ClassVar[str] = SOURCE

    op_code: int
    operator: int
    operand: bytes = b""

    def encode(self) -> bytes:
        return bytes((self.op_code, self.operator)) + self.operand

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Structure only: any operator/operand is accepted (the server answers bad ones)."""
        if len(data) < 2:
            raise DecodeError(SOURCE, "op code/operator", 0, f"truncated: {len(data)} octet(s)")
        if data[0] not in REQUEST_OP_CODES:
            raise DecodeError(SOURCE, "op code", 0, f"{data[0]} is not a request op code (1-4)")
        return cls(data[0], data[1], bytes(data[2:]))

    @property
    def op_code_name(self) -> str:
        return _name(OpCode, self.op_code)

    @property
    def operator_name(self) -> str:
        return _name(Operator, self.operator)

    def sequence_operand(self) -> tuple[int, ...]:
        """The sequence numbers of a GLS sequence-number filter (1 for <=/>=, 2 for a range)."""
        want = _FILTER_VALUES.get(self.operator)
        if want is None:
            raise DecodeError(SOURCE, "operator", 1, f"operator {self.operator} takes no filter")
        if not self.operand or self.operand[0] != FilterType.SEQUENCE_NUMBER:
            raise DecodeError(SOURCE, "filter type", 2, "not a sequence-number filter (0x01)")
        if len(self.operand) != 1 + 2 * want:
            raise DecodeError(
                SOURCE, "operand", 3, f"needs {2 * want} octet(s), got {len(self.operand) - 1}"
            )
        body = self.operand[1:]
        return tuple(int.from_bytes(body[i : i + 2], "little") for i in range(0, len(body), 2))


def report_all() -> RacpRequest:
    """``01 01``: report all stored records (full sync)."""
    return RacpRequest(OpCode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS)


def report_greater_or_equal(sequence: int) -> RacpRequest:
    """``01 03 01 <seq LE16>``: report records with sequence number >= ``sequence``."""
    operand = c.u8(FilterType.SEQUENCE_NUMBER) + c.u16(sequence)
    return RacpRequest(OpCode.REPORT_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL_TO, operand)


def report_number_of_records() -> RacpRequest:
    """``04 01``: report the number of stored records."""
    return RacpRequest(OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.ALL_RECORDS)


def abort() -> RacpRequest:
    """``03 00``: abort the procedure in progress."""
    return RacpRequest(OpCode.ABORT_OPERATION, Operator.NULL)


def delete_all() -> RacpRequest:
    """``02 01``: delete all stored records (resets GLS sequence numbers on many devices)."""
    return RacpRequest(OpCode.DELETE_STORED_RECORDS, Operator.ALL_RECORDS)


@dataclass(frozen=True, slots=True)
class RacpNumberOfRecords:
    """``05 00 <uint16>``: the number of stored records matching the request."""

    count: int

    def encode(self) -> bytes:
        return bytes((OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, Operator.NULL)) + c.u16(self.count)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        response = parse_response(data)
        if not isinstance(response, cls):
            raise DecodeError(SOURCE, "op code", 0, f"{data[0]} is not op code 5")
        return response


@dataclass(frozen=True, slots=True)
class RacpResponseCode:
    """``06 00 <request op code> <response code>``: the outcome of a request."""

    request_op_code: int
    response_code: int

    def encode(self) -> bytes:
        return bytes(
            (OpCode.RESPONSE_CODE, Operator.NULL, self.request_op_code, self.response_code)
        )

    @classmethod
    def parse(cls, data: bytes) -> Self:
        response = parse_response(data)
        if not isinstance(response, cls):
            raise DecodeError(SOURCE, "op code", 0, f"{data[0]} is not op code 6")
        return response

    @property
    def request_name(self) -> str:
        return _name(OpCode, self.request_op_code)

    @property
    def code_name(self) -> str:
        return _name(ResponseCode, self.response_code)

    @property
    def success(self) -> bool:
        return self.response_code == ResponseCode.SUCCESS

    @property
    def no_records(self) -> bool:
        return self.response_code == ResponseCode.NO_RECORDS_FOUND


Response = RacpNumberOfRecords | RacpResponseCode


def parse_response(data: bytes) -> Response:
    """An RACP indication from the device (op code 5 or 6, null operator, 2-octet operand)."""
    if len(data) < 2:
        raise DecodeError(SOURCE, "op code/operator", 0, f"truncated: {len(data)} octet(s)")
    op_code, operator = data[0], data[1]
    if op_code not in (OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, OpCode.RESPONSE_CODE):
        raise DecodeError(SOURCE, "op code", 0, f"{op_code} is not a response op code (5 or 6)")
    if operator != Operator.NULL:
        raise DecodeError(
            SOURCE, "operator", 1, f"a response carries the null operator, not {operator}"
        )
    if len(data) != 4:
        field = (
            "number of records"
            if op_code == OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE
            else ("request op code/response code")
        )
        raise DecodeError(SOURCE, field, 2, f"operand must be 2 octets, got {len(data) - 2}")
    if op_code == OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        return RacpNumberOfRecords(int.from_bytes(data[2:4], "little"))
    return RacpResponseCode(data[2], data[3])


def parse_racp(data: bytes) -> RacpRequest | Response:
    """Any RACP frame (request or response), for ``telehub decode``."""
    if data[:1] and data[0] in REQUEST_OP_CODES:
        return RacpRequest.parse(data)
    return parse_response(data)


DRIVERS: tuple[Driver, ...] = ()  # RACP carries no measurement

PARSERS: tuple[Parser, ...] = (
    Parser(SOURCE, "Record Access Control Point", parse_racp, RACP_UUID),
)

__all__ = [
    "DRIVERS",
    "PARSERS",
    "FilterType",
    "OpCode",
    "Operator",
    "RacpNumberOfRecords",
    "RacpRequest",
    "RacpResponseCode",
    "ResponseCode",
    "abort",
    "delete_all",
    "parse_racp",
    "parse_response",
    "report_all",
    "report_greater_or_equal",
    "report_number_of_records",
]
