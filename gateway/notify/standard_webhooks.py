"""Signing per the Standard Webhooks specification (standardwebhooks.com, v1 symmetric).

    webhook-id:        a stable id per message (the same on every retry; receivers deduplicate)
    webhook-timestamp: integer seconds since the Unix epoch, of this attempt
    webhook-signature: "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))

The key: a secret written ``whsec_<base64>`` (the spec's format) is the base64-decoded bytes;
any other secret text is used as its UTF-8 bytes. Several space-separated signatures may appear
in the header during a key rotation; a receiver accepts the message if any one matches.
Pure functions; :mod:`gateway.notify.delivery` sends, tests and receivers verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Final

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
#: A receiver refuses timestamps further than this from its clock (replay protection).
TOLERANCE_SECONDS: Final = 5 * 60


class SignatureError(ValueError):
    """The message is not signed by the key, or its timestamp is out of tolerance."""


def key_of(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as e:
            raise ValueError(f"secret: not valid base64 after {SECRET_PREFIX}") from e
    return secret.encode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (one ``v1,`` signature)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(key_of(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str | None, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one attempt (no signature when the endpoint has no secret)."""
    out = {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(timestamp)}
    if secret:
        out[SIGNATURE_HEADER] = signature(secret, msg_id, timestamp, body)
    return out


def verify(secret: str, got: dict[str, str], body: bytes, *, now: int) -> None:
    """For receivers and tests: raise :class:`SignatureError` unless ``got`` (lower-case header
    names) signs ``body`` with ``secret`` within the timestamp tolerance."""
    try:
        msg_id = got[ID_HEADER]
        timestamp = int(got[TIMESTAMP_HEADER])
        offered = got[SIGNATURE_HEADER].split()
    except (KeyError, ValueError) as e:
        raise SignatureError(f"missing or malformed header: {e}") from None
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("timestamp outside the tolerance")
    expected = signature(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in offered):
        raise SignatureError("no signature matches")
