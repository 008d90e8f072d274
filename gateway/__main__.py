"""`python -m gateway`: the API on --port and the admin endpoints (/live, /ready) on --admin-port.

Secrets never travel on the command line (any local user reads argv in /proc/<pid>/cmdline):
- the database URL (it may hold authenticator's password) comes from PGRST_DB_URI, PostgREST's own
  variable; without it, the embedded cluster's socket as `authenticator` (DATABASE_URL is the
  owner's URL and is never used for requests);
- the JWT secret from PGRST_JWT_SECRET, else from --jwt-secret-file (a file only its owner can read),
  else waybill's (WAYBILL_JWT_SECRET, or the data directory's 0600 `jwt-secret` file).
Other defaults come from waybill's Settings (WAYBILL_API_HOST/PORT/ADMIN_PORT, WAYBILL_SLOW_QUERY_MS).

--workers N (or WAYBILL_GATEWAY_WORKERS; default one per core): N processes on the same ports, each a
whole gateway with its own pool and schema-cache listener (gateway/workers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from gateway import workers
from gateway.app import create_admin_app, create_app
from waybill import log
from waybill.auth import jwt_secret
from waybill.settings import get_settings

DEFAULT_POOL_SIZE = 10  # connections per worker process


class _ToStructlog(logging.Handler):
    """uvicorn's and psycopg's own warnings (bad requests, bind errors, pool reconnects) as LogEntry lines."""

    def __init__(self, event: str) -> None:
        super().__init__(logging.WARNING)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        getattr(log.get_logger(), level)(self.event, logger=record.name, message=record.getMessage())


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `main` (two servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


DB_URL_ENV = "PGRST_DB_URI"
JWT_SECRET_ENV = "PGRST_JWT_SECRET"
DB_MAX_ROWS_ENV = "PGRST_DB_MAX_ROWS"
UNSERVED_ENV = ("PGRST_DB_PRE_REQUEST", "PGRST_APP_SETTINGS_")  # PostgREST features `api` does not use
_REFUSED = {
    "--db-url": f"pass the database URL in {DB_URL_ENV}",
    "--jwt-secret": f"pass the JWT secret in {JWT_SECRET_ENV} or --jwt-secret-file PATH (mode 0600)",
}


def _default_db_url() -> str:
    settings = get_settings()
    if settings.database_url:
        raise SystemExit(
            "gateway: DATABASE_URL is the owner's URL; pass --db-url with a URL that logs in as authenticator"
        )
    from waybill.cluster import Cluster

    cluster = Cluster(settings.data_dir, settings.db_name, settings.pg_bin)
    if not cluster.initialized():
        raise SystemExit("gateway: no --db-url and no embedded cluster (run `waybill db start` first)")
    return cluster.url(user="authenticator")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = get_settings()
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.splitlines()[0])
    p.add_argument(
        "--jwt-secret-file",
        type=Path,
        help=f"a file (not readable by group or others) holding the HS256 secret; {JWT_SECRET_ENV} wins",
    )
    p.add_argument("--jwt-aud", help="the audience a token's aud claim must name, if any")
    p.add_argument("--host", default=settings.api_host)
    p.add_argument("--port", type=int, default=settings.api_port)
    p.add_argument("--admin-port", type=int, default=settings.api_admin_port)
    p.add_argument("--schema", default="api", help="the one exposed schema")
    p.add_argument("--anon-role", default="anon")
    p.add_argument(
        "--pool-size",
        type=int,
        default=DEFAULT_POOL_SIZE,
        help=f"connections per worker (default {DEFAULT_POOL_SIZE})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get(workers.WORKERS_ENV) or 0) or workers.default_workers(),
        help=f"worker processes (default: {workers.WORKERS_ENV}, else one per core)",
    )
    p.add_argument(
        "--db-max-rows",
        type=int,
        default=int(os.environ.get(DB_MAX_ROWS_ENV) or 0) or None,
        help=f"cap on the rows a read returns, as PostgREST's db-max-rows (default: {DB_MAX_ROWS_ENV} or none)",
    )
    p.add_argument(
        "--prepare-threshold",
        type=lambda v: None if v.lower() == "none" else int(v),
        default=5,
        help="psycopg prepares a statement after this many runs on a connection (none: never; default 5)",
    )
    p.add_argument("--log-level", default=settings.log_level)
    args = sys.argv[1:] if argv is None else argv
    for arg in args:
        option = arg.split("=", 1)[0]
        if option in _REFUSED:
            p.error(
                f"{option} is refused: a secret on the command line is readable by any local user; "
                f"{_REFUSED[option]}"
            )
    unserved = sorted(k for k in os.environ if k.startswith(UNSERVED_ENV))
    if unserved:
        p.error(
            f"{', '.join(unserved)}: pre-request functions and app settings are not served by the gateway"
        )
    parsed = p.parse_args(args)
    if parsed.workers < 1:
        p.error("--workers must be at least 1")
    return parsed


def read_secret_file(path: Path) -> str:
    """The secret in `path`, refused when group or others may read or write the file."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SystemExit(
                f"gateway: {path} is readable by others (mode {stat.filemode(mode)}): chmod 600 it"
            )
        return path.read_text().strip()
    except OSError as exc:
        raise SystemExit(f"gateway: cannot read the JWT secret file: {exc}") from exc


def _secret(args: argparse.Namespace) -> str:
    if os.environ.get(JWT_SECRET_ENV):
        return os.environ[JWT_SECRET_ENV]
    if args.jwt_secret_file is not None:
        return read_secret_file(args.jwt_secret_file)
    return jwt_secret(get_settings())


def _secrets(args: argparse.Namespace) -> tuple[str, str]:
    """(database URL, JWT secret): read once, before any worker is forked (they inherit them)."""
    return os.environ.get(DB_URL_ENV) or _default_db_url(), _secret(args)


async def serve(
    args: argparse.Namespace,
    db_url: str,
    secret: str,
    sockets: tuple[socket.socket, socket.socket] | None = None,
    board: tuple[workers.ReadyBoard, int] | None = None,
) -> None:
    """Serve the API and the admin port until SIGINT/SIGTERM (on `sockets` when a worker)."""
    try:
        app = create_app(
            db_url,
            secret,
            pool_size=args.pool_size,
            schema=args.schema,
            anon_role=args.anon_role,
            jwt_aud=args.jwt_aud,
            server_host=args.host,
            server_port=args.port,
            slow_query_ms=get_settings().slow_query_ms,
            db_max_rows=args.db_max_rows,
            prepare_threshold=args.prepare_threshold,
        )
    except ValueError as exc:
        raise SystemExit(f"gateway: {exc}") from exc
    gateway = app.state.gateway
    peers_ready = None
    if board is not None:
        ready_board, index = board
        peers_ready = ready_board.all_ready
        gateway.on_loaded = lambda: ready_board.mark(index)
    admin = create_admin_app(gateway, peers_ready=peers_ready)
    for name, event in (("uvicorn", "http_server_message_logged"), ("psycopg", "db_pool_message_logged")):
        std = logging.getLogger(name)
        std.handlers = [_ToStructlog(event)]
        std.setLevel(logging.WARNING)
        std.propagate = False
    common = {"log_config": None, "access_log": False, "server_header": False, "date_header": True}
    main_server = _Server(uvicorn.Config(app, host=args.host, port=args.port, lifespan="on", **common))
    admin_server = _Server(
        uvicorn.Config(admin, host=args.host, port=args.admin_port, lifespan="off", **common)
    )

    def stop() -> None:
        main_server.should_exit = True
        admin_server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    logger = log.get_logger()

    async def run(server: uvicorn.Server, sock: socket.socket | None) -> int:
        try:
            await server.serve(sockets=None if sock is None else [sock])
        except SystemExit as exc:  # uvicorn exits on startup failures (e.g. a port in use)
            return int(exc.code or 1)
        return 0 if server.started else 1

    logger.info("gateway_server_started", host=args.host, port=args.port, admin_port=args.admin_port)
    api_sock, admin_sock = sockets if sockets is not None else (None, None)
    tasks = {
        asyncio.create_task(run(main_server, api_sock)),
        asyncio.create_task(run(admin_server, admin_sock)),
    }
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()
    codes = await asyncio.gather(*tasks)
    if any(codes):
        logger.error("gateway_server_failed", exit_codes=sorted(codes))
        raise SystemExit(1)
    logger.info("gateway_server_stopped")


def _run(coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        import uvloop  # the faster event loop where it exists (not on Windows)
    except ImportError:
        asyncio.run(coro_factory())
    else:
        uvloop.run(coro_factory())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log.configure("gateway", args.log_level)
    db_url, secret = _secrets(args)
    if args.workers == 1:
        _run(lambda: serve(args, db_url, secret))
        return 0
    try:
        api = workers.bind(args.host, args.port, args.workers)
        try:
            admin = workers.bind(args.host, args.admin_port, args.workers)
        except OSError:
            for sock in api:
                sock.close()
            raise
    except OSError as exc:
        log.get_logger().error("gateway_server_failed", error=str(exc), host=args.host, port=args.port)
        return 1

    def worker(
        index: int, api_sock: socket.socket, admin_sock: socket.socket, board: workers.ReadyBoard
    ) -> int:
        # Workers share the supervisor's stderr: each log line must leave in one write(), or two
        # workers' lines interleave (print() writes the text and its newline separately).
        sys.stderr = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(os.dup(2), "w"), buffer_size=1 << 20),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=True,
        )
        log.configure("gateway", args.log_level)
        structlog.contextvars.bind_contextvars(worker=index)
        _run(lambda: serve(args, db_url, secret, (api_sock, admin_sock), (board, index)))
        return 0

    return workers.supervise(args.workers, api, admin, worker)


if __name__ == "__main__":
    sys.exit(main())
