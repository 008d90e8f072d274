"""Signatures per Standard Webhooks, checked with the `standardwebhooks` library unmodified."""

from __future__ import annotations

import base64
import os
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatcher import signing


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


BODY = b'{"eventId":"7f0c","eventType":"order.confirmed","data":{"amount":4200,"name":"Zo\xc3\xab"}}'


def test_the_library_verifies_our_signature_and_returns_the_payload() -> None:
    secret = _secret()
    h = signing.headers("msg_1", int(time.time()), BODY, [secret])
    assert Webhook(secret).verify(BODY, h)["data"]["name"] == "Zoë"


def test_every_valid_secret_signs_during_rotation() -> None:
    new, old, stranger = _secret(), _secret(), _secret()
    h = signing.headers("msg_2", int(time.time()), BODY, [new, old])
    assert len(h["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(BODY, h)
    Webhook(old).verify(BODY, h)
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(BODY, h)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h | {"webhook-id": "msg_other"}, b),
        lambda h, b: (h | {"webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: (h, b.replace(b"4200", b"4201")),
        lambda h, b: (h, b + b" "),
    ],
)
def test_any_change_breaks_the_signature_for_the_library_and_for_our_receiver(tamper) -> None:
    secret = _secret()
    h, b = tamper(signing.headers("msg_3", int(time.time()), BODY, [secret]), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b, h)
    with pytest.raises(signing.VerificationError):
        signing.verify(secret, b, h, time.time())


def test_our_verify_agrees_with_the_library_on_time_tolerance() -> None:
    secret = _secret()
    now = int(time.time())
    for offset, ok in [(0, True), (-290, True), (290, True), (-310, False), (310, False)]:
        h = signing.headers("msg_4", now + offset, BODY, [secret])
        lib_ok = True
        try:
            Webhook(secret).verify(BODY, h)
        except WebhookVerificationError:
            lib_ok = False
        ours_ok = True
        try:
            assert signing.verify(secret, BODY, h, now) == "msg_4"
        except signing.VerificationError:
            ours_ok = False
        assert (lib_ok, ours_ok) == (ok, ok), offset


def test_malformed_secrets_are_refused() -> None:
    for bad in ["", "whsec_", "secret_abc", "whsec_not base64!"]:
        with pytest.raises(ValueError):
            signing.headers("m", 1, b"{}", [bad])
    with pytest.raises(ValueError):
        signing.headers("m", 1, b"{}", [])


def test_the_example_in_docs_webhooks_md_verifies() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    body = re.search(r"\n\n(\{\"data\".*\})\n```", text).group(1).encode()
    headers = dict(re.findall(r"^(webhook-[a-z]+): (\S+)$", text, re.M))
    secret = re.search(r"the secret is `(whsec_\S+)`", text).group(1)
    assert signing.verify(secret, body, headers, int(headers["webhook-timestamp"])) == headers["webhook-id"]
