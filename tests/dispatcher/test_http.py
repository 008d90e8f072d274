"""The POST itself against real loopback servers: SSRF guard at connect time, no redirects, timeouts."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

import pytest

from dispatcher.client import Poster, retry_after
from dispatcher.guard import allowed, parse_allowlist
from tests.dispatcher.helpers import LOOPBACK, Answer, Hook
from waybill.stack_webhooks import run_allowlist


def _post(poster: Poster, url: str, body: bytes = b"{}") -> object:
    async def go():
        try:
            return await poster.post(url, body, {"webhook-id": "m"})
        finally:
            await poster.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "224.0.0.1", "255.255.255.255", "240.0.0.1", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "192.0.2.1", "198.18.0.1"],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not allowed(ipaddress.ip_address(address), ())


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "93.184.216.34"])
def test_public_addresses_pass(address: str) -> None:
    assert allowed(ipaddress.ip_address(address), ())


def test_allowlist_lets_chosen_networks_through() -> None:
    nets = parse_allowlist(" 10.0.0.0/8 , 127.0.0.1 ")
    assert allowed(ipaddress.ip_address("10.9.9.9"), nets)
    assert allowed(ipaddress.ip_address("127.0.0.1"), nets)
    assert allowed(ipaddress.ip_address("::ffff:127.0.0.1"), nets)
    assert not allowed(ipaddress.ip_address("127.0.0.2"), nets)
    with pytest.raises(ValueError):
        parse_allowlist("10.0.0.0/33")


@pytest.mark.parametrize("configured", ["", "10.1.0.0/16", " 10.1.0.0/16,192.168.5.7 "])
def test_make_run_adds_only_its_demo_receiver_to_the_setting(configured: str) -> None:
    nets = set(parse_allowlist(run_allowlist(configured)))
    assert nets == set(parse_allowlist(configured)) | {ipaddress.ip_network("127.0.0.1/32")}
    assert not allowed(ipaddress.ip_address("127.0.0.2"), tuple(nets))  # loopback beyond it stays refused


def test_loopback_receiver_is_refused_at_connect_time_without_the_allowlist() -> None:
    hook = Hook()
    try:
        for url in (hook.url(), f"http://localhost:{hook.port}/hook"):
            out = _post(Poster((), "t/1"), url)
            assert (out.error_class, out.status_code) == ("refused_private_address", None), out
        assert hook.received == []  # nothing ever reached it
        assert _post(Poster(LOOPBACK, "t/1"), hook.url()).status_code == 200
    finally:
        hook.close()


def test_the_guarded_connection_keeps_the_host_header_and_user_agent() -> None:
    hook = Hook()
    try:
        out = _post(Poster(LOOPBACK, "Waybill-Webhooks/9"), f"http://localhost:{hook.port}/x", b'{"a":1}')
        assert out.ok, out
        r = hook.received[0]
        assert r.headers["host"] == f"localhost:{hook.port}"
        assert r.headers["user-agent"] == "Waybill-Webhooks/9"
        assert r.body == b'{"a":1}' and r.headers["content-type"] == "application/json"
    finally:
        hook.close()


def test_unresolvable_host_is_a_dns_error() -> None:
    assert _post(Poster(LOOPBACK, "t"), "http://no-such-host.invalid/").error_class == "dns"


def test_a_closed_port_is_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _post(Poster(LOOPBACK, "t"), f"http://127.0.0.1:{port}/").error_class == "refused"


def test_redirects_are_not_followed() -> None:
    target = Hook()
    hook = Hook(lambda r: Answer(302, {"location": target.url("/elsewhere")}))
    try:
        out = _post(Poster(LOOPBACK, "t"), hook.url())
        assert (out.status_code, out.error_class) == (302, "http_3xx")
        assert len(hook.received) == 1 and target.received == []
    finally:
        hook.close()
        target.close()


def test_a_hanging_receiver_times_out_on_the_overall_deadline() -> None:
    hook = Hook(lambda r: Answer(delay=5))
    try:
        started = time.monotonic()
        out = _post(Poster(LOOPBACK, "t", timeout=0.5), hook.url())
        assert out.error_class == "timeout" and out.status_code is None
        assert time.monotonic() - started < 4
    finally:
        hook.close()


def test_answers_are_classified_and_snippets_cut_at_1_kib() -> None:
    big = Hook(lambda r: Answer(500, body=b"x" * 5000))
    limited = Hook(lambda r: Answer(429, {"retry-after": "120"}, b"slow down"))
    try:
        out = _post(Poster(LOOPBACK, "t"), big.url())
        assert (out.status_code, out.error_class, len(out.snippet)) == (500, "http_5xx", 1024)
        out = _post(Poster(LOOPBACK, "t"), limited.url())
        assert (out.status_code, out.error_class, out.retry_after_seconds) == (429, "http_4xx", 120)
    finally:
        big.close()
        limited.close()


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert retry_after("30", now) == 30
    assert retry_after("Tue, 14 Nov 2023 23:13:20 GMT", now) == 3600  # 1_700_000_000 is 22:13:20
    assert retry_after("soon", now) is None and retry_after(None, now) is None
