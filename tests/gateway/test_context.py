"""What SQL sees of the request, response.* settings, X-Request-Id and the access log."""

from __future__ import annotations

import uuid

import httpx

from tests.gateway.conftest import Gw, assert_error, wait_until
from waybill.log import LogEntry


def test_request_settings(gw: Gw) -> None:
    with gw.client("service", sub="9") as c:
        r = c.get(
            "/rpc/t_ctx",
            headers={"Cookie": "session=abc; theme=dark", "X-Custom-Thing": "Yes"},
        )
    assert r.status_code == 200, r.text
    ctx = r.json()
    assert ctx["user"] == "service"
    assert ctx["claims"]["role"] == "service" and ctx["claims"]["sub"] == "9"
    assert ctx["method"] == "GET"
    assert ctx["path"] == "/rpc/t_ctx"
    assert ctx["headers"]["x-custom-thing"] == "Yes"
    assert ctx["headers"]["authorization"].startswith("Bearer ")
    assert "cookie" not in ctx["headers"]
    assert all(k == k.lower() for k in ctx["headers"])
    assert ctx["cookies"] == {"session": "abc", "theme": "dark"}
    assert ctx["search_path"] == '"api", "public"'
    assert (ctx["read_only"], ctx["isolation"]) == ("on", "read committed")


def test_request_id_taken_echoed_and_seen_by_sql(gw: Gw, svc: httpx.Client) -> None:
    rid = f"test-{uuid.uuid4()}"
    r = svc.get("/rpc/t_ctx", headers={"X-Request-Id": rid})
    assert r.headers["x-request-id"] == rid
    assert r.json()["request_id"] == rid


def test_request_id_generated_when_missing(svc: httpx.Client) -> None:
    r = svc.get("/rpc/t_ctx")
    rid = r.headers["x-request-id"]
    assert uuid.UUID(rid).version == 4
    assert r.json()["request_id"] == rid
    assert r.json()["headers"]["x-request-id"] == rid


def test_request_id_on_errors_too(anon: httpx.Client) -> None:
    r = anon.get("/nope", headers={"X-Request-Id": "err-1"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "err-1"


def test_access_log_line_per_request(gw: Gw, svc: httpx.Client) -> None:
    rid = f"log-{uuid.uuid4()}"
    svc.get("/rpc/t_add", params={"a": 1, "b": 2}, headers={"X-Request-Id": rid})
    svc.get("/rpc/t_teapot", headers={"X-Request-Id": rid + "-err"})

    def find(r: str) -> dict | None:
        lines = [
            x for x in gw.log_lines() if x.get("request_id") == r and x["event"] == "http_request_completed"
        ]
        return lines[0] if lines else None

    line = wait_until(lambda: find(rid), what="access log line")
    LogEntry.model_validate(line)
    assert line["service"] == "gateway"
    assert (line["method"], line["path"], line["status"], line["role"]) == (
        "GET",
        "/rpc/t_add",
        200,
        "service",
    )
    assert line["duration_ms"] > 0 and line["error_code"] is None
    err = wait_until(lambda: find(rid + "-err"), what="error access log line")
    assert (err["status"], err["error_code"]) == (418, "PT418")
    # every line the gateway wrote has the one shape
    for entry in gw.log_lines():
        LogEntry.model_validate(entry)
        assert entry["service"] == "gateway"


def test_response_status_and_headers_from_sql(svc: httpx.Client) -> None:
    r = svc.post("/rpc/t_guc")
    assert r.status_code == 201
    assert r.headers["location"] == "/t_items?id=eq.1"
    assert r.headers["x-custom"] == "yes"
    assert r.headers["content-type"] == "application/vnd.custom+json"  # SQL's wins, no duplicate
    assert r.headers.get_list("content-type") == ["application/vnd.custom+json"]
    assert r.json() == {"ok": True}


def test_bad_response_settings(svc: httpx.Client) -> None:
    assert_error(svc.get("/rpc/t_guc_bad_status"), 500, "PGRST112")
    assert_error(svc.get("/rpc/t_guc_bad_headers"), 500, "PGRST111")


def test_slow_statement_logs_db_query_slow(gw: Gw, svc: httpx.Client) -> None:
    """The plan's application-level warning: a database round trip over 500 ms logs db_query_slow."""
    rid = f"slow-{uuid.uuid4()}"
    assert svc.get("/rpc/t_sleep", params={"ms": 600}, headers={"X-Request-Id": rid}).json() == 600
    assert svc.get("/rpc/t_sleep", params={"ms": 1}, headers={"X-Request-Id": rid + "-fast"}).json() == 1

    def find(r: str) -> list[dict]:
        return [x for x in gw.log_lines() if x.get("request_id") == r and x["event"] == "db_query_slow"]

    line = wait_until(lambda: find(rid), what="db_query_slow line")[0]
    LogEntry.model_validate(line)
    assert (line["level"], line["path"]) == ("warn", "/rpc/t_sleep")
    assert line["duration_ms"] >= 500
    wait_until(
        lambda: [x for x in gw.log_lines() if x.get("request_id") == rid + "-fast"], what="fast access line"
    )
    assert find(rid + "-fast") == []
