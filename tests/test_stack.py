"""`make run` end to end: cluster, migrations, demo data, HTTP front, banner; Ctrl-C leaves nothing.

Also against "an existing server" (DATABASE_URL): a second throw-away cluster plays it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest

from waybill import process, testing
from waybill.cluster import free_port


def _pids_matching(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
    return out.stdout.split()


@dataclass
class Run:
    proc: subprocess.Popen
    banner: str
    port: int
    receiver_port: int
    status_port: int
    read_until: Callable[[str, float], None]


@contextmanager
def waybill_run(env_extra: dict[str, str], timeout: float = 180) -> Iterator[Run]:
    """`python -m waybill run` until its banner (webhook lines included); Ctrl-C on exit."""
    port, admin_port = free_port(), free_port()
    receiver_port, status_port = free_port(), free_port()
    env = dict(
        os.environ,
        WAYBILL_API_PORT=str(port),
        WAYBILL_API_ADMIN_PORT=str(admin_port),
        WAYBILL_RECEIVER_PORT=str(receiver_port),
        WAYBILL_DISPATCHER_STATUS_PORT=str(status_port),
        **env_extra,
    )
    for key in ("DATABASE_URL", "WAYBILL_AUTHENTICATOR_PASSWORD"):
        if key not in env_extra:
            env.pop(key, None)
    proc = process.start([sys.executable, "-m", "waybill", "run"], env=env, output=subprocess.PIPE, text=True)
    banner: list[str] = []
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in proc.stdout], daemon=True).start()

    def read_until(marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                banner.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{marker!r} not printed:\n" + "\n".join(banner)) from None
            if marker in banner[-1]:
                return

    try:
        read_until("Ctrl-C stops everything.", timeout)
        read_until("Authorization: Bearer", 30)  # the webhook section's curl line
        yield Run(proc, "\n".join(banner), port, receiver_port, status_port, read_until)
    finally:
        process.stop(proc, sig=signal.SIGINT, grace=60)


def _call_the_api(banner: str, port: int) -> None:
    assert "Waybill is running." in banner, banner
    assert re.search(r"demo data .*orders", banner), banner
    token = re.search(r"Bearer (\S+?)'", banner).group(1)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["role"] == "admin" and claims["exp"] - claims["iat"] == 3600, claims
    assert "valid 1 h (until " in banner and ".venv/bin/waybill token --role admin" in banner, banner
    url = re.search(r"curl -s '(\S+)'", banner).group(1)
    assert url.startswith(f"http://127.0.0.1:{port}/")
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()) == 5 and {"id", "status", "amount", "currency"} == set(r.json()[0])
    # The answer cache worker runs: a week the views cannot page is ranked live (not cacheable:
    # max-age=0) and its key sent; once the worker filled it, the same call reads the cache.
    today = dt.datetime.now(dt.UTC).date()
    week = f"http://127.0.0.1:{port}/rpc/agent_leaderboard?from={today - dt.timedelta(days=8)}&to={today - dt.timedelta(days=1)}"
    headers = {"Authorization": f"Bearer {token}"}
    first = httpx.get(week, headers=headers, timeout=30)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "max-age=0", first.text
    deadline = time.monotonic() + 30
    while (hit := httpx.get(week, headers=headers, timeout=30)).headers["Cache-Control"] == "max-age=0":
        assert time.monotonic() < deadline, "the metrics cache worker did not fill the miss"
        time.sleep(0.1)
    assert hit.json()["items"] == first.json()["items"] and hit.json()["asOf"] != first.json()["asOf"]
    assert hit.json()["total"] > 0, "the demo data has deliveries that week"


def _cache_workers(run: Run) -> list[str]:
    """The metrics cache worker(s) `waybill run` started (its children, by command line)."""
    return [p for p in _pids_matching("-m waybill metrics-cache") if Path(f"/proc/{p}/stat").exists()
            and Path(f"/proc/{p}/stat").read_text().split()[3] == str(run.proc.pid)]  # fmt: skip


def _gone(run: Run, workers: list[str]) -> None:
    assert workers, "no metrics cache worker was running"
    assert [p for p in workers if Path(f"/proc/{p}").exists()] == []
    assert _pids_matching(f"--port {run.port} ") == []
    assert _pids_matching(f"receiver --host 127.0.0.1 --port {run.receiver_port}") == []
    assert _pids_matching(f"--status-port {run.status_port}") == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{run.port}/", timeout=2)


def test_run_serves_the_api_and_ctrl_c_stops_everything() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="waybill-run-test-"))
    with waybill_run({"WAYBILL_DATA_DIR": str(data_dir)}) as run:
        _call_the_api(run.banner, run.port)
        workers = _cache_workers(run)
        assert _pids_matching(f"-D {data_dir}/pgdata"), "no postmaster while running"
        # Webhooks: the printed curl line cancels an order; the demo receiver prints the verified events.
        text = run.banner
        assert (
            f"http://127.0.0.1:{run.receiver_port}/webhooks" in text
            and "demo subscription #1 created" in text
        )
        cancel = re.search(r"curl -s -X POST '(\S+)' .*\n.*Bearer (\S+)' -d '(.+)'", text)
        r = httpx.post(cancel.group(1), headers={"Authorization": f"Bearer {cancel.group(2)}"},
                       json=json.loads(cancel.group(3)), timeout=30)  # fmt: skip
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text
        run.read_until("webhook order.cancelled", 60)
        assert httpx.get(f"http://127.0.0.1:{run.status_port}/healthz", timeout=5).json()["ok"] is True
    assert run.proc.returncode == 0, run.banner
    assert _pids_matching(f"-D {data_dir}/pgdata") == []
    _gone(run, workers)
    subprocess.run(["rm", "-rf", str(data_dir)], check=False)


def test_run_on_an_existing_server_without_an_authenticator_password(tmp_path: Path) -> None:
    """DATABASE_URL and nothing else: a password is generated for authenticator, kept 0600 in the data
    directory, set on the role; the existing server is left running on Ctrl-C."""
    with testing.throwaway_cluster(db_name="shop") as server:
        env = {"DATABASE_URL": server.url(tcp=True), "WAYBILL_DATA_DIR": str(tmp_path)}
        with waybill_run(env) as run:
            _call_the_api(run.banner, run.port)  # the cache worker logged in with its generated password
            workers = _cache_workers(run)
            assert stat.S_IMODE((tmp_path / "metrics_cache-password").stat().st_mode) == 0o600
            secret = tmp_path / "authenticator-password"
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
            password = secret.read_text().strip()
            assert len(password) >= 32 and password not in run.banner
            # the password is what authenticator logs in with, over TCP
            with psycopg.connect(
                host="127.0.0.1", port=server.port, dbname="shop", user="authenticator", password=password
            ) as conn:
                assert conn.execute("select current_user").fetchone()[0] == "authenticator"
            # and it is in no process's argv
            for pid in _pids_matching(f"--port {run.port} "):
                assert password not in Path(f"/proc/{pid}/cmdline").read_text()
        assert run.proc.returncode == 0, run.banner
        _gone(run, workers)
        assert server.running(), "Ctrl-C must not stop a server waybill did not start"


def test_existing_server_without_pg_cron_says_what_to_add(tmp_path: Path) -> None:
    plain = "shared_preload_libraries = 'pg_stat_statements'\n"
    with testing.throwaway_cluster(extra_conf=plain, db_name="shop") as server:
        env = dict(os.environ, DATABASE_URL=server.url(tcp=True), WAYBILL_DATA_DIR=str(tmp_path))
        r = subprocess.run(
            [sys.executable, "-m", "waybill", "migrate"], env=env, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 1, r.stdout + r.stderr
        assert "pg_cron not preloaded" in r.stderr, r.stderr
        assert "  shared_preload_libraries = 'pg_stat_statements, pg_cron'\n" in r.stderr, r.stderr
        assert "  cron.database_name = 'shop'" in r.stderr, r.stderr
        with server.connect("shop") as conn:  # nothing was migrated
            assert conn.execute("select count(*) from pg_namespace where nspname = 'core'").fetchone()[0] == 0
