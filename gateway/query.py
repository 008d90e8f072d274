"""The query string, parsed the way PostgREST reads it.

`select=a,b`, filters `col=[not.]op.value`, `and=(...)`/`or=(...)` trees, `order=col.desc.nullslast`,
`limit`, `offset`; on a GET to a function, a parameter whose value is not an operator expression is
an argument. Everything the gateway does not serve (embedding, JSON paths, casts, aggregates) is
refused with PGRST127 rather than half-done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_plus, urlencode

from gateway import errors
from gateway.errors import ApiError

RESERVED = {"select", "columns", "on_conflict"}
RESERVED_EMBEDDABLE = {"order", "limit", "offset", "and", "or"}

# operator -> SQL operator
QUANT_OPS = {
    "eq": "=",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "like",
    "ilike": "ilike",
    "match": "~",
    "imatch": "~*",
}
SIMPLE_OPS = {
    "neq": "<>",
    "cs": "@>",
    "cd": "<@",
    "ov": "&&",
    "sl": "<<",
    "sr": ">>",
    "nxr": "&<",
    "nxl": "&>",
    "adj": "-|-",
}
FTS_OPS = {
    "fts": "to_tsquery",
    "plfts": "plainto_tsquery",
    "phfts": "phraseto_tsquery",
    "wfts": "websearch_to_tsquery",
}
IS_VALUES = {"null": "NULL", "not_null": "NOT NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
EXPECTING_OP = 'expecting "not" or operator (eq, gt, ...)'

_FIELD = re.compile(r'"(?:[^"\\]|\\.)*"|[\w $-]+')


@dataclass(frozen=True)
class Filter:
    field: str
    op: str
    value: str | tuple[str, ...] | None
    negate: bool = False
    quant: str | None = None  # "any" / "all"
    lang: str | None = None  # full-text search configuration


@dataclass(frozen=True)
class Logic:
    op: str  # "and" / "or"
    children: tuple[Filter | Logic, ...]
    negate: bool = False


@dataclass(frozen=True)
class SelectItem:
    field: str  # "*" for every column
    alias: str | None = None


@dataclass(frozen=True)
class OrderTerm:
    field: str
    direction: str | None = None  # "asc" / "desc"
    nulls: str | None = None  # "first" / "last"


@dataclass
class QueryParams:
    select: list[SelectItem] = field(default_factory=lambda: [SelectItem("*")])
    filters: list[Filter] = field(default_factory=list)
    logic: list[Logic] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    args: dict[str, list[str]] = field(default_factory=dict)  # GET /rpc arguments, in order
    columns: list[str] | None = None
    canonical: str = ""

    @property
    def filter_fields(self) -> set[str]:
        return {f.field for f in self.filters}


class _Fail(Exception):
    def __init__(self, column: int, details: str) -> None:
        self.column = column
        self.details = details


def split_query(raw: bytes | str) -> list[tuple[str, str | None]]:
    """Key/value pairs in order; `+` is a space; a key without `=` has no value."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    out: list[tuple[str, str | None]] = []
    for part in text.split("&"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        k = unquote_plus(key, errors="replace")
        out.append((k, unquote_plus(value, errors="replace") if eq else None))
    return out


def _unquote_field(name: str) -> str:
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        return re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def _field_name(text: str, what: str, raw: str) -> str:
    if "->" in text:
        raise errors.not_implemented(f"JSON paths ('{raw}') are not served by the gateway")
    if not _FIELD.fullmatch(text):
        raise errors.parse_error(what, raw, 1, f'unexpected "{text[:1]}" expecting field name')
    return _unquote_field(text).strip() if not text.startswith('"') else _unquote_field(text)


def _int_or_none(value: str) -> int | None:
    return int(value) if re.fullmatch(r"-?\d+", value.strip()) else None


# -- operator expressions -------------------------------------------------------------------------

_OP_HEAD = re.compile(r"([a-z]+)(?:\((\w*)\))?\.", re.S)


def _parse_list(text: str, pos: int, in_logic: bool) -> tuple[tuple[str, ...], int]:
    """`(a,"b,c",d)` starting at text[pos] == '(' -> values and the position after ')'."""
    if pos >= len(text) or text[pos] != "(":
        raise _Fail(pos + 1, f'unexpected {_show(text, pos)} expecting "("')
    pos += 1
    values: list[str] = []
    while True:
        pos = _skip_spaces(text, pos)  # PostgREST skips blanks after "(" and ","
        value, end = _plain(text, pos, ",)")
        if pos < len(text) and text[pos] == '"':
            try:
                quoted, qend = _quoted(text, pos)
            except _Fail:  # a lone '"' (in.(")) is a plain value, as PostgREST reads it
                pass
            else:
                if qend >= len(text) or text[qend] in ",)":
                    value, end = quoted, qend
        values.append(value)
        pos = end
        if pos >= len(text):
            raise _Fail(pos + 1, 'unexpected end of input expecting ")"')
        if text[pos] == ")":
            return tuple(values), pos + 1
        pos += 1  # ','


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """A double-quoted value with backslash escapes, starting at text[pos] == '"'."""
    out = []
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise _Fail(i + 1, 'unexpected end of input expecting "\\""')


def _plain(text: str, pos: int, stops: str) -> tuple[str, int]:
    i = pos
    while i < len(text) and text[i] not in stops:
        i += 1
    return text[pos:i], i


def _show(text: str, pos: int) -> str:
    return f'"{text[pos]}"' if pos < len(text) else "end of input"


def _single_value(text: str, pos: int, in_logic: bool) -> tuple[str, int]:
    if not in_logic:
        return text[pos:], len(text)
    if pos < len(text) and text[pos] == '"':
        value, end = _quoted(text, pos)
        if end >= len(text) or text[end] in ",)":
            return value, end
    if pos < len(text) and text[pos] == "{":
        end = text.find("}", pos)
        if end != -1:
            return text[pos : end + 1], end + 1
    return _plain(text, pos, ",)")


def parse_op_expr(
    field_name: str, text: str, pos: int = 0, *, in_logic: bool = False
) -> tuple[Filter | None, int]:
    """`[not.]op[(quant)].value` at text[pos:] -> a Filter (None if there is no operator at all).

    None is only returned when nothing was consumed: the caller decides whether that is an RPC
    argument or an error. A `not.` prefix or a known operator with a bad operand is always an error.
    """
    start = pos
    negate = text.startswith("not.", pos)
    if negate:
        pos += 4
    m = _OP_HEAD.match(text, pos)
    op = m.group(1) if m else None
    arg = m.group(2) if m else None
    if m is None or not (
        op in QUANT_OPS or op in SIMPLE_OPS or op in FTS_OPS or op in ("in", "is", "isdistinct")
    ):
        if negate:
            raise _Fail(pos + 1, f"unexpected {_show(text, pos)} {EXPECTING_OP}")
        return None, start
    quant = lang = None
    if arg is not None:
        if op in QUANT_OPS and arg in ("any", "all"):
            quant = arg
        elif op in FTS_OPS and arg:
            lang = arg
        else:
            if negate:
                raise _Fail(pos + 1, f"unexpected {_show(text, pos)} {EXPECTING_OP}")
            return None, start
    pos = m.end()
    if op == "in":
        values, pos = _parse_list(text, pos, in_logic)
        return Filter(field_name, "in", values, negate), pos
    if op == "is":
        value, end = _single_value(text, pos, in_logic)
        if value.lower() not in IS_VALUES:
            raise _Fail(
                pos + 1,
                f"unexpected {_show(text, pos)} expecting isVal: (null, not_null, true, false, unknown)",
            )
        return Filter(field_name, "is", value.lower(), negate), end
    value, end = _single_value(text, pos, in_logic)
    return Filter(field_name, op, value, negate, quant, lang), end


def _filter(key: str, value: str, is_rpc_read: bool) -> Filter | None:
    try:
        flt, end = parse_op_expr(key, value)
    except _Fail as f:
        raise errors.parse_error("filter", value, f.column, f.details) from None
    if flt is None:
        if is_rpc_read:
            return None
        raise errors.parse_error("filter", value, 1, f'unexpected "{value[:1]}" {EXPECTING_OP}')
    return flt


# -- logic trees ----------------------------------------------------------------------------------


# Nesting of and/or trees: PostgREST's parser has no bound, the gateway's recursive one does (and
# the SQL it builds is nested as deep): deeper trees are a parse error (400 PGRST100), never a 500.
MAX_LOGIC_DEPTH = 64


def _logic_items(text: str, pos: int, depth: int = 1) -> tuple[tuple[Filter | Logic, ...], int]:
    if pos >= len(text) or text[pos] != "(":
        raise _Fail(pos + 1, f'unexpected {_show(text, pos)} expecting "("')
    if depth > MAX_LOGIC_DEPTH:
        raise _Fail(pos + 1, f"logic tree nested deeper than {MAX_LOGIC_DEPTH} levels")
    pos += 1
    items: list[Filter | Logic] = []
    while True:
        item, pos = _logic_item(text, _skip_spaces(text, pos), depth)
        items.append(item)
        if pos >= len(text):
            raise _Fail(pos + 1, 'unexpected end of input expecting ")"')
        if text[pos] == ")":
            return tuple(items), pos + 1
        if text[pos] != ",":
            raise _Fail(pos + 1, f'unexpected {_show(text, pos)} expecting "," or ")"')
        pos += 1


def _logic_item(text: str, pos: int, depth: int) -> tuple[Filter | Logic, int]:
    m = re.compile(r"(not\.)?(and|or)\(").match(text, pos)
    if m:
        children, end = _logic_items(text, m.end() - 1, depth + 1)
        return Logic(m.group(2), children, bool(m.group(1))), end
    fm = re.compile(r'("(?:[^"\\]|\\.)*"|[\w $-]+)\.').match(text, pos)
    if not fm:
        if (
            text.startswith("->", pos)
            or "->" in text[pos : text.find(".", pos) if "." in text[pos:] else None]
        ):
            raise errors.not_implemented("JSON paths in logic trees are not served by the gateway")
        raise _Fail(pos + 1, f"unexpected {_show(text, pos)} expecting field name")
    name = _unquote_field(fm.group(1))
    flt, end = parse_op_expr(name, text, fm.end(), in_logic=True)
    if flt is None:
        raise _Fail(fm.end() + 1, f"unexpected {_show(text, fm.end())} {EXPECTING_OP}")
    return flt, end


def parse_logic(key: str, value: str) -> Logic:
    parts = key.split(".")
    negate = "not" in parts[:-1]
    path = [p for p in parts[:-1] if p != "not"]
    if path:
        raise errors.not_embedded(".".join(path))
    try:
        children, end = _logic_items(value, 0)
        if value[end:].strip(")") == "":  # PostgREST ignores stray closing parentheses at the end
            end = len(value)
        if end != len(value):
            raise _Fail(end + 1, f"unexpected {_show(value, end)} expecting end of input")
    except _Fail as f:
        raise errors.parse_error(
            "logic tree", f"{'not.' if negate else ''}{parts[-1]}={value}", f.column, f.details
        ) from None
    return Logic(parts[-1], children, negate)


# -- select and order -----------------------------------------------------------------------------


def _split_top(text: str) -> list[str]:
    items, depth, cur, quoted = [], 0, [], False
    for c in text:
        if c == '"':
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
        if c == "," and depth == 0 and not quoted:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    items.append("".join(cur))
    return items


def parse_select(value: str) -> list[SelectItem]:
    if value.strip() == "":
        return [SelectItem("*")]
    out = []
    for raw in _split_top(value):
        item = raw.strip()
        if "(" in item or ")" in item or item.startswith("..."):
            raise errors.not_implemented(
                f"resource embedding, spreads and aggregates ('{item}') are not served by the gateway"
            )
        if "::" in item:
            raise errors.not_implemented(f"casts in select ('{item}') are not served by the gateway")
        alias = None
        if ":" in item and not item.startswith('"'):
            alias, _, item = item.partition(":")
            if not _FIELD.fullmatch(alias):
                raise errors.parse_error(
                    "select parameter", value, 1, f'unexpected "{alias[:1]}" expecting field name'
                )
            alias = _unquote_field(alias)
        if item == "*":
            out.append(SelectItem("*", None))
            continue
        if item == "":
            raise errors.parse_error("select parameter", value, 1, 'unexpected "," expecting field name')
        out.append(SelectItem(_field_name(item, "select parameter", value), alias))
    return out


_ORDER_TERM = re.compile(r'("(?:[^"\\]|\\.)*"|[\w $-]+)(?:\.(asc|desc))?(?:\.(nullsfirst|nullslast))?')


def parse_order(key: str, value: str) -> list[OrderTerm]:
    path = key.split(".")[:-1]
    if path:
        raise errors.not_embedded(".".join(path))
    terms = []
    for raw in value.split(","):
        if "->" in raw:
            raise errors.not_implemented(f"ordering by JSON paths ('{raw}') is not served by the gateway")
        m = _ORDER_TERM.fullmatch(raw)
        if not m:
            raise errors.parse_error("order", value, 1, f'unexpected "{raw[:1]}" expecting field name')
        nulls = {"nullsfirst": "first", "nullslast": "last"}.get(m.group(3) or "")
        terms.append(OrderTerm(_unquote_field(m.group(1)), m.group(2), nulls))
    return terms


# -- the whole query string -----------------------------------------------------------------------


def parse(raw_query: bytes | str, *, is_rpc_read: bool) -> QueryParams:
    pairs = split_query(raw_query)
    qp = QueryParams()
    qp.canonical = urlencode(sorted((k, v or "") for k, v in pairs))
    for key, value in pairs:
        if value is None:
            continue
        last = key.split(".")[-1]
        if key == "select":
            qp.select = parse_select(value)
        elif key == "columns":
            qp.columns = [c.strip() for c in value.split(",") if c.strip()]
        elif key == "on_conflict":
            continue
        elif last in ("and", "or"):
            qp.logic.append(parse_logic(key, value))
        elif last == "order":
            qp.order = parse_order(key, value)
        elif last in ("limit", "offset"):
            if key != last:
                raise errors.not_embedded(key.rsplit(".", 1)[0])
            number = _int_or_none(value)
            if last == "limit":
                qp.limit = number
            else:
                qp.offset = number
        else:
            if "." in key and not key.startswith('"'):
                path, _, name = key.rpartition(".")
                if "->" in name or "->" in path:
                    raise errors.not_implemented(f"JSON paths ('{key}') are not served by the gateway")
                raise errors.not_embedded(path)
            name = _field_name(key, "tree path", key)
            flt = _filter(name, value, is_rpc_read)
            if flt is None:
                qp.args.setdefault(name, []).append(value)
            else:
                qp.filters.append(flt)
    return qp


# -- ranges ---------------------------------------------------------------------------------------

_RANGE = re.compile(r"^(\d+)-(\d*)$")


@dataclass(frozen=True)
class Range:
    """Rows `offset` .. `upper` (inclusive; None = unbounded)."""

    offset: int = 0
    upper: int | None = None

    @property
    def limit(self) -> int | None:
        return None if self.upper is None else self.upper - self.offset + 1

    @property
    def is_all(self) -> bool:
        return self.offset == 0 and self.upper is None


def top_range(method: str, range_header: str | None, qp: QueryParams) -> Range:
    """The intersection of the Range header (GET only) and limit/offset, as PostgREST computes it."""
    lower, upper = 0, None
    if method == "GET" and range_header:
        m = _RANGE.match(range_header.strip())
        if m:
            lower = int(m.group(1))
            upper = int(m.group(2)) if m.group(2) else None
            if upper is not None and upper < lower:
                raise errors.invalid_range(
                    "The lower boundary must be lower than or equal to the upper boundary in the Range header."
                )
    offset = qp.offset if qp.offset is not None else 0
    if qp.limit is not None and qp.limit == 0:
        return Range(offset, offset - 1)
    q_lower, q_upper = offset, None
    if qp.limit is not None:
        if qp.limit < 0:
            raise errors.invalid_range("Limit should be greater than or equal to zero.")
        q_upper = offset + qp.limit - 1
    lo = max(lower, q_lower)
    ups = [u for u in (upper, q_upper) if u is not None]
    hi = min(ups) if ups else None
    if hi is not None and hi < lo:
        raise errors.invalid_range(
            "The lower boundary must be lower than or equal to the upper boundary in the Range header."
        )
    return Range(lo, hi)


def cap_range(rng: Range, max_rows: int | None) -> Range:
    """PostgREST's db-max-rows: at most `max_rows` rows from the range's offset."""
    if max_rows is None:
        return rng
    upper = rng.offset + max_rows - 1
    return rng if rng.upper is not None and rng.upper <= upper else Range(rng.offset, upper)


def fields_of(qp: QueryParams) -> set[str]:
    """Every field a read names: selected (not *), filtered (logic trees included), ordered."""
    out = {it.field for it in qp.select if it.field != "*"} | {f.field for f in qp.filters}
    out |= {t.field for t in qp.order}

    def walk(node: Filter | Logic) -> None:
        if isinstance(node, Filter):
            out.add(node.field)
        else:
            for child in node.children:
                walk(child)

    for tree in qp.logic:
        walk(tree)
    return out


__all__ = [
    "ApiError",
    "Filter",
    "Logic",
    "OrderTerm",
    "QueryParams",
    "Range",
    "SelectItem",
    "parse",
    "top_range",
]
