"""`make run` end to end: cluster, migrations, demo data, HTTP front, banner; Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt

from waybill.cluster import free_port
from waybill.settings import PROJECT_ROOT


def _pids_matching(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
    return out.stdout.split()


def test_run_serves_the_api_and_ctrl_c_stops_everything() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="waybill-run-test-"))
    port, admin_port = free_port(), free_port()
    env = dict(
        os.environ,
        WAYBILL_DATA_DIR=str(data_dir),
        WAYBILL_API_PORT=str(port),
        WAYBILL_API_ADMIN_PORT=str(admin_port),
    )
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "waybill", "run"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner: list[str] = []
    try:
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        for line in proc.stdout:
            banner.append(line.rstrip("\n"))
            if "Ctrl-C stops everything." in line:
                break
            assert time.monotonic() < deadline, "\n".join(banner)
        text = "\n".join(banner)
        assert "Waybill is running." in text, text
        assert re.search(r"demo data .*orders", text), text
        token = re.search(r"Bearer (\S+?)'", text).group(1)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["role"] == "admin" and claims["exp"] - claims["iat"] == 3600, claims
        assert "valid 1 h (until " in text and ".venv/bin/waybill token --role admin" in text, text
        url = re.search(r"curl -s '(\S+)'", text).group(1)
        assert url.startswith(f"http://127.0.0.1:{port}/")
        r = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, r.text
        assert len(r.json()) == 5 and {"id", "status", "amount", "currency"} == set(r.json()[0])
        assert _pids_matching(f"-D {data_dir}/pgdata"), "no postmaster while running"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, "\n".join(banner)
    assert _pids_matching(f"-D {data_dir}/pgdata") == []
    assert _pids_matching(f"--port {port} ") == []
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        raise AssertionError("the HTTP front still answers after Ctrl-C")
    except httpx.ConnectError:
        pass
    subprocess.run(["rm", "-rf", str(data_dir)], check=False)
