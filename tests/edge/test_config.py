from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edge.config import (
    BleConfig,
    ConfigError,
    DeviceBinding,
    HubConfig,
    Limits,
    MqttConfig,
    load_config,
    parse_config,
)

EXAMPLE = """
hub_id = "hub-0001"
data_dir = "/var/lib/telehub"
heartbeat_seconds = 30

[mqtt]
url = "mqtts://broker.example.org:8883"
ca_file = "/etc/telehub/ca.pem"
protocol = "3.1.1"
username = "hub-0001"
password = "s3cret"

[limits]
outbox_max_bytes = 1_000_000
batch_size = 50

[[devices]]
address = "00:09:1f:8a:12:34"
patient = "patient-a"

[[devices]]
address = "00:09:1F:8A:56:78"
users = { "1" = "patient-a", "2" = "patient-b" }
driver = "2a9d"

[[devices]]
usb = "10C4:EA60"
driver = "contec-cms50d"
patient = "patient-a"

[[devices]]
port = "/dev/rfcomm0"
id = "onyx-1"
driver = "nonin-df8"
patient = "patient-b"
"""


def test_example_parses_to_the_expected_structure(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(EXAMPLE)
    cfg = load_config(path)
    assert cfg == HubConfig(
        hub_id="hub-0001",
        data_dir="/var/lib/telehub",
        heartbeat_seconds=30.0,
        mqtt=MqttConfig(
            url="mqtts://broker.example.org:8883",
            ca_file="/etc/telehub/ca.pem",
            protocol="3.1.1",
            username="hub-0001",
            password="s3cret",
        ),
        limits=Limits(outbox_max_bytes=1_000_000, batch_size=50),
        ble=BleConfig(),
        devices=[
            DeviceBinding(address="00:09:1f:8a:12:34", patient="patient-a"),
            DeviceBinding(
                address="00:09:1F:8A:56:78",
                users={"1": "patient-a", "2": "patient-b"},
                driver="2a9d",
            ),
            DeviceBinding(usb="10C4:EA60", driver="contec-cms50d", patient="patient-a"),
            DeviceBinding(
                port="/dev/rfcomm0", id="onyx-1", driver="nonin-df8", patient="patient-b"
            ),
        ],
    )
    assert cfg.timezone == "Europe/Copenhagen"
    assert [d.device_id for d in cfg.devices] == [
        "00:09:1F:8A:12:34",
        "00:09:1F:8A:56:78",
        "usb:10c4:ea60",
        "onyx-1",
    ]
    assert cfg.devices[2].usb_ids == (0x10C4, 0xEA60)
    assert cfg.ble_binding("00:09:1f:8a:56:78") is cfg.devices[1]
    assert cfg.ble_binding("00:00:00:00:00:00") is None
    assert cfg.mqtt.tls
    assert cfg.outbox_path == Path("/var/lib/telehub/outbox.sqlite3")


def test_shared_device_user_mapping() -> None:
    shared = DeviceBinding(address="00:09:1F:8A:56:78", users={"1": "a", "2": "b"})
    assert [shared.patient_for(u) for u in (1, 2, 3, None)] == ["a", "b", None, None]
    with_default = DeviceBinding(address="00:09:1F:8A:56:78", users={"1": "a"}, patient="c")
    assert [with_default.patient_for(u) for u in (1, 2, None)] == ["a", None, "c"]
    single = DeviceBinding(address="00:09:1F:8A:56:78", patient="p")
    assert [single.patient_for(u) for u in (1, None)] == ["p", "p"]


def _base() -> dict[str, object]:
    return tomllib.loads(EXAMPLE)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["mqtt"].update(prtocol="5"),
            "config: $.mqtt: Object contains unknown field `prtocol`",
        ),
        (
            lambda d: d["mqtt"].update(protocol="4"),
            "config: $.mqtt.protocol: Invalid enum value '4'",
        ),
        (
            lambda d: d["mqtt"].update(url="http://x"),
            "config: $.mqtt: url: scheme must be mqtt:// or mqtts://, got 'http://x'",
        ),
        (
            lambda d: d.update(timezone="Europe/Atlantis"),
            "config: timezone: 'Europe/Atlantis' is not an IANA time zone",
        ),
        (
            lambda d: d["devices"][1].update(adress="x"),
            "config: $.devices[1]: Object contains unknown field `adress`",
        ),
        (
            lambda d: d["devices"][0].update(address="00:09:1F:8A:12"),
            "config: $.devices[0]: address: '00:09:1F:8A:12' is not a BLE address "
            "(AA:BB:CC:DD:EE:FF)",
        ),
        (
            lambda d: d["devices"][0].update(port="/dev/ttyUSB0"),
            "config: $.devices[0]: give exactly one of address, port, usb",
        ),
        (
            lambda d: d["devices"][0].pop("patient"),
            "config: $.devices[0]: patient: required unless users maps device users to patients",
        ),
        (
            lambda d: d["devices"][1]["users"].update({"x": "p"}),
            "config: $.devices[1]: users: key 'x' is not a device user id "
            "(0..254; 255 is 'unknown user')",
        ),
        (
            lambda d: d["limits"].update(batch_size="10"),
            "config: $.limits.batch_size: Expected `int`, got `str`",
        ),
        (lambda d: d["limits"].update(batch_size=0), "config: $.limits: batch_size: must be >= 1"),
        (lambda d: d.pop("hub_id"), "config: Object missing required field `hub_id`"),
        (
            lambda d: d["devices"].append(dict(d["devices"][0])),
            "config: devices[4]: device 00:09:1F:8A:12:34 is listed twice",
        ),
    ],
)
def test_errors_name_the_bad_key(mutate: object, message: str) -> None:
    data = _base()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value) == message


def test_password_file_and_unreadable_config(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    m = MqttConfig(url="mqtt://h", password_file=str(pw))
    assert m.resolved_password() == "from-file"
    with pytest.raises(ConfigError, match="config: cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("hub_id = ")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(bad)
