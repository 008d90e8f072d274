"""The rollups stay exact under concurrency: 8 real connections run a random workload of assignment
transitions at once (offers, accepts racing, pick-ups, deliveries, failures, cancellations, on
clocks spread over three UTC days); afterwards metrics.agent_daily and metrics.zip_daily equal the
oracle's recomputation from the raw rows, and so does a rebuild. The first events of a new day race
to create its rollup rows (the trigger UPDATEs, and INSERTs only when the row is missing: 0020)."""

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
FIRST_EVENT_TRIALS = 200
# The invariants the rollup tables' CHECK constraints stated until 0020 (docs/performance/agent-metrics.md
# "Migration 0020": a CHECK is parsed again at every statement): every row that breaks one. (Time
# sums may be negative: hand-made clocks, as this workload's, can deliver before accepting.)
BROKEN_INVARIANTS = """
select 'agent', agent_id::text, day from metrics.agent_daily
 where least(accepted, delivered, on_time, failed, cancelled) < 0 or on_time > delivered
    or cardinality(delivery_minutes) <> cardinality(delivery_counts)
    or cardinality(acceptance_minutes) <> cardinality(acceptance_counts)
union all
select 'zip', zip_code, day from metrics.zip_daily
 where least(offered, delivered, on_time, failed, cancelled) < 0 or on_time > delivered
"""
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
    assert conn.execute(BROKEN_INVARIANTS).fetchall() == []
    conn.execute("select metrics.rebuild_rollups()")
    assert o.table(conn, "agent_daily", "agent_id") == agent
    assert o.table(conn, "zip_daily", "zip_code") == zips
    print(
        f"\nmetrics workload: {CONNECTIONS} connections x {OPS_PER_CONNECTION} ops -> {dict(tally)}; {statuses}"
    )


def test_first_events_of_a_day_race_into_one_rollup_row(conn: psycopg.Connection, db_url: str) -> None:
    """200 trials: 8 connections insert at once a failed assignment each, on a day none has seen (a
    row inserted with a later status counts each of its events: an offer in the zip code's row, an
    acceptance and a failure in the agent's). Even trials: 8 agents, one zip code (its row is the
    race); odd trials: one agent, 8 zip codes (the agent's row is the race). Every trial's rows count
    each insert once: none lost to a row a concurrent transaction created first, no unique violation."""
    p = party(conn, zip_code="32003", agents=CONNECTIONS)
    agents = p["agents"]
    order = confirmed_order(conn, p)[0]  # FAILED rows leave the order free for the next one
    zips = [f"3301{i}" for i in range(CONNECTIONS)]
    first = dt.date(2031, 1, 1)
    days = [first + dt.timedelta(days=d) for d in range(FIRST_EVENT_TRIALS)]
    barrier = threading.Barrier(CONNECTIONS, timeout=60)
    errors: list[str] = []

    def racer(i: int) -> None:
        with psycopg.connect(db_url, autocommit=True) as c:
            for trial, day in enumerate(days):
                agent, zip_code = (agents[i], "32003") if trial % 2 == 0 else (agents[0], zips[i])
                t0 = dt.datetime.combine(day, dt.time(10), dt.UTC)
                try:
                    with c.transaction():
                        barrier.wait()
                        c.execute(
                            "insert into core.shipping_assignments (order_id, agent_id, zip_code, status,"
                            " failure_reason, sla_due_at, created_at, updated_at, accepted_at, failed_at)"
                            " values (%s, %s, %s, 'FAILED', 'race', %s, %s, %s, %s, %s)",
                            [order, agent, zip_code, t0 + dt.timedelta(hours=5), t0, t0 + dt.timedelta(hours=1),
                             t0 + dt.timedelta(minutes=7), t0 + dt.timedelta(hours=1)],
                        )  # fmt: skip
                except (psycopg.Error, threading.BrokenBarrierError) as exc:
                    errors.append(f"trial {trial}: {exc!r}")
                    barrier.abort()
                    return

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a racing connection hung"
    assert errors == []
    n = CONNECTIONS
    agent_rows, zip_rows = [], []
    for trial, day in enumerate(days):
        if trial % 2 == 0:
            agent_rows += sorted((a, day, 1, 1, [7], [1]) for a in agents)
            zip_rows.append(("32003", day, n, n))
        else:
            agent_rows.append((agents[0], day, n, n, [7], [n]))
            zip_rows += [(z, day, 1, 1) for z in zips]
    assert (
        conn.execute(
            "select agent_id, day, accepted, failed, acceptance_minutes, acceptance_counts from metrics.agent_daily"
            " where day >= %s order by day, agent_id",
            [first],
        ).fetchall()
        == agent_rows
    )
    assert (
        conn.execute(
            "select zip_code, day, offered, failed from metrics.zip_daily where day >= %s order by day, zip_code",
            [first],
        ).fetchall()
        == zip_rows
    )
    assert conn.execute(BROKEN_INVARIANTS).fetchall() == []


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
    # the seed inserts its agents with triggers off: the rebuild fills their zip codes' pairs
    assert _zip_agents(conn) == _zip_agents_recomputed(conn) != set()


# -- metrics.zip_agents (0025): the (zip code, agent) pairs follow every change of an agent -----------
ZIP_AGENT_TRIALS = 200
ZIP_POOL = [f"3410{i}" for i in range(6)]


def _zip_agents(conn: psycopg.Connection) -> set[tuple[str, int]]:
    return set(conn.execute("select zip_code, agent_id from metrics.zip_agents").fetchall())


def _zip_agents_recomputed(conn: psycopg.Connection) -> set[tuple[str, int]]:
    """Straight from core.delivery_agents, in Python (not the rebuild's SQL)."""
    rows = conn.execute("select id, serviceable_zip_codes from core.delivery_agents").fetchall()
    return {(z, agent_id) for agent_id, zips in rows for z in zips}


def test_zip_agents_follow_concurrent_agent_changes(conn: psycopg.Connection, db_url: str) -> None:
    """8 connections change the zip codes of the same 6 agents at once, ZIP_AGENT_TRIALS rounds
    (a barrier starts each round together), inserting and deleting agents of their own as well: after
    every round the pairs equal the agents' arrays (repeated zip codes included) — no pair lost,
    doubled or left behind by two changes of one agent racing."""
    shared = [
        conn.execute(
            "insert into core.delivery_agents (name, serviceable_zip_codes) values (%s, %s) returning id",
            [f"Zip racer {i}", ZIP_POOL[:2]],
        ).fetchone()[0]
        for i in range(6)
    ]
    barrier = threading.Barrier(CONNECTIONS + 1, timeout=60)
    errors: list[str] = []

    def racer(i: int) -> None:
        rng = random.Random(i)
        own: list[int] = []
        with psycopg.connect(db_url, autocommit=True) as c:
            for trial in range(ZIP_AGENT_TRIALS):
                try:
                    barrier.wait()
                    zips = rng.choices(ZIP_POOL, k=rng.randint(0, 4))  # may repeat a zip code
                    op = rng.random()
                    if op < 0.6:
                        c.execute(
                            "update core.delivery_agents set serviceable_zip_codes = %s where id = %s",
                            [zips, rng.choice(shared)],
                        )
                    elif op < 0.8 or not own:
                        own.append(c.execute(
                            "insert into core.delivery_agents (name, serviceable_zip_codes) values (%s, %s)"
                            " returning id", [f"Zip racer {i}.{trial}", zips],
                        ).fetchone()[0])  # fmt: skip
                    else:
                        c.execute(
                            "delete from core.delivery_agents where id = %s",
                            [own.pop(rng.randrange(len(own)))],
                        )
                    barrier.wait()  # the main thread checks the pairs between rounds
                except (psycopg.Error, threading.BrokenBarrierError) as exc:
                    errors.append(f"connection {i}, trial {trial}: {exc!r}")
                    barrier.abort()
                    return

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(CONNECTIONS)]
    for t in threads:
        t.start()
    mismatches = []
    try:
        for trial in range(ZIP_AGENT_TRIALS):
            barrier.wait()  # the round starts
            barrier.wait()  # every connection has committed its change
            got, want = _zip_agents(conn), _zip_agents_recomputed(conn)
            if got != want:
                mismatches.append((trial, sorted(got - want), sorted(want - got)))
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a racing connection hung"
    assert errors == []
    assert mismatches == []
    served = {z for z, _ in _zip_agents(conn)}
    assert served & set(ZIP_POOL), "the workload should leave some zip codes served"
    pairs = _zip_agents(conn)
    conn.execute("select metrics.rebuild_zip_agents()")
    assert _zip_agents(conn) == pairs
