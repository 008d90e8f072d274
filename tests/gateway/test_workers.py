"""`python -m gateway --workers N`: every worker serves, reloads its cache, and stops with the supervisor."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import Gw, dbname_of, install_fixtures, start_gateway, stop_gateway, wait_until
from waybill.cluster import Cluster


def _workers_of(gw: Gw) -> list[int]:
    pid = gw.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has stopped running


@pytest.fixture
def started(cluster: Cluster, db_url: str, tmp_path: Path) -> Gw:
    install_fixtures(db_url)
    return start_gateway(cluster, dbname_of(db_url), tmp_path / "gateway.log", workers=2)


def test_every_worker_is_ready_and_serves(started: Gw) -> None:
    gw = started
    try:
        assert len(_workers_of(gw)) == 2
        # /ready said 200: both workers had loaded their cache by then
        assert set(gw.cache_loads()) == {0, 1}
        headers = {"Authorization": f"Bearer {gw.token('service')}"}
        for i in range(30):  # fresh connections: the kernel spreads them over both workers' sockets
            r = httpx.get(f"{gw.base_url}/rpc/t_add", params={"a": i, "b": 1}, headers=headers, timeout=10)
            assert r.status_code == 200 and r.json() == i + 1
        served = {x.get("worker") for x in gw.log_lines() if x["event"] == "http_request_completed"}
        assert served == {0, 1}
        listeners = [
            x.get("worker") for x in gw.log_lines() if x["event"] == "schema_listener_connect_succeeded"
        ]
        assert sorted(listeners) == [0, 1]  # one LISTEN connection each
    finally:
        stop_gateway(gw)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_worker(started: Gw, sig: int) -> None:
    gw = started
    workers = _workers_of(gw)
    for pid in workers:  # forked, never exec'd with a secret: argv is the supervisor's
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert gw.secret.encode() not in cmdline and b"authenticator" not in cmdline
    assert stop_gateway_with(gw, sig) == 0
    assert all(_gone(pid) for pid in workers)
    events = [x["event"] for x in gw.log_lines()]
    assert events.count("gateway_server_stopped") == 2


def stop_gateway_with(gw: Gw, sig: int) -> int:
    gw.proc.send_signal(sig)
    return gw.proc.wait(timeout=30)


def test_workers_die_with_a_killed_supervisor(started: Gw) -> None:
    gw = started
    workers = _workers_of(gw)
    gw.proc.kill()
    gw.proc.wait(timeout=10)
    wait_until(lambda: all(_gone(pid) for pid in workers), timeout=20, what="orphaned workers to exit")


def test_a_dead_worker_stops_the_service(started: Gw) -> None:
    gw = started
    first, second = _workers_of(gw)
    os.kill(first, signal.SIGKILL)
    assert gw.proc.wait(timeout=30) == 1
    assert _gone(second)
    exited = [x for x in gw.log_lines() if x["event"] == "gateway_worker_exited"]
    assert [(x["pid"], x["exit_code"]) for x in exited] == [(first, -signal.SIGKILL)]
