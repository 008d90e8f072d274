"""The lifecycle bench's pgbench reference: a built-in script (tpcb-like by default) and the baseline's
INSERT from pgbench's C clients, at the same client counts; a well-known yardstick on this machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

PGBENCH_DEFAULT = Path("/usr/lib/postgresql/15/bin/pgbench")


def pgbench_runs(pgbench: Path, url: str, levels: Sequence[int], seconds: float, script: list[str]) -> list:
    runs = []
    for n in levels:
        cmd = [str(pgbench), *script, "-c", str(n), "-j", str(min(n, os.cpu_count() or 1))]
        cmd += ["-T", str(max(1, round(seconds))), url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 300)
        tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
        lat = re.search(r"latency average = ([0-9.]+) ms", out.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
        runs.append(
            {
                "clients": n,
                "tps": float(tps.group(1)) if tps else None,
                "latency_avg_ms": float(lat.group(1)) if lat else None,
                "failed": int(failed.group(1)) if failed else None,
                "error": None if out.returncode == 0 else out.stderr.strip()[-500:],
            }
        )
    return runs


def run_pgbench(
    url: str, levels: Sequence[int], seconds: float, mode: str, scale: int, pgbench: Path
) -> dict:
    """pgbench's built-in script at the same client counts: a well-known yardstick on this machine."""
    init = subprocess.run(
        [str(pgbench), "-i", "-q", "-I", "dtGvp", "-s", str(scale), url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if init.returncode != 0:
        return {"mode": mode, "error": f"pgbench -i failed: {init.stderr.strip()[-500:]}"}
    runs = pgbench_runs(pgbench, url, levels, seconds, ["-b", mode])
    return {"mode": mode, "scale": scale, "seconds": seconds, "runs": runs}


def run_pgbench_insert(url: str, levels: Sequence[int], seconds: float, pgbench: Path) -> dict:
    """The baseline's INSERT driven by pgbench's C clients (prepared, as psycopg prepares repeated
    statements): how much of the Python baseline's rate the Python client side costs."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write("insert into public.bench_baseline (payload) values (repeat('x', 64));\n")
        script = f.name
    try:
        runs = pgbench_runs(pgbench, url, levels, seconds, ["-n", "-M", "prepared", "-f", script])
    finally:
        os.unlink(script)
    return {"mode": "bare insert (custom script)", "seconds": seconds, "runs": runs}
