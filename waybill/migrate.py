"""Schema changes: yoyo migrations (what production applies) and sql/ (the readable schema).

Both build the same database; tests/test_migrations.py proves it by comparing normalised dumps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from yoyo import get_backend, read_migrations

from waybill.settings import PROJECT_ROOT

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
SQL_DIR = PROJECT_ROOT / "sql"
POST_APPLY = MIGRATIONS_DIR / "post-apply.sql"


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
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(url) as backend:
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
        if not pending:  # yoyo runs post-apply only after applying something
            backend.run_post_apply(migrations)
    return len(pending)


def rollback_all(url: str) -> int:
    """Roll back every applied migration, newest first. Returns how many."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(url) as backend:
        applied = backend.to_rollback(migrations)
        backend.rollback_migrations(applied)
    return len(applied)


def schema_files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))


def apply_schema_files(url: str) -> None:
    """Build a database from sql/ directly (the canonical schema), then post-apply."""
    with psycopg.connect(url, autocommit=True) as conn:
        for path in [*schema_files(), POST_APPLY]:
            conn.execute(path.read_text())


def set_login_password(url: str, role: str, password: str) -> None:
    """Give a login role (authenticator, dispatcher) its password; secrets never live in migrations."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("alter role {} with login password {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
