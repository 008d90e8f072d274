"""What every load scenario measures: locust (a subprocess) driving the API, a 1 s sampler of the
health endpoints and the machine, and the webhook accounting from the receiver's arrival log.

- `Sampler`: every second GET /rpc/health_pool and /rpc/health_webhooks (as admin, over HTTP like an
  operator's probe) and the machine's CPU (/proc/stat) — pool use, waiting locks, backlog over time.
- `run_locust`: one headless locust run of the given user classes; returns per-endpoint P50/P95/P99,
  failures by "<status> <code>", and the aggregated percentiles per second.
- `webhook_account`: after the backlog drained, every delivery created since a point in time is
  matched with the receiver's arrivals: lost (never arrived), duplicates (arrived more than once),
  commit -> POST latency (receiver clock minus the event's `timestamp`).
- `lock_timeouts`: "lock timeout" lines in the server's JSON log since a byte offset.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.common import cluster_cpu, percentile, tree_cpu_s
from bench.load.stack import LoadStack
from waybill.auth import jwt_secret
from waybill.settings import PROJECT_ROOT

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def _cpu() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    return sum(parts) - parts[3] - parts[4], sum(parts)


class Sampler(threading.Thread):
    """Health endpoints + machine CPU every `interval` s into `self.rows` (t = seconds since start)."""

    def __init__(self, stack: LoadStack, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.stack, self.interval = stack, interval
        self.headers = {"Authorization": f"Bearer {stack.token('admin')}"}
        self.rows: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.t0 = time.time()
        self.conn: psycopg.Connection | None = None

    def _server(self, row: dict[str, Any], prev: dict[str, float]) -> None:
        """What saturates: gateway and PostgreSQL CPU (% of one core), WAL bytes/s, backends' waits."""
        now = time.monotonic()
        dt_s = now - prev.get("at", now - self.interval)
        prev["at"] = now
        gw = self.stack.stack.children[0].pid if self.stack.stack.children else None
        pm = _postmaster(self.stack)
        cpu = {"gateway": tree_cpu_s(gw) or 0.0, "postgres": sum(cluster_cpu(pm, -1).values())}
        for k, v in cpu.items():
            if k in prev:
                row[f"{k}_cpu_pct"] = round(100 * max(0.0, v - prev[k]) / dt_s, 1)
            prev[k] = v
        try:
            if self.conn is None or self.conn.closed:
                self.conn = self.stack.connect(connect_timeout=2)
            lsn, waits = self.conn.execute("""select pg_current_wal_lsn() - '0/0'::pg_lsn,
                   (select coalesce(json_object_agg(w, n), '{}') from (
                      select coalesce(wait_event_type || ':' || wait_event, 'CPU') as w, count(*) as n
                        from pg_stat_activity where backend_type = 'client backend' and state = 'active'
                         and pid <> pg_backend_pid() group by 1) x)""").fetchone()  # fmt: skip
            if "wal" in prev:
                row["wal_bytes_s"] = round(float(lsn - prev["wal"]) / dt_s)
            prev["wal"] = lsn
            row["waits"] = waits
        except Exception:  # noqa: BLE001 - during a fault the server may be away
            if self.conn is not None:
                self.conn.close()
            self.conn = None

    def run(self) -> None:
        client = httpx.Client(base_url=self.stack.api, headers=self.headers, timeout=5)
        busy0, total0 = _cpu()
        prev: dict[str, float] = {}
        while not self.stopping.wait(self.interval):
            row: dict[str, Any] = {"t": round(time.time() - self.t0, 2)}
            busy, total = _cpu()
            row["cpu_pct"] = round(100 * (busy - busy0) / max(1, total - total0), 1)
            busy0, total0 = busy, total
            self._server(row, prev)
            for name in ("health_pool", "health_webhooks"):
                try:
                    r = client.get(f"/rpc/{name}")
                    row[name] = r.json() if r.status_code == 200 else {"http": r.status_code}
                except (httpx.HTTPError, ValueError) as exc:
                    row[name] = {"error": type(exc).__name__}
            self.rows.append(row)
        client.close()
        if self.conn is not None:
            self.conn.close()

    def stop(self) -> list[dict[str, Any]]:
        self.stopping.set()
        self.join(timeout=10)
        return self.rows


def _postmaster(stack: LoadStack) -> int | None:
    try:
        assert stack.stack.cluster is not None
        return int((stack.stack.cluster.pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, AssertionError):
        return None


def summarise_samples(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pool = [r["health_pool"] for r in rows if "connections" in r.get("health_pool", {})]
    hooks = [r["health_webhooks"] for r in rows if "backlog" in r.get("health_webhooks", {})]
    return {
        "samples": len(rows),
        "probe_failures": sum(1 for r in rows if "connections" not in r.get("health_pool", {})),
        "max_connections_used": max((p["connections"] for p in pool), default=None),
        "max_active": max((p.get("by_state", {}).get("active", 0) for p in pool), default=None),
        "max_utilization_pct": max((p["utilization_pct"] for p in pool), default=None),
        "max_waiting_locks": max((p.get("waiting_locks", 0) for p in pool), default=None),
        "pool_degraded": sum(1 for p in pool if p.get("status") != "ok"),
        "max_backlog": max((h["backlog"] for h in hooks), default=None),
        "mean_cpu_pct": _mean(rows, "cpu_pct"),
        "mean_gateway_cpu_pct": _mean(rows, "gateway_cpu_pct"),
        "mean_postgres_cpu_pct": _mean(rows, "postgres_cpu_pct"),
        "mean_wal_bytes_s": _mean(rows, "wal_bytes_s"),
        "waits": _waits(rows),
    }


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    xs = [r[key] for r in rows if r.get(key) is not None]
    return round(sum(xs) / len(xs), 1) if xs else None


def _waits(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Active backends per wait event, summed over the samples (the top 5)."""
    total: dict[str, int] = {}
    for r in rows:
        for k, n in (r.get("waits") or {}).items():
            total[k] = total.get(k, 0) + n
    return dict(sorted(total.items(), key=lambda kv: -kv[1])[:5])


def write_world(stack: LoadStack) -> Path:
    """The parties the users draw from, plus 10 agents serving only the race zip 99001."""
    with stack.connect() as conn:
        conn.execute("""insert into core.delivery_agents (name, serviceable_zip_codes)
                        select 'load race agent ' || g, array['99001'] from generate_series(1, 10) g
                        where not exists (select from core.delivery_agents where '99001' = any(serviceable_zip_codes))""")
        customers = [r[0] for r in conn.execute("select id from core.customers order by id limit 500")]
        sellers = [r[0] for r in conn.execute("select id from core.sellers order by id")]
        zips: dict[str, list[int]] = {}
        for agent, zs in conn.execute(
            "select id, serviceable_zip_codes from core.delivery_agents where status = 'ACTIVE'"
        ):
            for z in zs:
                zips.setdefault(z, []).append(agent)
    world = {"customers": customers, "sellers": sellers, "zips": zips, "race_zip": "99001"}
    path = stack.data_dir / "world.json"
    path.write_text(json.dumps(world))
    return path


def run_locust(stack: LoadStack, name: str, users: dict[str, int], seconds: float, *, pace: float = 10.0,
               out_dir: Path) -> dict[str, Any]:  # fmt: skip
    """One headless locust run; `users` maps user class -> count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / name
    total = sum(users.values())
    env = dict(os.environ, LOAD_WORLD=str(stack.data_dir / "world.json"), LOAD_JWT_SECRET=jwt_secret(stack.settings),
               LOAD_PACE=str(pace), LOAD_ORDERS_LOG=str(stack.data_dir / "orders.jsonl"))  # fmt: skip
    env.update({f"LOAD_N_{cls.upper()}": str(n) for cls, n in users.items()})
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", stack.api,
           "-u", str(total), "-r", str(total), "-t", f"{max(1, round(seconds))}s", "--csv", str(prefix),
           "--csv-full-history", "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "20",
           *users]  # fmt: skip
    with tempfile.TemporaryFile() as out:
        proc = subprocess.run(
            cmd, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 120
        )
        out.seek(0)
        tail = out.read().decode(errors="replace")[-2000:]
    stats = _read_csv(Path(f"{prefix}_stats.csv"))
    endpoints = {}
    for row in stats:
        endpoints[row["Name"]] = {
            "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "p50": _num(row["50%"]), "p95": _num(row["95%"]), "p99": _num(row["99%"]),
            "rps": round(float(row["Requests/s"]), 2),
        }  # fmt: skip
    failures: dict[str, int] = {}
    for row in _read_csv(Path(f"{prefix}_failures.csv")):
        m = re.search(r"\('(.*)'\)", row["Error"])
        key = m.group(1) if m else row["Error"]
        failures[key] = failures.get(key, 0) + int(row["Occurrences"])
    history = [
        {"t": int(r["Timestamp"]), "rps": float(r["Requests/s"]), "fps": float(r["Failures/s"]),
         "p50": _num(r["50%"]), "p95": _num(r["95%"]), "p99": _num(r["99%"]), "users": int(r["User Count"])}
        for r in _read_csv(Path(f"{prefix}_stats_history.csv")) if r["Name"] == "Aggregated"
    ]  # fmt: skip
    return {"endpoints": endpoints, "failures": failures, "history": history,
            "locust_exit": proc.returncode, "locust_tail": tail if proc.returncode not in (0, 1) else ""}  # fmt: skip


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _num(x: str) -> float | None:
    return None if x in ("", "N/A") else float(x)


def backlog(stack: LoadStack) -> int:
    with stack.connect() as conn:
        return conn.execute(
            "select count(*) from webhooks.deliveries where status in ('PENDING', 'SENDING')"
        ).fetchone()[0]


def wait_drained(stack: LoadStack, timeout: float) -> float | None:
    """Seconds until no delivery is PENDING or SENDING (None at the deadline)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if backlog(stack) == 0:
                return round(time.monotonic() - t0, 2)
        except Exception:  # noqa: BLE001 - the server may be restarting: poll again
            pass
        time.sleep(0.25)
    return None


def arrivals(stack: LoadStack) -> list[dict[str, Any]]:
    if not stack.arrivals.exists():
        return []
    return [json.loads(line) for line in stack.arrivals.read_text().splitlines() if line.strip()]


def webhook_account(stack: LoadStack, since: dt.datetime) -> dict[str, Any]:
    """Every delivery created since `since` (database clock) against the arrivals."""
    with stack.connect() as conn:
        rows = conn.execute("""select d.event_id::text, d.status from webhooks.deliveries d
                               where d.subscription_id = %s and d.created_at >= %s""",
                            [stack.webhooks.subscription_id, since]).fetchall()  # fmt: skip
    got: dict[str, list[dict[str, Any]]] = {}
    for a in arrivals(stack):
        got.setdefault(a["id"], []).append(a)
    ids = [r[0] for r in rows]
    lost = [i for i in ids if i not in got]
    dups = sum(len(got[i]) - 1 for i in ids if i in got)
    lat = sorted(
        min(a["at"] for a in got[i]) - dt.datetime.fromisoformat(got[i][0]["ts"].replace("Z", "+00:00")).timestamp()
        for i in ids if i in got
    )  # fmt: skip
    return {
        "deliveries": len(ids), "arrived": len(ids) - len(lost), "lost": len(lost), "duplicates": dups,
        "not_delivered_status": sum(1 for r in rows if r[1] != "DELIVERED"),
        "latency_p50_ms": _ms(percentile(lat, 50)), "latency_p95_ms": _ms(percentile(lat, 95)),
        "latency_p99_ms": _ms(percentile(lat, 99)), "latency_max_ms": _ms(lat[-1] if lat else None),
    }  # fmt: skip


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def db_now(stack: LoadStack) -> dt.datetime:
    with stack.connect() as conn:
        return conn.execute("select now()").fetchone()[0]


def log_offset(stack: LoadStack) -> int:
    assert stack.stack.cluster is not None
    f = stack.stack.cluster.log_file()
    return f.stat().st_size if f.exists() else 0


def lock_timeouts(stack: LoadStack, offset: int) -> int:
    assert stack.stack.cluster is not None
    f = stack.stack.cluster.log_file()
    if not f.exists():
        return 0
    with open(f, "rb") as fh:
        fh.seek(offset)
        return sum(1 for line in fh if b"lock timeout" in line)


def orders_check(stack: LoadStack) -> dict[str, int]:
    """Every order a client saw created exists; those whose life ended are in the status it expected."""
    path = stack.data_dir / "orders.jsonl"
    seen: dict[int, str | None] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["expect"] is not None or r["id"] not in seen:
                seen[r["id"]] = r["expect"]
    with stack.connect() as conn:
        status = dict(
            conn.execute("select id, status from core.orders where id = any(%s)", [list(seen)]).fetchall()
        )
    return {
        "orders_created": len(seen),
        "orders_lost": sum(1 for i in seen if i not in status),
        "orders_wrong_status": sum(1 for i, e in seen.items() if e is not None and status.get(i) != e),
        "orders_unfinished": sum(1 for e in seen.values() if e is None),
    }
