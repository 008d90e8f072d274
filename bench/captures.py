"""Capture throughput with stored wallet balances (issue 12 §2): do captures queue on the platform wallets?

N clients (one connection each, autocommit) loop create_order -> capture_payment on a shared world
(20 sellers, every capture also posts to the two platform wallets). Modes alternate in short slices
on the same database, so they see the same background load:

    slots     the stored balances as committed (every wallet spread over core.wallet_slots() slots)
    one-slot  every wallet on one slot (the design the slots avoid: captures queue on one row)
    off       the balance trigger disabled (what a capture cost before stored balances)

It changes the schema while it runs (trigger, function): run it on a throw-away or bench database.

    WAYBILL_BENCH_DATABASE_URL=URL python -m bench.captures --levels 8,32
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import psycopg

from bench.common import save

SLOTS_ON = "alter table core.ledger_entries enable trigger _200_balance_slots"
SLOTS_OFF = "alter table core.ledger_entries disable trigger _200_balance_slots"
HOT_SLOTS = """create or replace function core.wallet_slots()
returns smallint language sql immutable parallel safe set search_path = '' as $$ select %s::smallint $$"""
MODES = {
    "slots": [SLOTS_ON, HOT_SLOTS % 64],
    "one-slot": [SLOTS_ON, HOT_SLOTS % 1],
    "off": [SLOTS_OFF, HOT_SLOTS % 64],
}


def world(url: str) -> tuple[list[int], list[int]]:
    with psycopg.connect(url) as conn:
        sellers = [
            r[0]
            for r in conn.execute(
                "insert into core.sellers (name, fee_bps) select 'Capture bench ' || g, 1000 "
                "from generate_series(1, 20) g returning id"
            )
        ]
        customers = [
            r[0]
            for r in conn.execute(
                "insert into core.customers (name, email) select 'Capture bench ' || g, "
                "'capture-' || g || '-' || md5(random()::text) || '@example.test' "
                "from generate_series(1, 200) g returning id"
            )
        ]
    return sellers, customers


def slice_(
    url: str, clients: int, seconds: float, sellers: list[int], customers: list[int]
) -> tuple[int, list[float]]:
    done = [0] * clients
    lat: list[list[float]] = [[] for _ in range(clients)]
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        with psycopg.connect(url, autocommit=True) as c:
            n = 0
            while time.monotonic() < deadline:
                n += 1
                order = c.execute(
                    "select id from core.create_order(%s, %s, '10001', %s, 'EUR')",
                    [customers[(i * 7 + n) % len(customers)], sellers[(i * 3 + n) % len(sellers)], 1000 + n],
                ).fetchone()[0]
                pay = c.execute("select id from core.payments where order_id = %s", [order]).fetchone()[0]
                t0 = time.perf_counter()
                c.execute("select status from core.capture_payment(%s, %s)", [pay, f"cb_{pay}"])
                lat[i].append((time.perf_counter() - t0) * 1000)
                done[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), [x for xs in lat for x in xs]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="8,32")
    ap.add_argument("--seconds", type=float, default=3.0, help="per slice")
    ap.add_argument("--rounds", type=int, default=3, help="slices per mode and level, interleaved")
    ap.add_argument("--output", default=None)
    args = ap.parse_args()
    url = os.environ["WAYBILL_BENCH_DATABASE_URL"]
    sellers, customers = world(url)
    results: dict = {
        "benchmark": "captures",
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg()[0],
        "levels": {},
    }
    try:
        for level in [int(x) for x in args.levels.split(",")]:
            tally: dict[str, list] = defaultdict(lambda: [0, 0.0, []])
            for _ in range(args.rounds):
                for mode, ddl in MODES.items():
                    with psycopg.connect(url, autocommit=True) as c:
                        for stmt in ddl:
                            c.execute(stmt)
                    t0 = time.monotonic()
                    n, lat = slice_(url, level, args.seconds, sellers, customers)
                    tally[mode][0] += n
                    tally[mode][1] += time.monotonic() - t0
                    tally[mode][2] += lat
            results["levels"][level] = {
                m: {
                    "captures_per_s": round(n / s, 1),
                    "p50_ms": round(pct(lat, 0.5), 2),
                    "p99_ms": round(pct(lat, 0.99), 2),
                }
                for m, (n, s, lat) in tally.items()
            }
            for m, r in results["levels"][level].items():
                print(
                    f"{level:3d} clients  {m:9s} captures/s {r['captures_per_s']:8.1f}  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms",
                    flush=True,
                )
    finally:
        with psycopg.connect(url, autocommit=True) as c:
            for stmt in MODES["slots"]:
                c.execute(stmt)
    results["load_average_at_end"] = os.getloadavg()[0]
    print(f"load average {results['load_average_at_start']:.1f} -> {results['load_average_at_end']:.1f}")
    print(f"results: {save(results, 'captures', Path(args.output) if args.output else None)}")


if __name__ == "__main__":
    main()
