"""A real race: 10 connections accept the same assignment at once, 100 times over."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg

from tests.factories import offered_assignment, one, party
from waybill.errors import error_code

CONTENDERS = 10
TRIALS = 100


def _race(db_url: str, assignment_id: int, agents: list[int]) -> list[tuple[int, str]]:
    """Each agent on its own connection calls accept at the same instant; returns (agent, outcome)."""
    conns = [psycopg.connect(db_url, autocommit=True) for _ in agents]
    barrier = threading.Barrier(len(agents))
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def contender(conn: psycopg.Connection, agent: int) -> None:
        barrier.wait()
        try:
            conn.execute("select core.accept_assignment(%s, %s)", [assignment_id, agent])
            result = "WON"
        except psycopg.Error as exc:
            result = error_code(exc)
        with lock:
            outcomes.append((agent, result))

    threads = [
        threading.Thread(target=contender, args=(c, a)) for c, a in zip(conns, agents, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for c in conns:
        c.close()
    return outcomes


def test_exactly_one_agent_wins_each_time(conn: psycopg.Connection, db_url: str) -> None:
    p = party(conn, agents=CONTENDERS)
    tally: Counter[str] = Counter()
    for _ in range(TRIALS):
        _, assignment_id = offered_assignment(conn, p)
        outcomes = _race(db_url, assignment_id, p["agents"])
        assert len(outcomes) == CONTENDERS
        results = Counter(r for _, r in outcomes)
        assert results == {"WON": 1, "ASSIGNMENT_ALREADY_TAKEN": CONTENDERS - 1}, results
        winner = next(a for a, r in outcomes if r == "WON")
        status, agent_id = one(
            conn,
            "select status, agent_id from core.shipping_assignments where id = %s",
            [assignment_id],
        )
        assert (status, agent_id) == ("ACCEPTED", winner)
        accepted_rows = one(
            conn,
            "select count(*) from core.assignment_status_history "
            "where assignment_id = %s and to_status = 'ACCEPTED'",
            [assignment_id],
        )[0]
        assert accepted_rows == 1
        tally.update(results)
    assert tally == {"WON": TRIALS, "ASSIGNMENT_ALREADY_TAKEN": TRIALS * (CONTENDERS - 1)}
    print(f"\naccept race: {TRIALS} trials x {CONTENDERS} connections -> {dict(tally)}")
