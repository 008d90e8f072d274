"""A minimal HTTP/1.1 client for webhook POSTs, on asyncio streams.

What it does, and only that: one POST with a Content-Length body; keep-alive connections pooled per
(scheme, host, port); the status line, the headers and at most SNIPPET_BYTES of the answer's body
(Content-Length, chunked or close-delimited); no redirects, proxies, cookies or compression. The
connection goes through the SSRF guard (guard.resolve: the host is resolved once, the socket opened
to an address that passed) while the Host header, TLS SNI and certificate check keep the URL's host.
A connection is reused only when its answer was read to the end; a reused connection that turns out
closed before any byte of the answer arrived is replaced once (a keep-alive race, not an attempt).
The caller (client.Poster) puts the overall deadline around `post`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from urllib.parse import urlsplit

from dispatcher.guard import Network, resolve

SNIPPET_BYTES = 1024
DRAIN_BYTES = 64 * 1024  # read (and drop) an answer's body up to this much to keep the connection
MAX_HEADER_LINES = 100
IDLE_SECONDS = 5.0  # an idle connection older than this is closed, not reused (httpx's default)
STREAM_LIMIT = 64 * 1024  # longest status/header line accepted

Key = tuple[str, str, int]


class ProtocolError(Exception):
    """The answer is not HTTP/1.x, or the connection closed in the middle of it (error class connect)."""


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.idle_since < IDLE_SECONDS
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Target:
    __slots__ = ("key", "host", "port", "tls", "head")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme: {parts.scheme!r}")
        host = parts.hostname
        if not host:
            raise ValueError("the URL has no host")
        self.tls = parts.scheme == "https"
        default = 443 if self.tls else 80
        self.port = parts.port or default
        self.host = host
        self.key: Key = (parts.scheme, host, self.port)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        name = f"[{host}]" if ":" in host else host
        authority = name if self.port == default else f"{name}:{self.port}"
        for text in (target, authority):
            if any(c in text for c in " \r\n\t\0"):
                raise ValueError("the URL holds whitespace or control characters")
        self.head = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\n"


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Certificates and host names checked (TLS 1.2 at least), against the system's CAs — which honour
    the standard SSL_CERT_FILE / SSL_CERT_DIR — plus, when given, the CAs in `ca_file` (PEM): an
    operator's private CA is added to the public ones, never in their place. A file that cannot be
    read or holds no certificate raises at start, not at the first https delivery."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


class ConnectionPool:
    def __init__(
        self,
        allowlist: tuple[Network, ...],
        base_headers: dict[str, str],
        max_idle: int = 200,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.allowlist = allowlist
        self.base = "".join(f"{k}: {v}\r\n" for k, v in base_headers.items())
        self.max_idle = max_idle
        self.idle: dict[Key, list[_Conn]] = {}
        self.n_idle = 0
        self.targets: dict[str, _Target] = {}
        self._ssl = ssl_context

    def _target(self, url: str) -> _Target:
        t = self.targets.get(url)
        if t is None:
            t = _Target(url)
            if len(self.targets) > 10_000:
                self.targets.clear()
            self.targets[url] = t
        return t

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = tls_context()
        return self._ssl

    async def _connect(self, t: _Target) -> _Conn:
        addresses = await resolve(t.host, t.port, self.allowlist)
        last: BaseException | None = None
        for address in addresses:  # the checked addresses only, in resolver order
            try:
                reader, writer = await asyncio.open_connection(
                    address,
                    t.port,
                    ssl=self._ssl_context() if t.tls else None,
                    server_hostname=t.host if t.tls else None,
                    limit=STREAM_LIMIT,
                )
            except ssl.SSLError:
                raise
            except OSError as exc:  # try the next accepted address
                last = exc
                continue
            return _Conn(reader, writer)
        assert last is not None
        raise last

    def _take(self, key: Key) -> _Conn | None:
        conns = self.idle.get(key)
        while conns:
            c = conns.pop()
            self.n_idle -= 1
            if c.usable():
                return c
            c.close()
        return None

    def _give_back(self, key: Key, c: _Conn) -> None:
        if self.n_idle >= self.max_idle:
            c.close()
            return
        c.idle_since = time.monotonic()
        self.idle.setdefault(key, []).append(c)
        self.n_idle += 1

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], seen: list[int]
    ) -> tuple[int, dict[str, str], bytes]:
        """POST; (status, lower-cased headers, body snippet). `seen` gets the status as soon as it is read."""
        t = self._target(url)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if extra.count("\n") != len(headers) or extra.count("\r") != len(headers):
            raise ValueError("a header holds a line break")
        request = f"{t.head}{self.base}{extra}content-length: {len(body)}\r\n\r\n".encode("latin-1") + body
        c = self._take(t.key)
        reused = c is not None
        if c is None:
            c = await self._connect(t)
        try:
            try:
                c.writer.write(request)
                await c.writer.drain()
                line = await c.reader.readline()
                if not line and reused:
                    raise ConnectionResetError("the kept-alive connection was closed")
            except (ConnectionError, asyncio.IncompleteReadError):
                if not reused:
                    raise
                c.close()  # the receiver closed an idle connection as we sent: a fresh one, once
                c = await self._connect(t)
                c.writer.write(request)
                await c.writer.drain()
                line = await c.reader.readline()
            status, headers_in, snippet, keep = await self._answer(c, line, seen)
        except BaseException:
            c.close()
            raise
        if keep:
            self._give_back(t.key, c)
        else:
            c.close()
        return status, headers_in, snippet

    async def _answer(
        self, c: _Conn, line: bytes, seen: list[int]
    ) -> tuple[int, dict[str, str], bytes, bool]:
        reader = c.reader
        while True:
            version, status = _status_line(line)
            headers = await _headers(reader)
            if not 100 <= status < 200:
                break
            line = await reader.readline()  # an interim 1xx answer: the real one follows
        seen.append(status)
        keep = version == "HTTP/1.1"
        conn_opt = headers.get("connection", "").lower()
        if "close" in conn_opt:
            keep = False
        elif "keep-alive" in conn_opt:
            keep = True
        if status in (204, 304):
            return status, headers, b"", keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            snippet, complete = await _chunked(reader)
            return status, headers, snippet, keep and complete
        length = headers.get("content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                raise ProtocolError(f"bad content-length: {length[:40]!r}") from None
            if n < 0:
                raise ProtocolError("negative content-length")
            snippet = await reader.readexactly(min(n, SNIPPET_BYTES))
            rest = n - len(snippet)
            if rest == 0:
                return status, headers, snippet, keep
            if rest <= DRAIN_BYTES:
                await reader.readexactly(rest)
                return status, headers, snippet, keep
            return status, headers, snippet, False
        # Close-delimited body: take the snippet, then the connection goes.
        snippet = await _read_up_to(reader, SNIPPET_BYTES)
        return status, headers, snippet, False

    async def aclose(self) -> None:
        conns = [c for cs in self.idle.values() for c in cs]
        self.idle.clear()
        self.n_idle = 0
        for c in conns:
            c.close()
        for c in conns:
            with contextlib.suppress(Exception):
                await c.writer.wait_closed()


def _status_line(line: bytes) -> tuple[str, int]:
    if not line:
        raise ProtocolError("the connection closed without an answer")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return parts[0].decode("ascii", "replace"), int(parts[1])


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    found: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            return found
        if not line.endswith(b"\n"):
            raise ProtocolError("the connection closed in the answer's headers")
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"bad header line: {line[:80]!r}")
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        found[key] = f"{found[key]}, {text}" if key in found else text
    raise ProtocolError(f"more than {MAX_HEADER_LINES} header lines")


async def _chunked(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """De-chunk up to SNIPPET_BYTES; read on (dropping) up to DRAIN_BYTES. (snippet, read to the end)."""
    parts: list[bytes] = []
    kept = total = 0
    while total <= DRAIN_BYTES:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size: {size_line[:40]!r}") from None
        if size == 0:
            await _headers(reader)  # trailers, then the blank line
            return b"".join(parts), True
        data = await reader.readexactly(size)
        await reader.readexactly(2)  # CRLF
        if kept < SNIPPET_BYTES:
            take = data[: SNIPPET_BYTES - kept]
            parts.append(take)
            kept += len(take)
        total += size
    return b"".join(parts), False


async def _read_up_to(reader: asyncio.StreamReader, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = await reader.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
