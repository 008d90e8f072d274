"""HTTP API throughput: the gateway against the same SQL sent directly, and a no-op HTTP app.

For each scenario and client count, three targets run in the same process set-up, interleaved in
slices so that they share the same background load (the machine is shared):

- gateway: `python -m gateway` in a subprocess (a pool of --pool-size connections as authenticator)
  answering the scenario's HTTP request;
- direct: the transaction the gateway sends for that request, from psycopg, one connection per client
  (as authenticator too): one pipelined round trip of `begin isolation level read committed read
  only`, the gateway's `set_config` batch (search_path, role, request.jwt.claims, request.method,
  request.path, request.headers, request.cookies), the gateway's own statement (built once by
  gateway.sqlbuild from the same query string, with the same parameters) and `commit`;
- noop: a bare Starlette app under uvicorn, started as the gateway starts (httptools, and the stock
  asyncio loop: see serve_noop), answering `{}`: what HTTP + ASGI in Python costs on this machine,
  without any database.

Scenarios: `health` (GET /rpc/health_db, anonymous), `assignments` (an admin reads a random agent's
last 20 delivered assignments), `orders` (an admin reads the last 50 orders, three columns).

Clients are asyncio tasks (uvloop) in `--procs` spawned processes, each with one keep-alive
connection (HTTP/1.1 over one socket, or one psycopg AsyncConnection). Every request counts; non-2xx
answers and errors are counted per cell (none expected) and the first answer of each client in each
slice is checked for shape.

    python -m bench.http                       # throw-away cluster, 20,000 orders, 1/16/64 clients
    python -m bench.http --seconds 2 --clients 1,16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import random
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import wrk as _wrk
from bench.common import HOST, RESULTS_DIR, gateway
from bench.common import cluster_cpu as _cluster_cpu
from bench.common import fmt as _f
from bench.common import log as _log
from bench.common import machine_busy_s as _machine_busy_s
from bench.common import machine_info as _machine_info
from bench.common import md as _md
from bench.common import ms as _ms
from bench.common import percentile as _pct
from bench.common import ppid as _ppid
from bench.common import save as _save
from bench.common import server_info as _server_info
from bench.common import table as _table
from bench.common import tree_cpu_s as _tree_cpu_s
from waybill import process


def save(results: dict, path: Path | None = None) -> Path:
    return _save(results, "http", path)


APP_NAME = "waybill-bench-http"
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


# -- client connections ---------------------------------------------------------------------------


class RawHttp:
    """HTTP/1.1 keep-alive on one asyncio stream: a GET, then a Content-Length or chunked answer.
    Far cheaper per request than a general client, so the client side takes less of the CPU it
    shares with the gateway and the server."""

    def __init__(self, port: int, header_block: bytes) -> None:
        self.port, self.header_block = port, header_block
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def get(self, target: str) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"GET " + target.encode() + b" HTTP/1.1\r\n" + self.header_block)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            body = await self.reader.readexactly(int(head[i + 17 : head.index(b"\r\n", i + 2)]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            raise ValueError("an answer without Content-Length or chunked encoding")
        if b"\r\nconnection: close" in lower:
            await self.close()
            await self.open()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append((await self.reader.readexactly(size + 2))[:-2])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxHttp:
    """The same through httpx.AsyncClient (one keep-alive connection): --http-client httpx."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port, self.headers = port, headers
        self.client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self.client = httpx.AsyncClient(
            base_url=f"http://{HOST}:{self.port}",
            headers={k: v for k, v in self.headers.items() if k != "Host"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=60,
        )

    async def get(self, target: str) -> tuple[int, bytes]:
        assert self.client is not None
        r = await self.client.get(target)
        return r.status_code, r.content

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        self.client = None


async def direct_call(conn: psycopg.AsyncConnection, plan: Plan, params: list[Any]) -> tuple:
    """What gateway/app.py's Gateway.run sends for a read: one pipelined round trip."""
    async with conn.pipeline():
        await conn.execute(plan.begin_sql, prepare=False)
        await conn.execute(plan.setcfg_sql, plan.setcfg)
        cur = await conn.execute(plan.sql, params)
        await conn.execute("commit", prepare=False)
    row = await cur.fetchone()
    assert row is not None
    return row


# -- worker processes -----------------------------------------------------------------------------


@dataclass
class WorkerSpec:
    auth_url: str
    ports: dict[str, int]  # target -> port (gateway, noop)
    plans: dict[str, Plan]
    http_client: str  # "raw" or "httpx"


@dataclass
class WorkerSlice:
    latencies: list[float] = field(default_factory=list)
    non_2xx: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    cpu_s: float = 0.0
    last_stop: float = 0.0
    per_client_rps: list[float] = field(default_factory=list)  # fairness: requests/s of each client


async def _client(
    target: str,
    plan: Plan,
    http: RawHttp | HttpxHttp | None,
    conn: psycopg.AsyncConnection | None,
    rng: random.Random,
    deadline: float,
    out: WorkerSlice,
) -> tuple[float, int]:
    """Requests until the deadline; returns (when it stopped, requests done)."""
    lat, agents, scenario = out.latencies, plan.agents, plan.scenario
    checked = False
    perf, mono = time.perf_counter, time.monotonic
    done = 0
    while mono() < deadline:
        agent = rng.choice(agents) if agents else None
        t0 = perf()
        try:
            if conn is not None:
                status, body = 200, (await direct_call(conn, plan, plan.sql_params(agent)))[2]
            else:
                assert http is not None
                status, body = await http.get(plan.target(agent))
        except Exception as exc:  # noqa: BLE001 - counted; the cell reports it
            out.errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            if http is not None:
                await http.close()
                try:
                    await http.open()
                except OSError:
                    return mono(), done
            elif conn is not None:
                if conn.broken:
                    return mono(), done
                with contextlib.suppress(psycopg.Error):
                    await conn.rollback()
            continue
        lat.append(perf() - t0)
        done += 1
        if not 200 <= status < 300:
            out.non_2xx[str(status)] += 1
        elif not checked:
            checked = True
            problem = check_body(scenario, body, agent)
            if problem:
                out.errors[f"bad answer: {problem}"] += 1
    return mono(), done


async def _worker(pipe: Any, spec: WorkerSpec) -> None:
    loop = asyncio.get_running_loop()

    async def recv() -> tuple:
        return await loop.run_in_executor(None, pipe.recv)

    db: list[psycopg.AsyncConnection] = []
    clients: list[int] = []
    try:
        while True:
            cmd, *args = await recv()
            if cmd == "quit":
                return
            if cmd == "level":  # (client ids, open direct connections?)
                clients, want_db = args
                while len(db) > (len(clients) if want_db else 0):
                    await db.pop().close()
                more = (len(clients) if want_db else 0) - len(db)
                db += await asyncio.gather(
                    *(
                        psycopg.AsyncConnection.connect(
                            spec.auth_url, autocommit=True, application_name=APP_NAME
                        )
                        for _ in range(more)
                    )
                )
                pipe.send(("ok", None))
            elif cmd == "slice":  # (target, scenario, seed)
                target, name, seed = args
                plan = spec.plans[name]
                https: list[Any] = []
                if target != "direct":
                    port = spec.ports[target]
                    https = [
                        RawHttp(port, plan.header_block)
                        if spec.http_client == "raw"
                        else HttpxHttp(port, plan.headers)
                        for _ in clients
                    ]
                    await asyncio.gather(*(h.open() for h in https))
                pipe.send(("ready", None))
                _, deadline = await recv()
                out = WorkerSlice()
                ru0 = resource.getrusage(resource.RUSAGE_SELF)
                start = time.monotonic()
                ends = await asyncio.gather(
                    *(
                        _client(
                            target,
                            plan,
                            https[i] if https else None,
                            db[i] if target == "direct" else None,
                            random.Random(seed * 1_000_003 + c),
                            deadline,
                            out,
                        )
                        for i, c in enumerate(clients)
                    )
                )
                ru1 = resource.getrusage(resource.RUSAGE_SELF)
                out.cpu_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
                out.last_stop = max(stop for stop, _ in ends)
                out.per_client_rps = [n / max(stop - start, 1e-6) for stop, n in ends]
                await asyncio.gather(*(h.close() for h in https))
                pipe.send(("done", out))
    finally:
        for c in db:
            await c.close()


def _worker_entry(pipe: Any, spec: WorkerSpec) -> None:
    try:
        import uvloop

        uvloop.run(_worker(pipe, spec))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        with contextlib.suppress(Exception):
            pipe.send(("fatal", repr(exc)))


class Workers:
    """`procs` client processes, alive for the whole run; each runs its share of the clients."""

    def __init__(self, procs: int, spec: WorkerSpec, timeout: float) -> None:
        ctx = mp.get_context("spawn")
        self.timeout = timeout
        self.pipes, self.procs = [], []
        for _ in range(procs):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_worker_entry, args=(theirs, spec), daemon=True)
            p.start()
            self.pipes.append(mine)
            self.procs.append(p)
        self.active: list[int] = []

    def _reply(self, i: int, timeout: float) -> Any:
        try:
            if not self.pipes[i].poll(timeout):
                raise TimeoutError(f"bench client process {i} did not answer within {timeout:g} s")
            kind, value = self.pipes[i].recv()
        except (EOFError, OSError) as exc:
            raise RuntimeError(
                f"bench client process {i} is gone (exit code {self.procs[i].exitcode})"
            ) from exc
        if kind == "fatal":
            raise RuntimeError(f"bench client process {i} failed: {value}")
        return value

    def level(self, clients: int, direct: bool, procs: int) -> None:
        """The next client count, spread over the first `procs` processes."""
        use = max(1, min(procs, len(self.procs)))
        shares = [list(range(clients))[i::use] if i < use else [] for i in range(len(self.procs))]
        self.active = [i for i, s in enumerate(shares) if s]
        for i, share in enumerate(shares):  # an idle process closes its direct connections
            self.pipes[i].send(("level", share, direct))
        for i in range(len(self.pipes)):
            self._reply(i, self.timeout)

    def run_slice(
        self, target: str, scenario: str, seconds: float, seed: int, marks: Callable[[], dict]
    ) -> tuple[list[WorkerSlice], float, dict, dict]:
        for i in self.active:
            self.pipes[i].send(("slice", target, scenario, seed))
        for i in self.active:
            self._reply(i, self.timeout)
        before = marks()
        go = time.monotonic()
        for i in self.active:
            self.pipes[i].send(("go", go + seconds))
        outs = [self._reply(i, seconds + self.timeout) for i in self.active]
        after = marks()
        return outs, go, before, after

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("quit",))
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()


# -- servers --------------------------------------------------------------------------------------


def _free_port() -> int:
    from waybill.cluster import free_port

    return free_port()


def _wait_ok(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 60.0) -> None:
    process.wait_until(
        process.http_ok(url),
        timeout=timeout,
        what=f"{proc.args[1:3]} at {url}",
        child=proc,
        describe_exit=lambda: log_path.read_text(errors="replace")[-2000:] if log_path.exists() else "",
    )


@contextlib.contextmanager
def _server(
    args: list[str], ready_url: str, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    root = Path(__file__).resolve().parent.parent
    with log_path.open("wb") as log_file:
        env_ = None if env is None else dict(os.environ, **env)
        proc = process.start([sys.executable, *args], cwd=root, env=env_, output=log_file)
        try:
            _wait_ok(ready_url, proc, log_path)
            yield proc
        finally:
            process.stop(proc)


def noop_app() -> Any:
    """A bare Starlette app: every GET answers `{}`."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def noop(request: Any) -> JSONResponse:
        return JSONResponse({})

    return Starlette(routes=[Route("/{path:path}", noop)])


def serve_noop(port: int, loop: str) -> None:
    """uvicorn with the gateway's settings (httptools, no access log, no server header, Date).

    loop "asyncio" starts it as gateway/__main__.py does, `asyncio.run(Server(config).serve())`,
    which runs on the stock asyncio loop (uvicorn's loop="auto" only applies in `Server.run`);
    "uvloop" lets uvicorn set up its loop (`Server.run`: uvloop)."""
    import uvicorn

    config = uvicorn.Config(
        noop_app(),
        host=HOST,
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        loop="uvloop" if loop == "uvloop" else "asyncio",
    )
    server = uvicorn.Server(config)
    if loop == "uvloop":
        server.run()
    else:
        asyncio.run(server.serve())


def _one_get(port: int, plan: Plan, agent: int | None) -> tuple[int, bytes]:
    r = httpx.get(f"http://{HOST}:{port}{plan.target(agent)}", headers=plan.headers, timeout=30)
    return r.status_code, r.content


# -- measuring one cell ---------------------------------------------------------------------------


def _cpu_marks(pids: dict[str, int | None], postmaster: int | None) -> Callable[[], dict]:
    def take() -> dict:
        return {
            "t": time.monotonic(),
            "busy": _machine_busy_s(),
            "procs": {k: _tree_cpu_s(p) for k, p in pids.items()},
            "postgres": _cluster_cpu(postmaster, -1),
        }

    return take


@dataclass
class Cell:
    scenario: str
    target: str
    clients: int
    latencies: list[float] = field(default_factory=list)
    non_2xx: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    elapsed: float = 0.0
    window: float = 0.0
    client_cpu_s: float = 0.0
    client_proc_max_pct: float = 0.0
    per_client_rps: list[float] = field(default_factory=list)
    cpu_s: Counter = field(default_factory=Counter)  # gateway, noop, postgres, busy
    have_cpu: bool = True

    def add(self, outs: list[WorkerSlice], go: float, before: dict, after: dict) -> None:
        for o in outs:
            self.latencies += o.latencies
            self.non_2xx.update(o.non_2xx)
            self.errors.update(o.errors)
            self.per_client_rps += o.per_client_rps
        elapsed = max(o.last_stop for o in outs) - go
        window = after["t"] - before["t"]
        self.elapsed += elapsed
        self.window += window
        self.client_cpu_s += sum(o.cpu_s for o in outs)
        self.client_proc_max_pct = max(
            self.client_proc_max_pct, *(100 * o.cpu_s / max(elapsed, 1e-6) for o in outs)
        )
        for k, c0 in before["procs"].items():
            c1 = after["procs"][k]
            if c0 is None or c1 is None:
                self.have_cpu = False
            else:
                self.cpu_s[k] += c1 - c0
        p0, p1 = before["postgres"], after["postgres"]
        if not p0 or before["busy"] is None or after["busy"] is None:
            self.have_cpu = False
        else:
            self.cpu_s["postgres"] += sum(p1[p] - c for p, c in p0.items() if p in p1)
            self.cpu_s["busy"] += after["busy"] - before["busy"]

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        n = len(lat)

        def pct(x: float | None, over: float) -> float | None:
            return None if x is None or not self.have_cpu else round(100 * x / over, 1)

        def us(x: float | None) -> float | None:
            return None if x is None or not n or not self.have_cpu else round(1e6 * x / n)

        cpu = dict(self.cpu_s)
        known = self.client_cpu_s + sum(cpu.get(k, 0.0) for k in ("gateway", "noop", "postgres"))
        others = max(0.0, cpu.get("busy", 0.0) - known) if self.have_cpu else None
        return {
            "scenario": self.scenario,
            "target": self.target,
            "clients": self.clients,
            "requests": n,
            "elapsed_s": round(self.elapsed, 3),
            "rps": round(n / self.elapsed, 1) if self.elapsed > 0 else 0.0,
            "latency_ms": {
                "mean": _ms(sum(lat) / n) if n else None,
                "p50": _ms(_pct(lat, 50)),
                "p95": _ms(_pct(lat, 95)),
                "p99": _ms(_pct(lat, 99)),
                "max": _ms(lat[-1] if lat else None),
            },
            # Fairness: each client's requests/s in each slice (a client starved of CPU does fewer
            # requests, so percentiles over requests lean towards the fast clients).
            "per_client_rps": {
                "min": round(min(self.per_client_rps), 1) if self.per_client_rps else None,
                "max": round(max(self.per_client_rps), 1) if self.per_client_rps else None,
            },
            "non_2xx": dict(sorted(self.non_2xx.items())),
            "errors": dict(self.errors.most_common()),
            "cpu_pct_of_one_core": {
                "clients": round(100 * self.client_cpu_s / max(self.elapsed, 1e-6), 1),
                "client_process_max": round(self.client_proc_max_pct, 1),
                "gateway": pct(cpu.get("gateway"), self.window) if self.target == "gateway" else None,
                "noop": pct(cpu.get("noop"), self.window) if self.target == "noop" else None,
                "postgres": pct(cpu.get("postgres"), self.window),
                "others": pct(others, self.window),
                "machine_busy": pct(cpu.get("busy"), self.window),
                "machine_capacity": 100 * (os.cpu_count() or 1),
            },
            "cpu_us_per_request": {
                "clients": round(1e6 * self.client_cpu_s / n) if n else None,
                "server": us(cpu.get(self.target)) if self.target in ("gateway", "noop") else None,
                "postgres": us(cpu.get("postgres")),
            },
        }


# -- statements per gateway request ---------------------------------------------------------------

_PSS = """
    select userid, queryid, toplevel, calls, query from public.pg_stat_statements(true)
     where dbid = (select oid from pg_database where datname = current_database())
"""


def statements_per_request(owner_url: str, port: int, plans: dict[str, Plan], n: int = 100) -> dict:
    """`n` sequential gateway requests per scenario; pg_stat_statements calls before and after (no
    reset: nothing else of the server's statistics is touched). track = all counts nested
    statements too."""
    out: dict[str, Any] = {}
    with (
        psycopg.connect(owner_url, autocommit=True) as conn,
        httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as http,
    ):
        try:
            conn.execute(_PSS + " limit 1")
        except psycopg.Error as exc:
            return {"error": f"pg_stat_statements unavailable: {exc}".strip()}
        rng = random.Random(7)
        for name, plan in plans.items():
            if name == "noop":
                continue
            headers = {k: v for k, v in plan.headers.items() if k != "Host"}
            before = {(u, q, top): c for u, q, top, c, _ in conn.execute(_PSS)}
            for _ in range(n):
                http.get(plan.target(rng.choice(plan.agents) if plan.agents else None), headers=headers)
            rows = []
            for u, q, top, c, text in conn.execute(_PSS):
                calls = c - before.get((u, q, top), 0)
                if calls > 0 and "pg_stat_statements" not in text:
                    rows.append((top, calls, " ".join(text.split())))
            rows.sort(key=lambda r: (not r[0], -r[1]))
            out[name] = {
                "requests": n,
                "top_level_per_request": round(sum(c for top, c, _ in rows if top) / n, 2),
                "nested_per_request": round(sum(c for top, c, _ in rows if not top) / n, 2),
                "statements": [
                    {"calls_per_request": round(c / n, 2), "top_level": top, "query": t[:200]}
                    for top, c, t in rows
                ],
            }
    return out


# -- the whole run --------------------------------------------------------------------------------


def _agents(owner_url: str) -> tuple[list[int], str]:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        agents = [
            r[0]
            for r in conn.execute(
                "select distinct agent_id from core.shipping_assignments "
                "where status = 'DELIVERED' order by 1"
            )
        ]
        orders, all_agents, assignments = conn.execute(
            "select (select count(*) from core.orders), (select count(*) from core.delivery_agents), "
            "(select count(*) from core.shipping_assignments)"
        ).fetchone()
    return agents, (
        f"{orders:,} orders, {all_agents:,} agents, {assignments:,} assignments; "
        f"{len(agents)} agents with DELIVERED assignments (each assignments request draws one)"
    )


def run(
    owner_url: str,
    auth_url: str,
    *,
    clients: Sequence[int] = (1, 16, 64),
    seconds: float = 4.0,
    slices: int = 2,
    scenarios: Sequence[str] = tuple(SCENARIOS),
    procs: int = 1,
    pool_size: int = 10,
    gateway_log_level: str = "info",
    http_client: str = "wrk",
    noop_loop: str = "uvloop",
    warmup: float = 0.3,
    statements_check: int = 100,
    seed: int = 1,
    prepare_threshold: str = "5",
    gateway_workers: int | None = None,
    log: Callable[[str], None] = _log,
) -> dict:
    """The benchmark against a migrated, populated database: `owner_url` (any superuser or the
    owner, for reading statistics) and `auth_url` (logs in as authenticator, for the gateway and the
    direct clients). Starts its own gateway and no-op app; returns the results (see README)."""
    started = dt.datetime.now(dt.UTC)
    agents, data = _agents(owner_url)
    chosen = [SCENARIOS[s] for s in scenarios]
    if any("{agent}" in s.query for s in chosen) and not agents:
        raise RuntimeError("no agent has a DELIVERED assignment: seed the database first")
    procs_at = {n: max(1, min(n, procs)) for n in clients}
    secret = secrets.token_urlsafe(40)
    ports = {"noop": _free_port()}
    logdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    cells: dict[tuple[str, str, int], Cell] = {}
    stack = contextlib.ExitStack()
    stack.callback(shutil.rmtree, logdir, ignore_errors=True)
    with stack:
        gw, ports["gateway"] = stack.enter_context(
            gateway(
                auth_url, secret, logdir / "gateway.log",
                ["--pool-size", str(pool_size), "--log-level", gateway_log_level,
                 "--prepare-threshold", prepare_threshold,
                 *(["--workers", str(gateway_workers)] if gateway_workers else [])],
            )
        )  # fmt: skip
        noop = stack.enter_context(
            _server(
                ["-m", "bench.http", "--serve-noop", str(ports["noop"]), "--noop-loop", noop_loop],
                f"http://{HOST}:{ports['noop']}/noop-ready",  # a path the gateway answers 404
                logdir / "noop.log",
            )
        )
        plans = build_plans(auth_url, secret, ports["gateway"], chosen, agents)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            postmaster = _ppid(conn.info.backend_pid)
        marks = _cpu_marks({"gateway": gw.pid, "noop": noop.pid}, postmaster)
        wrk_path = _wrk.ensure_wrk() if http_client == "wrk" else None
        if http_client == "wrk" and wrk_path is None:
            raise SystemExit("bench: --http-client wrk needs wrk (Debian package wrk)")
        scripts = {
            name: _wrk.script(
                logdir / f"{name}.lua", p.headers, [p.target(a) for a in p.agents] or [p.target(None)]
            )
            for name, p in plans.items()
        }

        def wrk_slice(
            target: str, name: str, n: int, secs: float
        ) -> tuple[list[WorkerSlice], float, dict, dict]:
            plan = plans[name]
            agent = plan.agents[0] if plan.agents else None
            status, body = _one_get(ports[target], plan, agent)  # the answer's shape, once a slice
            figures, go, before, after = _wrk.run(
                wrk_path,
                f"http://{HOST}:{ports[target]}",
                scripts[name],
                n,
                secs,
                marks,  # type: ignore[arg-type]
            )
            non_2xx, errs = _wrk.errors(figures)
            problem = check_body(plan.scenario, body, agent) if status == 200 else f"status {status}"
            if problem:
                errs[f"bad answer: {problem}"] += 1
            out = WorkerSlice(_wrk.latencies(figures), non_2xx, errs, figures["cpu_s"])
            out.last_stop = go + figures["duration_us"] / 1e6
            return [out], go, before, after

        spec = WorkerSpec(auth_url, ports, plans, http_client if http_client != "wrk" else "raw")
        workers = Workers(max(procs_at.values()), spec, timeout=120)
        stack.callback(workers.close)
        plan_cells = [(t, s.name) for s in chosen for t in ("gateway", "direct")] + [("noop", "noop")]
        piece = seconds / slices
        for n in clients:
            log(
                f"{n} client(s) in {procs_at[n]} process(es): "
                f"{slices} x {len(plan_cells)} cells of {piece:g} s"
            )
            workers.level(n, direct=True, procs=procs_at[n])

            def one(
                target: str, name: str, secs: float, rseed: int, n: int = n
            ) -> tuple[list[WorkerSlice], float, dict, dict]:
                if wrk_path is not None and target != "direct":
                    return wrk_slice(target, name, n, secs)
                return workers.run_slice(target, name, secs, rseed, marks)

            if warmup > 0:
                for target, name in plan_cells:
                    one(target, name, warmup, seed - 1)
            for k in range(slices):
                order = plan_cells if k % 2 == 0 else plan_cells[::-1]
                for target, name in order:
                    cell = cells.setdefault((name, target, n), Cell(name, target, n))
                    cell.add(*one(target, name, piece, seed + 1000 * n + k))
        workers.level(0, direct=False, procs=1)
        stmts = (
            statements_per_request(owner_url, ports["gateway"], plans, statements_check)
            if statements_check
            else {}
        )
        server_log = {name: _log_problems(logdir / f"{name}.log") for name in ("gateway", "noop")}
    summaries = [c.summary() for c in cells.values()]
    results: dict[str, Any] = {
        "benchmark": "http",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": _machine_info(),
        "server": _server_info(owner_url),
        "config": {
            "clients": list(clients),
            "seconds_per_cell": seconds,
            "slices": slices,
            "warmup_s_per_cell": warmup,
            "client_processes": {str(n): p for n, p in procs_at.items()},
            "http_client": http_client,
            "noop_loop": noop_loop,
            "gateway_pool_size": pool_size,
            "gateway_log_level": gateway_log_level,
            "gateway_prepare_threshold": prepare_threshold,
            "gateway_workers": gateway_workers,
            "load_average": list(os.getloadavg()),
            "seed": seed,
        },
        "data": data,
        "scenarios": {s.name: s.title for s in chosen},
        "direct": {
            name: {"begin": p.begin_sql, "set_config": p.setcfg_sql, "statement": p.sql}
            for name, p in plans.items()
            if name != "noop"
        },
        "cells": summaries,
        "ratios": ratios(summaries),
        "statements_per_request": stmts,
        "server_log_problems": server_log,
    }
    results["notes"] = bounding_notes(results)
    bad = [c for c in summaries if c["requests"] < 1 or c["errors"] or c["non_2xx"]]
    results["ok"] = not bad
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return results


_QUIET = re.compile(rb'"level": ?"(info|debug)"')


def _log_problems(path: Path) -> dict:
    """Warnings and errors a server logged during the run (its access log lines are not counted)."""
    count, first = 0, []
    with path.open("rb") as f:
        for line in f:
            if _QUIET.search(line):
                continue
            count += 1
            if len(first) < 3:
                first.append(line.decode(errors="replace").strip()[:300])
    return {"lines": count, "first": first}


def ratios(cells: list[dict]) -> list[dict]:
    by = {(c["scenario"], c["target"], c["clients"]): c for c in cells}
    out = []
    for (name, target, n), gw in by.items():
        if target != "gateway":
            continue
        direct, noop = by.get((name, "direct", n)), by.get(("noop", "noop", n))

        def div(a: float | None, b: float | None) -> float | None:
            return round(a / b, 3) if a is not None and b else None

        out.append(
            {
                "scenario": name,
                "clients": n,
                "gateway_rps": gw["rps"],
                "rps_gateway_to_direct": div(gw["rps"], direct and direct["rps"]),
                "p50_gateway_to_direct": div(gw["latency_ms"]["p50"], direct and direct["latency_ms"]["p50"]),
                "mean_gateway_to_direct": div(
                    gw["latency_ms"]["mean"], direct and direct["latency_ms"]["mean"]
                ),
                "rps_gateway_to_noop": div(gw["rps"], noop and noop["rps"]),
            }
        )
    return out


def bounding_notes(results: dict) -> list[str]:
    """Plain statements about what limited the cells, from the CPU figures."""
    notes = []
    procs = results["config"]["client_processes"]
    for c in results["cells"]:
        cpu = c["cpu_pct_of_one_core"]
        label = f"{c['scenario']}/{c['target']} at {c['clients']} clients"
        busy, cap = cpu["machine_busy"], cpu["machine_capacity"]
        if cpu["client_process_max"] >= 85:
            notes.append(
                f"{label}: a client process used {cpu['client_process_max']:.0f} % of one core: the "
                f"client side is near its limit ({procs[str(c['clients'])]} process(es) at this level; "
                "see --procs)."
            )
        server = cpu["gateway"] if c["target"] == "gateway" else cpu["noop"]
        if server is not None and server >= 85:
            notes.append(
                f"{label}: the {c['target']} process used {server:.0f} % of one core: a single-process "
                "Python server, bound by that one core."
            )
        if busy is not None and cpu["others"] is not None and cpu["others"] >= 0.2 * cap:
            notes.append(
                f"{label}: other processes (other users of this machine) took {cpu['others']:.0f} % of "
                "one core: the figures are lower than on a quiet machine."
            )
    return notes


# -- output ---------------------------------------------------------------------------------------

MAIN_HEAD = [
    "scenario",
    "clients",
    "target",
    "req/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "mean ms",
    "per-client req/s min-max",
    "non-2xx",
    "errors",
]
RATIO_HEAD = [
    "scenario",
    "clients",
    "gateway req/s",
    "gw/direct req/s",
    "gw/direct p50",
    "gw/direct mean",
    "gw/noop req/s",
]
CPU_HEAD = [
    "scenario",
    "clients",
    "target",
    "client %",
    "max proc %",
    "server %",
    "postgres %",
    "others %",
    "busy %",
    "client us/req",
    "server us/req",
    "postgres us/req",
]


def _count(d: dict) -> str:
    return str(sum(d.values()))


def _main_rows(results: dict) -> list[list[str]]:
    rows = []
    for c in results["cells"]:
        q = c["latency_ms"]
        rows.append(
            [
                c["scenario"],
                str(c["clients"]),
                c["target"],
                _f(c["rps"]),
                _f(q["p50"], 2),
                _f(q["p95"], 2),
                _f(q["p99"], 2),
                _f(q["mean"], 2),
                f"{_f(c['per_client_rps']['min'], 0)}-{_f(c['per_client_rps']['max'], 0)}",
                _count(c["non_2xx"]),
                _count(c["errors"]),
            ]
        )
    return rows


def _ratio_rows(results: dict) -> list[list[str]]:
    return [
        [
            r["scenario"],
            str(r["clients"]),
            _f(r["gateway_rps"]),
            _f(r["rps_gateway_to_direct"], 2),
            _f(r["p50_gateway_to_direct"], 2),
            _f(r["mean_gateway_to_direct"], 2),
            _f(r["rps_gateway_to_noop"], 2),
        ]
        for r in results["ratios"]
    ]


def _cpu_rows(results: dict) -> list[list[str]]:
    rows = []
    for c in results["cells"]:
        cpu, us = c["cpu_pct_of_one_core"], c["cpu_us_per_request"]
        server = cpu["gateway"] if c["target"] == "gateway" else cpu["noop"]
        rows.append(
            [
                c["scenario"],
                str(c["clients"]),
                c["target"],
                _f(cpu["clients"], 0),
                _f(cpu["client_process_max"], 0),
                _f(server, 0),
                _f(cpu["postgres"], 0),
                _f(cpu["others"], 0),
                _f(cpu["machine_busy"], 0),
                _f(us["clients"], 0),
                _f(us["server"], 0),
                _f(us["postgres"], 0),
            ]
        )
    return rows


def _statement_lines(results: dict) -> list[str]:
    stmts = results.get("statements_per_request") or {}
    if "error" in stmts:
        return [f"  {stmts['error']}"]
    out = []
    for name, s in stmts.items():
        out.append(
            f"  {name}: {s['top_level_per_request']:g} statements per request "
            f"(+ {s['nested_per_request']:g} nested, inside functions)"
        )
        out += [
            f"    {x['calls_per_request']:>5g} x {'' if x['top_level'] else '(nested) '}{x['query'][:110]}"
            for x in s["statements"]
        ]
    return out


def format_text(results: dict) -> str:
    m, s, c = results["machine"], results["server"], results["config"]
    out = [
        f"Waybill HTTP API throughput, {results['started_at']}",
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), load average at start {m['load_average_at_start']}",
        f"server: PostgreSQL {s.get('server_version')}; gateway: pool {c['gateway_pool_size']}, "
        f"log level {c['gateway_log_level']}",
        f"clients: {c['http_client']} HTTP client / psycopg AsyncConnection, one connection per client, "
        f"asyncio (uvloop); processes per client count {c['client_processes']}; "
        f"{c['seconds_per_cell']:g} s per cell "
        f"in {c['slices']} interleaved slices",
        f"data: {results['data']}",
        "scenarios:",
        *(f"  {k:<12} {v}" for k, v in results["scenarios"].items()),
        f"  noop         any GET answered {{}} by a bare Starlette app (uvicorn as the gateway's, "
        f"{c['noop_loop']} loop)",
        "direct = one pipelined round trip: begin read only; the gateway's set_config batch; the",
        "gateway's statement (gateway.sqlbuild, same parameters); commit",
        "",
        "throughput and latency",
        _table(MAIN_HEAD, _main_rows(results)),
        "",
        "gateway overhead (ratios at the same client count)",
        _table(RATIO_HEAD, _ratio_rows(results)),
        "",
        "where the CPU went (% of one core over each cell; server = the gateway or no-op process;",
        "postgres = every server process; others = the rest of the machine; us/req = CPU per request)",
        _table(CPU_HEAD, _cpu_rows(results)),
    ]
    lines = _statement_lines(results)
    if lines:
        out += ["", "statements per gateway request (pg_stat_statements, sequential requests)", *lines]
    logs = results.get("server_log_problems") or {}
    if logs:
        out += [
            "",
            "server logs: " + ", ".join(f"{k} {v['lines']} warning/error line(s)" for k, v in logs.items()),
        ]
        out += [f"  {k}: {line}" for k, v in logs.items() for line in v["first"]]
    if results["notes"]:
        out += ["", "notes", *(f"  - {n}" for n in results["notes"])]
    bad = [
        f"{x['scenario']}/{x['target']}@{x['clients']}: {x['requests']} requests, "
        f"non-2xx {x['non_2xx']}, errors {x['errors']}"
        for x in results["cells"]
        if x["requests"] < 1 or x["errors"] or x["non_2xx"]
    ]
    out += [
        "",
        "result: " + ("every cell completed requests with no error and no non-2xx" if not bad else ""),
    ]
    out += [f"  FAIL {b}" for b in bad]
    return "\n".join(out)


def format_markdown(results: dict) -> str:
    return "\n".join(
        [
            _md(MAIN_HEAD, _main_rows(results)),
            "",
            _md(RATIO_HEAD, _ratio_rows(results)),
            "",
            _md(CPU_HEAD, _cpu_rows(results)),
        ]
    )


# -- command line ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _databases(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(owner URL, authenticator URL) of a populated database."""
    owner, authenticator = os.environ.get("WAYBILL_BENCH_DATABASE_URL"), os.environ.get("PGRST_DB_URI")
    if owner:
        if not authenticator:
            raise SystemExit("WAYBILL_BENCH_DATABASE_URL needs PGRST_DB_URI (authenticator's URL) too")
        yield owner, authenticator
        return
    from waybill import testing
    from waybill.seed import seed

    with testing.test_cluster() as cluster:
        _log(f"throw-away cluster in {cluster.data_dir}; migrating the template")
        testing.build_template(cluster)
        cluster.drop_database("bench_http")
        cluster.create_database("bench_http", template=testing.TEMPLATE_DB)
        url = cluster.url("bench_http")
        _log(f"seeding {args.orders:,} orders and {args.agents} agents")
        seed(url, orders=args.orders, agents=args.agents)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("vacuum analyze")
        yield url, cluster.url("bench_http", user="authenticator")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="1,16,64", help="client counts, comma-separated (default 1,16,64)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per cell (default 4)")
    p.add_argument("--slices", type=int, default=2, help="interleaved slices per cell (default 2)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"default {','.join(SCENARIOS)}")
    p.add_argument(
        "--procs",
        type=int,
        default=1,
        help="client processes (default 1; see bench/README.md for why not more on 2 cores)",
    )
    p.add_argument("--pool-size", type=int, default=10, help="the gateway's pool (default 10)")
    p.add_argument(
        "--gateway-prepare-threshold",
        default="5",
        help="the gateway's --prepare-threshold (psycopg auto-preparation; 'none' turns it off)",
    )
    p.add_argument("--gateway-log-level", default="info", help="default info: one access log line a request")
    p.add_argument(
        "--http-client",
        choices=("wrk", "raw", "httpx"),
        default="wrk",
        help="the HTTP load: wrk (C, default; Debian package wrk), or the Python raw/httpx clients",
    )
    p.add_argument(
        "--gateway-workers", type=int, help="the gateway's --workers (default: its own, one per core)"
    )
    p.add_argument("--warmup", type=float, default=0.3, help="unreported seconds per cell and level")
    p.add_argument(
        "--statements-check",
        type=int,
        default=100,
        help="sequential gateway requests per scenario counted in pg_stat_statements (0: skip)",
    )
    p.add_argument("--orders", type=int, default=20_000, help="orders to seed (throw-away only)")
    p.add_argument("--agents", type=int, default=200, help="agents to seed (throw-away only)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    p.add_argument("--output", type=Path, help="results JSON (default bench/results/http-<time>.json)")
    p.add_argument(
        "--noop-loop",
        choices=("asyncio", "uvloop"),
        default="uvloop",
        help="the no-op app's event loop; default uvloop, the loop the gateway runs on",
    )
    p.add_argument("--serve-noop", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_noop:
        serve_noop(args.serve_noop, args.noop_loop)
        return 0
    clients = [int(x) for x in args.clients.split(",") if x.strip()]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    t0 = time.monotonic()
    with _databases(args) as (owner_url, auth_url):
        results = run(
            owner_url,
            auth_url,
            clients=clients,
            seconds=args.seconds,
            slices=args.slices,
            scenarios=scenarios,
            procs=args.procs,
            pool_size=args.pool_size,
            gateway_log_level=args.gateway_log_level,
            http_client=args.http_client,
            noop_loop=args.noop_loop,
            warmup=args.warmup,
            statements_check=args.statements_check,
            seed=args.seed,
            prepare_threshold=args.gateway_prepare_threshold,
            gateway_workers=args.gateway_workers,
        )
    results["wall_clock_s"] = round(time.monotonic() - t0, 1)
    path = args.output
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = results["started_at"].replace("+00:00", "Z").replace(":", "").replace("-", "")
        path = RESULTS_DIR / f"http-{stamp}.json"
    save(results, path)
    print(format_text(results))
    if args.markdown:
        print()
        print(format_markdown(results))
    print(f"\nresults: {path} (whole run {results['wall_clock_s']:g} s)")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
