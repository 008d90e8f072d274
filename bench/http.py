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

This file holds the servers (the no-op app: serve_noop, which the run starts as `python -m bench.http
--serve-noop PORT`), the statements per gateway request, the whole run (run, ratios, bounding_notes)
and the command line. The other parts are sibling modules:

- bench/http_plans.py: the scenarios (Scenario, SCENARIOS, check_body) and the requests and
  statements each target sends (Plan, build_plans);
- bench/http_clients.py: the client connections (RawHttp, HttpxHttp, direct_call);
- bench/http_workers.py: the client processes that run them (WorkerSpec, WorkerSlice, Workers);
- bench/http_cell.py: measuring one cell (Cell, cpu_marks);
- bench/http_report.py: the output (format_text, format_markdown).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import wrk as _wrk
from bench.common import HOST, RESULTS_DIR, gateway
from bench.common import log as _log
from bench.common import machine_info as _machine_info
from bench.common import ppid as _ppid
from bench.common import save as _save
from bench.common import server_info as _server_info
from bench.http_cell import Cell, cpu_marks
from bench.http_plans import SCENARIOS, Plan, build_plans, check_body
from bench.http_report import format_markdown, format_text
from bench.http_workers import Workers, WorkerSlice, WorkerSpec
from waybill import process


def save(results: dict, path: Path | None = None) -> Path:
    return _save(results, "http", path)


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
        marks = cpu_marks({"gateway": gw.pid, "noop": noop.pid}, postmaster)
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
