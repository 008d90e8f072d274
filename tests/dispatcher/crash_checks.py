"""The invariants every crash trial checks on its own rows (tests/dispatcher/test_crash.py)."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from tests.dispatcher.helpers import Hook

Key = tuple[str, str]  # (the subscription URL's path, webhook-id = event id)


def rows_of(conn: psycopg.Connection, ids: list[str]) -> list[dict[str, Any]]:
    """The deliveries of these events, each with its key and its attempts in order."""
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select d.id, d.event_id::text as event_id, s.url, d.status, d.attempts, d.lease_owner, "
            "       d.lease_until, coalesce(array_agg(a.attempt order by a.attempt, a.id) "
            "                               filter (where a.id is not null), '{}') as numbers, "
            "       coalesce(array_agg(a.error_class order by a.attempt, a.id) "
            "                filter (where a.id is not null), '{}') as classes "
            "  from webhooks.deliveries d join webhooks.subscriptions s on s.id = d.subscription_id "
            "  left join webhooks.attempts a on a.delivery_id = d.id "
            " where d.event_id = any(%s::uuid[]) group by d.id, s.url",
            [ids],
        )
        .fetchall()
    )
    for r in rows:
        r["key"] = (urlsplit(r["url"]).path, r["event_id"])
    return rows


def count(conn: psycopg.Connection, ids: list[str] | None, where: str) -> int:
    sql = f"select count(*) from webhooks.deliveries where ({where})"
    if ids is None:
        return conn.execute(sql).fetchone()[0]
    return conn.execute(sql + " and event_id = any(%s::uuid[])", [ids]).fetchone()[0]


def delivered_all(conn: psycopg.Connection, ids: list[str], subscriptions: int) -> bool:
    return count(conn, ids, "status = 'DELIVERED'") == len(ids) * subscriptions


def dispatcher_backends(conn: psycopg.Connection) -> int:
    return conn.execute(
        "select count(*) from pg_stat_activity where datname = current_database() and usename = 'dispatcher'"
    ).fetchone()[0]


def listener_pid(conn: psycopg.Connection) -> int | None:
    """The backend pid of the dispatcher's LISTEN connection once it listens, else None."""
    row = conn.execute(
        "select pid from pg_stat_activity where datname = current_database() "
        "and application_name = 'waybill-dispatcher-listener' and query ilike 'listen%%' limit 1"
    ).fetchone()
    return row[0] if row else None


def idle_and_armed(conn: psycopg.Connection) -> bool:
    """The dispatcher went idle and waits for a NOTIFY: it armed the wake-up and has read the next due
    time since (its connection is idle after next_due_at), or it armed more than a second ago.

    A commit racing with a dispatcher that is arming can miss it (sql/210_webhooks_emit.sql: the
    sweep covers that window); a test proving that a NOTIFY wakes it emits only after this holds."""
    return conn.execute(
        "select w.armed and (w.armed_at < now() - interval '1 second' or exists ("
        "  select from pg_stat_activity a where a.datname = current_database() and a.usename = 'dispatcher'"
        "   and a.state = 'idle' and a.query = 'select webhooks.next_due_at()' and a.state_change >= w.armed_at))"
        "  from webhooks.wakeup w where w.id"
    ).fetchone()[0]


def assert_trial(
    conn: psycopg.Connection,
    hook: Hook,
    ids: list[str],
    *,
    subscriptions: int,
    in_flight: set[Key],
    trial: int,
    tries: int = 1,
) -> set[Key]:
    """All of a trial's invariants; returns the keys recovered from an expired lease.

    - every delivery DELIVERED: as many as events x subscriptions;
    - its attempts rows numbered 1..attempts, no number twice, as many as the counter says;
    - `tries` tries each, plus one lease_expired try for a row in flight at a kill (none for others);
    - the receiver got every (subscription, webhook-id) once; twice only for a row in flight at a kill.
    """
    rows = rows_of(conn, ids)
    assert len(rows) == len(ids) * subscriptions, (trial, len(rows))
    assert all(r["status"] == "DELIVERED" for r in rows), (
        trial,
        [r for r in rows if r["status"] != "DELIVERED"],
    )
    recovered: set[Key] = set()
    for r in rows:
        assert r["numbers"] == list(range(1, r["attempts"] + 1)), (trial, r)  # no attempt number twice
        lost = r["classes"].count("lease_expired")
        assert r["classes"][-1] is None, (trial, r)  # the last try is the 2xx
        if r["key"] in in_flight:
            assert lost == 1 and r["attempts"] == tries + 1, (trial, r)
            recovered.add(r["key"])
        else:
            assert lost == 0 and r["attempts"] == tries, (trial, r)
    wanted = {r["key"] for r in rows}
    with hook.lock:
        got = Counter(key for x in hook.received if (key := (x.path, x.headers["webhook-id"])) in wanted)
    assert set(got) == wanted, (trial, wanted - set(got))  # nothing lost
    twice = {k for k, n in got.items() if n > 1}
    assert twice <= in_flight, (trial, twice - in_flight)  # duplicates only among rows in flight at a kill
    assert max(got.values()) <= 2, (trial, got.most_common(3))
    return recovered
