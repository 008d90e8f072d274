"""Per-role statement_timeout as PostgREST's impersonated role settings, and cancel on disconnect."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.gateway.conftest import (
    Gw,
    assert_error,
    dbname_of,
    install_fixtures,
    start_gateway,
    stop_gateway,
    wait_until,
)
from waybill.cluster import Cluster


@pytest.fixture
def tgw(cluster: Cluster, db_url: str, tmp_path: Path) -> Iterator[Gw]:
    """A gateway over a fresh database whose roles carry their own settings (role-in-database, so
    the cluster's other databases are untouched): service 250 ms, admin 30 s; anon role-wide
    settings are left alone."""
    install_fixtures(db_url)
    name = dbname_of(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"alter role service in database \"{name}\" set statement_timeout = '250ms'")
        conn.execute(f"alter role admin in database \"{name}\" set statement_timeout = '30s'")
        conn.execute(f"alter role admin in database \"{name}\" set work_mem = '8MB'")
    gw = start_gateway(cluster, name, tmp_path / "gateway.log")
    try:
        yield gw
    finally:
        stop_gateway(gw)
        with psycopg.connect(db_url, autocommit=True) as conn:
            for role in ("service", "admin", "agent"):
                conn.execute(f'alter role {role} in database "{name}" reset all')


def _setting(gw: Gw, role: str | None, name: str) -> str:
    with gw.client(role) as c:
        r = c.get("/rpc/t_setting", params={"name": name})
    assert r.status_code == 200, r.text
    return r.json()


def test_role_settings_apply_per_request(tgw: Gw) -> None:
    assert _setting(tgw, "service", "statement_timeout") == "250ms"
    assert _setting(tgw, "admin", "statement_timeout") == "30s"
    assert _setting(tgw, "admin", "work_mem") == "8MB"
    # Settings are transaction-local: anon (no settings of its own here) never inherits service's
    # or admin's from a pooled connection they used before.
    for _ in range(30):
        assert _setting(tgw, "service", "statement_timeout") == "250ms"
        assert _setting(tgw, None, "statement_timeout") not in ("250ms", "30s")


def test_slow_statement_is_cut_with_postgrest_answer(tgw: Gw) -> None:
    """57014 query_canceled: PostgREST maps SQLSTATE class 57 to 500 (v12/v13 errors table)."""
    with tgw.client("service") as c:
        body = assert_error(c.get("/rpc/t_sleep", params={"ms": 5000}), 500, "57014")
    assert "statement timeout" in body["message"]
    with tgw.client("admin") as c:  # admin's longer timeout lets the same call finish
        assert c.get("/rpc/t_sleep", params={"ms": 300}).json() == 300


def test_role_settings_follow_a_schema_reload(tgw: Gw) -> None:
    name = dbname_of(tgw.owner_url)
    with tgw.db() as conn:
        conn.execute(f"alter role agent in database \"{name}\" set statement_timeout = '150ms'")
        tgw.notify_reload(conn)
    wait_until(lambda: _setting(tgw, "agent", "statement_timeout") == "150ms", what="agent's new setting")
    with tgw.client("agent") as c:
        assert_error(c.get("/rpc/t_sleep", params={"ms": 5000}), 500, "57014")


def _active_sleeps(gw: Gw) -> int:
    with gw.db() as conn:
        return conn.execute(
            "select count(*) from pg_stat_activity where application_name = 'gateway' "
            "and state = 'active' and query like '%t_sleep%'"
        ).fetchone()[0]


def test_client_disconnect_cancels_the_statement(tgw: Gw) -> None:
    """A client sends a slow request and goes away: its backend must stop working on it soon."""
    host, port = tgw.base_url.removeprefix("http://").split(":")
    token = tgw.token("admin")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"GET /rpc/t_sleep?ms=60000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        wait_until(lambda: _active_sleeps(tgw) == 1, what="the slow statement to start")
    wait_until(lambda: _active_sleeps(tgw) == 0, timeout=10, what="the statement to be cancelled")
    # The connection went back to the pool in a usable state.
    with tgw.client("admin") as c:
        assert c.get("/rpc/t_sleep", params={"ms": 1}).json() == 1
    assert any(x["event"] == "http_client_disconnected" for x in tgw.log_lines())
    assert httpx.get(tgw.admin_url + "/ready", timeout=5).status_code == 200
