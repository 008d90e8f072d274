"""`waybill …`: the command line for the embedded cluster, migrations, demo data and the stack."""

from __future__ import annotations

import argparse
import os
import sys

from waybill.auth import ROLES
from waybill.cluster import Cluster, ClusterError
from waybill.settings import Settings, get_settings


def embedded(settings: Settings) -> Cluster:
    return Cluster(settings.data_dir, settings.db_name, settings.pg_bin)


def owner_url(settings: Settings, *, start: bool = False) -> str:
    """The owner's URL: DATABASE_URL when given, else the embedded cluster's (started on request)."""
    if settings.database_url:
        return settings.database_url
    cluster = embedded(settings)
    if start:
        cluster.start()
    elif not cluster.running():
        raise ClusterError("the embedded cluster is not running: `waybill db start` first")
    return cluster.url()


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url and args.action != "url":
        print("DATABASE_URL is set: the embedded cluster is not used.", file=sys.stderr)
        return 2
    if args.action == "url":
        print(owner_url(settings))
        return 0
    cluster = embedded(settings)
    if args.action == "start":
        cluster.start()
        print(f"running: {cluster.url()}")
    elif args.action == "stop":
        cluster.stop()
        print("stopped")
    elif args.action == "status":
        up = cluster.running()
        print(f"{'running' if up else 'stopped'}: data directory {cluster.data_dir}")
        return 0 if up else 3
    elif args.action == "psql":
        url = owner_url(settings)
        os.execvp("psql", ["psql", url, *args.extra])
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from waybill import migrate

    url = owner_url(settings, start=not settings.database_url)
    if settings.database_url and not args.rollback_all:
        migrate.check_server(url)
    if args.rollback_all:
        n = migrate.rollback_all(url)
        print(f"rolled back {n} migration(s)")
    else:
        n = migrate.apply(url)
        print(f"applied {n} migration(s)")
        if settings.authenticator_password:
            migrate.set_login_password(url, "authenticator", settings.authenticator_password)
            print("authenticator password set")
        for role, variable in (
            ("dispatcher", "WAYBILL_DISPATCHER_PASSWORD"),
            ("metrics_cache", "WAYBILL_METRICS_CACHE_PASSWORD"),
        ):
            password = os.environ.get(variable)
            if password:
                migrate.set_login_password(url, role, password)
                print(f"{role} password set")
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    from waybill import seed

    url = owner_url(settings)
    report = seed.seed(url, orders=args.orders, agents=args.agents, seed=args.seed, zips=args.zips)
    print(report)
    return 0


def _ttl(value: str) -> int:
    from waybill.auth import check_ttl

    try:
        return check_ttl(int(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--ttl ")) from None


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from waybill.auth import jwt_secret, mint

    print(mint(jwt_secret(settings), args.role, args.sub, args.ttl))
    return 0


def cmd_errors_doc(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from waybill.errors import registry_markdown
    from waybill.resources import require_checkout

    with psycopg.connect(owner_url(settings)) as conn:
        text = registry_markdown(conn)
    path = require_checkout("errors-doc") / "docs" / "errors.md"
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def cmd_new_migration(args: argparse.Namespace, settings: Settings) -> int:
    from waybill import migrate
    from waybill.resources import require_checkout

    for path in migrate.scaffold(args.name, require_checkout("new-migration") / "migrations"):
        print(f"created {path}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from waybill.stack import Stack

    return Stack(settings).run()


def cmd_dispatcher(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.config import DispatcherSettings, build_config, dispatcher_url
    from dispatcher.run import run
    from waybill import log

    log.configure("dispatcher", settings.log_level)
    ds = DispatcherSettings()
    socket_url = None
    if not settings.database_url and not ds.dispatcher_database_url:
        socket_url = embedded(settings).url(user="dispatcher")
    url = dispatcher_url(settings.database_url, ds, socket_url)
    return run(build_config(url, ds, name=args.name, status_port=args.status_port))


def cmd_metrics_cache(args: argparse.Namespace, settings: Settings) -> int:
    from waybill import log, metrics_cache

    log.configure("metrics-cache", settings.log_level)
    s = metrics_cache.MetricsCacheSettings()
    socket_url = None
    if not settings.database_url and not s.metrics_cache_database_url:
        socket_url = embedded(settings).url(user=metrics_cache.ROLE)
    return metrics_cache.run(metrics_cache.worker_url(settings.database_url, s, socket_url), s)


def cmd_receiver(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.receiver import serve

    return serve(args.host, args.port)


def cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    from waybill import testing

    return testing.run_all(args.pytest_args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="waybill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="the embedded PostgreSQL cluster")
    p.add_argument("action", choices=["start", "stop", "status", "psql", "url"])
    p.add_argument("extra", nargs=argparse.REMAINDER, help="arguments passed to psql")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("migrate", help="apply pending migrations (or roll all back)")
    p.add_argument("--rollback-all", action="store_true")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load realistic demo data (set-based SQL)")
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--zips", type=int, default=50, help="zip codes (fewer if too few active agents)")
    p.add_argument("--seed", type=float, default=0.42, help="random seed in [-1, 1]")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("token", help="mint an HS256 JWT for the HTTP API")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--sub", help="subject; for agents the delivery agent id")
    p.add_argument(
        "--ttl", type=_ttl, default=3600, help="lifetime in seconds (default 3600, at most 86400 = 24 h)"
    )
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("errors-doc", help="write docs/errors.md from the error registry")
    p.set_defaults(func=cmd_errors_doc)

    p = sub.add_parser("new-migration", help="scaffold the next migration + rollback (make migration NAME=…)")
    p.add_argument("name", help="short name: lower-case letters, digits and _")
    p.set_defaults(func=cmd_new_migration)

    p = sub.add_parser("run", help="the whole stack in the foreground (make run); Ctrl-C stops it")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("dispatcher", help="the webhook dispatcher daemon (settings: dispatcher/config.py)")
    p.add_argument("--name", help="this dispatcher's name in heartbeats and leases (default host-pid)")
    p.add_argument("--status-port", type=int, help="/healthz and /metrics port (default 3002; 0 = any)")
    p.set_defaults(func=cmd_dispatcher)

    p = sub.add_parser(
        "metrics-cache", help="the answer cache worker: fills cache misses (waybill/metrics_cache.py)"
    )
    p.set_defaults(func=cmd_metrics_cache)

    p = sub.add_parser(
        "receiver", help="the example webhook receiver: verify, dedup, print (secret from env)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3003)
    p.set_defaults(func=cmd_receiver)

    p = sub.add_parser("test", help="the whole suite: pgTAP via pg_prove, then pytest")
    p.set_defaults(func=cmd_test)

    # Unknown arguments after `test` go to pytest (e.g. `waybill test -x -k race`).
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = extra
    try:
        return args.func(args, get_settings())
    # ClusterError, stack start-up failures (process.NotReady, migrate.ServerNotReady), seed's PermissionError
    except (RuntimeError, ValueError, PermissionError) as exc:
        print(f"waybill: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
