"""What arbitrary bytes may produce: a DecodeError, or a result that is internally consistent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.errors import DecodeError
from drivers.observation import Measurement


def check_arbitrary(fn: Callable[[bytes], Any], data: bytes) -> None:
    """``fn(data)`` raises DecodeError (nothing else), or returns something consistent:

    * a Measurement keeps exactly the input as ``raw`` and every observation is either a value
      in a unit or a special value, never both and never neither;
    * a parsed structure with ``encode()`` parses back from its own encoding to itself.
    """
    try:
        out = fn(data)
    except DecodeError:
        return
    if isinstance(out, Measurement):
        assert out.raw == data
        assert out.source
        for o in out.observations:
            q = o.quantity
            assert (q.value is None) == (q.special is not None), o
            assert q.unit and q.mdc_unit > 0, o
            if q.value is not None:
                assert q.value.is_finite(), o
        return
    encode = getattr(out, "encode", None)
    assert encode is not None, f"{fn.__qualname__} returned {type(out).__name__}"
    assert type(out).parse(encode()) == out
