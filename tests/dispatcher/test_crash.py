"""Crash safety with real `waybill dispatcher` processes, each scenario run many times over: kill -9
mid-batch, two side by side, connections terminated, PostgreSQL restarted, SIGTERM, a receiver that
goes away and comes back.

Every trial checks every invariant on its own rows (tests/dispatcher/crash_checks.py): each delivery
DELIVERED, one attempts row per try numbered 1..n (no number twice), and what the receiver got —
each (subscription, webhook-id) exactly once, except rows in flight at a kill -9, which may come twice.
Trials are fast: small bursts, a survivor whose clock is moved past the victim's lease instead of
waiting for it, a LISTEN re-opened after 50 ms, polling with deadlines and no sleeps.

Trial counts per `make test` are the defaults below; WAYBILL_CRASH_TRIALS=N runs every scenario N
times (`make crash-soak`: 300). A failing trial names its number and random seed.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import psycopg

from tests.dispatcher.crash_checks import (
    assert_trial,
    count,
    delivered_all,
    dispatcher_backends,
    idle_and_armed,
    listener_pid,
    rows_of,
)
from tests.dispatcher.helpers import (
    Answer,
    DispatcherThread,
    Hook,
    as_admin,
    start_process,
    stop_process,
    subscribe,
    wait_until,
)
from tests.dispatcher.test_delivery import emit
from waybill.cluster import Cluster

LEASE = 30.0  # the processes' lease: long, since the survivor's clock jumps past it (no waiting)


def trials(default: int) -> int:
    return int(os.environ.get("WAYBILL_CRASH_TRIALS") or default)


def _stop_all(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_kill_9_mid_batch_loses_nothing_and_duplicates_only_in_flight_rows(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    hook = Hook(lambda r: Answer(delay=0.01))
    subscribe(conn, hook.url("/a"))
    subscribe(conn, hook.url("/b"))
    env = {"WAYBILL_DISPATCHER_LEASE_SECONDS": str(LEASE), "WAYBILL_DISPATCHER_BATCH_SIZE": "8"}
    procs: list = []
    recovered_total = 0
    try:
        for trial in range(trials(20)):
            rnd = random.Random(trial)
            ids = emit(conn, 12, tag=f"kill{trial}")  # 24 deliveries, 3 claim batches of 8
            before = len(hook.received)
            k = rnd.randint(1, 20)  # how many POSTs have arrived when the kill comes
            name = f"victim-{trial}"
            proc = start_process(db_url, name, env=env, log=tmp_path / f"{name}.log")
            procs.append(proc)
            wait_until(lambda b=before, k=k: len(hook.received) >= b + k, what=f"trial {trial}: {k} POSTs")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            # Its backends gone, no commit of its can land after we look at the rows.
            wait_until(lambda: dispatcher_backends(conn) == 0, what="the victim's backends gone")
            killed_at = conn.execute("select now()").fetchone()[0]
            in_flight = {
                r["key"]: r
                for r in rows_of(conn, ids)
                if r["status"] == "SENDING" and r["lease_owner"] == name
            }
            # Recoverable within the lease: no lease of the victim's runs past kill time + lease.
            for r in in_flight.values():
                assert (r["lease_until"] - killed_at).total_seconds() <= LEASE, (trial, r)
            # A per-subscription limit above the victim's leftovers, which count against it until recovered.
            with DispatcherThread(db_url, name=f"survivor-{trial}", per_subscription=50) as d:
                others = len(ids) * 2 - len(in_flight)
                wait_until(
                    lambda ids=ids, n=others: count(conn, ids, "status = 'DELIVERED'") == n,
                    what=f"trial {trial}: the rows not in flight",
                )
                # Leased rows are not taken before their lease ends...
                assert {r["key"] for r in rows_of(conn, ids) if r["status"] == "SENDING"} == set(in_flight)
                d.advance(LEASE + 1)  # ...and are taken again once it has
                wait_until(lambda ids=ids: delivered_all(conn, ids, 2), what=f"trial {trial}: all delivered")
            recovered = assert_trial(conn, hook, ids, subscriptions=2, in_flight=set(in_flight), trial=trial)
            assert recovered == set(in_flight), (trial, recovered ^ set(in_flight))
            recovered_total += len(recovered)
    finally:
        _stop_all(procs)
        hook.close()
    assert recovered_total > 0  # some kills did catch rows in flight
    assert count(conn, None, "status <> 'DELIVERED'") == 0


def test_two_dispatchers_never_post_the_same_attempt_twice(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    hook = Hook()
    subscribe(conn, hook.url("/a"))
    subscribe(conn, hook.url("/b"))
    env = {"WAYBILL_DISPATCHER_BATCH_SIZE": "4"}  # many small claims: the two contend on every burst
    procs = [start_process(db_url, f"twin-{i}", env=env, log=tmp_path / f"twin-{i}.log") for i in range(2)]
    try:
        for trial in range(trials(50)):
            ids = emit(conn, 25, tag=f"twin{trial}")
            wait_until(lambda ids=ids: delivered_all(conn, ids, 2), what=f"trial {trial}: delivered")
            assert_trial(conn, hook, ids, subscriptions=2, in_flight=set(), trial=trial)
        assert [stop_process(p) for p in procs] == [0, 0]
    finally:
        _stop_all(procs)
        hook.close()
    per_dispatcher = dict(
        conn.execute("select dispatcher, count(*) from webhooks.attempts group by 1").fetchall()
    )
    assert set(per_dispatcher) == {"twin-0", "twin-1"}, per_dispatcher  # both took part


def test_reconnects_after_its_connections_are_terminated(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    hook = Hook(lambda r: Answer(delay=0.005))
    subscribe(conn, hook.url())
    log = tmp_path / "dispatcher.log"
    # No sweep within a trial: after a re-open only the rescan and NOTIFY can bring the rows.
    proc = start_process(db_url, "terminated", env={"WAYBILL_DISPATCHER_SWEEP_SECONDS": "300"}, log=log)
    try:
        wait_until(lambda: listener_pid(conn), what="LISTEN")
        for trial in range(trials(30)):
            rnd = random.Random(trial)
            base = len(hook.received)
            ids = emit(conn, 15, tag=f"term{trial}")
            k = rnd.randint(0, 12)  # POSTs arrived when the connections go (0: maybe before the claim)
            wait_until(
                lambda b=base, k=k: len(hook.received) >= b + k, what=f"trial {trial}: POSTs under way"
            )
            old = listener_pid(conn)
            killed = conn.execute(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                "where datname = current_database() and usename = 'dispatcher'"
            ).fetchone()[0]
            assert killed >= 2, (trial, killed)  # the pool's and the LISTEN connection
            wait_until(
                lambda old=old: listener_pid(conn) not in (None, old), what=f"trial {trial}: LISTEN again"
            )
            wait_until(lambda ids=ids: delivered_all(conn, ids, 1), what=f"trial {trial}: delivered")
            assert_trial(conn, hook, ids, subscriptions=1, in_flight=set(), trial=trial)
        # The re-opened LISTEN is armed: with no sweep due, only a NOTIFY brings this one.
        wait_until(lambda: idle_and_armed(conn), what="idle, waiting for NOTIFY")
        ids = emit(conn, 1, tag="after")
        wait_until(lambda: delivered_all(conn, ids, 1), what="an event after the last re-open")
        assert stop_process(proc) == 0
    finally:
        _stop_all([proc])
        hook.close()
    text = log.read_text()
    assert "webhook_listener_connection_lost" in text and "webhook_dispatcher_db_failed" in text


def test_survives_postgresql_restarts(cluster: Cluster, db_url: str, tmp_path: Path) -> None:
    hook = Hook(lambda r: Answer(delay=0.005))
    with psycopg.connect(db_url, autocommit=True) as c:
        subscribe(c, hook.url())
    log = tmp_path / "dispatcher.log"
    proc = start_process(db_url, "restarted", env={"WAYBILL_DISPATCHER_LEASE_SECONDS": str(LEASE)}, log=log)
    try:
        for trial in range(trials(20)):
            rnd = random.Random(trial)
            with psycopg.connect(db_url, autocommit=True) as c:
                base = len(hook.received)
                ids = emit(c, 10, tag=f"restart{trial}")
                k = rnd.randint(0, 8)
                wait_until(
                    lambda b=base, k=k: len(hook.received) >= b + k, what=f"trial {trial}: POSTs under way"
                )
            cluster.stop()
            cluster.start()
            with psycopg.connect(db_url, autocommit=True) as c:
                wait_until(lambda c=c, ids=ids: delivered_all(c, ids, 1), what=f"trial {trial}: delivered")
                assert_trial(c, hook, ids, subscriptions=1, in_flight=set(), trial=trial)
        assert stop_process(proc) == 0
    finally:
        _stop_all([proc])
        hook.close()
    text = log.read_text()
    assert "webhook_listener_connection_lost" in text and "webhook_dispatcher_db_failed" in text


def test_sigterm_finishes_or_releases_in_flight_rows_and_exits_0(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    hook = Hook(lambda r: Answer(delay=3))  # longer than the 1 s HTTP timeout
    subscribe(conn, hook.url())
    emit(conn, 5)
    env = {"WAYBILL_DISPATCHER_HTTP_TIMEOUT": "1"}
    proc = start_process(db_url, "stopper", env=env, log=tmp_path / "stop.log")
    try:
        wait_until(lambda: len(hook.received) == 5, what="5 POSTs hanging")
        assert stop_process(proc, signal.SIGTERM, timeout=20) == 0
    finally:
        _stop_all([proc])
        hook.close()
    rows = conn.execute("select status, attempts from webhooks.deliveries").fetchall()
    assert count(conn, None, "status = 'SENDING'") == 0  # each finished (a timeout try) or was released
    assert all(status == "PENDING" and tries <= 1 for status, tries in rows), rows
    # Its heartbeat row, as an admin sees it (api.webhook_dispatchers, GET /webhook_dispatchers).
    info = as_admin(conn, "select info from api.webhook_dispatchers where name = 'stopper'")[0]
    assert info["state"] == "stopped" and info["pid"] == proc.pid


def test_receiver_down_then_back_gets_everything(conn: psycopg.Connection, db_url: str) -> None:
    hook = Hook()
    port = hook.port
    subscribe(conn, hook.url())
    hook.close()  # the receiver goes away
    # A 1 s sweep: an emit that races with the dispatcher arming its wake-up costs a second, not 30.
    with DispatcherThread(db_url, sweep_seconds=1.0) as d:
        for trial in range(trials(30)):
            ids = emit(conn, 4, tag=f"down{trial}")
            wait_until(
                lambda ids=ids: count(conn, ids, "attempts = 1 and status = 'PENDING'") == 4,
                what=f"trial {trial}: tries",
            )
            d.advance(40)  # the first retry is due 30 s (+ jitter) after the first try
            wait_until(
                lambda ids=ids: count(conn, ids, "attempts = 2 and status = 'PENDING'") == 4,
                what=f"trial {trial}: retries",
            )
            back = Hook(port=port)
            try:
                d.advance(100)  # the second retry: 60 s (+ jitter)
                wait_until(lambda ids=ids: delivered_all(conn, ids, 1), what=f"trial {trial}: delivered")
            finally:
                back.close()
            assert_trial(conn, back, ids, subscriptions=1, in_flight=set(), trial=trial, tries=3)
            classes = conn.execute(
                "select array_agg(a.error_class order by a.attempt) from webhooks.attempts a "
                "join webhooks.deliveries d on d.id = a.delivery_id where d.event_id = any(%s::uuid[]) "
                "group by d.id",
                [ids],
            ).fetchall()
            assert all(c == ["refused", "refused", None] for (c,) in classes), (trial, classes)
