"""Shared helpers that turn record fields into :class:`Observation` values."""

from __future__ import annotations

from collections.abc import Iterable

from drivers import codes, units
from drivers._cursor import Number
from drivers.observation import Observation

UNKNOWN_USER = 0xFF


def observation(
    metric: int,
    value: Number,
    unit: str,
    *,
    panel: int | None = None,
    flags: Iterable[str] = (),
) -> Observation:
    """One observation of ``metric``: converted to the canonical unit (original kept), LOINC set."""
    q, original = units.canonical(units.quantity(value, unit))
    return Observation(metric, q, codes.loinc(metric), original, panel, tuple(flags))


def user(user_id: int | None) -> int | None:
    """The Measurement's user index: None when the record has no user field; 0xFF ("unknown
    user", e.g. a guest on a shared scale) is kept as it is, so that the hub can tell it from a
    single-user device's record and never attribute it to a patient."""
    return user_id
