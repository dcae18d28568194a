"""``telehub decode``: decode captured bytes with any registry entry and print JSON.

    telehub decode <characteristic-or-protocol> <hex>...   decoded Measurement(s) / record as JSON
    telehub decode --list                                  every registry key

Exit status: 0 decoded; 1 DecodeError (field, offset, reason on stderr); 2 unknown key or bad
arguments. The hex may be split over several arguments and may contain spaces, ``:`` or ``-``.
Stream protocols (``transport="serial"`` or a framer) feed the bytes through the framer and print
a JSON array of the records it completed; framing errors go to stderr (exit 1). The end of the
input flushes the framer: octets left over (an incomplete frame or packet, trailing garbage) are
an error with their stream offset (exit 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import logging
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from drivers._cursor import Cursor
from drivers.errors import DecodeError
from drivers.observation import DeviceTime, Measurement

if TYPE_CHECKING:
    from drivers.catalog import Registry

log = logging.getLogger(__name__)


def to_jsonable(obj: Any) -> Any:
    """JSON-ready form: Decimal as its string (precision kept), bytes as hex, enums as values,
    dataclasses as objects (DeviceTime also gets ``iso``, the local time or null if unknown)."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).hex()
    if isinstance(obj, DeviceTime):
        naive = obj.naive()
        out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return {**out, "iso": naive.isoformat() if naive is not None else None}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_jsonable(x) for x in obj]
    return obj


def error_json(err: DecodeError) -> dict[str, Any]:
    return {"source": err.source, "field": err.field, "offset": err.offset, "reason": err.reason}


def _parse_hex(parts: list[str]) -> bytes:
    text = "".join(parts).replace(":", "").replace("-", "").replace(" ", "")
    if text.lower().startswith("0x"):
        text = text[2:]
    return bytes.fromhex(text)


def _list(registry: Registry) -> int:
    rows: list[dict[str, Any]] = []
    for d in registry.all_drivers():
        rows.append(
            {
                "key": d.key,
                "name": d.name,
                "type": "measurement",
                "kind": d.kind.value,
                "transport": d.transport,
                "characteristic": d.characteristic,
                "service": d.service,
                "name_patterns": list(d.name_patterns),
                "usb_ids": [f"{vid:04x}:{pid:04x}" for vid, pid in d.usb_ids],
                "serial": to_jsonable(d.serial),
            }
        )
    for p in registry.all_parsers():
        rows.append(
            {"key": p.key, "name": p.name, "type": "record", "characteristic": p.characteristic}
        )
    for row in rows:
        _out(json.dumps(row))
    return 0


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _field_records() -> dict[str, tuple[Any, int, int]]:
    """Registry key -> (the record class, whose ``read(cursor)`` reads it field by field; offset
    and octets of the flags or status field)."""
    from drivers import (
        blood_pressure,
        body_composition,
        glucose,
        heart_rate,
        nonin,
        pulse_oximeter,
        thermometer,
        weight,
    )

    return {
        "2a9d": (weight.WeightRecord, 0, 1),
        "2a9c": (body_composition.BodyCompositionRecord, 0, 2),
        "2a35": (blood_pressure.BloodPressureRecord, 0, 1),
        "2a36": (blood_pressure.IntermediateCuffPressureRecord, 0, 1),
        "2a5e": (pulse_oximeter.PlxSpotCheckRecord, 0, 1),
        "2a5f": (pulse_oximeter.PlxContinuousRecord, 0, 1),
        "2a1c": (thermometer.TemperatureRecord, 0, 1),
        "2a1e": (thermometer.IntermediateTemperatureRecord, 0, 1),
        "2a18": (glucose.GlucoseRecord, 0, 1),
        "2a37": (heart_rate.HeartRateRecord, 0, 1),
        nonin.BLE_KEY: (nonin.NoninBleRecord, 1, 1),  # STATUS after LENGTH
    }


class TracingCursor(Cursor):
    """A Cursor that notes every field it reads: name, offset, octets (hex), and for integers the
    value; flags and status fields also get ``bits``, the numbers of their set bits."""

    __slots__ = ("trace",)

    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(data, source)
        self.trace: list[dict[str, Any]] = []

    def take(self, size: int, field: str) -> bytes:
        at = self.offset
        chunk = super().take(size, field)
        self.trace.append({"field": field, "offset": at, "octets": chunk.hex()})
        return chunk

    def uint(self, size: int, field: str, *, big_endian: bool = False) -> int:
        value = super().uint(size, field, big_endian=big_endian)
        entry = self.trace[-1]
        entry["value"] = value
        if "flags" in field or "status" in field:
            entry["bits"] = [i for i in range(8 * size) if value >> i & 1]
        return value

    def s16(self, field: str) -> int:
        value = super().s16(field)
        self.trace[-1]["value"] = value
        return value

    def date_time(self, field: str = "time stamp") -> DeviceTime:
        at = self.offset
        t = super().date_time(field)
        octets = self.data[at : self.offset].hex()
        self.trace.append({"field": field, "offset": at, "octets": octets})
        return t


def record_json(rec: object) -> Any:
    """A parser's record as JSON; RACP values also get their names (op code, operator, filter
    type of the operand, response code; ``reserved`` when unassigned) and the operand decoded."""
    from drivers import racp

    doc = to_jsonable(rec)
    if isinstance(rec, racp.RacpRequest):
        doc["op_code_name"] = rec.op_code_name
        doc["operator_name"] = rec.operator_name
        if rec.operand:
            doc["operand_filter_type"] = rec.operand[0]
            doc["operand_filter_type_name"] = racp._name(racp.FilterType, rec.operand[0])
            try:
                doc["operand_sequence_numbers"] = list(rec.sequence_operand())
            except DecodeError as exc:
                doc["operand_sequence_numbers"] = None
                doc["operand_note"] = exc.reason
    elif isinstance(rec, racp.RacpNumberOfRecords):
        doc["op_code_name"] = racp._name(racp.OpCode, racp.OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE)
        doc["operator_name"] = racp._name(racp.Operator, racp.Operator.NULL)
    elif isinstance(rec, racp.RacpResponseCode):
        doc["op_code_name"] = racp._name(racp.OpCode, racp.OpCode.RESPONSE_CODE)
        doc["operator_name"] = racp._name(racp.Operator, racp.Operator.NULL)
        doc["request_op_code_name"] = rec.request_name
        doc["response_code_name"] = rec.code_name
    return doc


def _frame_records() -> dict[str, Callable[[bytes], object]]:
    """Stream key -> the field-by-field view of one frame (pleth, signal strength, raw status)."""
    from drivers import contec, contec_bt, jumper, primitives

    return {
        contec.CONTEC_KEY: primitives.parse_contec_frame,
        contec.BERRYMED_KEY: primitives.parse_berrymed_frame,
        contec_bt.CONTEC_BT_KEY: primitives.parse_contec_bt_frame,
        jumper.JUMPER_KEY: jumper.JumperParams.parse,
    }


def framed_with_fields(key: str, m: Measurement) -> dict[str, Any]:
    """A framed record's JSON plus ``fields``: its frame field by field (vendor streams)."""
    doc: dict[str, Any] = to_jsonable(m)
    parse = _frame_records().get(key)
    if parse is not None:
        doc["fields"] = to_jsonable(parse(m.raw))
    return doc


def with_fields(key: str, data: bytes, m: Measurement) -> dict[str, Any]:
    """The Measurement's JSON plus ``fields`` (the record exactly as sent: absent fields are
    null, present ones their raw value) and the flags (SIG) or status (Nonin) field as
    ``flags_word`` (the integer) and ``flags_bits`` (every set bit, reserved ones included), and
    ``wire``: every field read, in order, by name, offset, octets and integer value (status words
    with their set bits)."""
    doc: dict[str, Any] = to_jsonable(m)
    entry = _field_records().get(key)
    if entry is None:
        return doc
    record_cls, at, width = entry
    cur = TracingCursor(data, key)
    doc["fields"] = to_jsonable(record_cls.read(cur))
    doc["wire"] = cur.trace
    word = int.from_bytes(data[at : at + width], "little")
    doc["flags_word"] = word
    doc["flags_bits"] = [i for i in range(8 * width) if word >> i & 1]
    return doc


def _default_registry() -> Registry:
    from drivers.registry import REGISTRY

    return REGISTRY


def main(argv: list[str], registry: Registry | None = None) -> int:
    """Entry point behind ``telehub decode``; returns the process exit status."""
    ap = argparse.ArgumentParser(prog="telehub decode", description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="list every registry key")
    ap.add_argument("key", nargs="?", help="characteristic (2a35, 0x2A35, full UUID) or protocol")
    ap.add_argument("hex", nargs="*", help="the captured octets in hex")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help / bad usage
        return int(exc.code or 0)
    if registry is None:
        registry = _default_registry()
    if args.list:
        return _list(registry)
    if args.key is None:
        _err("telehub decode: give <key> <hex> or --list")
        return 2
    try:
        data = _parse_hex(args.hex)
    except ValueError as exc:
        _err(f"telehub decode: bad hex: {exc}")
        return 2
    try:
        key = registry.resolve(args.key)
    except KeyError as exc:
        _err(f"telehub decode: {exc.args[0]}")
        return 2
    try:
        if key in {p.key for p in registry.all_parsers()}:
            _out(json.dumps(record_json(registry.parser(key).parse(data)), indent=2))
            return 0
        driver = registry.get(key)
        if driver.framer is None:
            _out(json.dumps(with_fields(key, data, driver.decode(data)), indent=2))
            return 0
    except DecodeError as exc:
        _err(json.dumps({"error": error_json(exc)}))
        return 1
    framer = driver.framer()
    results = [*framer.feed(data), *framer.flush()]
    measurements: list[Measurement] = [r for r in results if isinstance(r, Measurement)]
    errors = [r for r in results if isinstance(r, DecodeError)]
    _out(json.dumps([framed_with_fields(key, m) for m in measurements], indent=2))
    for e in errors:
        _err(json.dumps({"error": error_json(e)}))
    log.debug("decoded %d record(s), %d error(s) for %s", len(measurements), len(errors), key)
    return 1 if errors else 0
