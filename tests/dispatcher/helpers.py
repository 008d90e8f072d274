"""Real pieces for the dispatcher's tests: a programmable HTTP receiver on 127.0.0.1, a dispatcher
running in a thread (with a clock the test moves) or as a real `waybill dispatcher` process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from dispatcher.clock import Clock
from dispatcher.daemon import Config, Dispatcher
from dispatcher.guard import parse_allowlist
from waybill.settings import PROJECT_ROOT

LOOPBACK = parse_allowlist("127.0.0.1/32")


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    peer: str = ""  # the client's address as the server saw it


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


class Hook:
    """A real HTTP server on 127.0.0.1 recording every request; `answer(received)` decides the reply."""

    def __init__(
        self,
        answer: Callable[[Received], Answer] | None = None,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: serve HTTPS with this server context (`sni` records the name each client asked for)."""
        self.answer = answer or (lambda r: Answer())
        self.scheme = "https" if tls else "http"
        self.sni: list[str | None] = []  # the server name each TLS client asked for
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight: dict[str, int] = {}
        self._current: dict[str, int] = {}
        self.connections: set[socket.socket] = set()  # open (kept-alive) client connections
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with hook.lock:
                    hook.connections.add(self.connection)

            def finish(self) -> None:
                with hook.lock:
                    hook.connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                r = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.time(),
                    self.client_address[0],
                )
                with hook.lock:
                    hook.received.append(r)
                    hook._current[self.path] = hook._current.get(self.path, 0) + 1
                    hook.max_in_flight[self.path] = max(
                        hook.max_in_flight.get(self.path, 0), hook._current[self.path]
                    )
                try:
                    a = hook.answer(r)
                    if a.delay:
                        time.sleep(a.delay)
                    self.send_response(a.status)
                    for k, v in a.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(a.body)))
                    self.end_headers()
                    self.wfile.write(a.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with hook.lock:
                        hook._current[self.path] -= 1

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # socketserver's default (5) drops bursts of new connections

            def handle_error(self, request: Any, client_address: Any) -> None:
                if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
                    return  # a handshake the client refused: the test checks the client's side
                super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", port), Handler)
        if tls is not None:

            def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
                with hook.lock:
                    hook.sni.append(name)

            tls.sni_callback = sni
            # The handshake happens on the handler thread's first read, not in the accept loop.
            self.server.socket = tls.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.received]

    def close(self) -> None:
        """Stop listening and drop the kept-alive connections too: the receiver is gone."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            conns = list(self.connections)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


def subscribe(conn: psycopg.Connection, url: str, types: list[str] | None = None) -> tuple[int, str]:
    """A subscription through the admin API function (as admin); returns (id, secret)."""
    with conn.transaction():
        conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps({"role": "admin"})])
        conn.execute("set local role admin")
        row = conn.execute(
            "select api.create_webhook_subscription(%s, %s)", [url, types or ["*"]]
        ).fetchone()[0]
    return row["id"], row["secret"]


def as_admin(conn: psycopg.Connection, sql: str, params: list | tuple = ()) -> Any:
    with conn.transaction():
        conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps({"role": "admin"})])
        conn.execute("set local role admin")
        return conn.execute(sql, params).fetchone()


def dispatcher_url(owner_url: str) -> str:
    """The same database as the dispatcher role (the embedded socket trusts local logins)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**(conninfo_to_dict(owner_url) | {"user": "dispatcher"}))


class DispatcherThread:
    """A Dispatcher on its own event loop in a thread; the test moves `clock` and calls `wake()`."""

    def __init__(self, owner_url: str, **overrides: Any) -> None:
        kw: dict[str, Any] = dict(
            db_url=dispatcher_url(owner_url),
            allowlist=LOOPBACK,
            lease_seconds=5.0,
            http_timeout=2.0,
            heartbeat_seconds=1.0,
            status_port=0,
            reconnect_seconds=0.05,
        )
        kw.update(overrides)
        self.clock = Clock()
        self.dispatcher = Dispatcher(Config(**kw), self.clock)
        self.result: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.result = asyncio.run(self.dispatcher.run())

    def __enter__(self) -> DispatcherThread:
        self.thread.start()
        wait_until(lambda: self.dispatcher.ready.is_set(), what="dispatcher start")
        return self

    def wake(self) -> None:
        self.dispatcher.wake()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.dispatcher.wake()

    def __exit__(self, *exc: object) -> None:
        self.dispatcher.request_stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "dispatcher did not stop"


def start_process(
    owner_url: str, name: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    """A real `waybill dispatcher` process (as the dispatcher role) with short test timings."""
    e = dict(
        os.environ,
        WAYBILL_DISPATCHER_DATABASE_URL=dispatcher_url(owner_url),
        WAYBILL_WEBHOOK_ALLOWLIST="127.0.0.1/32",
        WAYBILL_DISPATCHER_LEASE_SECONDS="6",
        WAYBILL_DISPATCHER_HTTP_TIMEOUT="4",
        WAYBILL_DISPATCHER_SWEEP_SECONDS="1",
        WAYBILL_DISPATCHER_MAX_IN_FLIGHT="32",
        WAYBILL_DISPATCHER_RECONNECT_SECONDS="0.05",
        WAYBILL_DISPATCHER_POOL_TIMEOUT="1",
    )
    e.update(env or {})
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "waybill", "dispatcher", "--name", name, "--status-port", "0"],
        cwd=PROJECT_ROOT,
        env=e,
        stdout=out,
        stderr=out,
    )


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
