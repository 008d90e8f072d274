"""PostgREST v13 behaviours the gateway now follows (issue 7 §2), each against the real gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import Gw, assert_error, dbname_of, install_fixtures, start_gateway, stop_gateway
from waybill.cluster import Cluster

EXPOSE = (
    "Content-Encoding, Content-Location, Content-Range, Content-Type, "
    "Date, Location, Server, Transfer-Encoding, Range-Unit"
)


# -- CORS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/t_items", "/rpc/t_add?a=1&b=2", "/rpc/nope?x=1"])
def test_cors_preflight_as_postgrest(anon: httpx.Client, path: str) -> None:
    r = anon.options(
        path,
        headers={
            "Origin": "http://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Foo,Bar",
        },
    )
    assert r.status_code == 200 and r.content == b""
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD"
    assert r.headers["access-control-allow-headers"] == (
        "Authorization, Foo, Bar, Accept, Accept-Language, Content-Language"
    )
    assert r.headers["access-control-max-age"] == "86400"


def test_cors_exposes_headers_to_requests_with_origin(anon: httpx.Client) -> None:
    for r in (
        anon.get("/t_items", headers={"Origin": "http://example.com"}),
        anon.get("/nope", headers={"Origin": "http://example.com"}),  # errors too
    ):
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-expose-headers"] == EXPOSE
    r = anon.get("/t_items")
    assert "access-control-expose-headers" not in r.headers and "access-control-allow-origin" not in r.headers


# -- what PostgREST's parser accepts -------------------------------------------------------------


def _ids(r: httpx.Response) -> list[int]:
    assert r.status_code == 200, r.text
    return [x["id"] for x in r.json()]


def test_logic_trees_accept_blanks_and_a_stray_parenthesis(anon: httpx.Client) -> None:
    assert _ids(anon.get("/t_items", params={"or": "(id.eq.1, id.eq.2,  id.eq.3)"})) == [1, 2, 3]
    assert _ids(anon.get("/t_items", params={"and": "(id.gte.2, id.lte.3)"})) == [2, 3]
    assert _ids(anon.get("/t_items", params={"or": "(id.eq.4,id.eq.5))"})) == [4, 5]


def test_in_lists_as_postgrest_reads_them(anon: httpx.Client) -> None:
    assert _ids(anon.get("/t_items", params={"name": 'in.(")'})) == []
    assert _ids(anon.get("/t_items", params={"id": "in.(    )"})) == []
    assert _ids(anon.get("/t_items", params={"id": "in.(1, 2)"})) == [1, 2]


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("fts", "truck", [1]),
        ("plfts", "slow boats", [2]),
        ("phfts", "delivery trucks", [1]),
        ("wfts", "fast -slow", [1]),
    ],
)
def test_full_text_search_on_jsonb(anon: httpx.Client, op: str, value: str, expected: list[int]) -> None:
    assert _ids(anon.get("/t_docs", params={"doc": f"{op}.{value}", "select": "id"})) == expected
    assert _ids(anon.get("/t_docs", params={"doc": f"{op}(english).{value}", "select": "id"})) == expected


# -- Prefer: timezone, handling=strict -----------------------------------------------------------


def test_prefer_timezone_renders_timestamptz(anon: httpx.Client) -> None:
    r = anon.get(
        "/t_docs", params={"select": "at", "id": "eq.1"}, headers={"Prefer": "timezone=America/New_York"}
    )
    assert r.json() == [{"at": "2024-01-01T07:00:00-05:00"}]
    assert r.headers["preference-applied"] == "timezone=America/New_York"
    r = anon.get(
        "/t_docs", params={"select": "at", "id": "eq.1"}, headers={"Prefer": "timezone=Asia/Kolkata"}
    )
    assert r.json() == [{"at": "2024-01-01T17:30:00+05:30"}]
    # An unknown zone is ignored (lenient) and refused with handling=strict.
    r = anon.get(
        "/t_docs", params={"select": "at", "id": "eq.1"}, headers={"Prefer": "timezone=Mars/Olympus"}
    )
    assert r.status_code == 200 and "preference-applied" not in r.headers
    r = anon.get("/t_docs", headers={"Prefer": "handling=strict, timezone=Mars/Olympus"})
    assert assert_error(r, 400, "PGRST122")["details"] == "Invalid preferences: timezone=Mars/Olympus"


@pytest.mark.parametrize("pref", ["unknown=1", "max-affected=ten", "count=exactly", "return"])
def test_strict_handling_refuses_invalid_preferences(anon: httpx.Client, pref: str) -> None:
    assert_error(anon.get("/t_items", headers={"Prefer": f"handling=strict, {pref}"}), 400, "PGRST122")
    assert_error(
        anon.get("/t_items", headers=[("Prefer", "handling=strict"), ("Prefer", pref)]), 400, "PGRST122"
    )
    assert anon.get("/t_items", headers={"Prefer": f"handling=lenient, {pref}"}).status_code == 200


# -- media types ---------------------------------------------------------------------------------


def test_vendor_media_types_without_json_suffix_and_with_parameters(anon: httpx.Client) -> None:
    one = {"id": 5, "name": "item 5", "grp": 2, "score": None}
    r = anon.get("/t_items", params={"id": "eq.5"}, headers={"Accept": "application/vnd.pgrst.object"})
    assert r.json() == one
    r = anon.get(
        "/t_items", params={"id": "eq.5"}, headers={"Accept": "application/vnd.pgrst.object;nulls=stripped"}
    )
    assert r.json() == {"id": 5, "name": "item 5", "grp": 2}
    assert r.headers["content-type"].startswith("application/vnd.pgrst.object+json;nulls=stripped")
    r = anon.get(
        "/t_items",
        params={"id": "eq.5"},
        headers={"Accept": "application/vnd.pgrst.array+json;nulls=stripped"},
    )
    assert r.json() == [{"id": 5, "name": "item 5", "grp": 2}]
    r = anon.get("/t_items", params={"id": "eq.5"}, headers={"Accept": "application/vnd.pgrst.array"})
    assert r.json() == [one]


# -- db-max-rows ---------------------------------------------------------------------------------


@pytest.fixture
def capped(cluster: Cluster, db_url: str, tmp_path: Path) -> Iterator[Gw]:
    install_fixtures(db_url)
    gw = start_gateway(cluster, dbname_of(db_url), tmp_path / "gateway.log", db_max_rows=7)
    try:
        yield gw
    finally:
        stop_gateway(gw)


def test_db_max_rows_caps_reads(capped: Gw) -> None:
    with capped.client() as c:
        r = c.get("/t_items", headers={"Prefer": "count=exact"})
        assert [x["id"] for x in r.json()] == list(range(1, 8))
        assert r.status_code == 206 and r.headers["content-range"] == "0-6/30"
        assert [x["id"] for x in c.get("/t_items", params={"offset": 25}).json()] == [26, 27, 28, 29, 30]
        assert len(c.get("/t_items", params={"limit": 3}).json()) == 3
        assert c.get("/rpc/t_series", params={"n": 100}).json() == list(range(1, 8))


# -- refused rather than answered wrongly ---------------------------------------------------------


def test_data_representations_are_refused(anon: httpx.Client) -> None:
    body = assert_error(anon.get("/t_prices"), 400, "PGRST127")
    assert "data representations" in body["details"] and "price" in body["details"]
    assert _ids(anon.get("/t_prices", params={"select": "id"})) == [1]  # other columns still served


def test_computed_columns_and_variadic_are_refused(svc: httpx.Client) -> None:
    body = assert_error(svc.get("/t_items", params={"select": "id,t_label"}), 400, "PGRST127")
    assert "computed columns" in body["details"]
    assert_error(svc.get("/t_items", params={"t_label": "eq.x"}), 400, "PGRST127")
    body = assert_error(svc.post("/rpc/t_var", json={"xs": [1, 2]}), 400, "PGRST127")
    assert "VARIADIC" in body["details"]


def test_pre_request_and_app_settings_are_refused_at_start() -> None:
    import os

    from gateway.__main__ import parse_args

    os.environ["PGRST_DB_PRE_REQUEST"] = "api.check"
    try:
        with pytest.raises(SystemExit):
            parse_args([])
    finally:
        del os.environ["PGRST_DB_PRE_REQUEST"]
