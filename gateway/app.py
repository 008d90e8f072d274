"""The ASGI apps: the API (PostgREST v13's contract over one schema) and the admin port.

Per request: verify the JWT; parse the path, headers and query string as PostgREST does; then on one
pooled connection (logged in as `authenticator`) run one transaction:

    BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY | READ WRITE
    select set_config('search_path', ...), set_config('role', ...), ...   -- one batch
    <the main statement: rows, count, json body, response.* settings>
    COMMIT (or ROLLBACK), the whole transaction again on 40001

and answer with PostgREST's status, headers and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import errors, openapi, query, sqlbuild
from gateway.auth import AuthResult, Verifier
from gateway.edge import RequestContext
from gateway.errors import JSON_CT, ApiError
from gateway.negotiate import JSON_MIME, OPENAPI_MIME, Media, Prefs, negotiate, parse_prefs
from gateway.schema import Listener, Relation, Routine, SchemaCache, load
from waybill.log import get_logger

MUTATING = ("POST", "PATCH", "PUT", "DELETE")


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
    slow_query_ms: float = 500.0  # the plan's application-level slow-query warning (db_query_slow)
    server_host: str = "127.0.0.1"
    server_port: int = 3000
    db_max_rows: int | None = None  # PostgREST's db-max-rows: cap on the rows a read returns
    prepare_threshold: int | None = 5  # psycopg's automatic preparation (None: never prepare)
    max_body_bytes: int = 1024 * 1024  # larger request bodies: 413
    max_header_bytes: int = 16 * 1024  # larger request headers (names + values): 431


def _guc_overrides(
    status: int, headers: list[tuple[str, str]], guc_headers: str | None, guc_status: str | None
) -> tuple[int, list[tuple[str, str]]]:
    """response.status / response.headers set by SQL: they win over the gateway's own."""
    if guc_status is not None:
        m = re.match(r"^\d+", guc_status)
        if not m or not 100 <= int(m.group(0)) <= 999:
            raise errors.guc_status_error()
        status = int(m.group(0))
    if guc_headers is not None:
        try:
            items = json.loads(guc_headers)
            if not isinstance(items, list):
                raise ValueError
            extra = []
            for item in items:
                if not isinstance(item, dict) or len(item) != 1:
                    raise ValueError
                ((k, v),) = item.items()
                if not isinstance(v, str):
                    raise ValueError
                extra.append((k, v))
        except ValueError:
            raise errors.guc_headers_error() from None
        names = {k.lower() for k, _ in extra}
        headers = extra + [(k, v) for k, v in headers if k.lower() not in names]
    return status, headers


def make_response(status: int, headers: Sequence[tuple[str, str]], body: bytes = b"") -> Response:
    resp = Response(content=body, status_code=status)
    raw = [(k, v) for k, v in resp.raw_headers if k == b"content-length"]
    raw += [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in headers]
    resp.raw_headers = raw
    return resp


def error_response(err: ApiError) -> Response:
    headers = err.response_headers()
    if err.status == 503 and not any(k.lower() == "retry-after" for k, _ in headers):
        headers.append(("Retry-After", "0"))
    return make_response(err.status, headers, err.body())


@dataclass
class Ctx:
    """What the SQL side sees of the request, and what the access log says of it."""

    auth: AuthResult
    method: str
    path: str
    headers_json: str
    cookies_json: str
    timezone: str | None = None  # Prefer: timezone=..., applied with set_config
    wait_disconnect: Callable[[], Awaitable[None]] | None = None  # returns when the client has gone


class Gateway:
    """The runtime: pool, schema cache, listener, JWT verifier; `handle` answers one request."""

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

    # -- one request ----------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except ApiError as err:
            request.state.error_code = err.code
            return error_response(err)
        except Exception as exc:  # noqa: BLE001 - never a traceback in a response
            err = errors.internal_error()
            request.state.error_code = err.code
            self.log.error(
                "http_request_failed",
                error_code=err.code,
                error=repr(exc),
                traceback=traceback.format_exc(),
                method=request.method,
                path=request.url.path,
            )
            return error_response(err)

    async def _handle(self, request: Request) -> Response:
        auth = self.verifier.authenticate(request.headers.get("authorization"))
        request.state.role = auth.role
        cache = self.cache
        if cache is None:
            raise errors.no_schema_cache()
        method = request.method
        parts = request.scope["path"].split("/")[1:]
        if parts == [""]:
            resource = ("root", "")
        elif len(parts) == 1:
            resource = ("relation", parts[0])
        elif len(parts) == 2 and parts[0] == "rpc":
            resource = ("rpc", parts[1])
        else:
            raise errors.invalid_resource_path()
        profile = request.headers.get("content-profile" if method in MUTATING else "accept-profile")
        if profile is not None and profile != self.config.schema:
            raise errors.unacceptable_schema(profile, [self.config.schema])
        negotiated = profile is not None
        ctx = self._ctx(request, auth)
        kind, name = resource
        if kind == "root":
            if method in ("GET", "HEAD"):
                return await self._openapi(request, ctx, cache)
            if method == "OPTIONS":
                return _options("OPTIONS,GET,HEAD")
            raise errors.unsupported_method(method)
        if kind == "rpc":
            if method not in ("GET", "HEAD", "POST", "OPTIONS"):
                raise errors.invalid_rpc_method(method)
            return await self._rpc(request, ctx, cache, name, negotiated)
        if method in ("GET", "HEAD"):
            return await self._read(request, ctx, cache, name, negotiated)
        if method == "OPTIONS":
            if name not in cache.relations:
                raise errors.table_not_found(cache.schema, name, cache.relations)
            return _options("OPTIONS,GET,HEAD")
        if method in MUTATING:
            raise errors.not_implemented(
                f"{method} on a relation: the gateway serves reads of relations; write through a function in "
                f"'{self.config.schema}'"
            )
        raise errors.unsupported_method(method)

    def _ctx(self, request: Request, auth: AuthResult) -> Ctx:
        headers: dict[str, str] = {}
        for k, v in request.scope["headers"]:
            key = k.decode("latin-1").lower()
            if key != "cookie":
                headers[key] = v.decode("latin-1")
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()

        async def wait_disconnect() -> None:
            # Called once the body is read: what remains for receive() is the client going away.
            while (await request.receive())["type"] != "http.disconnect":
                pass

        return Ctx(
            wait_disconnect=wait_disconnect,
            auth=auth,
            method=request.method,
            path=raw_path.decode("latin-1"),
            headers_json=json.dumps(headers, separators=(",", ":"), ensure_ascii=False),
            cookies_json=json.dumps(dict(request.cookies), separators=(",", ":"), ensure_ascii=False),
        )

    # -- reads of relations ---------------------------------------------------------------------------

    async def _read(
        self, request: Request, ctx: Ctx, cache: SchemaCache, name: str, negotiated: bool
    ) -> Response:
        qp = query.parse(request.scope.get("query_string", b""), is_rpc_read=False)
        rng = query.top_range(request.method, request.headers.get("range"), qp)
        rng = query.cap_range(rng, self.config.db_max_rows)
        prefs = self._prefs(request, ctx)
        rel = cache.relations.get(name)
        if rel is None:
            raise errors.table_not_found(cache.schema, name, cache.relations)
        _refuse_unserved_columns(cache, rel, qp)
        media = negotiate(request.headers.get("accept"))
        built = sqlbuild.read_relation(
            cache.schema,
            name,
            select=qp.select,
            filters=qp.filters,
            logic=qp.logic,
            order=qp.order,
            rng=rng,
            count=prefs.count,
            single=media.kind == "object",
            strip_nulls=media.strip_nulls,
            column_types={c.name: c.type for c in rel.columns},
        )
        row = await self.run(ctx, read_only=True, built=built, single=media.kind == "object")
        location = f"/{name}" + (f"?{qp.canonical}" if qp.canonical else "")
        return self._result(
            request,
            row,
            rng=rng,
            prefs=prefs,
            media=media,
            negotiated=negotiated,
            void=False,
            extra=[("Content-Location", location)],
        )

    # -- functions ------------------------------------------------------------------------------------

    async def _rpc(
        self, request: Request, ctx: Ctx, cache: SchemaCache, name: str, negotiated: bool
    ) -> Response:
        method = request.method
        is_read = method in ("GET", "HEAD", "OPTIONS")
        qp = query.parse(request.scope.get("query_string", b""), is_rpc_read=is_read)
        rng = query.cap_range(
            query.top_range(method, request.headers.get("range"), qp), self.config.db_max_rows
        )
        body_text: str | None = None
        body_is_object = True
        is_post_json = False
        if method == "POST":
            keys, body_text, body_is_object, is_post_json = await self._payload(request, qp)
        else:
            keys = set(qp.args)
        prefs = self._prefs(request, ctx)
        routine, whole_body = self._find_routine(
            cache, name, keys, is_post_json=is_post_json, is_post=method == "POST"
        )
        if method == "OPTIONS":
            return _options("OPTIONS,POST" if routine.volatile else "OPTIONS,GET,HEAD,POST")
        _refuse_unserved_routine(cache, routine)
        if whole_body:
            raise errors.not_implemented(
                f"a single unnamed parameter taking the whole body ({routine.name}) is not served by the gateway"
            )
        media = negotiate(request.headers.get("accept"))
        used = [p for p in routine.params if p.name in keys]
        source_params: list[Any] = []
        source = sqlbuild.call_sql(
            routine,
            used,
            source_params,
            get_args=qp.args if method != "POST" else None,
            body=body_text,
            body_is_object=body_is_object,
            whole_body=whole_body,
        )
        single = media.kind == "object"
        built = sqlbuild.call_routine(
            routine,
            source,
            source_params,
            select=qp.select,
            filters=qp.filters,
            logic=qp.logic,
            order=qp.order,
            rng=rng,
            count=prefs.count,
            single=single,
            strip_nulls=media.strip_nulls,
        )
        read_only = method != "POST" or not routine.volatile
        row = await self.run(ctx, read_only=read_only, built=built, single=single)
        return self._result(
            request,
            row,
            rng=rng,
            prefs=prefs,
            media=media,
            negotiated=negotiated,
            void=routine.void,
            extra=[],
        )

    async def _payload(self, request: Request, qp: query.QueryParams) -> tuple[set[str], str, bool, bool]:
        """(argument names, JSON text, is it an object, was it JSON) of a POST body."""
        raw = await self._body(request)
        ctype = (request.headers.get("content-type") or JSON_MIME).split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            pairs = parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
            values = dict(pairs)
            return set(values), json.dumps(values), True, False
        if ctype not in (JSON_MIME, "*/*") and not ctype.endswith("+json"):
            if ctype in ("text/plain", "text/xml", "application/octet-stream"):
                return set(), "{}", True, False
            raise errors.invalid_body(f"Content-Type not acceptable: {ctype}")
        if raw.strip() == b"":
            text, value = "{}", {}
        else:
            try:
                text = raw.decode("utf-8")
                value = json.loads(text, parse_constant=_reject_constant)
            except ValueError:
                raise errors.invalid_body("Empty or invalid json") from None
            except RecursionError:  # nested deeper than Python's recursion limit (~1,000 levels)
                raise errors.invalid_body("Empty or invalid json", "JSON nested too deeply") from None
        if isinstance(value, dict):
            keys, is_object = set(value), True
        elif isinstance(value, list):
            if value and isinstance(value[0], dict):
                keys = set(value[0])
                if not all(isinstance(v, dict) and set(v) == keys for v in value):
                    raise errors.invalid_body("All object keys must match")
            elif value:
                raise errors.invalid_body("All object keys must match")
            else:
                keys = set()
            is_object = False
        else:
            keys, text, is_object = set(), "[]", False
        if qp.columns is not None:
            keys = set(qp.columns)
        return keys, text, is_object, True

    async def _body(self, request: Request) -> bytes:
        """The request body, refused with 413 as soon as it exceeds max_body_bytes (chunked too)."""
        limit = self.config.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise errors.payload_too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _find_routine(
        self, cache: SchemaCache, name: str, keys: set[str], *, is_post_json: bool, is_post: bool
    ) -> tuple[Routine, bool]:
        """PostgREST's overload resolution: by the SET of argument names; else the single unnamed one."""
        candidates = cache.routines.get(name, [])
        matches, fallbacks = [], []
        for r in candidates:
            if _params_match(r, keys):
                matches.append(r)
            elif (
                is_post_json
                and len(r.params) == 1
                and r.params[0].name == ""
                and r.params[0].type in ("json", "jsonb")
            ):
                fallbacks.append(r)
        if len(matches) == 1:
            return matches[0], False
        if len(matches) > 1:
            raise errors.ambiguous_rpc([r.signature for r in matches])
        if len(fallbacks) == 1:
            return fallbacks[0], True
        if len(fallbacks) > 1:
            raise errors.ambiguous_rpc([r.signature for r in fallbacks])
        raise errors.no_rpc(
            cache.schema,
            name,
            keys,
            is_post_json=is_post and is_post_json,
            all_names=cache.routines,
            overloads=[[p.name for p in r.params] for r in candidates],
        )

    # -- GET / ------------------------------------------------------------------------------------------

    async def _openapi(self, request: Request, ctx: Ctx, cache: SchemaCache) -> Response:
        negotiate(request.headers.get("accept"), root=True)
        built = sqlbuild.Built(sql.SQL(openapi.ACCESSIBLE_SQL), {"schema": cache.schema})  # type: ignore[arg-type]
        row = await self.run(ctx, read_only=True, built=built, single=False)
        doc = openapi.document(
            cache, json.loads(row[0]), json.loads(row[1]), self.config.server_host, self.config.server_port
        )
        body = b"" if request.method == "HEAD" else json.dumps(doc, separators=(",", ":")).encode()
        return make_response(200, [("Content-Type", f"{OPENAPI_MIME}; charset=utf-8")], body)

    # -- the transaction ------------------------------------------------------------------------------

    async def run(self, ctx: Ctx, *, read_only: bool, built: sqlbuild.Built, single: bool) -> tuple:
        if self.pool is None or self.cache is None:
            raise errors.no_schema_cache()
        role = ctx.auth.role
        known = role in self.cache.roles  # a role the login role may switch to (at the last load)
        role_settings = self.cache.roles.get(role, ())
        setcfg_sql = sqlbuild.set_config(role_settings, ctx.timezone)
        setcfg = [
            self.search_path,
            role,
            json.dumps(ctx.auth.claims, separators=(",", ":"), sort_keys=True, ensure_ascii=False),
            ctx.method,
            ctx.path,
            ctx.headers_json,
            ctx.cookies_json,
            *sqlbuild.setting_params(role_settings, ctx.timezone),
        ]
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

        psycopg prepares a statement it has seen `prepare_threshold` times, and in a pipeline it
        records the statement as prepared when it queues the Parse. If an earlier statement of the
        pipeline fails (set_config('role') naming a role that cannot be set), the server skips that
        Parse but psycopg keeps believing it was done: later requests of the same shape would fail
        with 26000 "prepared statement does not exist". So only a role known to be settable (the
        schema cache lists the roles the login role may become) goes into the one-round-trip
        pipeline; any other role gets its settings first, alone and unprepared, and the statement
        only if they succeeded. Should a known role vanish between two loads, the failed pipeline's
        connection is closed (the pool replaces it) rather than left out of step.
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
        task = asyncio.ensure_future(work)
        if ctx.wait_disconnect is None:
            return await task
        watcher = asyncio.ensure_future(ctx.wait_disconnect())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done() and not task.done():
                self.log.warning("http_client_disconnected", method=ctx.method, path=ctx.path)
                with contextlib.suppress(Exception):
                    await conn.cancel_safe(timeout=5.0)
            return await task
        finally:
            watcher.cancel()

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

    def _prefs(self, request: Request, ctx: Ctx) -> Prefs:
        cache = self.cache
        prefs = parse_prefs(request.headers.getlist("prefer"), cache.timezones if cache else ())
        ctx.timezone = prefs.timezone
        return prefs

    def _result(
        self,
        request: Request,
        row: tuple,
        *,
        rng: query.Range,
        prefs: Prefs,
        media: Media,
        negotiated: bool,
        void: bool,
        extra: list[tuple[str, str]],
    ) -> Response:
        total, page_total, body, guc_headers, guc_status = row
        lower = rng.offset
        upper = lower + page_total - 1
        if total is not None and total != 0 and lower <= upper:
            content_range = f"{lower}-{upper}/{total}"
        elif total is None and lower <= upper:
            content_range = f"{lower}-{upper}/*"
        else:
            content_range = f"*/{'*' if total is None else total}"
        status = 200
        if total is not None:
            if lower > total:
                status = 416
            elif (1 + upper - lower) < total:
                status = 206
        headers = [("Content-Range", content_range), *prefs.applied()]
        payload = body.encode()
        if void:
            status, payload = 204, b""
        else:
            headers += extra
            headers.append(("Content-Type", media.content_type))
            if negotiated:
                headers.append(("Content-Profile", self.config.schema))
            if status == 416:
                payload = errors.out_of_bounds(lower, total).body()
        status, headers = _guc_overrides(status, headers, guc_headers, guc_status)
        if request.method == "HEAD":
            payload = b""
        return make_response(status, headers, payload)


def _refuse_unserved_columns(cache: SchemaCache, rel: Relation, qp: query.QueryParams) -> None:
    """Computed columns and data representations: PostgREST serves them, the gateway refuses them
    (PGRST127) rather than answer wrongly (raw domain values instead of their representation)."""
    columns = {c.name: c for c in rel.columns}
    named = query.fields_of(qp)
    computed = sorted(f for f in named if f not in columns and f in cache.computed.get(rel.name, ()))
    if computed:
        raise errors.not_implemented(
            f"computed columns ({', '.join(computed)} of {rel.name}) are not served by the gateway"
        )
    shown = set(named)
    if any(it.field == "*" for it in qp.select):
        shown |= set(columns)
    represented = sorted(f for f in shown if f in columns and columns[f].type in cache.represented_types)
    if represented:
        raise errors.not_implemented(
            f"data representations (domain casts) of {', '.join(represented)} in {rel.name} "
            "are not served by the gateway"
        )


def _refuse_unserved_routine(cache: SchemaCache, routine: Routine) -> None:
    types = {p.type for p in routine.params} | {routine.return_type}
    represented = sorted(types & cache.represented_types)
    if represented:
        raise errors.not_implemented(
            f"data representations (domain casts) of {', '.join(represented)} in {routine.name} "
            "are not served by the gateway"
        )
    if any(p.variadic for p in routine.params):
        raise errors.not_implemented(f"VARIADIC functions ({routine.name}) are not served by the gateway")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _params_match(r: Routine, keys: set[str]) -> bool:
    if not r.params:
        return not keys
    required = {p.name for p in r.params if p.required}
    optional = {p.name for p in r.params if not p.required}
    if not optional:
        return keys == required
    if not required:
        return keys <= optional
    return keys - optional == required


def _options(allow: str) -> Response:
    return make_response(200, [("Allow", allow)])


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


# -- ASGI plumbing ------------------------------------------------------------------------------------


class _Endpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.gateway.handle(Request(scope, receive))
        await response(scope, receive, send)


def create_app(
    db_url: str,
    jwt_secret: str,
    *,
    pool_size: int = 10,
    schema: str = "api",
    anon_role: str = "anon",
    jwt_aud: str | None = None,
    server_host: str = "127.0.0.1",
    server_port: int = 3000,
    pool_timeout: float = 10.0,
    slow_query_ms: float = 500.0,
    db_max_rows: int | None = None,
    prepare_threshold: int | None = 5,
) -> Starlette:
    """The API app; its Gateway (pool, cache, listener) starts and stops with the app's lifespan.

    `app.state.gateway` is the runtime; `create_admin_app(app.state.gateway)` serves /live and /ready.
    """
    gateway = Gateway(
        GatewayConfig(
            db_url=db_url,
            jwt_secret=jwt_secret,
            schema=schema,
            anon_role=anon_role,
            pool_size=pool_size,
            pool_timeout=pool_timeout,
            jwt_aud=jwt_aud,
            server_host=server_host,
            server_port=server_port,
            slow_query_ms=slow_query_ms,
            db_max_rows=db_max_rows,
            prepare_threshold=prepare_threshold,
        )
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=[Route("/{path:path}", _Endpoint(gateway))],  # an ASGI endpoint: every method
        middleware=[
            Middleware(
                RequestContext,
                max_header_bytes=gateway.config.max_header_bytes,
                max_body_bytes=gateway.config.max_body_bytes,
            )
        ],
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    return app


def create_admin_app(gateway: Gateway) -> Starlette:
    """`GET /live`: 200 while the process serves; `GET /ready`: 200 once the pool and cache are ready."""

    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
        return Response(status_code=200 if await gateway.ready() else 503)

    return Starlette(routes=[Route("/live", live), Route("/ready", ready)])


__all__ = [
    "JSON_CT",
    "Gateway",
    "GatewayConfig",
    "create_admin_app",
    "create_app",
    "negotiate",
    "parse_prefs",
]
