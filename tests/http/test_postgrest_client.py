"""The same calls through supabase's `postgrest` Python client: a real client no one here wrote."""

from __future__ import annotations

import pytest
from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError

from tests.http.conftest import Api


def _client(api: Api, role: str | None = None, sub: int | None = None) -> SyncPostgrestClient:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if role:
        headers["Authorization"] = f"Bearer {api.token(role, sub)}"
    # retry_enabled=False: the client retries GETs on 503, which would hide what the server said.
    return SyncPostgrestClient(api.base_url, schema="api", headers=headers, retry_enabled=False)


def test_lifecycle_through_the_client(api: Api, world: dict) -> None:
    svc = _client(api, "service")
    order = (
        svc.rpc(
            "create_order",
            {
                "customer_id": world["customer"],
                "seller_id": world["seller"],
                "ship_to_zip": world["zip"],
                "amount": 4321,
                "currency": "EUR",
            },  # fmt: skip
        )
        .execute()
        .data
    )
    assert order["status"] == "PENDING"
    payment = svc.from_("payments").select("id", "status").eq("order_id", order["id"]).single().execute().data
    assert payment["status"] == "PENDING"
    svc.rpc(
        "capture_payment", {"payment_id": payment["id"], "provider_ref": f"pi_client_{order['id']}"}
    ).execute()
    confirmed = svc.rpc("confirm_order", {"order_id": order["id"]}).execute().data
    assert confirmed["status"] == "CONFIRMED"
    offer = svc.rpc("offer_assignment", {"order_id": order["id"]}).execute().data

    agent = _client(api, "agent", world["agents"][1])
    seen = agent.from_("shipping_assignments").select("id").eq("status", "OFFERED").execute().data
    assert {"id": offer["id"]} in seen
    accepted = agent.rpc("accept_assignment", {"assignment_id": offer["id"]}).execute().data
    assert accepted["agent_id"] == world["agents"][1]

    listed = (
        svc.from_("orders")
        .select("id", "status", count="exact")
        .eq("customer_id", world["customer"])
        .order("id", desc=True)
        .range(0, 0)
        .execute()
    )
    assert listed.count == 1
    assert listed.data == [{"id": order["id"], "status": "CONFIRMED"}]


def test_health_and_errors_through_the_client(api: Api) -> None:
    anon = _client(api)
    assert anon.rpc("health_db", {}, get=True).execute().data["status"] == "ok"
    svc = _client(api, "service")
    with pytest.raises(APIError) as info:
        svc.rpc("confirm_order", {"order_id": 987654321}).execute()
    assert info.value.code == "ORDER_NOT_FOUND"
    assert info.value.message and info.value.hint is None or isinstance(info.value.hint, str)
    with pytest.raises(APIError) as denied:
        anon.from_("orders").select("id").execute()
    assert denied.value.code == "42501"
