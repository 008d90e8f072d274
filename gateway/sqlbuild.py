"""The statements the gateway sends: every identifier quoted, every value a parameter.

One statement per request answers everything PostgREST's does: the total (when counted), the page
size, the body built by PostgreSQL's own json_agg/to_json (so formatting is identical), and the
response.headers / response.status settings left by the SQL that ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from gateway.query import (
    FTS_OPS,
    IS_VALUES,
    QUANT_OPS,
    SIMPLE_OPS,
    Filter,
    Logic,
    OrderTerm,
    Range,
    SelectItem,
)
from gateway.schema import Param, Routine

SET_CONFIG = sql.SQL(
    "select set_config('search_path', %s, true), set_config('role', %s, true), "
    "set_config('request.jwt.claims', %s, true), set_config('request.method', %s, true), "
    "set_config('request.path', %s, true), set_config('request.headers', %s, true), "
    "set_config('request.cookies', %s, true)"
)


def set_config(role_settings: tuple[tuple[str, str], ...], timezone: str | None = None) -> sql.Composable:
    """SET_CONFIG, then the role's own settings (after the switch, as PostgREST applies them), then
    `Prefer: timezone`. Their names and values are parameters: the statement text only varies with
    how many there are. Returns the statement; its extra parameters are `setting_params(...)`."""
    extra = len(role_settings) + (timezone is not None)
    if not extra:
        return SET_CONFIG
    return SET_CONFIG + sql.SQL(", set_config(%s, %s, true)" * extra)


def setting_params(role_settings: tuple[tuple[str, str], ...], timezone: str | None = None) -> list[str]:
    out = [x for kv in role_settings for x in kv]
    if timezone is not None:
        out += ["timezone", timezone]
    return out


BEGIN = {
    True: sql.SQL("begin isolation level read committed read only"),
    False: sql.SQL("begin isolation level read committed read write"),
}

SOURCE = sql.Identifier("pgrst_source")


@dataclass
class Built:
    query: sql.Composable | str  # a str: rendered once, for a plan the gateway keeps (gateway/app.py)
    params: list[Any]

    def rendered(self) -> Built:
        """The same statement as text: psycopg then skips composing it on every execute."""
        if isinstance(self.query, str):
            return self
        return Built(self.query.as_string(None), self.params)


def _array_literal(values: tuple[str, ...]) -> str:
    """A PostgreSQL array literal of text elements (cast by the server to the column's type)."""
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(quoted) + "}"


JSON_TYPES = ("json", "jsonb")


def _filter_sql(
    table: sql.Composable, f: Filter, params: list[Any], types: Mapping[str, str]
) -> sql.Composable:
    col = sql.SQL("{}.{}").format(table, sql.Identifier(f.field))
    if f.op == "is":
        expr = sql.SQL("{} is {}").format(col, sql.SQL(IS_VALUES[f.value]))  # type: ignore[index]
    elif f.op == "in":
        values = f.value
        assert isinstance(values, tuple)
        if values == ("",):
            expr = sql.SQL("{} = any('{{}}')").format(col)
        else:
            params.append(_array_literal(values))
            expr = sql.SQL("{} = any(%s)").format(col)
    elif f.op == "isdistinct":
        params.append(f.value)
        expr = sql.SQL("{} is distinct from %s").format(col)
    elif f.op in FTS_OPS:
        fn = sql.SQL(FTS_OPS[f.op])
        if types.get(f.field) in JSON_TYPES:
            # json/jsonb have no @@ tsquery: PostgREST searches to_tsvector([lang,] col), which
            # indexes the string values of the document.
            if f.lang:
                params.append(f.lang)
                col = sql.SQL("to_tsvector(%s::regconfig, {})").format(col)
            else:
                col = sql.SQL("to_tsvector({})").format(col)
        if f.lang:
            params.extend([f.lang, f.value])
            expr = sql.SQL("{} @@ {}(%s::regconfig, %s)").format(col, fn)
        else:
            params.append(f.value)
            expr = sql.SQL("{} @@ {}(%s)").format(col, fn)
    elif f.op in SIMPLE_OPS:
        params.append(f.value)
        expr = sql.SQL("{} {} %s").format(col, sql.SQL(SIMPLE_OPS[f.op]))
    else:
        value = f.value
        assert isinstance(value, str)
        if f.op in ("like", "ilike"):
            value = value.replace("*", "%")
        params.append(value)
        operand = sql.SQL("%s") if f.quant is None else sql.SQL(f"{f.quant}(%s)")
        expr = sql.SQL("{} {} {}").format(col, sql.SQL(QUANT_OPS[f.op]), operand)
    return sql.SQL("not {}").format(expr) if f.negate else expr


def _logic_sql(
    table: sql.Composable, node: Filter | Logic, params: list[Any], types: Mapping[str, str]
) -> sql.Composable:
    if isinstance(node, Filter):
        return _filter_sql(table, node, params, types)
    joiner = sql.SQL(" and ") if node.op == "and" else sql.SQL(" or ")
    inner = sql.SQL("({})").format(joiner.join(_logic_sql(table, c, params, types) for c in node.children))
    return sql.SQL("not {}").format(inner) if node.negate else inner


def where_sql(
    table: sql.Composable,
    filters: list[Filter],
    logic: list[Logic],
    params: list[Any],
    types: Mapping[str, str] | None = None,
) -> sql.Composable:
    types = types or {}
    conds = [_filter_sql(table, f, params, types) for f in filters]
    conds += [_logic_sql(table, t, params, types) for t in logic]
    if not conds:
        return sql.SQL("")
    return sql.SQL(" where ") + sql.SQL(" and ").join(conds)


def order_sql(table: sql.Composable, order: list[OrderTerm]) -> sql.Composable:
    if not order:
        return sql.SQL("")
    terms = []
    for t in order:
        term = sql.SQL("{}.{}").format(table, sql.Identifier(t.field))
        if t.direction:
            term = term + sql.SQL(" desc" if t.direction == "desc" else " asc")
        if t.nulls:
            term = term + sql.SQL(" nulls first" if t.nulls == "first" else " nulls last")
        terms.append(term)
    return sql.SQL(" order by ") + sql.SQL(", ").join(terms)


def range_sql(rng: Range, params: list[Any]) -> sql.Composable:
    if rng.is_all:
        return sql.SQL("")
    if rng.limit is None:
        params.append(rng.offset)
        return sql.SQL(" limit all offset %s")
    params.extend([rng.limit, rng.offset])
    return sql.SQL(" limit %s offset %s")


def select_sql(table: sql.Composable, items: list[SelectItem]) -> sql.Composable:
    parts = []
    for it in items:
        if it.field == "*":
            parts.append(sql.SQL("{}.*").format(table))
        elif it.alias:
            parts.append(
                sql.SQL("{}.{} as {}").format(table, sql.Identifier(it.field), sql.Identifier(it.alias))
            )
        else:
            parts.append(sql.SQL("{}.{}").format(table, sql.Identifier(it.field)))
    return sql.SQL(", ").join(parts)


def body_sql(*, single: bool, scalar: bool, strip_nulls: bool) -> sql.Composable:
    """PostgREST's aggregation: json_agg of the rows (or of the scalar column), as one text value."""
    target = "_postgrest_t.pgrst_scalar" if scalar else "_postgrest_t"
    agg = f"json_agg({target})"
    if strip_nulls:
        agg = f"json_strip_nulls({agg})"
    if single:
        return sql.SQL(f"coalesce({agg}->0, 'null')::text")
    return sql.SQL(f"coalesce({agg}, '[]')::text")


_TAIL = sql.SQL(
    "{total} as total_result_set, {page} as page_total, {body} as body, "
    "nullif(current_setting('response.headers', true), '') as response_headers, "
    "nullif(current_setting('response.status', true), '') as response_status"
)


def read_relation(
    schema: str,
    name: str,
    *,
    select: list[SelectItem],
    filters: list[Filter],
    logic: list[Logic],
    order: list[OrderTerm],
    rng: Range,
    count: bool,
    single: bool,
    strip_nulls: bool,
    column_types: Mapping[str, str] | None = None,
) -> Built:
    table = sql.Identifier(schema, name)
    params: list[Any] = []
    main = sql.SQL("select {} from {}{}{}{}").format(
        select_sql(table, select),
        table,
        where_sql(table, filters, logic, params, column_types),
        order_sql(table, order),
        range_sql(rng, params),
    )
    count_cte = sql.SQL("")
    total = sql.SQL("null::bigint")
    if count:
        count_cte = sql.SQL(", pgrst_source_count as (select 1 from {}{})").format(
            table, where_sql(table, filters, logic, params, column_types)
        )
        total = sql.SQL("(select pg_catalog.count(*) from pgrst_source_count)")
    query = sql.SQL(
        "with pgrst_source as ({main}){count_cte} select {tail} from (select * from pgrst_source) _postgrest_t"
    ).format(
        main=main,
        count_cte=count_cte,
        tail=_TAIL.format(
            total=total,
            page=sql.SQL("pg_catalog.count(_postgrest_t)"),
            body=body_sql(single=single, scalar=False, strip_nulls=strip_nulls),
        ),
    )
    return Built(query, params)


def _arg(p: Param, value: sql.Composable) -> sql.Composable:
    named = sql.SQL("{} := {}").format(sql.Identifier(p.name), value)
    return sql.SQL("variadic ") + named if p.variadic else named


def call_sql(
    routine: Routine,
    params_used: list[Param],
    params: list[Any],
    *,
    get_args: dict[str, list[str]] | None = None,
    body: str | None = None,
    body_is_object: bool = True,
    whole_body: bool = False,
) -> sql.Composable:
    """The function call as the source of rows (PostgREST's pgrst_call)."""
    fn = sql.Identifier(routine.schema, routine.name)
    frm: sql.Composable | None = None
    if whole_body:  # a single unnamed json/jsonb parameter takes the whole body
        params.append(body)
        call_args: sql.Composable = sql.SQL("%s::{}").format(sql.SQL(routine.params[0].type))
    elif get_args is not None:
        parts = []
        for p in params_used:
            values = get_args[p.name]
            params.append(values if p.variadic else values[-1])
            parts.append(_arg(p, sql.SQL("%s::{}").format(sql.SQL(p.type))))
        call_args = sql.SQL(", ").join(parts)
    elif params_used:
        params.append(body)
        reader = "json_to_record" if body_is_object else "json_to_recordset"
        frm = sql.SQL(
            "from (select %s::json as json_data) pgrst_payload, "
            "lateral (select {cols} from {reader}(pgrst_payload.json_data) as _({typed}) limit 1) pgrst_body, "
        ).format(
            cols=sql.SQL(", ").join(sql.Identifier(p.name) for p in params_used),
            reader=sql.SQL(reader),
            typed=sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(p.name), sql.SQL(p.type)) for p in params_used
            ),
        )
        call_args = sql.SQL(", ").join(
            _arg(p, sql.SQL("pgrst_body.{}").format(sql.Identifier(p.name))) for p in params_used
        )
    else:
        call_args = sql.SQL("")
    if routine.scalar or (routine.setof and not routine.composite):
        call = sql.SQL("(select {}({}) pgrst_scalar) pgrst_call").format(fn, call_args)
        cols = sql.SQL("pgrst_call.pgrst_scalar")
    else:
        call = sql.SQL("{}({}) pgrst_call").format(fn, call_args)
        cols = sql.SQL("pgrst_call.*")
    if frm is not None:
        return sql.SQL("select {} {}lateral {}").format(cols, frm, call)
    return sql.SQL("select {} from {}").format(cols, call)


def call_routine(
    routine: Routine,
    source: sql.Composable,
    source_params: list[Any],
    *,
    select: list[SelectItem],
    filters: list[Filter],
    logic: list[Logic],
    order: list[OrderTerm],
    rng: Range,
    count: bool,
    single: bool,
    strip_nulls: bool,
) -> Built:
    params = list(source_params)
    scalar_column = routine.scalar or (routine.setof and not routine.composite)
    select_items = [SelectItem("*")] if scalar_column else select
    count_cte = sql.SQL("")
    total = sql.SQL("null::bigint")
    if count:
        count_cte = sql.SQL(", pgrst_source_count as (select 1 from pgrst_source{})").format(
            where_sql(SOURCE, filters, logic, params)
        )
        total = sql.SQL("(select pg_catalog.count(*) from pgrst_source_count)")
    page = sql.SQL("1") if not routine.setof else sql.SQL("pg_catalog.count(_postgrest_t)")
    read = sql.SQL("select {} from pgrst_source{}{}{}").format(
        select_sql(SOURCE, select_items),
        where_sql(SOURCE, filters, logic, params),
        order_sql(SOURCE, order),
        range_sql(rng, params),
    )
    body = body_sql(single=single or not routine.setof, scalar=scalar_column, strip_nulls=strip_nulls)
    query = sql.SQL(
        "with pgrst_source as ({source}){count_cte} select {tail} from ({read}) _postgrest_t"
    ).format(
        source=source,
        count_cte=count_cte,
        tail=_TAIL.format(total=total, page=page, body=body),
        read=read,
    )
    return Built(query, params)
