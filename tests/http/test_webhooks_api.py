"""Webhooks over HTTP (issue 9): every event type at its lifecycle step with the exact payload, one
delivery per matching subscription, SKIPPED while disabled, every admin call and every RBAC denial.

Runs against gateway/ or, with WAYBILL_API_URL, against a real PostgREST v13.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime

import httpx
import pytest

from tests.http.conftest import Api

ERROR_KEYS = {"code", "message", "details", "hint"}
PAYLOAD_KEYS = {"eventId", "eventType", "timestamp", "idempotencyKey", "data"}
ALL_TYPES = {
    "order.confirmed", "order.cancelled", "order.delivered", "payment.captured", "payment.failed",
    "refund.initiated", "refund.completed", "shipment.assigned", "shipment.picked_up",
    "shipment.in_transit", "shipment.failed",
}  # fmt: skip


def _ok(r: httpx.Response, status: int = 200):
    assert r.status_code == status, (r.status_code, r.text)
    return r.json() if r.content else None


def _err(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == ERROR_KEYS and body["code"] == code, body
    return body


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _same_value(got, want) -> bool:
    """Payload values against the API's row: timestamps compared as instants, the rest exactly."""
    if isinstance(want, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT.*", want):
        return isinstance(got, str) and datetime.fromisoformat(
            got.replace("Z", "+00:00")
        ) == datetime.fromisoformat(want)
    return got == want and type(got) is type(want)


def _assert_data_is_row(data: dict, row: dict, extra: dict | None = None) -> None:
    """data is the API's row in camelCase (amounts integers), plus `extra` keys; nothing else."""
    want = {_camel(k): v for k, v in row.items()} | (extra or {})
    assert set(data) == set(want), (sorted(data), sorted(want))
    bad = {k: (data[k], want[k]) for k in want if not _same_value(data[k], want[k])}
    assert not bad, bad


def _subscribe(api: Api, event_types: list[str], url: str = "https://hooks.example.test/in") -> dict:
    with api.client("admin") as adm:
        return _ok(
            adm.post("/rpc/create_webhook_subscription", json={"url": url, "event_types": event_types})
        )


class Events:
    """Reads the events of one aggregate through GET /webhook_events as an admin."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.seen: set[str] = set()

    def new(self, aggregate_type: str, aggregate_id: int) -> list[dict]:
        with self.api.client("admin") as adm:
            rows = _ok(adm.get("/webhook_events", params={
                "aggregate_type": f"eq.{aggregate_type}", "aggregate_id": f"eq.{aggregate_id}",
                "order": "created_at.asc"}))  # fmt: skip
        fresh = [r for r in rows if r["id"] not in self.seen]
        self.seen |= {r["id"] for r in fresh}
        return fresh

    def one(self, aggregate_type: str, aggregate_id: int, event_type: str) -> dict:
        fresh = self.new(aggregate_type, aggregate_id)
        assert [r["event_type"] for r in fresh] == [event_type], fresh
        ev = fresh[0]
        payload = ev["payload"]
        assert set(payload) == PAYLOAD_KEYS, payload
        assert payload["eventId"] == ev["id"] and payload["eventType"] == event_type
        assert payload["idempotencyKey"] == ev["idempotency_key"]
        assert _same_value(payload["timestamp"], ev["occurred_at"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", payload["timestamp"]), payload
        return payload


def test_every_event_type_at_its_lifecycle_step(api: Api, world: dict) -> None:
    sub = _subscribe(api, ["*"])
    assert set(sub["event_types"]) == ALL_TYPES
    ev = Events(api)
    seen_types: set[str] = set()

    def check(kind: str, agg_id: int, event_type: str, row: dict, extra: dict | None = None) -> None:
        payload = ev.one(kind, agg_id, event_type)
        _assert_data_is_row(payload["data"], row, extra)
        seen_types.add(event_type)

    with api.client("service") as svc:
        order = _ok(svc.post("/rpc/create_order", json={
            "customer_id": world["customer"], "seller_id": world["seller"],
            "ship_to_zip": world["zip"], "amount": 12_345, "currency": "EUR"}))  # fmt: skip
        assert ev.new("order", order["id"]) == []
        pay_id = _ok(svc.get("/payments", params={"order_id": f"eq.{order['id']}"}))[0]["id"]
        paid = _ok(
            svc.post("/rpc/capture_payment", json={"payment_id": pay_id, "provider_ref": f"wh_{pay_id}"})
        )
        check("payment", pay_id, "payment.captured", paid)
        confirmed = _ok(svc.post("/rpc/confirm_order", json={"order_id": order["id"]}))
        check("order", order["id"], "order.confirmed", confirmed)
        offer = _ok(svc.post("/rpc/offer_assignment", json={"order_id": order["id"]}))
        assert ev.new("shipment", offer["id"]) == []
    with api.client("agent", world["agents"][0]) as ag:
        accepted = _ok(ag.post("/rpc/accept_assignment", json={"assignment_id": offer["id"]}))
        check("shipment", offer["id"], "shipment.assigned", accepted)
        for status, etype in (("PICKED_UP", "shipment.picked_up"), ("IN_TRANSIT", "shipment.in_transit")):
            moved = _ok(
                ag.post("/rpc/advance_assignment", json={"assignment_id": offer["id"], "status": status})
            )
            check("shipment", offer["id"], etype, moved)
        failed = _ok(
            ag.post(
                "/rpc/advance_assignment",
                json={"assignment_id": offer["id"], "status": "FAILED", "reason": "nobody home"},
            )
        )
        check("shipment", offer["id"], "shipment.failed", failed)
        assert ev.new("order", order["id"]) == [], (
            "back to CONFIRMED after a failed delivery is not order.confirmed"
        )
    with api.client("service") as svc:
        offer2 = _ok(svc.post("/rpc/offer_assignment", json={"order_id": order["id"]}))
    with api.client("agent", world["agents"][1]) as ag:
        _ok(ag.post("/rpc/accept_assignment", json={"assignment_id": offer2["id"]}))
        for status in ("PICKED_UP", "IN_TRANSIT", "DELIVERED"):
            _ok(ag.post("/rpc/advance_assignment", json={"assignment_id": offer2["id"], "status": status}))
    assert [r["event_type"] for r in ev.new("shipment", offer2["id"])] == [
        "shipment.assigned", "shipment.picked_up", "shipment.in_transit"]  # fmt: skip
    with api.client("service") as svc:
        delivered = _ok(svc.get("/orders", params={"id": f"eq.{order['id']}"}))[0]
        check("order", order["id"], "order.delivered", delivered)
        refund = _ok(
            svc.post("/rpc/initiate_refund", json={"payment_id": pay_id, "amount": 345, "reason": "dent"})
        )
        check("refund", refund["id"], "refund.initiated", refund, {"currency": "EUR", "orderId": order["id"]})
        done = _ok(svc.post("/rpc/complete_refund", json={"refund_id": refund["id"]}))
        check("refund", refund["id"], "refund.completed", done, {"currency": "EUR", "orderId": order["id"]})

        order2 = _ok(svc.post("/rpc/create_order", json={
            "customer_id": world["customer"], "seller_id": world["seller"],
            "ship_to_zip": world["zip"], "amount": 999, "currency": "USD"}))  # fmt: skip
        pay2 = _ok(svc.get("/payments", params={"order_id": f"eq.{order2['id']}"}))[0]["id"]
        declined = _ok(svc.post("/rpc/fail_payment", json={"payment_id": pay2, "reason": "card declined"}))
        check("payment", pay2, "payment.failed", declined)
        cancelled = _ok(svc.post("/rpc/cancel_order", json={"order_id": order2["id"]}))
        check("order", order2["id"], "order.cancelled", cancelled)
    assert seen_types == ALL_TYPES

    # One delivery per event for this subscription, each PENDING and due.
    with api.client("admin") as adm:
        rows = _ok(adm.get("/webhook_deliveries", params={"subscription_id": f"eq.{sub['id']}",
                                                          "event_id": f"in.({','.join(ev.seen)})"}))  # fmt: skip
    assert len(rows) == len(ev.seen) == 14
    assert {r["status"] for r in rows} == {"PENDING"}


def test_one_delivery_per_matching_subscription_and_skipped_while_disabled(api: Api, world: dict) -> None:
    orders_sub = _subscribe(api, ["order.confirmed", "order.cancelled"])
    pay_sub = _subscribe(api, ["payment.failed"])
    off_sub = _subscribe(api, ["order.confirmed"])
    with api.client("admin") as adm:
        off = _ok(adm.post("/rpc/disable_webhook_subscription", json={"id": off_sub["id"]}))
        assert (off["status"], off["disabled_reason"]) == ("DISABLED", "MANUAL")
    with api.client("service") as svc:
        order = _ok(svc.post("/rpc/create_order", json={
            "customer_id": world["customer"], "seller_id": world["seller"],
            "ship_to_zip": world["zip"], "amount": 500, "currency": "EUR"}))  # fmt: skip
        pay = _ok(svc.get("/payments", params={"order_id": f"eq.{order['id']}"}))[0]["id"]
        _ok(svc.post("/rpc/capture_payment", json={"payment_id": pay, "provider_ref": f"wh1_{pay}"}))
        _ok(svc.post("/rpc/confirm_order", json={"order_id": order["id"]}))
    with api.client("admin") as adm:
        event = _ok(adm.get("/webhook_events", params={"aggregate_type": "eq.order", "aggregate_id": f"eq.{order['id']}",
                                                       "event_type": "eq.order.confirmed"}))  # fmt: skip
        assert len(event) == 1
        mine = {orders_sub["id"], pay_sub["id"], off_sub["id"]}
        rows = _ok(adm.get("/webhook_deliveries", params={"event_id": f"eq.{event[0]['id']}"}))
        by_sub = {r["subscription_id"]: r["status"] for r in rows if r["subscription_id"] in mine}
        assert by_sub == {orders_sub["id"]: "PENDING", off_sub["id"]: "SKIPPED"}
        assert len([r for r in rows if r["subscription_id"] == orders_sub["id"]]) == 1
        # Re-enabled with recover_since: the SKIPPED delivery is sent again.
        on = _ok(
            adm.post(
                "/rpc/enable_webhook_subscription",
                json={"id": off_sub["id"], "recover_since": order["created_at"]},
            )
        )
        assert (on["status"], on["requeued"]) == ("ACTIVE", 1)
        again = _ok(adm.get("/webhook_deliveries", params={"subscription_id": f"eq.{off_sub['id']}"}))
        assert [(r["status"], r["next_trigger"]) for r in again] == [("PENDING", "recover")]


def test_subscription_admin_calls(api: Api) -> None:
    with api.client("admin") as adm:
        created = _ok(adm.post("/rpc/create_webhook_subscription", json={
            "url": "https://partner.example.test/hooks?x=1", "event_types": ["refund.completed", "order.confirmed"],
            "description": "partner"}))  # fmt: skip
        secret = created["secret"]
        assert secret.startswith("whsec_") and 24 <= len(base64.b64decode(secret[6:])) <= 64
        assert created["event_types"] == ["order.confirmed", "refund.completed"]
        assert (created["status"], created["pending"], created["failed"]) == ("ACTIVE", 0, 0)
        sid = created["id"]
        listed = _ok(adm.get("/webhook_subscriptions", params={"id": f"eq.{sid}"}))
        assert len(listed) == 1 and "secret" not in listed[0] and secret not in str(listed)
        assert {
            "pending",
            "sending",
            "delivered",
            "failed",
            "skipped",
            "last_success_at",
            "last_failure_at",
        } <= set(listed[0])

        updated = _ok(
            adm.post(
                "/rpc/update_webhook_subscription",
                json={"id": sid, "url": "https://partner.example.test/v2", "event_types": ["*"]},
            )
        )
        assert updated["url"] == "https://partner.example.test/v2" and len(updated["event_types"]) == 11
        assert updated["description"] == "partner"

        rotated = _ok(adm.post("/rpc/rotate_webhook_secret", json={"id": sid, "grace_seconds": 3600}))
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
        assert rotated["subscription_id"] == sid and rotated["previous_secret_expires_at"]

        disabled = _ok(adm.post("/rpc/disable_webhook_subscription", json={"id": sid}))
        assert disabled["status"] == "DISABLED" and disabled["disabled_at"]
        enabled = _ok(adm.post("/rpc/enable_webhook_subscription", json={"id": sid}))
        assert (enabled["status"], enabled["disabled_reason"], enabled["requeued"]) == ("ACTIVE", None, 0)
        types = _ok(adm.get("/webhook_event_types"))
        assert {t["event_type"] for t in types} == ALL_TYPES
        assert isinstance(_ok(adm.get("/webhook_dispatchers")), list)
        assert isinstance(_ok(adm.get("/webhook_attempts", params={"limit": 5, "order": "id.desc"})), list)
    # The secrets, and only they, sign: the dispatcher's function returns both during the grace period.
    with api.db() as conn:
        secrets = conn.execute("select webhooks.subscription_secrets(%s)", [sid]).fetchone()[0]
    assert secrets == [rotated["secret"], secret]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/rpc/create_webhook_subscription", {"url": "ftp://x.test/", "event_types": ["*"]}, 422, "WEBHOOK_INVALID_URL"),
        ("/rpc/create_webhook_subscription", {"url": "https://u:p@x.test/", "event_types": ["*"]}, 422, "WEBHOOK_INVALID_URL"),
        ("/rpc/create_webhook_subscription", {"url": "https://x.test/" + "a" * 2040, "event_types": ["*"]}, 422, "WEBHOOK_INVALID_URL"),
        ("/rpc/create_webhook_subscription", {"url": "https://x.test/", "event_types": ["order.shipped"]}, 422, "WEBHOOK_UNKNOWN_EVENT_TYPE"),
        ("/rpc/create_webhook_subscription", {"url": "https://x.test/", "event_types": []}, 400, "INVALID_ARGUMENT"),
        ("/rpc/update_webhook_subscription", {"id": 987654321, "description": "x"}, 404, "WEBHOOK_SUBSCRIPTION_NOT_FOUND"),
        ("/rpc/disable_webhook_subscription", {"id": 987654321}, 404, "WEBHOOK_SUBSCRIPTION_NOT_FOUND"),
        ("/rpc/enable_webhook_subscription", {"id": 987654321}, 404, "WEBHOOK_SUBSCRIPTION_NOT_FOUND"),
        ("/rpc/rotate_webhook_secret", {"id": 987654321}, 404, "WEBHOOK_SUBSCRIPTION_NOT_FOUND"),
        ("/rpc/retry_webhook_delivery", {"delivery_id": 987654321}, 404, "WEBHOOK_DELIVERY_NOT_FOUND"),
        ("/rpc/recover_webhook_deliveries", {"subscription_id": 987654321, "since": "2026-01-01T00:00:00Z"}, 404,
         "WEBHOOK_SUBSCRIPTION_NOT_FOUND"),
    ],
)  # fmt: skip
def test_bad_input_gets_registered_errors(api: Api, path: str, body: dict, status: int, code: str) -> None:
    with api.client("admin") as adm:
        before = _ok(adm.get("/webhook_subscriptions", params={"select": "id"}))
        _err(adm.post(path, json=body), status, code)
        after = _ok(adm.get("/webhook_subscriptions", params={"select": "id"}))
    assert len(after) == len(before)


def test_retry_and_recover_deliveries(api: Api, world: dict) -> None:
    sub = _subscribe(api, ["order.cancelled"])
    with api.client("service") as svc:
        ids = []
        for _ in range(3):
            order = _ok(svc.post("/rpc/create_order", json={
                "customer_id": world["customer"], "seller_id": world["seller"],
                "ship_to_zip": world["zip"], "amount": 100, "currency": "EUR"}))  # fmt: skip
            _ok(svc.post("/rpc/cancel_order", json={"order_id": order["id"]}))
            ids.append(order["id"])
    with api.client("admin") as adm:
        rows = _ok(
            adm.get("/webhook_deliveries", params={"subscription_id": f"eq.{sub['id']}", "order": "id.asc"})
        )
        assert len(rows) == 3
        first, second, third = (r["id"] for r in rows)
        _err(
            adm.post("/rpc/retry_webhook_delivery", json={"delivery_id": first}),
            409,
            "WEBHOOK_DELIVERY_NOT_RETRYABLE",
        )
    # The dispatcher's functions move them on: one DELIVERED, two FAILED after the whole schedule.
    with api.db() as conn:
        token = _lease(conn, [first, second, third], "now()")
        assert conn.execute("select webhooks.record_attempt(%s, 'http-test', %s, now(), 3, 200)",
                            [first, token[first]]).fetchone()[0] == "DELIVERED"  # fmt: skip
        for d in (second, third):
            conn.execute("select webhooks.record_attempt(%s, 'http-test', %s, now(), 3, 400)", [d, token[d]])
        for i in range(1, 6):  # five retries, the clock injected hours ahead: no sleeping
            at = f"now() + interval '{i} hours'"
            token = _lease(conn, [second, third], at)
            for d in (second, third):
                conn.execute(
                    f"select webhooks.record_attempt(%s, 'http-test', %s, {at}, 3, 400, null, 'no', null, {at})",
                    [d, token[d]],
                )
    with api.client("admin") as adm:
        statuses = {
            r["id"]: r["status"]
            for r in _ok(adm.get("/webhook_deliveries", params={"subscription_id": f"eq.{sub['id']}"}))
        }
        assert statuses == {first: "DELIVERED", second: "FAILED", third: "FAILED"}
        tries = _ok(
            adm.get("/webhook_attempts", params={"delivery_id": f"eq.{second}", "order": "attempt.asc"})
        )
        assert [t["attempt"] for t in tries] == [1, 2, 3, 4, 5, 6]
        assert {t["error_class"] for t in tries} == {"http_4xx"}
        listed = _ok(adm.get("/webhook_subscriptions", params={"id": f"eq.{sub['id']}"}))[0]
        assert (listed["delivered"], listed["failed"]) == (1, 2)
        assert listed["last_success_at"] and listed["last_failure_at"]
        failed = _ok(adm.get("/webhook_deliveries", params={"status": "eq.FAILED", "order": "created_at.desc",
                                                            "subscription_id": f"eq.{sub['id']}"}))  # fmt: skip
        assert [r["id"] for r in failed] == [third, second]
        health = _ok(adm.get("/rpc/health_webhooks"))
        assert health["failed_last_hour"] >= 2

        _err(
            adm.post("/rpc/retry_webhook_delivery", json={"delivery_id": first}),
            409,
            "WEBHOOK_DELIVERY_NOT_RETRYABLE",
        )
        retried = _ok(adm.post("/rpc/retry_webhook_delivery", json={"delivery_id": second}))
        assert (retried["status"], retried["next_trigger"]) == ("PENDING", "manual")
        recovered = _ok(
            adm.post(
                "/rpc/recover_webhook_deliveries",
                json={"subscription_id": sub["id"], "since": rows[0]["created_at"]},
            )
        )
        assert recovered == {"requeued": 1}
        _err(adm.post("/rpc/recover_webhook_deliveries",
                      json={"subscription_id": sub["id"], "since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
             400, "INVALID_ARGUMENT")  # fmt: skip
        statuses = {r["id"]: (r["status"], r["next_trigger"]) for r in _ok(adm.get(
            "/webhook_deliveries", params={"subscription_id": f"eq.{sub['id']}"}))}  # fmt: skip
        assert statuses == {
            first: ("DELIVERED", "scheduled"),
            second: ("PENDING", "manual"),
            third: ("PENDING", "recover"),
        }


def _lease(conn, ids: list[int], at: str) -> dict[int, str]:
    """Claim as a dispatcher at time `at` until every delivery of `ids` is leased (the suite's
    database holds other tests' deliveries too); returns their lease tokens."""
    tokens: dict[int, str] = {}
    for _ in range(200):
        rows = conn.execute(
            f"select delivery_id, lease_token from webhooks.claim_deliveries('http-test', 50, '20 seconds', 50, {at})"
        ).fetchall()
        tokens |= {d: t for d, t in rows if d in ids}
        if len(tokens) == len(ids):
            return tokens
        assert rows, f"deliveries {set(ids) - set(tokens)} are not claimable"
    raise AssertionError(f"deliveries {set(ids) - set(tokens)} never claimed")


ADMIN_CALLS = [
    ("get", "/webhook_subscriptions", None),
    ("get", "/webhook_events", None),
    ("get", "/webhook_deliveries", None),
    ("get", "/webhook_attempts", None),
    ("get", "/webhook_dispatchers", None),
    ("get", "/webhook_event_types", None),
    ("post", "/rpc/create_webhook_subscription", {"url": "https://x.test/", "event_types": ["*"]}),
    ("post", "/rpc/update_webhook_subscription", {"id": 1, "description": "x"}),
    ("post", "/rpc/disable_webhook_subscription", {"id": 1}),
    ("post", "/rpc/enable_webhook_subscription", {"id": 1}),
    ("post", "/rpc/rotate_webhook_secret", {"id": 1}),
    ("post", "/rpc/retry_webhook_delivery", {"delivery_id": 1}),
    ("post", "/rpc/recover_webhook_deliveries", {"subscription_id": 1, "since": "2026-01-01T00:00:00Z"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_rbac_admin_only(api: Api, method: str, path: str, body: dict | None) -> None:
    with api.client() as anon:
        r = anon.request(method, path, json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
    for role, sub in (("service", None), ("agent", 1)):
        with api.client(role, sub) as c:
            r = c.request(method, path, json=body)
            assert r.status_code == 403 and r.json()["code"] == "42501", (role, r.text)
    with api.client("platform_admin") as pa:
        r = pa.request(method, path, json=body)
        assert r.status_code not in (401, 403), r.text


def test_health_webhooks_is_anon_safe(api: Api) -> None:
    with api.client() as anon:
        health = _ok(anon.get("/rpc/health_webhooks"))
    assert set(health) == {"status", "backlog", "in_flight", "oldest_pending_age_s", "failed_last_hour",
                           "dispatchers_alive", "checked_at"}  # fmt: skip
    assert health["status"] in ("ok", "degraded") and health["backlog"] >= 0
    with api.db() as conn:
        backlog = conn.execute(
            "select count(*) from webhooks.deliveries where status in ('PENDING', 'SENDING')"
        ).fetchone()[0]
    assert health["backlog"] == backlog
