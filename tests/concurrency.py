"""A tiny harness for races: N real connections, released together by a barrier, many times over."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg

from waybill.errors import error_code

WON = "WON"


class Contenders:
    """N threads, each with its own connection, that run one call at the same instant per round."""

    def __init__(self, db_url: str, n: int):
        self.conns = [psycopg.connect(db_url, autocommit=True) for _ in range(n)]
        self.n = n

    def round(self, calls: list[Callable[[psycopg.Connection], Any]]) -> list[str]:
        """Run calls[i] on connection i, all released together; outcome per call: WON or the error code."""
        assert len(calls) == self.n
        barrier = threading.Barrier(self.n)
        outcomes: list[str] = [""] * self.n

        def run(i: int) -> None:
            barrier.wait()
            try:
                calls[i](self.conns[i])
                outcomes[i] = WON
            except psycopg.Error as exc:
                outcomes[i] = error_code(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(self.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a contender hung (deadlock?)"
        return outcomes

    def close(self) -> None:
        for c in self.conns:
            c.close()
