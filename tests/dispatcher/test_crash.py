"""Crash safety with real `waybill dispatcher` processes: kill -9, two side by side, PostgreSQL
restarted and its connections terminated, SIGTERM, a receiver that goes away and comes back.

Timings are short for tests (lease 6 s, HTTP timeout 4 s, sweep 1 s: helpers.start_process)."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import psycopg

from tests.dispatcher.helpers import (
    Answer,
    DispatcherThread,
    Hook,
    start_process,
    stop_process,
    subscribe,
    wait_until,
)
from tests.dispatcher.test_delivery import emit
from waybill.cluster import Cluster


def _count(conn: psycopg.Connection, where: str = "true") -> int:
    return conn.execute(f"select count(*) from webhooks.deliveries where {where}").fetchone()[0]


def test_kill_9_mid_batch_loses_nothing_and_duplicates_only_in_flight_rows(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    hook = Hook(lambda r: Answer(delay=0.05))
    subscribe(conn, hook.url())
    in_flight_at_kill: set[str] = set()
    procs = []
    try:
        for trial in range(3):
            emit(conn, 60, tag=f"trial{trial}")
            before = len(hook.received)
            name = f"victim-{trial}"
            proc = start_process(db_url, name, log=tmp_path / f"{name}.log")
            procs.append(proc)
            wait_until(lambda before=before: len(hook.received) >= before + 10, what="POSTs under way")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            in_flight_at_kill |= {
                str(r[0])
                for r in conn.execute(
                    "select event_id from webhooks.deliveries where status = 'SENDING' and lease_owner = %s",
                    [name],
                ).fetchall()
            }
        survivor = start_process(db_url, "survivor", log=tmp_path / "survivor.log")
        procs.append(survivor)
        # Every lease runs out within 6 s and the survivor claims the rows again.
        wait_until(lambda: _count(conn, "status <> 'DELIVERED'") == 0, timeout=40, what="all delivered")
        assert stop_process(survivor) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        hook.close()
    received = Counter(hook.ids())
    events = {str(r[0]) for r in conn.execute("select id from webhooks.events").fetchall()}
    assert set(received) == events and len(events) == 180  # nothing lost
    duplicated = {i for i, n in received.items() if n > 1}
    assert duplicated <= in_flight_at_kill, duplicated - in_flight_at_kill  # only rows in flight at a kill
    # The rows recovered from expired leases are exactly rows in flight at a kill (a row can be
    # recovered twice: claimed again by the next victim and killed again).
    recovered = {
        str(r[0])
        for r in conn.execute(
            "select d.event_id from webhooks.attempts a join webhooks.deliveries d on d.id = a.delivery_id "
            "where a.error_class = 'lease_expired'"
        ).fetchall()
    }
    assert recovered and recovered <= in_flight_at_kill, recovered - in_flight_at_kill
    assert (
        conn.execute(
            "select count(*) from webhooks.attempts a join webhooks.deliveries d on d.id = a.delivery_id "
            "where a.error_class = 'lease_expired' and d.status <> 'DELIVERED'"
        ).fetchone()[0]
        == 0
    )


def test_two_dispatchers_never_post_the_same_attempt_twice(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    hook = Hook()
    subscribe(conn, hook.url("/a"))
    subscribe(conn, hook.url("/b"))
    procs = [start_process(db_url, f"twin-{i}", log=tmp_path / f"twin-{i}.log") for i in range(2)]
    try:
        for rnd in range(3):
            emit(conn, 150, tag=f"round{rnd}")
            wait_until(
                lambda rnd=rnd: len(hook.received) == 300 * (rnd + 1), timeout=40, what="round delivered"
            )
        assert [stop_process(p) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        hook.close()
    posted = Counter((r.path, r.headers["webhook-id"]) for r in hook.received)
    assert len(posted) == 900 and max(posted.values()) == 1
    assert _count(conn, "status = 'DELIVERED' and attempts = 1") == 900  # one try each, each POSTed once
    per_dispatcher = dict(
        conn.execute("select dispatcher, count(*) from webhooks.attempts group by 1").fetchall()
    )
    assert sum(per_dispatcher.values()) == 900 and set(per_dispatcher) == {"twin-0", "twin-1"}


def test_survives_terminated_connections_and_a_postgresql_restart(
    cluster: Cluster, conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    hook = Hook()
    subscribe(conn, hook.url())
    log = tmp_path / "dispatcher.log"
    proc = start_process(db_url, "survivor", log=log)
    dbname = conn.info.dbname
    try:
        emit(conn, 20, tag="before")
        wait_until(lambda: len(hook.received) == 20, what="first 20")
        killed = conn.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            "where datname = current_database() and usename = 'dispatcher'"
        ).fetchone()[0]
        assert killed >= 2  # the pool's and the LISTEN connection
        emit(conn, 20, tag="terminated")
        wait_until(lambda: len(hook.received) == 40, what="20 after pg_terminate_backend")
        wait_until(
            lambda: (
                conn.execute(
                    "select count(*) from pg_stat_activity where application_name = 'waybill-dispatcher-listener' "
                    "and datname = current_database() and query ilike 'listen%%'"
                ).fetchone()[0]
                == 1
            ),
            what="LISTEN re-opened",
        )
        conn.close()
        cluster.stop()
        cluster.start()
        with psycopg.connect(cluster.url(dbname), autocommit=True) as again:
            emit(again, 20, tag="restarted")
            wait_until(lambda: len(hook.received) == 60, timeout=40, what="20 after the restart")
            wait_until(lambda: _count(again, "status = 'DELIVERED'") == 60, what="all recorded")
        assert stop_process(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        hook.close()
    assert max(Counter(hook.ids()).values()) == 1
    text = log.read_text()
    assert "webhook_listener_connection_lost" in text and "webhook_dispatcher_db_failed" in text


def test_sigterm_finishes_or_releases_in_flight_rows_and_exits_0(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    hook = Hook(lambda r: Answer(delay=8))  # longer than the 4 s HTTP timeout
    subscribe(conn, hook.url())
    emit(conn, 5)
    proc = start_process(db_url, "stopper", log=tmp_path / "stop.log")
    try:
        wait_until(lambda: len(hook.received) == 5, what="5 POSTs hanging")
        assert stop_process(proc, signal.SIGTERM, timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        hook.close()
    rows = conn.execute("select status, attempts from webhooks.deliveries").fetchall()
    assert _count(conn, "status = 'SENDING'") == 0  # each finished (a timeout try) or was released
    assert all(status == "PENDING" and tries <= 1 for status, tries in rows), rows
    info = conn.execute("select info from webhooks.dispatchers where name = 'stopper'").fetchone()[0]
    assert info["state"] == "stopped"


def test_receiver_down_then_back_gets_everything(conn: psycopg.Connection, db_url: str) -> None:
    hook = Hook()
    port = hook.port
    subscribe(conn, hook.url())
    hook.close()  # the receiver goes away
    ids = emit(conn, 10)
    with DispatcherThread(db_url) as d:
        wait_until(lambda: _count(conn, "attempts = 1 and status = 'PENDING'") == 10, what="first tries")
        d.advance(40)  # the first retry is due 30 s (+ jitter) after the first try
        wait_until(lambda: _count(conn, "attempts = 2 and status = 'PENDING'") == 10, what="second tries")
        back = Hook(port=port)
        try:
            d.advance(100)  # the second retry: 60 s (+ jitter)
            wait_until(lambda: _count(conn, "status = 'DELIVERED'") == 10, what="all delivered after return")
        finally:
            back.close()
    errors = {r[0] for r in conn.execute("select distinct error_class from webhooks.attempts").fetchall()}
    assert errors == {"refused", None}
    assert sorted(back.ids()) == sorted(ids)
