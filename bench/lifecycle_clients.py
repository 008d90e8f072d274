"""The lifecycle bench's clients: the statements they run (`SQL`: one `core.*` call per transition,
the payment lookup, the baseline INSERT), one client's loop over whole lifecycles or bare INSERTs,
and `run_clients`, one thread and one autocommit connection per client in this process.
"""

from __future__ import annotations

import random
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.common import backend_cpu_s
from bench.lifecycle_world import World
from waybill.errors import from_psycopg

APP_NAME = "waybill-bench"
TRANSITIONS = ("create", "capture", "confirm", "offer", "accept", "pick_up", "in_transit", "deliver")
# create_order returns the order; capture_payment needs the payment's id: one read in between.
LOOKUP = "payment_lookup"
INSERT = "insert"

SQL = {
    # FROM-clause calls: `select (f()).col` would run the function once per column.
    "create": "select id from core.create_order(%s, %s, %s, %s, 'EUR')",
    LOOKUP: "select id from core.payments where order_id = %s",
    "capture": "select status from core.capture_payment(%s, %s)",
    "confirm": "select status from core.confirm_order(%s)",
    "offer": "select id from core.offer_assignment(%s)",
    "accept": "select status from core.accept_assignment(%s, %s)",
    "pick_up": "select status from core.advance_assignment(%s, 'PICKED_UP', %s)",
    "in_transit": "select status from core.advance_assignment(%s, 'IN_TRANSIT', %s)",
    "deliver": "select status from core.advance_assignment(%s, 'DELIVERED', %s)",
    INSERT: "insert into public.bench_baseline (payload) values (%s)",
}
# A logged table: a transition commits durably (WAL flush), so the like-for-like floor does too.
BASELINE_DDL = (
    "create table if not exists public.bench_baseline (id bigint generated always as identity, payload text)"
)


@dataclass
class ClientResult:
    client: int
    backend_pid: int | None = None
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)  # "kind:CODE" -> count
    lifecycles: int = 0
    abandoned: int = 0
    created: list[int] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    stopped: float = 0.0
    backend_cpu_s: float | None = None
    fatal: str | None = None


class _Deadline(Exception):
    """The phase is over: stop before starting another statement."""


class _Failed(Exception):
    """A statement failed (counted); the lifecycle is abandoned."""


class _Broken(Exception):
    """The connection is gone; the client stops."""


class _Stepper:
    def __init__(self, conn: psycopg.Connection, res: ClientResult, deadline: float) -> None:
        self.conn, self.res, self.deadline = conn, res, deadline

    def step(self, kind: str, params: Sequence[Any]) -> tuple | None:
        if time.monotonic() >= self.deadline:
            raise _Deadline
        t0 = time.perf_counter()
        try:
            cur = self.conn.execute(SQL[kind], params)
            row = cur.fetchone() if cur.description else None
        except psycopg.Error as exc:
            self.res.errors[f"{kind}:{from_psycopg(exc).code}"] += 1
            if self.conn.broken:
                raise _Broken(str(exc)) from exc
            raise _Failed from exc
        self.res.latencies.setdefault(kind, []).append(time.perf_counter() - t0)
        return row


def _lifecycle_loop(
    conn: psycopg.Connection, world: World, rng: random.Random, deadline: float, res: ClientResult
) -> None:
    s = _Stepper(conn, res, deadline)
    while True:
        zip_code = rng.choice(world.zips)
        agent = rng.choice(world.agents_by_zip[zip_code])
        order_id = None
        try:
            row = s.step(
                "create",
                [rng.choice(world.customers), rng.choice(world.sellers), zip_code, rng.randint(500, 50_000)],
            )
            order_id = row[0]
            res.created.append(order_id)
            (payment_id,) = s.step(LOOKUP, [order_id])
            s.step("capture", [payment_id, f"bench-{world.tag}-{order_id}"])
            s.step("confirm", [order_id])
            (assignment_id,) = s.step("offer", [order_id])
            s.step("accept", [assignment_id, agent])
            for kind in ("pick_up", "in_transit", "deliver"):
                s.step(kind, [assignment_id, agent])
        except _Deadline:
            if order_id is not None:
                res.abandoned += 1  # in flight when the phase ended; left where it stood
            return
        except _Failed:
            continue
        res.lifecycles += 1
        res.completed.append(order_id)


def _baseline_loop(conn: psycopg.Connection, rng: random.Random, deadline: float, res: ClientResult) -> None:
    s = _Stepper(conn, res, deadline)
    payload = rng.randbytes(32).hex()  # 64 characters, about the size of a small business row
    while True:
        try:
            s.step(INSERT, [payload])
        except _Deadline:
            return
        except _Failed:
            continue


@dataclass
class Batch:
    """The clients of one process, with the process's CPU time while they ran."""

    clients: list[ClientResult]
    start: float
    cpu_s: float


def run_clients(
    url: str,
    phase: str,
    world: World | None,
    client_ids: Sequence[int],
    seconds: float,
    seed: int,
    *,
    cross_barrier: Any = None,
    on_start: Callable[[], None] | None = None,
) -> Batch:
    """One thread per client, each with its own connection; all start together (after every client
    of every process has connected) and stop at the same deadline."""
    results = [ClientResult(client=i) for i in client_ids]
    connected = threading.Barrier(len(results) + 1)
    go = threading.Event()
    clock: dict[str, float] = {}

    def client(res: ClientResult) -> None:
        conn = None
        try:
            conn = psycopg.connect(url, autocommit=True, application_name=APP_NAME)
            res.backend_pid = conn.info.backend_pid
        except psycopg.Error as exc:
            res.fatal = f"connect: {exc}"
        connected.wait()
        go.wait()
        if conn is None:
            return
        try:
            cpu0 = backend_cpu_s(res.backend_pid)
            rng = random.Random(seed * 100_003 + res.client)
            if phase == "lifecycle":
                assert world is not None
                _lifecycle_loop(conn, world, rng, clock["deadline"], res)
            else:
                _baseline_loop(conn, rng, clock["deadline"], res)
            res.stopped = time.monotonic()
            cpu1 = backend_cpu_s(res.backend_pid)
            if cpu0 is not None and cpu1 is not None:
                res.backend_cpu_s = cpu1 - cpu0
        except _Broken as exc:
            res.stopped = time.monotonic()
            res.fatal = f"connection lost: {exc}"
        except Exception as exc:  # noqa: BLE001 - reported in the results, never swallowed
            res.stopped = time.monotonic()
            res.fatal = repr(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(r,), daemon=True) for r in results]
    for t in threads:
        t.start()
    connected.wait()
    if cross_barrier is not None:
        cross_barrier.wait()
    if on_start is not None:
        on_start()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    clock["deadline"] = start + seconds
    go.set()
    for t in threads:
        t.join()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return Batch(results, start, cpu)
