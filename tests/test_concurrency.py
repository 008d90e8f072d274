"""Concurrency proven with real connections at once, each scenario repeated at least 200 times."""

from __future__ import annotations

import random
import threading
from collections import Counter

import psycopg

from tests.concurrency import WON, Contenders
from tests.factories import WALLET_DRIFT, offered_assignment, one, party
from waybill.errors import error_code

TRIALS = 200
ACCEPT = "select core.accept_assignment(%s, %s)"
MOVE = "select core.set_order_status(%s, %s)"


def test_ten_agents_accept_one_assignment(conn: psycopg.Connection, db_url: str) -> None:
    """10 agents accept the same offer at once: exactly one winner, nine clean conflicts, no deadlock."""
    p = party(conn, agents=10)
    race = Contenders(db_url, 10)
    tally: Counter[str] = Counter()
    try:
        for _ in range(TRIALS):
            _, assignment_id = offered_assignment(conn, p)
            outcomes = race.round(
                [lambda c, a=agent, s=assignment_id: c.execute(ACCEPT, [s, a]) for agent in p["agents"]]
            )
            assert Counter(outcomes) == {WON: 1, "ASSIGNMENT_ALREADY_TAKEN": 9}, outcomes
            winner = p["agents"][outcomes.index(WON)]
            row = one(
                conn, "select status, agent_id from core.shipping_assignments where id = %s", [assignment_id]
            )
            assert row == ("ACCEPTED", winner)
            accepted = one(
                conn,
                "select count(*) from core.assignment_status_history "
                "where assignment_id = %s and to_status = 'ACCEPTED'",
                [assignment_id],
            )[0]
            assert accepted == 1
            tally.update(outcomes)
    finally:
        race.close()
    assert tally == {WON: TRIALS, "ASSIGNMENT_ALREADY_TAKEN": 9 * TRIALS}
    print(f"\naccept race: {TRIALS} trials x 10 connections -> {dict(tally)}")


def test_agents_accept_one_offer_through_the_api(conn: psycopg.Connection, db_url: str) -> None:
    """The same race through api.accept_assignment, as PostgREST runs it (role + claims per
    connection): its visibility check (issue 7) keeps exactly one winner; a loser hears either that
    the offer it saw was taken or, if it arrived after the winner committed, exactly what an unknown
    id gets. Never anything else."""
    p = party(conn, agents=4)
    race = Contenders(db_url, 4)
    tally: Counter[str] = Counter()
    try:
        for c, agent in zip(race.conns, p["agents"], strict=True):
            c.execute(
                "select set_config('request.jwt.claims', %s, false)",
                [f'{{"role": "agent", "sub": "{agent}"}}'],
            )
            c.execute("set role agent")
        for _ in range(TRIALS):
            _, assignment_id = offered_assignment(conn, p)
            outcomes = race.round(
                [lambda c, s=assignment_id: c.execute("select api.accept_assignment(%s)", [s])] * 4
            )
            assert outcomes.count(WON) == 1, outcomes
            assert set(outcomes) <= {WON, "ASSIGNMENT_ALREADY_TAKEN", "ASSIGNMENT_NOT_FOUND"}, outcomes
            winner = p["agents"][outcomes.index(WON)]
            assert one(
                conn, "select agent_id from core.shipping_assignments where id = %s", [assignment_id]
            ) == (winner,)
            tally.update(outcomes)
    finally:
        race.close()
    assert tally[WON] == TRIALS
    print(f"\napi accept race: {TRIALS} trials x 4 connections -> {dict(tally)}")


ORDER_TARGETS = ["CONFIRMED", "SHIPPED", "DELIVERED", "CANCELLED", "CONFIRMED"]


def _assert_valid_history(conn: psycopg.Connection, order_id: int) -> list[tuple]:
    path = conn.execute(
        "select from_status, to_status, version from core.order_status_history where order_id = %s order by version",
        [order_id],
    ).fetchall()
    status, version = one(conn, "select status, version from core.orders where id = %s", [order_id])
    assert [v for _, _, v in path] == list(range(1, version + 1)), path  # no gap, no duplicate
    assert path[0][:2] == (None, "PENDING")
    for (_, prev_to, _), (frm, to, _) in zip(path, path[1:], strict=False):
        assert frm == prev_to, path
        assert one(conn, "select core.transition_allowed('order', %s, %s)", [frm, to])[0], path
    assert path[-1][1] == status
    return path


def test_five_concurrent_status_updates_on_one_order(conn: psycopg.Connection, db_url: str) -> None:
    """5 status updates at once: a legal final state, a gap-free valid history, increasing versions."""
    p = party(conn)
    race = Contenders(db_url, 5)
    outcomes_seen: Counter[str] = Counter()
    finals: Counter[str] = Counter()
    try:
        for _ in range(TRIALS):
            order_id = one(
                conn,
                "select id from core.create_order(%s, %s, %s, 1000, 'EUR')",
                [p["customer"], p["seller"], p["zip"]],
            )[0]
            outcomes = race.round(
                [lambda c, t=target, o=order_id: c.execute(MOVE, [o, t]) for target in ORDER_TARGETS]
            )
            assert set(outcomes) <= {WON, "ORDER_INVALID_TRANSITION", "ORDER_STATUS_CONFLICT"}, outcomes
            path = _assert_valid_history(conn, order_id)
            assert len(path) - 1 == outcomes.count(WON)  # every success is exactly one step
            outcomes_seen.update(outcomes)
            finals[path[-1][1]] += 1
    finally:
        race.close()
    assert outcomes_seen[WON] >= TRIALS
    print(f"\nstatus race: {TRIALS} trials x 5 connections -> {dict(outcomes_seen)}; finals {dict(finals)}")


WORKERS = 8
OPS_PER_WORKER = 700  # 8 x 700 = 5,600 operations
ALLOWED_ERRORS = {
    "ORDER_INVALID_TRANSITION", "ORDER_STATUS_CONFLICT", "ORDER_NOT_PAID", "PAYMENT_INVALID_TRANSITION",
    "PAYMENT_ALREADY_CAPTURED", "PAYMENT_NOT_CAPTURED", "REFUND_EXCEEDS_CAPTURED", "REFUND_INVALID_TRANSITION",
    "ASSIGNMENT_ALREADY_TAKEN", "ASSIGNMENT_INVALID_TRANSITION", "ASSIGNMENT_ORDER_NOT_READY",
    "ASSIGNMENT_ALREADY_LIVE", "ASSIGNMENT_NOT_YOURS", "ASSIGNMENT_LOCK_TIMEOUT", "ORDER_HAS_LIVE_PAYMENT",
}  # fmt: skip


def _worker(
    db_url: str, seed: int, orders: list[int], agents: list[int], tally: Counter, lock: threading.Lock
) -> None:
    rnd = random.Random(seed)
    local: Counter[str] = Counter()
    with psycopg.connect(db_url, autocommit=True) as c:
        for _ in range(OPS_PER_WORKER):
            order_id = rnd.choice(orders)
            agent = rnd.choice(agents)
            op = rnd.choices(
                [
                    "capture",
                    "fail_pay",
                    "confirm",
                    "cancel",
                    "offer",
                    "accept",
                    "advance",
                    "refund",
                    "settle",
                ],
                weights=[12, 1, 10, 1, 10, 12, 25, 8, 8],
            )[0]
            try:
                if op == "capture":
                    cur = c.execute(
                        "select core.capture_payment(p.id, 'pi_' || p.id) from core.payments p "
                        "where p.order_id = %s and p.status in ('PENDING', 'CAPTURED')",
                        [order_id],
                    )
                elif op == "fail_pay":
                    cur = c.execute(
                        "select core.fail_payment(p.id, 'declined') from core.payments p "
                        "where p.order_id = %s and p.status = 'PENDING'",
                        [order_id],
                    )
                elif op == "confirm":
                    cur = c.execute("select core.confirm_order(%s)", [order_id])
                elif op == "cancel":
                    cur = c.execute("select core.cancel_order(%s)", [order_id])
                elif op == "offer":
                    cur = c.execute("select core.offer_assignment(%s)", [order_id])
                elif op == "accept":
                    cur = c.execute(
                        "select core.accept_assignment(a.id, %s) from core.shipping_assignments a "
                        "where a.order_id = %s and a.status = 'OFFERED'",
                        [agent, order_id],
                    )
                elif op == "advance":
                    step = rnd.choice(["PICKED_UP", "IN_TRANSIT", "DELIVERED", "DELIVERED", "FAILED"])
                    cur = c.execute(
                        "select core.advance_assignment(a.id, %s, a.agent_id, 'no one home') "
                        "from core.shipping_assignments a where a.order_id = %s "
                        "and a.status in ('ACCEPTED', 'PICKED_UP', 'IN_TRANSIT')",
                        [step, order_id],
                    )
                elif op == "refund":
                    cur = c.execute(
                        "select core.initiate_refund(p.id, %s) from core.payments p "
                        "where p.order_id = %s and p.status = 'CAPTURED'",
                        [rnd.choice([100, 700, 2500, 5000]), order_id],
                    )
                elif op == "settle":
                    fn = (
                        "core.complete_refund(r.id)"
                        if rnd.random() < 0.8
                        else "core.fail_refund(r.id, 'bank said no')"
                    )
                    cur = c.execute(
                        f"select {fn} from core.refunds r join core.payments p on p.id = r.payment_id "
                        "where p.order_id = %s and r.status = 'INITIATED' order by r.id limit 1",
                        [order_id],
                    )
                local[f"{op}:ok" if cur.rowcount else f"{op}:noop"] += 1  # no row matched: nothing to do
            except psycopg.Error as exc:
                local[f"{op}:{error_code(exc)}"] += 1
    with lock:
        tally.update(local)


def test_randomized_money_and_delivery_workload(conn: psycopg.Connection, db_url: str) -> None:
    """8 connections, 5,600 random captures, refunds and deliveries: every invariant holds after."""
    p = party(conn, agents=6)
    orders = [
        one(
            conn,
            "select id from core.create_order(%s, %s, %s, %s, 'EUR')",
            [p["customer"], p["seller"], p["zip"], random.Random(i).choice([999, 5000, 12_345])],
        )[0]
        for i in range(60)
    ]
    tally: Counter[str] = Counter()
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_worker, args=(db_url, 1000 + w, orders, p["agents"], tally, lock))
        for w in range(WORKERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
        assert not t.is_alive()
    total = sum(tally.values())
    unexpected = {k: v for k, v in tally.items() if k.split(":")[1] not in ALLOWED_ERRORS | {"ok", "noop"}}
    assert total == WORKERS * OPS_PER_WORKER
    assert not unexpected, unexpected

    # Every ledger transaction sums to zero.
    assert one(conn, "select count(*) from (select transaction_id from core.ledger_entries group by 1 "
                     "having sum(amount) <> 0) x")[0] == 0  # fmt: skip
    # Refunds never exceed captures.
    assert one(conn, "select count(*) from core.payments p where p.amount < (select coalesce(sum(r.amount), 0) "
                     "from core.refunds r where r.payment_id = p.id and r.status <> 'FAILED')")[0] == 0  # fmt: skip
    # Wallet balances equal what payments and refunds say they should be, computed independently:
    # per payment, fee share reversed so far = core.refund_fee_share of everything refunded at once
    # (the shares of successive partial refunds telescope to it).
    expected = dict(
        conn.execute(
            """
            with per_payment as (
                select p.amount, p.fee_amount as fee,
                       coalesce((select sum(r.amount) from core.refunds r
                                  where r.payment_id = p.id and r.status = 'COMPLETED'), 0)::bigint as refunded
                  from core.payments p where p.status = 'CAPTURED')
            select 'SELLER', sum((amount - fee) - (refunded - core.refund_fee_share(fee, amount, 0, refunded)))
              from per_payment
            union all select 'PLATFORM_FEES', sum(fee - core.refund_fee_share(fee, amount, 0, refunded))
              from per_payment
            union all select 'PAYMENT_CLEARING', -sum(amount - refunded) from per_payment
            """
        ).fetchall()
    )
    actual = dict(
        conn.execute("select kind, sum(balance) from core.wallet_balances group by kind").fetchall()
    )
    assert actual == expected
    # ... and every wallet's stored balance (core.wallet_balance_slots) is the sum of its own entries.
    assert one(conn, WALLET_DRIFT)[0] == 0
    # No order in an illegal state, and every order's history is a valid path.
    illegal = one(
        conn,
        """
        select count(*) from core.orders o where
            (o.status in ('CONFIRMED', 'SHIPPED', 'DELIVERED')
                and not exists (select 1 from core.payments p where p.order_id = o.id and p.status = 'CAPTURED'))
         or (o.status = 'DELIVERED'
                and not exists (select 1 from core.shipping_assignments a where a.order_id = o.id and a.status = 'DELIVERED'))
         or (o.status = 'SHIPPED'
                and not exists (select 1 from core.shipping_assignments a
                                 where a.order_id = o.id and a.status in ('PICKED_UP', 'IN_TRANSIT')))
         or (o.status in ('PENDING', 'CANCELLED')
                and exists (select 1 from core.shipping_assignments a
                             where a.order_id = o.id and a.status not in ('FAILED', 'CANCELLED')))
         or (select count(*) from core.shipping_assignments a
              where a.order_id = o.id and a.status not in ('FAILED', 'CANCELLED')) > 1
        """,
    )[0]
    assert illegal == 0
    for order_id in orders:
        _assert_valid_history(conn, order_id)
    delivered = one(conn, "select count(*) from core.orders where status = 'DELIVERED'")[0]
    assert delivered > 0 and tally["refund:ok"] > 0 and tally["settle:ok"] > 0 and tally["accept:ok"] > 0, (
        tally
    )
    print(
        f"\nrandom workload: {total} operations on 8 connections; {delivered} orders delivered; {dict(tally)}"
    )
