"""The HTTP benchmark's client connections: one keep-alive HTTP connection (RawHttp, or HttpxHttp
for --http-client httpx) and the direct target's call (direct_call). RawHttp also serves
bench/metrics_http.py and bench/wallet_read.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import psycopg

from bench.common import HOST
from bench.http_plans import Plan

# -- client connections ---------------------------------------------------------------------------


class RawHttp:
    """HTTP/1.1 keep-alive on one asyncio stream: a GET, then a Content-Length or chunked answer.
    Far cheaper per request than a general client, so the client side takes less of the CPU it
    shares with the gateway and the server."""

    def __init__(self, port: int, header_block: bytes) -> None:
        self.port, self.header_block = port, header_block
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def get(self, target: str) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"GET " + target.encode() + b" HTTP/1.1\r\n" + self.header_block)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            body = await self.reader.readexactly(int(head[i + 17 : head.index(b"\r\n", i + 2)]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            raise ValueError("an answer without Content-Length or chunked encoding")
        if b"\r\nconnection: close" in lower:
            await self.close()
            await self.open()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append((await self.reader.readexactly(size + 2))[:-2])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxHttp:
    """The same through httpx.AsyncClient (one keep-alive connection): --http-client httpx."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port, self.headers = port, headers
        self.client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self.client = httpx.AsyncClient(
            base_url=f"http://{HOST}:{self.port}",
            headers={k: v for k, v in self.headers.items() if k != "Host"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=60,
        )

    async def get(self, target: str) -> tuple[int, bytes]:
        assert self.client is not None
        r = await self.client.get(target)
        return r.status_code, r.content

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        self.client = None


async def direct_call(conn: psycopg.AsyncConnection, plan: Plan, params: list[Any]) -> tuple:
    """What gateway/app.py's Gateway.run sends for a read: one pipelined round trip."""
    async with conn.pipeline():
        await conn.execute(plan.begin_sql, prepare=False)
        await conn.execute(plan.setcfg_sql, plan.setcfg)
        cur = await conn.execute(plan.sql, params)
        await conn.execute("commit", prepare=False)
    row = await cur.fetchone()
    assert row is not None
    return row
