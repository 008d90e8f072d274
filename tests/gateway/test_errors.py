"""SQLSTATE -> HTTP, PTnnn, RAISE SQLSTATE 'PGRST', and the 4-key body, row by row of the contract."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import ERROR_KEYS, Gw, assert_error

# (SQLSTATE raised, HTTP status) for every row of POSTGREST-CONTRACT.md's table.
TABLE = [
    ("23503", 409),
    ("23505", 409),
    ("23502", 400),
    ("23514", 400),
    ("22012", 400),  # 22xxx
    ("22023", 400),  # invalid_parameter_value that is not a missing role
    ("P0001", 400),
    ("42P10", 400),  # unlisted
    ("42883", 404),
    ("42P01", 404),
    ("25006", 405),
    ("08006", 503),
    ("53300", 503),
    ("53400", 500),
    ("57P01", 503),
    ("40P01", 500),  # 40xxx (40001 is retried first, see test_rpc)
    ("54000", 500),
    ("55P03", 500),  # lock_not_available: a 500, so business code must re-raise a registered error
    ("57014", 500),
    ("P0002", 500),
    ("XX000", 500),
    ("0P000", 403),
    ("28000", 403),
]


@pytest.mark.parametrize(("sqlstate", "status"), TABLE)
def test_sqlstate_to_status(svc: httpx.Client, sqlstate: str, status: int) -> None:
    r = svc.get("/rpc/t_raise", params={"state": sqlstate})
    body = assert_error(r, status, sqlstate)
    assert body == {
        "code": sqlstate,
        "details": "the detail",
        "hint": "the hint",
        "message": f"raised {sqlstate}",
    }
    assert r.headers["proxy-status"] == f"PostgREST; error={sqlstate}"
    if status == 503:
        assert "retry-after" in r.headers


def test_42501_is_401_for_anon_403_for_others(anon: httpx.Client, svc: httpx.Client) -> None:
    r = anon.get("/rpc/t_raise", params={"state": "42501"})
    assert_error(r, 401, "42501")
    assert r.headers["www-authenticate"] == "Bearer"
    r = svc.get("/rpc/t_raise", params={"state": "42501"})
    assert_error(r, 403, "42501")
    assert "www-authenticate" not in r.headers


def test_pt_status(svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_teapot")
    body = assert_error(r, 418, "PT418")
    assert body == {
        "code": "PT418",
        "details": "short and stout",
        "hint": "tip me over",
        "message": "I'm a teapot",
    }


def test_pgrst_raise(svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_pgrst")
    body = assert_error(r, 422, "GW_RULE_BROKEN")
    assert body == {
        "code": "GW_RULE_BROKEN",
        "details": "it was 42",
        "hint": "try 41",
        "message": "a rule broke",
    }
    assert r.headers["x-rule"] == "broken"


def test_pgrst_raise_that_is_not_json(svc: httpx.Client) -> None:
    body = assert_error(svc.get("/rpc/t_pgrst_bad"), 500, "PGRST121")
    assert body["details"] == "Invalid JSON value for MESSAGE: 'not json'"


def test_registered_error_from_the_registry(svc: httpx.Client) -> None:
    body = assert_error(svc.get("/rpc/t_registered", params={"p_id": "77"}), 404, "ORDER_NOT_FOUND")
    assert body["message"] == "order 77 does not exist"
    assert body["details"] == "77"


def test_error_bodies_have_exactly_four_keys(anon: httpx.Client) -> None:
    for r in (
        anon.get("/rpc/nope"),
        anon.get("/nope"),
        anon.delete("/rpc/t_add"),
        anon.get("/t_items", params={"id": "zz.1"}),
        anon.get("/rpc/t_raise", params={"state": "23505"}),
        anon.get("/t_items", headers={"Authorization": "Bearer x"}),
    ):
        assert r.status_code >= 400
        assert set(r.json()) == ERROR_KEYS
        assert r.headers["content-type"] == "application/json; charset=utf-8"


def test_registry_native_rows_follow_the_one_sqlstate_table(gw: Gw) -> None:
    """ops.error_codes' rows for errors PostgreSQL raises itself, waybill/errors.py's NATIVE_CODES
    and gateway/errors.py's SQLSTATE -> HTTP table (the home) agree."""
    from gateway.errors import pg_status
    from waybill.errors import NATIVE_CODES

    with gw.db() as conn:
        rows = conn.execute(
            "select sqlstate, code, http_status from ops.error_codes where sqlstate <> 'PGRST'"
        ).fetchall()
    assert rows
    for sqlstate, code, status in rows:
        assert NATIVE_CODES[sqlstate] == code
        assert pg_status(sqlstate, "", authed=True) == status, sqlstate
    assert set(NATIVE_CODES) == {r[0] for r in rows}
