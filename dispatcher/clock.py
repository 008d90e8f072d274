"""The dispatcher's notion of now: every SQL call gets it as p_now, so tests move time, not wait for it.

`webhook-timestamp` is always the real wall clock (receivers check it against theirs); only the
schedule (what is due, when a lease ends) follows this clock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """The wall clock, plus an offset tests can move forward (thread-safe)."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)
