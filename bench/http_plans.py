"""The HTTP benchmark's scenarios and, for each, the plan every target sends (bench/http.py runs them).

A Scenario is one GET request (path, query, role) and the shape its answer must have (check_body);
build_plans turns each into a Plan: the request's header block for the HTTP targets, and the
gateway's own statement and set_config batch (from gateway.plan) for the direct target.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.common import HOST

USER_AGENT = "waybill-bench"


# -- scenarios ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    query: str  # "{agent}" is replaced by a random agent id per request
    role: str | None  # None: anonymous
    limit: int | None = None  # rows a list answer may hold
    columns: tuple[str, ...] = ()  # keys every row of a list answer must have

    @property
    def title(self) -> str:
        q = self.query.replace("{agent}", "<random agent>")
        return f"GET {self.path}{'?' + q if q else ''} ({self.role or 'anon'})"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("health", "/rpc/health_db", "", None),
        Scenario(
            "assignments",
            "/shipping_assignments",
            "agent_id=eq.{agent}&status=eq.DELIVERED&order=created_at.desc&limit=20",
            "admin",
            limit=20,
            columns=("id", "agent_id", "status", "created_at"),
        ),
        Scenario(
            "orders",
            "/orders",
            "select=id,status,amount&order=id.desc&limit=50",
            "admin",
            limit=50,
            columns=("id", "status", "amount"),
        ),
    )
}
NOOP = Scenario("noop", "/rpc/health_db", "", None)


def check_body(s: Scenario, body: str | bytes, agent: int | None) -> str | None:
    """None if the answer has the scenario's shape, else what is wrong with it."""
    try:
        value = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if s.name == "noop":
        return None if value == {} else "noop body is not {}"
    if s.limit is None:
        ok = isinstance(value, dict) and value.get("status") == "ok"
        return None if ok else "health body without status ok"
    if not isinstance(value, list) or not 1 <= len(value) <= s.limit:
        return f"expected a list of 1..{s.limit} rows"
    for row in value:
        if not isinstance(row, dict) or not set(s.columns) <= set(row):
            return f"a row lacks one of {s.columns}"
        if agent is not None and (row["agent_id"] != agent or row["status"] != "DELIVERED"):
            return "a row of another agent or status"
    return None


@dataclass
class Plan:
    """Everything a client needs to send one scenario's request to any target (picklable)."""

    scenario: Scenario
    agents: list[int]
    header_block: bytes  # the HTTP request's header lines after the request line, final CRLF included
    headers: dict[str, str]
    sql: str  # the gateway's statement for this request, rendered
    params: list[Any]
    agent_param: int | None  # index in params of the agent id (a string, as the query parser yields it)
    setcfg: list[str]  # the gateway's set_config values
    begin_sql: str
    setcfg_sql: str

    def target(self, agent: int | None) -> str:
        q = self.scenario.query.replace("{agent}", str(agent)) if agent is not None else self.scenario.query
        return self.scenario.path + ("?" + q if q else "")

    def sql_params(self, agent: int | None) -> list[Any]:
        if self.agent_param is None:
            return self.params
        params = list(self.params)
        params[self.agent_param] = str(agent)
        return params


def _request_headers(port: int, token: str | None) -> list[tuple[str, str]]:
    headers = [("Host", f"{HOST}:{port}"), ("User-Agent", USER_AGENT), ("Accept", "application/json")]
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    return headers


def build_plans(
    auth_url: str, secret: str, gateway_port: int, scenarios: Sequence[Scenario], agents: list[int]
) -> dict[str, Plan]:
    """The gateway's own statements for each scenario, from its planner (gateway.plan: the same
    pure function the gateway calls for that request) and its set_config batch."""
    from gateway import plan
    from gateway.auth import Verifier
    from gateway.execute import GatewayConfig
    from gateway.schema import load
    from waybill.auth import mint

    config = GatewayConfig(db_url=auth_url, jwt_secret=secret)
    verifier = Verifier(secret, config.anon_role, config.jwt_aud)
    search_path = ", ".join(
        '"' + s.replace('"', '""') + '"' for s in (config.schema, *config.extra_search_path)
    )
    sentinel = "4242424242"

    async def cache_of() -> Any:
        async with await psycopg.AsyncConnection.connect(auth_url, autocommit=True) as conn:
            return await load(conn, config.schema)

    cache = asyncio.run(cache_of())
    plans: dict[str, Plan] = {}
    with psycopg.connect(auth_url, autocommit=True) as conn:
        for s in [*scenarios, NOOP]:
            token = mint(secret, s.role, None, 24 * 3600) if s.role else None
            auth = verifier.authenticate(f"Bearer {token}" if token else None)
            qs = s.query.replace("{agent}", sentinel)
            name = s.path.rsplit("/", 1)[1]
            hdrs = _request_headers(gateway_port, token)
            accept = dict(hdrs).get("Accept")
            if s.path.startswith("/rpc/"):
                planned = plan.plan_rpc(cache, name, method="GET", query_string=qs, accept=accept)
            else:
                planned = plan.plan_read(cache, name, method="GET", query_string=qs, accept=accept)
            assert isinstance(planned, plan.Plan)
            built = planned.built
            # What the gateway puts in request.headers: every header but cookies, lower-cased, plus
            # the X-Request-Id its middleware adds.
            seen = {k.lower(): v for k, v in hdrs} | {"x-request-id": str(uuid.uuid4())}
            ctx = plan.Ctx(
                auth=auth,
                method="GET",
                path=s.path,
                headers_json=json.dumps(seen, separators=(",", ":"), ensure_ascii=False),
                cookies_json="{}",
            )
            setcfg_sql, setcfg = plan.request_settings(cache, search_path, ctx)
            plans[s.name] = Plan(
                scenario=s,
                agents=agents if "{agent}" in s.query else [],
                header_block="".join(f"{k}: {v}\r\n" for k, v in hdrs).encode() + b"\r\n",
                headers=dict(hdrs),
                sql=built.query.as_string(conn),
                params=list(built.params),
                agent_param=built.params.index(sentinel) if sentinel in built.params else None,
                setcfg=setcfg,
                begin_sql=plan.sqlbuild.BEGIN[planned.read_only].as_string(conn),
                setcfg_sql=setcfg_sql.as_string(conn),
            )
    return plans
