"""The answer cache (sql/325) and its worker (waybill/metrics_cache.py).

A leaderboard the views cannot page answers live on a miss and NOTIFYs its key; the worker fills the
key; later pages read the cache until it expires or, for a standard window, until the view's next
refresh. The oracle tests (test_metrics_oracle.py, "cached") prove cached answers exact; these prove
the cache's own rules: what a miss sends, validity, bad keys, the size bound, the roles, fills and
reads racing on real connections, and the worker end to end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections import Counter

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests import metrics_oracle as o
from tests.concurrency import WON, Contenders
from tests.dispatcher.helpers import wait_until
from tests.factories import one
from waybill.cluster import Cluster
from waybill.errors import error_code

ROUNDS = 200
TODAY = dt.datetime.now(dt.UTC).date()
# a week of past days: a period the views cannot page (ranked live, or read from the cache)
WEEK = {"from": str(TODAY - dt.timedelta(days=9)), "to": str(TODAY - dt.timedelta(days=2))}


def _miss_key(
    conn: psycopg.Connection, fn: str = "agent_leaderboard", **args: str
) -> tuple[dict, str | None]:
    """Call the endpoint; return its answer and the key it NOTIFYed (None: none sent)."""
    channel = conn.execute("select metrics.answer_cache_channel()").fetchone()[0]
    conn.execute(f"listen {channel}")
    try:
        body = o.call(conn, fn, **args)[0]
        keys = [n.payload for n in conn.notifies(timeout=0, stop_after=1)]
    finally:
        conn.execute(f"unlisten {channel}")
    return body, (keys[0] if keys else None)


def _fill(conn: psycopg.Connection, key: str, max_bytes: int | None = None) -> bool:
    if max_bytes is None:
        return conn.execute("select metrics.fill_answer_cache(%s)", [key]).fetchone()[0]
    return conn.execute("select metrics.fill_answer_cache(%s, %s)", [key, max_bytes]).fetchone()[0]


def _entries(conn: psycopg.Connection) -> dict[str, tuple]:
    return {
        r[0]: r[1:]
        for r in conn.execute(
            "select e.key, e.total, count(i.*), min(i.ordinal), max(i.ordinal), e.size_bytes"
            " from metrics.answer_cache e left join metrics.answer_cache_items i on i.entry_id = e.id"
            " group by e.key, e.total, e.size_bytes"
        )
    }


def test_a_miss_sends_its_key_and_the_fill_serves_every_page(small_seeded: str) -> None:
    with psycopg.connect(small_seeded, autocommit=True) as conn:
        live, key = _miss_key(
            conn, **WEEK, sort_by="on_time_rate", sort_order="asc", page_size="7", min_deliveries="1"
        )
        assert key is not None
        assert json.loads(key) == {"endpoint": "agent_leaderboard", "from": WEEK["from"], "to": WEEK["to"], "zipCode": None,
                                   "sortBy": "on_time_rate", "sortOrder": "asc", "minDeliveries": 1}  # fmt: skip
        # the default request (the view's own ranks) is cached too: its ranking in one index range
        default, default_key = _miss_key(conn)
        assert json.loads(default_key)["minDeliveries"] == 5 and _fill(conn, default_key) is True
        assert o.call(conn, "agent_leaderboard")[0] == default, "the view's answer, as it was"
        conn.execute("delete from metrics.answer_cache")
        assert _fill(conn, key) is True
        assert _fill(conn, key) is False, "a valid entry is not ranked again"
        total = live["total"]
        assert total > 7, "the data set has more than one page"
        (entry_total, n_items, first, last, _), = _entries(conn).values()  # fmt: skip
        assert (entry_total, n_items, first, last) == (total, total, 1, total)
        pages = []
        for page in range(1, total // 7 + 3):
            args = dict(
                WEEK,
                sort_by="on_time_rate",
                sort_order="asc",
                page_size="7",
                page=str(page),
                min_deliveries="1",
            )
            hit, headers = o.call(conn, "agent_leaderboard", **args)
            ranked = conn.execute(
                "select total, items from metrics.leaderboard_page(%s, %s, null, null, 'on_time_rate', 'asc', 1, %s, 7)",
                [WEEK["from"], WEEK["to"], (page - 1) * 7],
            ).fetchone()
            assert (hit["total"], hit["items"]) == (ranked[0], ranked[1]), page
            max_age = int(headers[0]["Cache-Control"].removeprefix("max-age="))
            assert 1700 < max_age <= 1800, "a cached period: until the entry expires (the leaderboard's TTL)"
            pages.append(hit)
        assert pages[0]["items"] == live["items"]
        assert pages[-1]["items"] == [] and all(p["total"] == total for p in pages)
        assert len({p["asOf"] for p in pages}) == 1, "every page is as of the one fill"


def test_entries_expire_and_a_window_follows_its_view(small_seeded: str) -> None:
    with psycopg.connect(small_seeded, autocommit=True) as conn:
        _, week_key = _miss_key(conn, **WEEK)
        zip_code = one(conn, "select zip_code from metrics.zip_agents order by zip_code limit 1")[0]
        window, zip_key = _miss_key(conn, zip_code=zip_code)  # the 30-day window of one zip code
        assert _fill(conn, week_key) and _fill(conn, zip_key)
        _, key = _miss_key(conn, **WEEK)
        assert key is None, "a hit"
        hit, headers = o.call(conn, "agent_leaderboard", zip_code=zip_code)
        assert hit["asOf"] == window["asOf"], "a window's entry is as of the view it was ranked from"
        assert headers == o.call(conn, "agent_leaderboard")[1], "and cached by clients as the view is"
        # expired: ranked live again, and asked for again
        conn.execute(
            "update metrics.answer_cache set expires_at = now() - interval '1 second' where key = %s",
            [week_key],
        )
        assert _miss_key(conn, **WEEK)[1] == week_key
        # the view refreshed: the window's entry is stale (its as-of is no longer the latest)
        conn.execute("select metrics.refresh('leaderboard')")
        after, key = _miss_key(conn, zip_code=zip_code)
        assert key == zip_key and after["asOf"] != window["asOf"]
        assert _fill(conn, zip_key) is True, "a stale entry is replaced"
        source = "select e.source_as_of = metrics.as_of('leaderboard') from metrics.answer_cache e where e.key = %s"
        assert one(conn, source, [zip_key])[0] is True, "the new entry is ranked from the refreshed view"


def test_an_sla_summary_is_the_views_answer_while_the_view_lasts(small_seeded: str) -> None:
    """An SLA summary of all zip codes or one depends on metrics.sla_summary alone: the cached answer
    is the same JSON, valid until the view refreshes. One agent's is live: never cached."""
    with psycopg.connect(small_seeded, autocommit=True) as conn:
        zip_code = one(conn, "select zip_code from metrics.zip_agents order by zip_code limit 1")[0]
        agent = one(conn, "select min(agent_id) from metrics.agent_daily")[0]
        assert _miss_key(conn, "sla_summary", agent_id=str(agent))[1] is None
        for args in ({}, WEEK, {"zip_code": zip_code}, dict(WEEK, zip_code=zip_code)):
            (live, headers), (_, key) = (
                o.call(conn, "sla_summary", **args),
                _miss_key(conn, "sla_summary", **args),
            )
            assert json.loads(key)["endpoint"] == "sla_summary" and json.loads(key)["zipCode"] == args.get(
                "zip_code"
            )
            assert _fill(conn, key) is True
            hit, hit_headers = o.call(conn, "sla_summary", **args)
            assert _miss_key(conn, "sla_summary", **args)[1] is None, "a hit"
            assert hit == live and hit_headers == headers, args
        assert live["delivered"] > 0, "the data set has deliveries that week"
        conn.execute("select metrics.refresh('sla_summary')")
        after, key = _miss_key(conn, "sla_summary", **WEEK, zip_code=zip_code)
        assert key is not None and after["asOf"] != live["asOf"], "the view refreshed: the entry is stale"
        assert _fill(conn, key) is True


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("not json", "INVALID_ARGUMENT"),
        ("[1, 2]", "INVALID_ARGUMENT"),
        ('{"from": "2026-01-01", "to": "2026-01-08"}', "INVALID_ARGUMENT"),
        ('{"endpoint": "agent_metrics", "from": "2026-01-01", "to": "2026-01-08"}', "INVALID_ARGUMENT"),
        ('{"endpoint": "sla_summary", "from": "2026-01-01"}', "METRICS_INVALID_PERIOD"),
        (
            '{"endpoint": "agent_leaderboard", "from": "2026-02-01", "to": "2026-01-01"}',
            "METRICS_INVALID_PERIOD",
        ),
        (
            '{"endpoint": "agent_leaderboard", "from": "2025-01-01", "to": "2026-06-01"}',
            "METRICS_INVALID_PERIOD",
        ),
        (
            '{"endpoint": "agent_leaderboard", "from": "2026-13-01", "to": "2026-12-01"}',
            "METRICS_INVALID_DATE",
        ),
        (
            '{"endpoint": "agent_leaderboard", "from": "2026-01-01", "to": "2026-01-08", "sortBy": "name"}',
            "METRICS_INVALID_SORT_BY",
        ),
        (
            '{"endpoint": "agent_leaderboard", "from": "2026-01-01", "to": "2026-01-08", "sortOrder": "up"}',
            "METRICS_INVALID_SORT_ORDER",
        ),
        (
            '{"endpoint": "agent_leaderboard", "from": "2026-01-01", "to": "2026-01-08", "zipCode": "1; drop"}',
            "INVALID_ARGUMENT",
        ),
        (
            '{"endpoint": "agent_leaderboard", "from": "2026-01-01", "to": "2026-01-08", "minDeliveries": "-1"}',
            "INVALID_ARGUMENT",
        ),
        (
            '{"endpoint": "agent_leaderboard", "from": "2026-01-01", "to": "2026-01-08", "pad": "'
            + "x" * 600
            + '"}',
            "INVALID_ARGUMENT",
        ),
    ],
)
def test_a_bad_key_is_refused_and_changes_nothing(conn: psycopg.Connection, key: str, code: str) -> None:
    """Anyone may NOTIFY on the channel: the fill validates the key as the endpoint does."""
    with pytest.raises(psycopg.Error) as info:
        _fill(conn, key)
    assert error_code(info.value) == code
    assert _entries(conn) == {}


def test_the_cache_keeps_at_most_max_bytes(small_seeded: str) -> None:
    with psycopg.connect(small_seeded, autocommit=True) as conn:
        keys = []
        for days in range(3, 9):  # six periods, each ranking every agent with a row in it
            args = {"from": str(TODAY - dt.timedelta(days=days)), "to": str(TODAY)}
            keys.append(_miss_key(conn, **args)[1])
        size = {}
        for key in keys:
            assert _fill(conn, key, max_bytes=10_000_000) is True
            size[key] = _entries(conn)[key][4]
            assert size[key] > 1000, "an answer's JSON text"
        cap = size[keys[0]] + size[keys[-1]]
        assert _fill(conn, keys[0], max_bytes=cap) is False, "still valid"
        conn.execute(
            "update metrics.answer_cache set expires_at = now() - interval '1 second' where key = %s",
            [keys[0]],
        )
        assert _fill(conn, keys[0], max_bytes=cap) is True
        kept = _entries(conn)
        assert set(kept) == {keys[0], keys[-1]}, (
            "the newest fill stays; the oldest go first, the expired at once"
        )
        assert sum(v[4] for v in kept.values()) <= cap
        conn.execute("delete from metrics.answer_cache")
        assert _fill(conn, keys[-1], max_bytes=size[keys[-1]] - 1) is False, "an answer larger than the bound"
        assert _entries(conn) == {}


def test_only_the_worker_fills_and_it_reads_nothing_else(cluster: Cluster, db_url: str) -> None:
    key = json.dumps({"endpoint": "agent_leaderboard", "from": "2026-01-01", "to": "2026-01-08"})
    with psycopg.connect(db_url, autocommit=True) as conn:
        for role in ("admin", "platform_admin", "service", "agent", "anon", "dispatcher"):
            with conn.transaction(), pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"set local role {role}")
                _fill(conn, key)
    name = conninfo_to_dict(db_url)["dbname"]
    with psycopg.connect(cluster.url(name, user="metrics_cache"), autocommit=True) as worker:
        assert _fill(worker, key) is True
        assert worker.execute("show statement_timeout").fetchone()[0] == "30s"
        for table in (
            "core.orders",
            "metrics.answer_cache",
            "metrics.agent_daily",
            "webhooks.deliveries",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                worker.execute(f"select 1 from {table} limit 1")


def test_fills_and_reads_race_without_loss_doubling_or_a_torn_page(small_seeded: str) -> None:
    """8 connections at once, 200 rounds: 6 fill three keys (two per key), 2 read pages of those keys.
    Every round starts with every entry expired, so each round replaces each key's entry. After each
    round: one entry per key, its items exactly 1..total; exactly one fill per key won; every page
    read equals the page ranked live (a read sees an entry and its items from one snapshot)."""
    args_of = [
        dict(WEEK),
        dict(WEEK, sort_by="success_rate", sort_order="asc", min_deliveries="1"),
        {
            "from": WEEK["from"],
            "to": str(TODAY - dt.timedelta(days=1)),
            "sort_by": "avg_delivery_minutes",
            "min_deliveries": "1",
        },
    ]
    with psycopg.connect(small_seeded, autocommit=True) as conn:
        keys, expected = [], []
        for args in args_of:
            body, key = _miss_key(conn, page="2", page_size="5", **args)
            keys.append(key)
            expected.append((body["total"], body["items"]))
        assert all(keys) and len(set(keys)) == 3 and all(e[1] for e in expected)

    def filler(key: str):
        return lambda c: outcomes_by_key[key].append(
            c.execute("select metrics.fill_answer_cache(%s)", [key]).fetchone()[0]
        )

    def reader(i: int):
        def read(c: psycopg.Connection) -> None:
            body = o.call(c, "agent_leaderboard", page="2", page_size="5", **args_of[i])[0]
            reads.append((i, body["total"], body["items"]))

        return read

    contenders = Contenders(small_seeded, 8)
    try:
        with psycopg.connect(small_seeded, autocommit=True) as conn:
            for _ in range(ROUNDS):
                conn.execute("update metrics.answer_cache set expires_at = now() - interval '1 second'")
                outcomes_by_key: dict[str, list[bool]] = {k: [] for k in keys}
                reads: list[tuple] = []
                calls = [filler(keys[i % 3]) for i in range(6)] + [reader(0), reader(1)]
                outcomes = contenders.round(calls)
                assert outcomes == [WON] * 8, outcomes
                assert all(Counter(v) == Counter({True: 1, False: 1}) for v in outcomes_by_key.values()), (
                    outcomes_by_key
                )
                entries = _entries(conn)
                assert set(entries) == set(keys)
                for key, exp in zip(keys, expected, strict=True):
                    assert entries[key][:4] == (exp[0], exp[0], 1, exp[0]), (key, entries[key])
                for i, total, items in reads:
                    assert (total, items) == expected[i]
    finally:
        contenders.close()


def test_the_worker_fills_misses_shrugs_off_bad_keys_and_stops_cleanly(
    cluster: Cluster, small_seeded: str
) -> None:
    """A garbage NOTIFY and a cancelled fill are logged and dropped (never retried in a loop); the
    next miss is filled; SIGTERM exits 0 and closes both connections."""
    name = conninfo_to_dict(small_seeded)["dbname"]
    env = dict(
        os.environ,
        WAYBILL_METRICS_CACHE_DATABASE_URL=cluster.url(name, user="metrics_cache"),
        WAYBILL_LOG_LEVEL="info",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "waybill", "metrics-cache"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        with psycopg.connect(small_seeded, autocommit=True) as conn:
            listening = (
                "select count(*) from pg_stat_activity where usename = 'metrics_cache' and datname = %s"
            )
            wait_until(lambda: one(conn, listening, [name])[0] >= 2, what="the worker's two connections")
            channel = one(conn, "select metrics.answer_cache_channel()")[0]
            conn.execute("select pg_notify(%s, 'not a key')", [channel])  # anyone may NOTIFY
            # a fill cancelled while it waits for the fill lock (as statement_timeout would cancel it)
            with psycopg.connect(small_seeded) as holder:
                holder.execute(
                    "select pg_advisory_xact_lock(hashtextextended('metrics.fill_answer_cache', 0))"
                )
                _, cancelled_key = _miss_key(conn, **WEEK, sort_by="on_time_rate", min_deliveries="1")
                waiting = (
                    "select pid from pg_stat_activity where usename = 'metrics_cache' and datname = %s"
                    " and wait_event_type = 'Lock' and query like '%%fill_answer_cache%%'"
                )
                pid = wait_until(
                    lambda: (conn.execute(waiting, [name]).fetchone() or [None])[0], what="the blocked fill"
                )
                assert one(conn, "select pg_cancel_backend(%s)", [pid])[0]
                holder.rollback()
            live, key = _miss_key(conn, **WEEK, sort_by="success_rate", min_deliveries="1")
            wait_until(lambda: key in _entries(conn), what="the worker's fill")
            hit = o.call(conn, "agent_leaderboard", **WEEK, sort_by="success_rate", min_deliveries="1")[0]
            assert (hit["total"], hit["items"]) == (live["total"], live["items"])
            assert hit["asOf"] != live["asOf"], "as of the fill, not of the live answer"
            assert worker.poll() is None, "a bad key does not stop the worker"
            health = one(conn, "select api.health_metrics()")[0]["answerCache"]
            assert health["workerConnections"] == 2 and health["answers"] == health["valid"] == 1, health
            assert health["items"] == live["total"] and health["bytes"] > 0, health
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        with psycopg.connect(small_seeded, autocommit=True) as conn:
            health = lambda: one(conn, "select api.health_metrics()")[0]["answerCache"]  # noqa: E731
            wait_until(lambda: health()["workerConnections"] == 0, what="the worker's connections closed")
        events = [json.loads(line) for line in worker.stderr.read().splitlines() if line.startswith("{")]
        names = [e["event"] for e in events]
        assert "metrics_cache_fill_failed" in names and "metrics_cache_fill_succeeded" in names, names
        failed = [e for e in events if e["event"] == "metrics_cache_fill_failed"]
        assert [(e["error_code"], e["service"]) for e in failed] == [
            ("INVALID_ARGUMENT", "metrics-cache"),
            ("STATEMENT_TIMEOUT", "metrics-cache"),
        ], failed
        assert failed[1]["key"] == cancelled_key and "metrics_cache_db_failed" not in names, names
        assert names.count("metrics_cache_fill_succeeded") == 1, "the cancelled key was not filled again"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
