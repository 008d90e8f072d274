"""The metrics endpoints over HTTP (gateway/, or a real PostgREST with WAYBILL_API_URL): RBAC for every
endpoint and role, registered 400s naming the allowed values, Cache-Control, GET-ability, paging edges."""

from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import Api

ERROR_KEYS = {"code", "message", "details", "hint"}
ADMIN_ONLY = ["agent_leaderboard", "geographic_coverage", "sla_summary", "health_metrics"]


def _err(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == ERROR_KEYS, body
    if code:
        assert body["code"] == code, body
    return body


@pytest.fixture
def delivered(api: Api, world: dict) -> dict:
    """One delivery by the world's first agent, through the transition functions (triggers keep the
    rollups), and the views refreshed."""
    agent = world["agents"][0]
    with api.db() as conn:
        order = conn.execute(
            "select id from core.create_order(%s, %s, %s, 5000, 'EUR')",
            [world["customer"], world["seller"], world["zip"]],
        ).fetchone()[0]
        pay = conn.execute("select id from core.payments where order_id = %s", [order]).fetchone()[0]
        conn.execute("select core.capture_payment(%s, %s)", [pay, f"pi_m_{order}"])
        conn.execute("select core.confirm_order(%s)", [order])
        a = conn.execute("select id from core.offer_assignment(%s)", [order]).fetchone()[0]
        conn.execute("select core.accept_assignment(%s, %s)", [a, agent])
        for s in ("PICKED_UP", "IN_TRANSIT", "DELIVERED"):
            conn.execute("select core.advance_assignment(%s, %s, %s)", [a, s, agent])
        conn.execute("select metrics.refresh()")
    return {**world, "agent": agent, "other": world["agents"][1]}


@pytest.mark.parametrize("fn", ["agent_metrics", "agent_activity"])
def test_agent_reads_its_own_and_only_its_own(api: Api, delivered: dict, fn: str) -> None:
    me, other = delivered["agent"], delivered["other"]
    with api.client("agent", me) as c:
        own = c.get(f"/rpc/{fn}", params={"agent_id": me})
        assert own.status_code == 200, own.text
        assert own.json()["agentId"] == me
        assert c.get(f"/rpc/{fn}").json()["agentId"] == me  # omitted: itself
        _err(c.get(f"/rpc/{fn}", params={"agent_id": other}), 403, "METRICS_NOT_YOUR_AGENT")
    with api.client("agent", "not-a-number") as c:
        _err(c.get(f"/rpc/{fn}"), 400, "INVALID_ARGUMENT")
    for role in ("admin", "platform_admin"):
        with api.client(role) as c:
            r = c.get(f"/rpc/{fn}", params={"agent_id": other})
            assert r.status_code == 200, r.text
            _err(c.get(f"/rpc/{fn}", params={"agent_id": 987654321}), 404, "AGENT_NOT_FOUND")
            _err(c.get(f"/rpc/{fn}"), 400, "INVALID_ARGUMENT")
    with api.client("service") as c:
        _err(c.get(f"/rpc/{fn}", params={"agent_id": me}), 403)
    with api.client() as c:
        r = c.get(f"/rpc/{fn}", params={"agent_id": me})
        _err(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("fn", ADMIN_ONLY)
def test_admin_only_endpoints(api: Api, delivered: dict, fn: str) -> None:
    for role in ("admin", "platform_admin"):
        with api.client(role) as c:
            r = c.get(f"/rpc/{fn}")
            assert r.status_code == 200, r.text
            assert "asOf" in r.json()
    for role, sub, status in (("agent", delivered["agent"], 403), ("service", None, 403), (None, None, 401)):
        with api.client(role, sub) as c:
            _err(c.get(f"/rpc/{fn}"), status)


def test_refresh_metrics_is_an_admin_post(api: Api, delivered: dict) -> None:
    with api.client("admin") as c:
        r = c.post("/rpc/refresh_metrics", json={"view": "leaderboard"})
        assert r.status_code == 200, r.text
        assert [v["view"] for v in r.json()["refreshed"]] == ["leaderboard"]
        with api.db() as conn:  # every view of the registry, in name order
            views = [r[0] for r in conn.execute("select name from metrics.views order by name").fetchall()]
        assert {"leaderboard", "sla_summary", "geographic_coverage"} <= set(views)
        assert [v["view"] for v in c.post("/rpc/refresh_metrics").json()["refreshed"]] == views
        body = _err(c.post("/rpc/refresh_metrics", json={"view": "bogus"}), 400, "METRICS_INVALID_VIEW")
        assert "leaderboard, sla_summary, geographic_coverage" in body["message"]
        assert c.get("/rpc/refresh_metrics").status_code == 405
        health = c.get("/rpc/health_metrics").json()
        assert {v["view"]: v["lastSource"] for v in health["views"]}["leaderboard"] == "api"
    for role, sub, status in (("agent", delivered["agent"], 403), ("service", None, 403), (None, None, 401)):
        with api.client(role, sub) as c:
            _err(c.post("/rpc/refresh_metrics", json={}), status)


@pytest.mark.parametrize(
    ("params", "code", "names"),
    [
        (
            {"sort_by": "speed"},
            "METRICS_INVALID_SORT_BY",
            "deliveries, success_rate, on_time_rate, avg_delivery_minutes",
        ),
        ({"sort_order": "up"}, "METRICS_INVALID_SORT_ORDER", "asc or desc"),
        ({"from": "2026-02-30"}, "METRICS_INVALID_DATE", "YYYY-MM-DD"),
        ({"to": "yesterday"}, "METRICS_INVALID_DATE", "YYYY-MM-DD"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "METRICS_INVALID_PERIOD", "from < to"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "METRICS_INVALID_PERIOD", "366 days"),
        ({"page": "0"}, "METRICS_INVALID_PAGE", ">= 1"),
        ({"page": "two"}, "METRICS_INVALID_PAGE", ">= 1"),
        ({"page_size": "0"}, "METRICS_INVALID_LIMIT", "1 to 100"),
        ({"page_size": "101"}, "METRICS_INVALID_LIMIT", "1 to 100"),
        ({"zip_code": "1234"}, "INVALID_ARGUMENT", "five digits"),
    ],
)
def test_bad_arguments_are_registered_400s(api: Api, params: dict, code: str, names: str) -> None:
    with api.client("admin") as c:
        body = _err(c.get("/rpc/agent_leaderboard", params=params), 400, code)
    assert names in body["message"]


def test_bad_cursor_and_both_filters(api: Api, delivered: dict) -> None:
    with api.client("admin") as c:
        _err(c.get("/rpc/agent_activity", params={"agent_id": delivered["agent"], "before": "yesterday"}),
             400, "METRICS_INVALID_CURSOR")  # fmt: skip
        _err(c.get("/rpc/sla_summary", params={"agent_id": delivered["agent"], "zip_code": delivered["zip"]}),
             400, "INVALID_ARGUMENT")  # fmt: skip


def test_cache_control_is_the_time_to_the_next_refresh(api: Api, delivered: dict) -> None:
    ttl = {"agent_leaderboard": 30, "sla_summary": 10, "geographic_coverage": 15}
    with api.client("admin") as c:
        for fn, minutes in ttl.items():
            cc = c.get(f"/rpc/{fn}").headers["cache-control"]
            age = int(cc.removeprefix("max-age="))
            assert 0 < age <= minutes * 60, (fn, cc)
        assert (
            c.get("/rpc/agent_metrics", params={"agent_id": delivered["agent"]}).headers["cache-control"]
            == "max-age=0"
        )
        # a non-standard period is computed live from the rollups
        live = c.get("/rpc/agent_leaderboard", params={"from": "2026-01-01", "to": "2026-01-03"})
        assert live.headers["cache-control"] == "max-age=0"


def test_paging_edges(api: Api, delivered: dict) -> None:
    with api.client("admin") as c:
        first = c.get("/rpc/geographic_coverage").json()
        assert (first["page"], first["limit"]) == (1, 20)
        total = first["total"]
        assert total >= 1
        one = c.get("/rpc/geographic_coverage", params={"page_size": 1, "page": total}).json()
        assert len(one["items"]) == 1 and one["total"] == total
        past = c.get("/rpc/geographic_coverage", params={"page_size": 1, "page": total + 1}).json()
        assert past["items"] == [] and past["total"] == total
        most = c.get("/rpc/geographic_coverage", params={"page_size": 100}).json()
        assert len(most["items"]) == min(100, total)
        act = c.get("/rpc/agent_activity", params={"agent_id": delivered["agent"], "page_size": 2}).json()
        assert len(act["items"]) == 2 and act["nextCursor"] == act["items"][-1]["cursor"]
        rest = c.get(
            "/rpc/agent_activity",
            params={"agent_id": delivered["agent"], "page_size": 100, "before": act["nextCursor"]},
        ).json()
        assert [i["id"] for i in rest["items"]][:1] != [act["items"][-1]["id"]]
        assert rest["nextCursor"] is None and len(act["items"]) + len(rest["items"]) == act["total"]
