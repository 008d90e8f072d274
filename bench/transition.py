"""What a transition costs its backend, before and after a schema change, in one interleaved run.

Issue 12 §1. Two databases of one throw-away cluster — "before" (the migration named by `--before`
and every later one rolled back, built by bench.outbox's code path) and "after" (everything
applied) — are measured in two ways, the two databases alternating (A B A B …):

1. **micro**: one session per database drives whole lifecycles (the statements of bench.lifecycle)
   one at a time and reads its backend's CPU from /proc/<pid>/schedstat (nanoseconds) around each
   statement: backend CPU per transition kind, and per bare INSERT of the same session;
2. **lifecycle**: `bench.lifecycle` at `--clients` clients (default 8) for `--seconds`, transitions/s,
   backend CPU per transition and per bare INSERT, P99 of the slowest transition; before each pair
   of runs, pgbench's tpcb-like at the same client count in a database of its own (the §1 goal).

    python -m bench.transition --before 0017.transition_lean          # docs/performance/lifecycle.md
    python -m bench.transition --before 0017.transition_lean --rounds 6 --reps 3

Existing databases by environment instead (never argv): WAYBILL_BENCH_BEFORE_DATABASE_URL and
WAYBILL_BENCH_DATABASE_URL (the server must be local for /proc readings).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench import toggles
from bench.common import before_after_databases, log, save
from bench.lifecycle_clients import BASELINE_DDL, INSERT, LOOKUP, SQL, TRANSITIONS
from bench.lifecycle_pgbench import PGBENCH_DEFAULT, pgbench_runs, run_pgbench
from bench.lifecycle_world import build_world

STEPS = (*TRANSITIONS, INSERT)


def _cpu_ns(pid: int) -> int:
    """Total CPU time the process has run (on-CPU ns, /proc/<pid>/schedstat's first field)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


class Session:
    """One autocommit connection driving lifecycles; per-step backend CPU accumulated."""

    def __init__(self, url: str, seed: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(BASELINE_DDL)
        self.world = build_world(url)
        self.conn = psycopg.connect(url, autocommit=True)
        self.pid = self.conn.info.backend_pid
        self.rng = random.Random(seed)
        self.ns = dict.fromkeys(STEPS, 0)
        self.n = dict.fromkeys(STEPS, 0)
        self.rounds: list[float] = []  # µs per transition in each round (for paired ratios)

    def _step(self, kind: str, params: Sequence[object], count: bool) -> tuple | None:
        t0 = _cpu_ns(self.pid)
        cur = self.conn.execute(SQL[kind], params)
        row = cur.fetchone() if cur.description else None
        if count:
            self.ns[kind] += _cpu_ns(self.pid) - t0
            self.n[kind] += 1
        return row

    def _transitions(self) -> tuple[int, int]:
        return sum(self.ns[k] for k in TRANSITIONS), sum(self.n[k] for k in TRANSITIONS)

    def lifecycles(self, k: int, count: bool = True) -> None:
        w, rng = self.world, self.rng
        ns0, n0 = self._transitions()
        for _ in range(k):
            zip_code = rng.choice(w.zips)
            agent = rng.choice(w.agents_by_zip[zip_code])
            (order_id,) = self._step(
                "create", [rng.choice(w.customers), rng.choice(w.sellers), zip_code, 1000], count
            )
            (payment_id,) = self.conn.execute(SQL[LOOKUP], [order_id]).fetchone()
            self._step("capture", [payment_id, f"micro-{w.tag}-{order_id}"], count)
            self._step("confirm", [order_id], count)
            (assignment_id,) = self._step("offer", [order_id], count)
            self._step("accept", [assignment_id, agent], count)
            for kind in ("pick_up", "in_transit", "deliver"):
                self._step(kind, [assignment_id, agent], count)
            self._step(INSERT, ["x" * 64], count)
        ns1, n1 = self._transitions()
        if count and n1 > n0:
            self.rounds.append((ns1 - ns0) / (n1 - n0) / 1000)

    def figures(self) -> dict:
        per = {k: round(self.ns[k] / self.n[k] / 1000, 1) for k in STEPS if self.n[k]}
        transitions = sum(self.ns[k] for k in TRANSITIONS)
        count = sum(self.n[k] for k in TRANSITIONS)
        per["per_transition"] = round(transitions / count / 1000, 1)
        per["ratio_to_insert"] = round(per["per_transition"] / per[INSERT], 2)
        return per


def micro(urls: dict[str, str], rounds: int, block: int) -> dict:
    sessions = {name: Session(url, seed=i) for i, (name, url) in enumerate(urls.items())}
    for s in sessions.values():
        s.lifecycles(max(5, block // 4), count=False)  # warm caches and plans, not counted
    for r in range(rounds):
        for name in list(sessions)[:: 1 if r % 2 == 0 else -1]:  # alternate who goes first
            sessions[name].lifecycles(block)
    out = {name: s.figures() for name, s in sessions.items()}
    # Paired by round (the two databases ran back to back): robust to load that drifts between rounds.
    b, a = (sessions[name].rounds for name in ("before", "after"))
    ratios = sorted(y / x for x, y in zip(b, a, strict=True))
    out["after_over_before_per_round"] = {
        "median": round(ratios[len(ratios) // 2], 3),
        "min": round(ratios[0], 3),
        "max": round(ratios[-1], 3),
    }
    for s in sessions.values():
        s.conn.close()
    return out


PGBENCH_DB = "bench_transition_pgbench"


def _pgbench_url(url: str) -> str:
    """A database beside `url`'s, (re)created empty for pgbench's own tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {PGBENCH_DB}")
        conn.execute(f"create database {PGBENCH_DB}")
    return make_conninfo(**{**conninfo_to_dict(url), "dbname": PGBENCH_DB})


def _pgbench(url: str, clients: int, seconds: float, first: bool) -> float | None:
    """pgbench tpcb-like (scale = clients) for `seconds`: its tps, the yardstick of issue 12 §1."""
    if first:
        res = run_pgbench(url, [clients], seconds, "tpcb-like", clients, PGBENCH_DEFAULT)
        runs = res.get("runs", [{}])
    else:
        runs = pgbench_runs(PGBENCH_DEFAULT, url, [clients], seconds, ["-b", "tpcb-like"])
    return runs[0].get("tps")


def lifecycle_ab(urls: dict[str, str], clients: int, seconds: float, reps: int, pgbench: bool) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name in urls}
    tpcb: list[float] = []
    pgbench_url = _pgbench_url(urls["after"]) if pgbench else None
    with tempfile.TemporaryDirectory(prefix="waybill-transition-") as tmp:
        for rep in range(reps):
            if pgbench_url and (tps := _pgbench(pgbench_url, clients, seconds, first=rep == 0)):
                tpcb.append(tps)
                log(f"  pgbench tpcb-like rep {rep}: {tps:.1f} tps")
            for name in list(urls)[:: 1 if rep % 2 == 0 else -1]:
                path = Path(tmp) / f"{name}-{rep}.json"
                tps, cpu, base, load = toggles._run(urls[name], clients, seconds, path)
                full = json.loads(path.read_text())
                life = full["levels"][0]["lifecycle"]
                p99 = {k: life["latency_ms"][k]["p99"] for k in TRANSITIONS}
                worst = max(p99, key=lambda k: p99[k] or 0)
                runs[name].append(
                    {"transitions_per_s": tps, "backend_us_per_transition": cpu, "us_per_bare_insert": base,
                     "p99_worst_ms": p99[worst], "p99_worst": worst, "load_average": load,
                     "errors": life["errors"], "checks_ok": full["ok"]}
                )  # fmt: skip
                log(f"  {name} rep {rep}: {tps} transitions/s, {cpu} µs/transition, load {load}")
    summary = {}
    for name, rs in runs.items():
        mean = {k: round(sum(r[k] for r in rs) / len(rs), 1) for k in
                ("transitions_per_s", "backend_us_per_transition", "us_per_bare_insert", "p99_worst_ms")}  # fmt: skip
        mean["cpu_ratio_to_insert"] = round(mean["backend_us_per_transition"] / mean["us_per_bare_insert"], 2)
        if tpcb:
            mean["ratio_to_tpcb"] = round(mean["transitions_per_s"] / (sum(tpcb) / len(tpcb)), 2)
        summary[name] = {"mean": mean, "runs": rs}
    summary["pgbench_tpcb_like_tps"] = tpcb
    return summary


def format_text(results: dict) -> str:
    m = results["micro"]
    out = ["micro (one session each, backend CPU µs per statement):",
           "| step | before | after | change |", "|---|---:|---:|---:|"]  # fmt: skip
    for k in (*STEPS, "per_transition", "ratio_to_insert"):
        b, a = m["before"].get(k), m["after"].get(k)
        if b is not None and a is not None:
            out.append(f"| {k} | {b:,} | {a:,} | {100 * (a - b) / b:+.0f} % |")
    r = m["after_over_before_per_round"]
    out.append(
        f"after/before per transition, paired by round: median {r['median']} (min {r['min']}, max {r['max']})"
    )
    if lc := results.get("lifecycle"):
        c = results["config"]["clients"]
        tpcb = lc["pgbench_tpcb_like_tps"]
        out += ["", f"bench.lifecycle at {c} clients (means of {results['config']['reps']} runs each; "
                f"pgbench tpcb-like between them: {', '.join(f'{t:.0f}' for t in tpcb) or 'not run'} tps):",
                "| | transitions/s | ÷ tpcb-like | backend µs/transition | µs/bare INSERT | CPU ratio | P99 worst, ms |",
                "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name in ("before", "after"):
            x = lc[name]["mean"]
            out.append(f"| {name} | {x['transitions_per_s']:,} | {x.get('ratio_to_tpcb', '-')} | "
                       f"{x['backend_us_per_transition']:,} | {x['us_per_bare_insert']:,} | "
                       f"{x['cpu_ratio_to_insert']}× | {x['p99_worst_ms']} |")  # fmt: skip
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.transition", description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, metavar="MIGRATION", help="roll back from this migration on")
    p.add_argument("--rounds", type=int, default=6, help="micro: A/B rounds (default 6)")
    p.add_argument(
        "--block", type=int, default=40, help="micro: lifecycles per database per round (default 40)"
    )
    p.add_argument("--clients", type=int, default=8, help="lifecycle: clients (default 8)")
    p.add_argument("--seconds", type=float, default=6.0, help="lifecycle: seconds per run (default 6)")
    p.add_argument("--reps", type=int, default=2, help="lifecycle: runs per database (default 2; 0 skips)")
    p.add_argument("--no-pgbench", action="store_true", help="lifecycle: no pgbench tpcb-like between runs")
    p.add_argument("--output", type=Path, help="results JSON (default bench/results/transition-<time>.json)")
    args = p.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    results: dict = {
        "benchmark": "transition-before-after",
        "started_at": started.isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg()[0],
        "config": {"before": args.before, "rounds": args.rounds, "block": args.block,
                   "clients": args.clients, "seconds": args.seconds, "reps": args.reps},
    }  # fmt: skip
    with before_after_databases(args.before) as urls:
        log(f"micro: {args.rounds} rounds x {args.block} lifecycles per database")
        results["micro"] = micro(urls, args.rounds, args.block)
        if args.reps:
            log(f"lifecycle: {args.reps} x {args.seconds:g} s at {args.clients} clients per database")
            results["lifecycle"] = lifecycle_ab(
                urls, args.clients, args.seconds, args.reps, pgbench=not args.no_pgbench
            )
    results["load_average_at_end"] = os.getloadavg()[0]
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    path = save(results, "transition", args.output)
    print(format_text(results))
    print(f"\nload average {results['load_average_at_start']:.2f} -> {results['load_average_at_end']:.2f}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
