"""One cell of the HTTP benchmark (scenario x target x client count): its slices' requests,
latencies, errors and the CPU each process used (cpu_marks), summed into the cell's figures.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.common import cluster_cpu as _cluster_cpu
from bench.common import machine_busy_s as _machine_busy_s
from bench.common import ms as _ms
from bench.common import percentile as _pct
from bench.common import tree_cpu_s as _tree_cpu_s
from bench.http_workers import WorkerSlice

# -- measuring one cell ---------------------------------------------------------------------------


def cpu_marks(pids: dict[str, int | None], postmaster: int | None) -> Callable[[], dict]:
    def take() -> dict:
        return {
            "t": time.monotonic(),
            "busy": _machine_busy_s(),
            "procs": {k: _tree_cpu_s(p) for k, p in pids.items()},
            "postgres": _cluster_cpu(postmaster, -1),
        }

    return take


@dataclass
class Cell:
    scenario: str
    target: str
    clients: int
    latencies: list[float] = field(default_factory=list)
    non_2xx: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    elapsed: float = 0.0
    window: float = 0.0
    client_cpu_s: float = 0.0
    client_proc_max_pct: float = 0.0
    per_client_rps: list[float] = field(default_factory=list)
    cpu_s: Counter = field(default_factory=Counter)  # gateway, noop, postgres, busy
    have_cpu: bool = True

    def add(self, outs: list[WorkerSlice], go: float, before: dict, after: dict) -> None:
        for o in outs:
            self.latencies += o.latencies
            self.non_2xx.update(o.non_2xx)
            self.errors.update(o.errors)
            self.per_client_rps += o.per_client_rps
        elapsed = max(o.last_stop for o in outs) - go
        window = after["t"] - before["t"]
        self.elapsed += elapsed
        self.window += window
        self.client_cpu_s += sum(o.cpu_s for o in outs)
        self.client_proc_max_pct = max(
            self.client_proc_max_pct, *(100 * o.cpu_s / max(elapsed, 1e-6) for o in outs)
        )
        for k, c0 in before["procs"].items():
            c1 = after["procs"][k]
            if c0 is None or c1 is None:
                self.have_cpu = False
            else:
                self.cpu_s[k] += c1 - c0
        p0, p1 = before["postgres"], after["postgres"]
        if not p0 or before["busy"] is None or after["busy"] is None:
            self.have_cpu = False
        else:
            self.cpu_s["postgres"] += sum(p1[p] - c for p, c in p0.items() if p in p1)
            self.cpu_s["busy"] += after["busy"] - before["busy"]

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        n = len(lat)

        def pct(x: float | None, over: float) -> float | None:
            return None if x is None or not self.have_cpu else round(100 * x / over, 1)

        def us(x: float | None) -> float | None:
            return None if x is None or not n or not self.have_cpu else round(1e6 * x / n)

        cpu = dict(self.cpu_s)
        known = self.client_cpu_s + sum(cpu.get(k, 0.0) for k in ("gateway", "noop", "postgres"))
        others = max(0.0, cpu.get("busy", 0.0) - known) if self.have_cpu else None
        return {
            "scenario": self.scenario,
            "target": self.target,
            "clients": self.clients,
            "requests": n,
            "elapsed_s": round(self.elapsed, 3),
            "rps": round(n / self.elapsed, 1) if self.elapsed > 0 else 0.0,
            "latency_ms": {
                "mean": _ms(sum(lat) / n) if n else None,
                "p50": _ms(_pct(lat, 50)),
                "p95": _ms(_pct(lat, 95)),
                "p99": _ms(_pct(lat, 99)),
                "max": _ms(lat[-1] if lat else None),
            },
            # Fairness: each client's requests/s in each slice (a client starved of CPU does fewer
            # requests, so percentiles over requests lean towards the fast clients).
            "per_client_rps": {
                "min": round(min(self.per_client_rps), 1) if self.per_client_rps else None,
                "max": round(max(self.per_client_rps), 1) if self.per_client_rps else None,
            },
            "non_2xx": dict(sorted(self.non_2xx.items())),
            "errors": dict(self.errors.most_common()),
            "cpu_pct_of_one_core": {
                "clients": round(100 * self.client_cpu_s / max(self.elapsed, 1e-6), 1),
                "client_process_max": round(self.client_proc_max_pct, 1),
                "gateway": pct(cpu.get("gateway"), self.window) if self.target == "gateway" else None,
                "noop": pct(cpu.get("noop"), self.window) if self.target == "noop" else None,
                "postgres": pct(cpu.get("postgres"), self.window),
                "others": pct(others, self.window),
                "machine_busy": pct(cpu.get("busy"), self.window),
                "machine_capacity": 100 * (os.cpu_count() or 1),
            },
            "cpu_us_per_request": {
                "clients": round(1e6 * self.client_cpu_s / n) if n else None,
                "server": us(cpu.get(self.target)) if self.target in ("gateway", "noop") else None,
                "postgres": us(cpu.get("postgres")),
            },
        }
