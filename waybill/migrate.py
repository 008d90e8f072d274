"""Schema changes: yoyo migrations (what production applies) and sql/ (the readable schema).

Both build the same database; tests/test_migrations.py proves it by comparing normalised dumps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from yoyo import get_backend, read_migrations

from waybill import resources


def _yoyo_url(url: str) -> str:
    """yoyo picks its driver from the URL scheme; Waybill uses psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@contextmanager
def _backend(url: str) -> Iterator:
    """A yoyo backend holding its migration lock; its connection is closed on exit (a lingering
    session would block CREATE DATABASE … TEMPLATE on this database)."""
    backend = get_backend(_yoyo_url(url))
    try:
        with backend.lock():
            yield backend
    finally:
        backend.connection.close()


def apply(url: str) -> int:
    """Apply every pending migration (then post-apply). Returns how many were applied."""
    migrations = read_migrations(resources.YOYO_MIGRATIONS)
    with _backend(url) as backend:
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
        if not pending:  # yoyo runs post-apply only after applying something
            backend.run_post_apply(migrations)
    return len(pending)


def rollback_all(url: str) -> int:
    """Roll back every applied migration, newest first. Returns how many."""
    migrations = read_migrations(resources.YOYO_MIGRATIONS)
    with _backend(url) as backend:
        applied = backend.to_rollback(migrations)
        backend.rollback_migrations(applied)
    return len(applied)


def apply_step(url: str, migration_id: str, *, rollback: bool = False) -> None:
    """Apply (or roll back) one migration by id, e.g. '0004.api' (tests walk the chain step by step)."""
    migrations = read_migrations(resources.YOYO_MIGRATIONS)
    step = migrations.filter(lambda m: m.id == migration_id)
    if len(step) != 1:
        raise ValueError(f"no migration {migration_id!r}")
    with _backend(url) as backend:
        if rollback:
            backend.rollback_migrations(step)
        else:
            backend.apply_migrations(step)


def ordered_ids() -> list[str]:
    """Every migration id in the order yoyo applies them."""
    return [m.id for m in read_migrations(resources.YOYO_MIGRATIONS)]


DEPENDS = re.compile(r"^-- depends:(.*)$", re.M)
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def depends_of(text: str) -> list[str]:
    """The ids a migration's `-- depends:` header names (yoyo's syntax: space-separated)."""
    found = DEPENDS.search(text)
    return found.group(1).split() if found else []


def scaffold(name: str, directory: Path) -> tuple[Path, Path]:
    """`make migration NAME=…`: the next numbered migration and its rollback in `directory`,
    depending on the newest migration there (one chain: every migration depends on the one before)."""
    if not NAME.match(name):
        raise ValueError(f"migration name {name!r}: lower-case letters, digits and _ only")
    ids = sorted(p.name.removesuffix(".sql") for p in directory.glob("[0-9][0-9][0-9][0-9].*.sql")
                 if not p.name.endswith(".rollback.sql"))  # fmt: skip
    previous = ids[-1] if ids else ""
    number = int(previous[:4]) + 1 if previous else 1
    new_id = f"{number:04d}.{name}"
    forward, rollback = directory / f"{new_id}.sql", directory / f"{new_id}.rollback.sql"
    if forward.exists() or rollback.exists():
        raise FileExistsError(forward)
    forward.write_text(
        f"-- {new_id[:4]} {name.replace('_', ' ')}: <one line: what this changes and why>.\n"
        f"-- depends: {previous}\n"
        "-- Write the same change into sql/ (tests/test_migrations.py compares both builds, rows and roles\n"
        "-- included). New migrations are linted by squawk and their functions by plpgsql_check (make test).\n\n"
    )
    rollback.write_text(
        f"-- Undo {new_id[:4]}: drop what it created and restore what it replaced, nothing else.\n"
    )
    return forward, rollback


def apply_schema_files(url: str) -> None:
    """Build a database from sql/ directly (the canonical schema), then post-apply."""
    with psycopg.connect(url, autocommit=True) as conn:
        for path in [*resources.schema_files(), *resources.post_apply()]:
            conn.execute(path.read_text())


def set_login_password(url: str, role: str, password: str) -> None:
    """Give a login role (authenticator, dispatcher) its password; secrets never live in migrations.

    The statement carries the SCRAM verifier libpq computes here, never the password itself, so a
    logged statement (log_min_duration_statement, an audit log) does not reveal it."""
    with psycopg.connect(url, autocommit=True) as conn:
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
        conn.execute(
            sql.SQL("alter role {} with login password {}").format(
                sql.Identifier(role), sql.Literal(verifier.decode())
            )
        )


# Libraries an existing server must preload: pg_cron runs the scheduled jobs, pg_stat_statements feeds
# ops.top_statements (config/postgresql.waybill.conf preloads both on the embedded cluster).
REQUIRED_PRELOAD = ("pg_cron", "pg_stat_statements")


class ServerNotReady(RuntimeError):
    """An existing server lacks a setting Waybill needs; the message gives the postgresql.conf lines."""


def check_server(url: str) -> None:
    """Before migrating an existing server (DATABASE_URL): are pg_cron and pg_stat_statements
    preloaded, and does pg_cron run in this database? If not, say exactly what to add."""
    with psycopg.connect(url) as conn:
        preload, cron_db, db = conn.execute(
            "select current_setting('shared_preload_libraries'),"
            " current_setting('cron.database_name', true), current_database()"
        ).fetchone()
    loaded = [lib.strip().strip('"') for lib in preload.split(",") if lib.strip()]
    missing = [lib for lib in REQUIRED_PRELOAD if lib not in loaded]
    if not missing and cron_db == db:
        return
    wanted = ", ".join([*loaded, *missing])
    raise ServerNotReady(
        "the server at DATABASE_URL is not ready for Waybill: "
        + (f"{', '.join(missing)} not preloaded" if missing else f"pg_cron runs in database {cron_db!r}")
        + ".\nAdd these lines to its postgresql.conf (or ALTER SYSTEM), then restart it:\n"
        f"  shared_preload_libraries = '{wanted}'\n"
        f"  cron.database_name = '{db}'"
    )
