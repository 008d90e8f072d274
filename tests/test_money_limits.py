"""Money at its limits (issue 7): the documented maximum amount works end to end, one unit more is a
registered error, fee arithmetic never overflows, and currencies are ISO 4217 codes.

Expected ledger amounts are computed here with Python integers (exact), never read back from the
functions under test. Every call commits (autocommit), so the deferred balance check runs each time.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.factories import one, party
from waybill.errors import error_code

MAX = 10**12  # README "Money": the documented maximum, in minor units


def _fee(amount: int, fee_bps: int) -> int:
    return (amount * fee_bps + 5000) // 10000


def _counts(conn: psycopg.Connection) -> tuple:
    return one(
        conn,
        "select (select count(*) from core.orders), (select count(*) from core.payments),"
        " (select count(*) from core.refunds), (select count(*) from core.ledger_entries)",
    )


def _order(conn: psycopg.Connection, p: dict, amount: int, currency: str = "EUR") -> tuple[int, int]:
    order_id = one(
        conn,
        "select id from core.create_order(%s, %s, %s, %s, %s)",
        [p["customer"], p["seller"], p["zip"], amount, currency],
    )[0]
    payment_id = one(conn, "select id from core.payments where order_id = %s", [order_id])[0]
    return order_id, payment_id


def _refund(conn: psycopg.Connection, payment_id: int, amount: int) -> None:
    refund_id = one(conn, "select id from core.initiate_refund(%s, %s)", [payment_id, amount])[0]
    status = one(conn, "select status from core.complete_refund(%s)", [refund_id])[0]
    assert status == "COMPLETED"


def _balances(conn: psycopg.Connection, seller: int) -> dict[str, int]:
    return dict(
        conn.execute(
            "select kind, balance from core.wallet_balances where currency = 'EUR'"
            " and (seller_id is null or seller_id = %s)",
            [seller],
        ).fetchall()
    )


def test_the_documented_maximum_is_the_sql_one(conn: psycopg.Connection) -> None:
    assert one(conn, "select core.amount_max()")[0] == MAX


@pytest.mark.parametrize("fee_bps", [1000, 10000])
def test_maximum_amount_captures_and_refunds_in_parts_and_in_full(
    conn: psycopg.Connection, fee_bps: int
) -> None:
    p = party(conn)
    conn.execute("update core.sellers set fee_bps = %s where id = %s", [fee_bps, p["seller"]])
    _, payment_id = _order(conn, p, MAX)
    conn.execute("select core.capture_payment(%s, 'pi_max')", [payment_id])
    fee = _fee(MAX, fee_bps)
    assert one(conn, "select fee_amount from core.payments where id = %s", [payment_id])[0] == fee
    assert _balances(conn, p["seller"]) == {
        "PAYMENT_CLEARING": -MAX,
        "SELLER": MAX - fee,
        "PLATFORM_FEES": fee,
    }

    parts = [1, MAX // 3, MAX - 1 - MAX // 3]  # partial, partial, then the rest: refunded in full
    refunded = 0
    for part in parts:
        _refund(conn, payment_id, part)
        refunded += part
        fee_back = fee * refunded // MAX
        assert _balances(conn, p["seller"]) == {
            "PAYMENT_CLEARING": -MAX + refunded,
            "SELLER": MAX - fee - (refunded - fee_back),
            "PLATFORM_FEES": fee - fee_back,
        }
    assert refunded == MAX
    unbalanced = conn.execute(
        "select t.id from core.ledger_transactions t join core.ledger_entries e on e.transaction_id = t.id"
        " where t.payment_id = %s group by t.id having sum(e.amount) <> 0",
        [payment_id],
    ).fetchall()
    assert unbalanced == []
    assert (
        one(conn, "select count(*) from core.ledger_transactions where payment_id = %s", [payment_id])[0] == 4
    )


def test_issue_case_refund_of_ten_to_the_ten_completes(conn: psycopg.Connection) -> None:
    """Before 0005 the pro-rata fee of this refund overflowed (22003) and it could never complete."""
    p = party(conn)
    _, payment_id = _order(conn, p, 10**10)
    conn.execute("select core.capture_payment(%s, 'pi_1e10')", [payment_id])
    _refund(conn, payment_id, 10**10)
    assert _balances(conn, p["seller"]) == {"PAYMENT_CLEARING": 0, "SELLER": 0, "PLATFORM_FEES": 0}


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [
        (MAX + 1, "EUR", "AMOUNT_TOO_LARGE"),
        (2**63 - 1, "EUR", "AMOUNT_TOO_LARGE"),
        (0, "EUR", "INVALID_AMOUNT"),
        (100, "XYZ", "INVALID_CURRENCY"),
        (100, "ABC", "INVALID_CURRENCY"),
        (100, "eur", "INVALID_CURRENCY"),
        (100, "HRK", "INVALID_CURRENCY"),  # withdrawn in 2023 (Croatia uses EUR)
    ],
)
def test_bad_money_is_refused_with_its_code_and_changes_nothing(
    conn: psycopg.Connection, amount: int, currency: str, code: str
) -> None:
    p = party(conn)
    before = _counts(conn)
    with pytest.raises(psycopg.Error) as caught:
        _order(conn, p, amount, currency)
    assert error_code(caught.value) == code
    assert _counts(conn) == before


@pytest.mark.parametrize(("currency", "minor_unit"), [("JPY", 0), ("KWD", 3), ("CLF", 4), ("XCG", 2)])
def test_active_iso_codes_work_whatever_their_minor_unit(
    conn: psycopg.Connection, currency: str, minor_unit: int
) -> None:
    p = party(conn)
    _, payment_id = _order(conn, p, 12_345, currency)
    conn.execute("select core.capture_payment(%s, %s)", [payment_id, f"pi_{currency}"])
    assert one(conn, "select minor_unit from core.currencies where code = %s", [currency])[0] == minor_unit
    assert one(conn, "select count(*) from core.wallets where currency = %s", [currency])[0] == 3
