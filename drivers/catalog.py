"""The registry's lookup logic (:class:`Registry`); the one instance lives in drivers.registry."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from types import ModuleType

from drivers import uuids
from drivers.driver import Driver, Parser
from drivers.observation import Measurement


class Registry:
    """Drivers (bytes -> Measurement) and parsers (bytes -> record) by key, UUID, name, USB id.

    Keys are unique across both. A family module contributes its ``DRIVERS`` and ``PARSERS``
    tuples (either may be absent: a control-point module has no measurement driver).
    """

    def __init__(self, drivers: Iterable[Driver], parsers: Iterable[Parser] = ()) -> None:
        self._drivers: dict[str, Driver] = {}
        self._parsers: dict[str, Parser] = {}
        self._by_uuid: dict[str, str] = {}
        for d in drivers:
            self._add(d.key, d.characteristic)
            self._drivers[d.key] = d
        for p in parsers:
            self._add(p.key, p.characteristic)
            self._parsers[p.key] = p
        self._patterns = [
            (re.compile(pat, re.IGNORECASE), d)
            for d in self._drivers.values()
            for pat in d.name_patterns
        ]

    def _add(self, key: str, characteristic: str | None) -> None:
        if key in self._drivers or key in self._parsers:
            raise ValueError(f"duplicate registry key {key!r}")
        if characteristic is not None:
            self._by_uuid.setdefault(uuids.normalize(characteristic), key)

    @classmethod
    def from_modules(
        cls, modules: Sequence[ModuleType], parsers: Iterable[Parser] = ()
    ) -> Registry:
        drivers: list[Driver] = []
        found: list[Parser] = []
        for m in modules:
            drivers.extend(getattr(m, "DRIVERS", ()))
            found.extend(getattr(m, "PARSERS", ()))
        return cls(drivers, [*found, *parsers])

    # -- lookups -------------------------------------------------------------------------------
    def resolve(self, key_or_uuid: str) -> str:
        """The registry key for a key, a 16-bit UUID ("2a35", "0x2A35") or a full UUID."""
        k = key_or_uuid.strip().lower()
        if k in self._drivers or k in self._parsers:
            return k
        try:
            full = uuids.normalize(k)
        except ValueError:
            full = None
        if full is not None and full in self._by_uuid:
            return self._by_uuid[full]
        known = sorted([*self._drivers, *self._parsers])
        close = difflib.get_close_matches(k, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no driver or parser for {key_or_uuid!r}{hint} (`telehub decode --list`)")

    def get(self, key: str) -> Driver:
        """The measurement driver for a key or characteristic UUID (KeyError if none)."""
        k = self.resolve(key)
        if k not in self._drivers:
            raise KeyError(f"{key!r} is not a measurement (it is the parser {k!r}: use parser())")
        return self._drivers[k]

    def parser(self, key: str) -> Parser:
        """The non-measurement parser for a key or characteristic UUID (KeyError if none)."""
        k = self.resolve(key)
        if k not in self._parsers:
            raise KeyError(f"{key!r} is a measurement driver, not a parser: use get()")
        return self._parsers[k]

    def by_characteristic(self, uuid_any_form: str) -> Driver | None:
        try:
            key = self._by_uuid.get(uuids.normalize(uuid_any_form))
        except ValueError:
            return None
        return self._drivers.get(key) if key is not None else None

    def match_advertisement(self, name: str | None, service_uuids: Sequence[str]) -> list[Driver]:
        """Drivers whose family service is advertised or whose name pattern matches, in order."""
        services = set()
        for s in service_uuids:
            try:
                services.add(uuids.normalize(s))
            except ValueError:
                continue
        matched: list[Driver] = []
        for d in self._drivers.values():
            by_service = d.service is not None and uuids.normalize(d.service) in services
            by_name = name is not None and any(
                p.search(name) for p, owner in self._patterns if owner is d
            )
            if by_service or by_name:
                matched.append(d)
        return matched

    def match_usb(self, vid: int, pid: int) -> list[Driver]:
        return [d for d in self._drivers.values() if (vid, pid) in d.usb_ids]

    def all_drivers(self) -> tuple[Driver, ...]:
        return tuple(self._drivers.values())

    def all_parsers(self) -> tuple[Parser, ...]:
        return tuple(self._parsers.values())

    def decode(self, key_or_uuid: str, data: bytes) -> Measurement:
        """Decode one record with the driver for ``key_or_uuid`` (raises DecodeError/KeyError)."""
        return self.get(key_or_uuid).decode(data)
