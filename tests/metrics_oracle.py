"""The metrics oracle: every figure of docs/metrics.md recomputed straightforwardly, in Python, from the
raw rows of core.shipping_assignments. Tests compare the endpoints and the rollups with it."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg

OPEN = ("OFFERED", "ACCEPTED", "PICKED_UP", "IN_TRANSIT")
UTC = dt.UTC


def rows(conn: psycopg.Connection) -> list[dict]:
    cur = conn.execute(
        "select id, order_id, agent_id, zip_code, status, sla_due_at, created_at, updated_at, accepted_at,"
        " delivered_at, failed_at, cancelled_at from core.shipping_assignments order by id"
    )
    names = [c.name for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def day(ts: dt.datetime) -> dt.date:
    return ts.astimezone(UTC).date()


def micros(delta: dt.timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def minutes(delta: dt.timedelta) -> int:
    return math.floor(micros(delta) / 60_000_000)


def pct(values: list[float], p: float) -> float | None:
    """PostgreSQL's percentile_cont."""
    if not values:
        return None
    v = sorted(values)
    pos = p * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def rate(part: int, whole: int) -> float | None:
    if whole == 0:
        return None
    return float((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), ROUND_HALF_UP))


def mean_minutes(us: int, n: int) -> float | None:
    if n == 0:
        return None
    return float((Decimal(us) / n / 60_000_000).quantize(Decimal("0.01"), ROUND_HALF_UP))


# -- events -----------------------------------------------------------------------------------------
def events(r: dict) -> list[tuple[str, dt.datetime]]:
    """(kind, when) of every counted event of one assignment (docs/metrics.md)."""
    out = [("OFFERED", r["created_at"])]
    if r["accepted_at"] is not None and r["agent_id"] is not None:
        out.append(("ACCEPTED", r["accepted_at"]))
    if r["status"] == "DELIVERED":
        out.append(("DELIVERED", r["delivered_at"]))
    elif r["status"] == "FAILED":
        out.append(("FAILED", r["failed_at"] or r["updated_at"]))
    elif r["status"] == "CANCELLED":
        out.append(("CANCELLED", r["cancelled_at"] or r["updated_at"]))
    return out


def delivery_time(r: dict) -> dt.timedelta:
    return r["delivered_at"] - (r["accepted_at"] or r["created_at"])


def rollups(raw: list[dict]) -> tuple[dict, dict]:
    """What metrics.agent_daily and metrics.zip_daily must hold: {(key, day): {column: value}}."""
    agent: dict = defaultdict(lambda: defaultdict(int))
    zips: dict = defaultdict(lambda: defaultdict(int))
    for r in raw:
        for kind, when in events(r):
            a = agent[(r["agent_id"], day(when))] if r["agent_id"] is not None and kind != "OFFERED" else None
            # an acceptance is counted for the agent only (no endpoint reads it per zip code)
            z = zips[(r["zip_code"], day(when))] if kind != "ACCEPTED" else None
            if kind == "OFFERED":
                z["offered"] += 1
            elif kind == "ACCEPTED":
                took = r["accepted_at"] - r["created_at"]
                a["accepted"] += 1
                a["acceptance_us"] += micros(took)
                hist = a.setdefault("acceptance_hist", defaultdict(int))
                hist[str(minutes(took))] += 1
            elif kind == "DELIVERED":
                took = delivery_time(r)
                for t in (a, z):
                    t["delivered"] += 1
                    t["on_time"] += int(r["delivered_at"] <= r["sla_due_at"])
                    t["delivery_us"] += micros(took)
                hist = a.setdefault("delivery_hist", defaultdict(int))
                hist[str(minutes(took))] += 1
            elif kind == "FAILED":
                a["failed"] += 1
                z["failed"] += 1
            elif kind == "CANCELLED":
                if a is not None:
                    a["cancelled"] += 1
                z["cancelled"] += 1
    return _plain(agent), _plain(zips)


def _plain(d: dict) -> dict:
    return {
        k: {c: dict(v) if isinstance(v, dict) else v for c, v in cols.items() if v} for k, cols in d.items()
    }


def table(conn: psycopg.Connection, name: str, key: str) -> dict:
    """A rollup table as {(key, day): {column: value}} without zero columns (as rollups() builds)."""
    cur = conn.execute(f"select * from metrics.{name}")
    names = [c.name for c in cur.description]
    out = {}
    for rec in cur.fetchall():
        row = dict(zip(names, rec, strict=True))
        k = (row.pop(key), row.pop("day"))
        # a minute histogram is two parallel arrays (minutes, counts), buckets in any order: compared
        # as {minute: count}, with no minute twice and no empty bucket
        for h in ("delivery", "acceptance"):
            if f"{h}_minutes" in row:
                ms, ns = row.pop(f"{h}_minutes"), row.pop(f"{h}_counts")
                assert len(ms) == len(set(ms)) == len(ns) and all(n > 0 for n in ns), (k, h, ms, ns)
                row[f"{h}_hist"] = {str(m): n for m, n in zip(ms, ns, strict=True)}
        out[k] = {c: v for c, v in row.items() if v}
    return out


# -- endpoint figures ---------------------------------------------------------------------------------
def in_period(when: dt.datetime | None, d_from: dt.date, d_to: dt.date) -> bool:
    return when is not None and d_from <= day(when) < d_to


def hist_pct(values: list[dt.timedelta], p: float) -> float | None:
    """A histogram percentile: percentile_cont over whole minutes."""
    return pct([float(minutes(v)) for v in values], p)


def exact_pct(values: list[dt.timedelta], p: float) -> float | None:
    return pct([micros(v) / 60_000_000 for v in values], p)


def agent_figures(raw: list[dict], agent: int, d_from: dt.date, d_to: dt.date, as_of: dt.datetime) -> dict:
    mine = [r for r in raw if r["agent_id"] == agent]
    acc = [r for r in mine if in_period(r["accepted_at"], d_from, d_to)]
    dlv = [r for r in mine if r["status"] == "DELIVERED" and in_period(r["delivered_at"], d_from, d_to)]
    fail = [r for r in mine if r["status"] == "FAILED" and in_period(r["failed_at"], d_from, d_to)]
    canc = [r for r in mine if r["status"] == "CANCELLED" and in_period(r["cancelled_at"], d_from, d_to)]
    on_time = sum(r["delivered_at"] <= r["sla_due_at"] for r in dlv)
    times = [delivery_time(r) for r in dlv]
    lat = [r["accepted_at"] - r["created_at"] for r in acc]
    return {
        "accepted": len(acc),
        "delivered": len(dlv),
        "failed": len(fail),
        "cancelled": len(canc),
        "onTime": on_time,
        "slaBreaches": len(dlv) - on_time,
        "successRate": rate(len(dlv), len(dlv) + len(fail)),
        "onTimeRate": rate(on_time, len(dlv)),
        "meanDelivery": mean_minutes(sum(micros(t) for t in times), len(times)),
        "p50": hist_pct(times, 0.5),
        "p90": hist_pct(times, 0.9),
        "meanAcceptance": mean_minutes(sum(micros(t) for t in lat), len(lat)),
        "acceptanceP50": hist_pct(lat, 0.5),
        "openPastDue": sum(r["status"] in OPEN[1:] and r["sla_due_at"] < as_of for r in mine),
    }


def call(
    conn: psycopg.Connection, fn: str, role: str = "admin", sub: str | None = None, **args: Any
) -> tuple:
    """api.<fn>(name => value, …) as PostgREST runs it for `role`: (answer, response.headers)."""
    named = ", ".join(f'"{k}" => %s' for k in args)
    claims = json.dumps({"role": role, **({"sub": sub} if sub else {})})
    with conn.transaction():
        conn.execute("select set_config('request.jwt.claims', %s, true)", [claims])
        conn.execute(f"set local role {role}")
        body = conn.execute(f"select api.{fn}({named})", list(args.values())).fetchone()[0]
        headers = conn.execute("select current_setting('response.headers', true)").fetchone()[0]
    return body, json.loads(headers) if headers else None


def cached_call(conn: psycopg.Connection, fn: str, **args: Any) -> tuple:
    """api.<fn> (agent_leaderboard, sla_summary) answered from the answer cache (sql/325), as the
    worker fills it: a miss answers and NOTIFYs its key; the key is filled; the same call then reads
    the cache. A request the endpoint never caches sends no key and is returned as it came."""
    channel = conn.execute("select metrics.answer_cache_channel()").fetchone()[0]
    conn.execute(f"listen {channel}")
    try:
        # a session's own notifications reach it at its commit, before the call returns
        body, headers = call(conn, fn, **args)
        keys = [n.payload for n in conn.notifies(timeout=0, stop_after=1)]
        if not keys:
            return body, headers
        conn.execute("select metrics.fill_answer_cache(%s)", keys)
        hit, headers = call(conn, fn, **args)
        assert not list(conn.notifies(timeout=0, stop_after=1)), "a hit sends no key"
    finally:
        conn.execute(f"unlisten {channel}")
    entry = conn.execute("select as_of from metrics.answer_cache where key = %s", keys).fetchone()
    assert entry is not None and hit["asOf"] is not None, keys
    assert dt.datetime.fromisoformat(hit["asOf"]) == entry[0], "the answer came from the cache"
    return hit, headers


def close(a: float | None, b: float | None, tol: float = 0.011) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= tol
