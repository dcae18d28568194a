"""The one exception a decoder raises."""

from __future__ import annotations


class DecodeError(ValueError):
    """Bytes that do not form a valid record.

    Carries *where* (``field``, ``offset``) and *why* (``reason``), so that a dead-letter entry or a
    support engineer can tell exactly what was wrong with a capture.
    """

    def __init__(self, source: str, field: str, offset: int, reason: str) -> None:
        self.source = source
        self.field = field
        self.offset = offset
        self.reason = reason
        super().__init__(f"{source}: {field} at offset {offset}: {reason}")
