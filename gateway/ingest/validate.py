"""Validation and normalisation of inbound MQTT payloads (pure: no I/O).

Message level (a failure rejects the whole message, dead-lettered with the whole payload):

1. size ≤ ``contract.MAX_PAYLOAD_BYTES`` (code ``size``; the dead letter keeps the first
   ``MAX_PAYLOAD_BYTES`` bytes only),
2. UTF-8 (``utf8``), 3. JSON (``json``), 4. ``v`` == 1 (``version``), 5. the ReadingsMessage
   schema (``schema``), 6. no NUL character in ``hub``/``msg_id`` (``nul``),
7. ``hub`` equals the hub in the topic (``hub-mismatch``: a hub may only publish for itself).

Every whole-message reject carries the ``msg_id`` when it can be read (from the JSON, or for
``size``/``utf8``/``json`` from the raw bytes, :func:`msg_id_of_bytes`) so the hub gets a receipt
and stops re-sending (docs/protocol.md, "Receipt").

Reading level (each reading of a valid message on its own; a failure dead-letters that reading's
JSON, the others are still stored). Checked here, in order:

* the Reading schema (``reading-schema``), no NUL character — PostgreSQL text cannot hold one
  (``nul``), a key of 1-128 characters (``key``), kind one of spot/continuous/intermediate/
  control/device (``kind``),
* MDC code in :mod:`gateway.catalog` (``mdc-unknown``),
* unit: a canonical unit of the metric or one :mod:`drivers.units` converts to one (``unit``),
  ``mdc_unit`` equal to the unit's MDC code (``mdc-unit``),
* value/special: ``value`` is null iff ``special`` is set (``special``), special is one of
  :class:`drivers.observation.Special` (``special``), value a finite decimal (``value``);
  alternates are converted here (the original is kept in orig_value/orig_unit unless the edge
  already recorded one), and the canonical value must be within the metric's plausibility range
  (``range``); ``orig_value`` a finite decimal (``value``),
* ``time`` and ``received_at`` carry a UTC offset and ``time`` is at most ``max_future_skew``
  ahead of the gateway clock (``time``),
* ``raw`` is hex (``raw``), integers fit PostgreSQL integer (``int-range``).

The device binding (device known on this hub, patient equal to the bound patient) needs the
database and is checked by :mod:`gateway.ingest.devices`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec

from drivers.observation import Special
from gateway import catalog
from gateway.ingest.model import NormalizedReading, Reject
from wire import contract

KINDS: Final = frozenset({"spot", "continuous", "intermediate", "control", "device"})
SPECIALS: Final = frozenset(s.value for s in Special)
_INT4 = (-(2**31), 2**31 - 1)
_NUL_ESCAPE = b"\\u0000"
MAX_KEY_LENGTH: Final = 128


class _Envelope(msgspec.Struct):
    """The lenient view of a message used to diagnose a message that failed its schema."""

    v: object = None
    msg_id: object = None


class _KeyOnly(msgspec.Struct):
    key: object = None


_envelope = msgspec.json.Decoder(_Envelope)
#: ``"msg_id": "..."`` as the bytes of a payload that is not JSON (or not UTF-8) may still hold it:
#: a plain string (no escapes) of 1-128 printable ASCII characters.
_MSG_ID_BYTES = re.compile(rb'"msg_id"[ \t\r\n]*:[ \t\r\n]*"([\x20\x21\x23-\x5b\x5d-\x7e]{1,128})"')
_key_only = msgspec.json.Decoder(_KeyOnly)


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A readings message that passed the message-level checks."""

    hub: str
    msg_id: str
    readings: list[msgspec.Raw]
    held: list[msgspec.Raw]  # records of no patient (gateway.ingest.held)


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A readings message rejected as a whole; ``msg_id``/``keys`` when they could be read, so
    the hub can be told (receipt) which readings never to resend."""

    reject: Reject
    msg_id: str | None
    keys: tuple[str, ...]


def utf8_error_at(data: bytes) -> int:
    """Offset of the first byte that is not valid UTF-8 (-1 if the data is valid)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return -1


def _msgspec_reason(exc: msgspec.ValidationError) -> str:
    return str(exc).replace("`", "'")


def key_of(raw: bytes | msgspec.Raw) -> str | None:
    """A reading's key if it can be read at all (for receipts and dead letters)."""
    try:
        k = _key_only.decode(raw).key
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return k if isinstance(k, str) and 0 < len(k) <= MAX_KEY_LENGTH and "\0" not in k else None


def msg_id_of_bytes(payload: bytes) -> str | None:
    """The msg_id of a payload no JSON decoder accepts, if it is written there unambiguously.

    Whole-message rejects (``size``, ``utf8``, ``json``) are answered with a receipt only when
    the hub can match it to its message; a payload naming ``msg_id`` more than once (or with an
    escaped string) gets none and is only dead-lettered.
    """
    found = _MSG_ID_BYTES.findall(payload)
    if len(found) != 1 or payload.count(b'"msg_id"') != 1:
        return None
    return bytes(found[0]).decode("ascii")


def _by_bytes(reject: Reject, payload: bytes) -> RejectedMessage:
    return RejectedMessage(reject, msg_id_of_bytes(payload), ())


def _salvage(payload: bytes, reject: Reject) -> RejectedMessage:
    """msg_id and reading keys of a message that failed validation, as far as they are readable."""
    msg_id: str | None = None
    keys: list[str] = []
    try:
        env = _envelope.decode(payload)
        if isinstance(env.msg_id, str) and env.msg_id and "\0" not in env.msg_id:
            msg_id = env.msg_id
        msg = contract.decode_message(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return RejectedMessage(reject, msg_id, ())
    for raw in (*msg.readings, *msg.held):
        if (k := key_of(raw)) is not None:
            keys.append(k)
    return RejectedMessage(reject, msg_id, tuple(keys))


def parse_readings_message(topic_hub: str, payload: bytes) -> ParsedMessage | RejectedMessage:
    """The message-level checks (see the module docstring)."""
    size = len(payload)
    if size > contract.MAX_PAYLOAD_BYTES:
        reject = Reject(
            "size",
            f"payload: {size} bytes exceeds the limit of {contract.MAX_PAYLOAD_BYTES} bytes "
            f"(dead letter keeps the first {contract.MAX_PAYLOAD_BYTES})",
            None,
            payload[: contract.MAX_PAYLOAD_BYTES],
        )
        # the hub is told which message (and, if it is valid JSON, which readings) to drop
        salvaged = _salvage(payload, reject)
        if salvaged.msg_id is None:
            return _by_bytes(reject, payload)
        return salvaged
    try:
        msg = contract.decode_message(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return _undecodable_message(payload, exc)
    if msg.v != contract.SCHEMA_VERSION:
        return _salvage(payload, _unsupported(msg.v, payload))
    if "\0" in msg.hub or "\0" in msg.msg_id:
        return RejectedMessage(
            Reject("nul", "message: hub or msg_id contains a NUL character", None, payload),
            None,
            (),
        )
    if msg.hub != topic_hub:
        reason = f"hub: message hub {msg.hub!r} does not match the topic's hub {topic_hub!r}"
        return _salvage(payload, Reject("hub-mismatch", reason, None, payload))
    return ParsedMessage(msg.hub, msg.msg_id, msg.readings, msg.held)


def _undecodable_message(
    payload: bytes, exc: msgspec.DecodeError | UnicodeDecodeError
) -> RejectedMessage:
    """Why a payload could not be decoded as a ReadingsMessage.

    Invalid UTF-8 is classified by us (:func:`utf8_error_at`), never by the decoder's exception
    type or text: msgspec has reported it as ``UnicodeDecodeError`` and as ``DecodeError`` with
    different messages across releases.
    """
    if (at := utf8_error_at(payload)) >= 0:
        return _by_bytes(
            Reject("utf8", f"payload: not valid UTF-8 (byte {at})", None, payload), payload
        )
    if isinstance(exc, msgspec.ValidationError):
        version = _version_reject(payload)
        if version is not None:
            return _salvage(payload, version)
        reason = f"message: does not match the ReadingsMessage schema: {_msgspec_reason(exc)}"
        return _salvage(payload, Reject("schema", reason, None, payload))
    return _by_bytes(Reject("json", f"payload: malformed JSON: {exc}", None, payload), payload)


def _unsupported(v: object, payload: bytes) -> Reject:
    return Reject(
        "version",
        f"v: unsupported schema version {v!r} (this gateway accepts {contract.SCHEMA_VERSION})",
        None,
        payload,
    )


def _version_reject(payload: bytes) -> Reject | None:
    try:
        env = _envelope.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if env.v is None or env.v == contract.SCHEMA_VERSION:
        return None
    return _unsupported(env.v, payload)


def _decimal(text: str) -> Decimal | None:
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    # finite, and within what numeric stores without surprises
    if not d.is_finite() or not -40 <= d.adjusted() <= 40:
        return None
    return d


def _aware(dt: datetime) -> bool:
    tz = dt.tzinfo
    return tz is not None and (tz is UTC or dt.utcoffset() is not None)


@dataclass(frozen=True, slots=True)
class _UnitInfo:
    """What :func:`check_reading` needs to know about a (metric, unit) pair the catalog accepts."""

    code: int  # MDC unit code of the unit as sent
    canonical: str  # the unit it is stored in
    canonical_code: int | None
    range: catalog.UnitRange


#: (mdc, unit) -> _UnitInfo for accepted pairs only (so it is bounded by the catalog's size).
_UNITS: dict[tuple[int, str], _UnitInfo] = {}


def _unit_info(metric: catalog.Metric, unit: str) -> _UnitInfo | None:
    info = _UNITS.get((metric.mdc, unit))
    if info is None:
        code = catalog.mdc_unit_code(unit)
        if code is None or not catalog.accepts_unit(metric, unit):
            return None
        canonical = catalog.canonical_unit_of(unit)
        rng = metric.range_for(canonical)
        assert rng is not None  # accepts_unit() above
        info = _UNITS[(metric.mdc, unit)] = _UnitInfo(
            code, canonical, catalog.mdc_unit_code(canonical), rng
        )
    return info


def _bad(data: bytes, code: str, reason: str, key: str | None) -> Reject:
    return Reject(code, reason, key, data)


def check_reading(
    raw: msgspec.Raw, hub: str, *, now: datetime, max_future_skew: timedelta
) -> NormalizedReading | Reject:
    """Decode and validate one reading of a valid message (binding not checked here)."""
    data = bytes(raw)
    if _NUL_ESCAPE in data:
        # Name the key when it is readable, so that the hub drops the reading instead of
        # re-sending it in a loop (a NUL in a device or patient id in the hub's config).
        return _bad(data, "nul", "reading: contains a NUL character (\\u0000)", key_of(data))
    try:
        r = contract.decode_reading(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # as for whole messages: UTF-8 is checked by us, not read from the decoder's error
        if (at := utf8_error_at(data)) >= 0:
            return _bad(data, "utf8", f"reading: not valid UTF-8 (byte {at})", key_of(data))
        if isinstance(exc, msgspec.ValidationError):
            return _bad(data, "reading-schema", f"reading: {_msgspec_reason(exc)}", key_of(data))
        return _bad(data, "reading-schema", f"reading: malformed: {exc}", None)
    key = r.key
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        return _bad(data, "key", f"key: length {len(key)} is not within 1-{MAX_KEY_LENGTH}", None)
    if r.kind not in KINDS:
        return _bad(
            data, "kind", f"kind: unknown kind {r.kind!r} (expected one of {sorted(KINDS)})", key
        )
    metric = catalog.metric(r.mdc)
    if metric is None:
        return _bad(data, "mdc-unknown", f"mdc: unknown MDC code {r.mdc}", key)
    info = _unit_info(metric, r.unit)
    if info is None:
        return _bad(
            data,
            "unit",
            f"unit: {r.unit!r} is not a unit of MDC {r.mdc} ({metric.name}; accepted: "
            f"{', '.join(metric.units)} or a unit that converts to one)",
            key,
        )
    if r.mdc_unit != info.code:
        return _bad(
            data,
            "mdc-unit",
            f"mdc_unit: {r.mdc_unit} does not match unit {r.unit!r} (MDC unit {info.code})",
            key,
        )
    lo, hi = _INT4
    for name, n in (("sequence", r.sequence), ("user_id", r.user_id), ("panel", r.panel)):
        if n is not None and not lo <= n <= hi:
            return _bad(data, "int-range", f"{name}: {n} does not fit a 32-bit integer", key)

    unit, mdc_unit = r.unit, r.mdc_unit
    value: Decimal | None = None
    orig_value: Decimal | None = None
    orig_unit = r.orig_unit
    if r.orig_value is not None:
        orig_value = _decimal(r.orig_value)
        if orig_value is None:
            return _bad(data, "value", f"orig_value: {r.orig_value!r} is not a finite decimal", key)
    if r.special is not None:
        if r.special not in SPECIALS:
            return _bad(data, "special", f"special: unknown special value {r.special!r}", key)
        if r.value is not None:
            return _bad(data, "special", "value: must be null when special is set", key)
        unit = info.canonical
        mdc_unit = info.canonical_code or mdc_unit
    else:
        if r.value is None:
            return _bad(data, "special", "value: null without a special value", key)
        value = _decimal(r.value)
        if value is None:
            return _bad(data, "value", f"value: {r.value!r} is not a finite decimal number", key)
        if info.canonical != r.unit:
            if orig_value is None and orig_unit is None:
                orig_value, orig_unit = value, r.unit
            value, unit = catalog.to_canonical(value, r.unit)
            mdc_unit = info.canonical_code or mdc_unit
        rng = info.range
        if not rng.low <= value <= rng.high:
            return _bad(
                data,
                "range",
                f"value: {value} {unit} is outside the plausible range {rng.low}-{rng.high} "
                f"{unit} for MDC {r.mdc} ({metric.name})",
                key,
            )
    if not _aware(r.time):
        return _bad(data, "time", "time: has no UTC offset", key)
    if not _aware(r.received_at):
        return _bad(data, "time", "received_at: has no UTC offset", key)
    if r.time > now + max_future_skew:
        return _bad(
            data,
            "time",
            f"time: {r.time.isoformat()} is more than {max_future_skew} ahead of the gateway "
            f"clock ({now.isoformat(timespec='seconds')})",
            key,
        )
    try:
        raw_bytes = bytes.fromhex(r.raw)
    except ValueError:
        return _bad(data, "raw", "raw: not a hex string", key)
    return NormalizedReading(
        time=r.time,
        key=key,
        patient_id=r.patient,
        hub_id=hub,
        device_id=r.device,
        source=r.source,
        kind=r.kind,
        mdc=r.mdc,
        loinc=tuple(r.loinc),
        unit=unit,
        mdc_unit=mdc_unit,
        value=value,
        special=r.special,
        orig_value=orig_value,
        orig_unit=orig_unit,
        panel=r.panel,
        grp=r.group,
        flags=tuple(r.flags),
        time_source=r.time_source,
        device_time=r.device_time,
        received_at=r.received_at,
        hub_clock=r.hub_clock,
        sequence=r.sequence,
        user_id=r.user_id,
        raw=raw_bytes,
    )
