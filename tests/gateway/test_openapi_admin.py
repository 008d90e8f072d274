"""`GET /` (Swagger 2.0 from the catalog) and the admin port (/live, /ready)."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.gateway.conftest import Gw, assert_error, start_gateway, stop_gateway, wait_until
from waybill.cluster import Cluster


def test_openapi_document(gw: Gw, svc: httpx.Client) -> None:
    r = svc.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/openapi+json; charset=utf-8"
    doc = r.json()
    assert doc["swagger"] == "2.0"
    assert doc["info"]["title"] == "Waybill test API"
    assert doc["info"]["description"] == "Served by gateway/ in tests."
    paths = doc["paths"]

    items = paths["/t_items"]
    assert set(items) == {"get"}
    assert items["get"]["summary"] == "Thirty items."
    assert items["get"]["description"] == "For paging and filter tests."
    refs = {p["$ref"] for p in items["get"]["parameters"]}
    assert "#/parameters/rowFilter.t_items.id" in refs and "#/parameters/select" in refs
    props = doc["definitions"]["t_items"]["properties"]
    assert props["id"]["type"] == "integer" and props["name"]["type"] == "string"
    assert props["name"]["description"] == "The item's name"
    assert doc["parameters"]["rowFilter.t_items.id"]["in"] == "query"

    add = paths["/rpc/t_add"]
    assert set(add) == {"get", "post"}  # stable: GET too
    assert add["post"]["summary"] == "Add two integers."
    assert add["post"]["description"] == "The rest of the description."
    get_params = {p["name"]: p for p in add["get"]["parameters"]}
    assert get_params["a"] == {
        "name": "a",
        "required": True,
        "in": "query",
        "type": "integer",
        "format": "integer",
    }
    body = add["post"]["parameters"][0]
    assert body["in"] == "body" and body["schema"]["required"] == ["a", "b"]

    assert set(paths["/rpc/t_write"]) == {"post"}  # volatile: POST only


def test_openapi_follows_privileges(gw: Gw, anon: httpx.Client, svc: httpx.Client) -> None:
    anon_paths = anon.get("/").json()["paths"]
    assert "/t_items" in anon_paths and "/rpc/t_add" in anon_paths
    assert "/t_secret" not in anon_paths and "/rpc/t_private" not in anon_paths
    assert "/rpc/t_private" not in svc.get("/").json()["paths"]


def test_openapi_accept(anon: httpx.Client) -> None:
    assert anon.get("/", headers={"Accept": "application/openapi+json"}).status_code == 200
    assert anon.get("/", headers={"Accept": "application/json"}).status_code == 200
    assert_error(anon.get("/", headers={"Accept": "text/html"}), 406, "PGRST107")
    assert_error(anon.post("/"), 405, "PGRST117")


def test_live_and_ready(gw: Gw) -> None:
    assert httpx.get(gw.admin_url + "/live").status_code == 200
    assert httpx.get(gw.admin_url + "/ready").status_code == 200
    assert httpx.get(gw.admin_url + "/nope").status_code == 404


@pytest.fixture
def unready(cluster: Cluster, tmp_path) -> Gw:
    """A gateway whose database does not exist: up, never ready."""
    gw = start_gateway(cluster, f"missing_{secrets.token_hex(4)}", tmp_path / "gateway.log", wait_ready=False)
    yield gw
    stop_gateway(gw)


def test_not_ready_without_database(unready: Gw) -> None:
    assert httpx.get(unready.admin_url + "/live").status_code == 200
    assert httpx.get(unready.admin_url + "/ready").status_code == 503
    r = httpx.get(unready.base_url + "/t_items")
    assert_error(r, 503, "PGRST002")
    assert "retry-after" in r.headers
    wait_until(
        lambda: any(x["event"] == "schema_cache_load_failed" for x in unready.log_lines()),
        what="failure logged",
    )


def test_stops_cleanly_on_sigterm(unready: Gw) -> None:
    assert stop_gateway(unready) == 0
