"""``telehub ca|hub|broker`` commands: the fleet CA, hub enrolment and revocation, broker users.

On the hub:      telehub hub csr --hub-id hub-0001 --dir /var/lib/telehub/identity
At the operator: telehub hub enrol --ca /srv/telehub/ca --csr hub.csr --hub-id hub-0001 \\
                   --org esbjerg --dynsec /etc/mosquitto/telehub-dynsec.json \\
                   --fleet fleet.toml --out hub-0001.crt
Revocation:      telehub hub revoke --ca /srv/telehub/ca --cert old.crt   (then SIGHUP mosquitto)
A local broker:  telehub broker setup var/broker --fleet fleet.toml [--auth password]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edge.identity import IdentityError, generate_key_and_csr
from telehub import broker_control, broker_setup
from telehub.broker_setup import HubAuth, SetupError, hubs_of_fleet
from telehub.fleetca import DynSec, EnrolError, FleetCA, add_fleet_hub


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def _fail(msg: str) -> int:
    sys.stderr.write(f"telehub: {msg}\n")
    return 2


def _ca_init(args: argparse.Namespace) -> int:
    ca = FleetCA.create(Path(args.directory))
    _say(f"fleet CA in {args.directory}: cafile {ca.cert_path}, crlfile {ca.crl_path}")
    return 0


def _hub_csr(args: argparse.Namespace) -> int:
    files = generate_key_and_csr(args.hub_id, Path(args.dir))
    _say(f"key {files.key} (stays on this hub), CSR {files.csr} (send to the operator)")
    return 0


def _hub_enrol(args: argparse.Namespace) -> int:
    ca = FleetCA(Path(args.ca))
    cert = ca.sign(Path(args.csr).read_bytes(), args.hub_id, days=args.days)
    if args.dynsec:
        DynSec(Path(args.dynsec)).add_hub(args.hub_id)
    if args.fleet:
        add_fleet_hub(Path(args.fleet), args.hub_id, args.org)
    Path(args.out).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _say(f"{args.hub_id}: certificate {args.out} (serial {cert.serial_number:x})")
    return 0


def _hub_revoke(args: argparse.Namespace) -> int:
    ca = FleetCA(Path(args.ca))
    cert = x509.load_pem_x509_certificate(Path(args.cert).read_bytes())
    (cn,) = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    hub_id = str(cn.value)
    if args.remove_hub and not (args.dynsec or args.kick):
        return _fail("--remove-hub needs --dynsec (file) or --kick (the running broker)")
    ca.revoke(cert)
    _say(f"revoked serial {cert.serial_number:x}; CRL {ca.crl_path}")
    if args.crl_to:
        broker_control.install_crl(ca.crl_path, Path(args.crl_to), args.broker_pid)
        _say(
            f"CRL installed as {args.crl_to}" + (" and broker reloaded" if args.broker_pid else "")
        )
    else:
        _say("copy the CRL to the broker's crlfile and SIGHUP mosquitto (or use --crl-to)")
    if args.remove_hub and args.dynsec:
        DynSec(Path(args.dynsec)).remove_hub(hub_id)
    if args.kick:
        url = args.kick
        if args.admin_password_file:
            from urllib.parse import quote, urlsplit, urlunsplit

            parts = urlsplit(url)
            pw = Path(args.admin_password_file).read_text().strip()
            netloc = f"{parts.username or 'telehub-admin'}:{quote(pw, safe='')}@{parts.hostname}"
            url = urlunsplit(parts._replace(netloc=f"{netloc}:{parts.port or 1883}"))
        asyncio.run(broker_control.kick(url, hub_id, remove=args.remove_hub))
        _say(
            f"{hub_id}: live sessions ended"
            + (", broker client removed" if args.remove_hub else "")
        )
    return 0


def _broker_add_ingester(args: argparse.Namespace) -> int:
    password = (
        Path(args.password_file).read_text().strip()
        if args.password_file
        else getpass.getpass(f"password for {args.username}: ")
    )
    DynSec(Path(args.dynsec)).add_ingester(args.username, password, group=args.group)
    return 0


def _broker_add_admin(args: argparse.Namespace) -> int:
    password = Path(args.password_file).read_text().strip()
    DynSec(Path(args.dynsec)).add_admin(args.username, password)
    return 0


def _broker_setup(args: argparse.Namespace) -> int:
    hubs = list(args.hub or [])
    if args.fleet:
        hubs += hubs_of_fleet(Path(args.fleet))
    done = broker_setup.setup(
        Path(args.directory),
        hubs,
        auth=HubAuth(args.auth),
        host=args.host,
        central_port=args.central_port,
        hub_port=args.hub_port,
    )
    _say(f"broker: mosquitto -c {done.conf}")
    _say(f"gateway: set -a; . {done.gateway_env}; set +a; telehub gateway")
    for hub, d in done.hub_dirs.items():
        _say(f"{hub}: paste {d / 'mqtt.toml'} as the [mqtt] table of its hub.toml")
    if done.generated_hub_keys:
        _say(
            "note: the hub keys were generated here for a local run; in the field each hub makes "
            "its own (telehub hub csr) and only the CSR travels"
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        rc: int = args.identity_func(args)
    except (EnrolError, IdentityError, SetupError, OSError) as e:
        return _fail(str(e))
    return rc


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = sub.add_parser("ca", help="the fleet's hub-issuing CA")
    ca.add_argument("action", choices=["init"])
    ca.add_argument("directory")
    ca.set_defaults(func=_run, identity_func=_ca_init)

    hub = sub.add_parser("hub", help="hub identity: csr (on the hub), enrol, revoke")
    hs = hub.add_subparsers(dest="hub_command", required=True)
    c = hs.add_parser("csr", help="on the hub: generate its key (0600) and a CSR")
    c.add_argument("--hub-id", required=True)
    c.add_argument("--dir", required=True)
    c.set_defaults(func=_run, identity_func=_hub_csr)
    e = hs.add_parser("enrol", help="sign a hub's CSR, add its broker access and fleet entry")
    e.add_argument("--ca", required=True)
    e.add_argument("--csr", required=True)
    e.add_argument("--hub-id", required=True)
    e.add_argument("--org", required=True)
    e.add_argument("--dynsec", help="Mosquitto dynamic-security JSON to add the hub to")
    e.add_argument("--fleet", help="fleet TOML to add the [[hubs]] entry to")
    e.add_argument("--days", type=int, default=60)
    e.add_argument("--out", required=True)
    e.set_defaults(func=_run, identity_func=_hub_enrol)
    r = hs.add_parser("revoke", help="put a certificate on the CRL (and end its live session)")
    r.add_argument("--ca", required=True)
    r.add_argument("--cert", required=True)
    r.add_argument("--dynsec", help="dynamic-security JSON to remove the hub from")
    r.add_argument("--remove-hub", action="store_true", help="also remove its broker access")
    r.add_argument("--crl-to", help="install the CRL here (the broker's crlfile)")
    r.add_argument("--broker-pid", type=int, help="then SIGHUP this Mosquitto to reload it")
    r.add_argument(
        "--kick",
        metavar="URL",
        help="end the hub's live sessions via the broker's dynamic-security control API "
        "(mqtt://telehub-admin@host:1883; a connected session survives a CRL reload)",
    )
    r.add_argument("--admin-password-file", help="the broker admin's password (for --kick)")
    r.set_defaults(func=_run, identity_func=_hub_revoke)

    b = sub.add_parser("broker", help="broker users (dynamic-security JSON)")
    bs = b.add_subparsers(dest="broker_command", required=True)
    i = bs.add_parser("add-ingester")
    i.add_argument("--dynsec", required=True)
    i.add_argument("--username", default="telehub-ingester")
    i.add_argument("--password-file")
    i.add_argument("--group", default="telehub")
    i.set_defaults(func=_run, identity_func=_broker_add_ingester)
    a = bs.add_parser("add-admin", help="the operator's broker admin (for hub revoke --kick)")
    a.add_argument("--dynsec", required=True)
    a.add_argument("--username", default="telehub-admin")
    a.add_argument("--password-file", required=True)
    a.set_defaults(func=_run, identity_func=_broker_add_admin)
    s = bs.add_parser(
        "setup", help="write a private Mosquitto (config, certificates, hub credentials) into DIR"
    )
    s.add_argument("directory")
    s.add_argument("--hub", action="append", help="a hub id (repeatable)")
    s.add_argument("--fleet", help="fleet TOML whose [[hubs]] to add")
    s.add_argument("--auth", choices=[a.value for a in HubAuth], default=HubAuth.CERTIFICATE)
    s.add_argument("--host", default="localhost", help="the broker's name in its certificate")
    s.add_argument("--central-port", type=int, default=1883, help="ingester listener (loopback)")
    s.add_argument("--hub-port", type=int, default=8883, help="hub listener (TLS)")
    s.set_defaults(func=_run, identity_func=_broker_setup)
