"""The metrics bench's HTTP part: each endpoint through gateway/, latency at 1 client beside
/rpc/health_db and requests/s at --clients paired with it (`http_bench`); each endpoint's function
called in the database, its backend CPU per call (`server_times`); and both before and after one
migration, interleaved (`ab_bench`, --ab).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import HOST, gateway
from bench.http_clients import RawHttp
from bench.metrics_data import log
from bench.metrics_targets import AnswerCache, sql_call, targets
from bench.metrics_triggers import backend_cpu_s


# -- HTTP -----------------------------------------------------------------------------------------
def header_block(port: int, token: str | None) -> bytes:
    lines = [f"Host: {HOST}:{port}", "User-Agent: waybill-bench", "Accept: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def latencies(
    port: int, blocks: dict, target: str, role: str | None, n: int
) -> tuple[list[float], list[float]]:
    """n sequential requests to target, each followed by one to /rpc/health_db on a second
    connection: the endpoint's and health_db's latencies under the same (shared-machine) load."""
    http, base = RawHttp(port, blocks[role]), RawHttp(port, blocks[None])
    await http.open()
    await base.open()
    try:
        for _ in range(max(5, n // 10)):  # warm-up: connection, pool, plans
            status, body = await http.get(target)
            assert status == 200, (target, status, body[:300])
            await base.get("/rpc/health_db")
        out, ref = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            status, _ = await http.get(target)
            out.append((time.perf_counter() - t0) * 1000)
            assert status == 200
            t0 = time.perf_counter()
            status, _ = await base.get("/rpc/health_db")
            ref.append((time.perf_counter() - t0) * 1000)
            assert status == 200
        return out, ref
    finally:
        await http.close()
        await base.close()


async def throughput(
    port: int, blocks: dict, target: str, role: str | None, clients: int, seconds: float
) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        http = RawHttp(port, blocks[role])
        await http.open()
        try:
            while time.perf_counter() < stop:
                status, _ = await http.get(target)
                assert status == 200
                done += 1
        finally:
            await http.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    return done / (time.perf_counter() - t0)


def pctl(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]


def http_bench(cluster, db: str, args: argparse.Namespace) -> dict:
    from waybill.auth import mint

    secret = secrets.token_urlsafe(40)
    plan = targets(cluster.url(db))
    if getattr(args, "endpoints", None):  # iterating on a few: health_db (the reference) always stays
        wanted = args.endpoints.split(",")
        plan = {k: v for k, v in plan.items() if k == "health_db" or any(w in k for w in wanted)}
    results: dict = {}
    with (
        tempfile.TemporaryDirectory() as logs,
        gateway(cluster.url(db, user="authenticator"), secret, Path(logs) / "gateway.log",
                ["--pool-size", "16", "--log-level", "warning"]) as (_, port),
    ):  # fmt: skip
        blocks = {
            None: header_block(port, None),
            "admin": header_block(port, mint(secret, "admin", None, 24 * 3600)),
        }
        cache = AnswerCache(cluster.url(db), plan)
        for name, (target, role) in plan.items():
            cache.prepare(name)
            ms, ref = asyncio.run(latencies(port, blocks, target, role, args.requests))
            results[name] = {"target": target, "p50_ms": pctl(ms, 0.5), "p95_ms": pctl(ms, 0.95),
                             "p99_ms": pctl(ms, 0.99), "mean_ms": statistics.fmean(ms),
                             "health_db_p50_ms": pctl(ref, 0.5), "health_db_p95_ms": pctl(ref, 0.95)}  # fmt: skip
            log(f"{name:<26} 1 client: p50 {results[name]['p50_ms']:.2f}  p95 {results[name]['p95_ms']:.2f}"
                f"  p99 {results[name]['p99_ms']:.2f} ms (health_db interleaved: p50 {pctl(ref, 0.5):.2f}"
                f"  p95 {pctl(ref, 0.95):.2f})")  # fmt: skip
        health = plan["health_db"]
        for rnd in range(args.rounds):
            for name, (target, role) in plan.items():
                if name == "health_db":
                    continue
                # paired: health_db right before the endpoint, so that the ratio compares two slots
                # of the same few seconds (the host's load drifts from one endpoint to the next)
                base = asyncio.run(throughput(port, blocks, *health, args.clients, args.seconds))
                results["health_db"].setdefault("rps_runs", []).append(base)
                cache.prepare(name)
                rps = asyncio.run(throughput(port, blocks, target, role, args.clients, args.seconds))
                results[name].setdefault("rps_runs", []).append(rps)
                results[name].setdefault("ratio_runs", []).append(rps / base)
            log(f"throughput round {rnd + 1}/{args.rounds} done")
    for r in results.values():
        r["rps"] = statistics.median(r["rps_runs"])
        r["ratio_to_health_db"] = statistics.median(r.get("ratio_runs", [1.0]))
    return results


def server_times(url: str, plan: dict[str, tuple[str, str | None]], calls: int) -> dict:
    """Each endpoint's function called in the database as admin (no HTTP, no gateway): wall time and
    the backend's CPU per call (/proc), interleaved with api.health_db() in 4 rounds."""
    out: dict = {}
    with psycopg.connect(url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        conn.execute("set role admin")
        conn.execute("""select set_config('request.jwt.claims', '{"role": "admin"}', false)""")
        queries = {name: sql_call(target) for name, (target, _) in plan.items()}
        cache = AnswerCache(url, plan)
        for name, (q, a) in queries.items():
            cache.prepare(name)
            for _ in range(5):  # warm-up: this session's plans
                conn.execute(q, a).fetchone()
        walls: dict[str, list[float]] = {k: [] for k in queries}
        cpus = dict.fromkeys(queries, 0.0)
        for _ in range(4):
            for name, (q, a) in queries.items():
                cache.prepare(name)
                c0 = backend_cpu_s(pid)
                for _ in range(max(1, calls // 4)):
                    t0 = time.perf_counter()
                    conn.execute(q, a).fetchone()
                    walls[name].append((time.perf_counter() - t0) * 1000)
                cpus[name] += backend_cpu_s(pid) - c0
        for name in queries:
            out[name] = {"median_ms": statistics.median(walls[name]),
                         "cpu_ms_per_call": cpus[name] * 1000 / len(walls[name])}  # fmt: skip
            log(f"{name:<26} in the database: median {out[name]['median_ms']:.2f} ms, "
                f"backend CPU {out[name]['cpu_ms_per_call']:.2f} ms per call")  # fmt: skip
    return out


def ab_bench(cluster, db: str, args: argparse.Namespace) -> dict:
    """The HTTP part before and after one migration on the same data, interleaved (B, A, B, A …):
    the migration rolled back with yoyo, measured, applied again, measured."""
    from waybill import migrate

    url = cluster.url(db)
    out: dict = {"before": [], "after": []}
    for rnd in range(args.ab_rounds):
        for mode in ("before", "after"):
            with psycopg.connect(url) as conn:
                applied = conn.execute(
                    "select exists (select 1 from _yoyo_migration where migration_id = %s)", [args.ab]
                ).fetchone()[0]
            if applied != (mode == "after"):
                t0 = time.perf_counter()
                migrate.apply_step(url, args.ab, rollback=mode == "before")
                log(
                    f"{'rolled back' if mode == 'before' else 'applied'} {args.ab} in {time.perf_counter() - t0:.1f} s"
                )
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("vacuum (analyze) metrics.leaderboard")
            log(f"round {rnd + 1}/{args.ab_rounds}: {mode} (load average {os.getloadavg()[0]:.1f})")
            out.setdefault(f"{mode}_server", []).append(server_times(url, targets(url), args.server_calls))
            out[mode].append(http_bench(cluster, db, args))
    return out
