"""Lifecycle throughput: N clients drive whole order lifecycles through the core.* functions.

Each client is one connection in autocommit mode looping over full lifecycles

    create_order -> capture_payment -> confirm_order -> offer_assignment -> accept_assignment
    -> advance_assignment PICKED_UP -> IN_TRANSIT -> DELIVERED

each transition its own transaction, as the API front runs them (plus one read of the order's payment
id between create and capture, timed but not counted as a transition). In the same run, with the same
client count and duration, a baseline phase commits bare single-row INSERTs into `bench_baseline`: the
price of one durable commit on this machine, which every transition pays too. transitions/s divided by
inserts/s says how much a transition costs beyond its commit.

After every phase the run checks itself, so it cannot silently measure failures: errors per kind
(none expected), DELIVERED orders = completed lifecycles, every ledger transaction sums to zero, one
CAPTURE posting per captured payment, baseline rows = counted inserts.

The parts, one module each beside this one: the parties the orders draw from
(bench/lifecycle_world.py: `build_world`), the statements and the clients that run them
(bench/lifecycle_clients.py: `SQL`, `run_clients`), a measured slice of a phase and a phase's figures
(bench/lifecycle_slices.py: `run_slice`, `summarise`), the checks after each phase
(bench/lifecycle_checks.py), the pgbench reference (bench/lifecycle_pgbench.py) and the printed
tables (bench/lifecycle_report.py: `format_text`, `format_markdown`). This module runs them in
order (`run`) and is the command line.

    python -m bench.lifecycle                      # throw-away cluster, 1/8/32 clients, ~2 minutes
    WAYBILL_BENCH_DATABASE_URL=URL python -m bench.lifecycle   # an existing, migrated database
                                       # (WAYBILL_BENCH_PGBENCH_URL: pgbench's database there)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.common import fmt, log, machine_info, save, server_info
from bench.common import log as print_log
from bench.lifecycle_checks import check_baseline, check_lifecycle
from bench.lifecycle_clients import BASELINE_DDL
from bench.lifecycle_pgbench import PGBENCH_DEFAULT, run_pgbench, run_pgbench_insert
from bench.lifecycle_report import format_markdown, format_text
from bench.lifecycle_slices import run_slice, summarise
from bench.lifecycle_world import build_world

# -- the whole run --------------------------------------------------------------------------------


def _checkpoint(url: str) -> None:
    """Start each phase from a clean checkpoint (fewer full-page images mid-phase); best effort."""
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
        conn.execute("checkpoint")


def run(
    url: str,
    *,
    levels: Sequence[int] = (1, 8, 32),
    seconds: float = 10.0,
    slices: int = 5,
    procs: int = 1,
    seed: int = 1,
    warmup: float = 1.0,
    world_size: dict | None = None,
    pgbench_url: str | None = None,
    pgbench_insert: bool = False,
    pgbench_seconds: float = 5.0,
    pgbench_mode: str = "tpcb-like",
    pgbench_scale: int | None = None,
    pgbench_bin: Path = PGBENCH_DEFAULT,
    log: Callable[[str], None] = print_log,
) -> dict:
    """The benchmark against a migrated database at `url`; returns the results (see README)."""
    started = dt.datetime.now(dt.UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BASELINE_DDL)
    world = build_world(url, **(world_size or {}))
    results: dict[str, Any] = {
        "benchmark": "lifecycle",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "server": server_info(url),
        "config": {
            "levels": list(levels),
            "seconds_per_phase": seconds,
            "slices_per_phase": slices,
            "client_processes": procs,
            "seed": seed,
            "warmup_s": warmup,
            "clients_are": "threads in one process"
            if procs <= 1
            else f"threads spread over {procs} processes",
        },
        "world": world.description,
        "levels": [],
    }
    ok = True
    if warmup > 0:
        log(f"warm-up: {warmup:g} s, 2 clients")
        summary, ids = summarise("lifecycle", 2, [run_slice(url, "lifecycle", world, 2, warmup, seed - 1, 1)])
        checks = check_lifecycle(url, summary, ids)
        results["warmup"] = {"lifecycles": summary["lifecycles"], "checks": checks}
        ok &= all(c["ok"] for c in checks.values())
    piece = seconds / slices
    for n in levels:
        _checkpoint(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("truncate public.bench_baseline")
        log(f"{n} client(s): {slices} x ({piece:g} s of lifecycles, then {piece:g} s of baseline inserts)")
        life_slices, base_slices = [], []
        for k in range(slices):
            life_slices.append(run_slice(url, "lifecycle", world, n, piece, seed + 1000 * n + k, procs))
            base_slices.append(run_slice(url, "baseline", None, n, piece, seed + 1000 * n + k, procs))
        life, ids = summarise("lifecycle", n, life_slices)
        base, _ = summarise("baseline", n, base_slices)
        checks = check_lifecycle(url, life, ids)
        checks.update(check_baseline(url, base))
        ok &= all(c["ok"] for c in checks.values())
        results["levels"].append(
            {
                "clients": n,
                "lifecycle": life,
                "baseline": base,
                "ratio_transitions_to_inserts": (
                    round(life["ops_per_s"] / base["ops_per_s"], 3) if base["ops_per_s"] else None
                ),
                "checks": checks,
            }
        )
    have_pgbench = Path(pgbench_bin).exists() or shutil.which(str(pgbench_bin)) is not None
    if pgbench_insert and have_pgbench:
        log(f"pgbench bare inserts into bench_baseline at {', '.join(map(str, levels))} clients")
        results["pgbench_insert"] = run_pgbench_insert(url, levels, pgbench_seconds, pgbench_bin)
    if pgbench_url and have_pgbench:
        scale = pgbench_scale or max(levels)
        log(f"pgbench {pgbench_mode} (scale {scale}) at {', '.join(map(str, levels))} clients")
        results["pgbench"] = run_pgbench(
            pgbench_url, levels, pgbench_seconds, pgbench_mode, scale, pgbench_bin
        )
    elif (pgbench_url or pgbench_insert) and not have_pgbench:
        results["pgbench"] = {"mode": pgbench_mode, "error": f"{pgbench_bin} not found"}
    results["notes"] = bounding_notes(results)
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["ok"] = bool(ok)
    return results


def bounding_notes(results: dict) -> list[str]:
    """Plain statements about what limited each level, from the CPU and wait-event figures."""
    notes = []
    procs = results["config"]["client_processes"]
    for lvl in results["levels"]:
        life = lvl["lifecycle"]
        cpu = life["cpu_pct_of_one_core"]
        n = lvl["clients"]
        busy, cap, other = cpu["machine_busy"], cpu["machine_capacity"], cpu["other_processes"]
        if busy is not None and busy >= 0.9 * cap:
            notes.append(
                f"{n} clients: the machine was CPU-saturated ({busy:.0f} of {cap} % busy: Python clients "
                f"{cpu['bench_clients']:.0f} %, their server backends {fmt(cpu['server_backends'], 0)} %, "
                f"PostgreSQL background {fmt(cpu['server_background'], 0)} %, "
                f"other processes {fmt(other, 0)} %)."
            )
            if other is not None and other >= 0.25 * cap:
                notes.append(
                    f"{n} clients: other processes (other users of this shared machine) took {other:.0f} % "
                    "of one core: the figures at this level are lower than on a quiet machine."
                )
        if procs <= 1 and cpu["bench_clients"] >= 80:
            notes.append(
                f"{n} clients: the Python client process used {cpu['bench_clients']:.0f} % of one core "
                "(one GIL): the client side is a bottleneck at this level; compare with --procs 2."
            )
        idle = life["waits"].get("idle: waiting for the client", 0.0)
        if idle >= 0.3:
            notes.append(
                f"{n} clients: the server backends spent {idle:.0%} of samples idle, waiting for the "
                "client's next statement (round trips, client CPU, or clients waiting for a CPU)."
            )
    return notes


# -- command line ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _databases(args: argparse.Namespace) -> Iterator[tuple[str, str | None]]:
    """(bench database URL, pgbench database URL or None)."""
    # URLs by environment, never argv (a password in one is readable by any local user).
    if url := os.environ.get("WAYBILL_BENCH_DATABASE_URL"):
        yield url, os.environ.get("WAYBILL_BENCH_PGBENCH_URL")
        return
    from waybill import testing

    with testing.test_cluster() as cluster:
        log(f"throw-away cluster in {cluster.data_dir}; migrating the template")
        testing.build_template(cluster)
        cluster.drop_database("bench")
        cluster.create_database("bench", template=testing.TEMPLATE_DB)
        pgbench_url = None
        if not args.no_pgbench:
            cluster.drop_database("bench_pgbench")
            cluster.create_database("bench_pgbench")
            pgbench_url = cluster.url("bench_pgbench")
        yield cluster.url("bench"), pgbench_url


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="1,8,32", help="client counts, comma-separated (default 1,8,32)")
    p.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="seconds of lifecycles, and as many of baseline inserts, per client count (default 10)",
    )
    p.add_argument(
        "--slices",
        type=int,
        default=5,
        help="alternate lifecycles and baseline in this many slices per client count, so both see the "
        "same background load (default 5: 2 s + 2 s, five times)",
    )
    p.add_argument(
        "--procs", type=int, default=1, help="client processes (default 1: all clients are threads)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of unreported warm-up (default 1)")
    p.add_argument("--zips", type=int, default=50)
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--no-pgbench", action="store_true", help="skip the pgbench reference runs")
    p.add_argument("--pgbench-mode", default="tpcb-like", help="pgbench built-in script (default tpcb-like)")
    p.add_argument("--pgbench-seconds", type=float, default=5.0, help="per client count (default 5)")
    p.add_argument("--pgbench-scale", type=int, help="default: the largest client count")
    p.add_argument("--pgbench-bin", type=Path, default=PGBENCH_DEFAULT)
    p.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    p.add_argument(
        "--output", type=Path, help="results JSON path (default bench/results/lifecycle-<time>.json)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    with _databases(args) as (url, pgbench_url):
        results = run(
            url,
            levels=levels,
            seconds=args.seconds,
            slices=args.slices,
            procs=args.procs,
            seed=args.seed,
            warmup=args.warmup,
            world_size={"zips": args.zips, "agents": args.agents},
            pgbench_url=None if args.no_pgbench else pgbench_url,
            pgbench_insert=not args.no_pgbench,
            pgbench_seconds=args.pgbench_seconds,
            pgbench_mode=args.pgbench_mode,
            pgbench_scale=args.pgbench_scale,
            pgbench_bin=args.pgbench_bin,
        )
    path = save(results, "lifecycle", args.output)
    print(format_text(results))
    if args.markdown:
        print()
        print(format_markdown(results))
    print(f"\nresults: {path}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
