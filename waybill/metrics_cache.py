"""`waybill metrics-cache`: the worker that fills the answer cache (sql/325).

A leaderboard or SLA summary request whose answer is not cached answers as it did before the cache,
and sends its key on NOTIFY (a GET runs in a read-only transaction: it cannot write). This worker LISTENs and
calls `metrics.fill_answer_cache(key)` for each key, one fill at a time. SQL decides the rest
(the key's validity, whether an entry is still valid, the TTL, the size bound) and says whether it
filled. Keys that arrive during a fill wait, each once; beyond `max_pending` they are dropped and
counted (the next miss sends the key again). A fill that fails — a bad key, or one cancelled
(statement_timeout, an operator's pg_cancel_backend) — is dropped, not retried: its next miss
asks again. Only a lost connection keeps the key and re-opens. A notification lost while the LISTEN
connection was down costs one more computed answer, nothing else, so there is nothing to rescan.

Login: the `metrics_cache` role (sql/000_roles.sql), which may only fill this cache:
- WAYBILL_METRICS_CACHE_DATABASE_URL, a full URL as `metrics_cache` (password inside, or in
  WAYBILL_METRICS_CACHE_PASSWORD / PGPASSWORD); otherwise
- with DATABASE_URL: that server as `metrics_cache` with WAYBILL_METRICS_CACHE_PASSWORD; otherwise
- the embedded cluster's socket as `metrics_cache`.
"""

from __future__ import annotations

import asyncio
import signal
import time

import psycopg
from pydantic_settings import BaseSettings, SettingsConfigDict

from waybill.auth import daemon_url
from waybill.errors import error_code
from waybill.listen import Listener
from waybill.log import get_logger

ROLE = "metrics_cache"


class MetricsCacheSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYBILL_", extra="ignore")

    metrics_cache_database_url: str | None = None
    metrics_cache_password: str | None = None
    metrics_cache_max_pending: int = 1000
    metrics_cache_reconnect_seconds: float = 1.0


def worker_url(owner_url: str | None, s: MetricsCacheSettings, socket_url: str | None) -> str:
    """The metrics_cache role's connection string (the module docstring gives the order)."""
    return daemon_url(ROLE, s.metrics_cache_database_url, s.metrics_cache_password, owner_url, socket_url)


class _MissListener(Listener):
    connect_event = "metrics_cache_listener_connect_succeeded"
    lost_event = "metrics_cache_listener_connection_lost"


class CacheWorker:
    """LISTEN for cache misses, fill each key once; `filled`, `skipped`, `failed`, `dropped` count."""

    def __init__(self, url: str, *, max_pending: int = 1000, reconnect_seconds: float = 1.0) -> None:
        self.url = url
        self.max_pending = max_pending
        self.reconnect_seconds = reconnect_seconds
        self.pending: dict[str, None] = {}  # insertion-ordered set: each key waits once
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.filled = self.skipped = self.failed = self.dropped = 0
        self.listener: _MissListener | None = None
        self.log = get_logger()

    async def on_notify(self, key: str) -> None:
        if key in self.pending:
            return
        if len(self.pending) >= self.max_pending:
            self.dropped += 1
            self.log.warning("metrics_cache_key_dropped", pending=len(self.pending), dropped=self.dropped)
            return
        self.pending[key] = None
        self.wake.set()

    def request_stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def run(self) -> int:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            channel = (await (await conn.execute("select metrics.answer_cache_channel()")).fetchone())[0]
        self.listener = _MissListener(self.url, channel, self.on_notify, task_name="metrics-cache-listener")
        self.listener.start()
        try:
            while not self.stopping.is_set():
                try:
                    async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                        await self.listener.connected.wait()
                        self.log.info("metrics_cache_worker_started", channel=channel)
                        await self._fill_loop(conn)
                except psycopg.OperationalError as exc:  # the server went away: open again
                    self.log.warning(
                        "metrics_cache_db_failed", error=str(exc), retry_in_s=self.reconnect_seconds
                    )
                    await asyncio.sleep(self.reconnect_seconds)
        finally:
            await self.listener.stop()
        self.log.info(
            "metrics_cache_worker_stopped",
            filled=self.filled,
            skipped=self.skipped,
            failed=self.failed,
            dropped=self.dropped,
        )
        return 0

    async def _fill_loop(self, conn: psycopg.AsyncConnection) -> None:
        while not self.stopping.is_set():
            if not self.pending:
                self.wake.clear()
                await self.wake.wait()
                continue
            key = next(iter(self.pending))
            started = time.perf_counter()
            try:
                row = await (await conn.execute("select metrics.fill_answer_cache(%s)", [key])).fetchone()
            except psycopg.errors.QueryCanceled as exc:  # an OperationalError too: dropped, not retried
                failure = exc
            except psycopg.OperationalError:
                raise  # the connection: keep the key, open again
            except psycopg.Error as exc:  # a bad key (anyone may NOTIFY)
                failure = exc
            else:
                failure = None
            if failure is not None:
                self.pending.pop(key, None)
                self.failed += 1
                self.log.warning(
                    "metrics_cache_fill_failed",
                    key=key[:200],
                    error=str(failure).splitlines()[0],
                    error_code=error_code(failure),
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )
                continue
            self.pending.pop(key, None)
            ms = round((time.perf_counter() - started) * 1000, 3)
            if row[0]:
                self.filled += 1
                self.log.info("metrics_cache_fill_succeeded", key=key, duration_ms=ms)
            else:
                self.skipped += 1
                self.log.info("metrics_cache_fill_skipped", key=key, duration_ms=ms)


def run(url: str, s: MetricsCacheSettings) -> int:
    """Run a CacheWorker in the foreground; SIGTERM/SIGINT stop it cleanly (exit 0)."""

    async def main() -> int:
        worker = CacheWorker(
            url, max_pending=s.metrics_cache_max_pending, reconnect_seconds=s.metrics_cache_reconnect_seconds
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.request_stop)
        return await worker.run()

    return asyncio.run(main())
