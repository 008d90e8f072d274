"""Run a Dispatcher in the foreground: JSON logs, SIGTERM/SIGINT → clean stop, exit code 0."""

from __future__ import annotations

import asyncio
import signal

from dispatcher.daemon import Config, Dispatcher


def run(config: Config) -> int:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run

    async def main() -> int:
        d = Dispatcher(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, d.request_stop)
        return await d.run()

    return runner(main())
