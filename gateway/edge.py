"""What happens to every request before routing, and to every response after it.

- X-Request-Id: the client's first well-formed one, or a new UUID; exactly one such header is left
  in the request (so the SQL side's request.headers and the gateway's logs name the same id), and
  it is echoed in the response; bound into every log line of the request.
- Size limits: request headers over `max_header_bytes` (names + values) -> 431; a Content-Length
  over `max_body_bytes` -> 413 before the body is read (the body reader enforces it for chunked).
- CORS exactly as PostgREST v13 (wai-cors with its policy): a preflight (OPTIONS + Origin +
  Access-Control-Request-Method) is answered here, 200 without a body; any other request with an
  Origin gets Access-Control-Allow-Origin: * and Access-Control-Expose-Headers.
- One access log line per request (http_request_completed).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import errors
from gateway.errors import ApiError
from waybill.log import get_logger

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
CORS_METHODS = "GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD"
CORS_SIMPLE_HEADERS = ("Accept", "Accept-Language", "Content-Language")
CORS_EXPOSE = (
    "Content-Encoding, Content-Location, Content-Range, Content-Type, "
    "Date, Location, Server, Transfer-Encoding, Range-Unit"
)
CORS_MAX_AGE = "86400"


def request_id(headers: list[tuple[bytes, bytes]]) -> tuple[str, list[tuple[bytes, bytes]]]:
    """(the id, the headers with exactly one X-Request-Id): the first well-formed one, or a new one."""
    given = next((v for k, v in headers if k == b"x-request-id"), None)
    rid = given.decode("latin-1") if given is not None else ""
    if not _REQUEST_ID.match(rid):
        rid = str(uuid.uuid4())
    rest = [(k, v) for k, v in headers if k != b"x-request-id"]
    return rid, [*rest, (b"x-request-id", rid.encode())]


def preflight_headers(requested: bytes | None) -> list[tuple[bytes, bytes]]:
    asked = [h.strip() for h in (requested or b"").split(b",") if h.strip()]
    allow = b", ".join([b"Authorization", *asked, *(h.encode() for h in CORS_SIMPLE_HEADERS)])
    return [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", CORS_METHODS.encode()),
        (b"access-control-allow-headers", allow),
        (b"access-control-max-age", CORS_MAX_AGE.encode()),
    ]


class RequestContext:
    """The ASGI middleware in front of the gateway's app (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_header_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.log = get_logger()
        self._access: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid, headers = request_id(list(scope["headers"]))
        scope = {**scope, "headers": headers}
        scope.setdefault("state", {})
        origin = any(k == b"origin" for k, _ in headers)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(b"x-request-id", rid.encode())]
                if origin:
                    extra += [
                        (b"access-control-allow-origin", b"*"),
                        (b"access-control-expose-headers", CORS_EXPOSE.encode()),
                    ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            early = self._early_answer(scope, headers, origin)
            if early is None:
                await self.app(scope, receive, send_wrapper)
            elif isinstance(early, ApiError):
                scope["state"]["error_code"] = early.code
                await _send(send_wrapper, early.status, _error_headers(early), early.body())
            else:
                await _send(send, 200, [*early, (b"x-request-id", rid.encode())], b"")
                status = 200
        finally:
            state = scope.get("state") or {}
            if self._access is None:  # a bound logger, made once: the proxy re-binds on every call
                self._access = self.log.bind()
            self._access.info(
                "http_request_completed",
                method=scope["method"],
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1")[:500] or None,
                status=status,
                duration_ms=round((time.perf_counter() - start) * 1000, 3),
                role=state.get("role"),
                error_code=state.get("error_code"),
            )
            structlog.contextvars.unbind_contextvars("request_id")

    def _early_answer(
        self, scope: Scope, headers: list[tuple[bytes, bytes]], origin: bool
    ) -> ApiError | list[tuple[bytes, bytes]] | None:
        """An error (limits), the preflight's headers, or None to go on to the app."""
        if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            return errors.headers_too_large(self.max_header_bytes)
        length = next((v for k, v in headers if k == b"content-length"), None)
        if length is not None and length.strip().isdigit() and int(length) > self.max_body_bytes:
            return errors.payload_too_large(self.max_body_bytes)
        if scope["method"] == "OPTIONS" and origin:
            method = next((v for k, v in headers if k == b"access-control-request-method"), None)
            if method is not None:
                requested = next((v for k, v in headers if k == b"access-control-request-headers"), None)
                return preflight_headers(requested)
        return None


def _error_headers(err: ApiError) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode()) for k, v in err.response_headers()]


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
