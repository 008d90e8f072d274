"""Pieces that need no database: query-string parsing, ranges, JWT rules, unexpected exceptions."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from starlette.testclient import TestClient

from gateway import errors, query
from gateway.app import Gateway, create_app, negotiate, parse_prefs
from gateway.auth import Verifier
from gateway.errors import ApiError

SECRET = "x" * 40


def test_filter_parsing() -> None:
    qp = query.parse(
        b"id=not.in.(1,%222,3%22)&name=ilike.*a*&or=(a.eq.1,not.and(b.gt.2,c.is.null))", is_rpc_read=False
    )
    assert qp.filters[0] == query.Filter("id", "in", ("1", "2,3"), negate=True)
    assert qp.filters[1] == query.Filter("name", "ilike", "*a*")
    tree = qp.logic[0]
    assert tree.op == "or" and not tree.negate
    assert tree.children[0] == query.Filter("a", "eq", "1")
    assert tree.children[1].op == "and" and tree.children[1].negate


def test_rpc_read_arguments_vs_filters() -> None:
    qp = query.parse(b"a=5&b=eq.5&c=eq&d=in.(1)", is_rpc_read=True)
    assert qp.args == {"a": ["5"], "c": ["eq"]}
    assert [f.field for f in qp.filters] == ["b", "d"]
    with pytest.raises(ApiError) as info:
        query.parse(b"a=not.5", is_rpc_read=True)
    assert info.value.code == "PGRST100"


def test_ranges() -> None:
    qp = query.parse(b"limit=10&offset=5", is_rpc_read=False)
    assert query.top_range("GET", "0-9", qp) == query.Range(5, 9)
    assert query.top_range("POST", "0-2", qp) == query.Range(5, 14)  # Range is for GET only
    assert query.top_range("GET", None, query.parse(b"limit=abc", is_rpc_read=False)).is_all


def test_prefs_and_negotiation() -> None:
    p = parse_prefs(["count=exact, handling=lenient", "x=y", "timezone=UTC"], {"UTC"})
    assert p.count and p.invalid == ["x=y"] and p.timezone == "UTC"
    assert p.applied() == [("Preference-Applied", "count=exact, handling=lenient, timezone=UTC")]
    for bad in ("x=y", "timezone=Mars/Olympus", "max-affected=ten"):
        with pytest.raises(ApiError) as info:
            parse_prefs([f"handling=strict, {bad}"], {"UTC"})
        assert (info.value.status, info.value.code) == (400, "PGRST122")
    assert negotiate("text/csv;q=0.9, application/vnd.pgrst.object+json").kind == "object"
    with pytest.raises(ApiError):
        negotiate("text/csv")


def test_jwt_numbers_and_skew() -> None:
    v = Verifier(SECRET)
    now = time.time()
    ok = jwt.encode({"role": "admin", "exp": int(now) - 30}, SECRET, algorithm="HS256")
    assert v.authenticate(f"Bearer {ok}", now).role == "admin"
    late = jwt.encode({"role": "admin", "exp": int(now) - 31}, SECRET, algorithm="HS256")
    with pytest.raises(ApiError) as info:
        v.authenticate(f"Bearer {late}", now)
    assert info.value.code == "PGRST303"
    with pytest.raises(ValueError):
        Verifier("short")


def test_audience() -> None:
    v = Verifier(SECRET, audience="waybill")
    good = jwt.encode({"aud": ["other", "waybill"]}, SECRET, algorithm="HS256")
    assert v.authenticate(f"Bearer {good}").role == "anon"
    bad = jwt.encode({"aud": "other"}, SECRET, algorithm="HS256")
    with pytest.raises(ApiError) as info:
        v.authenticate(f"Bearer {bad}")
    assert info.value.message == "JWT not in audience"


def test_pg_status_table() -> None:
    assert errors.pg_status("PT402", "x", True) == 402
    assert errors.pg_status("PTabc", "x", True) == 500
    assert errors.pg_status("22023", 'role "x" does not exist', True) == 401
    assert errors.pg_status("42501", "", False) == 401
    assert errors.pg_status("42501", "", True) == 403


def test_unexpected_exception_is_a_json_500_and_a_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    from waybill import log

    log.configure("gateway")
    app = create_app("postgresql:///nowhere", SECRET)
    gateway: Gateway = app.state.gateway

    async def boom(request):  # noqa: ANN001
        raise RuntimeError("kaboom: secret internals")

    gateway._handle = boom  # type: ignore[method-assign]
    with TestClient(app) as client:  # no lifespan without `with`? it runs: the pool opens lazily
        r = client.get("/anything", headers={"X-Request-Id": "boom-1"})
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"code", "details", "hint", "message"}
    assert body["code"] == "PGRSTX00"
    assert "kaboom" not in r.text and "Traceback" not in r.text
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x["event"] == "http_request_failed"]
    assert failed and failed[0]["request_id"] == "boom-1" and "kaboom" in failed[0]["error"]
