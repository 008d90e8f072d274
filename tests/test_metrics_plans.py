"""The live metrics endpoints plan each of their statements once per session, whatever the arguments
(0027). PL/pgSQL keeps a statement's generic plan only when it looks no dearer than a custom one; a
page with a parameter limit or a filter written "x is null or column = x" never did, and was planned
again on every call: up to 0.14 ms of a 0.34 ms call at 1M assignments. pg_stat_statements counts
the plans (track_planning, a superuser setting of this session only)."""

from __future__ import annotations

import itertools

import psycopg

from tests import metrics_oracle as o

CALLS = 30
# A statement planned per call shows one plan per call; a cached plan is planned again only when
# invalidated (an autovacuum ANALYZE of a table it reads, say): once or twice in a run.
MOST_REPLANS = 2


def _requests(conn: psycopg.Connection) -> list[tuple[str, dict]]:
    """CALLS calls of each live endpoint, cycling through different agents, zip codes, pages and
    cursors: a statement planned per call shows as many plans as calls."""
    agents = [r[0] for r in conn.execute(
        "select agent_id from core.assignment_status_history where agent_id is not null"
        " group by agent_id order by count(*) desc limit 5"
    )]  # fmt: skip
    zips = [r[0] for r in conn.execute("select zip_code from metrics.geographic_coverage order by zip_code")]
    cursors = []
    for agent in agents:
        page, _ = o.call(conn, "agent_activity", agent_id=str(agent), page_size="3")
        cursors.append((agent, page["nextCursor"]))
    assert len(agents) == 5 and len(zips) >= 2 and all(c for _, c in cursors)
    shapes = itertools.cycle(
        [("agent_activity", {"agent_id": str(a), "before": c, "page_size": "3"}) for a, c in cursors]
        + [
            ("agent_activity", {"agent_id": str(a), "page": str(p)})
            for a, p in zip(agents, (1, 2, 5), strict=False)
        ]
        + [
            ("geographic_coverage", {"page": str(p), "page_size": str(s)})
            for p, s in ((1, 20), (2, 2), (3, 1))
        ]
        + [("geographic_coverage", {"zip_code": z}) for z in zips[:3]]
        + [("agent_metrics", {"agent_id": str(a)}) for a in agents]
    )
    return [next(shapes) for _ in range(CALLS * 3)]


def test_live_metrics_statements_are_planned_once_per_session(small_seeded: str) -> None:
    """The same requests twice in one session: the first run plans (custom plans first, as
    PL/pgSQL does, then the generic one); the second must plan (almost) nothing."""
    with psycopg.connect(small_seeded, autocommit=True) as conn:
        requests = _requests(conn)
        conn.execute("set pg_stat_statements.track_planning = on")
        admin, db = conn.execute(
            "select (select oid from pg_roles where rolname = 'admin'), (select oid from pg_database"
            " where datname = current_database())"
        ).fetchone()

        def run() -> list[tuple[int, int, str]]:
            conn.execute("select pg_stat_statements_reset(%s, %s, 0)", [admin, db])
            for fn, args in requests:
                body, _ = o.call(conn, fn, **args)
                assert isinstance(body, dict) and "asOf" in body, (fn, args, body)
            return conn.execute(
                "select calls, plans, query from pg_stat_statements"
                " where userid = %s and dbid = %s and not toplevel",
                [admin, db],
            ).fetchall()

        first, second = run(), run()
    # the page statements of both forced functions ran, once per call of their shapes
    for stats in (first, second):
        assert sum(c for c, _, q in stats if "assignment_status_history" in q and "offset" in q) >= CALLS
        assert sum(c for c, _, q in stats if "geographic_coverage g" in q and "offset" in q) >= CALLS // 3
    assert sum(p for _, p, _ in first) > 0, "the first run planned: track_planning counts"
    replanned = [(c, p, " ".join(q.split())[:120]) for c, p, q in second if p > MOST_REPLANS]
    assert not replanned, replanned
