"""Small builders for tests: real rows through the real SQL functions, never mocks."""

from __future__ import annotations

import itertools

import psycopg

_seq = itertools.count(1)

# Every wallet whose stored balance differs from the sum of its entries (or has entries and no slot).
WALLET_DRIFT = """
select count(*)
  from core.wallets w
 where coalesce((select sum(s.balance) from core.wallet_balance_slots s where s.wallet_id = w.id), 0)
    <> coalesce((select sum(e.amount) from core.ledger_entries e where e.wallet_id = w.id), 0)
"""


def one(conn: psycopg.Connection, sql: str, params: list | tuple = ()) -> tuple:
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return row


def party(conn: psycopg.Connection, zip_code: str = "10001", agents: int = 1) -> dict:
    """A customer, a seller (10 % fee) and `agents` active agents serving zip_code."""
    n = next(_seq)
    customer = one(
        conn,
        "insert into core.customers (name, email) values (%s, %s) returning id",
        [f"Customer {n}", f"c{n}@example.test"],
    )[0]
    seller = one(
        conn,
        "insert into core.sellers (name, fee_bps) values (%s, 1000) returning id",
        [f"Seller {n}"],
    )[0]
    agent_ids = [
        one(
            conn,
            "insert into core.delivery_agents (name, serviceable_zip_codes) values (%s, %s) returning id",
            [f"Agent {n}.{i}", [zip_code]],
        )[0]
        for i in range(agents)
    ]
    return {"customer": customer, "seller": seller, "agents": agent_ids, "zip": zip_code}


def confirmed_order(conn: psycopg.Connection, p: dict, amount: int = 10_000) -> tuple[int, int]:
    """A paid, confirmed order; returns (order_id, payment_id)."""
    order_id = one(
        conn,
        "select id from core.create_order(%s, %s, %s, %s, 'EUR')",
        [p["customer"], p["seller"], p["zip"], amount],
    )[0]
    payment_id = one(conn, "select id from core.payments where order_id = %s", [order_id])[0]
    conn.execute("select core.capture_payment(%s, %s)", [payment_id, f"pi_{order_id}_{next(_seq)}"])
    conn.execute("select core.confirm_order(%s)", [order_id])
    return order_id, payment_id


def offered_assignment(conn: psycopg.Connection, p: dict, amount: int = 10_000) -> tuple[int, int]:
    """A confirmed order with an OFFERED assignment; returns (order_id, assignment_id)."""
    order_id, _ = confirmed_order(conn, p, amount)
    assignment_id = one(conn, "select id from core.offer_assignment(%s)", [order_id])[0]
    return order_id, assignment_id
