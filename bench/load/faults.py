"""§3: faults under load, each with its time to recover, deliveries lost (must be 0) and duplicates.

Every fault runs with lifecycle traffic (locust, 2 users) and the 1 s sampler beside it:

    pg_restart        PostgreSQL stopped (fast) and started again
    terminate_all     pg_terminate_backend of every client backend (gateway pool, dispatcher + LISTEN)
    dispatcher_kill9  the dispatcher SIGKILLed, restarted 2 s later (what a supervisor does)
    receiver_down     the receiver stopped for 10 min / FAULT_COMPRESS, then started again
    idle_in_tx        a session idle in transaction for 10 min / FAULT_COMPRESS (holding back vacuum):
                      dead tuples and table sizes before, at the end, and after a VACUUM
    pool_exhausted    3x the gateway's connections of cancel_order requests blocked on a row lock for 12 s

Recovery = from the end of the fault (the restart, the release) until the API answers health_db,
a webhook event committed after that moment arrived at the receiver, and every delivery created
before it (the ones the fault held back, waiting for their retry) was delivered. Nobody restarts anything by
hand: the gateway's pool and the dispatcher reconnect by themselves (the dispatcher's restart after
kill -9 is the supervisor's job, as in production).
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.common import log
from bench.load import measure, scenarios
from bench.load.stack import LoadStack
from gateway.__main__ import DEFAULT_POOL_SIZE
from gateway.workers import default_workers

TABLES = ("webhooks.deliveries", "webhooks.events", "webhooks.attempts", "core.orders")


def probe_recovery(stack: LoadStack, since: float, timeout: float = 180) -> float | None:
    """Seconds from `since` (time.time()) until health_db answers and a fresh event arrives."""
    deadline = time.monotonic() + timeout
    key = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{stack.api}/rpc/health_db", timeout=2).status_code == 200:
                if key is None:
                    key = f"probe:{uuid.uuid4()}"
                    with stack.connect(connect_timeout=2) as conn:
                        event = conn.execute(
                            "select webhooks.emit('order.confirmed', 0, %s, '{}'::jsonb, now())", [key]).fetchone()[0]  # fmt: skip
                        eid = conn.execute(
                            "select id::text from webhooks.events where idempotency_key = %s", [key]
                        ).fetchone()[0]
                    del event
                if any(a["id"] == eid for a in measure.arrivals(stack)):
                    return round(time.time() - since, 2)
        except (httpx.HTTPError, psycopg.Error):
            pass
        time.sleep(0.2)
    return None


def old_backlog_cleared(stack: LoadStack, since: float, timeout: float = 240) -> float | None:
    """Seconds from `since` until no delivery created before it is still PENDING or SENDING (what
    the fault held back has been delivered, retries included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with stack.connect(connect_timeout=2) as conn:
                n = conn.execute("""select count(*) from webhooks.deliveries where status in ('PENDING', 'SENDING')
                                    and created_at <= to_timestamp(%s)""", [since]).fetchone()[0]  # fmt: skip
            if n == 0:
                return round(time.time() - since, 2)
        except psycopg.Error:
            pass
        time.sleep(0.25)
    return None


def table_stats(stack: LoadStack) -> dict[str, Any]:
    with stack.connect() as conn:
        rows = conn.execute("""select schemaname || '.' || relname, n_live_tup, n_dead_tup,
                                      pg_total_relation_size(relid) from pg_stat_user_tables
                               where schemaname || '.' || relname = any(%s)""", [list(TABLES)]).fetchall()  # fmt: skip
    return {r[0]: {"live": r[1], "dead": r[2], "bytes": r[3]} for r in rows}


def _restart_pg(stack: LoadStack, c: int) -> dict[str, Any]:
    stack.restart_postgres()
    return {}


def _terminate(stack: LoadStack, c: int) -> dict[str, Any]:
    with stack.connect() as conn:
        n = conn.execute("""select count(pg_terminate_backend(pid)) from pg_stat_activity
                            where backend_type = 'client backend' and pid <> pg_backend_pid()""").fetchone()[
            0
        ]
    return {"terminated": n}


def _kill_dispatcher(stack: LoadStack, c: int) -> dict[str, Any]:
    stack.webhooks.kill_dispatcher()
    time.sleep(2)
    stack.webhooks.start_dispatcher()
    return {}


def _receiver_down(stack: LoadStack, c: int) -> dict[str, Any]:
    stack.webhooks.stop_receiver()
    time.sleep(600 / c)
    stack.webhooks.start_receiver()
    return {"down_s": 600 / c}


def _idle_in_tx(stack: LoadStack, c: int) -> dict[str, Any]:
    before = table_stats(stack)
    conn = stack.connect()
    conn.execute("begin")
    conn.execute("select txid_current(), count(*) from core.orders")  # an xid and a snapshot: vacuum waits
    time.sleep(600 / c)
    during = table_stats(stack)
    conn.execute("rollback")
    conn.close()
    released = time.time()
    with stack.connect() as c2:
        for t in TABLES:
            c2.execute(f"vacuum {t}")
    after = table_stats(stack)
    return {
        "idle_s": 600 / c,
        "tables_before": before,
        "tables_at_end": during,
        "tables_after_vacuum": after,
        "_end": released,
    }


def _pool_exhausted(stack: LoadStack, c: int) -> dict[str, Any]:
    with stack.connect() as conn:
        order = conn.execute(
            "select id from core.orders where status = 'CONFIRMED' order by id limit 1"
        ).fetchone()[0]
    holder = stack.connect()
    holder.execute("begin")
    holder.execute("select 1 from core.orders where id = %s for update", [order])
    headers = {"Authorization": f"Bearer {stack.token('service')}"}
    codes: dict[str, int] = {}
    # cancel_order of a CONFIRMED order is a legal transition, so each request passes its checks and
    # waits on the row lock inside the database (confirm_order of it would fail at once, 409, without
    # ever holding a connection for long). 3x every worker's pool: a third get connections and wait
    # (service's statement_timeout, 10 s, cuts them), the rest queue in the gateway's pools.
    n_requests = 3 * DEFAULT_POOL_SIZE * default_workers()

    def blocked() -> None:
        try:
            r = httpx.post(
                f"{stack.api}/rpc/cancel_order", json={"order_id": order}, headers=headers, timeout=30
            )
            key = f"{r.status_code} {r.json().get('code') if r.headers.get('content-type', '').startswith('application/json') else ''}"
        except httpx.HTTPError as exc:
            key = type(exc).__name__
        codes[key] = codes.get(key, 0) + 1

    with ThreadPoolExecutor(n_requests) as pool:
        futures = [pool.submit(blocked) for _ in range(n_requests)]
        time.sleep(12)
        holder.execute("rollback")
        holder.close()
        released = time.time()
        for f in futures:
            f.result()
    return {"blocked_requests": codes, "_end": released}


FAULTS = {
    "pg_restart": _restart_pg, "terminate_all": _terminate, "dispatcher_kill9": _kill_dispatcher,
    "receiver_down": _receiver_down, "idle_in_tx": _idle_in_tx, "pool_exhausted": _pool_exhausted,
}  # fmt: skip


def one(stack: LoadStack, name: str, out: Path, compress: int, lead: float = 5) -> dict[str, Any]:
    log(f"[load] fault {name}")
    since, offset = measure.db_now(stack), measure.log_offset(stack)
    sampler = measure.Sampler(stack)
    sampler.start()
    emitter = scenarios.Emitter(stack, 100)  # the plan's webhook rate beside the lifecycles
    emitter.start()
    box: dict[str, Any] = {}
    fault_len = {"receiver_down": 600 / compress, "idle_in_tx": 600 / compress, "pool_exhausted": 12}.get(
        name, 3
    )
    seconds = lead + fault_len + 25
    t = threading.Thread(target=lambda: box.setdefault("locust", measure.run_locust(
        stack, f"fault_{name}", {"LifecycleUser": 2}, seconds, pace=2.0, out_dir=out / "locust")), daemon=True)  # fmt: skip
    t.start()
    time.sleep(lead)
    t_fault = time.time() - sampler.t0
    detail = FAULTS[name](stack, compress)
    t_end = detail.pop("_end", time.time())  # when the fault itself ended (the release), not our cleanup
    serving = probe_recovery(stack, t_end)
    cleared = old_backlog_cleared(stack, t_end)
    recovery = None if serving is None or cleared is None else max(serving, cleared)
    t.join(timeout=seconds + 150)
    emitter.stop()
    drain = measure.wait_drained(stack, 180)
    rows = sampler.stop()
    r: dict[str, Any] = {
        "name": name, "t0": sampler.t0, "fault_at_s": round(t_fault, 1), "fault_end_s": round(t_end - sampler.t0, 1),
        "recovery_s": recovery, "serving_again_s": serving, "held_back_delivered_s": cleared, "drain_s": drain, "detail": detail, "locust": box.get("locust", {}),
        "sample_rows": rows, "samples": measure.summarise_samples(rows),
        "webhooks": measure.webhook_account(stack, since), "lock_timeouts": measure.lock_timeouts(stack, offset),
    }  # fmt: skip
    w = r["webhooks"]
    log(f"[load] fault {name}: recovered in {recovery} s, drained {drain} s, deliveries {w['deliveries']} "
        f"lost {w['lost']} duplicates {w['duplicates']}, failures {r['locust'].get('failures')}")  # fmt: skip
    return r


def all_faults(stack: LoadStack, out: Path, compress: int, scale: float = 1.0) -> list[dict[str, Any]]:
    return [one(stack, name, out, int(compress / scale)) for name in FAULTS]
