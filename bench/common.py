"""What the benchmarks share: /proc readings (CPU of the server and the machine), run metadata,
percentiles, text and markdown tables, saving results. bench/lifecycle.py and bench/http.py import
from here, never from each other.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
from pathlib import Path

import psycopg

RESULTS_DIR = Path(__file__).resolve().parent / "results"
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
