"""RPC: argument matching by name set, result shapes, methods, bodies, filters on results."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import Gw, assert_error

OBJECT = "application/vnd.pgrst.object+json"


def test_post_named_arguments_scalar(svc: httpx.Client) -> None:
    r = svc.post("/rpc/t_add", json={"a": 1, "b": 2})
    assert r.status_code == 200
    assert r.text == "3"
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.headers["content-range"] == "0-0/*"


def test_get_arguments_for_stable_function(svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_add", params={"a": 40, "b": 2})
    assert r.status_code == 200 and r.json() == 42


def test_empty_body_is_empty_object_and_defaults_apply(svc: httpx.Client) -> None:
    assert svc.post("/rpc/t_echo", content=b"").json() == "hi"
    assert svc.post("/rpc/t_echo", json={"n": 3}).json() == "hihihi"
    assert svc.get("/rpc/t_echo", params={"t": "ab", "n": 2}).json() == "abab"
    assert svc.post("/rpc/t_half", json={"a": 3}).json() == 1.5


def test_arguments_match_by_set_of_names(svc: httpx.Client) -> None:
    body = assert_error(svc.post("/rpc/t_add", json={"a": 1, "c": 2}), 404, "PGRST202")
    assert body["message"] == "Could not find the function api.t_add(a, c) in the schema cache"
    assert body["details"].startswith("Searched for the function api.t_add with parameters a, c")
    assert body["hint"] == "Perhaps you meant to call the function api.t_add(a, b)"
    # a required argument missing is no match either
    assert_error(svc.post("/rpc/t_add", json={"a": 1}), 404, "PGRST202")
    assert_error(svc.get("/rpc/t_add"), 404, "PGRST202")


def test_unknown_function_hints_the_closest(svc: httpx.Client) -> None:
    body = assert_error(svc.get("/rpc/t_ad", params={"a": 1}), 404, "PGRST202")
    assert body["hint"] == "Perhaps you meant to call the function api.t_add"
    body = assert_error(svc.post("/rpc/zzzzzzzz", json={}), 404, "PGRST202")
    assert body["hint"] is None


def test_ambiguous_overload(svc: httpx.Client) -> None:
    body = assert_error(svc.get("/rpc/t_over", params={"a": 1}), 300, "PGRST203")
    assert "api.t_over(a => integer)" in body["message"]


def test_setof_scalar_is_array(svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_series", params={"n": 3})
    assert r.status_code == 200 and r.json() == [1, 2, 3]
    assert r.headers["content-range"] == "0-2/*"


def test_empty_set_is_empty_array(svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_series", params={"n": 0})
    assert r.status_code == 200 and r.text == "[]"
    assert r.headers["content-range"] == "*/*"


def test_table_function_is_array_of_objects(svc: httpx.Client) -> None:
    r = svc.post("/rpc/t_rows", json={"n": 2})
    assert r.json() == [{"i": 1, "label": "row 1", "maybe": "odd"}, {"i": 2, "label": "row 2", "maybe": None}]


def test_one_composite_is_object(svc: httpx.Client) -> None:
    assert svc.get("/rpc/t_note", params={"id": 7}).json() == {"id": 7, "body": "note 7"}
    assert svc.get("/rpc/t_out", params={"a": 2}).json() == {"doubled": 4, "tripled": 6}


def test_void_is_204_without_body_or_content_type(svc: httpx.Client) -> None:
    r = svc.post("/rpc/t_void")
    assert r.status_code == 204
    assert r.content == b""
    assert "content-type" not in r.headers
    assert r.headers["content-range"] == "0-0/*"


def test_body_is_postgres_json_formatting(gw: Gw, svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_rows", params={"n": 3})
    with gw.db() as conn:
        expected = conn.execute("select json_agg(t)::text from api.t_rows(3) t").fetchone()[0]
    assert r.text == expected
    assert "\n" in r.text  # json_agg's own separators, byte for byte


def test_singular_object_media_type(svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_rows", params={"n": 1}, headers={"Accept": OBJECT})
    assert r.status_code == 200
    assert r.json() == {"i": 1, "label": "row 1", "maybe": "odd"}
    assert r.headers["content-type"] == f"{OBJECT}; charset=utf-8"
    body = assert_error(svc.get("/rpc/t_rows", params={"n": 2}, headers={"Accept": OBJECT}), 406, "PGRST116")
    assert body["details"] == "The result contains 2 rows"
    body = assert_error(svc.get("/rpc/t_rows", params={"n": 0}, headers={"Accept": OBJECT}), 406, "PGRST116")
    assert body["details"] == "The result contains 0 rows"


def test_singular_failure_rolls_back_the_write(gw: Gw, svc: httpx.Client) -> None:
    r = svc.post("/rpc/t_write_many", json={"notes": ["one of one"]}, headers={"Accept": OBJECT})
    assert r.status_code == 200 and r.json()["body"] == "one of one"
    r = svc.post(
        "/rpc/t_write_many", json={"notes": ["one of two", "two of two"]}, headers={"Accept": OBJECT}
    )
    assert_error(r, 406, "PGRST116")
    with gw.db() as conn:
        assert conn.execute("select count(*) from gwt.notes where body like '% of two'").fetchone()[0] == 0
        assert conn.execute("select count(*) from gwt.notes where body = 'one of one'").fetchone()[0] == 1


def test_nulls_stripped(svc: httpx.Client) -> None:
    r = svc.get(
        "/rpc/t_rows", params={"n": 2}, headers={"Accept": "application/vnd.pgrst.array+json;nulls=stripped"}
    )
    assert r.json() == [{"i": 1, "label": "row 1", "maybe": "odd"}, {"i": 2, "label": "row 2"}]


def test_unsupported_accept_is_406(svc: httpx.Client) -> None:
    body = assert_error(
        svc.get("/rpc/t_add", params={"a": 1, "b": 1}, headers={"Accept": "text/csv"}), 406, "PGRST107"
    )
    assert body["message"] == "None of these media types are available: text/csv"


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "PUT"])
def test_other_methods_on_rpc(svc: httpx.Client, method: str) -> None:
    body = assert_error(svc.request(method, "/rpc/t_add", json={"a": 1, "b": 2}), 405, "PGRST101")
    assert body["message"] == f"Cannot use the {method} method on RPC"


@pytest.mark.parametrize("payload", [b"{", b"{'a': 1}", b"[1,", b"NaN", b"\xff\xfe"])
def test_malformed_json(svc: httpx.Client, payload: bytes) -> None:
    r = svc.post("/rpc/t_add", content=payload, headers={"Content-Type": "application/json"})
    body = assert_error(r, 400, "PGRST102")
    assert body["message"] == "Empty or invalid json"


def test_array_body_with_mixed_keys(svc: httpx.Client) -> None:
    body = assert_error(svc.post("/rpc/t_add", json=[{"a": 1, "b": 2}, {"a": 1}]), 400, "PGRST102")
    assert body["message"] == "All object keys must match"


def test_volatile_function_by_get_is_read_only(gw: Gw, svc: httpx.Client) -> None:
    body = assert_error(svc.get("/rpc/t_write", params={"note": "by get"}), 405, "25006")
    assert "read-only transaction" in body["message"]
    with gw.db() as conn:
        assert conn.execute("select count(*) from gwt.notes where body = 'by get'").fetchone()[0] == 0


def test_volatile_function_by_post_writes(gw: Gw, svc: httpx.Client) -> None:
    r = svc.post("/rpc/t_write", json={"note": "by post"})
    assert r.status_code == 200 and r.json()["body"] == "by post"
    with gw.db() as conn:
        assert conn.execute("select count(*) from gwt.notes where body = 'by post'").fetchone()[0] == 1
    assert_error(svc.post("/rpc/t_write", json={"note": "by post"}), 409, "23505")


def test_json_and_array_arguments(svc: httpx.Client) -> None:
    r = svc.post("/rpc/t_json", json={"j": {"k": [1, 2], "s": "x"}})
    assert r.json() == {"k": [1, 2], "s": "x"}
    assert svc.post("/rpc/t_sum", json={"xs": [1, 2, 3]}).json() == 6
    assert svc.get("/rpc/t_sum", params={"xs": "{4,5}"}).json() == 9


def test_single_unnamed_json_parameter_is_refused_clearly(svc: httpx.Client) -> None:
    """PostgREST passes the whole body to it; the gateway does not serve that form (api has none)."""
    body = assert_error(svc.post("/rpc/t_body", json={"any": ["thing", 1]}), 400, "PGRST127")
    assert "single unnamed parameter" in body["details"]


def test_bad_argument_value_is_400(svc: httpx.Client) -> None:
    assert_error(svc.get("/rpc/t_add", params={"a": "x", "b": 1}), 400, "22P02")
    assert_error(svc.post("/rpc/t_add", json={"a": "x", "b": 1}), 400, "22P02")


def test_get_filters_select_order_paging_on_the_result(svc: httpx.Client) -> None:
    r = svc.get(
        "/rpc/t_rows",
        params={"n": 10, "i": "gt.2", "select": "i,label", "order": "i.desc", "limit": 3, "offset": 1},
    )
    assert r.status_code == 200
    assert r.json() == [{"i": 9, "label": "row 9"}, {"i": 8, "label": "row 8"}, {"i": 7, "label": "row 7"}]
    assert r.headers["content-range"] == "1-3/*"


def test_operator_value_on_get_is_a_filter_not_an_argument(svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_rows", params={"n": 5, "i": "eq.2"})
    assert r.json() == [{"i": 2, "label": "row 2", "maybe": None}]
    r = svc.get("/rpc/t_rows", params={"n": 5, "or": "(i.eq.1,i.eq.5)"})
    assert [x["i"] for x in r.json()] == [1, 5]


def test_post_with_filters_in_query(svc: httpx.Client) -> None:
    r = svc.post("/rpc/t_rows", params={"i": "lt.3", "maybe": "is.null"}, json={"n": 5})
    assert r.json() == [{"i": 2, "label": "row 2", "maybe": None}]
    # on POST a plain value in the query string is not an argument: PostgREST refuses it
    assert_error(svc.post("/rpc/t_rows", params={"n": "5"}, json={}), 400, "PGRST100")


def test_count_on_rpc(svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_rows", params={"n": 30, "limit": 10}, headers={"Prefer": "count=exact"})
    assert r.status_code == 206
    assert r.headers["content-range"] == "0-9/30"
    assert r.headers["preference-applied"] == "count=exact"
    r = svc.get("/rpc/t_series", params={"n": 0}, headers={"Prefer": "count=exact"})
    assert r.status_code == 200 and r.headers["content-range"] == "*/0"


def test_head_has_headers_and_no_body(svc: httpx.Client) -> None:
    r = svc.head("/rpc/t_series", params={"n": 4})
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-range"] == "0-3/*"


def test_options(svc: httpx.Client) -> None:
    assert svc.options("/rpc/t_write", params={"note": "x"}).headers["allow"] == "OPTIONS,POST"
    assert svc.options("/rpc/t_add", params={"a": 1, "b": 1}).headers["allow"] == "OPTIONS,GET,HEAD,POST"


def test_stable_post_is_read_only_volatile_post_is_read_write(svc: httpx.Client) -> None:
    ro = svc.post("/rpc/t_ctx").json()
    assert (ro["read_only"], ro["isolation"]) == ("on", "read committed")
    rw = svc.post("/rpc/t_ctx_rw").json()
    assert (rw["read_only"], rw["isolation"]) == ("off", "read committed")
    assert svc.get("/rpc/t_ctx_rw").json()["read_only"] == "on"


def test_content_profile_on_post(svc: httpx.Client) -> None:
    body = assert_error(
        svc.post("/rpc/t_add", json={"a": 1, "b": 1}, headers={"Content-Profile": "core"}), 406, "PGRST106"
    )
    assert body["message"] == "Invalid schema: core"
    assert body["hint"] == "Only the following schemas are exposed: api"
    r = svc.post("/rpc/t_add", json={"a": 1, "b": 1}, headers={"Content-Profile": "api"})
    assert r.status_code == 200 and r.headers["content-profile"] == "api"
    # Accept-Profile is what counts on GET (and is ignored on POST)
    assert (
        svc.post("/rpc/t_add", json={"a": 1, "b": 1}, headers={"Accept-Profile": "core"}).status_code == 200
    )
    assert_error(svc.get("/rpc/t_add?a=1&b=1", headers={"Accept-Profile": "core"}), 406, "PGRST106")


def test_form_urlencoded_body(svc: httpx.Client) -> None:
    r = svc.post("/rpc/t_add", data={"a": "2", "b": "3"})
    assert r.status_code == 200 and r.json() == 5


def test_retry_on_serialization_failure(gw: Gw, svc: httpx.Client) -> None:
    with gw.db() as conn:
        conn.execute("select setval('gwt.retry_seq', 3)")
    r = svc.post("/rpc/t_flaky", json={"fail_times": 2})
    # values 4 and 5 failed with 40001; the third attempt got 6
    assert r.status_code == 200 and r.json() == 6
    body = assert_error(svc.post("/rpc/t_flaky", json={"fail_times": 1000}), 500, "40001")
    assert body["message"] == "could not serialize access (test)"
    with gw.db() as conn:
        assert conn.execute("select last_value from gwt.retry_seq").fetchone()[0] == 11  # 5 attempts
