"""GET /wallet_balances at scale (issue 12 §2): the read as the API runs it, stored against derived.

On a seeded database (`waybill seed --orders 1000000`), as role `admin` (row-level security on, as
PostgREST runs it), one connection times, interleaved, `--runs` times each:

    list      select * from api.wallet_balances                 (GET /wallet_balances)
    one       ... where wallet_id = <the busiest seller wallet>  (GET /wallet_balances?wallet_id=eq.N)
    page      ... order by wallet_id limit 100                  (a page: &order=wallet_id&limit=100)
    derived   the old definition: sum(amount) over every entry of every wallet (what 0013 replaced)

and prints p50 / p95 / p99 in ms (client side), the median server-side execution time, and whether the stored and derived balances agree.
With --http (a local socket URL: gateway/ logs in as authenticator through it), the same three reads
also go through gateway/ as `GET /wallet_balances…` with an admin token, one keep-alive client,
interleaved, each request followed by `GET /rpc/health_db` on a second connection (the trivial
call's latency under the same load).

    WAYBILL_BENCH_DATABASE_URL=URL python -m bench.wallet_read [--http]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

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


def http_reads(url: str, busiest: int, runs: int) -> dict[str, list[float]]:
    """The three reads over HTTP through gateway/ (admin token), sequential, interleaved."""
    from bench.common import gateway
    from bench.http_clients import RawHttp
    from bench.metrics_http import header_block
    from waybill.auth import mint

    parts = urlsplit(url)
    auth_url = urlunsplit(parts._replace(netloc="authenticator@" + parts.netloc.rpartition("@")[2]))
    secret = secrets.token_urlsafe(40)
    targets = {
        "http one": f"/wallet_balances?wallet_id=eq.{busiest}",
        "http page": "/wallet_balances?order=wallet_id&limit=100",
        "http list": "/wallet_balances",
        "health_db": "/rpc/health_db",
    }
    times: dict[str, list[float]] = {k: [] for k in targets}

    async def go(port: int) -> None:
        http = RawHttp(port, header_block(port, mint(secret, "admin", None, 3600)))
        await http.open()
        try:
            for i in range(runs + 10):
                for name, target in targets.items():
                    t0 = time.perf_counter()
                    status, body = await http.get(target)
                    assert status == 200, (target, status, body[:300])
                    if i >= 10:  # the first ten: warm-up (connection, pool, plans)
                        times[name].append((time.perf_counter() - t0) * 1000)
        finally:
            await http.close()

    with gateway(auth_url, secret) as port:
        asyncio.run(go(port))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--http", action="store_true", help="also time the reads through gateway/")
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
    if args.http:
        for name, xs in http_reads(os.environ["WAYBILL_BENCH_DATABASE_URL"], busiest, args.runs).items():
            print(
                f"{name:10s} runs {len(xs):4d}  p50 {pct(xs, 0.5):8.2f} ms  p95 {pct(xs, 0.95):8.2f} ms"
                f"  p99 {pct(xs, 0.99):8.2f} ms"
            )
        print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
