"""HTTP load from `wrk` (a C load generator), so that the client is not what limits the servers.

`bench/http.py --http-client wrk` (the default when `wrk` is on PATH) runs one `wrk` per cell slice:
one thread, one keep-alive connection per client, the scenario's request line and headers (a Lua
script draws the random agent of `assignments` per request). Its `done` hook prints the request
count, the error counts and 1,000 latency quantiles as one JSON line; the client CPU is wrk's own
(its rusage, from wait4). The Debian package `wrk` comes with `make bench-http` (ensure_wrk).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PACKAGE = "wrk"
QUANTILES = 1000

_DONE = """
done = function(summary, latency, requests)
  local q = {}
  for i = 1, %(n)d do q[i] = latency:percentile((i - 0.5) * 100 / %(n)d) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"status":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"timeout":%%d,"q_us":[%%s]}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    table.concat(q, ",")))
end
"""


def ensure_wrk() -> str | None:
    """wrk's path; as root, install the Debian package when it is missing (as waybill/cluster.py does
    for the server's packages); otherwise None (the bench falls back to its Python client)."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        if not found:
            print(f"bench: no wrk on PATH (as root: apt-get install {PACKAGE})", file=sys.stderr)
        return found
    print(f"bench: installing {PACKAGE}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], check=True, env=env)
    return shutil.which("wrk")


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def script(path: Path, headers: dict[str, str], targets: Sequence[str]) -> Path:
    """A wrk script: these headers, one of `targets` per request (the first alone: prebuilt by wrk)."""
    lines = [f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}" for k, v in headers.items() if k.lower() != "host"]
    if len(targets) == 1:
        lines.append(f"wrk.path = {_lua_str(targets[0])}")
    else:
        lines.append("local targets = {" + ",".join(_lua_str(t) for t in targets) + "}")
        lines.append("local n = #targets")
        lines.append('request = function() return wrk.format("GET", targets[math.random(n)]) end')
    path.write_text("\n".join(lines) + "\n" + _DONE % {"n": QUANTILES})
    return path


def run(
    wrk: str, url: str, lua: Path, clients: int, seconds: float, marks: Callable[[], dict]
) -> tuple[dict[str, Any], float, dict, dict]:
    """One load slice: (wrk's figures + its CPU, the start time, the CPU marks before and after)."""
    cmd = [wrk, "-t", "1", "-c", str(clients), "-d", f"{max(1, math.ceil(seconds))}s", "--timeout", "10s"]
    cmd += ["-s", str(lua), url]
    before = marks()
    go = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    after = marks()
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out[-1000:]}")
    figures = json.loads(line.removeprefix("WRKJSON "))
    figures["cpu_s"] = usage.ru_utime + usage.ru_stime
    return figures, go, before, after


def latencies(figures: dict[str, Any]) -> list[float]:
    """`requests` latencies in seconds, spread over wrk's quantiles (each stands for 1/1000 of them)."""
    n, q = figures["requests"], figures["q_us"]
    out: list[float] = []
    for i, us in enumerate(q):
        out += [us / 1e6] * (n * (i + 1) // len(q) - n * i // len(q))
    return out


def errors(figures: dict[str, Any]) -> tuple[Counter, Counter]:
    """(non-2xx by status, socket errors by kind): wrk counts statuses > 399 without telling which."""
    non_2xx = Counter({"4xx/5xx": figures["status"]} if figures["status"] else {})
    errs = Counter({k: figures[k] for k in ("connect", "read", "write", "timeout") if figures[k]})
    return non_2xx, errs
