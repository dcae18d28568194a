#!/usr/bin/env python3
"""A home hub written only from docs/protocol.md: the standard library and the Mosquitto
command-line clients, nothing of telehub's code.

    python3 docs/examples/doc_hub.py HOST PORT HUB DEVICE PATIENT

It subscribes to its ``receipts`` topic, then sends, as the protocol page says:
 1. one SpO2 reading (one message)               → expects it under ``stored``;
 2. the same reading again in a new message      → expects it under ``duplicates``;
 3. a reading with an implausible value (412 %)  → expects it under ``rejected`` with its key;
 4. a message naming another hub than its topic  → expects its reading's key under ``rejected``;
 5. a message that is not JSON but carries a plain ``"msg_id"`` → one ``rejected`` entry, null key.
It prints one JSON line per receipt and exits 0 when every answer was the documented one.
Tested by tests/wire/test_doc_hub.py against the real ingester and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

TIMEOUT_S = 20


def key_of(device: str, patient: str, mdc: int, time_token: str, supplemental: str) -> str:
    """§ Idempotency key: BLAKE2b-128 of ``device-patient-mdc-time_token-supplemental``."""
    text = f"{device}-{patient}-{mdc}-{time_token}-{supplemental}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def spo2(device: str, patient: str, value: str, received_ns: int) -> dict[str, object]:
    """§ Reading: an SpO2 sample with no device timestamp (time_source ``hub``)."""
    at = datetime.fromtimestamp(received_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")
    return {
        "key": key_of(device, patient, 150456, f"rx{received_ns}", f"nonin-df8:{value}%"),
        "device": device,
        "patient": patient,
        "source": "nonin-df8",
        "kind": "spot",
        "mdc": 150456,
        "loinc": ["59408-5", "2708-6"],
        "unit": "%",
        "mdc_unit": 262688,
        "value": value,
        "group": uuid.uuid4().hex,
        "flags": [],
        "time": at,
        "time_source": "hub",
        "received_at": at,
        "hub_clock": "synchronized",
        "raw": "00",
    }


def message(hub: str, readings: list[dict[str, object]]) -> tuple[str, str]:
    """§ ReadingsMessage."""
    msg_id = uuid.uuid4().hex
    sent = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = {"v": 1, "hub": hub, "msg_id": msg_id, "sent_at": sent, "readings": readings}
    return msg_id, json.dumps(body, separators=(",", ":"))


def main(host: str, port: str, hub: str, device: str, patient: str) -> int:
    base = f"telehub/v1/hubs/{hub}"
    sub = subprocess.Popen(
        ["stdbuf", "-oL",  # line-buffered: the SUBACK line must arrive before we publish
         "mosquitto_sub", "-h", host, "-p", port, "-q", "1", "-t", f"{base}/receipts",
         "-i", f"{hub}-doc-rx", "-d", "-W", str(TIMEOUT_S)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sub.stdout is not None
    for line in sub.stdout:  # -d prints the SUBACK before any message
        if "SUBACK" in line:
            break

    def send(payload: str) -> None:
        subprocess.run(
            ["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-i", f"{hub}-doc-tx",
             "-t", f"{base}/readings", "-m", payload],
            check=True, timeout=TIMEOUT_S,
        )  # fmt: skip

    def receipt(msg_id: str) -> dict[str, object]:
        assert sub.stdout is not None
        for line in sub.stdout:
            if not line.startswith("{"):
                continue  # the -d client's own log lines
            r: dict[str, object] = json.loads(line)
            print(json.dumps(r), flush=True)  # noqa: T201 (the receipts are the output)
            if r.get("msg_id") == msg_id:
                return r
        raise SystemExit("no receipt")

    ns = time.time_ns()
    good = spo2(device, patient, "97", ns)
    bad = spo2(device, patient, "412", ns + 1)
    try:
        mid, payload = message(hub, [good])
        send(payload)
        ok = receipt(mid)["stored"] == [good["key"]]
        mid, payload = message(hub, [good])
        send(payload)
        ok &= receipt(mid)["duplicates"] == [good["key"]]
        mid, payload = message(hub, [bad])
        send(payload)
        rej = receipt(mid)["rejected"]
        ok &= isinstance(rej, list) and [e["key"] for e in rej] == [bad["key"]]
        other = spo2(device, patient, "96", ns + 2)
        mid, payload = message("another-hub", [other])
        send(payload)
        rej = receipt(mid)["rejected"]
        ok &= isinstance(rej, list) and [e["key"] for e in rej] == [other["key"]]
        mid = uuid.uuid4().hex
        send('{"v": 1, "msg_id": "' + mid + '", "readings": [ broken')
        rej = receipt(mid)["rejected"]
        ok &= isinstance(rej, list) and len(rej) == 1 and rej[0]["key"] is None
    finally:
        sub.terminate()
        sub.wait(TIMEOUT_S)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
