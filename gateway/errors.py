"""Every error the gateway answers, in PostgREST v13's shape: a status, headers and a 4-key body.

Two sources: the gateway's own checks (PGRSTnnn codes, built by the helpers below) and PostgreSQL
errors (`from_pg_error`: SQLSTATE -> HTTP status, with `PTnnn` and `RAISE SQLSTATE 'PGRST'`).
The body always has exactly the keys code, details, hint, message (details/hint: string or null).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

JSON_CT = "application/json; charset=utf-8"


class ApiError(Exception):
    """An HTTP error response: status, code, message, details, hint and extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        hint: Any = None,
        headers: Sequence[tuple[str, str]] = (),
        *,
        proxy_status: bool = True,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = list(headers)
        self.proxy_status = proxy_status

    def body(self) -> bytes:
        # Keys in PostgREST's order (aeson sorts them); compact, like its encoder.
        payload = {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    def response_headers(self) -> list[tuple[str, str]]:
        out = [("Content-Type", JSON_CT)]
        if self.proxy_status:
            out.append(("Proxy-Status", f"PostgREST; error={self.code}"))
        out += self.headers
        return out


# -- fuzzy suggestions, for the "Perhaps you meant ..." hints -----------------------------------


def closest(word: str, candidates: Iterable[str], cutoff: float = 0.5) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


# -- request errors (PGRST1xx) ------------------------------------------------------------------


def query_param_error(message: str, details: str) -> ApiError:
    return ApiError(400, "PGRST100", message, details)


def parse_error(what: str, value: str, column: int, details: str) -> ApiError:
    """A query-string parse failure, worded as PostgREST's parser does."""
    return query_param_error(f'"failed to parse {what} ({value})" (line 1, column {column})', details)


def invalid_rpc_method(method: str) -> ApiError:
    return ApiError(405, "PGRST101", f"Cannot use the {method} method on RPC")


def invalid_body(message: str, details: str | None = None) -> ApiError:
    return ApiError(400, "PGRST102", message, details)


# The gateway's own limits (PostgREST leaves them to its HTTP server and proxy): codes PGRSTX13 and
# PGRSTX31, named after their statuses, in PostgREST's 4-key body. gateway/README.md lists them.
def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "PGRSTX13", "Payload Too Large", f"The request body is larger than {limit} bytes")


def headers_too_large(limit: int) -> ApiError:
    return ApiError(
        431, "PGRSTX31", "Request Header Fields Too Large", f"The request headers exceed {limit} bytes"
    )


def invalid_range(details: str) -> ApiError:
    return ApiError(416, "PGRST103", "Requested range not satisfiable", details)


def out_of_bounds(offset: int, total: int) -> ApiError:
    return invalid_range(f"An offset of {offset} was requested, but there are only {total} rows.")


def unacceptable_schema(schema: str, exposed: Sequence[str]) -> ApiError:
    return ApiError(
        406,
        "PGRST106",
        f"Invalid schema: {schema}",
        None,
        f"Only the following schemas are exposed: {', '.join(exposed)}",
    )


def media_type_error(types: Sequence[str]) -> ApiError:
    return ApiError(406, "PGRST107", f"None of these media types are available: {', '.join(types)}")


def not_embedded(resource: str) -> ApiError:
    return ApiError(
        400,
        "PGRST108",
        f"'{resource}' is not an embedded resource in this request",
        None,
        f"Verify that '{resource}' is included in the 'select' query parameter.",
    )


def guc_headers_error() -> ApiError:
    return ApiError(
        500,
        "PGRST111",
        "response.headers guc must be a JSON array composed of objects with a single key and a string value",
    )


def guc_status_error() -> ApiError:
    return ApiError(500, "PGRST112", "response.status guc must be a valid status code")


def singularity_error(rows: int) -> ApiError:
    return ApiError(
        406,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        f"The result contains {rows} rows",
    )


def unsupported_method(method: str) -> ApiError:
    return ApiError(405, "PGRST117", f"Unsupported HTTP method: {method}")


def invalid_preferences(prefs: Sequence[str]) -> ApiError:
    return ApiError(
        400,
        "PGRST122",
        "Invalid preferences given with handling=strict",
        f"Invalid preferences: {', '.join(prefs)}",
    )


def invalid_resource_path() -> ApiError:
    return ApiError(404, "PGRST125", "Invalid path specified in request URL")


def not_implemented(details: str) -> ApiError:
    """PostgREST serves this but the gateway does not (writes to views, embedding, casts, ...)."""
    return ApiError(400, "PGRST127", "Feature not implemented", details)


# -- schema cache errors (PGRST2xx) -------------------------------------------------------------


def no_schema_cache() -> ApiError:
    return ApiError(
        503,
        "PGRST002",
        "Could not query the database for the schema cache. Retrying.",
        headers=[("Retry-After", "0")],
    )


def no_rpc(
    schema: str,
    name: str,
    keys: Iterable[str],
    *,
    is_post_json: bool,
    all_names: Iterable[str],
    overloads: Sequence[Sequence[str]],
) -> ApiError:
    """PGRST202, worded like PostgREST: the keys searched for and, when close, a suggestion."""
    keys = sorted(keys)
    func = f"{schema}.{name}"
    if keys:
        listed = f"({', '.join(keys)})"
        searched = f" with parameter{'s' if len(keys) > 1 else ''} {', '.join(keys)}"
    else:
        listed = " without parameters"
        searched = " without parameters"
    message = f"Could not find the function {func}{listed} in the schema cache"
    tail = " or with a single unnamed json/jsonb parameter" if is_post_json else ""
    details = (
        f"Searched for the function {func}{searched}{tail}, but no matches were found in the schema cache."
    )
    hint = None
    if overloads:

        def fmt(params: Iterable[str]) -> str:
            return "(" + ", ".join(sorted(params)) + ")"

        options = {fmt(p): fmt(p) for p in overloads}
        best = closest(fmt(keys), options, cutoff=0.3)
        if best is not None:
            hint = f"Perhaps you meant to call the function {func}{best}"
    else:
        best = closest(name, all_names)
        if best is not None:
            hint = f"Perhaps you meant to call the function {schema}.{best}"
    return ApiError(404, "PGRST202", message, details, hint)


def ambiguous_rpc(candidates: Sequence[str]) -> ApiError:
    return ApiError(
        300,
        "PGRST203",
        f"Could not choose the best candidate function between: {', '.join(candidates)}",
        None,
        "Try renaming the parameters or the function itself in the database so function overloading "
        "can be resolved",
    )


def table_not_found(schema: str, name: str, all_names: Iterable[str]) -> ApiError:
    best = closest(name, all_names)
    hint = f"Perhaps you meant the table '{schema}.{best}'" if best else None
    return ApiError(
        404, "PGRST205", f"Could not find the table '{schema}.{name}' in the schema cache", None, hint
    )


# -- JWT errors (PGRST3xx) ----------------------------------------------------------------------


def _bearer_error(message: str) -> tuple[str, str]:
    quoted = json.dumps(message, ensure_ascii=True)  # a quoted string, as PostgREST's `show` gives
    return ("WWW-Authenticate", f'Bearer error="invalid_token", error_description={quoted}')


def jwt_decode_error(message: str, details: str | None = None) -> ApiError:
    return ApiError(401, "PGRST301", message, details, headers=[_bearer_error(message)])


def jwt_claims_error(message: str) -> ApiError:
    return ApiError(401, "PGRST303", message, headers=[_bearer_error(message)])


# -- connection errors (PGRST0xx) ---------------------------------------------------------------


def connection_error(details: str | None) -> ApiError:
    return ApiError(
        503,
        "PGRST001",
        "Database client error. Retrying the connection.",
        details,
        headers=[("Retry-After", "0")],
    )


def pool_timeout() -> ApiError:
    return ApiError(504, "PGRST003", "Timed out acquiring connection from connection pool.")


def internal_error() -> ApiError:
    """An unexpected exception: a registered-looking body, never a traceback."""
    return ApiError(500, "PGRSTX00", "Internal server error", None, "The gateway logged the cause.")


# -- PostgreSQL errors ----------------------------------------------------------------------------

_PT = re.compile(r"^PT(\d{3})$")


def pg_status(sqlstate: str, message: str, authed: bool) -> int:
    """PostgREST v13's SQLSTATE -> HTTP status table (PGRST is handled by the caller)."""
    s = sqlstate
    exact = {
        "23503": 409,
        "23505": 409,
        "25006": 405,
        "53400": 500,
        "57P01": 503,
        "P0001": 400,
        "42P01": 404,
        "42P17": 500,
    }
    if s in exact:
        return exact[s]
    if s == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if s == "22023":
        # A role named in the JWT that does not exist.
        return 401 if message.startswith("role") and message.endswith("does not exist") else 400
    if s == "42883":
        return 406 if message.startswith("function xmlagg(") else 404
    if s == "42501":
        return 403 if authed else 401
    m = _PT.match(s)
    if m:
        return int(m.group(1))
    if s.startswith("PT"):
        return 500
    prefixes = {
        "08": 503,
        "09": 500,
        "0L": 403,
        "0P": 403,
        "25": 500,
        "28": 403,
        "2D": 500,
        "38": 500,
        "39": 500,
        "3B": 500,
        "40": 500,
        "53": 503,
        "54": 500,
        "55": 500,
        "57": 500,
        "58": 500,
        "F0": 500,
        "HV": 500,
        "P0": 500,
        "XX": 500,
    }
    return prefixes.get(s[:2], 400)


def _pgrst_raise(message: str, detail: str | None) -> ApiError:
    """RAISE SQLSTATE 'PGRST': body from the MESSAGE JSON, status and headers from the DETAIL JSON."""
    hint_msg = (
        "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional keys: "
        "'details', 'hint'."
    )
    hint_det = (
        "DETAIL must be a JSON object with obligatory keys: 'status', 'headers' and optional key: "
        "'status_text'."
    )

    def parse_failure(details: str, hint: str) -> ApiError:
        return ApiError(
            500, "PGRST121", "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error", details, hint
        )

    try:
        body = json.loads(message)
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            raise ValueError
        if not isinstance(body.get("message"), str):
            raise ValueError
        for key in ("details", "hint"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise ValueError
    except ValueError:
        return parse_failure(f"Invalid JSON value for MESSAGE: '{message}'", hint_msg)
    if detail is None:
        return parse_failure("DETAIL is missing in the RAISE statement", hint_det)
    try:
        det = json.loads(detail)
        if not isinstance(det, dict) or "headers" not in det or not isinstance(det.get("headers"), dict):
            raise ValueError
        status = det.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
            raise ValueError
        headers = [(str(k), str(v)) for k, v in det["headers"].items() if isinstance(v, str)]
        if len(headers) != len(det["headers"]):
            raise ValueError
    except ValueError:
        return parse_failure(f"Invalid JSON value for DETAIL: '{detail}'", hint_det)
    return ApiError(status, body["code"], body["message"], body.get("details"), body.get("hint"), headers)


def from_pg_error(exc: psycopg.Error, authed: bool) -> ApiError:
    """The response PostgREST gives for a PostgreSQL error raised by the request's statements."""
    sqlstate = exc.sqlstate
    diag = exc.diag
    if not sqlstate:
        if isinstance(exc, psycopg.DataError):  # e.g. a NUL byte psycopg refuses to send
            return ApiError(400, "22021", str(exc))
        return connection_error(str(exc) or None)
    message = diag.message_primary or str(exc)
    if sqlstate == "PGRST":
        return _pgrst_raise(message, diag.message_detail)
    status = pg_status(sqlstate, message, authed)
    headers = [("WWW-Authenticate", "Bearer")] if status == 401 else []
    return ApiError(status, sqlstate, message, diag.message_detail, diag.message_hint, headers)
