"""Test support shared by `waybill test` (make test) and tests/conftest.py.

One way to start a cluster: a throw-away `Cluster` in a temporary data directory. `waybill test`
starts it, builds the template database from the migrations, runs pgTAP through pg_prove, then
pytest (which reuses the same cluster through WAYBILL_TEST_DATA_DIR), and stops it whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from waybill import migrate
from waybill.cluster import Cluster, ensure_packages, find_pg_bin
from waybill.settings import PROJECT_ROOT

TEMPLATE_DB = "waybill_template"
PGTAP_DB = "waybill_pgtap"
PGTAP_DIR = PROJECT_ROOT / "pgtap"


@contextlib.contextmanager
def test_cluster() -> Iterator[Cluster]:
    """The cluster named by WAYBILL_TEST_DATA_DIR (left running), or a temporary one (destroyed).

    Its main database is `waybill`, where pg_cron lives: the pg_cron launcher stays connected
    there, so it must not be the template that tests clone.
    """
    reuse = os.environ.get("WAYBILL_TEST_DATA_DIR")
    if reuse:
        cluster = Cluster(Path(reuse))
        cluster.start()
        yield cluster
        return
    data_dir = Path(tempfile.mkdtemp(prefix="waybill-test-"))
    cluster = Cluster(data_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def build_template(cluster: Cluster) -> None:
    """Migrate the template database (idempotent: yoyo skips what is applied)."""
    cluster.create_database(TEMPLATE_DB)
    migrate.apply(cluster.url(TEMPLATE_DB))


def run_pgtap(cluster: Cluster, files: list[str] | None = None) -> int:
    """pg_prove over pgtap/*.sql against a fresh copy of the migrated template."""
    cluster.drop_database(PGTAP_DB)
    cluster.create_database(PGTAP_DB)
    url = cluster.url(PGTAP_DB)
    migrate.apply(url)
    with cluster.connect(PGTAP_DB, autocommit=True) as conn:
        conn.execute("create schema if not exists tap")
        conn.execute("create extension if not exists pgtap with schema tap")
        for helper in sorted((PGTAP_DIR / "helpers").glob("*.sql")):
            conn.execute(helper.read_text())
        # Tests switch to request roles (tap.become) and keep asserting: they need pgTAP too.
        roles = "anon, admin, platform_admin, service, agent, dispatcher"
        conn.execute(f"grant usage on schema tap to {roles}")
        conn.execute(f"grant execute on all functions in schema tap to {roles}")
    tests = files or [str(p) for p in sorted(PGTAP_DIR.glob("*.sql"))]
    env = dict(
        os.environ,
        PGHOST=str(cluster.pgdata),
        PGPORT=str(cluster.port),
        PGUSER="postgres",
        PGDATABASE=PGTAP_DB,
        PGOPTIONS="-c search_path=tap,public",
    )
    return subprocess.run(["pg_prove", "--ext", ".sql", *tests], env=env).returncode


def run_all(pytest_args: list[str]) -> int:
    """`make test`: pgTAP through pg_prove, then pytest, on one throw-away cluster."""
    # Before any cluster starts: install what is missing (as root) or name it and stop.
    ensure_packages(find_pg_bin())
    with test_cluster() as cluster:
        build_template(cluster)
        rc = run_pgtap(cluster)
        if rc != 0:
            print(f"pgTAP failed (exit {rc}); pytest not run", file=sys.stderr)
            return rc
        env = dict(os.environ, WAYBILL_TEST_DATA_DIR=str(cluster.data_dir))
        return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], env=env).returncode
