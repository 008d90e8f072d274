"""One webhook POST and its outcome: status, error class, a snippet of the answer, Retry-After.

A small HTTP/1.1 client on asyncio streams (dispatcher/http11.py) rather than httpx: the dispatcher
sends one request shape (a JSON POST with a Content-Length body, no redirects, no proxy, no cookies,
no compression) and httpx's generality cost ~5 ms of CPU per POST — the dispatcher's bottleneck
(docs/performance.md, "Webhook dispatch"). 10 s for the whole exchange (one overall deadline, so a
receiver that trickles bytes cannot hold a slot longer), redirects never followed (a 3xx is a failed
attempt: following one would let a receiver point the dispatcher at another host), the SSRF guard at
connect time (guard.py). The retry policy itself lives in SQL (webhooks.record_attempt); this module
only reports what happened.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from dataclasses import dataclass

from dispatcher.guard import Network, RefusedAddress, ResolveError
from dispatcher.http11 import SNIPPET_BYTES, ConnectionPool, ProtocolError, tls_context


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error_class: str | None  # None for a 2xx
    snippet: str | None
    retry_after_seconds: int | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.error_class is None


def retry_after(value: str | None, now: float) -> int | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int(when.timestamp() - now))


def error_class_of(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    return f"http_{status // 100}xx" if 300 <= status < 600 else "other"


def _classify(exc: BaseException) -> str:
    if isinstance(exc, RefusedAddress):
        return "refused_private_address"
    if isinstance(exc, ResolveError):
        return "dns"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ProtocolError | ConnectionError | asyncio.IncompleteReadError | OSError):
        return "connect"  # failed or reset connection, or an answer that is not HTTP/1.x
    return "other"


class Poster:
    """The dispatcher's HTTP client; `post` never raises for what a receiver does."""

    def __init__(
        self,
        allowlist: tuple[Network, ...],
        user_agent: str,
        timeout: float = 10.0,
        max_connections: int = 200,
        ca_file: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.pool = ConnectionPool(
            allowlist,
            {"user-agent": user_agent, "content-type": "application/json"},
            max_idle=max_connections,
            ssl_context=tls_context(ca_file),
        )

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.perf_counter()
        seen: list[int] = []  # the status, once the status line is in (a later timeout keeps it)
        try:
            async with asyncio.timeout(self.timeout):
                status, answer_headers, snippet_bytes = await self.pool.post(url, body, headers, seen)
            snippet = snippet_bytes.decode("utf-8", "replace") or None
            wait = None
            if status in (429, 503):
                wait = retry_after(answer_headers.get("retry-after"), time.time())
            return Outcome(status, error_class_of(status), snippet, wait, _ms(started))
        except Exception as exc:  # noqa: BLE001 - every failure is an attempt outcome, never a crash
            text = str(exc) or type(exc).__name__
            status = seen[0] if seen else None
            return Outcome(status, _classify(exc), text[:SNIPPET_BYTES], None, _ms(started))


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
