"""Execution: the pool, the schema cache and its listener, and the per-request transaction.

On one pooled connection (logged in as `authenticator`), per request:

    BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY | READ WRITE
    select set_config('search_path', ...), set_config('role', ...), ..., <the role's settings>
    <the main statement (gateway.plan): rows, count, json body, response.* settings>
    COMMIT (or ROLLBACK), the whole transaction again on 40001

cancelled on the server if the client goes away meanwhile. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway import errors, plan, sqlbuild
from gateway.auth import Verifier
from gateway.plan import Ctx
from gateway.schema import Listener, SchemaCache, load
from waybill.log import get_logger
from waybill.settings import get_settings


@dataclass
class GatewayConfig:
    db_url: str
    jwt_secret: str
    schema: str = "api"
    anon_role: str = "anon"
    extra_search_path: tuple[str, ...] = ("public",)
    pool_size: int = 10
    pool_timeout: float = 10.0
    jwt_aud: str | None = None
    channel: str = "pgrst"
    max_attempts: int = 5  # one try + retries on serialization_failure (40001)
    # The plan's application-level slow-query warning (db_query_slow): waybill/settings.py is its
    # one home (WAYBILL_SLOW_QUERY_MS, 500 ms by default).
    slow_query_ms: float = field(default_factory=lambda: get_settings().slow_query_ms)
    server_host: str = "127.0.0.1"
    server_port: int = 3000
    db_max_rows: int | None = None  # PostgREST's db-max-rows: cap on the rows a read returns
    prepare_threshold: int | None = 5  # psycopg's automatic preparation (None: never prepare)
    max_body_bytes: int = 1024 * 1024  # larger request bodies: 413
    max_header_bytes: int = 16 * 1024  # larger request headers (names + values): 431


class Executor:
    """The runtime: pool, schema cache, listener, JWT verifier; `run` executes one planned statement."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.verifier = Verifier(config.jwt_secret, config.anon_role, config.jwt_aud)
        self.cache: SchemaCache | None = None
        self.pool: AsyncConnectionPool | None = None
        self.listener: Listener | None = None
        self.search_path = ", ".join(
            '"' + s.replace('"', '""') + '"' for s in (config.schema, *config.extra_search_path)
        )
        self._reload_lock = asyncio.Lock()
        self._loader: asyncio.Task | None = None
        self.on_loaded: Callable[[], None] | None = None  # called after each successful cache load
        self.log = get_logger()

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self.pool = AsyncConnectionPool(
            self.config.db_url,
            min_size=self.config.pool_size,
            max_size=self.config.pool_size,
            kwargs={
                "autocommit": True,
                "application_name": "gateway",
                "prepare_threshold": self.config.prepare_threshold,
            },
            timeout=self.config.pool_timeout,
            open=False,
            name="gateway",
        )
        await self.pool.open(wait=False)
        self.listener = Listener(
            _with_app_name(self.config.db_url, "gateway-listener"), self.config.channel, self.reload
        )
        self.listener.start()
        self._loader = asyncio.create_task(self._initial_load(), name="gateway-initial-load")

    async def stop(self) -> None:
        for task in (self._loader,):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.listener is not None:
            await self.listener.stop()
        if self.pool is not None:
            await self.pool.close()

    async def _initial_load(self) -> None:
        delay = 0.1
        while self.cache is None:
            if await self.reload():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def reload(self) -> bool:
        """(Re)load the schema cache; the old one keeps serving until the new one is complete."""
        async with self._reload_lock:
            start = time.perf_counter()
            try:
                # Its own short-lived connection: fails fast when the database is away, and never
                # waits behind request traffic for a pooled one.
                async with await psycopg.AsyncConnection.connect(
                    _with_app_name(self.config.db_url, "gateway-schema-cache"),
                    autocommit=True,
                    connect_timeout=10,
                ) as conn:
                    cache = await load(conn, self.config.schema)
            except Exception as exc:  # noqa: BLE001 - logged; the caller retries
                self.log.error("schema_cache_load_failed", error=str(exc), schema=self.config.schema)
                return False
            self.cache = cache
            if self.on_loaded is not None:
                self.on_loaded()
            self.log.info(
                "schema_cache_load_succeeded",
                schema=self.config.schema,
                functions=sum(len(v) for v in cache.routines.values()),
                relations=len(cache.relations),
                duration_ms=round((time.perf_counter() - start) * 1000, 3),
            )
            return True

    async def ready(self) -> bool:
        if self.cache is None or self.pool is None:
            return False
        try:
            async with self.pool.connection(timeout=2.0) as conn:
                await conn.execute("select 1")
        except Exception:  # noqa: BLE001 - not ready, whatever the reason
            return False
        return True

    async def run(self, ctx: Ctx, *, read_only: bool, built: sqlbuild.Built, single: bool) -> tuple:
        if self.pool is None or self.cache is None:
            raise errors.no_schema_cache()
        known = ctx.auth.role in self.cache.roles  # a role the login role may become (last load)
        setcfg_sql, setcfg = plan.request_settings(self.cache, self.search_path, ctx)
        attempt = 0
        try:
            async with self.pool.connection() as conn:
                while True:
                    attempt += 1
                    started = time.perf_counter()
                    try:
                        work = self._transaction(conn, read_only, setcfg_sql, setcfg, built, single, known)
                        row = await self._unless_client_leaves(ctx, conn, work)
                        self._warn_if_slow(ctx, started)
                        return row
                    except psycopg.Error as exc:
                        await _rollback(conn)
                        if exc.sqlstate == "40001" and attempt < self.config.max_attempts:
                            self.log.warning("db_transaction_retried", attempt=attempt, sqlstate=exc.sqlstate)
                            continue
                        raise errors.from_pg_error(exc, ctx.auth.authed) from exc
        except PoolTimeout:
            raise errors.pool_timeout() from None
        except psycopg.OperationalError as exc:
            if exc.sqlstate:
                raise errors.from_pg_error(exc, ctx.auth.authed) from exc
            raise errors.connection_error(str(exc) or None) from exc

    async def _transaction(
        self,
        conn: psycopg.AsyncConnection,
        read_only: bool,
        setcfg_sql: sql.Composable,
        setcfg: list[Any],
        built: sqlbuild.Built,
        single: bool,
        known_role: bool,
    ) -> tuple:
        """BEGIN, the settings, the statement, COMMIT.

        psycopg prepares a statement it has seen `prepare_threshold` times on a connection. When
        set_config('role') fails inside the one-round-trip pipeline (a token naming a role that
        cannot be set), the server skips the rest of the pipeline, Parse included, while psycopg's
        record of what it prepared can go out of step with the server: later requests of the same
        shape then fail with 26000 "prepared statement _pg3_N does not exist" (reproduced by
        tests/gateway/test_security.py). So only a role the schema cache lists as settable goes
        into the pipeline; any other role gets BEGIN and its settings first, unpipelined and
        unprepared, and the statement only if they succeeded (one more round trip, for bad tokens
        and roles created since the last load). Should a listed role become unsettable before the
        next load, a pipeline that failed before its statement ran closes its connection (the
        pool replaces it) rather than risk it.
        """
        if not known_role:
            await conn.execute(sqlbuild.BEGIN[read_only], prepare=False)
            await conn.execute(setcfg_sql, setcfg, prepare=False)
            cur = await conn.execute(built.query, built.params)
        else:
            settings_cur: psycopg.AsyncCursor | None = None
            try:
                # One round trip: BEGIN, the settings, the statement (and COMMIT, unless the
                # result must be checked first). An error skips the rest of the pipeline.
                async with conn.pipeline():
                    await conn.execute(sqlbuild.BEGIN[read_only], prepare=False)
                    settings_cur = await conn.execute(setcfg_sql, setcfg)
                    cur = await conn.execute(built.query, built.params)
                    if not single:
                        await conn.execute("commit", prepare=False)
            except psycopg.Error:
                settings_ran = settings_cur is not None and settings_cur.pgresult is not None
                if not settings_ran and not conn.closed:
                    await conn.close()
                raise
        row = await cur.fetchone()
        if single or not known_role:
            if single and row is not None and row[1] != 1:
                await conn.execute("rollback", prepare=False)
                raise errors.singularity_error(row[1])
            await conn.execute("commit", prepare=False)
        return row  # type: ignore[return-value]

    async def _unless_client_leaves(
        self, ctx: Ctx, conn: psycopg.AsyncConnection, work: Coroutine[Any, Any, tuple]
    ) -> tuple:
        """Run `work`; if the client disconnects first, cancel the statement on the server (its
        backend must not keep burning CPU for nobody) and let `work` fail with 57014."""
        if ctx.wait_disconnect is None:
            return await work
        # One watcher task (the work itself runs in this task): should the client go away first,
        # it cancels the statement on the server, and `work` fails with 57014.
        watcher = asyncio.ensure_future(self._cancel_when_gone(ctx, conn))
        try:
            return await work
        finally:
            watcher.cancel()

    async def _cancel_when_gone(self, ctx: Ctx, conn: psycopg.AsyncConnection) -> None:
        assert ctx.wait_disconnect is not None
        await ctx.wait_disconnect()
        self.log.warning("http_client_disconnected", method=ctx.method, path=ctx.path)
        with contextlib.suppress(Exception):
            await conn.cancel_safe(timeout=5.0)

    def _warn_if_slow(self, ctx: Ctx, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        if elapsed_ms > self.config.slow_query_ms:
            self.log.warning(
                "db_query_slow",
                duration_ms=round(elapsed_ms, 3),
                threshold_ms=self.config.slow_query_ms,
                method=ctx.method,
                path=ctx.path,
            )


async def _rollback(conn: psycopg.AsyncConnection) -> None:
    if conn.closed:
        return
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        with contextlib.suppress(psycopg.Error):
            await conn.execute("rollback", prepare=False)


def _with_app_name(url: str, name: str) -> str:
    sep = "&" if "?" in url else "?"
    if "://" not in url:  # a key=value conninfo
        return f"{url} application_name={name}"
    return f"{url}{sep}application_name={name}"
