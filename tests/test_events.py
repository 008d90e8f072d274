"""Each critical event is emitted where it happens and lands in the log, in the LogEntry shape."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.factories import offered_assignment, one, party
from waybill import log
from waybill.cluster import Cluster
from waybill.errors import error_code
from waybill.log import LogEntry
from waybill.settings import PROJECT_ROOT

EVENTS_DOC = PROJECT_ROOT / "docs" / "events.md"


def _tag(conn: psycopg.Connection) -> str:
    """Give the session an X-Request-Id (as the HTTP front would) and return it."""
    rid = str(uuid.uuid4())
    conn.execute("select set_config('request.headers', %s, false)", [json.dumps({"x-request-id": rid})])
    return rid


def _find(log_file: Path, event: str, request_id: str, timeout: float = 10.0) -> dict:
    """Poll the server's jsonlog until our structured line appears (the collector writes async)."""
    deadline = time.monotonic() + timeout
    while True:
        for line in log_file.read_text(errors="replace").splitlines():
            if request_id not in line:
                continue
            outer = json.loads(line)
            msg = outer.get("message", "")
            if outer.get("error_severity") == "LOG" and msg.startswith("{"):
                inner = json.loads(msg)
                if inner.get("event") == event and inner.get("request_id") == request_id:
                    LogEntry.model_validate(inner)  # the one shape
                    return inner
        if time.monotonic() > deadline:
            raise AssertionError(f"{event} for request {request_id} not in {log_file}")
        time.sleep(0.05)


def _raises(conn: psycopg.Connection, sql: str, params: list) -> str:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params)
    return error_code(info.value)


def test_payment_and_refund_events(cluster: Cluster, conn: psycopg.Connection) -> None:
    p = party(conn)
    rid = _tag(conn)
    order_id = one(
        conn,
        "select id from core.create_order(%s, %s, %s, 4200, 'EUR')",
        [p["customer"], p["seller"], p["zip"]],
    )[0]
    payment_id = one(conn, "select id from core.payments where order_id = %s", [order_id])[0]
    conn.execute("select core.capture_payment(%s, %s)", [payment_id, f"pi_{rid}"])
    refund_id = one(conn, "select id from core.initiate_refund(%s, 1000)", [payment_id])[0]
    conn.execute("select core.complete_refund(%s)", [refund_id])
    failing = one(
        conn,
        "select id from core.create_order(%s, %s, %s, 100, 'EUR')",
        [p["customer"], p["seller"], p["zip"]],
    )[0]
    failing_payment = one(conn, "select id from core.payments where order_id = %s", [failing])[0]
    conn.execute("select core.fail_payment(%s, 'card declined')", [failing_payment])

    captured = _find(cluster.log_file(), "payment_capture_succeeded", rid)
    assert (captured["payment_id"], captured["amount"], captured["service"]) == (payment_id, 4200, "postgres")
    assert _find(cluster.log_file(), "refund_initiate_succeeded", rid)["refund_id"] == refund_id
    assert _find(cluster.log_file(), "refund_complete_succeeded", rid)["amount"] == 1000
    failed = _find(cluster.log_file(), "payment_capture_failed", rid)
    assert (failed["payment_id"], failed["level"]) == (failing_payment, "warn")


def test_ledger_invariant_violated_survives_rollback(cluster: Cluster, conn: psycopg.Connection) -> None:
    p = party(conn)
    rid = _tag(conn)
    wallet = one(conn, "select core.wallet_for('SELLER', %s, 'EUR')", [p["seller"]])[0]
    new_tx = "insert into core.ledger_transactions (kind, currency) values ('CAPTURE', 'EUR') returning id"
    with pytest.raises(psycopg.Error) as info, conn.transaction():
        tx = one(conn, new_tx)[0]
        conn.execute(
            "insert into core.ledger_entries (transaction_id, wallet_id, amount) values (%s, %s, 7)",
            [tx, wallet],
        )
    assert error_code(info.value) == "LEDGER_UNBALANCED"
    assert one(conn, "select count(*) from core.ledger_transactions where id = %s", [tx])[0] == 0
    line = _find(cluster.log_file(), "ledger_invariant_violated", rid)
    assert (line["transaction_id"], line["sum"], line["error_code"]) == (tx, 7, "LEDGER_UNBALANCED")


def test_order_status_conflict(cluster: Cluster, conn: psycopg.Connection) -> None:
    p = party(conn)
    rid = _tag(conn)
    order_id = one(
        conn,
        "select id from core.create_order(%s, %s, %s, 500, 'EUR')",
        [p["customer"], p["seller"], p["zip"]],
    )[0]
    code = _raises(conn, "select core.cancel_order(%s, null, %s)", [order_id, 7])  # stale version
    assert code == "ORDER_STATUS_CONFLICT"
    assert _find(cluster.log_file(), "order_status_conflict", rid)["order_id"] == order_id


def test_assignment_accept_conflict(cluster: Cluster, conn: psycopg.Connection) -> None:
    p = party(conn, agents=2)
    _, assignment_id = offered_assignment(conn, p)
    rid = _tag(conn)
    conn.execute("select core.accept_assignment(%s, %s)", [assignment_id, p["agents"][0]])
    code = _raises(conn, "select core.accept_assignment(%s, %s)", [assignment_id, p["agents"][1]])
    assert code == "ASSIGNMENT_ALREADY_TAKEN"
    line = _find(cluster.log_file(), "assignment_accept_conflict", rid)
    assert (line["assignment_id"], line["winner_agent_id"]) == (assignment_id, p["agents"][0])


def test_assignment_lock_timeout_after_five_seconds(
    cluster: Cluster, conn: psycopg.Connection, db_url: str
) -> None:
    p = party(conn)
    _, assignment_id = offered_assignment(conn, p)
    holder = psycopg.connect(db_url)
    holder.execute("select 1 from core.shipping_assignments where id = %s for update", [assignment_id])
    try:
        rid = _tag(conn)
        started = time.monotonic()
        code = _raises(conn, "select core.accept_assignment(%s, %s)", [assignment_id, p["agents"][0]])
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert code == "ASSIGNMENT_LOCK_TIMEOUT"
    assert 4.5 < waited < 30
    assert one(conn, "select retryable from ops.error_codes where code = %s", [code])[0] is True
    assert _find(cluster.log_file(), "assignment_lock_timeout", rid)["assignment_id"] == assignment_id
    # The row was never taken: once the lock is gone the same call succeeds.
    conn.execute("select core.accept_assignment(%s, %s)", [assignment_id, p["agents"][0]])


def test_slow_statement_reaches_the_server_log(cluster: Cluster, db_url: str) -> None:
    """log_min_duration_statement = 100 ms: a slow statement is in the server's jsonlog, whoever ran it.
    (The Python-side db_query_slow comes from gateway/: tests/gateway/test_context.py.)"""
    marker = f"slow_{time.monotonic_ns()}"
    with psycopg.connect(db_url) as conn:
        conn.execute(f"select pg_sleep(0.2) as {marker}")
    deadline = time.monotonic() + 10
    while True:
        lines = [x for x in cluster.log_file().read_text(errors="replace").splitlines() if marker in x]
        if lines:
            break
        assert time.monotonic() < deadline, "slow statement not in the server log"
        time.sleep(0.05)
    entry = json.loads(lines[0])
    assert entry["message"].startswith("duration: ") and float(entry["message"].split()[1]) >= 200


def test_events_doc_lists_exactly_the_emitted_events() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \| (?:info|warn|error)", EVENTS_DOC.read_text(), re.M))
    emitted = set()
    for path in (PROJECT_ROOT / "sql").glob("*.sql"):
        emitted |= set(re.findall(r"ops\.log_event\(\s*'([a-z_]+)'", path.read_text()))
    python = [p for d in ("waybill", "gateway", "dispatcher") for p in (PROJECT_ROOT / d).glob("*.py")]
    for path in python:
        text = path.read_text()
        emitted |= set(re.findall(r'\.(?:warning|info|error)\(\s*"([a-z_]+)"', text))
        emitted |= set(re.findall(r'^\s+[a-z]+_event = "([a-z_]+)"', text, re.M))  # waybill/listen.py
        emitted |= set(
            re.findall(r'\("[a-z]+", "([a-z_]+_logged)"\)', text)
        )  # std loggers bridged to LogEntry
    assert documented == emitted
    assert len(documented) >= 9


def test_log_entry_rejects_bad_event_names() -> None:
    with pytest.raises(ValueError):
        LogEntry.model_validate(
            {"ts": "2026-01-01T00:00:00Z", "level": "info", "event": "PaymentDone", "service": "x"}
        )


def test_log_lines_are_emitted_for_concurrent_threads(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure("waybill-tests")
    threads = [
        threading.Thread(target=lambda i=i: log.get_logger().info("bench_thread_done", n=i)) for i in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert sorted(x["n"] for x in lines if x["event"] == "bench_thread_done") == [0, 1, 2, 3, 4]


def test_python_log_lines_have_the_logentry_shape(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure("waybill-tests")
    log.get_logger(request_id="r-1").warning("order_export_failed", error_code="X", rows=3)
    line = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert list(line)[:7] == ["ts", "level", "event", "service", "request_id", "duration_ms", "error_code"]
    entry = LogEntry.model_validate(line)
    assert (entry.level, entry.service, entry.request_id, line["rows"]) == ("warn", "waybill-tests", "r-1", 3)
    with pytest.raises(ValueError):
        log.get_logger().info("NotAnEvent")
