"""`python -m bench.metrics`: the metrics endpoints at scale (issue 11 §6), over HTTP through gateway/.

1. Seeds a throw-away cluster (or --data-dir, kept) with `waybill seed` (default 1,050,000 orders ≈
   1,000,000 assignments, 10,000 agents, 2,000 zip codes), VACUUM (ANALYZE).
2. Times each materialized view's refresh (REFRESH … CONCURRENTLY through metrics.refresh, median of
   --refresh-runs) and the rollup rebuild.
3. Starts gateway/ (secret passed by environment, never argv) and measures each endpoint:
   latency P50/P95/P99 at 1 client (--requests sequential requests, after a warm-up, each followed by
   a GET /rpc/health_db on a second connection so that both see the same load), and requests/s
   at --clients concurrent clients (keep-alive, asyncio) for --seconds, each endpoint right after
   GET /rpc/health_db for as long: the ratio endpoint ÷ health_db is the median over --rounds of
   these pairs, each taken under the same few seconds' load.
4. The rollup triggers' extra backend CPU per transition: --transitions accept/pick-up/transit/deliver
   steps on one connection with the _500_metrics_rollup* triggers enabled and disabled, alternating
   batches, CPU of the server backend from /proc.
5. The same in the lifecycle bench (where issue 11 §6 asks for it): bench/lifecycle_clients.py's clients at
   --lifecycle-clients, triggers enabled and disabled in interleaved slices, every transition of
   the lifecycle counted.

With --ab MIGRATION, parts 3 and 4 (or the one --only names) are measured with the migration rolled
back (before) and applied again (after), --ab-rounds pairs interleaved; the HTTP part then also
reports each function's backend CPU per call in the database.

Prints a table and writes JSON to bench/results/metrics-<time>.json. Never gates anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from bench.common import HOST, gateway
from bench.http_clients import RawHttp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TRIGGERS = ("_500_metrics_rollup_offer", "_500_metrics_rollup_transition")


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


# -- the database ---------------------------------------------------------------------------------
@contextlib.contextmanager
def cluster_for(args: argparse.Namespace) -> Iterator:
    from waybill import testing
    from waybill.cluster import Cluster

    if args.data_dir:
        c = Cluster(Path(args.data_dir))
        c.start()
        try:
            yield c
        finally:
            c.stop()
        return
    with testing.test_cluster() as c:
        yield c


def prepare(cluster, args: argparse.Namespace) -> str:
    from waybill import migrate, seed

    db = "waybill_bench_metrics"
    cluster.create_database(db)
    url = cluster.url(db)
    if not getattr(args, "no_migrate", False):
        migrate.apply(url)
    if not args.no_seed:
        log(f"seeding {args.orders:,} orders, {args.agents:,} agents, {args.zips:,} zip codes ...")
        t0 = time.perf_counter()
        print(seed.seed(url, orders=args.orders, agents=args.agents, zips=args.zips), flush=True)
        log(f"seeded in {time.perf_counter() - t0:.0f} s; vacuum (analyze) ...")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("vacuum (analyze)")
    return db


def sizes(url: str) -> dict:
    with psycopg.connect(url) as conn:
        q = {
            "assignments": "select count(*) from core.shipping_assignments",
            "agents": "select count(*) from core.delivery_agents",
            "zip_codes": "select count(distinct zip_code) from core.shipping_assignments",
            "agent_daily_rows": "select count(*) from metrics.agent_daily",
            "zip_daily_rows": "select count(*) from metrics.zip_daily",
            "leaderboard_rows": "select count(*) from metrics.leaderboard",
        }
        return {k: conn.execute(v).fetchone()[0] for k, v in q.items()}


def refresh_times(url: str, runs: int) -> dict:
    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        views = [r[0] for r in conn.execute("select name from metrics.views order by name").fetchall()]
        for view in views:  # every view of the registry
            ms = [
                float(
                    conn.execute("select duration_ms from metrics.refresh(%s, 'bench')", [view]).fetchone()[0]
                )
                for _ in range(runs)
            ]
            out[view] = {"median_ms": statistics.median(ms), "runs_ms": ms}
            log(f"refresh {view}: median {statistics.median(ms):.0f} ms over {runs}")
        t0 = time.perf_counter()
        conn.execute("select metrics.rebuild_rollups()")
        out["rebuild_rollups"] = {"ms": (time.perf_counter() - t0) * 1000}
        log(f"rebuild_rollups: {out['rebuild_rollups']['ms']:.0f} ms")
        conn.execute("select metrics.refresh()")
        conn.execute(
            "vacuum (analyze) metrics.agent_daily, metrics.zip_daily, metrics.sla_summary, metrics.leaderboard"
        )
    return out


def targets(url: str) -> dict[str, tuple[str, str]]:
    """endpoint name -> (path?query, role) with realistic arguments from the data."""
    with psycopg.connect(url) as conn:
        # Not the trigger part's agent and zip code (trigger_cpu: the lowest-id active agent): on a
        # kept data directory its synthetic deliveries pile up run after run (32,000 assignments,
        # 129,000 history rows after a few runs), an outlier no seeded agent resembles.
        synthetic = conn.execute(
            "select d.id, d.serviceable_zip_codes[1] from core.delivery_agents d"
            " where d.status = 'ACTIVE' order by d.id limit 1"
        ).fetchone()
        busy = conn.execute(
            "select agent_id from metrics.leaderboard where window_days = 30 and agent_id <> %s"
            " order by delivered desc limit 1",
            [synthetic[0]],
        ).fetchone()[0]
        zip_code = conn.execute(
            "select zip_code from metrics.geographic_coverage where zip_code <> %s order by demand desc limit 1",
            [synthetic[1]],
        ).fetchone()[0]
        # a cursor deep in the busiest agent's history: page ~10 by keyset
        cursor = conn.execute(
            "select (extract(epoch from created_at) * 1000000)::bigint || ':' || id"
            " from core.assignment_status_history where agent_id = %s"
            " order by created_at desc, id desc offset 200 limit 1",
            [busy],
        ).fetchone()
        today = conn.execute("select metrics.utc_day(now())").fetchone()[0]
    frm, to = today - dt.timedelta(days=13), today - dt.timedelta(days=6)  # a non-standard week
    cached = answer_cache_shapes(frm, to, zip_code)
    return {
        "health_db": ("/rpc/health_db", None),
        "agent_metrics": (f"/rpc/agent_metrics?agent_id={busy}", "admin"),
        **cached,  # read from the answer cache (sql/325), as the worker keeps it
        # the same answered as on a miss: the cache empty, every request computed
        **{f"{name}_live": plan for name, plan in cached.items()},
        "geographic_coverage": ("/rpc/geographic_coverage?page=2", "admin"),
        "agent_activity": (
            f"/rpc/agent_activity?agent_id={busy}" + (f"&before={cursor[0]}" if cursor else ""),
            "admin",
        ),
    }


def answer_cache_shapes(frm: dt.date, to: dt.date, zip_code: str) -> dict[str, tuple[str, str]]:
    """The requests the answer cache serves (0026): every leaderboard, SLA summaries but an agent's."""
    return {
        "agent_leaderboard": ("/rpc/agent_leaderboard?sort_by=on_time_rate&page=3", "admin"),
        "agent_leaderboard_zip": (f"/rpc/agent_leaderboard?zip_code={zip_code}", "admin"),
        "agent_leaderboard_week": (f"/rpc/agent_leaderboard?from={frm}&to={to}", "admin"),
        "agent_leaderboard_week_zip": (
            f"/rpc/agent_leaderboard?from={frm}&to={to}&zip_code={zip_code}",
            "admin",
        ),
        "sla_summary": ("/rpc/sla_summary", "admin"),
        "sla_summary_week": (f"/rpc/sla_summary?from={frm}&to={to}", "admin"),
        "sla_summary_zip": (f"/rpc/sla_summary?zip_code={zip_code}", "admin"),
        "sla_summary_week_zip": (f"/rpc/sla_summary?from={frm}&to={to}&zip_code={zip_code}", "admin"),
    }


def sql_call(target: str) -> tuple[str, list[str]]:
    """The api function call an HTTP target makes, as SQL with its arguments."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(target)
    fn = parts.path.rsplit("/", 1)[1]
    args = parse_qsl(parts.query)
    named = ", ".join(f'"{k}" => %s' for k, _ in args)
    return f"select api.{fn}({named})::text", [v for _, v in args]


class AnswerCache:
    """Puts the answer cache in the state a shape is measured in: its entry filled (as the
    worker would, from the key its miss sends) or its entry deleted (`_live`: each request a miss)."""

    def __init__(self, url: str, plan: dict[str, tuple[str, str | None]]) -> None:
        self.url = url
        self.keys: dict[str, str] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            self.present = conn.execute("select to_regclass('metrics.answer_cache') is not null").fetchone()[
                0
            ]
            if not self.present:  # before migration 0026 (an A/B run): nothing to prepare
                return
            channel = conn.execute("select metrics.answer_cache_channel()").fetchone()[0]
            conn.execute("delete from metrics.answer_cache")  # every shape a miss: it sends its key
            conn.execute(f"listen {channel}")
            for name, (target, _) in plan.items():
                if f"{name}_live" in plan:
                    q, a = sql_call(target)
                    with conn.transaction():
                        conn.execute("set local role admin")
                        conn.execute(q, a)
                    self.keys[name] = next(conn.notifies(timeout=0, stop_after=1)).payload

    def prepare(self, name: str) -> None:
        if not self.present:
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            if name in self.keys:
                conn.execute("select metrics.fill_answer_cache(%s)", [self.keys[name]])
            elif name.endswith("_live"):  # only this request's entry: the others stay (no churn)
                conn.execute(
                    "delete from metrics.answer_cache where key = %s", [self.keys[name.removesuffix("_live")]]
                )


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


# -- trigger CPU ------------------------------------------------------------------------------------
def backend_cpu_s(pid: int) -> float:
    """The backend's CPU time: /proc/<pid>/schedstat's run time (nanoseconds; utime + stime in
    /proc/<pid>/stat count whole clock ticks, 10 ms, against a batch of ~0.6 s), stat where absent."""
    sched = Path(f"/proc/{pid}/schedstat")
    if sched.exists():
        return int(sched.read_text().split()[0]) / 1e9
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rollup_triggers(conn: psycopg.Connection, on: bool) -> None:
    """Enable or disable the two rollup triggers (the parts that price them; always re-enabled after)."""
    verb = "enable" if on else "disable"
    conn.execute(";".join(f"alter table core.shipping_assignments {verb} trigger {t}" for t in TRIGGERS))


def trigger_cpu(url: str, transitions: int, batches: int) -> dict:
    """CPU of the backend per transition (accept, pick up, in transit, deliver) with and without
    the rollup triggers, alternating batches so both see the same background load."""
    per_batch = max(4, transitions // (2 * batches) // 4 * 4)
    out: dict = {"with": [], "without": []}
    with psycopg.connect(url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        zip_agent = conn.execute(
            "select d.id, d.serviceable_zip_codes[1] from core.delivery_agents d where d.status = 'ACTIVE' order by d.id limit 1"
        ).fetchone()
        agent, zip_code = zip_agent
        customer = conn.execute("select id from core.customers order by id limit 1").fetchone()[0]
        seller = conn.execute("select id from core.sellers order by id limit 1").fetchone()[0]

        def offers(n: int) -> list[int]:
            ids = []
            for _ in range(n):
                o = conn.execute(
                    "select id from core.create_order(%s, %s, %s, 1000, 'EUR')", [customer, seller, zip_code]
                ).fetchone()[0]
                p = conn.execute("select id from core.payments where order_id = %s", [o]).fetchone()[0]
                conn.execute("select core.capture_payment(%s, %s)", [p, f"bench_{o}"])
                conn.execute("select core.confirm_order(%s)", [o])
                ids.append(conn.execute("select id from core.offer_assignment(%s)", [o]).fetchone()[0])
            return ids

        for b in range(2 * batches):
            mode = "with" if b % 2 == 0 else "without"
            todo = offers(per_batch // 4)
            rollup_triggers(conn, mode == "with")
            c0, t0 = backend_cpu_s(pid), time.perf_counter()
            for a in todo:
                conn.execute("select core.accept_assignment(%s, %s)", [a, agent])
                for s in ("PICKED_UP", "IN_TRANSIT", "DELIVERED"):
                    conn.execute("select core.advance_assignment(%s, %s, %s)", [a, s, agent])
            cpu, wall = backend_cpu_s(pid) - c0, time.perf_counter() - t0
            out[mode].append({"transitions": 4 * len(todo), "cpu_us": cpu / (4 * len(todo)) * 1e6,
                              "wall_us": wall / (4 * len(todo)) * 1e6})  # fmt: skip
        rollup_triggers(conn, True)
    w = statistics.median(x["cpu_us"] for x in out["with"])
    wo = statistics.median(x["cpu_us"] for x in out["without"])
    out["summary"] = {"cpu_us_with": w, "cpu_us_without": wo, "extra_pct": (w - wo) / wo * 100 if wo else None,
                      "wall_us_with": statistics.median(x["wall_us"] for x in out["with"]),
                      "wall_us_without": statistics.median(x["wall_us"] for x in out["without"])}  # fmt: skip
    extra = out["summary"]["extra_pct"]
    log(f"rollup triggers: backend CPU per transition {w:.0f} µs with, {wo:.0f} µs without "
        f"({'n/a' if extra is None else f'{extra:+.1f} %'})")  # fmt: skip
    return out


def trigger_ab(url: str, migration: str, runs: int, transitions: int, batches: int) -> dict:
    """trigger_cpu with `migration` rolled back (before) and applied again (after), interleaved
    before, after, before, after ... on the same data; the load average beside each measurement."""
    from waybill import migrate

    out: dict = {"migration": migration, "runs": []}
    for _ in range(runs):
        pair = {}
        for mode in ("before", "after"):
            migrate.apply_step(url, migration, rollback=mode == "before")
            load = os.getloadavg()[0]
            log(f"{migration} {'rolled back' if mode == 'before' else 'applied'} (load {load:.1f})")
            pair[mode] = trigger_cpu(url, transitions, batches)["summary"] | {"load_before": load,
                                                                              "load_after": os.getloadavg()[0]}  # fmt: skip
        out["runs"].append(pair)
    return out


def trigger_lifecycle(url: str, levels: list[int], slices: int, seconds: float) -> dict:
    """The rollup triggers' cost where issue 11 §6 asks for it, in the lifecycle bench: its clients
    (bench/lifecycle_clients.py: orders, payments and assignments of a small world of agents and zip codes
    added to this database, each transition its own transaction) run with the triggers enabled and
    disabled, in `slices` interleaved slices of `seconds` each per mode at each client count (the
    order of the two modes alternating slice by slice). Backend CPU and throughput per transition,
    every lifecycle transition counted (not only the assignments')."""
    from bench.lifecycle_slices import run_slice, summarise
    from bench.lifecycle_world import build_world

    def enable(on: bool) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            rollup_triggers(conn, on)

    world = build_world(url)
    out: dict = {"slices": slices, "seconds_per_slice": seconds, "levels": []}
    try:
        for n in levels:
            parts: dict[bool, list] = {True: [], False: []}
            for k in range(slices):
                for on in (True, False) if k % 2 == 0 else (False, True):
                    enable(on)
                    parts[on].append(run_slice(url, "lifecycle", world, n, seconds, 1000 * n + k, 1))
            level: dict = {"clients": n}
            for on, key in ((True, "with"), (False, "without")):
                summary, _ = summarise("lifecycle", n, parts[on])
                level[key] = {"cpu_us": summary["backend_cpu_us_per_op"], "per_s": summary["ops_per_s"],
                              "errors": summary["errors"]}  # fmt: skip
            w, wo = level["with"]["cpu_us"], level["without"]["cpu_us"]
            level["extra_pct"] = (w - wo) / wo * 100 if w and wo else None
            log(f"lifecycle, {n} client(s): backend CPU per transition {w} µs with the rollup triggers, "
                f"{wo} µs without; {level['with']['per_s']:.0f} vs {level['without']['per_s']:.0f} transitions/s")  # fmt: skip
            out["levels"].append(level)
    finally:
        enable(True)
    return out


# -- output ---------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    lines = [
        f"Data: {res['sizes']['assignments']:,} assignments, {res['sizes']['agents']:,} agents, "
        f"{res['sizes']['zip_codes']:,} zip codes; rollups {res['sizes']['agent_daily_rows']:,} agent-days, "
        f"{res['sizes']['zip_daily_rows']:,} zip-days.",
    ]
    if "http" in res:
        lines += [
            "",
            f"| endpoint (GET, admin) | P50 ms | P95 ms | P99 ms | health_db P50 / P95 ms (interleaved) "
            f"| req/s at {res['args']['clients']} clients | ÷ health_db |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for name, r in res["http"].items():
            how = (
                " computed (cache empty)"
                if name.endswith("_live")
                else " cached"
                if f"{name}_live" in res["http"]
                else ""
            )
            lines.append(f"| `{r['target']}`{how} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['health_db_p50_ms']:.2f} / {r['health_db_p95_ms']:.2f} | "
                         f"{r['rps']:,.0f} | {r['ratio_to_health_db']:.2f} |")  # fmt: skip
    if "refresh" in res:
        lines += ["", "| refresh | median ms |", "|---|--:|"]
        for view in res["refresh"]:
            if view == "rebuild_rollups":
                continue
            lines.append(f"| `metrics.{view}` | {res['refresh'][view]['median_ms']:,.0f} |")
        lines.append(f"| `metrics.rebuild_rollups()` | {res['refresh']['rebuild_rollups']['ms']:,.0f} |")
    if "ab" in res:
        lines += [
            "",
            f"Before / after `{res['args']['ab']}`, {len(res['ab']['after'])} interleaved rounds (medians):",
            "",
            "| endpoint (GET, admin) | backend CPU ms per call (in the database) before / after "
            "| HTTP P50 ms before / after | P95 ms before / after | ÷ health_db before / after |",
            "|---|--:|--:|--:|--:|",
        ]
        for name, r in res["ab"]["after"][0].items():
            b = [run[name] for run in res["ab"]["before"]]
            a = [run[name] for run in res["ab"]["after"]]

            def med(runs: list[dict], key: str) -> float:
                return statistics.median(x[key] for x in runs)

            bs = [run[name] for run in res["ab"]["before_server"]]
            as_ = [run[name] for run in res["ab"]["after_server"]]
            lines.append(f"| `{r['target']}` | {med(bs, 'cpu_ms_per_call'):.2f} / {med(as_, 'cpu_ms_per_call'):.2f} | "
                         f"{med(b, 'p50_ms'):.2f} / {med(a, 'p50_ms'):.2f} | "
                         f"{med(b, 'p95_ms'):.2f} / {med(a, 'p95_ms'):.2f} | "
                         f"{med(b, 'ratio_to_health_db'):.2f} / {med(a, 'ratio_to_health_db'):.2f} |")  # fmt: skip
    if "triggers_ab" in res:
        ab = res["triggers_ab"]
        lines += ["", f"| run | before {ab['migration']} with / without µs | extra | after | extra | load |",
                  "|---|--:|--:|--:|--:|---|"]  # fmt: skip
        for i, r in enumerate(ab["runs"], 1):
            b, a = r["before"], r["after"]
            lines.append(f"| {i} | {b['cpu_us_with']:.0f} / {b['cpu_us_without']:.0f} | {b['extra_pct']:+.1f} % | "
                         f"{a['cpu_us_with']:.0f} / {a['cpu_us_without']:.0f} | {a['extra_pct']:+.1f} % | "
                         f"{b['load_before']:.1f}–{a['load_after']:.1f} |")  # fmt: skip
    if "triggers" in res:
        s = res["triggers"]["summary"]
        extra = "n/a" if s["extra_pct"] is None else f"{s['extra_pct']:+.1f} %"
        lines += ["", f"Rollup triggers: backend CPU per transition {s['cpu_us_with']:.0f} µs with, "
                  f"{s['cpu_us_without']:.0f} µs without: {extra}."]  # fmt: skip
    if "triggers_lifecycle" in res:
        lines += ["", "| lifecycle bench, clients | backend CPU µs per transition with / without the rollup triggers "
                  "| extra | transitions/s with / without |", "|--:|--:|--:|--:|"]  # fmt: skip
        for lvl in res["triggers_lifecycle"]["levels"]:
            w, wo = lvl["with"], lvl["without"]
            extra = "n/a" if lvl["extra_pct"] is None else f"{lvl['extra_pct']:+.1f} %"
            lines.append(f"| {lvl['clients']} | {w['cpu_us']} / {wo['cpu_us']} | {extra} | "
                         f"{w['per_s']:.0f} / {wo['per_s']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=1_050_000)
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--zips", type=int, default=2_000)
    p.add_argument("--data-dir", help="keep the cluster here (and reuse it with --no-seed)")
    p.add_argument("--no-seed", action="store_true")
    p.add_argument("--requests", type=int, default=300, help="sequential requests per endpoint at 1 client")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0, help="per endpoint and round at --clients")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--refresh-runs", type=int, default=3)
    p.add_argument("--transitions", type=int, default=8000)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--lifecycle-clients", default="1,8,32", help="the lifecycle part's client counts")
    p.add_argument(
        "--lifecycle-slices", type=int, default=4, help="interleaved slices per mode and client count"
    )
    p.add_argument("--lifecycle-seconds", type=float, default=2.0, help="seconds per slice")
    p.add_argument(
        "--only", choices=("triggers", "lifecycle", "http"), help="measure only this part (iterating)"
    )
    p.add_argument(
        "--endpoints", help="with http: only the endpoints whose name contains one of these (comma-separated)"
    )
    p.add_argument(
        "--ab",
        metavar="MIGRATION",
        help="before/after this migration (rolled back, then applied; e.g. 0019.metrics_read_fast,"
        " 0020.rollup_lean), interleaved --ab-rounds times, for each part measured: HTTP (with --data-dir;"
        " ends applied) and the rollup triggers",
    )
    p.add_argument("--ab-rounds", type=int, default=2, help="with --ab: before/after pairs")
    p.add_argument(
        "--server-calls", type=int, default=200, help="with --ab: calls per function in the database"
    )
    p.add_argument(
        "--no-migrate",
        action="store_true",
        help="with --data-dir: measure the database as it is (a migration rolled back: the before of a before/after)",
    )
    args = p.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    with cluster_for(args) as cluster:
        db = prepare(cluster, args)
        url = cluster.url(db)
        res = {"started": started.isoformat(), "args": vars(args), "sizes": sizes(url)}
        log(f"sizes: {res['sizes']}")
        if args.only is None:
            res["refresh"] = refresh_times(url, args.refresh_runs)
        if args.only in (None, "http"):
            if args.ab:
                res["ab"] = ab_bench(cluster, db, args)
            else:
                res["http"] = http_bench(cluster, db, args)
        if args.only in (None, "triggers") and args.ab:
            res["triggers_ab"] = trigger_ab(url, args.ab, args.ab_rounds, args.transitions, args.batches)
        elif args.only in (None, "triggers"):
            res["triggers"] = trigger_cpu(url, args.transitions, args.batches)
        if args.only in (None, "lifecycle") and not args.ab:
            levels = [int(x) for x in args.lifecycle_clients.split(",")]
            res["triggers_lifecycle"] = trigger_lifecycle(
                url, levels, args.lifecycle_slices, args.lifecycle_seconds
            )
    text = markdown(res)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"metrics-{'ab-' if args.ab else ''}{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(res, indent=2, default=str))
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
