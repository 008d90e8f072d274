"""Every statement the dispatcher runs, read from queries.sql (`-- name: x` headers, procrastinate style)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.M)


@cache
def queries() -> dict[str, str]:
    text = resources.files("dispatcher").joinpath("queries.sql").read_text()
    parts = _HEADER.split(text)[1:]
    found: dict[str, str] = {}
    for name, body in zip(parts[::2], parts[1::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        found[name] = "\n".join(lines).strip().rstrip(";")
    return found


def q(name: str) -> str:
    return queries()[name]
