"""The HTTP benchmark's Python client processes (--http-client raw or httpx, and always the direct
target): `procs` spawned processes, alive for the whole run, each running its share of the clients
as asyncio tasks (uvloop) and answering one WorkerSlice per slice.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import random
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.http_clients import HttpxHttp, RawHttp, direct_call
from bench.http_plans import Plan, check_body

APP_NAME = "waybill-bench-http"


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
