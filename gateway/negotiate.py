"""Request negotiation as PostgREST v13 does it: the Accept header (media types) and Prefer.

Pure functions of header values (and, for `timezone=`, the zone names the schema cache read from
pg_timezone_names): no I/O.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field

from gateway import errors

JSON_MIME = "application/json"
OBJECT_MIME = "application/vnd.pgrst.object+json"
ARRAY_MIME = "application/vnd.pgrst.array+json"
OPENAPI_MIME = "application/openapi+json"
# PostgREST accepts its vendor types with or without the +json suffix.
_OBJECT = {OBJECT_MIME, "application/vnd.pgrst.object"}
_ARRAY = {ARRAY_MIME, "application/vnd.pgrst.array"}

# Every preference PostgREST v13 knows with a fixed value; max-affected=<n> and timezone=<zone>
# are checked by value. Anything else is invalid: ignored, or 400 PGRST122 with handling=strict.
KNOWN_PREFS = {
    "resolution=merge-duplicates",
    "resolution=ignore-duplicates",
    "return=representation",
    "return=minimal",
    "return=headers-only",
    "count=exact",
    "count=planned",
    "count=estimated",
    "tx=commit",
    "tx=rollback",
    "missing=default",
    "missing=null",
    "handling=strict",
    "handling=lenient",
}


@dataclass
class Media:
    kind: str  # "json", "object", "openapi"
    strip_nulls: bool = False

    @property
    def content_type(self) -> str:
        if self.kind == "object":
            mime = OBJECT_MIME + (";nulls=stripped" if self.strip_nulls else "")
        elif self.kind == "openapi":
            mime = OPENAPI_MIME
        elif self.strip_nulls:
            mime = ARRAY_MIME + ";nulls=stripped"
        else:
            mime = JSON_MIME
        return f"{mime}; charset=utf-8"


@dataclass
class Prefs:
    count: bool = False
    count_value: str | None = None
    handling: str | None = None
    timezone: str | None = None  # a valid zone: rendered with set_config('timezone', ..., true)
    invalid: list[str] = field(default_factory=list)

    def applied(self) -> list[tuple[str, str]]:
        vals = [self.count_value if self.count else None, self.handling]
        vals.append(f"timezone={self.timezone}" if self.timezone else None)
        present = [v for v in vals if v]
        return [("Preference-Applied", ", ".join(present))] if present else []


def parse_prefs(values: Sequence[str], timezones: Container[str] = ()) -> Prefs:
    """Every Prefer header, comma-separated values; the first of each kind wins, as in PostgREST.

    With handling=strict, any invalid preference is 400 PGRST122; otherwise invalid ones are ignored.
    """
    prefs = [p.strip() for v in values for p in v.split(",") if p.strip()]
    out = Prefs()
    for p in prefs:
        key, _, value = p.partition("=")
        if p in ("count=exact", "count=planned", "count=estimated"):
            out.count_value = out.count_value or p
        elif p in ("handling=strict", "handling=lenient"):
            out.handling = out.handling or p
        elif key == "timezone":
            if value in timezones:
                out.timezone = out.timezone or value
            else:
                out.invalid.append(p)
        elif key == "max-affected":
            if not (value.isascii() and value.isdigit()):
                out.invalid.append(p)
        elif p not in KNOWN_PREFS:
            out.invalid.append(p)
    # planned/estimated counts need the planner's estimate, which the gateway does not serve.
    out.count = out.count_value == "count=exact"
    if out.handling == "handling=strict" and out.invalid:
        raise errors.invalid_preferences(out.invalid)
    return out


def negotiate(accept: str | None, *, root: bool = False) -> Media:
    """The first acceptable media type of the Accept header, by q then order; else PGRST107.

    `nulls=stripped` is honoured on PostgREST's vendor types (json_strip_nulls of the body, as
    PostgREST does); other parameters are ignored, as PostgREST ignores them.
    """
    if accept is None or not accept.strip():
        return Media("openapi" if root else "json")
    ranges: list[tuple[float, int, str, dict[str, str]]] = []
    for i, part in enumerate(accept.split(",")):
        bits = [b.strip() for b in part.split(";")]
        mime = bits[0].lower()
        params: dict[str, str] = {}
        for b in bits[1:]:
            k, _, v = b.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if mime:
            ranges.append((-q, i, mime, params))
    ranges.sort()
    for negq, _, mime, params in ranges:
        if negq == 0:
            continue
        strip = params.get("nulls") == "stripped"
        if root:
            if mime in (OPENAPI_MIME, JSON_MIME, "*/*", "application/*"):
                return Media("openapi")
            continue
        if mime in (JSON_MIME, "*/*", "application/*"):
            return Media("json")
        if mime in _OBJECT:
            return Media("object", strip)
        if mime in _ARRAY:
            return Media("json", strip)
    raise errors.media_type_error([r[2] for r in ranges] or [accept])
