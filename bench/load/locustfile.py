"""Locust users for the load runs (bench/load/run.py starts `locust` with this file; nothing here
starts anything). Every call is the HTTP API a client would make, with that client's JWT.

Environment (set by the runner; the JWT secret by environment, never argv):
  LOAD_WORLD        a JSON file: {"customers", "sellers", "zips": {zip: [agent ids]}, "race_zip"}
  LOAD_JWT_SECRET   to mint the service, admin and agent tokens
  LOAD_PACE         seconds between two lifecycle starts of one user (constant pacing)
  LOAD_ORDERS_LOG   each created order is appended as {"id", "expect"} (expect null until its life ends)
  LOAD_MIX          "cancel,fail,refund" shares of lifecycles (default 0.1,0.1,0.1)

A non-2xx answer that is not an expected outcome is a failure named "<status> <code>"; the expected
losers of a race (409 ASSIGNMENT_ALREADY_TAKEN, 409 conflicts) count as successes, and a race that
ends illegal (two winners, history not matching the successes) is a failure "race:<what>".
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, between, constant_pacing, task

from waybill.auth import mint

WORLD: dict[str, Any] = (
    json.loads(Path(os.environ["LOAD_WORLD"]).read_text()) if os.environ.get("LOAD_WORLD") else {}
)
SECRET = os.environ.get("LOAD_JWT_SECRET", "")
PACE = float(os.environ.get("LOAD_PACE", "10"))
MIX = [float(x) for x in os.environ.get("LOAD_MIX", "0.1,0.1,0.1").split(",")]
_LOG_LOCK = threading.Lock()
_TOKENS: dict[tuple[str, str | None], str] = {}


def token(role: str, sub: str | None = None) -> str:
    if (role, sub) not in _TOKENS:
        _TOKENS[(role, sub)] = mint(SECRET, role, sub=sub, ttl_seconds=24 * 3600)
    return _TOKENS[(role, sub)]


def auth(role: str, sub: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, sub)}"}


def log_order(order_id: int, expect: str | None) -> None:
    path = os.environ.get("LOAD_ORDERS_LOG")
    if path:
        with _LOG_LOCK, open(path, "a") as f:
            f.write(json.dumps({"id": order_id, "expect": expect}) + "\n")


class Failed(Exception):
    pass


class ApiUser(HttpUser):
    abstract = True

    def call(self, name: str, path: str, role: str, body: dict | None = None, sub: str | None = None,
             expected: tuple[tuple[int, str], ...] = ()) -> tuple[int, Any]:  # fmt: skip
        method = "POST" if body is not None else "GET"
        with self.client.request(method, path, json=body, headers=auth(role, sub), name=name,
                                 catch_response=True) as r:  # fmt: skip
            try:
                data = r.json()
            except ValueError:
                data = None
            if 200 <= r.status_code < 300:
                r.success()
                return r.status_code, data
            code = data.get("code") if isinstance(data, dict) else None
            if (r.status_code, code) in expected:
                r.success()
                return r.status_code, data
            r.failure(f"{r.status_code} {code}")
            raise Failed(f"{name}: {r.status_code} {code}")

    def new_paid_order(self, zip_code: str) -> tuple[int, int, int]:
        amount = random.randint(500, 50_000)
        _, order = self.call("/rpc/create_order", "/rpc/create_order", "service", {
            "customer_id": random.choice(WORLD["customers"]), "seller_id": random.choice(WORLD["sellers"]),
            "ship_to_zip": zip_code, "amount": amount, "currency": "EUR"})  # fmt: skip
        log_order(order["id"], None)
        _, pays = self.call("/payments", f"/payments?order_id=eq.{order['id']}&select=id", "service")
        payment = pays[0]["id"]
        self.call("/rpc/capture_payment", "/rpc/capture_payment", "service",
                  {"payment_id": payment, "provider_ref": f"load-{order['id']}"})  # fmt: skip
        return order["id"], payment, amount

    def ship(self, order_id: int, zip_code: str) -> int:
        _, a = self.call("/rpc/offer_assignment", "/rpc/offer_assignment", "service", {"order_id": order_id})
        agent = str(random.choice(WORLD["zips"][zip_code]))
        self.call(
            "/rpc/accept_assignment", "/rpc/accept_assignment", "agent", {"assignment_id": a["id"]}, agent
        )
        for status in ("PICKED_UP", "IN_TRANSIT"):
            self.call(f"/rpc/advance_assignment {status}", "/rpc/advance_assignment", "agent",
                      {"assignment_id": a["id"], "status": status}, agent)  # fmt: skip
        return a["id"], agent  # type: ignore[return-value]


class LifecycleUser(ApiUser):
    """One order's whole life per pacing period, with cancellations, failed deliveries and refunds."""

    fixed_count = int(os.environ.get("LOAD_N_LIFECYCLEUSER", "0"))

    wait_time = constant_pacing(PACE)

    @task
    def lifecycle(self) -> None:
        zip_code = random.choice([z for z in WORLD["zips"] if z != WORLD.get("race_zip")])
        try:
            order_id, payment, amount = self.new_paid_order(zip_code)
            roll = random.random()
            if roll < MIX[0]:
                self.call("/rpc/cancel_order", "/rpc/cancel_order", "service", {"order_id": order_id})
                return log_order(order_id, "CANCELLED")
            self.call("/rpc/confirm_order", "/rpc/confirm_order", "service", {"order_id": order_id})
            assignment, agent = self.ship(order_id, zip_code)
            if roll < MIX[0] + MIX[1]:  # a failed delivery: the order goes back to CONFIRMED, re-offered
                self.call("/rpc/advance_assignment FAILED", "/rpc/advance_assignment", "agent",
                          {"assignment_id": assignment, "status": "FAILED", "reason": "nobody home"}, agent)  # fmt: skip
                assignment, agent = self.ship(order_id, zip_code)
            self.call("/rpc/advance_assignment DELIVERED", "/rpc/advance_assignment", "agent",
                      {"assignment_id": assignment, "status": "DELIVERED"}, agent)  # fmt: skip
            if roll < MIX[0] + MIX[1] + MIX[2]:
                _, refund = self.call("/rpc/initiate_refund", "/rpc/initiate_refund", "service",
                                      {"payment_id": payment, "amount": amount // 2, "reason": "damaged"})  # fmt: skip
                self.call(
                    "/rpc/complete_refund", "/rpc/complete_refund", "service", {"refund_id": refund["id"]}
                )
            log_order(order_id, "DELIVERED")
        except Failed:
            pass  # counted by locust; the order stays where it stood (logged as created)


class AcceptRaceUser(ApiUser):
    """An offer in the race zip (served by 10 agents), accepted by all 10 at once: exactly one wins."""

    fixed_count = int(os.environ.get("LOAD_N_ACCEPTRACEUSER", "0"))

    wait_time = between(0.2, 0.5)

    @task
    def race(self) -> None:
        z = WORLD["race_zip"]
        try:
            order_id, _, _ = self.new_paid_order(z)
            self.call("/rpc/confirm_order", "/rpc/confirm_order", "service", {"order_id": order_id})
            _, a = self.call(
                "/rpc/offer_assignment", "/rpc/offer_assignment", "service", {"order_id": order_id}
            )
        except Failed:
            return
        # the losers: 409 while the offer is still visible to them, 404 once another agent holds it
        taken = ((409, "ASSIGNMENT_ALREADY_TAKEN"), (404, "ASSIGNMENT_NOT_FOUND"))

        def accept(agent: int) -> int:
            try:
                return self.call("/rpc/accept_assignment (race)", "/rpc/accept_assignment", "agent",
                                 {"assignment_id": a["id"]}, str(agent), expected=taken)[0]  # fmt: skip
            except Failed:
                return 0

        jobs = [gevent.spawn(accept, agent) for agent in WORLD["zips"][z]]
        gevent.joinall(jobs)
        winners = sum(1 for j in jobs if j.value == 200)
        self.environment.events.request.fire(
            request_type="RACE", name="race:accept one winner", response_time=0, response_length=0,
            exception=None if winners == 1 else Failed(f"{winners} winners"), context={})  # fmt: skip
        log_order(order_id, "CONFIRMED")


class StatusRaceUser(ApiUser):
    """5 concurrent status updates of one paid PENDING order (3 confirm, 2 cancel): the history must
    hold exactly the successful ones, the final status a legal one."""

    fixed_count = int(os.environ.get("LOAD_N_STATUSRACEUSER", "0"))

    wait_time = between(0.2, 0.5)

    @task
    def race(self) -> None:
        zip_code = random.choice(list(WORLD["zips"]))
        try:
            order_id, _, _ = self.new_paid_order(zip_code)
        except Failed:
            return
        lost = ((409, "ORDER_STATUS_CONFLICT"), (409, "ORDER_INVALID_TRANSITION"))

        def update(kind: str) -> int:
            try:
                return self.call(f"/rpc/{kind}_order (race)", f"/rpc/{kind}_order", "service",
                                 {"order_id": order_id}, expected=lost)[0]  # fmt: skip
            except Failed:
                return 0

        jobs = [gevent.spawn(update, k) for k in ("confirm", "confirm", "confirm", "cancel", "cancel")]
        gevent.joinall(jobs)
        ok = sum(1 for j in jobs if j.value == 200)
        try:
            _, hist = self.call(
                "/order_status_history",
                f"/order_status_history?order_id=eq.{order_id}&select=to_status",
                "admin",
            )
            _, orders = self.call("/orders", f"/orders?id=eq.{order_id}&select=status", "admin")
        except Failed:
            return
        changes = len(hist) - 1  # the first row is the creation (PENDING)
        final = orders[0]["status"]
        legal = ok >= 1 and changes == ok and final in ("CONFIRMED", "CANCELLED")
        self.environment.events.request.fire(
            request_type="RACE", name="race:status updates consistent", response_time=0, response_length=0,
            exception=None if legal else Failed(f"{ok} ok, {changes} changes, {final}"), context={})  # fmt: skip
        log_order(order_id, final)


class AdminUser(ApiUser):
    """An admin reading the five metrics endpoints, the delivery log and the health endpoints."""

    fixed_count = int(os.environ.get("LOAD_N_ADMINUSER", "0"))

    wait_time = between(0.5, 1.5)

    @task
    def read(self) -> None:
        agent = random.choice(random.choice(list(WORLD["zips"].values())))
        paths = [
            f"/rpc/agent_metrics?agent_id={agent}", "/rpc/agent_leaderboard", "/rpc/geographic_coverage", "/rpc/sla_summary",
            f"/rpc/agent_activity?agent_id={agent}", "/webhook_deliveries?order=id.desc&limit=50",
            "/rpc/health_db", "/rpc/health_pool", "/rpc/health_webhooks", "/rpc/health_metrics",
        ]  # fmt: skip
        for p in paths:
            with contextlib.suppress(Failed):  # counted by locust
                self.call(p.split("?")[0], p, "admin")
