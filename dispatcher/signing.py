"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`; the signature is
`v1,<base64 HMAC-SHA256>` keyed with the base64-decoded part of a `whsec_…` secret. During a secret
rotation's grace period every valid secret signs, space-separated, so a receiver holding either the
old or the new secret verifies. `verify` is what `waybill receiver` runs (docs/webhooks.md shows it);
the tests check both against the `standardwebhooks` library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300  # the spec's default: refuse a timestamp more than 5 min away from now


class VerificationError(ValueError):
    """The request is not a webhook signed with this secret (or it is too old / too new)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    if not key:
        raise ValueError("empty webhook secret")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, b"%s.%d.%s" % (msg_id.encode(), timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str]) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per secret, newest first."""
    sigs = " ".join(signature(secret_key(s), msg_id, timestamp, body) for s in secrets)
    if not sigs:
        raise ValueError("no valid secret to sign with")
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": sigs}


def verify(secret: str, body: bytes, headers: Mapping[str, str], now: float) -> str:
    """Check a received webhook; return its webhook-id. Raises VerificationError."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and ts and sigs):
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts)
    except ValueError as exc:
        raise VerificationError("webhook-timestamp is not an integer") from exc
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise VerificationError("webhook-timestamp is more than 5 minutes from now")
    expected = signature(secret_key(secret), msg_id, timestamp, body).encode()
    for candidate in sigs.split(" "):
        if hmac.compare_digest(candidate.encode(), expected):
            return msg_id
    raise VerificationError("no matching signature")
