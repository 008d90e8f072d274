"""The dispatcher's own HTTP/1.1 client against raw loopback servers: framing, keep-alive, broken answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from dispatcher.client import Outcome, Poster
from tests.dispatcher.helpers import LOOPBACK

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def _run(handler: Handler, posts: int) -> tuple[list[Outcome], int]:
    """`posts` POSTs in sequence through one Poster; (outcomes, connections the server accepted)."""

    async def go() -> tuple[list[Outcome], int]:
        accepted = [0]

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted[0] += 1
            try:
                await handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        poster = Poster(LOOPBACK, "t", timeout=2)
        try:
            outs = [
                await poster.post(f"http://127.0.0.1:{port}/h", b'{"a":1}', {"webhook-id": "m"})
                for _ in range(posts)
            ]
        finally:
            await poster.aclose()
            server.close()
        return outs, accepted[0]

    return asyncio.run(go())


def test_keep_alive_reuses_one_connection_and_reads_chunked_answers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(
                b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            await writer.drain()

    outs, accepted = _run(handler, 3)
    assert [(o.status_code, o.error_class, o.snippet) for o in outs] == [(500, "http_5xx", "hello world")] * 3
    assert accepted == 1


def test_a_kept_alive_connection_the_receiver_closed_is_replaced() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)  # answers as if keep-alive, then closes the connection
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    outs, accepted = _run(handler, 3)
    assert [(o.status_code, o.error_class) for o in outs] == [(200, None)] * 3
    assert accepted == 3


def test_an_answer_that_is_not_http_is_a_connect_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    (out,), _ = _run(handler, 1)
    assert (out.status_code, out.error_class) == (None, "connect"), out


def test_a_receiver_that_closes_without_answering_is_a_connect_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    (out,), accepted = _run(handler, 1)
    assert (out.status_code, out.error_class, accepted) == (None, "connect", 1), out


def test_a_body_trickled_past_the_deadline_keeps_the_status_and_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nx")
        await writer.drain()
        await asyncio.sleep(5)

    (out,), _ = _run(handler, 1)
    assert (out.status_code, out.error_class) == (200, "timeout"), out
