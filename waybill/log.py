"""Structured logs: one LogEntry shape for every component, JSON lines on stderr.

The database writes the same shape (ops.log_event, sql/060_ops_log.sql) into its jsonlog.
Event names are `domain_action_status`; docs/events.md lists the ones that matter and when they fire.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

EVENT_NAME = r"^[a-z][a-z0-9]*(_[a-z0-9]+){2,}$"
Level = Literal["debug", "info", "warn", "error", "critical"]


class LogEntry(BaseModel):
    """The one shape of a log line; extra keys are the event's context."""

    model_config = ConfigDict(extra="allow")

    ts: datetime
    level: Level
    event: str = Field(pattern=EVENT_NAME)
    service: str
    request_id: str | None = None
    duration_ms: float | None = None
    error_code: str | None = None


_LEVELS = {"warning": "warn", "exception": "error"}
_LEVEL_NAMES = frozenset(Level.__args__)
_EVENT_RE = re.compile(EVENT_NAME)
_FIRST = ("ts", "level", "event", "service", "request_id", "duration_ms", "error_code")


def _shape(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: fill the LogEntry fields, check them and order the keys.

    A plain check, not LogEntry.model_validate: on the gateway's hot path pydantic cost ~135 µs per
    access-log line (bench/http.py); tests validate emitted lines against LogEntry itself.
    """
    event_dict.setdefault("ts", datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"))
    level = event_dict.pop("level", method)
    event_dict["level"] = _LEVELS.get(level, level)
    if event_dict["level"] not in _LEVEL_NAMES or not _EVENT_RE.match(str(event_dict.get("event", ""))):
        raise ValueError(f"not a LogEntry: level {event_dict['level']!r}, event {event_dict.get('event')!r}")
    ordered = {key: event_dict.pop(key, None) for key in _FIRST}
    ordered.update(event_dict)
    return ordered


def configure(service: str, level: str = "info") -> None:
    """JSON lines on stderr for this process; `service` names the component in every line."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            lambda _l, _m, d: {"service": service, **d},
            _shape,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(**context)
