"""The schema cache follows `NOTIFY pgrst, 'reload schema'`, also after its LISTEN connection dropped."""

from __future__ import annotations

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
def fresh(cluster: Cluster, db_url: str, tmp_path: Path) -> Iterator[Gw]:
    install_fixtures(db_url)
    gw = start_gateway(cluster, dbname_of(db_url), tmp_path / "gateway.log")
    yield gw
    stop_gateway(gw)


def _create(conn: psycopg.Connection, name: str, value: int) -> None:
    conn.execute(f"create function api.{name}() returns int language sql stable as $$ select {value} $$")
    conn.execute(f"grant execute on function api.{name}() to service")


def _listeners(conn: psycopg.Connection) -> dict[int, str]:
    """pid -> current query of every LISTEN connection (one per worker)."""
    rows = conn.execute(
        "select pid, query from pg_stat_activity where application_name = 'gateway-listener' "
        "and datname = current_database()"
    ).fetchall()
    return dict(rows)


def test_new_function_is_served_after_notify(fresh: Gw) -> None:
    with fresh.client("service") as c, fresh.db() as conn:
        assert_error(c.post("/rpc/t_new_one"), 404, "PGRST202")
        _create(conn, "t_new_one", 11)
        # no NOTIFY yet: the cache has not changed
        assert_error(c.post("/rpc/t_new_one"), 404, "PGRST202")
        fresh.notify_reload(conn)
        # every worker serves it: fresh connections land on either worker (SO_REUSEPORT)
        for _ in range(10):
            r = httpx.post(fresh.base_url + "/rpc/t_new_one", headers=c.headers, timeout=10)
            assert r.status_code == 200 and r.json() == 11
    assert any(x["event"] == "schema_reload_requested" for x in fresh.log_lines())


def test_other_payloads_do_not_reload(fresh: Gw) -> None:
    with fresh.client("service") as c, fresh.db() as conn:
        _create(conn, "t_quiet", 1)
        conn.execute("notify pgrst, 'something else'")
        fresh.notify_reload(conn, "")  # an empty payload does reload
        assert c.post("/rpc/t_quiet").status_code == 200
        reloads = [x for x in fresh.log_lines() if x["event"] == "schema_reload_requested"]
        assert sorted(x["worker"] for x in reloads) == list(range(fresh.workers))  # once each


def test_listener_reconnects_after_its_connection_drops(fresh: Gw) -> None:
    with fresh.client("service") as c, fresh.db() as conn:
        first = wait_until(
            lambda: len(x := _listeners(conn)) == fresh.workers and x, what="listener backends"
        )
        conn.execute("select pg_terminate_backend(pid) from unnest(%s::int[]) pid", [list(first)])
        # new LISTEN connections come back (after a 1 s back-off) and have run their LISTEN
        wait_until(
            lambda: (
                len(cur := _listeners(conn)) == fresh.workers
                and not set(cur) & set(first)
                and all(q.startswith("listen") for q in cur.values())
            ),
            what="listener reconnect",
        )
        _create(conn, "t_after_drop", 22)
        fresh.notify_reload(conn)
        r = wait_until(lambda: (x := c.post("/rpc/t_after_drop")).status_code == 200 and x, what="reload")
        assert r.json() == 22
    assert any(x["event"] == "schema_listener_connection_lost" for x in fresh.log_lines())


def test_requests_keep_working_while_reloading(fresh: Gw) -> None:
    with fresh.client("service") as c, fresh.db() as conn:
        for i in range(5):
            conn.execute("notify pgrst, 'reload schema'")
            assert c.get("/rpc/t_add", params={"a": i, "b": 1}).json() == i + 1
    assert httpx.get(fresh.admin_url + "/ready").status_code == 200
