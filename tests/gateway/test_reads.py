"""Reads of views: select, filters, order, paging, Content-Range, counts, profiles, errors."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import Gw, assert_error


def _ids(r: httpx.Response) -> list[int]:
    assert r.status_code in (200, 206), (r.status_code, r.text)
    return [row["id"] for row in r.json()]


def test_select_columns_and_alias(anon: httpx.Client) -> None:
    r = anon.get("/t_items", params={"select": "id,label:name", "id": "eq.4"})
    assert r.status_code == 200
    assert r.json() == [{"id": 4, "label": "item 4"}]
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.headers["content-range"] == "0-0/*"
    assert r.headers["content-location"].startswith("/t_items?")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"id": "eq.3"}, [3]),
        ({"id": "neq.3", "limit": 2}, [1, 2]),
        ({"id": "gt.28"}, [29, 30]),
        ({"id": "gte.29"}, [29, 30]),
        ({"id": "lt.3"}, [1, 2]),
        ({"id": "lte.2"}, [1, 2]),
        ({"id": "in.(4,2,9)"}, [2, 4, 9]),
        ({"name": 'in.("item 5","item 6")'}, [5, 6]),
        ({"score": "is.null", "id": "lte.15"}, [5, 10, 15]),
        ({"score": "not.is.null", "id": "lte.4"}, [1, 2, 3, 4]),
        ({"name": "like.item 1*", "id": "lt.13"}, [1, 10, 11, 12]),
        ({"name": "ilike.ITEM 2?", "id": "eq.2"}, []),
        ({"name": "ilike.ITEM 2*", "id": "lt.22"}, [2, 20, 21]),
        ({"id": "not.in.(1,2,3)", "limit": 2}, [4, 5]),
        ({"id": "not.eq.1", "limit": 1}, [2]),
        ({"or": "(id.eq.1,id.eq.30)"}, [1, 30]),
        ({"and": "(id.gt.10,id.lt.13)"}, [11, 12]),
        ({"not.or": "(id.gt.2,grp.eq.1)"}, [2]),
        ({"or": "(id.eq.1,and(grp.eq.0,id.lt.7))"}, [1, 3, 6]),
        ({"id": "in.()"}, []),
    ],
)
def test_filters(anon: httpx.Client, params: dict, expected: list[int]) -> None:
    assert _ids(anon.get("/t_items", params={**params, "order": "id"})) == expected


def test_order(anon: httpx.Client) -> None:
    r = anon.get("/t_items", params={"select": "id,grp", "order": "grp.desc,id.asc", "limit": 3})
    assert r.json() == [{"id": 2, "grp": 2}, {"id": 5, "grp": 2}, {"id": 8, "grp": 2}]
    assert _ids(anon.get("/t_items", params={"order": "score.desc.nullslast", "limit": 1})) == [29]
    assert _ids(anon.get("/t_items", params={"order": "score.desc.nullsfirst", "limit": 1})) == [5]
    assert _ids(anon.get("/t_items", params={"order": "score.asc.nullsfirst,id.desc", "limit": 2})) == [
        30,
        25,
    ]


def test_limit_offset_and_range_header(anon: httpx.Client) -> None:
    r = anon.get("/t_items", params={"order": "id", "limit": 5, "offset": 10})
    assert _ids(r) == [11, 12, 13, 14, 15]
    assert r.status_code == 200 and r.headers["content-range"] == "10-14/*"
    r = anon.get("/t_items", params={"order": "id"}, headers={"Range": "0-9"})
    assert _ids(r) == list(range(1, 11))
    assert r.headers["content-range"] == "0-9/*"
    r = anon.get("/t_items", params={"order": "id", "limit": 0})
    assert r.json() == [] and r.headers["content-range"] == "*/*"


def test_count_exact_full_page(anon: httpx.Client) -> None:
    r = anon.get("/t_items", headers={"Prefer": "count=exact"})
    assert r.status_code == 200
    assert r.headers["content-range"] == "0-29/30"
    assert r.headers["preference-applied"] == "count=exact"
    assert len(r.json()) == 30


def test_count_exact_partial_is_206(anon: httpx.Client) -> None:
    r = anon.get("/t_items", params={"order": "id"}, headers={"Prefer": "count=exact", "Range": "0-9"})
    assert r.status_code == 206
    assert r.headers["content-range"] == "0-9/30"
    r = anon.get(
        "/t_items", params={"grp": "eq.0", "limit": 2, "offset": 2}, headers={"Prefer": "count=exact"}
    )
    assert r.status_code == 206 and r.headers["content-range"] == "2-3/10"


def test_offset_past_the_end_is_416(anon: httpx.Client) -> None:
    r = anon.get("/t_items", params={"offset": 40}, headers={"Prefer": "count=exact"})
    body = assert_error(r, 416, "PGRST103")
    assert body["message"] == "Requested range not satisfiable"
    assert body["details"] == "An offset of 40 was requested, but there are only 30 rows."
    assert r.headers["content-range"] == "*/30"
    # without a count the end is unknown: an empty page
    r = anon.get("/t_items", params={"offset": 40})
    assert r.status_code == 200 and r.json() == [] and r.headers["content-range"] == "*/*"


def test_empty_with_count(anon: httpx.Client) -> None:
    r = anon.get("/t_items", params={"id": "gt.100"}, headers={"Prefer": "count=exact"})
    assert r.status_code == 200
    assert r.json() == []
    assert r.headers["content-range"] == "*/0"


def test_invalid_ranges(anon: httpx.Client) -> None:
    body = assert_error(anon.get("/t_items", headers={"Range": "5-2"}), 416, "PGRST103")
    assert body["details"].startswith("The lower boundary must be lower than or equal")
    body = assert_error(anon.get("/t_items", params={"limit": -1}), 416, "PGRST103")
    assert body["details"] == "Limit should be greater than or equal to zero."


def test_unknown_column_is_42703(anon: httpx.Client) -> None:
    body = assert_error(anon.get("/t_items", params={"nope": "eq.1"}), 400, "42703")
    assert body["message"] == "column t_items.nope does not exist"
    assert_error(anon.get("/t_items", params={"select": "id,nope"}), 400, "42703")
    assert_error(anon.get("/t_items", params={"order": "nope.desc"}), 400, "42703")


@pytest.mark.parametrize(
    "params",
    [
        {"id": "foo.1"},
        {"id": "1"},
        {"id": "not.foo.1"},
        {"id": "is.maybe"},
        {"id": "in.1,2"},
        {"or": "id.eq.1"},
    ],
)
def test_unknown_operator_is_pgrst100(anon: httpx.Client, params: dict) -> None:
    body = assert_error(anon.get("/t_items", params=params), 400, "PGRST100")
    assert body["message"].startswith('"failed to parse')


def test_bad_order_is_pgrst100(anon: httpx.Client) -> None:
    assert_error(anon.get("/t_items", params={"order": "id.sideways"}), 400, "PGRST100")


def test_unknown_view_is_pgrst205(anon: httpx.Client) -> None:
    body = assert_error(anon.get("/t_itemz"), 404, "PGRST205")
    assert body["message"] == "Could not find the table 'api.t_itemz' in the schema cache"
    assert body["hint"] == "Perhaps you meant the table 'api.t_items'"


def test_bad_value_type_is_400(anon: httpx.Client) -> None:
    assert_error(anon.get("/t_items", params={"id": "eq.abc"}), 400, "22P02")


def test_accept_profile(anon: httpx.Client) -> None:
    body = assert_error(anon.get("/t_items", headers={"Accept-Profile": "core"}), 406, "PGRST106")
    assert body["message"] == "Invalid schema: core"
    r = anon.get("/t_items", params={"limit": 1}, headers={"Accept-Profile": "api"})
    assert r.status_code == 200 and r.headers["content-profile"] == "api"
    assert "content-profile" not in anon.get("/t_items", params={"limit": 1}).headers


def test_singular_on_a_view(anon: httpx.Client) -> None:
    obj = {"Accept": "application/vnd.pgrst.object+json"}
    r = anon.get("/t_items", params={"id": "eq.1"}, headers=obj)
    assert r.json() == {"id": 1, "name": "item 1", "grp": 1, "score": 10}
    assert_error(anon.get("/t_items", params={"id": "lt.3"}, headers=obj), 406, "PGRST116")


def test_view_without_grant(gw: Gw, anon: httpx.Client, svc: httpx.Client) -> None:
    r = anon.get("/t_secret")
    assert_error(r, 401, "42501")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_error(svc.get("/t_secret"), 403, "42501")


def test_head(anon: httpx.Client) -> None:
    r = anon.head("/t_items", params={"limit": 2}, headers={"Prefer": "count=exact"})
    assert r.status_code == 206 and r.content == b""
    assert r.headers["content-range"] == "0-1/30"


def test_writes_to_views_are_not_served(svc: httpx.Client) -> None:
    for method in ("POST", "PATCH", "DELETE", "PUT"):
        body = assert_error(svc.request(method, "/t_items", json={"id": 1}), 400, "PGRST127")
        assert "write through a function" in body["details"]


def test_unsupported_features_are_refused_not_guessed(anon: httpx.Client) -> None:
    assert_error(anon.get("/t_items", params={"select": "id,other(*)"}), 400, "PGRST127")
    assert_error(anon.get("/t_items", params={"select": "id::text"}), 400, "PGRST127")
    assert_error(anon.get("/t_items", params={"other.id": "eq.1"}), 400, "PGRST108")


def test_invalid_path_and_method(anon: httpx.Client) -> None:
    assert_error(anon.get("/rpc/t_add/extra"), 404, "PGRST125")
    assert_error(anon.request("TRACE", "/t_items"), 405, "PGRST117")


def test_prefer_handling_strict(anon: httpx.Client) -> None:
    body = assert_error(anon.get("/t_items", headers={"Prefer": "handling=strict, bogus=1"}), 400, "PGRST122")
    assert body["details"] == "Invalid preferences: bogus=1"
    r = anon.get(
        "/t_items", params={"limit": 1}, headers={"Prefer": "handling=lenient, bogus=1, count=exact"}
    )
    assert r.status_code == 206 and r.headers["preference-applied"] == "count=exact, handling=lenient"


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        ("GET", "/t_items?name=eq.%00", {}),
        ("GET", "/t_items?id=eq.%FF%FE", {}),
        ("GET", "/t_items?limit=99999999999999999999999", {}),
        ("GET", "/t_items?offset=-5", {}),
        ("GET", "/t_items?score=cs.%7B1%7D", {}),
        ("GET", "/t_items?select=%22", {}),
        ("GET", "/t_items?order=", {}),
        ("GET", "/t_items?or=(", {}),
        ("GET", "/t_items?or=(id.in.(1,2),name.eq.%22a,b%22)", {}),
        ("GET", "/t_items", {"headers": {"Range": "abc"}}),
        ("GET", "/t_items", {"headers": {"Accept": "application/json;q=abc"}}),
        ("GET", "/rpc/%00", {}),
        ("GET", "/rpc/t_add?a=1&b=2&a=3", {}),
        ("POST", "/rpc/t_echo", {"json": {"t": "nul \u0000 inside"}}),
        ("POST", "/rpc/t_echo", {"content": b'{"t": "\\ud800"}'}),
        ("POST", "/rpc/t_add", {"json": {"a": [1], "b": {"x": 1}}}),
        ("POST", "/rpc/t_add", {"json": 5}),
        ("POST", "/rpc/t_add", {"content": b"a=1&b=2", "headers": {"Content-Type": "text/plain"}}),
        ("POST", "/rpc/t_add", {"content": b"<a/>", "headers": {"Content-Type": "application/xml"}}),
    ],
)
def test_hostile_inputs_never_give_a_500(svc: httpx.Client, method: str, url: str, kwargs: dict) -> None:
    r = svc.request(method, url, **kwargs)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert set(r.json()) == {"code", "details", "hint", "message"}
