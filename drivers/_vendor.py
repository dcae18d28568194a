"""Shared by the vendor-format decoders (Nonin, Contec/BerryMed, Jumper): the SpO2 / pulse-rate
observations with the vendors' "missing" markers, and sans-I/O stream framing.

SpO2 is an octet 0..100 %, 127 = missing (every vendor here); a value that is neither is rejected.

Framing: a subclass implements :meth:`StreamFramer._step`: it looks at the head of the buffer and
says how many octets to take and what they were (a record, a DecodeError, nothing, or garbage).
The base class keeps the buffer and the stream offset, and reports each run of discarded octets
as one :class:`DecodeError` (field ``"sync"``) when the run ends, i.e. when the next frame is
found.

Every decision depends only on the octets seen so far, never on where a chunk ended, so a stream
fed in any chunking gives the same list of results. The buffer never holds more than one frame.
Offsets in the DecodeErrors a framer returns are *stream* offsets: octets since the framer was
created.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from drivers import codes
from drivers._obs import observation
from drivers.errors import DecodeError
from drivers.observation import Measurement, Observation, Special

log = logging.getLogger(__name__)

Result = Measurement | DecodeError
SPO2_MISSING = 127


def check_spo2(value: int, source: str, field: str, offset: int) -> None:
    """Reject a SpO2 octet that is neither 0..100 % nor the 127 'missing' marker."""
    if not (0 <= value <= 100 or value == SPO2_MISSING):
        raise DecodeError(source, field, offset, f"{value} is neither 0..100 % nor 127 (missing)")


def oximetry_observations(
    spo2: int, pulse_rate: int, pr_missing: int
) -> tuple[Observation, Observation]:
    """SpO2 (150456, %) and pulse rate (149530, /min), vendor 'missing' markers -> MISSING."""
    return (
        observation(
            codes.MDC_PULS_OXIM_SAT_O2,
            Special.MISSING if spo2 == SPO2_MISSING else Decimal(spo2),
            codes.UCUM_PERCENT,
        ),
        observation(
            codes.MDC_PULS_OXIM_PULS_RATE,
            Special.MISSING if pulse_rate == pr_missing else Decimal(pulse_rate),
            codes.UCUM_PER_MIN,
        ),
    )


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with the head of the buffer.

    ``consumed == 0`` means "need more octets". ``garbage`` (the reason) marks the consumed octets
    as not part of any frame; they start or extend a skip run. Otherwise ``item`` (if any) is
    returned to the caller.
    """

    consumed: int
    item: Result | None = None
    garbage: str | None = None


NEED_MORE = Step(0)


def rebase(err: DecodeError, source: str, base: int) -> DecodeError:
    """``err`` with ``source`` and its offset moved by ``base`` (a frame's offset in the stream)."""
    return DecodeError(source, err.field, base + err.offset, err.reason)


class StreamFramer:
    """Base class of the vendor framers (see the module docstring)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._buf = bytearray()
        self._offset = 0  # stream offset of self._buf[0]
        self._skipped = 0
        self._skip_at = 0
        self._skip_reason = ""

    def _step(self, buf: bytearray, pos: int) -> Step:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_garbage(self) -> None:
        """Called when a skip run starts (a framer that assembles packets drops the partial one)."""

    def stream_offset(self, pos: int) -> int:
        """The stream offset of ``self._buf[pos]`` (for error reports)."""
        return self._offset + pos

    def feed(self, data: bytes) -> list[Result]:
        """Add octets; return the records and errors they complete, in order; never raises."""
        self._buf += data
        out: list[Result] = []
        pos = 0
        while pos < len(self._buf):
            step = self._step(self._buf, pos)
            if step.consumed == 0:
                break
            if step.garbage is not None:
                if self._skipped == 0:
                    self._skip_at = self.stream_offset(pos)
                    self._skip_reason = step.garbage
                    self._on_garbage()
                self._skipped += step.consumed
            else:
                if self._skipped:
                    out.append(self._skip_error())
                if step.item is not None:
                    out.append(step.item)
            pos += step.consumed
        del self._buf[:pos]
        self._offset += pos
        if out:
            log.debug("%s: %d result(s), %d octet(s) held", self.source, len(out), len(self._buf))
        return out

    def _held(self) -> tuple[int, str] | None:
        """Subclass hook: (stream offset, description) of a partial packet kept outside the
        buffer (Nonin DF2's frames of the packet in progress), or None."""
        return None

    def flush(self) -> list[DecodeError]:
        """End of input: a pending skip run, a partial packet and an incomplete frame become
        DecodeErrors (in stream order); the framer is then empty (it can be fed again)."""
        out: list[DecodeError] = []
        if self._skipped:
            out.append(self._skip_error())
        held = self._held()
        if held is not None:
            out.append(DecodeError(self.source, "packet", held[0], held[1]))
        if self._buf:
            out.append(
                DecodeError(
                    self.source,
                    "frame",
                    self._offset,
                    f"input ended inside a frame: {len(self._buf)} octet(s) left over",
                )
            )
            self._offset += len(self._buf)
            self._buf.clear()
        self._on_garbage()
        return out

    def _skip_error(self) -> DecodeError:
        err = DecodeError(
            self.source,
            "sync",
            self._skip_at,
            f"{self._skip_reason}; discarded {self._skipped} octet(s) to resynchronise",
        )
        self._skipped = 0
        return err
