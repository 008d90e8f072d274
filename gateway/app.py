"""The ASGI apps: the API (PostgREST v13's contract over one schema) and the admin port.

Per request: verify the JWT; route the path; plan the statement (gateway.plan, pure, with
gateway.negotiate for Accept/Prefer); run it in one transaction (gateway.execute); answer with
PostgREST's status, headers and body. gateway.edge handles what comes before routing (request id,
size limits, CORS, access log).
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable, Sequence

from psycopg import sql
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import errors, openapi, plan, sqlbuild
from gateway.auth import AuthResult
from gateway.edge import RequestContext
from gateway.errors import JSON_CT, ApiError
from gateway.execute import Executor, GatewayConfig
from gateway.negotiate import OPENAPI_MIME, negotiate, parse_prefs
from gateway.plan import Ctx
from gateway.schema import SchemaCache

MUTATING = ("POST", "PATCH", "PUT", "DELETE")
PLAN_CACHE_SIZE = 4096  # plans of bodiless requests kept per process (and per schema cache)


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


class Gateway(Executor):
    """The runtime (gateway.execute) plus HTTP: `handle` answers one request.

    A GET/HEAD/OPTIONS is a pure function of its path, query string, negotiation headers and the
    schema cache (gateway.plan), so its plan, with the statement rendered to text, is kept and
    reused by an identical request until the cache is reloaded: no parsing, no building, no
    composing then. Planning errors are never kept (they are raised again each time).
    """

    _plans: dict[tuple, plan.Plan | plan.Options]
    _plans_of: SchemaCache | None = None

    def _planned(
        self, cache: SchemaCache, key: tuple, build: Callable[[], plan.Plan | plan.Options]
    ) -> plan.Plan | plan.Options:
        if self._plans_of is not cache:  # a reload: plans of the old cache are forgotten
            self._plans, self._plans_of = {}, cache
        found = self._plans.get(key)
        if found is None:
            found = build()
            if isinstance(found, plan.Plan):
                found.built = found.built.rendered()
            if len(self._plans) >= PLAN_CACHE_SIZE:
                del self._plans[next(iter(self._plans))]  # the oldest
            self._plans[key] = found
        return found

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
            return await self._answer(request, ctx, negotiated, self._plan_read(request, cache, name))
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

    def _plan_read(self, request: Request, cache: SchemaCache, name: str) -> plan.Plan:
        headers = request.headers
        method, qs = request.method, request.scope.get("query_string", b"")
        accept, rng, prefer = headers.get("accept"), headers.get("range"), headers.getlist("prefer")

        def build() -> plan.Plan:
            return plan.plan_read(
                cache,
                name,
                method=method,
                query_string=qs,
                accept=accept,
                range_header=rng,
                prefer=prefer,
                db_max_rows=self.config.db_max_rows,
            )

        planned = self._planned(cache, ("r", name, method, qs, accept, rng, *prefer), build)
        assert isinstance(planned, plan.Plan)
        return planned

    async def _rpc(
        self, request: Request, ctx: Ctx, cache: SchemaCache, name: str, negotiated: bool
    ) -> Response:
        method, headers = request.method, request.headers
        qs = request.scope.get("query_string", b"")
        accept, rng, prefer = headers.get("accept"), headers.get("range"), headers.getlist("prefer")
        content_type = headers.get("content-type")
        body = await self._body(request) if method == "POST" else None

        def build() -> plan.Plan | plan.Options:
            return plan.plan_rpc(
                cache,
                name,
                method=method,
                query_string=qs,
                accept=accept,
                range_header=rng,
                prefer=prefer,
                content_type=content_type,
                body=body,
                db_max_rows=self.config.db_max_rows,
            )

        if method == "POST":  # a body: planned each time
            planned = build()
        else:
            planned = self._planned(cache, ("f", name, method, qs, accept, rng, content_type, *prefer), build)
        if isinstance(planned, plan.Options):
            return _options(planned.allow)
        return await self._answer(request, ctx, negotiated, planned)

    async def _answer(self, request: Request, ctx: Ctx, negotiated: bool, planned: plan.Plan) -> Response:
        ctx.timezone = planned.prefs.timezone
        row = await self.run(ctx, read_only=planned.read_only, built=planned.built, single=planned.single)
        extra = [("Content-Location", planned.location)] if planned.location else []
        return self._result(request, row, planned, negotiated=negotiated, extra=extra)

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

    def _result(
        self,
        request: Request,
        row: tuple,
        planned: plan.Plan,
        *,
        negotiated: bool,
        extra: list[tuple[str, str]],
    ) -> Response:
        rng, prefs, media, void = planned.rng, planned.prefs, planned.media, planned.void
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


def _options(allow: str) -> Response:
    return make_response(200, [("Allow", allow)])


# -- ASGI plumbing ------------------------------------------------------------------------------------


class _Endpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.gateway.handle(Request(scope, receive))
        await response(scope, receive, send)


class ApiApp:
    """The API as a bare ASGI app: gateway.edge's RequestContext, then the gateway, for every path
    and method (no framework router or exception middleware in between: the gateway answers every
    error itself). The lifespan starts and stops the runtime; `state.gateway` is that runtime."""

    def __init__(self, gateway: Gateway, edge: RequestContext) -> None:
        self.state = State({"gateway": gateway})
        self.gateway = gateway
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.edge(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: not served
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


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
    slow_query_ms: float | None = None,  # None: waybill's setting (WAYBILL_SLOW_QUERY_MS)
    db_max_rows: int | None = None,
    prepare_threshold: int | None = 5,
) -> ApiApp:
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
            **({} if slow_query_ms is None else {"slow_query_ms": slow_query_ms}),
            db_max_rows=db_max_rows,
            prepare_threshold=prepare_threshold,
        )
    )

    edge = RequestContext(
        _Endpoint(gateway),
        max_header_bytes=gateway.config.max_header_bytes,
        max_body_bytes=gateway.config.max_body_bytes,
    )
    app = ApiApp(gateway, edge)
    return app


def create_admin_app(gateway: Gateway, *, peers_ready: Callable[[], bool] | None = None) -> Starlette:
    """`GET /live`: 200 while the process serves; `GET /ready`: 200 once the pool and cache are ready
    (and, with several workers, once `peers_ready()` says every worker has loaded its cache)."""

    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
        ok = (peers_ready is None or peers_ready()) and await gateway.ready()
        return Response(status_code=200 if ok else 503)

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
