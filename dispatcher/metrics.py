"""The dispatcher's HTTP port: `GET /healthz` (JSON) and `GET /metrics` (Prometheus text format).

A bare asyncio server (two GET routes, no framework): it must keep answering while the event loop
is busy with hundreds of POSTs, and must not pull a web stack into the daemon for two pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """The dispatcher's Prometheus series, in a registry of its own (several dispatchers per test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "waybill_webhook_deliveries",
            "HTTP tries by outcome: delivered, retry (failed, will be retried), failed (final), gone (410), released.",
            ["outcome"],
            registry=self.registry,
        )
        self.attempt_seconds = Histogram(
            "waybill_webhook_attempt_duration_seconds",
            "Duration of one webhook POST, connect to last byte read.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.claim_batch = Histogram(
            "waybill_webhook_claim_batch_size",
            "Rows returned by one claim (at most 50).",
            buckets=(0, 1, 2, 5, 10, 20, 30, 40, 50),
            registry=self.registry,
        )
        self.backlog = Gauge(
            "waybill_webhook_backlog",
            "Deliveries PENDING or SENDING (all dispatchers).",
            registry=self.registry,
        )
        self.oldest_pending_age = Gauge(
            "waybill_webhook_oldest_pending_age_seconds",
            "Age of the oldest PENDING or SENDING delivery.",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "waybill_webhook_in_flight", "POSTs this dispatcher has in flight.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StatusServer:
    """Serves /healthz from `health()` (a dict with `ok`) and /metrics from `metrics`."""

    def __init__(self, host: str, port: int, metrics: Metrics, health: Callable[[], dict[str, Any]]) -> None:
        self.host, self.port = host, port
        self.metrics = metrics
        self.health = health
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, target = request.split(b" ", 2)[:2]
            path = target.split(b"?")[0]
            if method != b"GET":
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path == b"/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, self.metrics.render()
            elif path == b"/healthz":
                report = self.health()
                status = "200 OK" if report.get("ok") else "503 Service Unavailable"
                ctype, body = "application/json", json.dumps(report, default=str).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"/healthz or /metrics\n"
            writer.write(
                f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
