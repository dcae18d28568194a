"""The one declaration of a ``readings`` row.

:class:`NormalizedReading` (a validated reading in its canonical unit) *is* the declaration: its
fields, in order, are the columns the ingester writes, and their Python types give the column
types. Everything else is derived from it here:

* :data:`READINGS_INSERT_COLUMNS` — the column names, in order (what the ingester COPYs);
* :data:`COPY_TYPES` — the PostgreSQL types of those columns for the binary COPY;
* :data:`READINGS_COLUMNS_DDL` — the column list of ``CREATE TABLE readings`` (used by migration
  1; a test pins the text that shipped, so a new field needs a new migration ``ALTER TABLE``);
* :meth:`NormalizedReading.row` — the values in column order, array columns as lists (what
  psycopg's array dumper wants).

Python type → column: ``datetime`` → ``timestamptz``, ``str`` → ``text``, ``int`` → ``integer``
(``int4``), ``Decimal`` → ``numeric`` (its scale is kept: 2.00 stays 2.00), ``bytes`` → ``bytea``,
``tuple[str, ...]`` → ``text[]``; ``X | None`` is ``NULL``-able, everything else ``NOT NULL``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import msgspec


class NormalizedReading(msgspec.Struct, frozen=True, gc=False):
    """A validated reading in its canonical unit: one ``readings`` row (see the module docstring).

    A frozen msgspec Struct rather than a frozen dataclass: one is made per reading on the
    ingester's hot path, and a frozen dataclass's ``__init__`` (``object.__setattr__`` per field)
    cost 2.1 µs against 0.1 µs (docs/performance.md). Immutable, slotted and compared by value all
    the same; ``msgspec.structs.replace`` makes modified copies.
    """

    time: datetime
    key: str
    patient_id: str
    hub_id: str
    device_id: str
    source: str
    kind: str
    mdc: int
    loinc: tuple[str, ...]
    unit: str
    mdc_unit: int
    value: Decimal | None
    special: str | None
    orig_value: Decimal | None
    orig_unit: str | None
    panel: int | None
    grp: str
    flags: tuple[str, ...]
    time_source: str
    device_time: str | None
    received_at: datetime
    hub_clock: str
    sequence: int | None
    user_id: int | None
    raw: bytes

    def row(self) -> tuple[object, ...]:
        """The values in ``READINGS_INSERT_COLUMNS`` order (lists for the array columns).

        Replaced below by a function generated from the declaration (as dataclasses generate
        ``__init__``): the hand-written tuple it replaces cost the same, 240 ns, where a generic
        loop over ``astuple`` cost 320 ns per reading (docs/performance.md)."""
        raise NotImplementedError  # pragma: no cover - replaced at import


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql_type: str  # as in the DDL
    copy_type: str  # as psycopg's Copy.set_types wants it
    nullable: bool

    @property
    def ddl(self) -> str:
        return f"{self.name} {self.sql_type} {'NULL' if self.nullable else 'NOT NULL'}"


_SCALARS: Final[dict[object, tuple[str, str]]] = {
    datetime: ("timestamptz", "timestamptz"),
    str: ("text", "text"),
    int: ("integer", "int4"),
    Decimal: ("numeric", "numeric"),
    bytes: ("bytea", "bytea"),
    tuple[str, ...]: ("text[]", "text[]"),
}


def _column(name: str, hint: object) -> Column:
    nullable = False
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"readings column {name}: only `X | None` unions are supported")
        hint, nullable = args[0], True
    if hint not in _SCALARS:
        raise TypeError(f"readings column {name}: no column type for {hint!r}")
    sql_type, copy_type = _SCALARS[hint]
    return Column(name, sql_type, copy_type, nullable)


_HINTS = typing.get_type_hints(NormalizedReading)
#: The written columns of ``readings``, in order, derived from :class:`NormalizedReading`.
COLUMNS: Final[tuple[Column, ...]] = tuple(
    _column(n, _HINTS[n]) for n in NormalizedReading.__struct_fields__
)
READINGS_INSERT_COLUMNS: Final[tuple[str, ...]] = tuple(c.name for c in COLUMNS)
COPY_TYPES: Final[tuple[str, ...]] = tuple(c.copy_type for c in COLUMNS)


def _compile_row() -> Callable[[NormalizedReading], tuple[object, ...]]:
    values = ", ".join(
        f"list(self.{c.name})" if c.sql_type.endswith("[]") else f"self.{c.name}" for c in COLUMNS
    )
    namespace: dict[str, Any] = {}
    exec(f"def row(self):\n    return ({values},)\n", namespace)  # noqa: S102 - our own names
    fn: Callable[[NormalizedReading], tuple[object, ...]] = namespace["row"]
    fn.__doc__ = NormalizedReading.row.__doc__
    fn.__qualname__ = "NormalizedReading.row"
    return fn


setattr(NormalizedReading, "row", _compile_row())  # noqa: B010 - mypy: a method is replaced

#: The column list of ``CREATE TABLE readings``: the written columns, ``stored_at`` and the
#: idempotency key (a reading is its key at its time; the partition column is part of it, as
#: TimescaleDB and native partitioning both require).
READINGS_COLUMNS_DDL: Final = (
    "\n"
    + "".join(f"    {c.ddl},\n" for c in COLUMNS)
    + "    stored_at timestamptz NOT NULL DEFAULT now(),\n"
    + "    CONSTRAINT readings_key_time UNIQUE (key, time)\n"
)
