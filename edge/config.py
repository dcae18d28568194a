"""The hub's configuration, read from TOML.

Parsed with :mod:`tomllib` and converted with ``msgspec.convert(..., strict=True)`` into frozen
Structs that forbid unknown keys, so a typo fails at start-up with the path of the bad key
(``config: $.devices[1].adress: unknown field``) instead of being ignored on a hub nobody can see.
No pydantic here: the edge must stay light (see docs).

Example::

    hub_id = "hub-0001"
    data_dir = "/var/lib/telehub"
    timezone = "Europe/Copenhagen"        # device clocks are local wall-clock time in this zone
    heartbeat_seconds = 60

    [mqtt]
    url = "mqtts://broker.example.org:8883"
    ca_file = "/etc/telehub/ca.pem"
    protocol = "5"                        # or "3.1.1"
    username = "hub-0001"
    password_file = "/etc/telehub/mqtt-password"

    [limits]
    outbox_max_bytes = 64_000_000
    outbox_max_rows = 200_000

    [[devices]]                            # a BP monitor used by one patient
    address = "00:09:1F:8A:12:34"
    patient = "patient-a"

    [[devices]]                            # a shared scale: user 1 and user 2
    address = "00:09:1F:8A:56:78"
    users = { "1" = "patient-a", "2" = "patient-b" }

    [[devices]]                            # a USB-serial oximeter
    usb = "10c4:ea60"
    driver = "contec-cms50d"
    patient = "patient-a"
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from edge.ble.remote_transport import parse_endpoint

_ADDRESS = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_USB = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")


#: Bluetooth SIG profiles' "unknown user" User ID: never attributed to a patient.
UNKNOWN_DEVICE_USER = 0xFF


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


class MqttConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str  # mqtt://host:port or mqtts://host:port
    protocol: Literal["5", "3.1.1"] = "5"
    ca_file: str | None = None  # CA bundle for mqtts:// (system store when omitted)
    # the hub's certificate (signed by the fleet CA) and its key: its identity at the broker
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None  # per-hub credentials
    password: str | None = None
    password_file: str | None = None  # alternative to ``password``: first line of this file
    keepalive: int = 30
    session_expiry_seconds: int = 7 * 24 * 3600  # receipts wait this long for an offline hub

    def __post_init__(self) -> None:
        scheme = self.url.split("://", 1)[0] if "://" in self.url else ""
        if scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"url: scheme must be mqtt:// or mqtts://, got {self.url!r}")
        if self.ca_file is not None and scheme != "mqtts":
            raise ValueError("ca_file: only meaningful with an mqtts:// url")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file/key_file: give both or neither")
        if self.cert_file is not None and scheme != "mqtts":
            raise ValueError("cert_file: a client certificate needs an mqtts:// url")
        if self.password is not None and self.password_file is not None:
            raise ValueError("password/password_file: give one, not both")
        if not 5 <= self.keepalive <= 3600:
            raise ValueError("keepalive: must be 5..3600 seconds")
        if self.session_expiry_seconds < 0:
            raise ValueError("session_expiry_seconds: must be >= 0")

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    def resolved_password(self) -> str | None:
        if self.password_file is not None:
            try:
                lines = Path(self.password_file).read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file: cannot read: {exc.strerror}") from exc
            return lines[0] if lines else ""
        return self.password


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    outbox_max_bytes: int = 64_000_000  # hard limit: spot readings refused beyond this
    outbox_max_rows: int = 200_000
    #: soft limit as a fraction of the hard ones: continuous samples are dropped oldest-first
    outbox_soft_fraction: float = 0.8
    batch_size: int = 100  # readings per MQTT message
    in_flight_messages: int = 4  # messages published but not yet receipted
    receipt_timeout_seconds: float = 60.0  # first re-send; doubles up to receipt_timeout_max
    receipt_timeout_max_seconds: float = 900.0
    max_ble_sessions: int = 4  # concurrent BLE connections
    reconnect_max_seconds: float = 60.0  # MQTT reconnect backoff cap

    def __post_init__(self) -> None:
        for name in (
            "outbox_max_bytes",
            "outbox_max_rows",
            "batch_size",
            "in_flight_messages",
            "max_ble_sessions",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        if not 0.0 < self.outbox_soft_fraction <= 1.0:
            raise ValueError("outbox_soft_fraction: must be in (0, 1]")
        if self.receipt_timeout_seconds <= 0 or self.reconnect_max_seconds <= 0:
            raise ValueError("receipt_timeout_seconds/reconnect_max_seconds: must be > 0")
        if self.receipt_timeout_max_seconds < self.receipt_timeout_seconds:
            raise ValueError("receipt_timeout_max_seconds: must be >= receipt_timeout_seconds")


class BleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    scan_seconds: float = 5.0  # one scan window
    scan_pause_seconds: float = 1.0  # between scan windows
    connect_timeout: float = 20.0
    gatt_timeout: float = 5.0  # one read/write
    clock_deadline: float = 5.0  # A&D: the clock must be written within ~5 s of connecting
    idle_timeout: float = 60.0  # spot-check: disconnect after this long without a record
    racp_timeout: float = 30.0  # glucose: no RACP response/record for this long -> abort
    retry_seconds: float = 10.0  # after a failed session, wait before reconnecting (doubles)
    #: "bleak" (BlueZ, the default) or "simulated": a ``telehub simulate`` radio at ``simulator``
    transport: Literal["bleak", "simulated"] = "bleak"
    simulator: str | None = None  # host:port of the simulated radio

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, float) and value <= 0 and name != "scan_pause_seconds":
                raise ValueError(f"{name}: must be > 0")
        if self.transport == "simulated":
            if self.simulator is None:
                raise ValueError('simulator: required with transport = "simulated" (host:port)')
            parse_endpoint(self.simulator)
        elif self.simulator is not None:
            raise ValueError('simulator: only with transport = "simulated"')


class DeviceBinding(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One allow-listed device: how to find it, and whose readings it produces."""

    address: str | None = None  # BLE address
    port: str | None = None  # serial port path
    usb: str | None = None  # USB-serial "vid:pid" (hex)
    id: str | None = None  # stable identity on the wire; default from address/port/usb
    patient: str | None = None
    driver: str | None = None  # registry key override
    users: dict[str, str] = {}  # device user id -> patient (shared devices)

    def __post_init__(self) -> None:
        given = [n for n in ("address", "port", "usb") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of address, port, usb")
        if self.address is not None and not _ADDRESS.match(self.address.upper()):
            raise ValueError(f"address: {self.address!r} is not a BLE address (AA:BB:CC:DD:EE:FF)")
        if self.usb is not None and not _USB.match(self.usb.lower()):
            raise ValueError(f"usb: {self.usb!r} is not vid:pid in hex (10c4:ea60)")
        for uid in self.users:
            if not uid.isdigit() or not 0 <= int(uid) < UNKNOWN_DEVICE_USER:
                raise ValueError(
                    f"users: key {uid!r} is not a device user id (0..254; 255 is 'unknown user')"
                )
        if self.patient is None and not self.users:
            raise ValueError("patient: required unless users maps device users to patients")

    @property
    def device_id(self) -> str:
        """The identity used in readings and idempotency keys."""
        if self.id is not None:
            return self.id
        if self.address is not None:
            return self.address.upper()
        if self.port is not None:
            return f"serial:{self.port}"
        assert self.usb is not None
        return f"usb:{self.usb.lower()}"

    @property
    def is_ble(self) -> bool:
        return self.address is not None

    @property
    def usb_ids(self) -> tuple[int, int] | None:
        if self.usb is None:
            return None
        vid, pid = self.usb.split(":")
        return int(vid, 16), int(pid, 16)

    def patient_for(self, user_id: int | None) -> str | None:
        """The patient a record belongs to, or None (not forwarded: unmapped or unknown user).

        A record with the "unknown user" id (0xFF: a guest, or a user the device did not
        recognise) belongs to nobody, whatever the binding's default patient."""
        if user_id == UNKNOWN_DEVICE_USER:
            return None
        if self.users:
            if user_id is None:
                return self.patient
            return self.users.get(str(user_id))
        return self.patient


class HubConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    hub_id: str
    mqtt: MqttConfig
    data_dir: str
    timezone: str = "Europe/Copenhagen"
    heartbeat_seconds: float = 60.0
    limits: Limits = msgspec.field(default_factory=Limits)
    ble: BleConfig = msgspec.field(default_factory=BleConfig)
    devices: list[DeviceBinding] = []

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", self.hub_id):
            raise ValueError("hub_id: 1-64 of A-Z a-z 0-9 _ . - (it is an MQTT topic level)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone: {self.timezone!r} is not an IANA time zone") from exc
        if self.heartbeat_seconds <= 0:
            raise ValueError("heartbeat_seconds: must be > 0")
        seen: set[str] = set()
        for i, d in enumerate(self.devices):
            if d.device_id in seen:
                raise ValueError(f"devices[{i}]: device {d.device_id} is listed twice")
            seen.add(d.device_id)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def outbox_path(self) -> Path:
        return Path(self.data_dir) / "outbox.sqlite3"

    def ble_binding(self, address: str) -> DeviceBinding | None:
        a = address.upper()
        for d in self.devices:
            if d.address is not None and d.address.upper() == a:
                return d
        return None


def parse_config(data: Mapping[str, Any]) -> HubConfig:
    """Validate an already-parsed TOML document."""
    try:
        return msgspec.convert(data, HubConfig, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"config: {_key_first(str(exc))}") from exc


def load_config(path: str | Path) -> HubConfig:
    """Read and validate the TOML file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config: cannot read {p}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {p}: {exc}") from exc
    return parse_config(data)


def _key_first(msg: str) -> str:
    """msgspec says "reason - at `$.a.b`"; put the key first: "$.a.b: reason"."""
    reason, sep, where = msg.rpartition(" - at `")
    if not sep:
        return msg
    return f"{where.rstrip('`')}: {reason}"
