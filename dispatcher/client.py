"""One webhook POST and its outcome: status, error class, a snippet of the answer, Retry-After.

10 s for the whole exchange (httpx's per-phase timeouts plus an overall deadline, so a receiver that
trickles bytes cannot hold a slot longer), redirects never followed (a 3xx is a failed attempt:
following one would let a receiver point the dispatcher at another host), no proxy from the
environment, the SSRF guard at connect time (guard.py). The retry policy itself lives in SQL
(webhooks.record_attempt); this module only reports what happened.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from dataclasses import dataclass

import httpx

from dispatcher.guard import GuardedTransport, Network, RefusedAddress, ResolveError

SNIPPET_BYTES = 1024


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
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return "tls"
        cause = cause.__cause__ or cause.__context__
    cause = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "refused"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        return "connect"  # failed or reset connection (webhooks.error_classes)
    return "other"


class Poster:
    """An httpx client configured for webhooks; `post` never raises for what a receiver does."""

    def __init__(
        self,
        allowlist: tuple[Network, ...],
        user_agent: str,
        timeout: float = 10.0,
        max_connections: int = 200,
    ) -> None:
        self.timeout = timeout
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.client = httpx.AsyncClient(
            transport=GuardedTransport(allowlist, limits),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": user_agent, "content-type": "application/json"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.perf_counter()
        status: int | None = None
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.stream("POST", url, content=body, headers=headers) as resp:
                    status = resp.status_code
                    chunks, size = [], 0
                    async for chunk in resp.aiter_raw():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size >= SNIPPET_BYTES:
                            break
                    snippet = b"".join(chunks)[:SNIPPET_BYTES].decode("utf-8", "replace") or None
                    wait = None
                    if status in (429, 503):
                        wait = retry_after(resp.headers.get("retry-after"), time.time())
            return Outcome(status, error_class_of(status), snippet, wait, _ms(started))
        except Exception as exc:  # noqa: BLE001 - every failure is an attempt outcome, never a crash
            return Outcome(status, _classify(exc), str(exc)[:SNIPPET_BYTES] or None, None, _ms(started))


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
