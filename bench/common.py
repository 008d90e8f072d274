"""What the benchmarks share: /proc readings (CPU of the server and the machine), run metadata,
percentiles, text and markdown tables, saving results, and starting gateway/. The benchmarks import
from here, never from each other.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg

from waybill import process
from waybill.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def backend_cpu_s(pid: int | None) -> float | None:
    """utime + stime of a local server process, from /proc (None when the server is elsewhere)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_s(pid: int | None) -> float | None:
    """A server's CPU with its direct children's (the gateway forks one process per worker)."""
    if pid is None:
        return None
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        kids = []
    parts = [backend_cpu_s(p) for p in (pid, *kids)]
    return None if any(x is None for x in parts) else sum(parts)  # type: ignore[misc]


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine spent busy (all cores, every process), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def cluster_cpu(postmaster: int | None, exclude: int) -> dict[int, float]:
    """CPU seconds so far of the postmaster and each of its children except `exclude`: the server's
    background processes (walwriter, checkpointer, logger, autovacuum...) and live backends."""
    if postmaster is None:
        return {}
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        pid = int(entry.name)
        if pid == postmaster or ppid(pid) == postmaster:
            cpu = backend_cpu_s(pid)
            if cpu is not None:
                out[pid] = cpu
    return out


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


def server_info(url: str) -> dict:
    names = [
        "server_version",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "full_page_writes",
        "commit_delay",
        "shared_buffers",
        "max_connections",
        "log_min_duration_statement",
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "select name, setting || coalesce(unit, '') from pg_settings where name = any(%s)", [names]
        ).fetchall()
    return dict(rows)


def machine_info() -> dict:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def numeric(rows: list[list[str]], i: int) -> bool:
    return all(r[i][:1].isdigit() or r[i] == "-" for r in rows)


def table(head: list[str], rows: list[list[str]]) -> str:
    """Plain-text table: numeric columns right-aligned, the others left-aligned."""
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    right = [numeric(rows, i) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def md(head: list[str], rows: list[list[str]]) -> str:
    align = ["---:" if numeric(rows, i) else "---" for i in range(len(head))]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def save(results: dict, kind: str, path: Path | None = None) -> Path:
    """Write a run's results as JSON: `path`, or bench/results/<kind>-<UTC start>.json."""
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = results["started_at"].replace("+00:00", "Z").replace(":", "").replace("-", "")
        path = RESULTS_DIR / f"{kind}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


@contextlib.contextmanager
def gateway(
    auth_url: str, secret: str, log_path: Path, options: Sequence[str] = (), cwd: Path = ROOT
) -> Iterator[tuple[subprocess.Popen, int]]:
    """`python -m gateway` (from the checkout `cwd`) on a free port, until its admin port says
    ready; yields (process, port) and stops it after. The database URL and the JWT secret travel by
    environment, never argv (gateway/__main__.py refuses them there). `options`: more gateway flags
    (--pool-size, --workers, --log-level…). Its output goes to `log_path`, whose tail a failed start
    reports."""
    port, admin = free_port(), free_port()
    env = dict(os.environ, PGRST_DB_URI=auth_url, PGRST_JWT_SECRET=secret)
    with log_path.open("wb") as out:
        proc = process.start(
            [sys.executable, "-m", "gateway", "--host", HOST, "--port", str(port), "--admin-port", str(admin),
             *options],
            env=env, cwd=cwd, output=out,
        )  # fmt: skip
        try:
            process.wait_until(
                process.http_ok(f"http://{HOST}:{admin}/ready"),
                timeout=60,
                what=f"gateway on port {port}",
                child=proc,
                describe_exit=lambda: log_path.read_text(errors="replace")[-2000:],
            )
            yield proc, port
        finally:
            process.stop(proc)


@contextlib.contextmanager
def before_after_databases(before: str) -> Iterator[dict[str, str]]:
    """{"before": a database with `before` and every later migration rolled back, "after": all applied}
    (bench/outbox.py and bench/transition.py compare the two).
    Existing databases by environment (WAYBILL_BENCH_BEFORE_DATABASE_URL and
    WAYBILL_BENCH_DATABASE_URL), else two of a throw-away cluster."""
    from waybill import migrate

    ids = migrate.ordered_ids()
    if before not in ids:
        raise SystemExit(f"no migration {before!r}")
    rollback = ids[ids.index(before) :][::-1]
    env_before, env_after = (
        os.environ.get(k) for k in ("WAYBILL_BENCH_BEFORE_DATABASE_URL", "WAYBILL_BENCH_DATABASE_URL")
    )
    if env_before and env_after:
        yield {"before": env_before, "after": env_after}
        return
    from waybill import testing

    with testing.test_cluster() as cluster:
        log(f"throw-away cluster in {cluster.data_dir}; migrating the template")
        testing.build_template(cluster)
        for db in ("bench_outbox_before", "bench_outbox"):
            cluster.drop_database(db)
            cluster.create_database(db, template=testing.TEMPLATE_DB)
        for mid in rollback:
            log(f"bench_outbox_before: rolling back {mid}")
            migrate.apply_step(cluster.url("bench_outbox_before"), mid, rollback=True)
        yield {"before": cluster.url("bench_outbox_before"), "after": cluster.url("bench_outbox")}
