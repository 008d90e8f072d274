"""The one place that turns PostgreSQL errors into Waybill's registered errors.

Business rules raise SQLSTATE 'PGRST' with a JSON message {code, message, details, hint} and a JSON
detail {status, headers} (see sql/050_ops_errors.sql); errors PostgreSQL raises itself keep their
SQLSTATE and map to the registry rows that document them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg

# SQLSTATE -> registry code for errors PostgreSQL raises itself (mirrors ops.error_codes).
NATIVE_CODES = {
    "23505": "UNIQUE_VIOLATION",
    "23503": "FOREIGN_KEY_VIOLATION",
    "23514": "CHECK_VIOLATION",
    "23502": "NOT_NULL_VIOLATION",
    "42501": "INSUFFICIENT_PRIVILEGE",
    "40001": "SERIALIZATION_FAILURE",
    "57014": "STATEMENT_TIMEOUT",
}


@dataclass(frozen=True)
class WaybillError(Exception):
    code: str
    message: str
    sqlstate: str
    http_status: int | None = None
    details: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def from_psycopg(exc: psycopg.Error) -> WaybillError:
    """The registered error behind a psycopg exception (code UNKNOWN_<sqlstate> if unregistered)."""
    diag = exc.diag
    sqlstate = diag.sqlstate or ""
    primary = diag.message_primary or str(exc)
    if sqlstate == "PGRST":
        body = json.loads(primary)
        status = json.loads(diag.message_detail or "{}").get("status")
        return WaybillError(
            code=body["code"],
            message=body["message"],
            sqlstate=sqlstate,
            http_status=status,
            details=body.get("details"),
            hint=body.get("hint"),
        )
    return WaybillError(
        code=NATIVE_CODES.get(sqlstate, f"UNKNOWN_{sqlstate}"),
        message=primary,
        sqlstate=sqlstate,
        details=diag.message_detail,
        hint=diag.message_hint,
    )


def error_code(exc: psycopg.Error) -> str:
    return from_psycopg(exc).code


REGISTRY_QUERY = """
    select code, sqlstate, http_status, retryable, message, coalesce(hint, '')
      from ops.error_codes order by http_status, code
"""


def registry_markdown(conn: psycopg.Connection) -> str:
    """docs/errors.md, rendered from ops.error_codes (tests keep the committed file equal to it)."""
    rows = conn.execute(REGISTRY_QUERY).fetchall()
    out = [
        "# Error registry",
        "",
        "Generated from `ops.error_codes` by `waybill errors-doc`; `tests/test_errors_doc.py` keeps this",
        "file equal to the table. Business rules raise through `ops.raise_error(code, args…)`: SQLSTATE",
        "`PGRST`, message `{code, message, details, hint}` (JSON), detail `{status, headers}` (JSON), so",
        "PostgREST answers that HTTP status with that body. Rows with another SQLSTATE are errors",
        "PostgreSQL raises itself, listed with the status PostgREST gives them. Retryable: the same call",
        "may succeed later unchanged (a 503 carries `Retry-After`).",
        "",
        "| code | HTTP | SQLSTATE | retryable | message | hint |",
        "|---|---|---|---|---|---|",
    ]
    for code, sqlstate, status, retryable, message, hint in rows:
        cells = [f"`{code}`", str(status), f"`{sqlstate}`", "yes" if retryable else "no", message, hint]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"
