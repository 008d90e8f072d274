"""LISTEN on a dedicated connection that is re-opened when it drops — shared by gateway/ and dispatcher/.

NOTIFY is a hint: a notification sent while the connection was down is lost, so after every re-open
the owner is told (`on_reconnect`) and rescans whatever the notifications stand for (gateway/ reloads
its schema cache, the dispatcher re-reads the outbox). A connection that died silently (no FIN, e.g. a
dropped network path) is found by a `select 1` probe after `probe_seconds` of quiet.

Subclasses name their log events with the `connect_event` / `lost_event` class attributes, so each
component keeps its own `domain_action_status` names (docs/events.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from waybill.log import get_logger


class Listener:
    """LISTEN `channel`; call `on_notify(payload)` per notification and `on_reconnect()` after a re-open.

    `rescan_on_first_connect` also calls `on_reconnect` after the very first connect (the dispatcher
    wants that; gateway/ loads its cache on its own at start).
    """

    connect_event: ClassVar[str]  # each subclass names its events
    lost_event: ClassVar[str]

    def __init__(
        self,
        conninfo: str,
        channel: str,
        on_notify: Callable[[str], Awaitable[Any]],
        on_reconnect: Callable[[], Awaitable[Any]] | None = None,
        *,
        probe_seconds: float = 10.0,
        min_backoff: float = 1.0,
        max_backoff: float = 32.0,
        rescan_on_first_connect: bool = False,
        task_name: str = "listener",
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.on_notify = on_notify
        self.on_reconnect = on_reconnect
        self.probe_seconds = probe_seconds
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.rescan_on_first_connect = rescan_on_first_connect
        self.task_name = task_name
        self.connected = asyncio.Event()
        self.backend_pid: int | None = None
        self._task: asyncio.Task | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self.log = get_logger()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drop_connection_for_test(self) -> None:
        """Close the LISTEN connection from under the listener (tests prove it re-opens)."""
        if self._conn is not None:
            await self._conn.close()

    async def _run(self) -> None:
        backoff = self.min_backoff
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    self._conn = conn
                    await conn.execute(sql.SQL("listen {}").format(sql.Identifier(self.channel)))
                    self.backend_pid = conn.info.backend_pid
                    self.connected.set()
                    self.log.info(self.connect_event, channel=self.channel)
                    if self.on_reconnect is not None and (self.rescan_on_first_connect or not first):
                        # Notifications may have been missed while the connection was down.
                        await self.on_reconnect()
                    first = False
                    backoff = self.min_backoff
                    while True:
                        async for notify in conn.notifies(timeout=self.probe_seconds):
                            await self.on_notify(notify.payload)
                        await conn.execute("select 1")  # liveness probe after a quiet period
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: log, back off, re-open
                self.connected.clear()
                self._conn = None
                self.backend_pid = None
                self.log.warning(self.lost_event, channel=self.channel, error=str(exc), retry_in_s=backoff)
                first = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
