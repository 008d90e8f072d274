"""Migrations and sql/ build the same database; landed migrations never change; one chain; rollbacks
undo exactly their own migration.

"The same database" means everything a build leaves behind, not only the catalog:
- the schema (pg_dump --schema-only);
- every row a build writes: pg_dump --data-only of every table, sequences included. No registry:
  a reference table another migration fills (webhook event types, metric windows…) is compared as
  soon as it exists, because the data dump covers all tables but yoyo's bookkeeping (a column a build
  fills from the clock is listed once in BUILD_TIME_COLUMNS, with its reason);
- roles: attributes, memberships, per-role settings (cluster-wide, so compared on a cluster of their own);
- pg_cron jobs (cron.job) of the built database, when the extension is there (both builds run in
  the cluster's main database, which is cron.database_name, so a migration may create pg_cron).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from waybill import migrate, resources, testing
from waybill.cluster import Cluster

LANDED_FILE = resources.migrations_dir().joinpath("landed.sha256")
YOYO_TABLES = ("--exclude-table=public._yoyo*", "--exclude-table=public.yoyo_lock")
# Landed before the one-chain rule, never to be edited: 0003 depends on 0001 (it touches only 0001's
# tables) and 0004 on 0002, so 0003 is a second head (yoyo still applies it before 0004: file order).
# Every later migration depends on exactly the one before it.
LANDED_DEPENDS = {"0003.sprint8_indexes": ["0001.foundation"], "0004.api": ["0002.slow_queries"]}


def _pg_dump(cluster: Cluster, db: str, *args: str) -> str:
    return subprocess.run(
        [str(cluster.pg_bin / "pg_dump"), "--no-owner", *YOYO_TABLES, *args, cluster.url(db)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _clean(out: str) -> list[str]:
    """Drop pg_dump's comments, blank lines and session settings."""
    keep = []
    for line in out.splitlines():
        if not line.strip() or line.startswith(("--", "SET ", "SELECT pg_catalog.set_config")):
            continue
        if line.startswith(("\\restrict", "\\unrestrict")):
            continue
        keep.append(re.sub(r"\s+$", "", line))
    return keep


def schema_dump(cluster: Cluster, db: str) -> str:
    return "\n".join(_clean(_pg_dump(cluster, db, "--schema-only")))


# Columns whose value a build writes from its clock or randomness ("schema.table.column" -> why), masked
# before comparing. A reference table that needs one registers it here; none does today.
BUILD_TIME_COLUMNS: dict[str, str] = {}
COPY_LINE = re.compile(r"^COPY (\S+) \((.*)\) FROM stdin;$")


def data_dump(cluster: Cluster, db: str) -> str:
    """Every table's rows and every sequence's value; rows sorted within each table (their physical
    order is not part of the data), BUILD_TIME_COLUMNS masked."""
    lines, block, out, masked = _clean(_pg_dump(cluster, db, "--data-only")), None, [], []
    for line in lines:
        if block is not None:
            if line == "\\.":
                out += sorted(block) + [line]
                block = None
            else:
                cells = line.split("\t")
                for i in masked:
                    cells[i] = "<build time>"
                block.append("\t".join(cells))
        else:
            out.append(line)
            copy = COPY_LINE.match(line)
            if copy:
                block = []
                columns = [c.strip().strip('"') for c in copy.group(2).split(",")]
                masked = [i for i, c in enumerate(columns) if f"{copy.group(1)}.{c}" in BUILD_TIME_COLUMNS]
    return "\n".join(out)


def roles(conn: psycopg.Connection) -> list[tuple]:
    """Every role but PostgreSQL's own: attributes, settings, memberships (who granted excluded: the
    building role differs between a fresh install and a test)."""
    attrs = conn.execute(
        """select r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
                  r.rolreplication, r.rolconnlimit, r.rolvaliduntil, r.rolbypassrls
             from pg_roles r where r.rolname !~ '^pg_' and r.oid <> 10 order by 1"""
    ).fetchall()
    members = conn.execute(
        """select 'member', r.rolname, m.rolname, a.admin_option
             from pg_auth_members a join pg_roles r on r.oid = a.roleid join pg_roles m on m.oid = a.member
            where m.rolname !~ '^pg_' order by 2, 3"""
    ).fetchall()
    settings = conn.execute(
        """select 'setting', coalesce(d.datname, '*'), coalesce(r.rolname, '*'), s.setconfig
             from pg_db_role_setting s left join pg_roles r on r.oid = s.setrole
             left join pg_database d on d.oid = s.setdatabase order by 2, 3"""
    ).fetchall()
    return [*attrs, *members, *settings]


def cron_jobs(conn: psycopg.Connection) -> list[tuple]:
    """The pg_cron jobs of this database (if pg_cron is installed in it), without their ids."""
    if not conn.execute("select 1 from pg_extension where extname = 'pg_cron'").fetchone():
        return []
    return conn.execute(
        """select jobname, schedule, command, username, active from cron.job
            where database = current_database() order by jobname, command"""
    ).fetchall()


def snapshot(cluster: Cluster, db: str) -> dict[str, object]:
    with cluster.connect(db) as conn:
        return {
            "schema": schema_dump(cluster, db),
            "data": data_dump(cluster, db),
            "roles": roles(conn),
            "cron": cron_jobs(conn),
        }


def diff(a: object, b: object, a_name: str, b_name: str) -> str:
    a_lines = a.splitlines() if isinstance(a, str) else [repr(x) for x in a]  # type: ignore[union-attr]
    b_lines = b.splitlines() if isinstance(b, str) else [repr(x) for x in b]  # type: ignore[union-attr]
    return "\n".join(difflib.unified_diff(a_lines, b_lines, a_name, b_name, lineterm=""))


def _drop_roles_except(cluster: Cluster, keep: set[str]) -> None:
    with cluster.connect(autocommit=True) as conn:
        names = [r[0] for r in conn.execute("select rolname from pg_roles").fetchall()]
        for name in names:
            if name not in keep:
                conn.execute(psycopg.sql.SQL("drop role {}").format(psycopg.sql.Identifier(name)))


@pytest.fixture(scope="module")
def builds() -> Iterator[dict[str, dict[str, object]]]:
    """Both builds on a cluster of their own, one after the other in its main database (so pg_cron,
    which runs only in cron.database_name, could live there), with the roles each build created."""
    with testing.throwaway_cluster() as fresh:
        with fresh.connect() as conn:
            baseline = {r[0] for r in conn.execute("select rolname from pg_roles").fetchall()}
        result = {}
        for name, build in (("sql/", migrate.apply_schema_files), ("migrations/", migrate.apply)):
            fresh.drop_database(fresh.db_name)
            _drop_roles_except(fresh, baseline)
            fresh.create_database(fresh.db_name)
            build(fresh.url())
            result[name] = snapshot(fresh, fresh.db_name)
        yield result


@pytest.mark.parametrize("part", ["schema", "data", "roles", "cron"])
def test_migrations_and_sql_files_build_the_same_database(builds: dict, part: str) -> None:
    by_sql, by_migrations = builds["sql/"][part], builds["migrations/"][part]
    assert by_sql == by_migrations, diff(by_sql, by_migrations, "sql/", "migrations/")


def test_the_comparison_sees_what_it_claims(builds: dict) -> None:
    """Each part holds what it must, so an empty dump cannot pass for equality."""
    built = builds["migrations/"]
    assert "CREATE TABLE core.orders" in built["schema"]
    assert "COPY ops.error_codes" in built["data"] and "COPY core.state_transitions" in built["data"]
    assert "'ORDER_INVALID_TRANSITION'" not in built["data"]  # COPY rows, not INSERTs:
    assert re.search(r"^ORDER_INVALID_TRANSITION\t", built["data"], re.M)
    # BUILD_TIME_COLUMNS can be masked: the COPY header is parsed into its table and columns
    headers = [COPY_LINE.match(line) for line in built["data"].splitlines() if line.startswith("COPY ")]
    assert headers and all(headers) and any(h.group(1) == "ops.error_codes" for h in headers)
    role_names = {r[0] for r in built["roles"] if len(r) == 10}
    assert {
        "authenticator",
        "anon",
        "service",
        "agent",
        "admin",
        "platform_admin",
        "dispatcher",
    } <= role_names
    assert ("member", "service", "authenticator", False) in built["roles"]


def test_landed_migrations_are_unchanged() -> None:
    recorded = {}
    for line in LANDED_FILE.read_text().splitlines():
        digest, name = line.split()
        recorded[name] = digest
    files = {f.name: f for f in resources.migrations_dir().iterdir() if f.name.endswith(".sql")}
    for name, digest in recorded.items():
        assert name in files, f"landed migration {name} was deleted"
        actual = hashlib.sha256(files[name].read_bytes()).hexdigest()
        assert actual == digest, f"landed migration {name} was edited; write a new migration instead"
    last_landed = max(name[:4] for name in recorded)
    for name in files:
        if not name.startswith("post-apply") and name not in recorded:
            assert name[:4] > last_landed, f"{name}: a new migration is numbered after the landed ones"


def test_one_chain_every_migration_depends_on_the_one_before() -> None:
    files = resources.migration_files()
    ids = [f.name.removesuffix(".sql") for f in files]
    assert ids == migrate.ordered_ids(), "yoyo's order is the file order"
    assert len({i[:4] for i in ids}) == len(ids), f"two migrations share a number: {ids}"
    for previous, f in zip([None, *ids], files, strict=False):
        depends = migrate.depends_of(f.read_text())
        expected = LANDED_DEPENDS.get(f.name.removesuffix(".sql"), [previous] if previous else [])
        assert depends == expected, f"{f.name} depends on {depends}, expected {expected}"
    depended_on = {d for f in files for d in migrate.depends_of(f.read_text())}
    heads = [i for i in ids if i not in depended_on and i != "0003.sprint8_indexes"]
    assert heads == [ids[-1]], f"more than one head: {heads}"


def test_each_rollback_undoes_exactly_its_migration(cluster: Cluster, empty_db) -> None:
    """For each migration N: the database after N-1, and after N-1 + N + rollback N, are equal."""
    url = empty_db("steps")
    db = "steps"
    before = snapshot(cluster, db)
    for mid in migrate.ordered_ids():
        migrate.apply_step(url, mid)
        migrate.apply_step(url, mid, rollback=True)
        after = snapshot(cluster, db)
        for part in before:
            assert before[part] == after[part], f"rollback of {mid} left {part} changed:\n" + diff(
                before[part], after[part], f"before {mid}", f"after {mid} + rollback"
            )
        migrate.apply_step(url, mid)
        before = snapshot(cluster, db)


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


def test_scaffold_makes_the_next_link_of_the_chain(tmp_path) -> None:
    for f in resources.migrations_dir().iterdir():
        if f.name.endswith(".sql"):
            (tmp_path / f.name).write_text(f.read_text())
    newest = migrate.ordered_ids()[-1]
    forward, rollback = migrate.scaffold("add_widgets", tmp_path)
    number = int(newest[:4]) + 1
    assert forward.name == f"{number:04d}.add_widgets.sql"
    assert rollback.name == f"{number:04d}.add_widgets.rollback.sql"
    assert migrate.depends_of(forward.read_text()) == [newest]
    with pytest.raises(ValueError):
        migrate.scaffold("Bad-Name", tmp_path)
    # the one after it depends on it
    second, _ = migrate.scaffold("more", tmp_path)
    assert migrate.depends_of(second.read_text()) == [forward.name.removesuffix(".sql")]


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


def test_cron_jobs_are_part_of_the_comparison(cluster: Cluster) -> None:
    """pg_cron lives only in cron.database_name (the test cluster's main database): a job scheduled
    there shows up in the snapshot, without its id."""
    with cluster.connect(cluster.db_name, autocommit=True) as conn:
        conn.execute("create extension if not exists pg_cron")
        try:
            conn.execute("select cron.schedule('waybill-drift-probe', '0 0 1 1 *', 'select 1')")
            # other tests may have left their own jobs in this shared database: look for the probe
            assert ("waybill-drift-probe", "0 0 1 1 *", "select 1", "postgres", True) in cron_jobs(conn)
        finally:
            conn.execute("drop extension pg_cron")
