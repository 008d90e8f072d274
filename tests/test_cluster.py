"""The embedded cluster: configured as production, idempotent start/stop, no stray process."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import psycopg

from waybill.cluster import Cluster, free_port, port_is_free


def _postmaster_pids(pgdata: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", "--", f"-D {pgdata}"], capture_output=True, text=True)
    return out.stdout.split()


def test_server_runs_with_production_settings(cluster: Cluster) -> None:
    with psycopg.connect(cluster.url("postgres")) as conn:
        settings = dict(
            conn.execute(
                "select name, setting from pg_settings where name in ('shared_preload_libraries', "
                "'cron.database_name', 'log_destination', 'log_min_duration_statement', "
                "'auto_explain.log_min_duration', 'listen_addresses')"
            ).fetchall()
        )
    assert {s.strip() for s in settings["shared_preload_libraries"].split(",")} == {
        "pg_cron",
        "pg_stat_statements",
        "auto_explain",
    }
    assert settings["cron.database_name"] == "waybill"
    assert settings["log_destination"] == "jsonlog"
    assert settings["log_min_duration_statement"] == "100"
    assert settings["auto_explain.log_min_duration"] == "500"
    assert settings["listen_addresses"] == "127.0.0.1"
    assert cluster.log_file().exists()


def test_tcp_needs_the_password(cluster: Cluster) -> None:
    with psycopg.connect(cluster.url("postgres", tcp=True)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    bad = cluster.url("postgres", tcp=True).replace(cluster.state()["superuser_password"], "wrong")
    try:
        psycopg.connect(bad, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        assert "password authentication failed" in str(exc)
    else:
        raise AssertionError("a wrong password was accepted over TCP")


def test_start_is_idempotent_and_stop_leaves_nothing() -> None:
    c = Cluster(Path(tempfile.mkdtemp(prefix="waybill-cluster-test-")))
    try:
        c.start()
        port = c.port
        pids = _postmaster_pids(c.pgdata)
        assert pids, "no postmaster after start"
        c.start()  # second start: same server, same port
        assert c.port == port
        assert _postmaster_pids(c.pgdata) == pids
        c.stop()
        assert not c.running()
        assert _postmaster_pids(c.pgdata) == []
        c.stop()  # stopping a stopped cluster is fine
        c.start()  # and it comes back on the same data directory
        assert c.running()
        with c.connect() as conn:
            assert conn.execute("select current_setting('port')::int").fetchone()[0] == c.port
    finally:
        c.destroy()
    assert _postmaster_pids(c.pgdata) == []
    assert not c.data_dir.exists()


def test_free_port_never_hands_out_a_port_twice() -> None:
    """Ports picked before any server binds them are all different (the kernel alone may give
    bind(0) the same port again once the probing socket is closed), and each is free now."""
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    assert all(port_is_free(p) for p in ports[-20:])
