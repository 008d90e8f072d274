"""The dispatcher's loop: wake, claim, sign, POST, record — and stop cleanly.

Wake-ups: a NOTIFY on the webhooks channel (a hint: waybill/listen.py re-opens a dropped LISTEN
connection and the outbox is rescanned after every re-open), the next due time the database reports
(a retry, a lease that runs out), and a sweep every `sweep_seconds` (30 s) whatever happens.

Claims go through `webhooks.claim_deliveries` (FOR UPDATE SKIP LOCKED, batches of at most 50, a
lease longer than the HTTP timeout, at most `per_subscription` rows of one subscription in flight
across all dispatchers); each claimed row is POSTed by its own task and its outcome recorded by
`webhooks.record_attempt`, which holds the retry policy. Outcomes that end while a recording is in
flight are queued and sent together, pipelined on one connection (one round trip and one commit
per batch; a batch that fails is recorded again row by row, so one row's error stays its own): at
hundreds of deliveries/s a round trip and a commit per row were the limit. The database is the truth: a dispatcher that
dies leaves leases that expire, and its rows are claimed again.

SIGTERM / Ctrl-C: stop claiming, give in-flight POSTs up to the HTTP timeout to finish and record,
release the rest (`webhooks.release_deliveries`), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import version
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from dispatcher import signing
from dispatcher.client import Outcome, Poster
from dispatcher.clock import Clock
from dispatcher.guard import Network
from dispatcher.http11 import tls_context
from dispatcher.metrics import Metrics, StatusServer
from dispatcher.queries import q
from waybill import listen
from waybill.log import get_logger

VERSION = version("waybill")
USER_AGENT = f"Waybill-Webhooks/{VERSION}"
RECORD_BATCH = 50  # outcomes per pipelined record_attempt round trip
BUSY_POLL_SECONDS = 0.25  # while POSTs are in flight: claim again at the latest after this
RECORDERS = 2  # concurrent recording round trips (the pool holds 4 connections: claims need one)


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Config:
    """How one dispatcher runs; `waybill dispatcher` fills it from the environment (dispatcher/config.py)."""

    db_url: str
    name: str = field(default_factory=default_name)
    allowlist: tuple[Network, ...] = ()
    batch_size: int = 50
    lease_seconds: float = 20.0
    http_timeout: float = 10.0
    per_subscription: int = 10
    max_in_flight: int = 200
    sweep_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    status_host: str = "127.0.0.1"
    status_port: int | None = None  # None: no status port; 0: any free port
    pool_size: int = 4
    # How long a statement waits for a pool connection before that counts as a database failure (and
    # the work is retried). It also bounds the recovery after a restart: with reconnect_timeout=0 the
    # pool does not retry a failed reconnect itself, the next request for a connection does.
    pool_timeout: float = 5.0
    reconnect_seconds: float = 1.0  # the first wait before re-opening a dropped LISTEN (then doubling)
    ca_file: str | None = None  # PEM CA certificates trusted besides the system's (WAYBILL_WEBHOOK_CA_FILE)
    channel: str = "webhooks"

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 50:
            raise ValueError("batch_size must be between 1 and 50")
        if self.lease_seconds <= self.http_timeout:
            raise ValueError("the lease must outlast the HTTP timeout (lease_seconds > http_timeout)")
        if self.reconnect_seconds <= 0 or self.pool_timeout <= 0:
            raise ValueError("reconnect_seconds and pool_timeout must be positive")
        if self.ca_file:
            try:
                tls_context(self.ca_file)  # an unreadable CA file stops the start, not the first delivery
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"WAYBILL_WEBHOOK_CA_FILE {self.ca_file!r}: {exc}") from exc
        if self.per_subscription < 1 or self.max_in_flight < 1:
            raise ValueError("per_subscription and max_in_flight must be at least 1")


class WebhookListener(listen.Listener):
    connect_event = "webhook_listener_connect_succeeded"
    lost_event = "webhook_listener_connection_lost"


def _with_app_name(url: str, name: str) -> str:
    return make_conninfo(**(conninfo_to_dict(url) | {"application_name": name}))


class Dispatcher:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.metrics = Metrics()
        self.log = get_logger(dispatcher=config.name)
        self.in_flight: dict[int, asyncio.Task] = {}
        self.started_at = time.time()
        self.db_ok = False
        self.db_error: str | None = None
        self.status_port: int | None = None
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._stopping = asyncio.Event()
        self._to_record: list[tuple[dict[str, Any], asyncio.Future]] = []
        self._record_ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pool: AsyncConnectionPool | None = None
        self.poster: Poster | None = None
        self.listener: WebhookListener | None = None

    # -- control (thread-safe: tests and signal handlers) ------------------------------------------

    def wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def request_stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop_now)

    def _stop_now(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._slot.set()

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> int:
        c = self.config
        self._loop = asyncio.get_running_loop()
        self.pool = AsyncConnectionPool(
            _with_app_name(c.db_url, "waybill-dispatcher"),
            min_size=1,
            max_size=c.pool_size,
            kwargs={"autocommit": True, "prepare_threshold": 0},
            open=False,
            name="dispatcher",
            reconnect_timeout=0,  # no backoff of its own: each request for a connection tries anew
            timeout=c.pool_timeout,
        )
        await self.pool.open(wait=False)
        self.poster = Poster(
            c.allowlist,
            USER_AGENT,
            timeout=c.http_timeout,
            max_connections=c.max_in_flight,
            ca_file=c.ca_file,
        )
        self.listener = WebhookListener(
            _with_app_name(c.db_url, "waybill-dispatcher-listener"),
            c.channel,
            self._notified,
            self._notified_rescan,
            rescan_on_first_connect=True,
            min_backoff=c.reconnect_seconds,
            task_name="dispatcher-listener",
        )
        self.listener.start()
        status: StatusServer | None = None
        if c.status_port is not None:
            status = StatusServer(c.status_host, c.status_port, self.metrics, self.health)
            self.status_port = await status.start()
        beat = asyncio.create_task(self._heartbeat_loop(), name="dispatcher-heartbeat")
        recorders = [
            asyncio.create_task(self._recorder_loop(), name=f"dispatcher-recorder-{i}")
            for i in range(RECORDERS)
        ]
        self.log.info(
            "webhook_dispatcher_started",
            status_port=self.status_port,
            lease_s=c.lease_seconds,
            version=VERSION,
        )
        self.ready.set()
        try:
            await self._main_loop()
        finally:
            released = await self._shutdown()
            for task in (beat, *recorders):
                task.cancel()
            for task in (beat, *recorders):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._beat(state="stopped")
            await self.listener.stop()
            if status is not None:
                await status.stop()
            await self.poster.aclose()
            await self.pool.close()
            self.log.info("webhook_dispatcher_stopped", released=released)
        return 0

    async def _notified(self, payload: str) -> None:
        self._wake.set()

    async def _notified_rescan(self) -> None:
        self._wake.set()

    async def _main_loop(self) -> None:
        while not self._stopping.is_set():
            # Cleared before claiming: a POST that ends from here on is seen by _wait.
            self._wake.clear()
            self._slot.clear()
            try:
                await self._claim_round()
                if self._stopping.is_set():
                    break
                if self.in_flight:
                    # Busy: our next POST to end frees a slot and wakes us to claim again; arming the
                    # NOTIFY and reading the next due time (two round trips) can wait until we are
                    # idle. The short poll covers rows another dispatcher leaves, retries coming due.
                    delay, blocked = BUSY_POLL_SECONDS, True
                else:
                    delay, blocked = await self._idle_delay()
            except psycopg.Error as exc:
                self._db_failed(exc)
                delay, blocked = self.config.reconnect_seconds, False
            await self._wait(delay, until_slot=blocked)

    async def _claim_round(self) -> None:
        """Claim until nothing due is left or this dispatcher is full."""
        c = self.config
        while not self._stopping.is_set():
            room = c.max_in_flight - len(self.in_flight)
            if room <= 0:
                self._slot.clear()
                await self._slot.wait()  # a POST finished (or stop)
                continue
            limit = min(c.batch_size, room)
            rows = await self._claim(limit)
            self.metrics.claim_batch.observe(len(rows))
            for row in rows:
                self.in_flight[row["delivery_id"]] = asyncio.create_task(self._deliver(row))
            self.metrics.in_flight.set(len(self.in_flight))
            if len(rows) < limit:
                return

    async def _idle_delay(self) -> tuple[float, bool]:
        """Seconds until the next due row (its retry time or lease end), at most the sweep interval;
        and whether due rows are held back by the per-subscription limit (then a POST ending frees one)."""
        due = await self._next_due()
        if due is None:
            return self.config.sweep_seconds, False
        seconds = (due - self.clock.now()).total_seconds()
        if seconds <= 0:
            # Due but not claimable now: a subscription is at its in-flight limit, or another
            # dispatcher holds the rows. Our own POST ending wakes us at once; else poll.
            return 0.25, bool(self.in_flight)
        return min(seconds, self.config.sweep_seconds), False

    async def _wait(self, seconds: float, until_slot: bool) -> None:
        """Sleep until a NOTIFY / wake(), `seconds` pass, or (if until_slot) one of our POSTs ends."""
        waiters = [asyncio.create_task(self._wake.wait())]
        if until_slot:
            waiters.append(asyncio.create_task(self._slot.wait()))
        try:
            await asyncio.wait(waiters, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    # -- one delivery ------------------------------------------------------------------------------

    async def _deliver(self, row: dict[str, Any]) -> None:
        delivery_id = row["delivery_id"]
        try:
            started_at = self.clock.now()
            body = row["body"].encode()
            try:
                headers = signing.headers(str(row["event_id"]), int(time.time()), body, row["secrets"])
            except ValueError as exc:  # no valid secret: an attempt that could not be signed
                outcome = Outcome(None, "other", f"not signed: {exc}", None, 0)
            else:
                outcome = await self.poster.post(row["url"], body, headers)
            self.metrics.attempt_seconds.observe(outcome.duration_ms / 1000)
            await self._record(row, started_at, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one row's bug must not stop the daemon; its lease expires
            self.log.error("webhook_delivery_crashed", delivery_id=delivery_id, error=repr(exc))
        finally:
            self.in_flight.pop(delivery_id, None)
            self.metrics.in_flight.set(len(self.in_flight))
            self._slot.set()

    async def _record(self, row: dict[str, Any], started_at: datetime, outcome: Outcome) -> None:
        """record_attempt, retried while the database is unreachable and the lease still holds."""
        deadline = time.monotonic() + self.config.lease_seconds
        backoff = 0.2
        while True:
            try:
                status = await self._record_once(row, started_at, outcome)
                break
            except psycopg.OperationalError as exc:
                self._db_failed(exc)
                if time.monotonic() + backoff > deadline:
                    self.log.warning(
                        "webhook_attempt_unrecorded",
                        delivery_id=row["delivery_id"],
                        error=str(exc),
                        note="lease will expire; the delivery is retried",
                    )
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        self._log_outcome(row, outcome, status)

    def _log_outcome(self, row: dict[str, Any], outcome: Outcome, status: str | None) -> None:
        ctx = {
            "delivery_id": row["delivery_id"],
            "event_id": str(row["event_id"]),
            "event_type": row["event_type"],
            "subscription_id": row["subscription_id"],
            "attempt": row["attempt"],
            "status_code": outcome.status_code,
            "duration_ms": outcome.duration_ms,
        }
        if status is None:  # another dispatcher took the row after our lease ran out
            self.metrics.deliveries.labels("lease_lost").inc()
            self.log.warning("webhook_attempt_lease_lost", **ctx)
            return
        if status == "DELIVERED":
            self.metrics.deliveries.labels("delivered").inc()
            self.log.info("webhook_delivery_succeeded", **ctx)
            return
        ctx["error_class"] = outcome.error_class
        if outcome.status_code == 410:
            self.metrics.deliveries.labels("gone").inc()
            self.log.warning("webhook_subscription_disabled", reason="GONE", url=row["url"], **ctx)
        if status == "FAILED":
            self.metrics.deliveries.labels("failed").inc()
            self.log.error("webhook_delivery_failed", **ctx)
        elif status == "SKIPPED":
            self.metrics.deliveries.labels("skipped").inc()
            self.log.warning("webhook_delivery_skipped", **ctx)
        else:
            self.metrics.deliveries.labels("retry").inc()
            self.log.warning("webhook_attempt_failed", **ctx)

    # -- SQL (dispatcher/queries.sql) ---------------------------------------------------------------

    async def _claim(self, limit: int) -> list[dict[str, Any]]:
        c = self.config
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                q("claim_deliveries"),
                {
                    "dispatcher": c.name,
                    "limit": limit,
                    "lease": timedelta(seconds=c.lease_seconds),
                    "per_subscription": c.per_subscription,
                    "now": self.clock.now(),
                },
            )
            rows = await cur.fetchall()
        self._db_ok()
        return rows

    async def _record_once(self, row: dict[str, Any], started_at: datetime, o: Outcome) -> str | None:
        """Queue one outcome for the recorders; its new status once recorded (raises what the batch raised)."""
        params = {
            "delivery_id": row["delivery_id"],
            "dispatcher": self.config.name,
            "lease_token": row["lease_token"],
            "started_at": started_at,
            "duration_ms": o.duration_ms,
            "status_code": o.status_code,
            "error_class": o.error_class,
            "snippet": o.snippet,
            "retry_after": o.retry_after_seconds,
            "now": self.clock.now(),
        }
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._to_record.append((params, done))
        self._record_ready.set()
        return await done

    async def _recorder_loop(self) -> None:
        """Send queued outcomes, up to RECORD_BATCH per round trip, until cancelled at shutdown."""
        while True:
            await self._record_ready.wait()
            self._record_ready.clear()
            while self._to_record:
                batch = [(p, f) for p, f in self._to_record[:RECORD_BATCH] if not f.done()]
                del self._to_record[:RECORD_BATCH]
                if not batch:
                    continue
                try:
                    await self._record_batch(batch)
                except Exception as exc:  # noqa: BLE001 - never lose the recorder: its waiters get the error
                    self.log.error("webhook_record_batch_crashed", rows=len(batch), error=repr(exc))
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)

    async def _record_batch(self, batch: list[tuple[dict[str, Any], asyncio.Future]]) -> None:
        batch.sort(key=lambda item: item[0]["delivery_id"])  # row locks in one order across batches
        statuses: list[Any]
        try:
            statuses = await self._record_many([p for p, _ in batch])
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            statuses = await self._record_one_by_one(batch)  # a deadlock (410s disabling a subscription)
        except psycopg.OperationalError as exc:  # the database is unreachable: each waiter retries
            statuses = [exc] * len(batch)
        except psycopg.Error:
            statuses = await self._record_one_by_one(batch)  # one row's error rolled the batch back
        for (_, done), status in zip(batch, statuses, strict=True):
            if done.done():
                continue
            if isinstance(status, BaseException):
                done.set_exception(status)
            else:
                done.set_result(status)

    async def _record_one_by_one(self, batch: list[tuple[dict[str, Any], asyncio.Future]]) -> list[Any]:
        statuses: list[Any] = []
        for params, _ in batch:
            try:
                statuses.append((await self._record_many([params]))[0])
            except psycopg.Error as exc:
                statuses.append(exc)
        return statuses

    async def _record_many(self, params: list[dict[str, Any]]) -> list[str | None]:
        """record_attempt for each outcome, pipelined: one round trip, one implicit transaction."""
        async with self.pool.connection() as conn:
            cur = conn.cursor()
            await cur.executemany(q("record_attempt"), params, returning=True)
            statuses: list[str | None] = []
            while True:
                row = await cur.fetchone()
                statuses.append(row[0] if row else None)
                if not cur.nextset():
                    break
        self._db_ok()
        return statuses

    async def _next_due(self) -> datetime | None:
        """Arm the NOTIFY (webhooks.wakeup), let the commits already past their check end, then read
        the next due time: work committed after the arm notifies us, work committed before it (or
        committing while it happened) is seen by next_due_at — nothing falls between."""
        async with self.pool.connection() as conn:
            await conn.execute(q("arm_wakeup"), {"dispatcher": self.config.name})
            await conn.execute(q("await_committing"))
            cur = await conn.execute(q("next_due_at"))
            row = await cur.fetchone()
        self._db_ok()
        return row[0] if row else None

    async def _release(self, ids: list[int]) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                q("release_deliveries"), {"dispatcher": self.config.name, "ids": ids, "now": self.clock.now()}
            )
            row = await cur.fetchone()
        return int(row[0] or 0) if row else 0

    async def _beat(self, state: str = "running") -> None:
        info = {
            "state": state,
            "version": VERSION,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "in_flight": len(self.in_flight),
            "status_port": self.status_port,
            "listening": bool(self.listener and self.listener.connected.is_set()),
        }
        try:
            async with self.pool.connection(timeout=5) as conn:
                await conn.execute(
                    q("heartbeat"),
                    {"dispatcher": self.config.name, "info": Jsonb(info), "now": self.clock.now()},
                )
                cur = await conn.execute(q("backlog"), {"now": self.clock.now()})
                backlog, oldest = await cur.fetchone()
            self.metrics.backlog.set(backlog or 0)
            self.metrics.oldest_pending_age.set(oldest or 0)
            self._db_ok()
        except Exception as exc:  # noqa: BLE001 - a missed heartbeat is visible, not fatal
            self._db_failed(exc)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._beat()
            await asyncio.sleep(self.config.heartbeat_seconds)

    # -- shutdown ----------------------------------------------------------------------------------

    async def _shutdown(self) -> int:
        """Let in-flight POSTs finish (up to the HTTP timeout + 1 s), release what is left."""
        tasks = list(self.in_flight.values())
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=self.config.http_timeout + 1)
        ids = [i for i, t in self.in_flight.items() if t in pending]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if not ids:
            return 0
        try:
            released = await self._release(ids)
        except psycopg.Error as exc:  # the leases expire instead
            self._db_failed(exc)
            return 0
        self.metrics.deliveries.labels("released").inc(released)
        self.log.info("webhook_deliveries_released", count=released)
        return released

    # -- health ------------------------------------------------------------------------------------

    def _db_ok(self) -> None:
        if not self.db_ok and self.db_error is not None:
            self.log.info("webhook_dispatcher_db_recovered")
        self.db_ok, self.db_error = True, None

    def _db_failed(self, exc: BaseException) -> None:
        if self.db_ok or self.db_error is None:
            self.log.warning("webhook_dispatcher_db_failed", error=str(exc).strip()[:300])
        self.db_ok, self.db_error = False, str(exc).strip()[:300]

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.db_ok and not self._stopping.is_set(),
            "name": self.config.name,
            "version": VERSION,
            "database": "ok" if self.db_ok else (self.db_error or "not connected yet"),
            "listening": bool(self.listener and self.listener.connected.is_set()),
            "in_flight": len(self.in_flight),
            "uptime_s": round(time.time() - self.started_at, 1),
        }
