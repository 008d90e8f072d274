"""Lifecycle throughput: N clients drive whole order lifecycles through the core.* functions.

Each client is one connection in autocommit mode looping over full lifecycles

    create_order -> capture_payment -> confirm_order -> offer_assignment -> accept_assignment
    -> advance_assignment PICKED_UP -> IN_TRANSIT -> DELIVERED

each transition its own transaction, as the API front runs them (plus one read of the order's payment
id between create and capture, timed but not counted as a transition). In the same run, with the same
client count and duration, a baseline phase commits bare single-row INSERTs into `bench_baseline`: the
price of one durable commit on this machine, which every transition pays too. transitions/s divided by
inserts/s says how much a transition costs beyond its commit.

After every phase the run checks itself, so it cannot silently measure failures: errors per kind
(none expected), DELIVERED orders = completed lifecycles, every ledger transaction sums to zero, one
CAPTURE posting per captured payment, baseline rows = counted inserts.

    python -m bench.lifecycle                      # throw-away cluster, 1/8/32 clients, ~2 minutes
    WAYBILL_BENCH_DATABASE_URL=URL python -m bench.lifecycle   # an existing, migrated database
                                       # (WAYBILL_BENCH_PGBENCH_URL: pgbench's database there)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
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
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    backend_cpu_s,
    cluster_cpu,
    fmt,
    log,
    machine_busy_s,
    machine_info,
    md,
    ms,
    percentile,
    ppid,
    save,
    server_info,
    table,
)
from bench.common import log as print_log
from waybill.errors import from_psycopg

PGBENCH_DEFAULT = Path("/usr/lib/postgresql/15/bin/pgbench")
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


# -- the world the orders live in -----------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Parties the clients draw from: shared by all clients, as on a real marketplace."""

    tag: str
    customers: list[int]
    sellers: list[int]
    zips: list[str]
    agents_by_zip: dict[str, list[int]]
    description: str


def build_world(
    url: str,
    *,
    zips: int = 50,
    agents: int = 100,
    zips_per_agent: int = 3,
    customers: int = 2000,
    sellers: int = 20,
) -> World:
    """Customers, sellers (fees 5-15 %) and agents, each agent serving `zips_per_agent` neighbouring
    zip codes, so every zip code has agents * zips_per_agent / zips of them."""
    if agents < zips:
        raise ValueError("need at least one agent per zip code")
    tag = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
    with psycopg.connect(url) as conn:  # one transaction
        seller_ids = [
            r[0]
            for r in conn.execute(
                "insert into core.sellers (name, fee_bps) "
                "select 'Bench seller ' || %s || '-' || g, 500 + mod(g, 11) * 100 "
                "from generate_series(1, %s) g returning id",
                [tag, sellers],
            )
        ]
        customer_ids = [
            r[0]
            for r in conn.execute(
                "insert into core.customers (name, email) "
                "select 'Bench customer ' || g, 'bench-' || %s || '-' || g || '@example.test' "
                "from generate_series(1, %s) g returning id",
                [tag, customers],
            )
        ]
        rows = conn.execute(
            "insert into core.delivery_agents (name, serviceable_zip_codes) "
            "select 'Bench agent ' || %(tag)s || '-' || g, "
            "       array(select (40000 + mod(g + k, %(zips)s))::text "
            "             from generate_series(0, %(per)s - 1) k) "
            "from generate_series(0, %(agents)s - 1) g returning id, serviceable_zip_codes",
            {"tag": tag, "zips": zips, "per": zips_per_agent, "agents": agents},
        ).fetchall()
    zip_codes = [str(40000 + i) for i in range(zips)]
    by_zip: dict[str, list[int]] = {z: [] for z in zip_codes}
    for agent_id, served in rows:
        for z in served:
            by_zip[z].append(agent_id)
    description = (
        f"{zips} zip codes; {agents} agents, each serving {zips_per_agent} neighbouring zip codes "
        f"({agents * zips_per_agent // zips} agents per zip); {customers} customers; {sellers} sellers; "
        "every client draws each order's customer, seller and zip uniformly, and a random agent of "
        "that zip accepts it (all clients share the same parties)"
    )
    return World(tag, customer_ids, seller_ids, zip_codes, by_zip, description)


# -- one client -----------------------------------------------------------------------------------


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


def _process_entry(
    url: str,
    phase: str,
    world: World | None,
    client_ids: list[int],
    seconds: float,
    seed: int,
    barrier: Any,
    queue: Any,
) -> None:
    try:
        queue.put(run_clients(url, phase, world, client_ids, seconds, seed, cross_barrier=barrier))
    except BaseException as exc:
        barrier.abort()
        queue.put(RuntimeError(f"bench worker failed: {exc!r}"))


# -- measuring around a phase ---------------------------------------------------------------------


def _lsn(conn: psycopg.Connection) -> int:
    hi, lo = conn.execute("select pg_current_wal_lsn()::text").fetchone()[0].split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


class WaitSampler:
    """Samples what the bench's backends are doing every `interval` seconds (pg_stat_activity)."""

    QUERY = """
        select case
                 when state = 'active' then coalesce(wait_event_type || ':' || wait_event, 'CPU')
                 else 'idle: waiting for the client'
               end
          from pg_stat_activity
         where application_name = %s and pid <> pg_backend_pid()
    """

    def __init__(self, url: str, interval: float = 0.05) -> None:
        self.conn = psycopg.connect(url, autocommit=True, application_name=APP_NAME + "-sampler")
        self.interval = interval
        self.counts: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for (what,) in self.conn.execute(self.QUERY, [APP_NAME]).fetchall():
                self.counts[what] += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        self.conn.close()


@dataclass
class Slice:
    """One stretch of one phase: every client's results and what the machine did meanwhile."""

    clients: list[ClientResult]
    elapsed: float
    processes: int
    bench_cpu_s: float
    machine_busy_s: float | None
    server_background_s: float | None
    wal_bytes: int
    waits: Counter
    load: float


def run_slice(
    url: str,
    phase: str,
    world: World | None,
    clients: int,
    seconds: float,
    seed: int,
    procs: int,
) -> Slice:
    """`clients` clients run `phase` ("lifecycle" or "baseline") for `seconds`, sampled meanwhile."""
    sampler = WaitSampler(url)
    marks: dict[str, Any] = {}

    sampler_pid = sampler.conn.info.backend_pid
    postmaster = ppid(sampler_pid)

    def on_start() -> None:
        marks["lsn0"] = _lsn(sampler.conn)
        marks["busy0"] = machine_busy_s()
        marks["t0"] = time.monotonic()
        marks["cluster0"] = cluster_cpu(postmaster, sampler_pid)
        marks["load"] = os.getloadavg()[0]
        sampler.start()

    try:
        if procs <= 1:
            batches = [run_clients(url, phase, world, range(clients), seconds, seed, on_start=on_start)]
        else:
            ctx = mp.get_context("spawn")
            shares = [s for s in (list(range(clients))[i::procs] for i in range(procs)) if s]
            barrier = ctx.Barrier(len(shares) + 1, timeout=120)
            queue = ctx.Queue()
            workers = [
                ctx.Process(
                    target=_process_entry,
                    args=(url, phase, world, share, seconds, seed, barrier, queue),
                    daemon=True,
                )
                for share in shares
            ]
            for w in workers:
                w.start()
            barrier.wait()
            on_start()
            batches = []
            for _ in workers:
                got = queue.get(timeout=seconds + 120)
                if isinstance(got, Exception):
                    raise got
                batches.append(got)
            marks["busy1"], marks["t1"] = machine_busy_s(), time.monotonic()
            for w in workers:
                w.join()
        sampler.stop()
        if "busy1" not in marks:
            marks["busy1"], marks["t1"] = machine_busy_s(), time.monotonic()
        busy1 = marks["busy1"]
        cluster1 = cluster_cpu(postmaster, sampler_pid)
        lsn1 = _lsn(sampler.conn)
    finally:
        sampler.stop()
        sampler.close()
    res = [c for b in batches for c in b.clients]
    start = min(b.start for b in batches)
    elapsed = max([c.stopped for c in res if c.stopped] + [start + 1e-6]) - start
    return Slice(
        clients=res,
        elapsed=elapsed,
        processes=len(batches),
        bench_cpu_s=sum(b.cpu_s for b in batches),
        # Measured over its own window (start to all clients joined), scaled to the clients' window.
        machine_busy_s=(
            None
            if marks.get("busy0") is None or busy1 is None
            else (busy1 - marks["busy0"]) * elapsed / max(marks["t1"] - marks["t0"], 1e-6)
        ),
        # Server processes alive at both ends, but for the clients' own backends (counted apart; an
        # exiting one may still be listed): WAL writer, checkpointer, logger, autovacuum...
        server_background_s=(
            None
            if postmaster is None
            else sum(
                cluster1[p] - c0
                for p, c0 in marks["cluster0"].items()
                if p in cluster1 and p not in {c.backend_pid for c in res}
            )
        ),
        wal_bytes=lsn1 - marks["lsn0"],
        waits=sampler.counts,
        load=marks.get("load", 0.0),
    )


def summarise(phase: str, clients: int, slices: list[Slice]) -> tuple[dict, dict]:
    """One phase's figures over its slices; and the order ids it created/completed, for the checks."""
    res = [c for sl in slices for c in sl.clients]
    elapsed = sum(sl.elapsed for sl in slices)
    kinds = (*TRANSITIONS, LOOKUP) if phase == "lifecycle" else (INSERT,)
    counted = TRANSITIONS if phase == "lifecycle" else (INSERT,)
    merged = {k: sorted(x for c in res for x in c.latencies.get(k, [])) for k in kinds}
    ops = sum(len(merged[k]) for k in counted)
    errors: Counter = Counter()
    waits: Counter = Counter()
    for c in res:
        errors.update(c.errors)
    for sl in slices:
        waits.update(sl.waits)
    backend_cpu = [c.backend_cpu_s for c in res]
    backends_s = None if None in backend_cpu else sum(backend_cpu)  # type: ignore[arg-type]
    busy = [sl.machine_busy_s for sl in slices]
    busy_s = None if None in busy else sum(busy)  # type: ignore[arg-type]
    bench_s = sum(sl.bench_cpu_s for sl in slices)
    bg = [sl.server_background_s for sl in slices]
    bg_s = None if None in bg else sum(bg)  # type: ignore[arg-type]
    others_s = (
        None
        if busy_s is None or backends_s is None or bg_s is None
        else max(0.0, busy_s - bench_s - backends_s - bg_s)
    )

    def pct(x: float | None) -> float | None:
        return None if x is None else round(100 * x / elapsed, 1)

    total_waits = sum(waits.values()) or 1
    summary = {
        "phase": phase,
        "clients": clients,
        "slices": len(slices),
        "processes": slices[0].processes,
        "elapsed_s": round(elapsed, 3),
        "ops": ops,
        "ops_per_s": round(ops / elapsed, 1),
        "latency_ms": {
            k: {
                "count": len(v),
                "mean": ms(sum(v) / len(v)) if v else None,
                "p50": ms(percentile(v, 50)),
                "p95": ms(percentile(v, 95)),
                "p99": ms(percentile(v, 99)),
                "max": ms(v[-1] if v else None),
            }
            for k, v in merged.items()
        },
        "errors": dict(sorted(errors.items())),
        "fatal": [f"client {c.client}: {c.fatal}" for c in res if c.fatal],
        "cpu_pct_of_one_core": {
            "bench_clients": pct(bench_s),
            "server_backends": pct(backends_s),
            "server_background": pct(bg_s),
            "other_processes": pct(others_s),
            "machine_busy": pct(busy_s),
            "machine_capacity": 100 * (os.cpu_count() or 1),
        },
        "backend_cpu_us_per_op": None if backends_s is None or not ops else round(1e6 * backends_s / ops),
        "load_average_at_start": round(slices[0].load, 2),
        "waits": {k: round(v / total_waits, 4) for k, v in waits.most_common()},
        "wal_bytes_per_op": round(sum(sl.wal_bytes for sl in slices) / ops) if ops else None,
    }
    if phase == "lifecycle":
        lifecycles = sum(c.lifecycles for c in res)
        summary.update(
            lifecycles=lifecycles,
            lifecycles_per_s=round(lifecycles / elapsed, 1),
            abandoned_in_flight=sum(c.abandoned for c in res),
        )
    ids = {
        "created": [i for c in res for i in c.created],
        "completed": [i for c in res for i in c.completed],
    }
    return summary, ids


# -- checks ---------------------------------------------------------------------------------------


def _check(ok: bool, detail: str) -> dict:
    return {"ok": bool(ok), "detail": detail}


def check_lifecycle(url: str, summary: dict, ids: dict) -> dict[str, dict]:
    """The phase measured successes: no errors, every completed lifecycle DELIVERED, ledger balanced."""
    created, completed = ids["created"], ids["completed"]
    captures = summary["latency_ms"]["capture"]["count"]
    with psycopg.connect(url, autocommit=True) as conn:
        delivered = conn.execute(
            "select count(*) from core.orders where id = any(%s) and status = 'DELIVERED'", [created]
        ).fetchone()[0]
        delivered_completed = conn.execute(
            "select count(*) from core.orders where id = any(%s) and status = 'DELIVERED'", [completed]
        ).fetchone()[0]
        unbalanced = conn.execute(
            "select count(*) from (select transaction_id from core.ledger_entries "
            "group by transaction_id having sum(amount) <> 0) u"
        ).fetchone()[0]
        postings = conn.execute(
            "select count(*) from core.ledger_transactions lt join core.payments p on p.id = lt.payment_id "
            "where lt.kind = 'CAPTURE' and p.order_id = any(%s)",
            [created],
        ).fetchone()[0]
    n_err = sum(summary["errors"].values()) + len(summary["fatal"])
    lifecycles = summary["lifecycles"]
    return {
        "errors": _check(n_err == 0, f"{n_err} errors {summary['errors'] or ''}".strip()),
        "delivered": _check(
            delivered == lifecycles == delivered_completed,
            f"{delivered} DELIVERED orders, {lifecycles} completed lifecycles",
        ),
        "ledger_balanced": _check(unbalanced == 0, f"{unbalanced} ledger transactions not summing to zero"),
        "capture_postings": _check(
            postings == captures, f"{postings} CAPTURE postings for {captures} captures"
        ),
    }


def check_baseline(url: str, summary: dict) -> dict[str, dict]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("select count(*) from public.bench_baseline").fetchone()[0]
    n_err = sum(summary["errors"].values()) + len(summary["fatal"])
    return {
        "baseline_errors": _check(n_err == 0, f"{n_err} errors {summary['errors'] or ''}".strip()),
        "baseline_rows": _check(rows == summary["ops"], f"{rows} rows for {summary['ops']} inserts"),
    }


# -- pgbench reference ----------------------------------------------------------------------------


def _pgbench_runs(pgbench: Path, url: str, levels: Sequence[int], seconds: float, script: list[str]) -> list:
    runs = []
    for n in levels:
        cmd = [str(pgbench), *script, "-c", str(n), "-j", str(min(n, os.cpu_count() or 1))]
        cmd += ["-T", str(max(1, round(seconds))), url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 300)
        tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
        lat = re.search(r"latency average = ([0-9.]+) ms", out.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
        runs.append(
            {
                "clients": n,
                "tps": float(tps.group(1)) if tps else None,
                "latency_avg_ms": float(lat.group(1)) if lat else None,
                "failed": int(failed.group(1)) if failed else None,
                "error": None if out.returncode == 0 else out.stderr.strip()[-500:],
            }
        )
    return runs


def run_pgbench(
    url: str, levels: Sequence[int], seconds: float, mode: str, scale: int, pgbench: Path
) -> dict:
    """pgbench's built-in script at the same client counts: a well-known yardstick on this machine."""
    init = subprocess.run(
        [str(pgbench), "-i", "-q", "-I", "dtGvp", "-s", str(scale), url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if init.returncode != 0:
        return {"mode": mode, "error": f"pgbench -i failed: {init.stderr.strip()[-500:]}"}
    runs = _pgbench_runs(pgbench, url, levels, seconds, ["-b", mode])
    return {"mode": mode, "scale": scale, "seconds": seconds, "runs": runs}


def run_pgbench_insert(url: str, levels: Sequence[int], seconds: float, pgbench: Path) -> dict:
    """The baseline's INSERT driven by pgbench's C clients (prepared, as psycopg prepares repeated
    statements): how much of the Python baseline's rate the Python client side costs."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write("insert into public.bench_baseline (payload) values (repeat('x', 64));\n")
        script = f.name
    try:
        runs = _pgbench_runs(pgbench, url, levels, seconds, ["-n", "-M", "prepared", "-f", script])
    finally:
        os.unlink(script)
    return {"mode": "bare insert (custom script)", "seconds": seconds, "runs": runs}


# -- the whole run --------------------------------------------------------------------------------


def _checkpoint(url: str) -> None:
    """Start each phase from a clean checkpoint (fewer full-page images mid-phase); best effort."""
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
        conn.execute("checkpoint")


def run(
    url: str,
    *,
    levels: Sequence[int] = (1, 8, 32),
    seconds: float = 10.0,
    slices: int = 5,
    procs: int = 1,
    seed: int = 1,
    warmup: float = 1.0,
    world_size: dict | None = None,
    pgbench_url: str | None = None,
    pgbench_insert: bool = False,
    pgbench_seconds: float = 5.0,
    pgbench_mode: str = "tpcb-like",
    pgbench_scale: int | None = None,
    pgbench_bin: Path = PGBENCH_DEFAULT,
    log: Callable[[str], None] = print_log,
) -> dict:
    """The benchmark against a migrated database at `url`; returns the results (see README)."""
    started = dt.datetime.now(dt.UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BASELINE_DDL)
    world = build_world(url, **(world_size or {}))
    results: dict[str, Any] = {
        "benchmark": "lifecycle",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "server": server_info(url),
        "config": {
            "levels": list(levels),
            "seconds_per_phase": seconds,
            "slices_per_phase": slices,
            "client_processes": procs,
            "seed": seed,
            "warmup_s": warmup,
            "clients_are": "threads in one process"
            if procs <= 1
            else f"threads spread over {procs} processes",
        },
        "world": world.description,
        "levels": [],
    }
    ok = True
    if warmup > 0:
        log(f"warm-up: {warmup:g} s, 2 clients")
        summary, ids = summarise("lifecycle", 2, [run_slice(url, "lifecycle", world, 2, warmup, seed - 1, 1)])
        checks = check_lifecycle(url, summary, ids)
        results["warmup"] = {"lifecycles": summary["lifecycles"], "checks": checks}
        ok &= all(c["ok"] for c in checks.values())
    piece = seconds / slices
    for n in levels:
        _checkpoint(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("truncate public.bench_baseline")
        log(f"{n} client(s): {slices} x ({piece:g} s of lifecycles, then {piece:g} s of baseline inserts)")
        life_slices, base_slices = [], []
        for k in range(slices):
            life_slices.append(run_slice(url, "lifecycle", world, n, piece, seed + 1000 * n + k, procs))
            base_slices.append(run_slice(url, "baseline", None, n, piece, seed + 1000 * n + k, procs))
        life, ids = summarise("lifecycle", n, life_slices)
        base, _ = summarise("baseline", n, base_slices)
        checks = check_lifecycle(url, life, ids)
        checks.update(check_baseline(url, base))
        ok &= all(c["ok"] for c in checks.values())
        results["levels"].append(
            {
                "clients": n,
                "lifecycle": life,
                "baseline": base,
                "ratio_transitions_to_inserts": (
                    round(life["ops_per_s"] / base["ops_per_s"], 3) if base["ops_per_s"] else None
                ),
                "checks": checks,
            }
        )
    have_pgbench = Path(pgbench_bin).exists() or shutil.which(str(pgbench_bin)) is not None
    if pgbench_insert and have_pgbench:
        log(f"pgbench bare inserts into bench_baseline at {', '.join(map(str, levels))} clients")
        results["pgbench_insert"] = run_pgbench_insert(url, levels, pgbench_seconds, pgbench_bin)
    if pgbench_url and have_pgbench:
        scale = pgbench_scale or max(levels)
        log(f"pgbench {pgbench_mode} (scale {scale}) at {', '.join(map(str, levels))} clients")
        results["pgbench"] = run_pgbench(
            pgbench_url, levels, pgbench_seconds, pgbench_mode, scale, pgbench_bin
        )
    elif (pgbench_url or pgbench_insert) and not have_pgbench:
        results["pgbench"] = {"mode": pgbench_mode, "error": f"{pgbench_bin} not found"}
    results["notes"] = bounding_notes(results)
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["ok"] = bool(ok)
    return results


def bounding_notes(results: dict) -> list[str]:
    """Plain statements about what limited each level, from the CPU and wait-event figures."""
    notes = []
    procs = results["config"]["client_processes"]
    for lvl in results["levels"]:
        life = lvl["lifecycle"]
        cpu = life["cpu_pct_of_one_core"]
        n = lvl["clients"]
        busy, cap, other = cpu["machine_busy"], cpu["machine_capacity"], cpu["other_processes"]
        if busy is not None and busy >= 0.9 * cap:
            notes.append(
                f"{n} clients: the machine was CPU-saturated ({busy:.0f} of {cap} % busy: Python clients "
                f"{cpu['bench_clients']:.0f} %, their server backends {fmt(cpu['server_backends'], 0)} %, "
                f"PostgreSQL background {fmt(cpu['server_background'], 0)} %, "
                f"other processes {fmt(other, 0)} %)."
            )
            if other is not None and other >= 0.25 * cap:
                notes.append(
                    f"{n} clients: other processes (other users of this shared machine) took {other:.0f} % "
                    "of one core: the figures at this level are lower than on a quiet machine."
                )
        if procs <= 1 and cpu["bench_clients"] >= 80:
            notes.append(
                f"{n} clients: the Python client process used {cpu['bench_clients']:.0f} % of one core "
                "(one GIL): the client side is a bottleneck at this level; compare with --procs 2."
            )
        idle = life["waits"].get("idle: waiting for the client", 0.0)
        if idle >= 0.3:
            notes.append(
                f"{n} clients: the server backends spent {idle:.0%} of samples idle, waiting for the "
                "client's next statement (round trips, client CPU, or clients waiting for a CPU)."
            )
    return notes


# -- output ---------------------------------------------------------------------------------------


def _top_waits(waits: dict[str, float], k: int = 4) -> str:
    return ", ".join(f"{w} {s:.0%}" for w, s in list(waits.items())[:k]) or "-"


MAIN_HEAD = ["clients", "transitions/s", "lifecycles/s", "baseline inserts/s", "ratio", "machine busy %"]


def _main_rows(results: dict) -> list[list[str]]:
    rows = []
    for lvl in results["levels"]:
        life, base = lvl["lifecycle"], lvl["baseline"]
        cpu = life["cpu_pct_of_one_core"]
        rows.append(
            [
                str(lvl["clients"]),
                fmt(life["ops_per_s"]),
                fmt(life["lifecycles_per_s"]),
                fmt(base["ops_per_s"]),
                fmt(lvl["ratio_transitions_to_inserts"], 3),
                f"{fmt(cpu['machine_busy'], 0)} of {cpu['machine_capacity']}",
            ]
        )
    return rows


def _latency_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    head = ["ms, p50 / p95 / p99"] + [f"{lvl['clients']} client(s)" for lvl in results["levels"]]
    rows = []
    for kind in (*TRANSITIONS, LOOKUP, INSERT):
        row = {LOOKUP: f"({LOOKUP}, a read)", INSERT: "baseline insert"}.get(kind, kind)
        cells = [row]
        for lvl in results["levels"]:
            q = lvl["baseline" if kind == INSERT else "lifecycle"]["latency_ms"][kind]
            cells.append(f"{fmt(q['p50'], 2)} / {fmt(q['p95'], 2)} / {fmt(q['p99'], 2)}")
        rows.append(cells)
    return head, rows


CPU_HEAD = [
    "clients",
    "phase",
    "bench %",
    "backends %",
    "pg bg %",
    "others %",
    "backend CPU us/op",
    "WAL B/op",
    "backends were (pg_stat_activity samples)",
]


def _cpu_rows(results: dict) -> list[list[str]]:
    rows = []
    for lvl in results["levels"]:
        for phase in ("lifecycle", "baseline"):
            ph = lvl[phase]
            cpu = ph["cpu_pct_of_one_core"]
            rows.append(
                [
                    str(lvl["clients"]),
                    phase,
                    fmt(cpu["bench_clients"], 0),
                    fmt(cpu["server_backends"], 0),
                    fmt(cpu["server_background"], 0),
                    fmt(cpu["other_processes"], 0),
                    fmt(ph["backend_cpu_us_per_op"], 0),
                    fmt(ph["wal_bytes_per_op"], 0),
                    _top_waits(ph["waits"], 3),
                ]
            )
    return rows


def _pgbench_head(results: dict) -> list[str]:
    mode = (results.get("pgbench") or {}).get("mode", "builtin")
    return [
        "clients",
        f"pgbench {mode} tps",
        "latency avg ms",
        "pgbench bare inserts/s",
        "bench baseline inserts/s (Python)",
    ]


def _pgbench_rows(results: dict) -> list[list[str]]:
    tpcb = {r["clients"]: r for r in (results.get("pgbench") or {}).get("runs", [])}
    ins = {r["clients"]: r for r in (results.get("pgbench_insert") or {}).get("runs", [])}
    rows = []
    for lvl in results["levels"]:
        n = lvl["clients"]
        t, i = tpcb.get(n, {}), ins.get(n, {})
        rows.append(
            [
                str(n),
                fmt(t.get("tps")),
                fmt(t.get("latency_avg_ms"), 3),
                fmt(i.get("tps")),
                fmt(lvl["baseline"]["ops_per_s"]),
            ]
        )
    return rows


def _pgbench_title(results: dict) -> str | None:
    pg, ins = results.get("pgbench") or {}, results.get("pgbench_insert") or {}
    if not pg.get("runs") and not ins.get("runs"):
        return pg.get("error")
    parts = []
    if pg.get("runs"):
        parts.append(f"pgbench -b {pg['mode']} at scale {pg['scale']}")
    if ins.get("runs"):
        parts.append("the baseline INSERT from pgbench's C clients (-M prepared)")
    secs = (pg or ins).get("seconds")
    return f"reference ({secs:g} s each): " + "; ".join(parts)


def format_text(results: dict) -> str:
    m, s, c = results["machine"], results["server"], results["config"]
    out = [
        f"Waybill lifecycle throughput, {results['started_at']}",
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), load average at start {m['load_average_at_start']}",
        f"server: PostgreSQL {s.get('server_version')}, synchronous_commit={s.get('synchronous_commit')}, "
        f"fsync={s.get('fsync')}, wal_sync_method={s.get('wal_sync_method')}",
        f"clients: {c['clients_are']}, one connection each; per client count "
        f"{c['seconds_per_phase']:g} s of lifecycles and {c['seconds_per_phase']:g} s of baseline, "
        f"alternating in {c['slices_per_phase']} slices",
        f"world: {results['world']}",
        "",
        "throughput (ratio = transitions/s / baseline inserts/s, same client count and duration;",
        "machine busy = all processes on the machine during the lifecycle phase, % of one core)",
        table(MAIN_HEAD, _main_rows(results)),
        "",
        "latency per transition (each one autocommit transaction)",
        table(*_latency_rows(results)),
        "",
        "where the time went (CPU in % of one core: bench = the Python clients, backends = their server",
        "processes, pg bg = the server's other processes (WAL writer, logger, checkpointer...), others =",
        "the rest of the machine: other users' processes)",
        table(CPU_HEAD, _cpu_rows(results)),
    ]
    title = _pgbench_title(results)
    if title:
        out += ["", title]
        if results.get("pgbench", {}).get("runs") or results.get("pgbench_insert", {}).get("runs"):
            out.append(table(_pgbench_head(results), _pgbench_rows(results)))
    out += ["", "checks"]
    groups = ([("warm-up", results["warmup"]["checks"])] if "warmup" in results else []) + [
        (f"{lvl['clients']} clients", lvl["checks"]) for lvl in results["levels"]
    ]
    for name, checks in groups:
        for key, chk in checks.items():
            out.append(f"  {'ok  ' if chk['ok'] else 'FAIL'} {name}: {key}: {chk['detail']}")
    if results["notes"]:
        out += ["", "notes"]
        out += [f"  - {n}" for n in results["notes"]]
    out.append("")
    out.append(
        "result: " + ("all checks passed" if results["ok"] else "CHECKS FAILED: the figures are not valid")
    )
    return "\n".join(out)


def format_markdown(results: dict) -> str:
    out = [
        md(MAIN_HEAD, _main_rows(results)),
        "",
        md(*_latency_rows(results)),
        "",
        md(CPU_HEAD, _cpu_rows(results)),
    ]
    if results.get("pgbench", {}).get("runs") or results.get("pgbench_insert", {}).get("runs"):
        out += ["", _pgbench_title(results) or "", "", md(_pgbench_head(results), _pgbench_rows(results))]
    return "\n".join(out)


# -- command line ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _databases(args: argparse.Namespace) -> Iterator[tuple[str, str | None]]:
    """(bench database URL, pgbench database URL or None)."""
    # URLs by environment, never argv (a password in one is readable by any local user).
    if url := os.environ.get("WAYBILL_BENCH_DATABASE_URL"):
        yield url, os.environ.get("WAYBILL_BENCH_PGBENCH_URL")
        return
    from waybill import testing

    with testing.test_cluster() as cluster:
        log(f"throw-away cluster in {cluster.data_dir}; migrating the template")
        testing.build_template(cluster)
        cluster.drop_database("bench")
        cluster.create_database("bench", template=testing.TEMPLATE_DB)
        pgbench_url = None
        if not args.no_pgbench:
            cluster.drop_database("bench_pgbench")
            cluster.create_database("bench_pgbench")
            pgbench_url = cluster.url("bench_pgbench")
        yield cluster.url("bench"), pgbench_url


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="1,8,32", help="client counts, comma-separated (default 1,8,32)")
    p.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="seconds of lifecycles, and as many of baseline inserts, per client count (default 10)",
    )
    p.add_argument(
        "--slices",
        type=int,
        default=5,
        help="alternate lifecycles and baseline in this many slices per client count, so both see the "
        "same background load (default 5: 2 s + 2 s, five times)",
    )
    p.add_argument(
        "--procs", type=int, default=1, help="client processes (default 1: all clients are threads)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of unreported warm-up (default 1)")
    p.add_argument("--zips", type=int, default=50)
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--no-pgbench", action="store_true", help="skip the pgbench reference runs")
    p.add_argument("--pgbench-mode", default="tpcb-like", help="pgbench built-in script (default tpcb-like)")
    p.add_argument("--pgbench-seconds", type=float, default=5.0, help="per client count (default 5)")
    p.add_argument("--pgbench-scale", type=int, help="default: the largest client count")
    p.add_argument("--pgbench-bin", type=Path, default=PGBENCH_DEFAULT)
    p.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    p.add_argument(
        "--output", type=Path, help="results JSON path (default bench/results/lifecycle-<time>.json)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    with _databases(args) as (url, pgbench_url):
        results = run(
            url,
            levels=levels,
            seconds=args.seconds,
            slices=args.slices,
            procs=args.procs,
            seed=args.seed,
            warmup=args.warmup,
            world_size={"zips": args.zips, "agents": args.agents},
            pgbench_url=None if args.no_pgbench else pgbench_url,
            pgbench_insert=not args.no_pgbench,
            pgbench_seconds=args.pgbench_seconds,
            pgbench_mode=args.pgbench_mode,
            pgbench_scale=args.pgbench_scale,
            pgbench_bin=args.pgbench_bin,
        )
    path = save(results, "lifecycle", args.output)
    print(format_text(results))
    if args.markdown:
        print()
        print(format_markdown(results))
    print(f"\nresults: {path}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
