"""`make run` end to end: cluster, migrations, demo data, HTTP front, banner; Ctrl-C leaves nothing."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from waybill.cluster import free_port
from waybill.settings import PROJECT_ROOT


def _pids_matching(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
    return out.stdout.split()


def test_run_serves_the_api_and_ctrl_c_stops_everything() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="waybill-run-test-"))
    port, admin_port = free_port(), free_port()
    receiver_port, status_port = free_port(), free_port()
    env = dict(
        os.environ,
        WAYBILL_DATA_DIR=str(data_dir),
        WAYBILL_API_PORT=str(port),
        WAYBILL_API_ADMIN_PORT=str(admin_port),
        WAYBILL_RECEIVER_PORT=str(receiver_port),
        WAYBILL_DISPATCHER_STATUS_PORT=str(status_port),
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
        read_until("Ctrl-C stops everything.", 180)
        read_until("Authorization: Bearer", 30)  # the webhook section's curl line
        text = "\n".join(banner)
        assert "Waybill is running." in text, text
        assert re.search(r"demo data .*orders", text), text
        token = re.search(r"Bearer (\S+?)'", text).group(1)
        url = re.search(r"curl -s '(\S+)'", text).group(1)
        assert url.startswith(f"http://127.0.0.1:{port}/")
        r = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, r.text
        assert len(r.json()) == 5 and {"id", "status", "amount", "currency"} == set(r.json()[0])
        assert _pids_matching(f"-D {data_dir}/pgdata"), "no postmaster while running"
        # Webhooks: the printed curl line cancels an order; the demo receiver prints the verified events.
        assert f"http://127.0.0.1:{receiver_port}/webhooks" in text and "demo subscription #1 created" in text
        cancel = re.search(r"curl -s -X POST '(\S+)' .*\n.*Bearer (\S+)' -d '(.+)'", text)
        r = httpx.post(cancel.group(1), headers={"Authorization": f"Bearer {cancel.group(2)}"},
                       json=json.loads(cancel.group(3)), timeout=30)  # fmt: skip
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text
        read_until("webhook order.cancelled", 60)
        assert httpx.get(f"http://127.0.0.1:{status_port}/healthz", timeout=5).json()["ok"] is True
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
    assert _pids_matching(f"receiver --host 127.0.0.1 --port {receiver_port}") == []
    assert _pids_matching(f"--status-port {status_port}") == []
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        raise AssertionError("the HTTP front still answers after Ctrl-C")
    except httpx.ConnectError:
        pass
    subprocess.run(["rm", "-rf", str(data_dir)], check=False)
