"""`make run` end to end: cluster, migrations, demo data, HTTP front, banner; Ctrl-C leaves nothing.

Also against "an existing server" (DATABASE_URL): a second throw-away cluster plays it.
"""

from __future__ import annotations

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


def _gone(run: Run) -> None:
    assert _pids_matching(f"--port {run.port} ") == []
    assert _pids_matching(f"receiver --host 127.0.0.1 --port {run.receiver_port}") == []
    assert _pids_matching(f"--status-port {run.status_port}") == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{run.port}/", timeout=2)


def test_run_serves_the_api_and_ctrl_c_stops_everything() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="waybill-run-test-"))
    with waybill_run({"WAYBILL_DATA_DIR": str(data_dir)}) as run:
        _call_the_api(run.banner, run.port)
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
    _gone(run)
    subprocess.run(["rm", "-rf", str(data_dir)], check=False)


def test_run_on_an_existing_server_without_an_authenticator_password(tmp_path: Path) -> None:
    """DATABASE_URL and nothing else: a password is generated for authenticator, kept 0600 in the data
    directory, set on the role; the existing server is left running on Ctrl-C."""
    with testing.throwaway_cluster(db_name="shop") as server:
        env = {"DATABASE_URL": server.url(tcp=True), "WAYBILL_DATA_DIR": str(tmp_path)}
        with waybill_run(env) as run:
            _call_the_api(run.banner, run.port)
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
        _gone(run)
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
