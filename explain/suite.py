"""`make explain`: prove from EXPLAIN that the key queries use their indexes at a realistic volume.

A DBA runs it on its own. It starts a throw-away cluster (or uses --database-url: a disposable copy,
never production — it seeds into it and drops indexes inside rolled-back transactions), seeds it
with waybill.seed (200,000 orders and 5,000 agents by default), fills the webhook outbox (300,000
events, 600,000 deliveries: the seed writes none), runs VACUUM (ANALYZE), and for every
query of explain/queries.sql:

  * with a custom plan and with a generic plan (non-inlined SQL functions plan their statements
    generically on every call; PL/pgSQL, after five custom plans, keeps the generic one when it
    looks no dearer, and always under plan_cache_mode = force_generic_plan, as agent_activity and
    geographic_coverage run since 0027), checks with
    EXPLAIN (ANALYZE, FORMAT JSON) that the expected index is used and that no Seq Scan reads a
    table of more than 10,000 rows (a query marked `-- plan: generic`, which its function only
    ever runs with its generic plan, is checked on that plan alone);
  * measures the execution time with the index and without it (the index dropped inside a
    transaction that is rolled back), median of --runs runs after a warm-up;

then times the build of every index of migration 0003 at this volume. It prints the tables and
exits 1 if an assertion failed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import ClientCursor

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUERIES = HERE / "queries.sql"
MIGRATION = ROOT / "migrations" / "0003.sprint8_indexes.sql"
SUITE_DB = "waybill_explain"
LARGE_ROWS = 10_000


@dataclass
class Query:
    name: str
    serves: str
    expects: list[str]
    params_sql: str
    sql: str
    as_agent: str | None = None
    node: str | None = None  # the plan node the index must be used by, when it matters
    generic_only: bool = False  # its function runs it with force_generic_plan: the custom plan is shown only


@dataclass
class Result:
    query: Query
    args: tuple = ()
    custom_node: str = ""
    generic_node: str = ""
    rows: int = 0
    heap_fetches: int | None = None
    ms_with: float = 0.0
    ms_without: float | None = None
    without_node: str = ""
    problems: list[str] = field(default_factory=list)


def load_queries(path: Path = QUERIES) -> list[Query]:
    """The `-- name:` blocks of queries.sql with their serves/expect/params headers."""
    queries = []
    for chunk in re.split(r"^-- name: ", path.read_text(), flags=re.M)[1:]:
        name, _, rest = chunk.partition("\n")
        meta: dict[str, list[str]] = {
            "serves": [],
            "expect": [],
            "expect-node": [],
            "params": [],
            "as-agent": [],
            "plan": [],
        }
        body = []
        for line in rest.splitlines():
            m = re.match(r"-- (serves|expect|expect-node|params|as-agent|plan): (.*)$", line)
            if m:
                meta[m[1]].append(m[2].strip())
            else:
                body.append(line)
        sql = "\n".join(body).strip().rstrip(";")
        if not meta["expect"] or not meta["params"]:
            raise ValueError(f"query {name}: needs -- expect: and -- params: headers")
        if meta["plan"] not in ([], ["generic"]):
            raise ValueError(f"query {name}: -- plan: takes one value, generic")
        queries.append(
            Query(
                name.strip(),
                " ".join(meta["serves"]),
                meta["expect"],
                meta["params"][0],
                sql,
                meta["as-agent"][0] if meta["as-agent"] else None,
                meta["expect-node"][0] if meta["expect-node"] else None,
                meta["plan"] == ["generic"],
            )
        )
    return queries


INDEX_TABLE: dict[str, str] = {}  # index name -> table name, filled from the catalog
INDEX_SCHEMA: dict[str, str] = {}  # index name -> its schema (core, or metrics for the rollups and views)


# -- plans -----------------------------------------------------------------------------------------
def nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def node_type(node: dict) -> str:
    return ("Parallel " if node.get("Parallel Aware") else "") + node["Node Type"]


def scans_of(plan: dict, relation: str) -> str:
    """How the plan reads one table, e.g. "Parallel Seq Scan" or "Index Scan ledger_entries_pkey"."""
    found = []
    for n in nodes(plan):
        rel = n.get("Relation Name")
        if n["Node Type"] == "Bitmap Index Scan":
            rel = INDEX_TABLE.get(n.get("Index Name", ""))
        if rel == relation:
            found.append(node_type(n) + (f" {n['Index Name']}" if "Index Name" in n else ""))
    return " + ".join(dict.fromkeys(found)) or "-"


def check_plan(plan: dict, q: Query, sizes: dict[str, int], label: str) -> tuple[str, list[str]]:
    """The node types that use the expected indexes, and what is wrong with the plan."""
    problems = []
    used = []
    for index in q.expects:
        hits = [node_type(n) for n in nodes(plan) if n.get("Index Name") == index]
        if not hits:
            problems.append(f"{label} plan does not use {index}")
            continue
        used.append(" + ".join(dict.fromkeys(hits)))
        if q.node and q.node not in hits:
            problems.append(f"{label} plan reads {index} with {', '.join(hits)}, not {q.node}")
    for n in nodes(plan):
        if n["Node Type"] == "Seq Scan" and sizes.get(n.get("Relation Name", ""), 0) > LARGE_ROWS:
            problems.append(
                f"{label} plan: {node_type(n)} on {n['Relation Name']} ({sizes[n['Relation Name']]:,} rows)"
            )
    return " / ".join(used), problems


# -- running ---------------------------------------------------------------------------------------
def explain(cur: ClientCursor, stmt: str, args: tuple, *, timing: bool) -> tuple[dict, float]:
    opts = "analyze, buffers, format json" if timing else "analyze, timing off, format json"
    call = f"execute {stmt}" + (f"({', '.join(['%s'] * len(args))})" if args else "")
    cur.execute(f"explain ({opts}) {call}", args)
    doc = cur.fetchone()[0][0]
    return doc["Plan"], doc["Execution Time"]


def median_ms(cur: ClientCursor, stmt: str, args: tuple, runs: int) -> float:
    explain(cur, stmt, args, timing=False)  # warm-up: caches, catalog, plan
    return statistics.median(explain(cur, stmt, args, timing=False)[1] for _ in range(runs))


def drop_statement(cur: ClientCursor, index: str) -> str:
    """DROP for an index (of core or webhooks), or for the constraint it backs."""
    row = cur.execute(
        """select format('alter table %%s drop constraint %%I', k.conrelid::regclass, k.conname)
             from pg_constraint k where k.conindid = to_regclass(%s)""",
        [INDEX_SCHEMA.get(index, "core") + "." + index],
    ).fetchone()
    return row[0] if row else f"drop index {INDEX_SCHEMA.get(index, 'core')}.{index}"


class Caller:
    """Who runs the query: the owner (as the SECURITY DEFINER functions do), or an agent's request."""

    def __init__(self, cur: ClientCursor, agent_id: int | None):
        self.cur = cur
        self.claims = json.dumps({"role": "agent", "sub": str(agent_id)}) if agent_id is not None else None

    def become(self) -> None:
        if self.claims:
            self.cur.execute("select set_config('request.jwt.claims', %s, false)", [self.claims])
            self.cur.execute("set role agent")

    def back(self) -> None:
        self.cur.execute("reset role")
        self.cur.execute("select set_config('request.jwt.claims', '', false)")


def run_query(cur: ClientCursor, q: Query, sizes: dict[str, int], runs: int, before: bool) -> Result:
    res = Result(q)
    res.args = tuple(cur.execute(q.params_sql).fetchone())
    caller = Caller(cur, cur.execute(q.as_agent).fetchone()[0] if q.as_agent else None)
    try:
        caller.become()
        cur.execute("set plan_cache_mode = force_custom_plan")
        cur.execute(f"prepare q_custom as {q.sql}")
        plan, _ = explain(cur, "q_custom", res.args, timing=True)
        res.custom_node, problems = check_plan(plan, q, sizes, "custom")
        if not q.generic_only:
            res.problems += problems
        res.rows = plan.get("Actual Rows", 0)
        fetches = [n["Heap Fetches"] for n in nodes(plan) if "Heap Fetches" in n]
        res.heap_fetches = sum(fetches) if fetches else None
        res.ms_with = median_ms(cur, "q_custom", res.args, runs)

        cur.execute("set plan_cache_mode = force_generic_plan")
        cur.execute(f"prepare q_generic as {q.sql}")
        plan, _ = explain(cur, "q_generic", res.args, timing=True)
        res.generic_node, problems = check_plan(plan, q, sizes, "generic")
        res.problems += problems
    finally:
        cur.execute("deallocate all")
        cur.execute("reset plan_cache_mode")
        caller.back()
    if before and all(i in INDEX_TABLE for i in q.expects):
        # "Without the index": dropped inside a transaction that is rolled back, so the planner
        # picks what it would pick had the index never existed.
        cur.execute("begin")
        try:
            cur.execute("set local lock_timeout = '10s'")
            for index in q.expects:
                cur.execute(drop_statement(cur, index))
            caller.become()
            cur.execute(f"prepare q_without as {q.sql}")
            plan, _ = explain(cur, "q_without", res.args, timing=True)
            tables = dict.fromkeys(INDEX_TABLE[i] for i in q.expects)
            res.without_node = "; ".join(scans_of(plan, t) for t in tables)
            res.ms_without = median_ms(cur, "q_without", res.args, runs)
            cur.execute("deallocate all")
        finally:
            cur.execute("rollback")
            caller.back()
    return res


def time_index_builds(cur: ClientCursor) -> list[tuple[str, str, float, int]]:
    """Build time (ms) and size of every index of migration 0003 at this volume (rolled back)."""
    out = []
    for index in re.findall(r"^create index (\w+)", MIGRATION.read_text(), flags=re.M):
        ddl, table = cur.execute(
            "select pg_get_indexdef(i.indexrelid), i.indrelid::regclass::text from pg_index i "
            "where i.indexrelid = to_regclass('core.' || %s)",
            [index],
        ).fetchone()
        size = cur.execute("select pg_relation_size(to_regclass('core.' || %s))", [index]).fetchone()[0]
        cur.execute("begin")
        try:
            cur.execute(f"drop index core.{index}")
            t0 = time.perf_counter()
            cur.execute(ddl)
            ms = (time.perf_counter() - t0) * 1000
        finally:
            cur.execute("rollback")
        out.append((index, table, ms, size))
    return out


PARAMS_SQL = """
create temp table explain_params as
with seller_wallet as (
    select e.wallet_id, count(*) as n from core.ledger_entries e
      join core.wallets w on w.id = e.wallet_id and w.kind = 'SELLER'
     group by e.wallet_id order by n desc, e.wallet_id limit 1
), agent as (
    select a.agent_id, count(*) as n from core.shipping_assignments a
      join core.delivery_agents d on d.id = a.agent_id and d.status = 'ACTIVE'
     group by a.agent_id order by n desc, a.agent_id limit 1
), zip as (
    select z.zip, count(*) as n from core.delivery_agents d cross join unnest(d.serviceable_zip_codes) z (zip)
     where d.status = 'ACTIVE' group by z.zip order by n desc, z.zip limit 1
), last_delivery as (
    select max(a.delivered_at) as t from core.shipping_assignments a where a.status = 'DELIVERED'
)
select 'busiest_seller_wallet' as k, (select wallet_id from seller_wallet) as wallet_id,
       null::bigint as agent_id, null::text as zip, null::bigint as order_id, null::bigint as payment_id,
       null::timestamptz as t_from, null::timestamptz as t_to
union all
select 'busiest_agent', null, (select agent_id from agent), null, null, null,
       (select t - interval '90 days' from last_delivery), (select t + interval '1 second' from last_delivery)
union all
select 'last_week', null, null, null, null, null,
       (select t - interval '7 days' from last_delivery), (select t + interval '1 second' from last_delivery)
union all
select 'busiest_zip', null, null, (select zip from zip), null, null, null, null
union all
select 'some_order', null, null, null,
       (select o.id from core.orders o where o.version = (select max(version) from core.orders)
         order by o.id limit 1), null, null, null
union all
select 'busiest_webhook_subscription', null, (select d.subscription_id from webhooks.deliveries d
         where d.status = 'FAILED' group by 1 order by count(*) desc, 1 limit 1), null, null, null,
       now() - interval '1 day', now()
union all
select 'refunded_payment', null, null, null, null,
       (select r.payment_id from core.refunds r
         group by r.payment_id order by count(*) desc, r.payment_id limit 1), null, null
"""


# -- database and data -----------------------------------------------------------------------------
def seed(url: str, orders: int, agents: int, seed_value: float) -> str:
    """The project's demo data (waybill/seed.py: set-based, one transaction, invariants re-checked)."""
    from waybill import seed as demo

    return demo.seed(url, orders=orders, agents=agents, seed=seed_value)


def table_sizes(cur: ClientCursor) -> dict[str, int]:
    tables = [
        r[0]
        for r in cur.execute(
            "select c.relnamespace::regnamespace || '.' || c.relname from pg_class c"
            " where c.relnamespace in ('core'::regnamespace, 'metrics'::regnamespace, 'webhooks'::regnamespace) and c.relkind in ('r', 'm')"
        ).fetchall()
    ]
    # keyed by bare name, as EXPLAIN names relations (no table name is in both schemas)
    return {t.split(".")[1]: cur.execute(f"select count(*) from {t}").fetchone()[0] for t in sorted(tables)}


WEBHOOK_OUTBOX_SQL = """
-- A live outbox as 30 days of retention leave it (the seed writes no events: history is not news):
-- 3 subscriptions, %(events)s events over 30 days, 2 deliveries each, nearly all DELIVERED, ~1 %%
-- FAILED, the last minute's rows PENDING (the backlog) and a few SENDING. Set-based, then analyzed.
insert into webhooks.subscriptions (url, event_types, created_by, updated_by)
select 'https://explain-' || g || '.example.test/', (select array_agg(event_type) from webhooks.event_types),
       'explain', 'explain'
  from generate_series(1, 3) g;
insert into webhooks.events (event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, created_at, data)
select t.event_type, t.aggregate_type, g, 'explain:' || g, ts, ts, '{"explain": true}'
  from generate_series(1, %(events)s) g
 cross join lateral (select now() - interval '30 days' * (1 - g::float8 / %(events)s) as ts) x
 cross join lateral (select * from webhooks.event_types order by event_type offset g %% 11 limit 1) t;
insert into webhooks.deliveries (event_id, subscription_id, status, attempts, next_attempt_at, lease_owner,
                                 lease_token, lease_until, created_at, updated_at, delivered_at, finished_at)
select e.id, s.id, st.status, case when st.status = 'PENDING' then 0 else 1 end,
       case st.status when 'PENDING' then e.created_at when 'SENDING' then now() + interval '20 s' end,
       case when st.status = 'SENDING' then 'explain' end,
       case when st.status = 'SENDING' then gen_random_uuid() end,
       case when st.status = 'SENDING' then now() + interval '20 s' end,
       e.created_at, e.created_at,
       case when st.status = 'DELIVERED' then e.created_at end,
       case when st.status in ('DELIVERED', 'FAILED') then e.created_at end
  from webhooks.events e
 cross join (select id from webhooks.subscriptions where created_by = 'explain' order by id limit 2) s
 cross join lateral (select case when e.created_at > now() - interval '1 minute' then 'PENDING'
                                 when e.created_at > now() - interval '2 minutes' then 'SENDING'
                                 when hashint8(e.aggregate_id + s.id) %% 100 = 0 then 'FAILED'
                                 else 'DELIVERED' end as status) st;
set constraints all immediate;
"""


ANSWER_CACHE_SQL = """
-- The answer cache (0026) as a day of admin use leaves it: the leaderboard of each standard window
-- by two sorts, ten past weeks, and every zip code's SLA summary over each standard window and the
-- twelve past weeks, filled as the cache worker fills misses.
select count(*) filter (where metrics.fill_answer_cache(k.key))
  from (select metrics.leaderboard_cache_key(w.d_from, w.d_to, null, s.sort_by, 'desc', 5) as key
          from metrics.windows(metrics.utc_day(now())) w, (values ('deliveries'), ('on_time_rate')) s (sort_by)
        union all
        select metrics.leaderboard_cache_key(metrics.utc_day(now()) - 7 * g, metrics.utc_day(now()) - 7 * g + 7,
                                             null, 'deliveries', 'desc', 5)
          from generate_series(1, 10) g
        union all
        select metrics.sla_summary_cache_key(p.d_from, p.d_to, z.zip_code)
          from (select w.d_from, w.d_to from metrics.windows(metrics.utc_day(now())) w
                union all
                select metrics.utc_day(now()) - 7 * g, metrics.utc_day(now()) - 7 * g + 7
                  from generate_series(1, 12) g) p,
               (select distinct a.zip_code from metrics.zip_agents a) z) k
"""


def answer_cache(cur: ClientCursor) -> None:
    """Fill the answer cache (see ANSWER_CACHE_SQL)."""
    filled = cur.execute(ANSWER_CACHE_SQL).fetchone()[0]
    print(f"answer cache: {filled:,} answers", flush=True)


def webhook_outbox(cur: ClientCursor, events: int) -> None:
    """Fill the webhook outbox (see WEBHOOK_OUTBOX_SQL) in one transaction."""
    cur.execute("begin")
    cur.execute(WEBHOOK_OUTBOX_SQL, {"events": events})
    cur.execute("commit")


# -- output ----------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]

    def fmt(row: list[str]) -> str:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([fmt(headers), rule, *(fmt(r) for r in rows)])


def report(results: list[Result], builds: list[tuple[str, str, float, int]], before: bool) -> str:
    lines = ["EXPLAIN suite (custom plan; generic plan checked too; median execution time)", ""]
    rows = []
    for r in results:
        node = r.custom_node or "-"
        if r.heap_fetches is not None and "Index Only Scan" in node:
            node += f" ({r.heap_fetches} heap fetches)"
        rows.append(
            [
                r.query.name,
                node,
                " + ".join(r.query.expects),
                r.generic_node or "-",
                str(r.rows),
                f"{r.ms_with:.3f}",
                "ok" if not r.problems else "FAIL",
            ]
        )
    lines.append(table(["query", "plan node", "index", "generic plan", "rows", "ms", "check"], rows, {4, 5}))
    if before:
        lines += ["", "Without vs with the index (index dropped in a rolled-back transaction; median ms)", ""]
        rows = []
        for r in results:
            if r.ms_without is None:
                continue
            ratio = r.ms_without / r.ms_with if r.ms_with > 0 else float("inf")
            rows.append(
                [r.query.name, r.without_node, f"{r.ms_without:.3f}", f"{r.ms_with:.3f}", f"{ratio:,.0f}x"]
            )
        lines.append(
            table(["query", "plan without the index", "without ms", "with ms", "speed-up"], rows, {2, 3, 4})
        )
    if builds:
        lines += ["", "Index builds of migration 0003 at this volume (CREATE INDEX, rolled back)", ""]
        rows = [[i, t, f"{ms:,.0f}", f"{size / 1024 / 1024:.1f}"] for i, t, ms, size in builds]
        rows.append(
            [
                "total",
                "",
                f"{sum(b[2] for b in builds):,.0f}",
                f"{sum(b[3] for b in builds) / 1024 / 1024:.1f}",
            ]
        )
        lines.append(table(["index", "table", "build ms", "size MB"], rows, {2, 3}))
    problems = [f"  {r.query.name}: {p}" for r in results for p in r.problems]
    if problems:
        lines += ["", "FAILED:", *problems]
    return "\n".join(lines)


def run_suite(url: str, args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if not args.no_seed:
        print(f"seeding {args.orders:,} orders, {args.agents:,} agents ...", flush=True)
        print(seed(url, args.orders, args.agents, args.seed), flush=True)
    t_seed = time.perf_counter()
    with psycopg.connect(url, autocommit=True, cursor_factory=ClientCursor) as conn:
        cur = conn.cursor()
        # VACUUM, not only ANALYZE: an Index Only Scan skips the heap only for pages the visibility
        # map marks all-visible, and a bulk load leaves none marked (autovacuum would, later).
        if not args.no_seed:
            print(f"webhook outbox: {args.webhook_events:,} events ...", flush=True)
            webhook_outbox(cur, args.webhook_events)
            print("answer cache ...", flush=True)
            answer_cache(cur)
        print("analyze ..." if args.no_vacuum else "vacuum (analyze) ...", flush=True)
        cur.execute("analyze" if args.no_vacuum else "vacuum (analyze)")
        t_vacuum = time.perf_counter()
        sizes = table_sizes(cur)
        print("rows: " + ", ".join(f"{t} {n:,}" for t, n in sizes.items() if n), flush=True)
        for index, tbl, schema in cur.execute(
            "select c.relname, t.relname, t.relnamespace::regnamespace::text from pg_index i"
            " join pg_class c on c.oid = i.indexrelid join pg_class t on t.oid = i.indrelid"
            " where t.relnamespace in ('core'::regnamespace, 'metrics'::regnamespace, 'webhooks'::regnamespace)"
        ).fetchall():
            INDEX_TABLE[index] = tbl
            INDEX_SCHEMA[index] = schema
        cur.execute(PARAMS_SQL)
        results = []
        for q in load_queries():
            if args.only and q.name not in args.only:
                continue
            results.append(run_query(cur, q, sizes, args.runs, not args.no_before))
        builds = [] if args.no_builds else time_index_builds(cur)
        server = cur.execute("select version()").fetchone()[0]
    t_end = time.perf_counter()
    text = report(results, builds, not args.no_before)
    print()
    print(text)
    print(
        f"\nseed {t_seed - t0:.1f} s, vacuum analyze {t_vacuum - t_seed:.1f} s, "
        f"queries and builds {t_end - t_vacuum:.1f} s; {server.split(' on ')[0]}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "rows": sizes,
                    "queries": [
                        {
                            "name": r.query.name,
                            "serves": r.query.serves,
                            "indexes": r.query.expects,
                            "args": [str(a) for a in r.args],
                            "plan_node": r.custom_node,
                            "generic_plan_node": r.generic_node,
                            "heap_fetches": r.heap_fetches,
                            "rows": r.rows,
                            "ms_with": r.ms_with,
                            "ms_without": r.ms_without,
                            "plan_without": r.without_node,
                            "problems": r.problems,
                        }
                        for r in results
                    ],
                    "builds": [{"index": i, "table": t, "ms": ms, "bytes": b} for i, t, ms, b in builds],
                },
                indent=2,
            )
        )
    return 1 if any(r.problems for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--database-url", help="a disposable, migrated-or-empty database instead of a throw-away cluster"
    )
    p.add_argument("--orders", type=int, default=200_000)
    p.add_argument("--agents", type=int, default=5_000)
    p.add_argument(
        "--webhook-events", type=int, default=300_000, help="webhook events in the outbox (x2 deliveries)"
    )
    p.add_argument("--seed", type=float, default=0.42, help="setseed() value in [-1, 1] for waybill.seed")
    p.add_argument("--runs", type=int, default=5, help="timed runs per query and variant (median)")
    p.add_argument("--no-seed", action="store_true", help="the database already holds the data")
    p.add_argument(
        "--no-vacuum", action="store_true", help="ANALYZE only (index-only scans then visit the heap)"
    )
    p.add_argument("--no-before", action="store_true", help="skip the without-index timings")
    p.add_argument("--no-builds", action="store_true", help="skip the index build timings")
    p.add_argument("--only", nargs="*", help="run only these queries")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    from waybill import migrate

    if args.database_url:
        migrate.apply(args.database_url)
        return run_suite(args.database_url, args)

    from waybill import testing

    with testing.test_cluster() as cluster:
        testing.build_template(cluster)
        cluster.drop_database(SUITE_DB)
        cluster.create_database(SUITE_DB, template=testing.TEMPLATE_DB)
        try:
            return run_suite(cluster.url(SUITE_DB), args)
        finally:
            cluster.drop_database(SUITE_DB)


if __name__ == "__main__":
    sys.exit(main())
