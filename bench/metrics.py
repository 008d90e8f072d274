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

The parts, one module each beside this one: the cluster, the seed, the sizes and part 2
(bench/metrics_data.py: `cluster_for`, `prepare`, `sizes`, `refresh_times`, and `log`), what each
endpoint requests and the answer cache's state for it (bench/metrics_targets.py: `targets`,
`answer_cache_shapes`, `sql_call`, `AnswerCache`), part 3 with the in-database times and --ab
(bench/metrics_http.py: `http_bench`, `server_times`, `ab_bench`), parts 4 and 5
(bench/metrics_triggers.py: `trigger_cpu`, `trigger_ab`, `trigger_lifecycle`) and the table
(bench/metrics_report.py: `markdown`). This module runs them in order (`main`) and is the command
line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from bench.metrics_data import cluster_for, log, prepare, refresh_times, sizes
from bench.metrics_http import ab_bench, http_bench
from bench.metrics_report import markdown
from bench.metrics_triggers import trigger_ab, trigger_cpu, trigger_lifecycle

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


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
