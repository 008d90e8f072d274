"""The rollup triggers' extra backend CPU per transition: on one connection, batches with the
triggers enabled and disabled alternating (`trigger_cpu`), before and after one migration
(`trigger_ab`, --ab), and in the lifecycle bench's clients (`trigger_lifecycle`); the backend's CPU
from /proc (`backend_cpu_s`) and the switch (`rollup_triggers`).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import psycopg

from bench.metrics_data import log

CLK_TCK = os.sysconf("SC_CLK_TCK")
TRIGGERS = ("_500_metrics_rollup_offer", "_500_metrics_rollup_transition")


# -- trigger CPU ------------------------------------------------------------------------------------
def backend_cpu_s(pid: int) -> float:
    """The backend's CPU time: /proc/<pid>/schedstat's run time (nanoseconds; utime + stime in
    /proc/<pid>/stat count whole clock ticks, 10 ms, against a batch of ~0.6 s), stat where absent."""
    sched = Path(f"/proc/{pid}/schedstat")
    if sched.exists():
        return int(sched.read_text().split()[0]) / 1e9
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rollup_triggers(conn: psycopg.Connection, on: bool) -> None:
    """Enable or disable the two rollup triggers (the parts that price them; always re-enabled after)."""
    verb = "enable" if on else "disable"
    conn.execute(";".join(f"alter table core.shipping_assignments {verb} trigger {t}" for t in TRIGGERS))


def trigger_cpu(url: str, transitions: int, batches: int) -> dict:
    """CPU of the backend per transition (accept, pick up, in transit, deliver) with and without
    the rollup triggers, alternating batches so both see the same background load."""
    per_batch = max(4, transitions // (2 * batches) // 4 * 4)
    out: dict = {"with": [], "without": []}
    with psycopg.connect(url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        zip_agent = conn.execute(
            "select d.id, d.serviceable_zip_codes[1] from core.delivery_agents d where d.status = 'ACTIVE' order by d.id limit 1"
        ).fetchone()
        agent, zip_code = zip_agent
        customer = conn.execute("select id from core.customers order by id limit 1").fetchone()[0]
        seller = conn.execute("select id from core.sellers order by id limit 1").fetchone()[0]

        def offers(n: int) -> list[int]:
            ids = []
            for _ in range(n):
                o = conn.execute(
                    "select id from core.create_order(%s, %s, %s, 1000, 'EUR')", [customer, seller, zip_code]
                ).fetchone()[0]
                p = conn.execute("select id from core.payments where order_id = %s", [o]).fetchone()[0]
                conn.execute("select core.capture_payment(%s, %s)", [p, f"bench_{o}"])
                conn.execute("select core.confirm_order(%s)", [o])
                ids.append(conn.execute("select id from core.offer_assignment(%s)", [o]).fetchone()[0])
            return ids

        for b in range(2 * batches):
            mode = "with" if b % 2 == 0 else "without"
            todo = offers(per_batch // 4)
            rollup_triggers(conn, mode == "with")
            c0, t0 = backend_cpu_s(pid), time.perf_counter()
            for a in todo:
                conn.execute("select core.accept_assignment(%s, %s)", [a, agent])
                for s in ("PICKED_UP", "IN_TRANSIT", "DELIVERED"):
                    conn.execute("select core.advance_assignment(%s, %s, %s)", [a, s, agent])
            cpu, wall = backend_cpu_s(pid) - c0, time.perf_counter() - t0
            out[mode].append({"transitions": 4 * len(todo), "cpu_us": cpu / (4 * len(todo)) * 1e6,
                              "wall_us": wall / (4 * len(todo)) * 1e6})  # fmt: skip
        rollup_triggers(conn, True)
    w = statistics.median(x["cpu_us"] for x in out["with"])
    wo = statistics.median(x["cpu_us"] for x in out["without"])
    out["summary"] = {"cpu_us_with": w, "cpu_us_without": wo, "extra_pct": (w - wo) / wo * 100 if wo else None,
                      "wall_us_with": statistics.median(x["wall_us"] for x in out["with"]),
                      "wall_us_without": statistics.median(x["wall_us"] for x in out["without"])}  # fmt: skip
    extra = out["summary"]["extra_pct"]
    log(f"rollup triggers: backend CPU per transition {w:.0f} µs with, {wo:.0f} µs without "
        f"({'n/a' if extra is None else f'{extra:+.1f} %'})")  # fmt: skip
    return out


def trigger_ab(url: str, migration: str, runs: int, transitions: int, batches: int) -> dict:
    """trigger_cpu with `migration` rolled back (before) and applied again (after), interleaved
    before, after, before, after ... on the same data; the load average beside each measurement."""
    from waybill import migrate

    out: dict = {"migration": migration, "runs": []}
    for _ in range(runs):
        pair = {}
        for mode in ("before", "after"):
            migrate.apply_step(url, migration, rollback=mode == "before")
            load = os.getloadavg()[0]
            log(f"{migration} {'rolled back' if mode == 'before' else 'applied'} (load {load:.1f})")
            pair[mode] = trigger_cpu(url, transitions, batches)["summary"] | {"load_before": load,
                                                                              "load_after": os.getloadavg()[0]}  # fmt: skip
        out["runs"].append(pair)
    return out


def trigger_lifecycle(url: str, levels: list[int], slices: int, seconds: float) -> dict:
    """The rollup triggers' cost where issue 11 §6 asks for it, in the lifecycle bench: its clients
    (bench/lifecycle_clients.py: orders, payments and assignments of a small world of agents and zip codes
    added to this database, each transition its own transaction) run with the triggers enabled and
    disabled, in `slices` interleaved slices of `seconds` each per mode at each client count (the
    order of the two modes alternating slice by slice). Backend CPU and throughput per transition,
    every lifecycle transition counted (not only the assignments')."""
    from bench.lifecycle_slices import run_slice, summarise
    from bench.lifecycle_world import build_world

    def enable(on: bool) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            rollup_triggers(conn, on)

    world = build_world(url)
    out: dict = {"slices": slices, "seconds_per_slice": seconds, "levels": []}
    try:
        for n in levels:
            parts: dict[bool, list] = {True: [], False: []}
            for k in range(slices):
                for on in (True, False) if k % 2 == 0 else (False, True):
                    enable(on)
                    parts[on].append(run_slice(url, "lifecycle", world, n, seconds, 1000 * n + k, 1))
            level: dict = {"clients": n}
            for on, key in ((True, "with"), (False, "without")):
                summary, _ = summarise("lifecycle", n, parts[on])
                level[key] = {"cpu_us": summary["backend_cpu_us_per_op"], "per_s": summary["ops_per_s"],
                              "errors": summary["errors"]}  # fmt: skip
            w, wo = level["with"]["cpu_us"], level["without"]["cpu_us"]
            level["extra_pct"] = (w - wo) / wo * 100 if w and wo else None
            log(f"lifecycle, {n} client(s): backend CPU per transition {w} µs with the rollup triggers, "
                f"{wo} µs without; {level['with']['per_s']:.0f} vs {level['without']['per_s']:.0f} transitions/s")  # fmt: skip
            out["levels"].append(level)
    finally:
        enable(True)
    return out
