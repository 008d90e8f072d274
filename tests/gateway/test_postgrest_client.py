"""supabase's `postgrest` Python client against the gateway: a real client that no one here wrote."""

from __future__ import annotations

import pytest
from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError

from tests.gateway.conftest import Gw


def _client(gw: Gw, role: str | None = "service") -> SyncPostgrestClient:
    headers = {"Authorization": f"Bearer {gw.token(role)}"} if role else {}
    return SyncPostgrestClient(gw.base_url, schema="api", headers=headers, timeout=30, retry_enabled=False)


def test_rpc_post_and_get(gw: Gw) -> None:
    with _client(gw) as c:
        assert c.rpc("t_add", {"a": 2, "b": 3}).execute().data == 5
        assert c.rpc("t_add", {"a": 2, "b": 5}, get=True).execute().data == 7
        assert c.rpc("t_void", {}).execute().data in (None, "", [])


def test_rpc_count_range_and_filters(gw: Gw) -> None:
    with _client(gw) as c:
        res = (
            c.rpc("t_rows", {"n": 30}, count="exact").gt("i", 10).order("i", desc=True).range(0, 4).execute()
        )
        assert res.count == 20
        assert [r["i"] for r in res.data] == [30, 29, 28, 27, 26]


def test_reads_count_single_and_paging(gw: Gw) -> None:
    with _client(gw, None) as c:
        res = (
            c.from_("t_items")
            .select("id", "name", count="exact")
            .eq("grp", 1)
            .order("id")
            .range(2, 3)
            .execute()
        )
        assert res.count == 10
        assert res.data == [{"id": 7, "name": "item 7"}, {"id": 10, "name": "item 10"}]
        one = c.from_("t_items").select("id,score").eq("id", 5).single().execute()
        assert one.data == {"id": 5, "score": None}
        many = c.from_("t_items").select("id").in_("id", [1, 2, 3]).is_("score", "null").execute()
        assert many.data == []


def test_errors_keep_their_four_keys(gw: Gw) -> None:
    with _client(gw) as c:
        with pytest.raises(APIError) as info:
            c.rpc("t_pgrst", {}).execute()
        assert (info.value.code, info.value.message, info.value.details, info.value.hint) == (
            "GW_RULE_BROKEN",
            "a rule broke",
            "it was 42",
            "try 41",
        )
        with pytest.raises(APIError) as info:
            c.rpc("t_write", {"note": "client dup"}).execute()
            c.rpc("t_write", {"note": "client dup"}).execute()
        assert info.value.code == "23505"
        with pytest.raises(APIError) as info:
            c.from_("t_items").select("id").single().execute()
        assert info.value.code == "PGRST116"
