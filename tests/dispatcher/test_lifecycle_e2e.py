"""End to end: a lifecycle driven over HTTP (gateway/) produces all 11 event types at a receiver,
each verified with the `standardwebhooks` library, in causal order per order when sent one at a time;
and `waybill receiver` (the example consumer) verifies, dedups and prints."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from standardwebhooks.webhooks import Webhook

from dispatcher import signing
from tests.dispatcher.helpers import DispatcherThread, Hook, wait_until
from tests.gateway.conftest import dbname_of, start_gateway, stop_gateway
from waybill.cluster import Cluster, free_port
from waybill.settings import PROJECT_ROOT

ALL_TYPES = {
    "order.confirmed", "order.cancelled", "order.delivered", "payment.captured", "payment.failed",
    "refund.initiated", "refund.completed", "shipment.assigned", "shipment.picked_up",
    "shipment.in_transit", "shipment.failed",
}  # fmt: skip


def _ok(r: httpx.Response) -> dict:
    assert r.status_code < 300, (r.status_code, r.text)
    body = r.json()
    return body[0] if isinstance(body, list) and len(body) == 1 else body


def _order(svc: httpx.Client, world: dict, amount: int) -> tuple[int, int]:
    order = _ok(svc.post("/rpc/create_order", json={
        "customer_id": world["customer"], "seller_id": world["seller"], "ship_to_zip": world["zip"],
        "amount": amount, "currency": "EUR"}))  # fmt: skip
    payment = _ok(svc.get("/payments", params={"order_id": f"eq.{order['id']}", "select": "id"}))
    return order["id"], payment["id"]


def _shipped(svc: httpx.Client, ag: httpx.Client, order_id: int, payment_id: int, steps: list[str]) -> int:
    _ok(svc.post("/rpc/capture_payment", json={"payment_id": payment_id, "provider_ref": f"pi_{order_id}"}))
    _ok(svc.post("/rpc/confirm_order", json={"order_id": order_id}))
    assignment = _ok(svc.post("/rpc/offer_assignment", json={"order_id": order_id}))["id"]
    _ok(ag.post("/rpc/accept_assignment", json={"assignment_id": assignment}))
    for step in steps:
        body = {"assignment_id": assignment, "status": step}
        if step == "FAILED":
            body["reason"] = "nobody home"
        _ok(ag.post("/rpc/advance_assignment", json=body))
    return assignment


def test_a_lifecycle_over_http_delivers_all_11_types_verified_and_in_order(
    cluster: Cluster, db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    hook = Hook()
    gw = start_gateway(cluster, dbname_of(db_url), tmp_path / "gateway.log")
    try:
        world = {"zip": "73001"}
        world["customer"] = conn.execute(
            "insert into core.customers (name, email) values ('E2E', 'e2e@example.test') returning id"
        ).fetchone()[0]
        world["seller"] = conn.execute(
            "insert into core.sellers (name) values ('E2E') returning id"
        ).fetchone()[0]
        agent = conn.execute(
            "insert into core.delivery_agents (name, serviceable_zip_codes) values ('E2E', '{73001}') returning id"
        ).fetchone()[0]
        with gw.client("admin") as adm:
            sub = _ok(
                adm.post("/rpc/create_webhook_subscription", json={"url": hook.url(), "event_types": ["*"]})
            )
        secret = sub["secret"]
        with gw.client("service") as svc, gw.client("agent", sub=str(agent)) as ag:
            delivered, pay_a = _order(svc, world, 12_000)
            _shipped(svc, ag, delivered, pay_a, ["PICKED_UP", "IN_TRANSIT", "DELIVERED"])
            refund = _ok(svc.post("/rpc/initiate_refund", json={"payment_id": pay_a, "amount": 2000}))
            _ok(svc.post("/rpc/complete_refund", json={"refund_id": refund["id"]}))
            failed_ship, pay_b = _order(svc, world, 3_000)
            _shipped(svc, ag, failed_ship, pay_b, ["PICKED_UP", "FAILED"])
            declined, pay_c = _order(svc, world, 500)
            _ok(svc.post("/rpc/fail_payment", json={"payment_id": pay_c, "reason": "card declined"}))
            _ok(svc.post("/rpc/cancel_order", json={"order_id": declined}))
        expected = conn.execute("select count(*) from webhooks.deliveries").fetchone()[0]
        # One at a time (per-subscription limit 1): the receiver sees the commit order.
        with DispatcherThread(db_url, per_subscription=1):
            wait_until(lambda: len(hook.received) == expected, what=f"{expected} webhooks")
    finally:
        stop_gateway(gw)
        hook.close()
    events = []
    for r in hook.received:
        payload = Webhook(secret).verify(r.body, r.headers)  # raises unless signed right
        assert payload["eventId"] == r.headers["webhook-id"]
        assert set(payload) == {"eventId", "eventType", "timestamp", "idempotencyKey", "data"}
        events.append(payload)
    assert {e["eventType"] for e in events} == ALL_TYPES
    order_of = {e["eventId"]: e["data"]["id"] if e["eventType"].startswith("order.") else e["data"]["orderId"]
                for e in events}  # fmt: skip
    sequence = [e["eventType"] for e in events if order_of[e["eventId"]] == delivered]
    assert sequence == [
        "payment.captured", "order.confirmed", "shipment.assigned", "shipment.picked_up",
        "shipment.in_transit", "order.delivered", "refund.initiated", "refund.completed",
    ]  # fmt: skip
    assert [e["eventType"] for e in events if order_of[e["eventId"]] == failed_ship][-1] == "shipment.failed"
    assert [e["eventType"] for e in events if order_of[e["eventId"]] == declined] == [
        "payment.failed",
        "order.cancelled",
    ]
    amounts = {e["eventType"]: e["data"].get("amount") for e in events if order_of[e["eventId"]] == delivered}
    assert amounts["payment.captured"] == 12_000 and amounts["refund.completed"] == 2000


def test_the_example_receiver_verifies_dedups_and_prints(tmp_path: Path) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o644)
    port = free_port()
    env = dict(os.environ, WAYBILL_RECEIVER_SECRET_FILE=str(secret_file))
    cmd = [sys.executable, "-m", "waybill", "receiver", "--port", str(port)]
    refused = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "chmod 600" in refused.stderr  # a readable secret file is refused
    secret_file.chmod(0o600)
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/"

        def up() -> bool:
            try:
                return httpx.get(url + "healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, what="receiver up")
        body = json.dumps({"eventId": "e-1", "eventType": "order.confirmed", "timestamp": "t",
                           "idempotencyKey": "k", "data": {"id": 7}}).encode()  # fmt: skip
        headers = signing.headers("e-1", int(time.time()), body, [secret])
        assert httpx.post(url, content=body, headers=headers).json() == {"ok": True}
        assert httpx.post(url, content=body, headers=headers).json() == {"duplicate": True}
        forged = dict(headers, **{"webhook-signature": signing.headers("e-1", int(time.time()), body + b" ",
                                                                       [secret])["webhook-signature"]})  # fmt: skip
        assert httpx.post(url, content=body, headers=forged).status_code == 401
        stale = signing.headers("e-2", int(time.time()) - 600, body, [secret])
        assert httpx.post(url, content=body, headers=stale).status_code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    printed = [line for line in out.decode().splitlines() if line.startswith("webhook ")]
    assert len(printed) == 1 and "order.confirmed" in printed[0] and "e-1" in printed[0]
    assert b"webhook_receive_rejected" in err and b"webhook_receive_duplicated" in err
