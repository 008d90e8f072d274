"""The whole marketplace lifecycle end to end against a real cluster, through the SQL functions."""

from __future__ import annotations

import psycopg
import pytest

from tests.factories import confirmed_order, offered_assignment, one, party
from waybill.errors import WaybillError, error_code, from_psycopg


def test_order_to_delivery_and_refund(conn: psycopg.Connection) -> None:
    p = party(conn, agents=2)
    order_id, assignment_id = offered_assignment(conn, p, amount=12_345)
    agent = p["agents"][1]

    conn.execute("select core.accept_assignment(%s, %s)", [assignment_id, agent])
    for step in ("PICKED_UP", "IN_TRANSIT", "DELIVERED"):
        conn.execute("select core.advance_assignment(%s, %s, %s)", [assignment_id, step, agent])

    status, version, delivered_at = one(
        conn, "select status, version, delivered_at from core.orders where id = %s", [order_id]
    )
    assert (status, version) == ("DELIVERED", 4)
    assert delivered_at is not None

    order_path = conn.execute(
        "select from_status, to_status, version from core.order_status_history "
        "where order_id = %s order by version",
        [order_id],
    ).fetchall()
    assert order_path == [
        (None, "PENDING", 1),
        ("PENDING", "CONFIRMED", 2),
        ("CONFIRMED", "SHIPPED", 3),
        ("SHIPPED", "DELIVERED", 4),
    ]
    steps = conn.execute(
        "select to_status, agent_id from core.assignment_status_history where assignment_id = %s order by id",
        [assignment_id],
    ).fetchall()
    assert [s for s, _ in steps] == ["OFFERED", "ACCEPTED", "PICKED_UP", "IN_TRANSIT", "DELIVERED"]
    assert {a for _, a in steps[1:]} == {agent}

    payment_id = one(conn, "select id from core.payments where order_id = %s", [order_id])[0]
    refund_id = one(conn, "select id from core.initiate_refund(%s, 2000, 'damaged')", [payment_id])[0]
    conn.execute("select core.complete_refund(%s)", [refund_id])

    # Fee 10 % of 12,345 = 1,234.5, rounded half up = 1,235; the refund of 2,000 reverses
    # floor(1,235 * 2,000 / 12,345) = floor(200.08) = 200. The SQL rules (core.fee_for,
    # core.refund_fee_share, the one home of both) give the same figures by hand.
    fee, fee_share = 1235, 200
    assert one(
        conn, "select core.fee_for(12345, 1000), core.refund_fee_share(1235, 12345, 0, 2000)"
    ) == (
        fee,
        fee_share,
    )
    assert one(conn, "select fee_amount from core.payments where id = %s", [payment_id])[0] == fee
    balances = dict(
        conn.execute(
            "select kind, balance from core.wallet_balances where currency = 'EUR' "
            "and (seller_id is null or seller_id = %s)",
            [p["seller"]],
        ).fetchall()
    )
    assert balances["SELLER"] == (12_345 - fee) - (2000 - fee_share)
    assert balances["PLATFORM_FEES"] >= fee - fee_share  # shared wallet: other tests' fees add up
    unbalanced = one(
        conn,
        "select count(*) from (select transaction_id from core.ledger_entries "
        "group by 1 having sum(amount) <> 0) x",
    )[0]
    assert unbalanced == 0


def test_capture_is_idempotent_on_provider_ref(conn: psycopg.Connection) -> None:
    p = party(conn)
    order_id = one(
        conn,
        "select id from core.create_order(%s, %s, %s, 5000, 'EUR')",
        [p["customer"], p["seller"], p["zip"]],
    )[0]
    payment_id = one(conn, "select id from core.payments where order_id = %s", [order_id])[0]
    first = one(conn, "select status, captured_at from core.capture_payment(%s, 'pi_same')", [payment_id])
    again = one(conn, "select status, captured_at from core.capture_payment(%s, 'pi_same')", [payment_id])
    assert first == again == ("CAPTURED", first[1])
    n = one(conn, "select count(*) from core.ledger_transactions where payment_id = %s", [payment_id])[0]
    assert n == 1


@pytest.mark.parametrize(
    ("sql", "code", "status"),
    [
        ("select core.create_order(1, 1, '10001', -5, 'EUR')", "INVALID_AMOUNT", 422),
        ("select core.create_order(1, 1, '10001', 100, 'eur')", "INVALID_CURRENCY", 422),
        ("select core.confirm_order(999999)", "ORDER_NOT_FOUND", 404),
        ("select core.accept_assignment(1, 999999)", "AGENT_NOT_FOUND", 404),
        ("select core.initiate_refund(999999, 100)", "PAYMENT_NOT_FOUND", 404),
    ],
)
def test_bad_input_raises_registered_error_and_changes_nothing(
    conn: psycopg.Connection, sql: str, code: str, status: int
) -> None:
    party(conn)
    before = one(conn, "select (select count(*) from core.orders), (select count(*) from core.payments)")
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql)
    err = from_psycopg(info.value)
    assert isinstance(err, WaybillError)
    assert (err.code, err.http_status) == (code, status)
    registered = one(conn, "select http_status from ops.error_codes where code = %s", [code])[0]
    assert registered == status
    after = one(conn, "select (select count(*) from core.orders), (select count(*) from core.payments)")
    assert after == before


def test_failed_delivery_returns_order_for_a_new_offer(conn: psycopg.Connection) -> None:
    p = party(conn, agents=1)
    order_id, assignment_id = offered_assignment(conn, p)
    agent = p["agents"][0]
    conn.execute("select core.accept_assignment(%s, %s)", [assignment_id, agent])
    conn.execute("select core.advance_assignment(%s, 'PICKED_UP', %s)", [assignment_id, agent])
    conn.execute("select core.advance_assignment(%s, 'FAILED', %s, 'nobody home')", [assignment_id, agent])
    assert one(conn, "select status from core.orders where id = %s", [order_id])[0] == "CONFIRMED"
    second = one(conn, "select id from core.offer_assignment(%s)", [order_id])[0]
    assert second != assignment_id
    with pytest.raises(psycopg.Error) as info:
        conn.execute("select core.offer_assignment(%s)", [order_id])
    assert error_code(info.value) == "ASSIGNMENT_ALREADY_LIVE"


def test_cancel_confirmed_order_cancels_offer(conn: psycopg.Connection) -> None:
    p = party(conn)
    order_id, assignment_id = offered_assignment(conn, p)
    conn.execute("select core.cancel_order(%s)", [order_id])
    assert (
        one(conn, "select status from core.shipping_assignments where id = %s", [assignment_id])[0]
        == "CANCELLED"
    )
    assert one(conn, "select status from core.orders where id = %s", [order_id])[0] == "CANCELLED"
    order2, _ = confirmed_order(conn, p)
    assert order2 != order_id


def test_fee_rules_round_as_documented(conn: psycopg.Connection) -> None:
    """core.fee_for rounds half up; refund shares of partial refunds add up to the whole share."""
    # 1 % of 50 = 0.5 -> 1; of 49 = 0.49 -> 0; 10 % of 12,344 = 1,234.4 -> 1,234; 0 bps -> 0.
    cases = [(50, 100, 1), (49, 100, 0), (12_344, 1000, 1234), (10_000, 0, 0), (10_000, 10_000, 10_000)]
    for amount, bps, expected in cases:
        assert one(conn, "select core.fee_for(%s, %s)", [amount, bps])[0] == expected, (amount, bps)
    # Fee 1,000 on 3,000 refunded in three parts of 1,000: floor(333.3), floor(666.6) - 333, 1000 - 666.
    shares = [
        one(conn, "select core.refund_fee_share(1000, 3000, %s, 1000)", [before])[0]
        for before in (0, 1000, 2000)
    ]
    assert shares == [333, 333, 334]
