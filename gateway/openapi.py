"""`GET /`: a Swagger 2.0 document of what the requesting role may use, from the schema cache.

Like PostgREST's default (follow-privileges), it lists the relations and functions the role has
privileges on. COMMENT ON texts become the texts: first line = summary, the rest = description.
Only what the gateway serves is described: reads of relations, and functions (POST always, GET for
STABLE/IMMUTABLE ones).
"""

from __future__ import annotations

from typing import Any

from gateway.schema import Column, Relation, Routine, SchemaCache

POSTGREST_VERSION = "13.0.8"
ACCESSIBLE_SQL = """
select
  (select coalesce(json_agg(c.relname), '[]')
     from pg_catalog.pg_class c
    where c.relnamespace = %(schema)s::regnamespace
      and c.relkind in ('r', 'v', 'm', 'f', 'p')
      and (pg_catalog.pg_has_role(c.relowner, 'USAGE')
           or pg_catalog.has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
           or pg_catalog.has_any_column_privilege(c.oid, 'SELECT, INSERT, UPDATE, REFERENCES')))::text,
  (select coalesce(json_agg(distinct p.proname), '[]')
     from pg_catalog.pg_proc p
    where p.pronamespace = %(schema)s::regnamespace
      and p.prokind = 'f'
      and pg_catalog.has_function_privilege(p.oid, 'execute'))::text
"""

MIME_JSON = "application/json"
MIME_OBJECT = "application/vnd.pgrst.object+json"
MIME_OBJECT_STRIP = "application/vnd.pgrst.object+json;nulls=stripped"
MIME_OPENAPI = "application/openapi+json"


def _split(text: str | None) -> tuple[str | None, str | None]:
    """First line = summary; the rest (leading newlines dropped) = description, or None."""
    if text is None:
        return None, None
    summary, _, rest = text.partition("\n")
    rest = rest.lstrip("\n")
    return summary, rest or None


def swagger_type(pg_type: str) -> str | None:
    if pg_type in ("character varying", "character", "text"):
        return "string"
    if pg_type == "boolean":
        return "boolean"
    if pg_type in ("smallint", "integer", "bigint"):
        return "integer"
    if pg_type in ("numeric", "real", "double precision"):
        return "number"
    if pg_type in ("json", "jsonb"):
        return None
    if pg_type.endswith("[]"):
        return "array"
    return "string"


def _property(col: Column, pk: bool) -> dict[str, Any]:
    prop: dict[str, Any] = {"format": col.type}
    t = swagger_type(col.type)
    if t is not None:
        prop["type"] = t
    if t == "array":
        inner = swagger_type(col.type[:-2])
        prop["items"] = {"type": inner} if inner and inner != "array" else {}
    description = col.description
    if pk:
        note = "Note:\nThis is a Primary Key.<pk/>"
        description = f"{description}\n\n{note}" if description else note
    if description:
        prop["description"] = description
    return prop


def _definition(rel: Relation) -> dict[str, Any]:
    d: dict[str, Any] = {
        "type": "object",
        "properties": {c.name: _property(c, c.name in rel.pk_cols) for c in rel.columns},
    }
    required = [c.name for c in rel.columns if not c.nullable]
    if required:
        d["required"] = required
    if rel.description:
        d["description"] = rel.description
    return d


def _string_param(name: str, where: str, description: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "required": False,
        "in": where,
        "type": "string",
        **extra,
    }


def _relation_path(rel: Relation) -> dict[str, Any]:
    summary, description = _split(rel.description)
    op: dict[str, Any] = {"tags": [rel.name]}
    if summary:
        op["summary"] = summary
    if description:
        op["description"] = description
    refs = [f"rowFilter.{rel.name}.{c.name}" for c in rel.columns]
    refs += ["select", "order", "range", "rangeUnit", "offset", "limit", "preferCount"]
    op["parameters"] = [{"$ref": f"#/parameters/{r}"} for r in refs]
    op["responses"] = {
        "200": {
            "description": "OK",
            "schema": {"type": "array", "items": {"$ref": f"#/definitions/{rel.name}"}},
        },
        "206": {"description": "Partial Content"},
    }
    return {"get": op}


def _param_type(pg_type: str) -> str:
    t = swagger_type(pg_type)
    return "string" if t in (None, "array") else t


def _routine_path(r: Routine) -> dict[str, Any]:
    summary, description = _split(r.description)
    base: dict[str, Any] = {
        "tags": [f"(rpc) {r.name}"],
        "produces": [MIME_JSON, MIME_OBJECT_STRIP, MIME_OBJECT],
        "responses": {"200": {"description": "OK"}},
    }
    if summary:
        base["summary"] = summary
    if description:
        base["description"] = description
    properties: dict[str, Any] = {}
    for p in r.params:
        prop: dict[str, Any] = {"format": p.type}
        t = swagger_type(p.type)
        if t is not None:
            prop["type"] = t
        if t == "array":
            inner = swagger_type(p.type[:-2])
            prop["items"] = {"type": inner} if inner and inner != "array" else {}
        properties[p.name] = prop
    body_schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [p.name for p in r.params if p.required]
    if required:
        body_schema["required"] = required
    if r.description:
        body_schema["description"] = r.description
    post = {
        **base,
        "parameters": [
            {"name": "args", "required": True, "in": "body", "schema": body_schema},
            {"$ref": "#/parameters/preferParams"},
        ],
    }
    item: dict[str, Any] = {"post": post}
    if not r.volatile:
        get_params = []
        for p in r.params:
            if p.variadic:
                inner = swagger_type(p.type[:-2]) or "string"
                get_params.append(
                    {
                        "name": p.name,
                        "required": p.required,
                        "in": "query",
                        "type": "array",
                        "collectionFormat": "multi",
                        "items": {"type": "string" if inner == "array" else inner, "format": p.type[:-2]},
                    }
                )
            else:
                get_params.append(
                    {
                        "name": p.name,
                        "required": p.required,
                        "in": "query",
                        "type": _param_type(p.type),
                        "format": p.type,
                    }
                )
        item["get"] = {**base, "parameters": get_params}
    return item


def _parameters(relations: list[Relation]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "preferParams": {
            "name": "Prefer",
            "description": "Preference",
            "required": False,
            "in": "header",
            "type": "string",
        },
        "preferCount": {
            "name": "Prefer",
            "description": "Preference",
            "required": False,
            "in": "header",
            "type": "string",
            "enum": ["count=none"],
        },
        "select": _string_param("select", "query", "Filtering Columns"),
        "order": _string_param("order", "query", "Ordering"),
        "range": _string_param("Range", "header", "Limiting and Pagination"),
        "rangeUnit": _string_param("Range-Unit", "header", "Limiting and Pagination", default="items"),
        "offset": _string_param("offset", "query", "Limiting and Pagination"),
        "limit": _string_param("limit", "query", "Limiting and Pagination"),
    }
    for rel in relations:
        for c in rel.columns:
            p = {"name": c.name, "required": False, "in": "query", "type": "string"}
            if c.description:
                p["description"] = c.description
            params[f"rowFilter.{rel.name}.{c.name}"] = p
    return params


def document(
    cache: SchemaCache,
    relation_names: list[str],
    routine_names: list[str],
    host: str,
    port: int,
) -> dict[str, Any]:
    relations = [cache.relations[n] for n in sorted(relation_names) if n in cache.relations]
    routines = [cache.routines[n][0] for n in sorted(routine_names) if cache.routines.get(n)]
    title, description = _split(cache.description)
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "tags": ["Introspection"],
                "summary": "OpenAPI description (this document)",
                "produces": [MIME_OPENAPI, MIME_JSON],
                "responses": {"200": {"description": "OK"}},
            }
        }
    }
    for rel in relations:
        paths[f"/{rel.name}"] = _relation_path(rel)
    for r in routines:
        paths[f"/rpc/{r.name}"] = _routine_path(r)
    return {
        "swagger": "2.0",
        "info": {
            "title": title or "PostgREST API",
            "description": description or "This is a dynamic API generated by PostgREST",
            "version": f"{POSTGREST_VERSION} (gateway)",
        },
        "externalDocs": {
            "description": "PostgREST Documentation",
            "url": "https://postgrest.org/en/v13/references/api.html",
        },
        "host": f"{host}:{port}",
        "basePath": "/",
        "schemes": ["http"],
        "consumes": [MIME_JSON, MIME_OBJECT_STRIP, MIME_OBJECT],
        "produces": [MIME_JSON, MIME_OBJECT_STRIP, MIME_OBJECT],
        "paths": paths,
        "definitions": {rel.name: _definition(rel) for rel in relations},
        "parameters": _parameters(relations),
    }
