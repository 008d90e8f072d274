"""docs/errors.md is the error registry, and every code the SQL raises is registered."""

from __future__ import annotations

import re

import psycopg

from waybill.errors import registry_markdown
from waybill.settings import PROJECT_ROOT


def test_errors_doc_equals_registry(conn: psycopg.Connection) -> None:
    committed = (PROJECT_ROOT / "docs" / "errors.md").read_text()
    assert committed == registry_markdown(conn), (
        "run `.venv/bin/waybill errors-doc` and commit docs/errors.md"
    )


def test_every_raised_code_is_registered(conn: psycopg.Connection) -> None:
    registered = {r[0] for r in conn.execute("select code from ops.error_codes").fetchall()}
    raised = set()
    for path in (PROJECT_ROOT / "sql").glob("*.sql"):
        raised |= set(re.findall(r"raise_error\(\s*'([A-Z_]+)'", path.read_text()))
    raised |= {m + "_INVALID_TRANSITION" for m in ("ORDER", "PAYMENT", "REFUND", "ASSIGNMENT")}
    assert raised, "no raise_error call found"
    assert raised <= registered, raised - registered


def test_registered_statuses_follow_postgrest_mapping(conn: psycopg.Connection) -> None:
    """Native SQLSTATE rows carry the status PostgREST gives them (POSTGREST-CONTRACT.md)."""
    # 57014 (statement timeout / cancel): PostgREST maps the whole 57* class to 500.
    expected = {
        "23505": 409,
        "23503": 409,
        "23514": 400,
        "23502": 400,
        "42501": 403,
        "40001": 500,
        "57014": 500,
    }
    rows = dict(
        conn.execute("select sqlstate, http_status from ops.error_codes where sqlstate <> 'PGRST'").fetchall()
    )
    assert rows == expected
