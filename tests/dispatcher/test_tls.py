"""HTTPS deliveries against real TLS receivers on 127.0.0.1, with a throw-away CA made per module.

The URL names `localhost`; the SSRF guard lets only 127.0.0.1/32 through, so the socket goes to that
address while SNI, the certificate check and the Host header keep `localhost`. Trust: the system's
CAs plus WAYBILL_WEBHOOK_CA_FILE (or the standard SSL_CERT_FILE, which replaces the system's).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from dispatcher.daemon import Config
from tests.dispatcher.crash_checks import delivered_all
from tests.dispatcher.helpers import (
    DispatcherThread,
    Hook,
    start_process,
    stop_process,
    subscribe,
    wait_until,
)
from tests.dispatcher.pki import Pki, make_pki
from tests.dispatcher.test_delivery import emit


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    p = make_pki(tmp_path_factory.mktemp("tls") / "pki")
    p.issue("good", "localhost")
    p.issue("wrong", "wrong-host.example")
    p.self_signed("selfsigned", "localhost")
    return p


@pytest.fixture
def good(pki: Pki) -> Iterator[Hook]:
    h = Hook(tls=pki.server_context("good"))
    yield h
    h.close()


class PlainPort:
    """A plain TCP port behind an https URL: records what each client sent first, answers like a
    plain HTTP server would (400) and closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.first_bytes: list[bytes] = []
        self.received: list[bytes] = []  # never a parsed request: nothing is served here
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(5)
                with contextlib.suppress(OSError):
                    self.first_bytes.append(c.recv(4096))
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


def _attempts(conn: psycopg.Connection, subscription: int) -> list[tuple]:
    return conn.execute(
        "select a.attempt, a.status_code, a.error_class from webhooks.attempts a "
        "join webhooks.deliveries d on d.id = a.delivery_id where d.subscription_id = %s order by a.attempt",
        [subscription],
    ).fetchall()


def test_the_ca_directory_and_keys_are_private(pki: Pki) -> None:
    assert pki.root.stat().st_mode & 0o777 == 0o700
    keys = list(pki.root.glob("*.key"))
    assert len(keys) == 4 and all(k.stat().st_mode & 0o777 == 0o600 for k in keys)


def test_verified_delivery_over_https_keeps_the_url_host_for_sni_and_host(
    conn: psycopg.Connection, db_url: str, pki: Pki, good: Hook
) -> None:
    sub, secret = subscribe(conn, good.url(host="localhost"))
    ids = emit(conn, 3)
    with DispatcherThread(db_url, ca_file=str(pki.ca)):
        wait_until(lambda: delivered_all(conn, ids, 1), what="3 deliveries over https")
    assert sorted(r.headers["webhook-id"] for r in good.received) == sorted(ids)
    for r in good.received:
        payload = Webhook(secret).verify(r.body, r.headers)  # the library, unmodified
        assert payload["eventId"] == r.headers["webhook-id"]
        assert r.headers["host"] == f"localhost:{good.port}"  # the URL's host...
        assert r.peer == "127.0.0.1"  # ...while the socket went to the address the guard let through
    assert good.sni and set(good.sni) == {"localhost"}
    assert _attempts(conn, sub) == [(1, 200, None)] * 3


def test_bad_certificates_are_tls_errors_and_nothing_is_ever_sent_in_clear(
    conn: psycopg.Connection, db_url: str, pki: Pki
) -> None:
    wrong = Hook(tls=pki.server_context("wrong"))  # signed by the trusted CA, for another host
    untrusted = Hook(tls=pki.server_context("selfsigned"))  # for localhost, vouched for by nobody
    plain = PlainPort()  # no TLS at all behind an https URL
    hooks = {"wrong": wrong, "untrusted": untrusted, "plain": plain}
    subs = {name: subscribe(conn, f"https://localhost:{h.port}/hook")[0] for name, h in hooks.items()}
    try:
        emit(conn, 2)
        with DispatcherThread(db_url, ca_file=str(pki.ca)) as d:
            for tries in (1, 2):  # the retry is TLS again: no fallback to plain HTTP
                wait_until(
                    lambda tries=tries: all(len(_attempts(conn, s)) == 2 * tries for s in subs.values()),
                    what=f"try {tries}",
                )
                d.advance(40)  # the first retry is due after 30 s (+ jitter)
    finally:
        for h in hooks.values():
            h.close()
    for name, s in subs.items():
        assert [a[1:] for a in _attempts(conn, s)] == [(None, "tls")] * 4, name
        assert hooks[name].received == [], name  # not one request reached any of them
    # Each try did reach the server's handshake (asking for localhost), and went no further.
    assert wrong.sni == ["localhost"] * 4 and untrusted.sni == ["localhost"] * 4, (wrong.sni, untrusted.sni)
    # The plain port saw 4 connections, each opened with a TLS handshake record, never a request.
    assert len(plain.first_bytes) == 4 and all(b[:1] == b"\x16" for b in plain.first_bytes), plain.first_bytes
    assert not any(b"POST" in b or b"webhook" in b for b in plain.first_bytes)
    snippets = dict(
        conn.execute(
            "select d.subscription_id, min(a.response_snippet) from webhooks.attempts a "
            "join webhooks.deliveries d on d.id = a.delivery_id group by 1"
        ).fetchall()
    )
    assert "hostname mismatch" in snippets[subs["wrong"]].lower(), snippets
    assert "self-signed" in snippets[subs["untrusted"]].lower(), snippets
    assert "wrong version number" in snippets[subs["plain"]].lower(), snippets


def test_the_test_ca_is_trusted_only_when_configured(
    conn: psycopg.Connection, db_url: str, pki: Pki, good: Hook
) -> None:
    sub, _ = subscribe(conn, good.url(host="localhost"))
    emit(conn, 1)
    with DispatcherThread(db_url):  # no ca_file: the system's CAs do not know the test CA
        wait_until(lambda: len(_attempts(conn, sub)) == 1, what="a try")
    assert [a[1:] for a in _attempts(conn, sub)] == [(None, "tls")]
    assert good.received == []


def test_a_ca_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="WAYBILL_WEBHOOK_CA_FILE"):
        Config(db_url="", ca_file=str(tmp_path / "missing.pem"))
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="WAYBILL_WEBHOOK_CA_FILE"):
        Config(db_url="", ca_file=str(empty))


@pytest.mark.parametrize("variable", ["WAYBILL_WEBHOOK_CA_FILE", "SSL_CERT_FILE"])
def test_the_process_trusts_a_private_ca_from_its_environment(
    conn: psycopg.Connection, db_url: str, pki: Pki, good: Hook, tmp_path: Path, variable: str
) -> None:
    sub, secret = subscribe(conn, good.url(host="localhost"))
    ids = emit(conn, 2)
    proc = start_process(db_url, "tls", env={variable: str(pki.ca)}, log=tmp_path / "tls.log")
    try:
        wait_until(lambda: delivered_all(conn, ids, 1), what="https deliveries")
        assert stop_process(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert all(Webhook(secret).verify(r.body, r.headers) for r in good.received)
    assert sorted(r.headers["webhook-id"] for r in good.received) == sorted(ids)
