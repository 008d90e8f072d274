"""Measuring around a phase of the lifecycle bench: `run_slice` runs `clients` clients for a stretch
(threads of this process, or spread over worker processes) while sampling what their backends wait
on, WAL written and CPU on the machine; `summarise` turns one phase's slices into its figures.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.common import cluster_cpu, machine_busy_s, ms, percentile, ppid
from bench.lifecycle_clients import APP_NAME, INSERT, LOOKUP, TRANSITIONS, ClientResult, run_clients
from bench.lifecycle_world import World


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
