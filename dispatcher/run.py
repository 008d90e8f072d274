"""Run a Dispatcher in the foreground: JSON logs, SIGTERM/SIGINT → clean stop, exit code 0."""

from __future__ import annotations

import asyncio
import logging
import signal

from dispatcher.daemon import Config, Dispatcher
from waybill.log import get_logger


class _ToLogEntry(logging.Handler):
    """psycopg's own warnings (pool reconnects while PostgreSQL restarts) as LogEntry lines."""

    def __init__(self, event: str) -> None:
        super().__init__(logging.WARNING)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        getattr(get_logger(), level)(self.event, logger=record.name, message=record.getMessage())


def bridge_std_loggers() -> None:
    for name, event in (("psycopg", "db_pool_message_logged"),):
        std = logging.getLogger(name)
        std.handlers = [_ToLogEntry(event)]
        std.setLevel(logging.WARNING)
        std.propagate = False


def run(config: Config) -> int:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run

    bridge_std_loggers()

    async def main() -> int:
        d = Dispatcher(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, d.request_stop)
        return await d.run()

    return runner(main())
