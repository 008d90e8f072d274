"""Stored wallet balances (core.wallet_balance_slots) under real concurrency: never off their entries."""

from __future__ import annotations

import random
from collections import Counter

import psycopg

from tests.concurrency import WON, Contenders
from tests.factories import WALLET_DRIFT, one, party

TRIALS = 200
CONTENDERS = 6


def _pending_payment(conn: psycopg.Connection, p: dict, amount: int) -> int:
    order_id = one(
        conn,
        "select id from core.create_order(%s, %s, %s, %s, 'EUR')",
        [p["customer"], p["seller"], p["zip"], amount],
    )[0]
    return one(conn, "select id from core.payments where order_id = %s", [order_id])[0]


def test_concurrent_captures_and_refunds_keep_stored_balances_exact(
    conn: psycopg.Connection, db_url: str
) -> None:
    """6 connections at once, 200 rounds, each a random mix of captures (two sellers, the shared
    platform wallets) and completed refunds of earlier captures: after every round each wallet's
    stored balance equals the sum of its ledger entries, and nothing deadlocks."""
    rnd = random.Random(12)
    parties = [party(conn), party(conn)]
    race = Contenders(db_url, CONTENDERS)
    captured: list[tuple[int, int]] = []  # (payment, amount), each refunded once
    tally: Counter[str] = Counter()
    try:
        for _ in range(TRIALS):
            calls = []
            fresh: list[tuple[int, int]] = []  # captured by this round: refundable from the next one on
            for _ in range(CONTENDERS):
                if captured and rnd.random() < 0.35:
                    pay, amount = captured.pop(rnd.randrange(len(captured)))
                    part = rnd.choice([1, max(1, amount // 3), amount])  # its fee share: 0, pro rata, all
                    refund = one(conn, "select id from core.initiate_refund(%s, %s)", [pay, part])[0]
                    calls.append(lambda c, r=refund: c.execute("select core.complete_refund(%s)", [r]))
                else:
                    amount = rnd.choice([1, 999, 10_000, 12_345])
                    pay = _pending_payment(conn, rnd.choice(parties), amount)
                    fresh.append((pay, amount))
                    calls.append(
                        lambda c, x=pay: c.execute("select core.capture_payment(%s, %s)", [x, f"pi_w{x}"])
                    )
            outcomes = race.round(calls)
            assert outcomes == [WON] * CONTENDERS, outcomes
            tally.update(outcomes)
            captured.extend(fresh)
            assert one(conn, WALLET_DRIFT)[0] == 0
    finally:
        race.close()
    assert tally[WON] == TRIALS * CONTENDERS
    # The platform wallets really spread over several slots (else captures queue on one row).
    slots = one(
        conn,
        "select count(*) from core.wallet_balance_slots s join core.wallets w on w.id = s.wallet_id "
        "where w.kind = 'PAYMENT_CLEARING' and w.currency = 'EUR'",
    )[0]
    assert slots > 1


def test_rebuild_matches_the_trigger(conn: psycopg.Connection) -> None:
    """core.rebuild_wallet_balances (for bulk loads without triggers) gives every wallet the same
    balance the trigger kept, in one slot each."""
    p = party(conn)
    for amount in (5, 10_000, 777):
        pay = _pending_payment(conn, p, amount)
        conn.execute("select core.capture_payment(%s, %s)", [pay, f"pi_r{pay}"])
    before = dict(conn.execute("select wallet_id, balance from core.wallet_balances").fetchall())
    entries = dict(
        conn.execute("select wallet_id, sum(amount)::bigint from core.ledger_entries group by 1").fetchall()
    )
    rebuilt = one(conn, "select core.rebuild_wallet_balances()")[0]
    after = dict(conn.execute("select wallet_id, balance from core.wallet_balances").fetchall())
    assert rebuilt == len(entries)
    assert after == before
    assert {w: b for w, b in after.items() if w in entries} == entries
    assert one(conn, "select count(*) from core.wallet_balance_slots where slot <> 0")[0] == 0
