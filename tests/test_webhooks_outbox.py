"""The webhook outbox against a real cluster: emission is transactional, claims race correctly,
NOTIFY fires only for an armed dispatcher, retention prunes, the pg_cron job exists, seeding is silent."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.factories import confirmed_order, one, party
from waybill import migrate, seed
from waybill.cluster import Cluster


def _subscribe(conn: psycopg.Connection, types: str = "{order.confirmed,payment.captured}") -> int:
    return one(
        conn,
        "insert into webhooks.subscriptions (url, event_types, created_by, updated_by)"
        " values ('https://r.example.test/', %s, 'test', 'test') returning id",
        [types],
    )[0]


def _count(conn: psycopg.Connection, table: str) -> int:
    return one(conn, f"select count(*) from webhooks.{table}")[0]


def test_rollback_writes_nothing_commit_writes_all(conn: psycopg.Connection) -> None:
    sub = _subscribe(conn)
    p = party(conn)
    with pytest.raises(RuntimeError), conn.transaction():
        confirmed_order(conn, p)
        assert _count(conn, "events") == 2 and _count(conn, "deliveries") == 2  # inside the transaction
        raise RuntimeError("the business transaction fails after the status changes")
    assert (_count(conn, "events"), _count(conn, "deliveries")) == (0, 0)
    order_id, payment_id = confirmed_order(conn, p)
    rows = conn.execute(
        "select e.event_type, e.aggregate_id, d.subscription_id, d.status from webhooks.events e"
        " join webhooks.deliveries d on d.event_id = e.id order by e.event_type"
    ).fetchall()
    assert rows == [
        ("order.confirmed", order_id, sub, "PENDING"),
        ("payment.captured", payment_id, sub, "PENDING"),
    ]


def _dispatcher(url: str) -> psycopg.Connection:
    c = psycopg.connect(url, autocommit=True)
    c.execute("set role dispatcher")
    return c


def test_concurrent_claims_never_double_never_lose(db_url: str, conn: psycopg.Connection) -> None:
    """4 dispatcher connections claim at once, 200 trials: every due row (fresh PENDING ones and
    SENDING ones whose lease expired) is claimed exactly once."""
    trials, per_trial, workers = 200, 24, 4
    _subscribe(conn, "{order.confirmed}")
    _subscribe(conn, "{order.confirmed}")
    conns = [_dispatcher(db_url) for _ in range(workers)]
    start, done = threading.Barrier(workers + 1), threading.Barrier(workers + 1)
    claimed: list[list[int]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []
    stop = False

    def work(i: int) -> None:
        while True:
            start.wait()
            if stop:
                return
            try:
                while True:
                    rows = (
                        conns[i]
                        .execute(
                            "select delivery_id from webhooks.claim_deliveries(%s, 5, '1 hour', 1000)",
                            [f"w{i}"],
                        )
                        .fetchall()
                    )
                    if not rows:
                        break
                    claimed[i].extend(r[0] for r in rows)
            except BaseException as e:  # reported by the main thread
                errors.append(e)
            done.wait()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    try:
        for trial in range(trials):
            conn.execute(
                "select webhooks.emit('order.confirmed', g, 'race:' || %s || ':' || g, '{}', now())"
                " from generate_series(1, %s) g",
                [trial, per_trial // 2],
            )
            # A crashed dispatcher's rows: SENDING with an expired lease (a third of them).
            conn.execute(
                "update webhooks.deliveries set status = 'SENDING', lease_owner = 'ghost',"
                " lease_token = gen_random_uuid(), lease_until = now() - interval '1 s',"
                " next_attempt_at = now() - interval '1 s' where status = 'PENDING' and id % 3 = 0"
            )
            expected = {
                r[0]
                for r in conn.execute(
                    "select id from webhooks.deliveries where status in ('PENDING', 'SENDING')"
                )
            }
            for c in claimed:
                c.clear()
            start.wait()
            done.wait()
            assert not errors, errors
            got = [d for c in claimed for d in c]
            assert len(got) == len(set(got)), f"trial {trial}: a delivery was claimed twice"
            assert set(got) == expected, f"trial {trial}: lost {expected - set(got)}"
            left = one(conn, "select count(*) from webhooks.deliveries where status = 'PENDING'")[0]
            assert left == 0
            conn.execute(
                "update webhooks.deliveries set status = 'DELIVERED', lease_owner = null, lease_token = null,"
                " lease_until = null, next_attempt_at = null, delivered_at = now(), finished_at = now()"
                " where status = 'SENDING'"
            )
        lost = one(conn, "select count(*) from webhooks.attempts where error_class = 'lease_expired'")[0]
        assert lost == one(conn, "select count(*) from webhooks.deliveries where id %% 3 = 0")[0]
    finally:
        stop = True
        start.wait()
        for c in conns:
            c.close()


def test_notify_only_when_a_dispatcher_is_armed(db_url: str, conn: psycopg.Connection) -> None:
    _subscribe(conn, "{payment.failed}")
    p = party(conn)
    listener = psycopg.connect(db_url, autocommit=True)
    try:
        listener.execute("listen webhooks")
        dispatcher = _dispatcher(db_url)

        def fail_a_payment() -> None:
            order = one(
                conn,
                "select id from core.create_order(%s, %s, %s, 100, 'EUR')",
                [p["customer"], p["seller"], p["zip"]],
            )[0]
            conn.execute(
                "select core.fail_payment((select id from core.payments where order_id = %s), 'no')", [order]
            )

        fail_a_payment()  # nobody armed: no NOTIFY
        dispatcher.execute("select webhooks.arm_wakeup('d-test')")
        fail_a_payment()  # armed: this commit notifies and disarms
        fail_a_payment()  # disarmed again: no NOTIFY
        dispatcher.execute("select webhooks.arm_wakeup('d-test')")
        fail_a_payment()  # armed: notifies
        got = []
        deadline = time.monotonic() + 10
        # Notifications arrive in commit order; two must come, and then nothing more.
        for n in listener.notifies(timeout=10, stop_after=2):
            got.append((n.channel, n.payload))
        assert time.monotonic() < deadline
        assert got == [("webhooks", ""), ("webhooks", "")]
        assert list(listener.notifies(timeout=0.3)) == []
        assert one(conn, "select armed from webhooks.wakeup")[0] is False
        dispatcher.close()
    finally:
        listener.close()


def test_retention_prunes_finished_rows_in_batches(db_url: str, conn: psycopg.Connection) -> None:
    sub = _subscribe(conn, "{order.confirmed}")
    conn.execute(
        "select webhooks.emit('order.confirmed', g, 'old:' || g, '{}', now()) from generate_series(1, 30) g"
    )
    conn.execute("update webhooks.settings set prune_batch_size = 7")
    # 20 finished (with an attempt each), 10 still pending.
    conn.execute(
        "update webhooks.deliveries set status = 'DELIVERED', attempts = 1, next_attempt_at = null,"
        " delivered_at = now(), finished_at = now() where id in (select id from webhooks.deliveries order by id limit 20)"
    )
    conn.execute(
        "insert into webhooks.attempts (delivery_id, attempt, dispatcher, trigger, started_at, duration_ms, status_code)"
        " select id, 1, 'd', 'scheduled', now(), 1, 200 from webhooks.deliveries where status = 'DELIVERED'"
    )
    conn.execute("call webhooks.prune()")  # nothing is 30 days old yet
    assert (_count(conn, "deliveries"), _count(conn, "attempts"), _count(conn, "events")) == (30, 20, 30)
    conn.execute("call webhooks.prune(now() + interval '31 days')")
    assert (_count(conn, "deliveries"), _count(conn, "attempts"), _count(conn, "events")) == (10, 0, 10)
    assert (
        one(
            conn,
            "select count(*) from webhooks.deliveries where subscription_id = %s and status = 'PENDING'",
            [sub],
        )[0]
        == 10
    )


def test_retention_job_is_scheduled_idempotently_in_the_cron_database(cluster: Cluster) -> None:
    """The migration schedules waybill_webhooks_prune where pg_cron runs (cron.database_name)."""
    cron_db = cluster.db_name
    url = cluster.url(cron_db)
    migrate.apply(url)
    try:
        migrate.apply(url)  # nothing pending: post-apply only
        with psycopg.connect(url, autocommit=True) as c:
            assert (
                c.execute("select webhooks.schedule_retention()").fetchone()[0]
                == "scheduled waybill_webhooks_prune"
            )
            jobs = c.execute(
                "select schedule, command, database from cron.job where jobname = 'waybill_webhooks_prune'"
            ).fetchall()
            assert jobs == [("*/10 * * * *", "call webhooks.prune()", cron_db)]
            c.execute("call webhooks.prune()")  # the job's command runs as the owner
    finally:
        migrate.rollback_all(url)
        with psycopg.connect(url, autocommit=True) as c:
            assert (
                c.execute(
                    "select count(*) from cron.job where jobname = 'waybill_webhooks_prune'"
                ).fetchone()[0]
                == 0
            )
            for t in c.execute(
                "select tablename from pg_tables where schemaname = 'public' and tablename like '%yoyo%'"
            ):
                c.execute(f'drop table public."{t[0]}"')


def test_schedule_retention_elsewhere_does_nothing(conn: psycopg.Connection) -> None:
    said = one(conn, "select webhooks.schedule_retention()")[0]
    assert said.startswith("not scheduled: pg_cron runs in database ")
    assert one(conn, "select count(*) from pg_extension where extname = 'pg_cron'")[0] == 0


def test_seed_leaves_the_outbox_empty_and_says_so(db_url: str, conn: psycopg.Connection) -> None:
    _subscribe(
        conn, "{" + ",".join(r[0] for r in conn.execute("select event_type from webhooks.event_types")) + "}"
    )
    report = seed.seed(db_url, orders=60, agents=5)
    assert one(conn, "select count(*) from core.orders")[0] == 60
    assert (_count(conn, "events"), _count(conn, "deliveries")) == (0, 0)
    assert "webhook outbox: 0 events (history is not news)" in report


def test_await_committing_waits_for_transactions_running_at_the_call(
    db_url: str, conn: psycopg.Connection
) -> None:
    dispatcher = _dispatcher(db_url)
    other = psycopg.connect(db_url)
    try:
        assert one(dispatcher, "select webhooks.await_committing(2000)")[0] is True  # nothing running
        one(other, "select pg_current_xact_id()")  # a transaction with an xid, left open
        started = time.monotonic()
        assert one(dispatcher, "select webhooks.await_committing(50)")[0] is False  # bounded: gives up
        assert time.monotonic() - started < 5
        result: list[bool] = []
        waiter = threading.Thread(
            target=lambda: result.append(one(dispatcher, "select webhooks.await_committing(10000)")[0])
        )
        waiter.start()
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and not one(
                conn,
                "select count(*) from pg_stat_activity where query like '%%await_committing(10000)%%' and pid <> pg_backend_pid()",
            )[0]
        ):
            time.sleep(0.005)
        other.commit()  # the waiter returns once a snapshot no longer sees it running
        waiter.join(10)
        assert result == [True]
    finally:
        other.close()
        dispatcher.close()


def test_a_commit_racing_with_the_arm_is_notified_or_seen(db_url: str, conn: psycopg.Connection) -> None:
    """200 trials: a business commit whose commit record is held back 20 ms after its wake-up check
    (commit_delay: the window a loaded WAL flush opens) races with a dispatcher going idle (arm_wakeup,
    await_committing, next_due_at). Each time the dispatcher must either see the new row or get the
    NOTIFY; otherwise the row would wait for the 30 s sweep."""
    _subscribe(conn, "{order.cancelled}")
    business = psycopg.connect(db_url, autocommit=True)
    business.execute("set commit_siblings = 0")
    business.execute("set commit_delay = 20000")  # microseconds, between the deferred check and the flush
    dispatcher = _dispatcher(db_url)
    listener = psycopg.connect(db_url, autocommit=True)
    listener.execute("listen webhooks")
    try:
        for trial in range(200):
            conn.execute("delete from webhooks.deliveries")
            conn.execute("update webhooks.wakeup set armed = false")
            go = threading.Barrier(2)

            def commit(trial: int = trial, go: threading.Barrier = go) -> None:
                go.wait()
                business.execute(
                    "select webhooks.emit('order.cancelled', %s, %s, '{}'::jsonb, now())",
                    [trial, f"race:{trial}"],
                )

            emitter = threading.Thread(target=commit)
            emitter.start()
            go.wait()
            time.sleep((trial % 25) / 1000)  # arm 0-24 ms into the business commit
            dispatcher.execute("select webhooks.arm_wakeup('race')")
            dispatcher.execute("select webhooks.await_committing()")
            due = one(dispatcher, "select webhooks.next_due_at()")[0]
            emitter.join(10)
            notified = any(True for _ in listener.notifies(timeout=0 if due else 2, stop_after=1))
            assert due is not None or notified, f"trial {trial}: the row was neither seen nor notified"
            for _ in listener.notifies(timeout=0.0):  # drain a NOTIFY that came with a seen row
                pass
    finally:
        for c in (business, dispatcher, listener):
            c.close()
