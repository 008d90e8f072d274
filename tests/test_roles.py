"""The role list has one home, sql/000_roles.sql: Python reads it from the database or checks its copy."""

from __future__ import annotations

import psycopg

from waybill import auth, testing


def test_token_roles_are_the_roles_authenticator_may_become(conn: psycopg.Connection) -> None:
    roles = testing.request_roles(conn)
    assert "anon" in roles and "authenticator" not in roles and "dispatcher" not in roles
    assert sorted(auth.ROLES) == roles


def test_every_request_role_is_nologin(
    conn: psycopg.Connection,
) -> None:
    rows = dict(
        conn.execute(
            "select rolname, rolcanlogin from pg_roles where rolname = any(%s)", [testing.request_roles(conn)]
        )
    )
    assert rows and not any(rows.values()), rows
