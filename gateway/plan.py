"""The request planner: what PostgREST would run for a request, as SQL and parameters. Pure.

From the parsed request (method, query string, the negotiation headers, the body's bytes) and the
schema cache, `plan_read` / `plan_rpc` return a `Plan`: the statement (gateway.sqlbuild), whether the
transaction is read-only, the range, the preferences and media type the answer needs.
`request_settings` gives the set_config batch (GUCs) that precedes it. No I/O, no HTTP objects:
the gateway's execution (gateway.execute) and bench/http.py's direct clients use the same plans.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from psycopg import sql

from gateway import errors, query, sqlbuild
from gateway.auth import AuthResult
from gateway.negotiate import JSON_MIME, Media, Prefs, negotiate, parse_prefs
from gateway.schema import Relation, Routine, SchemaCache


@dataclass
class Ctx:
    """What the SQL side sees of the request, and what the access log says of it."""

    auth: AuthResult
    method: str
    path: str
    headers_json: str
    cookies_json: str
    timezone: str | None = None  # Prefer: timezone=..., applied with set_config
    wait_disconnect: Callable[[], Awaitable[None]] | None = None  # returns when the client has gone


@dataclass
class Plan:
    built: sqlbuild.Built
    read_only: bool
    single: bool  # the object media type: exactly one row, else 406
    rng: query.Range
    prefs: Prefs
    media: Media
    void: bool = False
    location: str | None = None  # Content-Location of a read


@dataclass
class Options:
    """OPTIONS on a function: no statement, an Allow header."""

    allow: str


def request_settings(cache: SchemaCache, search_path: str, ctx: Ctx) -> tuple[sql.Composable, list[Any]]:
    """The set_config batch: search_path, role, claims, method, path, headers, cookies, then the
    role's own settings and Prefer: timezone."""
    role_settings = cache.roles.get(ctx.auth.role, ())
    params = [
        search_path,
        ctx.auth.role,
        ctx.auth.claims_json,
        ctx.method,
        ctx.path,
        ctx.headers_json,
        ctx.cookies_json,
        *sqlbuild.setting_params(role_settings, ctx.timezone),
    ]
    return sqlbuild.set_config(role_settings, ctx.timezone), params


def plan_read(
    cache: SchemaCache,
    name: str,
    *,
    method: str,
    query_string: bytes | str,
    accept: str | None = None,
    range_header: str | None = None,
    prefer: Sequence[str] = (),
    db_max_rows: int | None = None,
) -> Plan:
    """GET/HEAD of a relation."""
    qp = query.parse(query_string, is_rpc_read=False)
    rng = query.cap_range(query.top_range(method, range_header, qp), db_max_rows)
    prefs = parse_prefs(prefer, cache.timezones)
    rel = cache.relations.get(name)
    if rel is None:
        raise errors.table_not_found(cache.schema, name, cache.relations)
    _refuse_unserved_columns(cache, rel, qp)
    media = negotiate(accept)
    single = media.kind == "object"
    built = sqlbuild.read_relation(
        cache.schema,
        name,
        select=qp.select,
        filters=qp.filters,
        logic=qp.logic,
        order=qp.order,
        rng=rng,
        count=prefs.count,
        single=single,
        strip_nulls=media.strip_nulls,
        column_types={c.name: c.type for c in rel.columns},
    )
    location = f"/{name}" + (f"?{qp.canonical}" if qp.canonical else "")
    return Plan(built, True, single, rng, prefs, media, location=location)


def plan_rpc(
    cache: SchemaCache,
    name: str,
    *,
    method: str,
    query_string: bytes | str,
    accept: str | None = None,
    range_header: str | None = None,
    prefer: Sequence[str] = (),
    content_type: str | None = None,
    body: bytes | None = None,
    db_max_rows: int | None = None,
) -> Plan | Options:
    """GET/HEAD/POST/OPTIONS of a function (`body`: the POST body's bytes)."""
    is_read = method in ("GET", "HEAD", "OPTIONS")
    qp = query.parse(query_string, is_rpc_read=is_read)
    rng = query.cap_range(query.top_range(method, range_header, qp), db_max_rows)
    body_text: str | None = None
    body_is_object = True
    is_post_json = False
    if method == "POST":
        keys, body_text, body_is_object, is_post_json = payload(body or b"", content_type, qp)
    else:
        keys = set(qp.args)
    prefs = parse_prefs(prefer, cache.timezones)
    routine, whole_body = find_routine(cache, name, keys, is_post_json=is_post_json, is_post=method == "POST")
    if method == "OPTIONS":
        return Options("OPTIONS,POST" if routine.volatile else "OPTIONS,GET,HEAD,POST")
    _refuse_unserved_routine(cache, routine)
    if whole_body:
        raise errors.not_implemented(
            f"a single unnamed parameter taking the whole body ({routine.name}) is not served by the gateway"
        )
    media = negotiate(accept)
    used = [p for p in routine.params if p.name in keys]
    source_params: list[Any] = []
    source = sqlbuild.call_sql(
        routine,
        used,
        source_params,
        get_args=qp.args if method != "POST" else None,
        body=body_text,
        body_is_object=body_is_object,
        whole_body=whole_body,
    )
    single = media.kind == "object"
    built = sqlbuild.call_routine(
        routine,
        source,
        source_params,
        select=qp.select,
        filters=qp.filters,
        logic=qp.logic,
        order=qp.order,
        rng=rng,
        count=prefs.count,
        single=single,
        strip_nulls=media.strip_nulls,
    )
    read_only = method != "POST" or not routine.volatile
    return Plan(built, read_only, single, rng, prefs, media, void=routine.void)


def payload(raw: bytes, content_type: str | None, qp: query.QueryParams) -> tuple[set[str], str, bool, bool]:
    """(argument names, JSON text, is it an object, was it JSON) of a POST body."""
    ctype = (content_type or JSON_MIME).split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        pairs = parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        values = dict(pairs)
        return set(values), json.dumps(values), True, False
    if ctype not in (JSON_MIME, "*/*") and not ctype.endswith("+json"):
        if ctype in ("text/plain", "text/xml", "application/octet-stream"):
            return set(), "{}", True, False
        raise errors.invalid_body(f"Content-Type not acceptable: {ctype}")
    if raw.strip() == b"":
        text, value = "{}", {}
    else:
        try:
            text = raw.decode("utf-8")
            value = json.loads(text, parse_constant=_reject_constant)
        except ValueError:
            raise errors.invalid_body("Empty or invalid json") from None
        except RecursionError:  # nested deeper than Python's recursion limit (~1,000 levels)
            raise errors.invalid_body("Empty or invalid json", "JSON nested too deeply") from None
    if isinstance(value, dict):
        keys, is_object = set(value), True
    elif isinstance(value, list):
        if value and isinstance(value[0], dict):
            keys = set(value[0])
            if not all(isinstance(v, dict) and set(v) == keys for v in value):
                raise errors.invalid_body("All object keys must match")
        elif value:
            raise errors.invalid_body("All object keys must match")
        else:
            keys = set()
        is_object = False
    else:
        keys, text, is_object = set(), "[]", False
    if qp.columns is not None:
        keys = set(qp.columns)
    return keys, text, is_object, True


def find_routine(
    cache: SchemaCache, name: str, keys: set[str], *, is_post_json: bool, is_post: bool
) -> tuple[Routine, bool]:
    """PostgREST's overload resolution: by the SET of argument names; else the single unnamed one."""
    candidates = cache.routines.get(name, [])
    matches, fallbacks = [], []
    for r in candidates:
        if _params_match(r, keys):
            matches.append(r)
        elif (
            is_post_json
            and len(r.params) == 1
            and r.params[0].name == ""
            and r.params[0].type in ("json", "jsonb")
        ):
            fallbacks.append(r)
    if len(matches) == 1:
        return matches[0], False
    if len(matches) > 1:
        raise errors.ambiguous_rpc([r.signature for r in matches])
    if len(fallbacks) == 1:
        return fallbacks[0], True
    if len(fallbacks) > 1:
        raise errors.ambiguous_rpc([r.signature for r in fallbacks])
    raise errors.no_rpc(
        cache.schema,
        name,
        keys,
        is_post_json=is_post and is_post_json,
        all_names=cache.routines,
        overloads=[[p.name for p in r.params] for r in candidates],
    )


def _refuse_unserved_columns(cache: SchemaCache, rel: Relation, qp: query.QueryParams) -> None:
    """Computed columns and data representations: PostgREST serves them, the gateway refuses them
    (PGRST127) rather than answer wrongly (raw domain values instead of their representation)."""
    columns = {c.name: c for c in rel.columns}
    named = query.fields_of(qp)
    computed = sorted(f for f in named if f not in columns and f in cache.computed.get(rel.name, ()))
    if computed:
        raise errors.not_implemented(
            f"computed columns ({', '.join(computed)} of {rel.name}) are not served by the gateway"
        )
    shown = set(named)
    if any(it.field == "*" for it in qp.select):
        shown |= set(columns)
    represented = sorted(f for f in shown if f in columns and columns[f].type in cache.represented_types)
    if represented:
        raise errors.not_implemented(
            f"data representations (domain casts) of {', '.join(represented)} in {rel.name} "
            "are not served by the gateway"
        )


def _refuse_unserved_routine(cache: SchemaCache, routine: Routine) -> None:
    types = {p.type for p in routine.params} | {routine.return_type}
    represented = sorted(types & cache.represented_types)
    if represented:
        raise errors.not_implemented(
            f"data representations (domain casts) of {', '.join(represented)} in {routine.name} "
            "are not served by the gateway"
        )
    if any(p.variadic for p in routine.params):
        raise errors.not_implemented(f"VARIADIC functions ({routine.name}) are not served by the gateway")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _params_match(r: Routine, keys: set[str]) -> bool:
    if not r.params:
        return not keys
    required = {p.name for p in r.params if p.required}
    optional = {p.name for p in r.params if not p.required}
    if not optional:
        return keys == required
    if not required:
        return keys <= optional
    return keys - optional == required


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _params_match(r: Routine, keys: set[str]) -> bool:
    if not r.params:
        return not keys
    required = {p.name for p in r.params if p.required}
    optional = {p.name for p in r.params if not p.required}
    if not optional:
        return keys == required
    if not required:
        return keys <= optional
    return keys - optional == required
