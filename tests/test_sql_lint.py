"""DBA linters in make test: squawk on every migration written after the landed ones, plpgsql_check on
every PL/pgSQL function of Waybill's schemas.

Both are generic: a new migration file is linted because its number is above the last landed one, a
new function (webhooks, metrics…) is checked because it is PL/pgSQL in a schema that is not
PostgreSQL's and not an extension's. What they report is fixed, or allowed below with its reason.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from waybill import resources

# (function as regprocedure text, sqlstate, message) -> why it is acceptable. Keep it short: fix first.
PLPGSQL_CHECK_ALLOWED: dict[tuple[str, str, str], str] = {
    ("ops.assign_owner(name)", "00000", "text type variable is not sanitized"): (
        "the EXECUTE's kind is one of fixed catalog words and its identity comes from "
        "pg_identify_object(), which quotes every name; the owner goes through %I"
    ),
    ("ops.assign_owner(name)", "00000", "routine is marked as VOLATILE, should be STABLE"): (
        "it runs ALTER ... OWNER TO through EXECUTE, which plpgsql_check cannot see as a write"
    ),
    ("webhooks.schedule_retention()", "3F000", 'schema "cron" does not exist'): (
        "pg_cron's schema exists only in the database pg_cron runs in (cron.database_name); the function "
        "returns before the call anywhere else, which is where the test clones are checked"
    ),
    # metrics (issue 11): the HTTP argument names `from` and `to` are fixed by the issue (PostgREST
    # passes every argument name quoted, so a reserved word works as one).
    **{
        (fn, "00000", f'name of parameter "{name}" is reserved keyword'): "issue 11 fixes the argument name"
        for fn in (
            "api.agent_metrics(text,text,text)",
            "api.agent_leaderboard(text,text,text,text,text,text,text,text)",
            "api.sla_summary(text,text,text,text)",
        )
        for name in ("from", "to")
    },
    # pg_cron's schema exists only in the database pg_cron runs in (cron.database_name); these
    # functions check for it before reaching it.
    (
        "api.health_metrics()",
        "42P01",
        'relation "cron.job" does not exist',
    ): "guarded by to_regclass('cron.job')",
    ("metrics.schedule_refresh_jobs()", "3F000", 'schema "cron" does not exist'): (
        "guarded: it returns before this unless this is cron.database_name, and creates pg_cron first"
    ),
    ("metrics.unschedule_refresh_jobs()", "42P01", 'relation "cron.job" does not exist'): (
        "guarded by to_regclass('cron.job')"
    ),
    ("metrics.unschedule_refresh_jobs()", "00000", "routine is marked as VOLATILE, should be STABLE"): (
        "it calls cron.unschedule through EXECUTE, a write plpgsql_check cannot see"
    ),
}

# Landed migrations (0001-0004) came before squawk; their findings are history (files never edited).
# squawk rules a migration may skip, file by file, are marked in the file itself with a reason on the
# line above: `-- squawk-ignore <rule>` (see migrations/0008.house.rollback.sql).

CHECK_QUERY = """
select p.oid::regprocedure::text, c.sqlstate, c.message, c.level, c.lineno, c.statement
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  join pg_language l on l.oid = p.prolang and l.lanname = 'plpgsql'
  -- a trigger function is checked against a table it fires on (new/old need a row type)
  left join lateral (select tg.tgrelid from pg_trigger tg where tg.tgfoid = p.oid order by tg.oid limit 1) t
    on true
 cross join lateral plpgsql_check_function_tb(p.oid, coalesce(t.tgrelid, 0), fatal_errors => false,
                                               other_warnings => true, performance_warnings => true,
                                               extra_warnings => true, security_warnings => true) c
 where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_'
   and not exists (select 1 from pg_depend d
                    where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
   and (p.prorettype <> 'trigger'::regtype or t.tgrelid is not null)
 order by 1, c.lineno
"""


def squawk() -> str:
    found = Path(sys.executable).with_name("squawk")
    path = str(found) if found.exists() else shutil.which("squawk")
    if path is None:
        pytest.fail("squawk is missing: it is a dev dependency (make deps installs it)")
    return path


def new_migrations() -> list[Path]:
    landed = {
        line.split()[1]
        for line in resources.migrations_dir().joinpath("landed.sha256").read_text().splitlines()
    }
    last = max(name[:4] for name in landed)
    return [
        Path(str(f))
        for f in sorted(resources.migrations_dir().iterdir(), key=lambda f: f.name)
        if f.name.endswith(".sql") and f.name[:4].isdigit() and f.name[:4] > last
    ]


def run_squawk(files: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        # yoyo runs each migration file in one transaction: squawk then knows a failed file leaves
        # nothing behind (no IF NOT EXISTS needed) and that SET LOCAL lasts for the whole file.
        [squawk(), "--pg-version", "15", "--assume-in-transaction", *map(str, files)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_new_migrations_pass_squawk() -> None:
    files = new_migrations()
    if not files:
        pytest.skip("no migration after the landed ones")
    r = run_squawk(files)
    assert r.returncode == 0, r.stdout + r.stderr


def test_squawk_catches_a_blocking_migration(tmp_path: Path) -> None:
    bad = tmp_path / "9999.bad.sql"
    bad.write_text("create index orders_note_idx on core.orders (note);\n")
    r = run_squawk([bad])
    assert r.returncode != 0 and "require-concurrent-index-creation" in r.stdout, r.stdout + r.stderr


def findings(conn: psycopg.Connection) -> list[tuple]:
    conn.execute("create extension if not exists plpgsql_check")
    return conn.execute(CHECK_QUERY).fetchall()


def test_every_plpgsql_function_passes_plpgsql_check(conn: psycopg.Connection) -> None:
    checked = conn.execute(
        "select count(*) from pg_proc p join pg_language l on l.oid = p.prolang "
        "join pg_namespace n on n.oid = p.pronamespace where l.lanname = 'plpgsql' and n.nspname = 'core'"
    ).fetchone()[0]
    assert checked > 20  # the query below really walks our functions
    reported = [f for f in findings(conn) if (f[0], f[1], f[2]) not in PLPGSQL_CHECK_ALLOWED]
    assert not reported, "\n".join(map(repr, reported))


def test_plpgsql_check_catches_a_broken_function(conn: psycopg.Connection) -> None:
    conn.execute(
        """create function core.lint_probe() returns bigint language plpgsql set search_path = '' as $$
           declare v bigint;
           begin select o.no_such_column into v from core.orders o limit 1; return v; end $$"""
    )
    reported = [f for f in findings(conn) if f[0] == "core.lint_probe()"]
    assert reported and reported[0][3] == "error" and "no_such_column" in reported[0][2], reported
