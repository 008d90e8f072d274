"""Dispatcher throughput and latency: deliveries/s end to end vs the two ceilings, commit -> POST latency.

All in one run, against a loopback receiver that answers 200 at once (bench/fast_receiver.py, its own
process):

    claim_complete  the SQL path with no HTTP: workers claim 50 (claim_deliveries) and record each
                    row as a 200 (record_attempt), one round trip per row (the dispatcher until
                    2026-11-30)
    claim_batched   the same, each claimed batch recorded in one pipelined round trip (the dispatcher
                    now) — the database ceiling
    httpx_loop      a bare httpx client loop POSTing the same bodies to the receiver, 100 at a time,
                    no database — the HTTP ceiling the dispatcher had with httpx
    client_loop     the same loop with the dispatcher's own client (dispatcher/http11.py) — its HTTP
                    ceiling now
    dispatcher_1/2  real `waybill dispatcher` processes (1, then 2) draining the same number of
                    deliveries, from the commit that created them to the last DELIVERED
    latency         one idle dispatcher; events committed one at a time; commit -> arrival at the
                    receiver (p50, p99)
    seed_load       the plan's load (100 webhooks/min) for a while; the largest backlog seen

    python -m bench.dispatch                      # throw-away cluster; ~1-2 minutes
    python -m bench.dispatch --deliveries 20000 --markdown
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.common import RESULTS_DIR
from dispatcher.queries import q
from waybill import testing
from waybill.cluster import free_port
from waybill.settings import PROJECT_ROOT

DATA = {  # an order.confirmed-sized payload (~450 bytes)
    "id": 0, "customerId": 195, "sellerId": 7, "shipToZip": "47010", "amount": 6299, "currency": "EUR",
    "status": "CONFIRMED", "version": 2, "createdAt": "2026-09-04T16:21:44.671038Z",
    "updatedAt": "2026-11-30T15:42:16.719365Z", "confirmedAt": "2026-11-30T15:42:16.719365Z",
    "shippedAt": None, "deliveredAt": None, "cancelledAt": None,
}  # fmt: skip


def _log(msg: str) -> None:
    print(f"[bench.dispatch {dt.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def as_user(url: str, user: str) -> str:
    return make_conninfo(**(conninfo_to_dict(url) | {"user": user}))


@contextmanager
def receiver() -> Any:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fast_receiver", "--port", str(port)], cwd=PROJECT_ROOT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/stats", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("fast receiver did not start") from None
            time.sleep(0.05)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def subscribe(conn: psycopg.Connection, url: str, types: list[str]) -> int:
    with conn.transaction():
        conn.execute("select set_config('request.jwt.claims', '{\"role\": \"admin\"}', true)")
        conn.execute("set local role admin")
        return conn.execute("select api.create_webhook_subscription(%s, %s)", [url, types]).fetchone()[0][
            "id"
        ]


_batch = [0]


def fill(conn: psycopg.Connection, events: int, event_type: str = "order.confirmed") -> float:
    """Commit `events` events (x the matching subscriptions' deliveries) in one transaction; its commit time."""
    _batch[0] += 1
    conn.execute(
        "select count(webhooks.emit(%s, g, %s || g, %s::jsonb || jsonb_build_object('id', g), now()))"
        " from generate_series(1, %s) g",
        [event_type, f"bench:{os.getpid()}:{_batch[0]}:", json.dumps(DATA), events],
    )
    return time.time()


def backlog(conn: psycopg.Connection) -> int:
    return conn.execute(
        "select count(*) from webhooks.deliveries where status in ('PENDING', 'SENDING')"
    ).fetchone()[0]


def wait_drained(conn: psycopg.Connection, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while backlog(conn):
        if time.monotonic() > deadline:
            raise RuntimeError("the outbox did not drain")
        time.sleep(0.02)
    return time.time()


# -- ceilings ------------------------------------------------------------------------------------


async def _claim_complete(disp_url: str, workers: int, batched: bool) -> int:
    import psycopg as pg

    done = 0

    async def work(i: int) -> None:
        nonlocal done
        async with await pg.AsyncConnection.connect(disp_url, autocommit=True) as conn:
            while True:
                now = dt.datetime.now(dt.UTC)
                params = {"dispatcher": f"ceiling-{i}", "limit": 50, "lease": dt.timedelta(seconds=20),
                          "per_subscription": 10, "now": now}  # fmt: skip
                rows = await (await conn.execute(q("claim_deliveries"), params)).fetchall()
                if not rows:
                    return
                params = [{
                    "delivery_id": r[0], "dispatcher": f"ceiling-{i}", "lease_token": r[6],
                    "started_at": now, "duration_ms": 1, "status_code": 200, "error_class": None,
                    "snippet": "ok", "retry_after": None, "now": dt.datetime.now(dt.UTC)} for r in rows]  # fmt: skip
                if batched:
                    await conn.cursor().executemany(q("record_attempt"), params)
                else:
                    for p in params:
                        await conn.execute(q("record_attempt"), p)
                done += len(rows)

    await asyncio.gather(*(work(i) for i in range(workers)))
    return done


def claim_complete(
    conn: psycopg.Connection, disp_url: str, n_events: int, workers: int = 4, batched: bool = False
) -> dict:
    fill(conn, n_events)
    started = time.perf_counter()
    done = asyncio.run(_claim_complete(disp_url, workers, batched))
    elapsed = time.perf_counter() - started
    return {"deliveries": done, "seconds": round(elapsed, 3), "per_s": round(done / elapsed)}


async def _httpx_loop(url: str, n: int, concurrency: int) -> None:
    body = json.dumps({"eventId": "x", "eventType": "order.confirmed", "data": DATA}).encode()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    left = [n]
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def work() -> None:
            while left[0] > 0:
                left[0] -= 1
                r = await client.post(url, content=body, headers={"webhook-id": "bench"})
                r.raise_for_status()

        await asyncio.gather(*(work() for _ in range(concurrency)))


async def _client_loop(url: str, n: int, concurrency: int) -> None:
    from dispatcher.client import Poster
    from dispatcher.guard import parse_allowlist

    body = json.dumps({"eventId": "x", "eventType": "order.confirmed", "data": DATA}).encode()
    poster = Poster(parse_allowlist("127.0.0.1/32"), "bench", max_connections=concurrency)
    left = [n]

    async def work() -> None:
        while left[0] > 0:
            left[0] -= 1
            out = await poster.post(url, body, {"webhook-id": "bench"})
            if not out.ok:
                raise RuntimeError(f"client_loop: {out}")

    try:
        await asyncio.gather(*(work() for _ in range(concurrency)))
    finally:
        await poster.aclose()


def client_loop(url: str, n: int, concurrency: int = 100) -> dict:
    import uvloop

    started = time.perf_counter()
    uvloop.run(_client_loop(url + "/s0", n, concurrency))
    elapsed = time.perf_counter() - started
    return {"posts": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed)}


def httpx_loop(url: str, n: int, concurrency: int = 100) -> dict:
    import uvloop

    started = time.perf_counter()
    uvloop.run(_httpx_loop(url + "/s0", n, concurrency))
    elapsed = time.perf_counter() - started
    return {"posts": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed)}


# -- the real daemon -------------------------------------------------------------------------------


def start_dispatchers(disp_url: str, k: int, log_dir: Path) -> list[subprocess.Popen]:
    env = dict(os.environ, WAYBILL_DISPATCHER_DATABASE_URL=disp_url, WAYBILL_WEBHOOK_ALLOWLIST="127.0.0.1/32",
               WAYBILL_LOG_LEVEL="warning")  # fmt: skip
    procs = []
    for i in range(k):
        out = open(log_dir / f"dispatcher-{i}.log", "ab")  # noqa: SIM115 - handed to the child
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "waybill", "dispatcher", "--name", f"bench-{i}", "--status-port", "0"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out))  # fmt: skip
    return procs


def stop_dispatchers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)


def wait_heartbeats(conn: psycopg.Connection, k: int) -> None:
    deadline = time.monotonic() + 30
    while (
        conn.execute(
            "select count(*) from webhooks.dispatchers where info ->> 'state' = 'running' and name like 'bench-%%'"
        ).fetchone()[0]
        < k
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("dispatchers did not start")
        time.sleep(0.05)
    time.sleep(0.5)  # let them go idle (armed)


def end_to_end(conn: psycopg.Connection, disp_url: str, n_events: int, k: int, log_dir: Path) -> dict:
    conn.execute("delete from webhooks.dispatchers")
    procs = start_dispatchers(disp_url, k, log_dir)
    try:
        wait_heartbeats(conn, k)
        subs = conn.execute(
            "select count(*) from webhooks.subscriptions where 'order.confirmed' = any(event_types)"
        )
        n = n_events * subs.fetchone()[0]
        committed = fill(conn, n_events)
        finished = wait_drained(conn)
    finally:
        stop_dispatchers(procs)
    return {"dispatchers": k, "deliveries": n, "seconds": round(finished - committed, 3),
            "per_s": round(n / (finished - committed))}  # fmt: skip


def latency(conn: psycopg.Connection, disp_url: str, base: str, events: int, log_dir: Path) -> dict:
    conn.execute("delete from webhooks.dispatchers")
    procs = start_dispatchers(disp_url, 1, log_dir)
    commits: dict[str, float] = {}
    try:
        wait_heartbeats(conn, 1)
        httpx.post(base + "/stats/reset")
        for _ in range(events):
            _batch[0] += 1
            event_id = conn.execute(
                "select webhooks.emit('order.cancelled', 1, %s, %s::jsonb, now())",
                [f"bench-latency:{os.getpid()}:{_batch[0]}", json.dumps(DATA)],
            ).fetchone()[0]
            commits[str(event_id)] = time.time()
            time.sleep(0.05)  # idle between events
        wait_drained(conn)
        arrivals = httpx.get(base + "/stats").json()["arrivals"]
    finally:
        stop_dispatchers(procs)
    ms = sorted((arrivals[i] - t) * 1000 for i, t in commits.items())
    return {"events": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2), "max_ms": round(ms[-1], 2)}  # fmt: skip


def seed_load(
    conn: psycopg.Connection, disp_url: str, seconds: float, per_minute: int, log_dir: Path
) -> dict:
    conn.execute("delete from webhooks.dispatchers")
    procs = start_dispatchers(disp_url, 1, log_dir)
    peak, sent = 0, 0
    try:
        wait_heartbeats(conn, 1)
        started = time.monotonic()
        next_at = started
        while time.monotonic() - started < seconds:
            if time.monotonic() >= next_at:
                _batch[0] += 1
                conn.execute(
                    "select webhooks.emit('order.cancelled', 1, %s, %s::jsonb, now())",
                    [f"bench-load:{os.getpid()}:{_batch[0]}", json.dumps(DATA)],
                )
                sent += 1
                next_at += 60 / per_minute
            peak = max(peak, backlog(conn))
            time.sleep(0.01)
        wait_drained(conn)
    finally:
        stop_dispatchers(procs)
    return {"per_minute": per_minute, "seconds": seconds, "events": sent, "max_backlog": peak}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deliveries", type=int, default=10_000, help="per throughput phase (default 10,000)")
    p.add_argument("--subscriptions", type=int, default=10, help="receivers' subscriptions (default 10)")
    p.add_argument("--latency-events", type=int, default=200)
    p.add_argument("--load-seconds", type=float, default=20.0)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    n_events = max(1, args.deliveries // args.subscriptions)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))  # the dispatchers' logs, if one fails
    results: dict[str, Any] = {"started": stamp, "cpus": os.cpu_count()}
    with testing.test_cluster() as cluster, receiver() as base:
        testing.build_template(cluster)
        cluster.drop_database("bench_dispatch")
        cluster.create_database("bench_dispatch", template=testing.TEMPLATE_DB)
        owner = cluster.url("bench_dispatch")
        disp_url = as_user(owner, "dispatcher")
        with psycopg.connect(owner, autocommit=True) as conn:
            for i in range(args.subscriptions):
                subscribe(conn, f"{base}/s{i}", ["order.confirmed"])
            subscribe(conn, f"{base}/latency", ["order.cancelled"])
            _log(f"claim_complete: {n_events * args.subscriptions} deliveries, no HTTP")
            results["claim_complete"] = claim_complete(conn, disp_url, n_events)
            _log(f"claim_batched: {n_events * args.subscriptions} deliveries, no HTTP")
            results["claim_batched"] = claim_complete(conn, disp_url, n_events, batched=True)
            _log(f"httpx_loop: {n_events * args.subscriptions} POSTs, no database")
            results["httpx_loop"] = httpx_loop(base, n_events * args.subscriptions)
            _log(f"client_loop: {n_events * args.subscriptions} POSTs, no database")
            results["client_loop"] = client_loop(base, n_events * args.subscriptions)
            for k in (1, 2):
                _log(f"dispatcher x{k}")
                results[f"dispatcher_{k}"] = end_to_end(conn, disp_url, n_events, k, log_dir)
            _log("latency while idle")
            results["latency"] = latency(conn, disp_url, base, args.latency_events, log_dir)
            _log("seed load: 100 webhooks/min")
            results["seed_load"] = seed_load(conn, disp_url, args.load_seconds, 100, log_dir)
        cluster.drop_database("bench_dispatch")
    for k in (1, 2):
        r = results[f"dispatcher_{k}"]
        for ceiling in ("claim_complete", "claim_batched", "httpx_loop", "client_loop"):
            r[f"vs_{ceiling}"] = round(r["per_s"] / results[ceiling]["per_s"], 2)
    out = RESULTS_DIR / f"dispatch-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if args.markdown:
        print(markdown(results))
    _log(f"wrote {out}; dispatcher logs in {log_dir}")
    return 0


def markdown(r: dict) -> str:
    rows = [
        "| what | deliveries/s | vs claim + batched complete | vs dispatcher's client loop |",
        "|---|---:|---:|---:|",
        f"| claim + complete a row per round trip, no HTTP (4 connections) | {r['claim_complete']['per_s']:,} | | |",
        f"| claim + batched complete, no HTTP (4 connections) | {r['claim_batched']['per_s']:,} | 1.00 | |",
        f"| bare httpx loop, no database (100 in flight) | {r['httpx_loop']['per_s']:,} | | |",
        f"| bare dispatcher client loop, no database (100 in flight) | {r['client_loop']['per_s']:,} | | 1.00 |",
    ]
    for k in (1, 2):
        d = r[f"dispatcher_{k}"]
        rows.append(f"| {k} dispatcher{'s' if k > 1 else ''}, end to end | {d['per_s']:,} | "
                    f"{d['vs_claim_batched']:.2f} | {d['vs_client_loop']:.2f} |")  # fmt: skip
    lat, load = r["latency"], r["seed_load"]
    rows += [
        "",
        f"Commit -> POST while idle ({lat['events']} events): p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, "
        f"max {lat['max_ms']} ms.",
        f"Seed load ({load['per_minute']}/min for {load['seconds']:.0f} s, {load['events']} events): "
        f"largest backlog {load['max_backlog']}.",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
