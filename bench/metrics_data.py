"""The metrics bench's database: the cluster it runs on (a throw-away one, or --data-dir kept),
seeded and vacuumed (`prepare`), the data's sizes, and each materialized view's refresh time and the
rollup rebuild's (`refresh_times`); with `log`, the timestamped progress line every part prints.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg


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
