"""Rough throughput of a trivial RPC through the gateway (no gating): `python -m tests.gateway.bench_rpc`.

16 threads, each with its own httpx client, POST /rpc/t_add for 5 s against a gateway subprocess
(pool of 10) over a throw-away database. Prints requests/s and latency percentiles. The clients
share the machine with the gateway and PostgreSQL, so this is a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.gateway.conftest import install_fixtures, start_gateway, stop_gateway
from waybill import testing


def run(clients: int, seconds: float, path: str) -> dict:
    with testing.test_cluster() as cluster:
        testing.build_template(cluster)
        name = f"gw_bench_{secrets.token_hex(3)}"
        cluster.create_database(name, template=testing.TEMPLATE_DB)
        try:
            install_fixtures(cluster.url(name))
            log = Path(tempfile.mkdtemp()) / "gateway.log"
            gw = start_gateway(cluster, name, log, log_level="warning")
            try:
                cpu0 = _cpu_seconds(gw.proc.pid)
                result = _load(gw.base_url, gw.token("service"), clients, seconds, path)
                result["gateway_cpu_cores"] = round((_cpu_seconds(gw.proc.pid) - cpu0) / result["seconds"], 2)
                return result
            finally:
                stop_gateway(gw)
        finally:
            cluster.drop_database(name)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to see whether the gateway is the bottleneck."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(base_url: str, token: str, clients: int, seconds: float, path: str) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_line = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as c:
            c.post(path, json={"a": 1, "b": 2})  # connect + warm up
            start_line.wait()
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                r = c.post(path, json={"a": i, "b": 2})
                latencies[i].append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 60  # provisional, until everyone is at the line
    start_line.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    all_lat = sorted(x for lat in latencies for x in lat)
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(all_lat),
        "errors": sum(errors),
        "requests_per_s": round(len(all_lat) / elapsed, 1),
        "p50_ms": round(statistics.median(all_lat) * 1000, 2),
        "p99_ms": round(all_lat[int(len(all_lat) * 0.99) - 1] * 1000, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--path", default="/rpc/t_add")
    args = p.parse_args()
    print(run(args.clients, args.seconds, args.path))


if __name__ == "__main__":
    main()
