"""The lifecycle bench checks itself after every phase, so it cannot silently measure failures:
no errors, DELIVERED orders = completed lifecycles, every ledger transaction sums to zero, one
CAPTURE posting per captured payment, baseline rows = counted inserts.
"""

from __future__ import annotations

import psycopg


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
