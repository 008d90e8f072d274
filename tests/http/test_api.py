"""Every endpoint of `api` over HTTP: happy paths, RBAC, errors, pagination and counts.

Runs against gateway/ or, with WAYBILL_API_URL, against a real PostgREST v13.
"""

from __future__ import annotations

import httpx
import jwt

from tests.http.conftest import Api

ERROR_KEYS = {"code", "message", "details", "hint"}


def _ok(r: httpx.Response, status: int = 200):
    assert r.status_code == status, (r.status_code, r.text)
    return r.json() if r.content else None


def _err(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    return body


def _paid_offer(api: Api, world: dict, amount: int = 10_000) -> tuple[int, int, int]:
    """Order created, captured, confirmed and offered over HTTP: (order_id, payment_id, assignment_id)."""
    with api.client("service") as svc:
        order = _ok(svc.post("/rpc/create_order", json={
            "customer_id": world["customer"], "seller_id": world["seller"],
            "ship_to_zip": world["zip"], "amount": amount, "currency": "EUR"}))  # fmt: skip
        payment = _ok(svc.get("/payments", params={"order_id": f"eq.{order['id']}", "select": "id,status"}))
        assert payment == [{"id": payment[0]["id"], "status": "PENDING"}]
        captured = _ok(
            svc.post(
                "/rpc/capture_payment",
                json={"payment_id": payment[0]["id"], "provider_ref": f"pi_{order['id']}"},
            )
        )
        assert captured["status"] == "CAPTURED"
        confirmed = _ok(svc.post("/rpc/confirm_order", json={"order_id": order["id"]}))
        assert (confirmed["status"], confirmed["version"]) == ("CONFIRMED", 2)
        offer = _ok(svc.post("/rpc/offer_assignment", json={"order_id": order["id"]}))
        assert offer["status"] == "OFFERED"
    return order["id"], payment[0]["id"], offer["id"]


def test_full_lifecycle_over_http(api: Api, world: dict) -> None:
    order_id, payment_id, assignment_id = _paid_offer(api, world, amount=12_000)
    agent = world["agents"][0]
    with api.client("agent", agent) as ag:
        offers = _ok(
            ag.get("/shipping_assignments", params={"status": "eq.OFFERED", "select": "id,zip_code"})
        )
        assert {"id": assignment_id, "zip_code": world["zip"]} in offers
        assert (
            _ok(ag.post("/rpc/accept_assignment", json={"assignment_id": assignment_id}))["agent_id"] == agent
        )
        for step in ("PICKED_UP", "IN_TRANSIT", "DELIVERED"):
            moved = _ok(
                ag.post("/rpc/advance_assignment", json={"assignment_id": assignment_id, "status": step})
            )
            assert moved["status"] == step
    with api.client("service") as svc:
        order = _ok(svc.get("/orders", params={"id": f"eq.{order_id}"}))[0]
        assert (order["status"], order["version"]) == ("DELIVERED", 4)
        refund = _ok(
            svc.post(
                "/rpc/initiate_refund", json={"payment_id": payment_id, "amount": 2000, "reason": "late"}
            )
        )
        assert (
            _ok(svc.post("/rpc/complete_refund", json={"refund_id": refund["id"]}))["status"] == "COMPLETED"
        )
        history = _ok(
            svc.get("/order_status_history", params={"order_id": f"eq.{order_id}", "order": "version.asc"})
        )
        assert [h["to_status"] for h in history] == ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED"]
        assert history[-1]["actor"] == f"agent:{agent}"
    with api.client("admin") as adm:
        seller_wallet = _ok(adm.get("/wallet_balances", params={"seller_id": f"eq.{world['seller']}"}))
        fee = (12_000 * 1000 + 5000) // 10000
        assert seller_wallet[0]["balance"] == (12_000 - fee) - (2000 - fee * 2000 // 12_000)


def test_business_errors_have_registered_codes_and_change_nothing(api: Api, world: dict) -> None:
    order_id, payment_id, assignment_id = _paid_offer(api, world)
    with api.client("service") as svc:
        before = svc.get("/orders", params={"select": "id"}, headers={"Prefer": "count=exact"}).headers[
            "content-range"
        ]
        body = {
            "customer_id": world["customer"],
            "seller_id": world["seller"],
            "ship_to_zip": world["zip"],
            "currency": "EUR",
        }
        _err(svc.post("/rpc/create_order", json=body | {"amount": -5}), 422, "INVALID_AMOUNT")
        _err(
            svc.post("/rpc/create_order", json=body | {"amount": 5, "currency": "eur"}),
            422,
            "INVALID_CURRENCY",
        )
        _err(
            svc.post("/rpc/create_order", json=body | {"amount": 5, "ship_to_zip": "12"}),
            422,
            "INVALID_ZIP_CODE",
        )
        _err(
            svc.post("/rpc/create_order", json=body | {"amount": 5, "customer_id": 987654321}),
            404,
            "CUSTOMER_NOT_FOUND",
        )
        bad_type = svc.post("/rpc/create_order", json=body | {"amount": "lots"})
        assert bad_type.status_code == 400 and set(bad_type.json()) == ERROR_KEYS
        after = svc.get("/orders", params={"select": "id"}, headers={"Prefer": "count=exact"}).headers[
            "content-range"
        ]
        assert after.split("/")[1] == before.split("/")[1]
        _err(svc.post("/rpc/confirm_order", json={"order_id": 987654321}), 404, "ORDER_NOT_FOUND")
        _err(svc.post("/rpc/confirm_order", json={"order_id": order_id}), 409, "ORDER_INVALID_TRANSITION")
        _err(
            svc.post("/rpc/cancel_order", json={"order_id": order_id, "expected_version": 1}),
            409,
            "ORDER_STATUS_CONFLICT",
        )
        _err(
            svc.post("/rpc/initiate_refund", json={"payment_id": payment_id, "amount": 10_001}),
            422,
            "REFUND_EXCEEDS_CAPTURED",
        )
        _err(svc.post("/rpc/offer_assignment", json={"order_id": order_id}), 409, "ASSIGNMENT_ALREADY_LIVE")
    with api.client("agent", world["agents"][0]) as a0, api.client("agent", world["agents"][1]) as a1:
        _ok(a0.post("/rpc/accept_assignment", json={"assignment_id": assignment_id}))
        # Taken by a0, a1 can no longer read it: answered exactly as an id that never existed (issue 7).
        unknown = _err(a1.post("/rpc/accept_assignment", json={"assignment_id": 987654321}),
                       404, "ASSIGNMENT_NOT_FOUND")  # fmt: skip
        taken = _err(a1.post("/rpc/accept_assignment", json={"assignment_id": assignment_id}),
                     404, "ASSIGNMENT_NOT_FOUND")  # fmt: skip
        assert {k: str(v).replace(str(assignment_id), "N") for k, v in taken.items()} == {
            k: str(v).replace("987654321", "N") for k, v in unknown.items()
        }
        _err(a1.post("/rpc/advance_assignment", json={"assignment_id": assignment_id, "status": "PICKED_UP"}),
             404, "ASSIGNMENT_NOT_FOUND")  # fmt: skip
        _err(a0.post("/rpc/advance_assignment", json={"assignment_id": assignment_id, "status": "DELIVERED"}),
             409, "ASSIGNMENT_INVALID_TRANSITION")  # fmt: skip
    with api.client("agent", world["agents"][2]) as far:
        _err(
            far.post("/rpc/accept_assignment", json={"assignment_id": assignment_id}),
            404,
            "ASSIGNMENT_NOT_FOUND",
        )


def test_rbac(api: Api, world: dict) -> None:
    _, _, assignment_id = _paid_offer(api, world)
    with api.client() as anon:
        r = anon.get("/orders")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
        assert set(r.json()) == ERROR_KEYS
        assert _ok(anon.get("/rpc/health_db"))["status"] == "ok"
        pool = _ok(anon.get("/rpc/health_pool"))
        assert {
            "connections",
            "max_connections",
            "utilization_pct",
            "waiting_locks",
            "oldest_transaction_s",
        } <= set(pool)
        assert "query" not in str(pool)
    with api.client("service") as svc:
        assert svc.get("/wallet_balances").status_code == 403
        assert svc.get("/slow_statements").status_code == 403
    with api.client("agent", world["agents"][0]) as ag:
        assert ag.get("/orders").status_code == 403
        assert ag.post("/rpc/create_order", json={}).status_code in (403, 404)
        forbidden = ag.post("/rpc/create_order", json={"customer_id": 1, "seller_id": 1, "ship_to_zip": "10001",
                                                       "amount": 1, "currency": "EUR"})  # fmt: skip
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "42501"
        mine = _ok(ag.get("/delivery_agents"))
        assert [a["id"] for a in mine] == [world["agents"][0]]
    with api.client("agent", world["agents"][2]) as other:  # serves another zip: does not see the offer
        assert _ok(other.get("/shipping_assignments", params={"id": f"eq.{assignment_id}"})) == []
    with api.client("admin") as adm:
        assert _ok(
            adm.get("/shipping_assignments", params={"id": f"eq.{assignment_id}", "select": "id"})
        ) == [{"id": assignment_id}]
        assert isinstance(_ok(adm.get("/slow_statements", params={"limit": 3})), list)
        assert adm.post("/rpc/cancel_order", json={"order_id": 1}).status_code == 403


def test_jwt_errors(api: Api) -> None:
    expired = api.token("admin", ttl=-120)
    forged = jwt.encode({"role": "admin"}, "x" * 40, algorithm="HS256")
    for token, code in ((expired, "PGRST303"), (forged, "PGRST301"), ("garbage", "PGRST301")):
        r = httpx.get(f"{api.base_url}/orders", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
        assert r.json()["code"] == code
        assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_pagination_and_counts(api: Api, world: dict) -> None:
    with api.client("service") as svc:
        for _ in range(3):
            _ok(svc.post("/rpc/create_order", json={"customer_id": world["customer"], "seller_id": world["seller"],
                                                    "ship_to_zip": world["zip"], "amount": 100, "currency": "EUR"}))  # fmt: skip
        mine = {"customer_id": f"eq.{world['customer']}", "order": "id.asc"}
        full = svc.get("/orders", params=mine | {"select": "id"}, headers={"Prefer": "count=exact"})
        assert full.status_code == 200 and full.headers["content-range"] == "0-2/3"
        assert full.headers["preference-applied"] == "count=exact"
        page = svc.get(
            "/orders", params=mine | {"select": "id", "limit": 2}, headers={"Prefer": "count=exact"}
        )
        assert page.status_code == 206 and page.headers["content-range"] == "0-1/3"
        assert [o["id"] for o in page.json()] == [o["id"] for o in full.json()][:2]
        ranged = svc.get("/orders", params=mine | {"select": "id"}, headers={"Range": "1-2"})
        assert [o["id"] for o in ranged.json()] == [o["id"] for o in full.json()][1:]
        assert ranged.headers["content-range"] == "1-2/*"
        past = svc.get("/orders", params=mine | {"offset": 10}, headers={"Prefer": "count=exact"})
        assert past.status_code == 416 and past.json()["code"] == "PGRST103"
        none = svc.get("/orders", params={"customer_id": "eq.-1"}, headers={"Prefer": "count=exact"})
        assert none.json() == [] and none.headers["content-range"] == "*/0"
        filtered = _ok(svc.get("/orders", params={"customer_id": f"eq.{world['customer']}", "amount": "gte.100",
                                                  "status": "in.(PENDING,CANCELLED)", "select": "status"}))  # fmt: skip
        assert filtered == [{"status": "PENDING"}] * 3
        assert svc.get("/orders", params={"nope": "eq.1"}).status_code == 400


def test_bad_requests_are_never_500(api: Api) -> None:
    with api.client("service") as svc:
        cases = [
            svc.post("/rpc/create_order", content=b"{not json", headers={"Content-Type": "application/json"}),
            svc.post("/rpc/no_such_function", json={}),
            svc.get("/no_such_view"),
            svc.delete("/rpc/create_order"),
            svc.get("/orders", params={"id": "wat.1"}),
            svc.get("/orders", params={"order": "nope.desc"}),
            svc.get("/orders", headers={"Accept-Profile": "core"}),
            svc.post("/rpc/confirm_order", json={"order_id": "x"}),
        ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        assert set(r.json()) == ERROR_KEYS, r.text
        assert "Traceback" not in r.text
