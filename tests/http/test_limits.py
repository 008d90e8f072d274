"""Issue 7 over HTTP: the maximum amount end to end, amounts and currencies refused with their
registered 4xx (never a 500), the currency list, and agents told nothing of assignments they cannot
read. Runs against gateway/ or, with WAYBILL_API_URL, a real PostgREST v13."""

from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import Api

MAX = 10**12  # README "Money"
ERROR_KEYS = {"code", "message", "details", "hint"}


def _ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def _order_body(world: dict, amount: int, currency: str = "EUR") -> dict:
    return {"customer_id": world["customer"], "seller_id": world["seller"], "ship_to_zip": world["zip"],
            "amount": amount, "currency": currency}  # fmt: skip


def test_maximum_amount_end_to_end(api: Api, world: dict) -> None:
    with api.client("service") as svc:
        order = _ok(svc.post("/rpc/create_order", json=_order_body(world, MAX)))
        assert order["amount"] == MAX  # exact in JSON: below 2^53
        payment_id = _ok(svc.get("/payments", params={"order_id": f"eq.{order['id']}", "select": "id"}))[0][
            "id"
        ]
        captured = _ok(
            svc.post(
                "/rpc/capture_payment",
                json={"payment_id": payment_id, "provider_ref": f"pi_max_{payment_id}"},
            )
        )
        assert captured["fee_amount"] == (MAX * 1000 + 5000) // 10000  # the seller's default 10 %
        for part in (MAX // 7, MAX - MAX // 7):
            refund = _ok(svc.post("/rpc/initiate_refund", json={"payment_id": payment_id, "amount": part}))
            assert (
                _ok(svc.post("/rpc/complete_refund", json={"refund_id": refund["id"]}))["status"]
                == "COMPLETED"
            )
    with api.db() as conn:
        balances = conn.execute(
            "select w.kind, coalesce(sum(e.amount), 0) from core.ledger_transactions t"
            " join core.ledger_entries e on e.transaction_id = t.id join core.wallets w on w.id = e.wallet_id"
            " where t.payment_id = %s group by w.kind",
            [payment_id],
        ).fetchall()
    assert dict(balances) == {"PAYMENT_CLEARING": 0, "SELLER": 0, "PLATFORM_FEES": 0}


@pytest.mark.parametrize(
    ("amount", "currency", "status", "code"),
    [
        (MAX + 1, "EUR", 422, "AMOUNT_TOO_LARGE"),
        (2**63 - 1, "EUR", 422, "AMOUNT_TOO_LARGE"),
        (100, "XYZ", 422, "INVALID_CURRENCY"),
        (100, "HRK", 422, "INVALID_CURRENCY"),
    ],
)
def test_bad_money_is_a_registered_4xx(
    api: Api, world: dict, amount: int, currency: str, status: int, code: str
) -> None:
    with api.client("service") as svc:
        r = svc.post("/rpc/create_order", json=_order_body(world, amount, currency))
        assert r.status_code == status, r.text
        assert set(r.json()) == ERROR_KEYS and r.json()["code"] == code


def test_amount_beyond_bigint_is_a_client_error(api: Api, world: dict) -> None:
    with api.client("service") as svc:
        r = svc.post("/rpc/create_order", json=_order_body(world, 2**63))
        assert r.status_code == 400, r.text


def test_currencies_are_listed_for_services(api: Api) -> None:
    with api.client("service") as svc:
        rows = _ok(svc.get("/currencies", params={"code": "in.(EUR,JPY,KWD)", "order": "code"}))
    assert [(r["code"], r["minor_unit"]) for r in rows] == [("EUR", 2), ("JPY", 0), ("KWD", 3)]
    with api.client() as anon:
        assert anon.get("/currencies").status_code == 401


def test_agent_cannot_tell_an_unreadable_assignment_from_an_unknown_one(api: Api, world: dict) -> None:
    with api.client("service") as svc:
        order = _ok(svc.post("/rpc/create_order", json=_order_body(world, 500)))
        payment_id = _ok(svc.get("/payments", params={"order_id": f"eq.{order['id']}", "select": "id"}))[0][
            "id"
        ]
        _ok(
            svc.post(
                "/rpc/capture_payment",
                json={"payment_id": payment_id, "provider_ref": f"pi_leak_{payment_id}"},
            )
        )
        _ok(svc.post("/rpc/confirm_order", json={"order_id": order["id"]}))
        offer = _ok(svc.post("/rpc/offer_assignment", json={"order_id": order["id"]}))
    unknown_id = offer["id"] + 1_000_000
    far = world["agents"][2]  # serves another zip code: cannot read this offer
    with api.client("agent", far) as agent:
        for path, body in [
            ("/rpc/accept_assignment", {}),
            ("/rpc/advance_assignment", {"status": "PICKED_UP"}),
            ("/rpc/advance_assignment", {"status": "FAILED", "reason": "probe"}),
        ]:
            seen = agent.post(path, json={"assignment_id": offer["id"]} | body)
            unknown = agent.post(path, json={"assignment_id": unknown_id} | body)
            assert (seen.status_code, unknown.status_code) == (404, 404), (seen.text, unknown.text)
            assert seen.json()["code"] == unknown.json()["code"] == "ASSIGNMENT_NOT_FOUND"
            assert seen.json()["message"].replace(str(offer["id"]), "N") == unknown.json()["message"].replace(
                str(unknown_id), "N"
            )
