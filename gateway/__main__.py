"""`python -m gateway`: the API on --port and the admin endpoints (/live, /ready) on --admin-port.

Defaults come from waybill's Settings (WAYBILL_API_HOST/PORT/ADMIN_PORT, the JWT secret). The
database URL must log in as `authenticator`: pass --db-url, or leave it out to use the embedded
cluster's socket (DATABASE_URL is the owner's URL and is never used for requests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn

from gateway.app import create_admin_app, create_app
from waybill import log
from waybill.auth import jwt_secret
from waybill.settings import get_settings


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
    p.add_argument("--db-url", help="a URL that logs in as authenticator (default: the embedded cluster)")
    p.add_argument("--jwt-secret", help="HS256 secret, >= 32 characters (default: waybill's)")
    p.add_argument("--jwt-aud", help="the audience a token's aud claim must name, if any")
    p.add_argument("--host", default=settings.api_host)
    p.add_argument("--port", type=int, default=settings.api_port)
    p.add_argument("--admin-port", type=int, default=settings.api_admin_port)
    p.add_argument("--schema", default="api", help="the one exposed schema")
    p.add_argument("--anon-role", default="anon")
    p.add_argument("--pool-size", type=int, default=10)
    p.add_argument("--log-level", default=settings.log_level)
    return p.parse_args(_glue_values(sys.argv[1:] if argv is None else argv))


def _glue_values(argv: list[str]) -> list[str]:
    """`--jwt-secret -x...` as `--jwt-secret=-x...`: a generated secret may begin with a dash."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--jwt-secret", "--db-url") and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


async def serve(args: argparse.Namespace) -> None:
    db_url = args.db_url or _default_db_url()
    secret = args.jwt_secret or jwt_secret(get_settings())
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
        )
    except ValueError as exc:
        raise SystemExit(f"gateway: {exc}") from exc
    admin = create_admin_app(app.state.gateway)
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

    async def run(server: uvicorn.Server) -> int:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits on startup failures (e.g. a port in use)
            return int(exc.code or 1)
        return 0 if server.started else 1

    logger.info("gateway_server_started", host=args.host, port=args.port, admin_port=args.admin_port)
    tasks = {asyncio.create_task(run(main_server)), asyncio.create_task(run(admin_server))}
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()
    codes = await asyncio.gather(*tasks)
    if any(codes):
        logger.error("gateway_server_failed", exit_codes=sorted(codes))
        raise SystemExit(1)
    logger.info("gateway_server_stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log.configure("gateway", args.log_level)
    try:
        import uvloop  # the faster event loop where it exists (not on Windows)
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
