"""GET /wallet_balances at scale (issue 12 §2): the read as the API runs it, stored against derived.

On a seeded database (`waybill seed --orders 1000000`), as role `admin` (row-level security on, as
PostgREST runs it), one connection times, interleaved, `--runs` times each:

    list      select * from api.wallet_balances                 (GET /wallet_balances)
    one       ... where wallet_id = <the busiest seller wallet>  (GET /wallet_balances?wallet_id=eq.N)
    page      ... order by wallet_id limit 100                  (a page: &order=wallet_id&limit=100)
    derived   the old definition: sum(amount) over every entry of every wallet (what 0013 replaced)

and prints p50 / p95 / p99 in ms (client side), the median server-side execution time, and whether the stored and derived balances agree.

    WAYBILL_BENCH_DATABASE_URL=URL python -m bench.wallet_read
"""

from __future__ import annotations

import argparse
import os
import time

import psycopg

LIST = "select wallet_id, kind, seller_id, currency, balance from api.wallet_balances"
ONE = LIST + " where wallet_id = %s"
PAGE = LIST + " order by wallet_id limit 100"  # GET /wallet_balances?order=wallet_id&limit=100
DERIVED = """select w.id, w.kind, w.seller_id, w.currency,
       coalesce((select sum(e.amount) from core.ledger_entries e where e.wallet_id = w.id), 0)::bigint
  from core.wallets w"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    with psycopg.connect(os.environ["WAYBILL_BENCH_DATABASE_URL"], autocommit=True) as c:
        orders, entries, wallets = c.execute(
            "select (select count(*) from core.orders), (select count(*) from core.ledger_entries),"
            " (select count(*) from core.wallets)"
        ).fetchone()
        busiest = c.execute(
            "select wallet_id from core.ledger_entries e join core.wallets w on w.id = e.wallet_id "
            "where w.kind = 'SELLER' group by 1 order by count(*) desc limit 1"
        ).fetchone()[0]
        derived = {r[0]: r[4] for r in c.execute(DERIVED)}
        c.execute("set role admin")
        stored = {r[0]: r[4] for r in c.execute(LIST)}
        print(
            f"{orders:,} orders, {entries:,} ledger entries, {wallets:,} wallets; load {os.getloadavg()[0]:.1f}"
        )
        print(f"stored balances equal the sums of the entries: {stored == derived}")
        times: dict[str, list[float]] = {"list": [], "one": [], "page": [], "derived": []}
        for i in range(args.runs):
            modes = (
                ("list", LIST, ()),
                ("one", ONE, (busiest,)),
                ("page", PAGE, ()),
                ("derived", DERIVED, ()),
            )
            for name, sql, params in modes:
                if name == "derived" and i % 10:
                    continue  # ~100x slower: a tenth of the runs says enough
                t0 = time.perf_counter()
                c.execute(sql, params).fetchall()
                times[name].append((time.perf_counter() - t0) * 1000)
        for name, xs in times.items():
            print(
                f"{name:8s} runs {len(xs):4d}  p50 {pct(xs, 0.5):8.2f} ms  p95 {pct(xs, 0.95):8.2f} ms"
                f"  p99 {pct(xs, 0.99):8.2f} ms"
            )
        # Server-side execution time alone (no transfer, no client): median of 11 EXPLAIN ANALYZE.
        for name, sql, params in modes[:3]:
            runs = sorted(
                c.execute("explain (analyze, format json) " + sql, params).fetchone()[0][0]["Execution Time"]
                for _ in range(11)
            )
            print(f"{name:8s} server execution median {runs[5]:8.3f} ms")
        print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
