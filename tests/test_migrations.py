"""Migrations and sql/ build the same database; landed migrations never change; rollbacks work."""

from __future__ import annotations

import difflib
import hashlib
import re
import subprocess

import psycopg
import pytest

from waybill import migrate
from waybill.cluster import Cluster

LANDED = migrate.MIGRATIONS_DIR / "landed.sha256"


def _dump(cluster: Cluster, db: str) -> str:
    """Schema-only dump, without yoyo's bookkeeping tables and pg_dump's comments/settings."""
    out = subprocess.run(
        [
            str(cluster.pg_bin / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--exclude-table=public._yoyo*",
            "--exclude-table=public.yoyo_lock",
            cluster.url(db),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    keep = []
    for line in out.splitlines():
        if not line.strip() or line.startswith("--") or line.startswith("SET "):
            continue
        if line.startswith(("SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")):
            continue
        keep.append(re.sub(r"\s+$", "", line))
    return "\n".join(keep)


@pytest.fixture
def empty_db(cluster: Cluster):
    names = []

    def make(name: str) -> str:
        cluster.drop_database(name)
        cluster.create_database(name)
        names.append(name)
        return cluster.url(name)

    yield make
    for n in names:
        cluster.drop_database(n)


def test_migrations_and_sql_files_dump_identically(cluster: Cluster, empty_db) -> None:
    migrate.apply(empty_db("mig_built"))
    migrate.apply_schema_files(empty_db("sql_built"))
    by_migrations = _dump(cluster, "mig_built")
    by_sql = _dump(cluster, "sql_built")
    assert "CREATE TABLE core.orders" in by_migrations
    diff = "\n".join(
        difflib.unified_diff(
            by_sql.splitlines(), by_migrations.splitlines(), "sql/", "migrations/", lineterm=""
        )
    )
    assert not diff, diff


def test_landed_migrations_are_unchanged() -> None:
    recorded = {}
    for line in LANDED.read_text().splitlines():
        digest, name = line.split()
        recorded[name] = digest
    files = sorted(p.name for p in migrate.MIGRATIONS_DIR.glob("*.sql") if p.name != "post-apply.sql")
    # A branch's own, not yet landed migration is numbered after every landed one: it may stay
    # unpinned until it lands. An unpinned file numbered among the landed ones is an edit.
    last_landed = max(name.split(".")[0] for name in recorded)
    unrecorded = [f for f in files if f not in recorded and f.split(".")[0] <= last_landed]
    assert not unrecorded, (
        f"new migration(s) {unrecorded}: add `sha256sum` lines to {LANDED.name} as they land"
    )
    for name, digest in recorded.items():
        path = migrate.MIGRATIONS_DIR / name
        assert path.exists(), f"landed migration {name} was deleted"
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        assert actual == digest, f"landed migration {name} was edited; write a new migration instead"


def test_apply_rollback_apply(empty_db) -> None:
    url = empty_db("roundtrip")
    applied = migrate.apply(url)
    assert applied >= 1
    assert migrate.rollback_all(url) == applied
    with psycopg.connect(url) as conn:
        left = conn.execute(
            "select count(*) from pg_namespace where nspname in ('core', 'ops', 'auth', 'api')"
        ).fetchone()[0]
    assert left == 0
    assert migrate.apply(url) == applied
    assert migrate.apply(url) == 0
    with psycopg.connect(url) as conn:
        n = conn.execute("select count(*) from core.state_transitions").fetchone()[0]
    assert n > 0
