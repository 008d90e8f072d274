"""The schema cache: what the exposed schema offers, read from pg_catalog.

Functions (arguments with names, types, defaults; return shape; volatility), relations (views,
tables) with their columns, and the COMMENT ON texts. Loaded at start and again on
`NOTIFY pgrst, 'reload schema'` (or an empty payload), which `Listener` waits for on a dedicated
connection that is re-opened when it drops.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from waybill import listen

# -- the cache ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str  # "" for an unnamed parameter
    type: str  # the type to cast to / read JSON into (char -> varchar, as PostgREST does)
    required: bool  # no DEFAULT
    variadic: bool


@dataclass(frozen=True)
class Routine:
    schema: str
    name: str
    params: tuple[Param, ...]
    setof: bool
    composite: bool  # composite type, or OUT/INOUT/TABLE parameters
    void: bool
    volatility: str  # "v", "s" or "i"
    return_type: str
    description: str | None

    @property
    def volatile(self) -> bool:
        return self.volatility == "v"

    @property
    def scalar(self) -> bool:
        return not self.setof and not self.composite

    @property
    def signature(self) -> str:
        return f"{self.schema}.{self.name}({', '.join(f'{p.name} => {p.type}' for p in self.params)})"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    default: str | None
    description: str | None


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    kind: str  # pg_class.relkind
    columns: tuple[Column, ...]
    pk_cols: tuple[str, ...]
    description: str | None


@dataclass
class SchemaCache:
    schema: str
    routines: dict[str, list[Routine]] = field(default_factory=dict)
    relations: dict[str, Relation] = field(default_factory=dict)
    # Roles the gateway's login role may switch to, each with its "impersonated role settings"
    # (ALTER ROLE ... SET, role-wide and role-in-database), applied per request as PostgREST does.
    roles: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    timezones: frozenset[str] = frozenset()  # pg_timezone_names: the valid `Prefer: timezone=` values
    # Features PostgREST has and the gateway refuses (never answered wrongly): domains with casts
    # to/from json/jsonb/text ("data representations") and functions of a relation's row type
    # ("computed columns", by relation).
    represented_types: frozenset[str] = frozenset()
    computed: dict[str, frozenset[str]] = field(default_factory=dict)
    description: str | None = None
    loaded_at: float = 0.0


# -- loading ------------------------------------------------------------------------------------

# Input arguments only (i, b, v); an IN-only function has no proargmodes. The type of a JSON or
# text argument read into a fixed-length character type would be cut, hence the *varying* types.
FUNCTIONS_SQL = """
select p.proname as name,
       pg_catalog.obj_description(p.oid, 'pg_proc') as description,
       p.provolatile as volatility,
       p.proretset as setof,
       (rt.typtype = 'c' or coalesce(p.proargmodes::text[] && '{t,b,o}', false)) as composite,
       (p.prorettype = 'void'::regtype and not p.proretset) as void,
       pg_catalog.format_type(p.prorettype, null) as return_type,
       coalesce(args.items, '[]') as params,
       coalesce(args.unnamed, 0) as unnamed,
       args.first_type
from pg_catalog.pg_proc p
join pg_catalog.pg_type rt on rt.oid = p.prorettype
left join lateral (
    select json_agg(json_build_object(
               'name', coalesce(i.name, ''),
               'type', case i.type
                   when 'bit'::regtype then 'bit varying'
                   when 'bit[]'::regtype then 'bit varying[]'
                   when 'character'::regtype then 'character varying'
                   when 'character[]'::regtype then 'character varying[]'
                   else pg_catalog.format_type(i.type, null) end,
               'required', i.pos <= p.pronargs - p.pronargdefaults,
               'variadic', i.mode = 'v') order by i.pos) as items,
           count(*) filter (where coalesce(i.name, '') = '') as unnamed,
           (array_agg(pg_catalog.format_type(i.type, null) order by i.pos))[1] as first_type
    from (
        select a.type, a.mode, a.name, row_number() over (order by a.idx) as pos
        from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                    coalesce(p.proargmodes, array_fill('i'::"char", array[p.pronargs::int])),
                    p.proargnames) with ordinality as a(type, mode, name, idx)
        where a.mode in ('i', 'b', 'v')
    ) i
) args on true
where p.pronamespace = %(schema)s::regnamespace
  and p.prokind = 'f'
  and p.prorettype <> 'trigger'::regtype
order by p.proname, p.pronargs
"""

RELATIONS_SQL = """
select c.relname as name,
       c.relkind as kind,
       pg_catalog.obj_description(c.oid, 'pg_class') as description,
       coalesce((
           select json_agg(json_build_object(
                      'name', a.attname,
                      'type', pg_catalog.format_type(a.atttypid, null),
                      'nullable', not a.attnotnull,
                      'default', pg_catalog.pg_get_expr(d.adbin, d.adrelid),
                      'description', pg_catalog.col_description(c.oid, a.attnum)) order by a.attnum)
           from pg_catalog.pg_attribute a
           left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
           where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
       ), '[]') as columns,
       coalesce((
           select json_agg(a.attname order by a.attnum)
           from pg_catalog.pg_index x
           join pg_catalog.pg_attribute a on a.attrelid = x.indrelid and a.attnum = any(x.indkey)
           where x.indrelid = c.oid and x.indisprimary
       ), '[]') as pk_cols
from pg_catalog.pg_class c
where c.relnamespace = %(schema)s::regnamespace
  and c.relkind in ('r', 'v', 'm', 'f', 'p')
  and not c.relispartition
order by c.relname
"""

# PostgREST v12+ "impersonated role settings": after switching role, each setting stored with
# ALTER ROLE ... SET is applied with set_config(key, value, true). A role-in-database setting wins
# over the role-wide one (as at login). Settings the login role could not set itself (superuser
# context, when it is no superuser) are left out, as is default_transaction_isolation (PostgREST
# reads it to choose the isolation level, which the gateway does not do: READ COMMITTED always).
ROLES_SQL = """
select r.rolname as name,
       coalesce((
           select json_agg(json_build_array(s.key, s.value) order by s.key)
           from (
               select distinct on (split_part(cfg, '=', 1))
                      split_part(cfg, '=', 1) as key, substr(cfg, strpos(cfg, '=') + 1) as value
               from pg_catalog.pg_db_role_setting d, unnest(d.setconfig) as cfg
               where d.setrole = r.oid
                 and d.setdatabase in (0, (select oid from pg_catalog.pg_database
                                           where datname = pg_catalog.current_database()))
               order by split_part(cfg, '=', 1), d.setdatabase desc
           ) s
           left join pg_catalog.pg_settings ps on ps.name = s.key
           where s.key <> 'default_transaction_isolation'
             and (ps.context is null or ps.context = 'user'
                  or (ps.context = 'superuser'
                      and (select rolsuper from pg_catalog.pg_roles where rolname = current_user)))
       ), '[]') as settings
from pg_catalog.pg_roles r
where pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')
"""

# Domains PostgREST would read or render through a cast (data representations).
REPRESENTED_SQL = """
select pg_catalog.format_type(t.oid, null) as name
from pg_catalog.pg_type t
where t.typtype = 'd'
  and exists (
      select 1 from pg_catalog.pg_cast c
      where (c.castsource = t.oid and c.casttarget in ('json'::regtype, 'jsonb'::regtype, 'text'::regtype))
         or (c.casttarget = t.oid and c.castsource in ('json'::regtype, 'jsonb'::regtype, 'text'::regtype))
  )
"""

SCHEMA_SQL = "select pg_catalog.obj_description(%(schema)s::regnamespace, 'pg_namespace') as description"

# Callable through HTTP: all parameters named, or a single unnamed one that takes the whole body.
SINGLE_UNNAMED_TYPES = {"json", "jsonb", "text", "xml", "bytea"}


async def load(conn: psycopg.AsyncConnection, schema: str) -> SchemaCache:
    """Read the cache in one read-only snapshot, with a search_path that qualifies every type."""
    cache = SchemaCache(schema=schema, loaded_at=time.time())
    async with conn.transaction():
        await conn.execute("set transaction isolation level repeatable read, read only")
        await conn.execute("set local search_path = pg_catalog")
        cur = conn.cursor(row_factory=dict_row)
        params = {"schema": schema}
        await cur.execute(SCHEMA_SQL, params)
        row = await cur.fetchone()
        cache.description = row["description"] if row else None
        await cur.execute(FUNCTIONS_SQL, params)
        for r in await cur.fetchall():
            if r["unnamed"] > 1 or (r["unnamed"] == 1 and r["first_type"] not in SINGLE_UNNAMED_TYPES):
                continue
            if r["unnamed"] == 1 and len(r["params"]) != 1:
                continue
            routine = Routine(
                schema=schema,
                name=r["name"],
                params=tuple(
                    Param(p["name"], p["type"], bool(p["required"]), bool(p["variadic"])) for p in r["params"]
                ),
                setof=r["setof"],
                composite=r["composite"],
                void=r["void"],
                volatility=r["volatility"],
                return_type=r["return_type"],
                description=r["description"],
            )
            cache.routines.setdefault(routine.name, []).append(routine)
        await cur.execute("select name from pg_catalog.pg_timezone_names")
        cache.timezones = frozenset(r["name"] for r in await cur.fetchall())
        await cur.execute(ROLES_SQL)
        for r in await cur.fetchall():
            cache.roles[r["name"]] = tuple((k, v) for k, v in r["settings"])
        await cur.execute(RELATIONS_SQL, params)
        for r in await cur.fetchall():
            cache.relations[r["name"]] = Relation(
                schema=schema,
                name=r["name"],
                kind=r["kind"],
                columns=tuple(
                    Column(c["name"], c["type"], c["nullable"], c["default"], c["description"])
                    for c in r["columns"]
                ),
                pk_cols=tuple(r["pk_cols"]),
                description=r["description"],
            )
        await cur.execute(REPRESENTED_SQL)
        cache.represented_types = frozenset(r["name"] for r in await cur.fetchall())
    for rel in cache.relations:
        rowtype = {f"{schema}.{rel}", f'{schema}."{rel}"'}
        names = {
            name
            for name, routines in cache.routines.items()
            for r in routines
            if len(r.params) == 1 and r.params[0].type in rowtype
        }
        if names:
            cache.computed[rel] = frozenset(names)
    return cache


# -- the LISTEN connection ----------------------------------------------------------------------


class Listener(listen.Listener):
    """LISTEN on a dedicated connection (waybill/listen.py); reload on 'reload schema' or after a re-open."""

    connect_event = "schema_listener_connect_succeeded"
    lost_event = "schema_listener_connection_lost"

    def __init__(
        self, conninfo: str, channel: str, on_reload: Callable[[], Awaitable[Any]], **kw: Any
    ) -> None:
        super().__init__(conninfo, channel, self._notified, on_reload, task_name="gateway-listener", **kw)
        self.on_reload = on_reload

    async def _notified(self, payload: str) -> None:
        if payload in ("", "reload schema"):
            self.log.info("schema_reload_requested", channel=self.channel)
            await self.on_reload()
