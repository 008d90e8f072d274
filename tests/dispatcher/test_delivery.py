"""The dispatcher against a real database and real loopback receivers; the clock moves, nobody sleeps."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import httpx
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from tests.dispatcher.helpers import Answer, DispatcherThread, Hook, as_admin, subscribe, wait_until

BASE_DELAYS = [30, 60, 120, 300, 900]  # webhooks.retry_schedule, plus up to 10 % jitter (settings)


def emit(
    conn: psycopg.Connection, n: int = 1, event_type: str = "order.confirmed", tag: str = "t"
) -> list[str]:
    """n events through the outbox's own writer (webhooks.emit), one delivery per matching subscription."""
    rows = conn.execute(
        "select webhooks.emit(%s, g, %s || ':' || g, jsonb_build_object('id', g, 'amount', 4200, "
        "'currency', 'EUR'), now()) from generate_series(1, %s) g",
        [event_type, f"{event_type}:{tag}", n],
    ).fetchall()
    return [str(r[0]) for r in rows]


def attempts(conn: psycopg.Connection, delivery_id: int) -> list[tuple]:
    return conn.execute(
        "select attempt, status_code, error_class, trigger, created_at from webhooks.attempts "
        "where delivery_id = %s order by attempt",
        [delivery_id],
    ).fetchall()


def delivery(conn: psycopg.Connection, subscription_id: int) -> tuple:
    return conn.execute(
        "select id, status, attempts, next_attempt_at from webhooks.deliveries where subscription_id = %s",
        [subscription_id],
    ).fetchone()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def test_delivers_the_stored_body_signed_and_verifiable(
    conn: psycopg.Connection, db_url: str, hook: Hook
) -> None:
    sub, secret = subscribe(conn, hook.url(), ["order.confirmed"])
    ids = emit(conn, 3)
    with DispatcherThread(db_url) as d:
        wait_until(lambda: len(hook.received) == 3, what="3 webhooks")
        wait_until(
            lambda: conn.execute(
                "select count(*) = 3 from webhooks.deliveries where status = 'DELIVERED'"
            ).fetchone()[0],
            what="DELIVERED",
        )
        port = d.dispatcher.status_port
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    bodies = dict(conn.execute("select e.id::text, webhooks.event_body(e) from webhooks.events e").fetchall())
    for r in hook.received:
        payload = Webhook(secret).verify(r.body, r.headers)  # the library, unmodified
        assert r.body == bodies[r.headers["webhook-id"]].encode()  # byte for byte
        assert payload["eventId"] == r.headers["webhook-id"] and payload["eventType"] == "order.confirmed"
        assert r.headers["user-agent"].startswith("Waybill-Webhooks/")
    assert sorted(hook.ids()) == sorted(ids)
    assert conn.execute(
        "select count(*), bool_and(status_code = 200 and error_class is null and trigger = 'scheduled') "
        "from webhooks.attempts"
    ).fetchone() == (3, True)
    assert health.status_code == 200 and health.json()["ok"] is True
    assert 'waybill_webhook_deliveries_total{outcome="delivered"} 3.0' in metrics
    assert "waybill_webhook_attempt_duration_seconds_count 3.0" in metrics
    assert "waybill_webhook_claim_batch_size_count" in metrics and "waybill_webhook_backlog" in metrics
    beat = conn.execute("select info from webhooks.dispatchers").fetchone()[0]
    assert beat["state"] == "stopped" and beat["status_port"] == port


def _drive_failures(
    d: DispatcherThread, conn: psycopg.Connection, delivery_id: int, tries: int
) -> list[float]:
    """Let `tries` failed tries happen, moving the clock to each retry; return the delays chosen."""
    delays = []
    for n in range(1, tries + 1):
        wait_until(lambda n=n: len(attempts(conn, delivery_id)) == n, what=f"try {n}")
        row = conn.execute(
            "select status, next_attempt_at from webhooks.deliveries where id = %s", [delivery_id]
        ).fetchone()
        if row[1] is None:
            break
        recorded = attempts(conn, delivery_id)[-1][4]
        delay = (row[1] - recorded).total_seconds()
        delays.append(delay)
        d.advance(delay + 0.01)
    return delays


def test_retry_schedule_then_failed_after_five_retries(conn: psycopg.Connection, db_url: str) -> None:
    hook = Hook(lambda r: Answer(500, body=b"boom"))
    try:
        sub, _ = subscribe(conn, hook.url())
        emit(conn, 1)
        with DispatcherThread(db_url) as d:
            delivery_id = delivery(conn, sub)[0]
            delays = _drive_failures(d, conn, delivery_id, 6)
            wait_until(lambda: delivery(conn, sub)[1] == "FAILED", what="FAILED")
            d.advance(3600)  # nothing is due any more: no 7th try
            wait_until(
                lambda: d.dispatcher.metrics.deliveries.labels("failed")._value.get() == 1, what="metric"
            )
        assert len(delays) == 5
        for delay, base in zip(delays, BASE_DELAYS, strict=True):
            assert base <= delay <= base * 1.1 + 0.01, (delays, base)
        tries = attempts(conn, delivery_id)
        assert [(a[1], a[2]) for a in tries] == [(500, "http_5xx")] * 6
        assert len(hook.received) == 6 and len(set(hook.ids())) == 1  # the same webhook-id on every retry
        assert delivery(conn, sub)[1:3] == ("FAILED", 6)
    finally:
        hook.close()


def test_410_fails_the_delivery_and_disables_the_subscription(conn: psycopg.Connection, db_url: str) -> None:
    hook = Hook(lambda r: Answer(410))
    try:
        sub, _ = subscribe(conn, hook.url())
        emit(conn, 1, tag="a")
        with DispatcherThread(db_url):
            wait_until(lambda: delivery(conn, sub)[1] == "FAILED", what="FAILED")
            status = conn.execute(
                "select status, disabled_reason from webhooks.subscriptions where id = %s", [sub]
            ).fetchone()
            assert status == ("DISABLED", "GONE")
            emit(conn, 2, tag="b")  # later events for it are SKIPPED, never sent
            skipped = conn.execute(
                "select count(*) from webhooks.deliveries where subscription_id = %s and status = 'SKIPPED'",
                [sub],
            ).fetchone()[0]
        assert skipped == 2 and len(hook.received) == 1
    finally:
        hook.close()


def test_retry_after_is_honoured_and_clamped_to_an_hour(conn: psycopg.Connection, db_url: str) -> None:
    hook = Hook(
        lambda r: (
            Answer(429, {"retry-after": "7200"}) if r.path == "/long" else Answer(503, {"retry-after": "200"})
        )
    )
    try:
        long_sub, _ = subscribe(conn, hook.url("/long"))
        short_sub, _ = subscribe(conn, hook.url("/short"))
        emit(conn, 1)
        with DispatcherThread(db_url):
            for sub in (long_sub, short_sub):
                wait_until(lambda sub=sub: delivery(conn, sub)[2] == 1, what="one try")
        for sub, low, high in ((long_sub, 3600, 3600.01), (short_sub, 200, 200 * 1.1 + 0.01)):
            delivery_id, status, _, next_at = delivery(conn, sub)
            recorded = attempts(conn, delivery_id)[0][4]
            assert status == "PENDING"
            assert low <= (next_at - recorded).total_seconds() <= high
    finally:
        hook.close()


def test_private_address_refused_by_default(conn: psycopg.Connection, db_url: str, hook: Hook) -> None:
    sub, _ = subscribe(conn, hook.url())
    emit(conn, 1)
    with DispatcherThread(db_url, allowlist=()):
        wait_until(lambda: delivery(conn, sub)[2] == 1, what="one try")
    assert [(a[1], a[2]) for a in attempts(conn, delivery(conn, sub)[0])] == [
        (None, "refused_private_address")
    ]
    assert hook.received == []


def test_timeout_hanging_receiver_and_redirect(conn: psycopg.Connection, db_url: str) -> None:
    target = Hook()
    hook = Hook(
        lambda r: Answer(delay=3) if r.path == "/hang" else Answer(307, {"location": target.url("/moved")})
    )
    try:
        hang, _ = subscribe(conn, hook.url("/hang"))
        moved, _ = subscribe(conn, hook.url("/redirect"))
        emit(conn, 1)
        with DispatcherThread(db_url, http_timeout=0.5, lease_seconds=2):
            for sub in (hang, moved):
                wait_until(lambda sub=sub: delivery(conn, sub)[2] == 1, what="one try")
        hung = conn.execute(
            "select error_class, duration_ms from webhooks.attempts a join webhooks.deliveries d "
            "on d.id = a.delivery_id where d.subscription_id = %s",
            [hang],
        ).fetchone()
        assert hung[0] == "timeout" and 400 <= hung[1] < 2000
        assert [(a[1], a[2]) for a in attempts(conn, delivery(conn, moved)[0])] == [(307, "http_3xx")]
        assert target.received == []  # the redirect was not followed
        assert delivery(conn, hang)[1] == delivery(conn, moved)[1] == "PENDING"
    finally:
        hook.close()
        target.close()


def test_manual_retry_and_bulk_recover_send_again(conn: psycopg.Connection, db_url: str) -> None:
    healthy = {"ok": False}
    hook = Hook(lambda r: Answer(200) if healthy["ok"] else Answer(500))
    try:
        sub, _ = subscribe(conn, hook.url())
        since = conn.execute("select now() - interval '1 minute'").fetchone()[0]
        emit(conn, 3)
        ids = [r[0] for r in conn.execute("select id from webhooks.deliveries order by id").fetchall()]
        with DispatcherThread(db_url) as d:
            for n in range(1, 7):  # all three fail 6 times; 1,000 s is past any retry delay
                wait_until(lambda n=n: conn.execute(
                    "select bool_and(attempts >= %s and status <> 'SENDING') from webhooks.deliveries",
                    [n]).fetchone()[0], what=f"try {n}")  # fmt: skip
                d.advance(1000)
            wait_until(
                lambda: conn.execute(
                    "select count(*) = 3 from webhooks.deliveries where status = 'FAILED'"
                ).fetchone()[0],
                what="3 FAILED",
            )
            healthy["ok"] = True
            row = as_admin(conn, "select to_jsonb(r) from api.retry_webhook_delivery(%s) r", [ids[0]])[0]
            assert row["status"] == "PENDING"
            d.wake()
            wait_until(lambda: conn.execute(
                "select status = 'DELIVERED' from webhooks.deliveries where id = %s", [ids[0]]).fetchone()[0],
                what="manual retry delivered")  # fmt: skip
            requeued = as_admin(conn, "select api.recover_webhook_deliveries(%s, %s)", [sub, since])[0]
            assert requeued == {"requeued": 2}
            d.wake()
            wait_until(
                lambda: conn.execute(
                    "select count(*) = 3 from webhooks.deliveries where status = 'DELIVERED'"
                ).fetchone()[0],
                what="all delivered",
            )
        triggers = conn.execute(
            "select delivery_id, trigger from webhooks.attempts where status_code = 200 order by delivery_id"
        ).fetchall()
        assert triggers == [(ids[0], "manual"), (ids[1], "recover"), (ids[2], "recover")]
        assert len(hook.received) == 3 * 6 + 3
    finally:
        hook.close()


def test_disabled_then_enabled_replays_what_it_missed(
    conn: psycopg.Connection, db_url: str, hook: Hook
) -> None:
    sub, _ = subscribe(conn, hook.url())
    since = conn.execute("select now()").fetchone()[0]
    as_admin(conn, "select api.disable_webhook_subscription(%s)", [sub])
    missed = emit(conn, 4)
    with DispatcherThread(db_url) as d:
        assert (
            conn.execute("select count(*) from webhooks.deliveries where status = 'SKIPPED'").fetchone()[0]
            == 4
        )
        answer = as_admin(conn, "select api.enable_webhook_subscription(%s, %s)", [sub, since])[0]
        assert answer["requeued"] == 4 and answer["status"] == "ACTIVE"
        d.wake()
        wait_until(lambda: len(hook.received) == 4, what="the 4 missed events")
    assert sorted(hook.ids()) == sorted(missed)


def test_one_slow_receiver_holds_at_most_its_in_flight_limit(conn: psycopg.Connection, db_url: str) -> None:
    hook = Hook(lambda r: Answer(delay=0.3) if r.path == "/slow" else Answer())
    try:
        slow, _ = subscribe(conn, hook.url("/slow"), ["order.cancelled"])
        fast, _ = subscribe(conn, hook.url("/fast"), ["order.confirmed"])
        emit(conn, 40, "order.cancelled")
        emit(conn, 20, "order.confirmed")
        with DispatcherThread(db_url, per_subscription=4):
            wait_until(lambda: len([r for r in hook.received if r.path == "/fast"]) == 20, what="fast ones")
            slow_done = conn.execute(
                "select count(*) from webhooks.deliveries where subscription_id = %s and status = 'DELIVERED'",
                [slow],
            ).fetchone()[0]
            wait_until(lambda: len(hook.received) == 60, timeout=30, what="all 60")
        assert slow_done < 40  # the fast subscription did not wait behind the slow one
        assert hook.max_in_flight["/slow"] <= 4
    finally:
        hook.close()


def test_secret_rotation_signs_with_both_secrets(conn: psycopg.Connection, db_url: str, hook: Hook) -> None:
    sub, old = subscribe(conn, hook.url())
    new = as_admin(conn, "select api.rotate_webhook_secret(%s, 3600)", [sub])[0]["secret"]
    emit(conn, 1)
    with DispatcherThread(db_url):
        wait_until(lambda: hook.received, what="a webhook")
    r = hook.received[0]
    assert len(r.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(r.body, r.headers) == Webhook(new).verify(r.body, r.headers)
    assert json.loads(r.body)["eventId"] == r.headers["webhook-id"]


def test_clock_is_what_the_schedule_follows(conn: psycopg.Connection, db_url: str) -> None:
    """A retry 30 s out is not sent until the dispatcher's clock passes it (no wall-clock wait)."""
    calls = {"n": 0}

    def answer(r):
        calls["n"] += 1
        return Answer(500) if calls["n"] == 1 else Answer(200)

    hook = Hook(answer)
    try:
        sub, _ = subscribe(conn, hook.url())
        emit(conn, 1)
        with DispatcherThread(db_url) as d:
            wait_until(lambda: delivery(conn, sub)[2] == 1, what="first try")
            d.wake()
            assert len(hook.received) == 1
            d.advance(timedelta(seconds=34).total_seconds())
            wait_until(lambda: delivery(conn, sub)[1] == "DELIVERED", what="retry delivered")
        assert isinstance(delivery(conn, sub)[3], datetime | None)
    finally:
        hook.close()
