"""The scenarios of issue 13 §1 and the knee (§2): each one locust run (or an event emitter) with the
sampler beside it, then the webhook accounting and the plan's targets, printed (never asserted).

Time compression: the plan's rates are per hour over 30 or 5 minutes; a scenario runs COMPRESS times
faster (the same number of orders in 1/COMPRESS of the time, i.e. COMPRESS x the rate), so it is
*harder* than the plan, never easier. The webhook scenario (100/min) is not compressed.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import log
from bench.load import measure
from bench.load.stack import LoadStack
from gateway.__main__ import DEFAULT_POOL_SIZE
from gateway.workers import default_workers

COMPRESS = 10
ORDER_STEPS = (5, 10, 20, 40, 80, 160, 320, 640, 1280)  # x the plan's 200 orders/h
WEBHOOK_STEPS = (100, 1000, 3000, 10000, 30000, 60000, 120000)  # events/min
TARGET_P95_MS = 500
TARGET_BACKLOG = 100


class Emitter(threading.Thread):
    """Commits `per_min` webhook events per minute (webhooks.emit, one small transaction per 0.1 s tick)."""

    def __init__(self, stack: LoadStack, per_min: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.per_min = stack, per_min
        self.stopping = threading.Event()
        self.emitted = 0
        self.errors = 0

    def run(self) -> None:
        t0 = time.monotonic()
        conn = None
        while not self.stopping.wait(0.1):
            due = int((time.monotonic() - t0) * self.per_min / 60) - self.emitted
            if due <= 0:
                continue
            try:  # a fault may take the server away: reconnect, as any client would, and count it
                conn = conn if conn is not None and not conn.closed else self.stack.connect(connect_timeout=2)
                conn.execute(
                    "select count(webhooks.emit('order.confirmed', g, 'load:' || txid_current() || ':' || g,"
                    " jsonb_build_object('id', g), now())) from generate_series(1, %s) g", [due])  # fmt: skip
                self.emitted += due
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                time.sleep(0.2)
        if conn is not None:
            conn.close()

    def stop(self) -> int:
        self.stopping.set()
        self.join(timeout=30)
        return self.emitted


def verdict(r: dict[str, Any]) -> dict[str, Any]:
    """The plan's targets: P95 < 500 ms, no pool exhaustion, no lock timeouts, backlog < 100."""
    eps = r.get("locust", {}).get("endpoints", {})
    p95 = max(
        (e["p95"] or 0 for n, e in eps.items() if n != "Aggregated" and not n.startswith("race:")), default=0
    )
    fails = r.get("locust", {}).get("failures", {})
    pool_errors = sum(n for k, n in fails.items() if "PGRST003" in k)
    s = r["samples"]
    checks = {
        "p95_below_500ms": p95 < TARGET_P95_MS,
        "no_pool_exhaustion": pool_errors == 0 and s["pool_degraded"] == 0,
        "no_lock_timeouts": r["lock_timeouts"] == 0,
        "backlog_below_100": (s["max_backlog"] or 0) < TARGET_BACKLOG,
        "no_errors": sum(fails.values()) == 0,
        "no_lost_deliveries": r["webhooks"]["lost"] == 0,
    }
    return {
        "worst_endpoint_p95_ms": p95,
        "pool_errors": pool_errors,
        "checks": checks,
        "pass": all(checks.values()),
    }


def run(stack: LoadStack, name: str, out: Path, *, users: dict[str, int] | None = None, seconds: float,
        orders_per_hour: float = 0, emit_per_min: float = 0, drain_timeout: float = 120) -> dict[str, Any]:  # fmt: skip
    """One scenario. `orders_per_hour` (real, already compressed) sets the lifecycle users' pacing."""
    users = dict(users or {})
    pace = 10.0
    if orders_per_hour:
        rate = orders_per_hour / 3600
        users["LifecycleUser"] = n = max(2, min(100, math.ceil(rate * 3)))
        pace = n / rate
    log(
        f"[load] {name}: {users or 'no users'} {seconds:.0f} s, {orders_per_hour:.0f} orders/h, {emit_per_min:.0f} events/min"
    )
    since, offset = measure.db_now(stack), measure.log_offset(stack)
    sampler = measure.Sampler(stack)
    sampler.start()
    emitter = Emitter(stack, emit_per_min) if emit_per_min else None
    if emitter:
        emitter.start()
    result: dict[str, Any] = {"name": name, "seconds": seconds, "orders_per_hour": orders_per_hour,
                              "emit_per_min": emit_per_min, "users": users}  # fmt: skip
    if users:
        result["locust"] = measure.run_locust(stack, name, users, seconds, pace=pace, out_dir=out / "locust")
    else:
        time.sleep(seconds)
    if emitter:
        result["emitted"] = emitter.stop()
    result["t0"] = sampler.t0
    result["drain_s"] = measure.wait_drained(stack, drain_timeout)
    result["sample_rows"] = sampler.stop()
    result["samples"] = measure.summarise_samples(result["sample_rows"])
    result["webhooks"] = measure.webhook_account(stack, since)
    result["lock_timeouts"] = measure.lock_timeouts(stack, offset)
    result["verdict"] = verdict(result)
    v = result["verdict"]
    log(f"[load] {name}: {'PASS' if v['pass'] else 'FAIL'} worst p95 {v['worst_endpoint_p95_ms']} ms, "
        f"failures {result.get('locust', {}).get('failures', {})}, backlog max {result['samples']['max_backlog']}, "
        f"deliveries {result['webhooks']['deliveries']} lost {result['webhooks']['lost']} "
        f"dup {result['webhooks']['duplicates']} p95 {result['webhooks']['latency_p95_ms']} ms")  # fmt: skip
    return result


def suite(stack: LoadStack, out: Path, scale: float = 1.0) -> list[dict[str, Any]]:
    """§1: the plan's scenarios; `scale` < 1 shortens each (the smoke)."""
    k = COMPRESS
    return [
        run(
            stack,
            "sustained_50_per_h",
            out,
            users={"AdminUser": 1},
            seconds=30 * 60 / k * scale,
            orders_per_hour=50 * k,
        ),  # fmt: skip
        run(
            stack,
            "peak_200_per_h",
            out,
            users={"AdminUser": 1},
            seconds=5 * 60 / k * scale,
            orders_per_hour=200 * k,
        ),
        run(stack, "accept_race_10_agents", out, users={"AcceptRaceUser": 2}, seconds=20 * scale),
        run(stack, "status_race_5_updates", out, users={"StatusRaceUser": 2}, seconds=20 * scale),
        run(stack, "webhooks_100_per_min", out, seconds=60 * scale, emit_per_min=100),
        run(stack, "admins_reading", out, users={"AdminUser": 5}, seconds=30 * scale, orders_per_hour=50 * k),
    ]


def saturation(samples: dict[str, Any]) -> str:
    """What looked saturated in a step, from the 1 s samples: the machine's CPU, the front (its
    worker processes: at most one core each), the pools (every worker's connections active), locks
    or WAL (the active backends' wait events)."""
    workers = default_workers()
    pool_size = DEFAULT_POOL_SIZE * workers
    found = []
    if (samples.get("mean_cpu_pct") or 0) >= 90:
        found.append(f"CPU (machine {samples['mean_cpu_pct']:.0f} % busy)")
    if (samples.get("mean_gateway_cpu_pct") or 0) >= 80 * workers:
        found.append(
            f"the front (gateway {samples['mean_gateway_cpu_pct']:.0f} % of one core, {workers} workers)"
        )
    if (samples.get("max_active") or 0) >= pool_size:
        found.append(f"pool ({samples['max_active']} active of {pool_size})")
    waits = samples.get("waits") or {}
    total = sum(waits.values()) or 1
    locks = sum(n for k, n in waits.items() if k.startswith("Lock:"))
    wal = sum(n for k, n in waits.items() if "WAL" in k)
    if locks / total >= 0.2:
        found.append(f"locks ({100 * locks / total:.0f} % of active samples)")
    if wal / total >= 0.2:
        found.append(f"WAL ({100 * wal / total:.0f} % of active samples)")
    return ", ".join(found) or "nothing at its limit"


def knee(
    stack: LoadStack, out: Path, step_s: float = 30, start: int = 0, webhooks_start: int = 0
) -> dict[str, Any]:
    """§2: order rate x 200/h stepped up until a step's P95 (all requests) reaches 500 ms or a request
    fails; then the same
    for webhook events/min (sustainable = the backlog stays under 100 and drains)."""
    orders: list[dict[str, Any]] = []
    for mult in [m for m in ORDER_STEPS if m >= start]:
        r = run(
            stack, f"knee_orders_x{mult}", out, seconds=step_s, orders_per_hour=200 * mult, drain_timeout=60
        )
        eps = r["locust"]["endpoints"]
        lifecycles = sum(e["requests"] for n, e in eps.items() if n == "/rpc/create_order")
        r["multiple"] = mult
        r["achieved_orders_per_hour"] = round(lifecycles * 3600 / step_s)
        # the aggregated P95 (all requests of the step): one endpoint's P95 over a handful of calls is noise
        # the achieved rate counts too: a front that cannot keep the pace fails the step
        r["ok"] = ((eps.get("Aggregated", {}).get("p95") or 0) < TARGET_P95_MS and not r["locust"]["failures"]
                   and r["achieved_orders_per_hour"] >= 0.9 * 200 * mult)  # fmt: skip
        r["saturation"] = saturation(r["samples"])
        orders.append(r)
        if not r["ok"]:
            break
    hooks: list[dict[str, Any]] = []
    for per_min in [w for w in WEBHOOK_STEPS if w >= webhooks_start]:
        r = run(stack, f"knee_webhooks_{per_min}_per_min", out, seconds=step_s * 2 / 3, emit_per_min=per_min,
                drain_timeout=90)  # fmt: skip
        last = [
            row["health_webhooks"].get("backlog") for row in r["sample_rows"][-3:] if "health_webhooks" in row
        ]
        r["end_backlog"] = max([b for b in last if b is not None], default=None)
        r["ok"] = (r["samples"]["max_backlog"] or 0) < TARGET_BACKLOG and r["webhooks"]["lost"] == 0
        r["saturation"] = saturation(r["samples"])
        hooks.append(r)
        if not r["ok"]:
            break
    return {"orders": orders, "webhooks": hooks}


def save(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, default=str))
