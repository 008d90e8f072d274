"""`waybill seed`: realistic demo data, generated set-based by waybill/seed.sql in one transaction.

This module only validates the arguments, hands them to the SQL as transaction-local settings, runs
the file and formats what it reports. All the generation, and the checks that the rows are as the
core.* functions would have written them, are SQL (see the header of seed.sql).
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

SQL_FILE = Path(__file__).with_name("seed.sql")


def seed(url: str, *, orders: int = 2000, agents: int = 50, seed: float = 0.42) -> str:
    """Seed `orders` orders and `agents` delivery agents (setseed(`seed`)); return a short report.

    Everything happens in one transaction: on any error nothing is left behind. Needs a superuser
    (or SET on session_replication_role): rows are bulk-inserted with per-row triggers off.
    """
    if orders < 0:
        raise ValueError(f"orders must be >= 0, got {orders}")
    if agents < 1:
        raise ValueError(f"agents must be >= 1, got {agents}")
    if not -1.0 <= seed <= 1.0:
        raise ValueError(f"seed must be in [-1, 1] (setseed), got {seed}")
    sql = SQL_FILE.read_text()
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        allowed = conn.execute(
            "select has_parameter_privilege('session_replication_role', 'SET')"
        ).fetchone()[0]
        if not allowed:
            raise PermissionError(
                f"{conn.info.user} may not SET session_replication_role: seed as the superuser owner"
            )
        conn.execute(
            "select set_config('waybill.seed_orders', %s, true),"
            " set_config('waybill.seed_agents', %s, true),"
            " set_config('waybill.seed_random', %s, true)",
            [str(orders), str(agents), repr(float(seed))],
        )
        events_before = _outbox_events(conn)
        conn.execute(sql)  # no parameters: sent as one multi-statement query
        rows = conn.execute("select tbl, status, n from _seed_report order by ord, status").fetchall()
        events_after = _outbox_events(conn)
    elapsed = time.perf_counter() - started
    report = format_report(rows, orders=orders, agents=agents, seed=seed, elapsed=elapsed)
    if events_after is not None:
        # Rows are written with triggers off, so the outbox stays as it was: history is not news.
        report += f"\n  webhook outbox: {events_after - (events_before or 0):,} events (history is not news)"
    return report


def _outbox_events(conn: psycopg.Connection) -> int | None:
    """How many webhook events exist (None before the webhooks migration)."""
    if conn.execute("select to_regclass('webhooks.events')").fetchone()[0] is None:
        return None
    return conn.execute("select count(*) from webhooks.events").fetchone()[0]


def format_report(
    rows: list[tuple[str, str | None, int]], *, orders: int, agents: int, seed: float, elapsed: float
) -> str:
    """One line per table: the rows written, by status where the table has one."""
    tables: dict[str, list[tuple[str | None, int]]] = {}
    for tbl, status, n in rows:
        tables.setdefault(tbl, []).append((status, int(n)))
    rate = orders / elapsed if elapsed > 0 else 0.0
    lines = [
        f"seeded {orders:,} orders, {agents:,} agents (seed {seed}) in {elapsed:.1f} s: {rate:,.0f} orders/s"
    ]
    for tbl, counts in tables.items():
        total = sum(n for _, n in counts)
        by_status = ", ".join(f"{s} {n:,}" for s, n in sorted(counts, key=lambda c: -c[1]) if s)
        lines.append(f"  {tbl:<26} {total:>9,}" + (f"  ({by_status})" if by_status else ""))
    return "\n".join(lines)
