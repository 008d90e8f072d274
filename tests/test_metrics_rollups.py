"""The rollups stay exact under concurrency: 8 real connections run a random workload of assignment
transitions at once (offers, accepts racing, pick-ups, deliveries, failures, cancellations, on
clocks spread over three UTC days); afterwards metrics.agent_daily and metrics.zip_daily equal the
oracle's recomputation from the raw rows, and so does a rebuild."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter

import psycopg

from tests import metrics_oracle as o
from tests.factories import confirmed_order, party
from waybill.errors import error_code

CONNECTIONS = 8
OPS_PER_CONNECTION = 150
EXPECTED = {
    "ASSIGNMENT_ALREADY_TAKEN",
    "ASSIGNMENT_INVALID_TRANSITION",
    "ASSIGNMENT_ALREADY_LIVE",
    "ASSIGNMENT_ORDER_NOT_READY",
    "ASSIGNMENT_NOT_YOURS",
    "AGENT_NOT_ELIGIBLE",
}
NEXT = {"ACCEPTED": ["PICKED_UP", "PICKED_UP", "PICKED_UP", "FAILED", "CANCELLED"], "PICKED_UP": ["IN_TRANSIT", "FAILED"],
        "IN_TRANSIT": ["DELIVERED", "DELIVERED", "DELIVERED", "FAILED"]}  # fmt: skip


def _workload(db_url: str, seed: int, orders: list[int], agents: dict[str, list[int]], out: Counter) -> None:
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for _ in range(OPS_PER_CONNECTION):
            at = now - dt.timedelta(seconds=rng.uniform(0, 2.5 * 86400))
            live = conn.execute(
                "select id, status, agent_id, zip_code from core.shipping_assignments"
                " where status in ('OFFERED', 'ACCEPTED', 'PICKED_UP', 'IN_TRANSIT')"
            ).fetchall()
            try:
                if not live or rng.random() < 0.2:
                    sla = at + dt.timedelta(hours=rng.choice([1, 6, 30]))
                    conn.execute(
                        "select core.offer_assignment(%s, %s, null, %s)", [rng.choice(orders), sla, at]
                    )
                    out["offer"] += 1
                    continue
                aid, status, agent, zip_code = rng.choice(live)
                if status == "OFFERED":
                    if rng.random() < 0.1:
                        conn.execute(
                            "select core.advance_assignment(%s, 'CANCELLED', null, null, null, %s)", [aid, at]
                        )
                    else:
                        conn.execute("select core.accept_assignment(%s, %s, null, %s)",
                                     [aid, rng.choice(agents[zip_code]), at])  # fmt: skip
                else:
                    to = rng.choice(NEXT[status])
                    conn.execute(
                        "select core.advance_assignment(%s, %s, %s, %s, null, %s)",
                        [aid, to, agent, "no one home" if to == "FAILED" else None, at],
                    )
                out["ok"] += 1
            except psycopg.Error as exc:
                code = error_code(exc)
                out[code if code in EXPECTED else f"UNEXPECTED {code}: {exc}"] += 1


def test_rollups_equal_recomputation_after_a_concurrent_workload(
    conn: psycopg.Connection, db_url: str
) -> None:
    parties = [party(conn, zip_code=z, agents=4) for z in ("32001", "32002")]
    agents = {p["zip"]: p["agents"] for p in parties}
    orders = [confirmed_order(conn, p)[0] for p in parties for _ in range(30)]
    tally: Counter = Counter()
    threads = [
        threading.Thread(target=_workload, args=(db_url, seed, orders, agents, tally))
        for seed in range(CONNECTIONS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a workload connection hung"
    unexpected = {k: v for k, v in tally.items() if k.startswith("UNEXPECTED")}
    assert not unexpected, unexpected
    statuses = dict(
        conn.execute("select status, count(*) from core.shipping_assignments group by 1").fetchall()
    )
    assert statuses.get("DELIVERED", 0) > 0 and statuses.get("FAILED", 0) > 0, statuses
    raw = o.rows(conn)
    assert len({o.day(r["created_at"]) for r in raw}) >= 3, "the workload should span three UTC days"
    agent, zips = o.rollups(raw)
    assert o.table(conn, "agent_daily", "agent_id") == agent
    assert o.table(conn, "zip_daily", "zip_code") == zips
    conn.execute("select metrics.rebuild_rollups()")
    assert o.table(conn, "agent_daily", "agent_id") == agent
    assert o.table(conn, "zip_daily", "zip_code") == zips
    print(
        f"\nmetrics workload: {CONNECTIONS} connections x {OPS_PER_CONNECTION} ops -> {dict(tally)}; {statuses}"
    )


def test_seed_ends_with_one_rebuild_equal_to_the_oracle(db_url: str, conn: psycopg.Connection) -> None:
    from waybill import seed

    seed.seed(db_url, orders=400, agents=12, zips=8)
    raw = o.rows(conn)
    agent, zips = o.rollups(raw)
    assert agent and zips
    assert o.table(conn, "agent_daily", "agent_id") == agent
    assert o.table(conn, "zip_daily", "zip_code") == zips
    sources = conn.execute("select distinct source from metrics.refresh_log").fetchall()
    assert ("seed",) in sources
    assert conn.execute("select count(distinct zip_code) from metrics.zip_daily").fetchone()[0] == 8
