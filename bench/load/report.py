"""The load report: bench/results/<date>/report.md with its PNG plots (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.common import md  # noqa: E402


def _f(x: Any, d: int = 0) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{d}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _agg(r: dict[str, Any]) -> dict[str, Any]:
    return r.get("locust", {}).get("endpoints", {}).get("Aggregated", {})


def _errors(r: dict[str, Any]) -> str:
    f = r.get("locust", {}).get("failures", {})
    return ", ".join(f"{k}: {n}" for k, n in sorted(f.items())) or "0"


def _ok(b: bool) -> str:
    return "pass" if b else "**FAIL**"


def headline(results: dict[str, Any]) -> str:
    head = ["scenario", "orders/h run (plan × compress)", "requests", "P50 ms", "P95 ms", "P99 ms",
            "worst endpoint P95 ms", "errors", "max DB conns", "lock timeouts", "max backlog",
            "commit→POST P95 ms", "lost", "dup", "P95<500", "pool", "locks", "backlog<100"]  # fmt: skip
    rows = []
    for r in results.get("suite", []):
        a, v, w = _agg(r), r["verdict"], r["webhooks"]
        c = v["checks"]
        rows.append([r["name"], _f(r["orders_per_hour"] or None), _f(a.get("requests")), _f(a.get("p50")), _f(a.get("p95")),
                     _f(a.get("p99")), _f(v["worst_endpoint_p95_ms"]), _errors(r), _f(r["samples"]["max_connections_used"]),
                     _f(r["lock_timeouts"]), _f(r["samples"]["max_backlog"]), _f(w["latency_p95_ms"]), _f(w["lost"]),
                     _f(w["duplicates"]), _ok(c["p95_below_500ms"]), _ok(c["no_pool_exhaustion"]),
                     _ok(c["no_lock_timeouts"]), _ok(c["backlog_below_100"])])  # fmt: skip
    return md(head, rows)


def endpoints(r: dict[str, Any]) -> str:
    rows = [[n, _f(e["requests"]), _f(e["failures"]), _f(e["p50"]), _f(e["p95"]), _f(e["p99"]), _f(e["rps"], 2)]
            for n, e in sorted(r.get("locust", {}).get("endpoints", {}).items())]  # fmt: skip
    return md(["endpoint", "requests", "failures", "P50 ms", "P95 ms", "P99 ms", "req/s"], rows)


def knee_tables(k: dict[str, Any]) -> str:
    rows = []
    for r in k.get("orders", []):
        a, s = _agg(r), r["samples"]
        rows.append([f"×{r['multiple']}", _f(r["orders_per_hour"]), _f(r["achieved_orders_per_hour"]), _f(a.get("p50")),
                     _f(a.get("p95")), _f(r["verdict"]["worst_endpoint_p95_ms"]), _errors(r), _f(s["mean_cpu_pct"], 0),
                     _f(s["max_active"]), _f(s["max_waiting_locks"]), _f(r["lock_timeouts"]), _f(s.get("mean_gateway_cpu_pct"), 0),
                     _f(s.get("mean_postgres_cpu_pct"), 0), _f(s.get("mean_wal_bytes_s")), _waits(s), r.get("saturation", "-"),
                     "ok" if r["ok"] else "**knee**"])  # fmt: skip
    t1 = md(["× 200/h", "target orders/h", "achieved orders/h", "P50 ms", "P95 ms", "worst endpoint P95", "errors",
             "machine CPU %", "max active backends", "max waiting locks", "lock timeouts", "gateway CPU % of 1 core",
             "PostgreSQL CPU % of 1 core", "WAL B/s", "top waits (samples)", "at its limit", ""], rows)  # fmt: skip
    rows = []
    for r in k.get("webhooks", []):
        w = r["webhooks"]
        rows.append([_f(r["emit_per_min"]), _f(r.get("emitted")), _f(r["samples"]["max_backlog"]), _f(r.get("end_backlog")),
                     _f(r["drain_s"], 1), _f(w["latency_p50_ms"]), _f(w["latency_p95_ms"]), _f(w["lost"]), _f(w["duplicates"]),
                     _f(r["samples"]["mean_cpu_pct"], 0), r.get("saturation", "-"), "ok" if r["ok"] else "**knee**"])  # fmt: skip
    t2 = md(["events/min", "emitted", "max backlog", "backlog at end", "drain s", "commit→POST P50 ms", "P95 ms", "lost",
             "dup", "machine CPU %", "at its limit", ""], rows)  # fmt: skip
    return t1 + "\n\n" + t2


def _waits(s: dict[str, Any]) -> str:
    return ", ".join(f"{k} {n}" for k, n in (s.get("waits") or {}).items()) or "-"


def knee_summary(k: dict[str, Any]) -> str:
    lines = []
    for kind, unit, key in (
        ("orders", "× 200 orders/h", "multiple"),
        ("webhooks", "events/min", "emit_per_min"),
    ):
        steps = k.get(kind, [])
        ok = [r for r in steps if r["ok"]]
        bad = [r for r in steps if not r["ok"]]
        best = (
            f"{ok[-1][key]:,} {unit}"
            if ok
            else f"below the first step ({steps[0][key]:,} {unit})"
            if steps
            else "-"
        )
        if kind == "orders" and ok:
            best += f" ({ok[-1]['achieved_orders_per_hour']:,} orders/h achieved)"
        if bad:
            r = bad[0]
            why = (f"P95 {_agg(r).get('p95')} ms (worst endpoint {r['verdict']['worst_endpoint_p95_ms']:.0f}), errors {_errors(r)}" if kind == "orders"
                   else f"max backlog {r['samples']['max_backlog']}")  # fmt: skip
            tail = (
                f"; the next step ({r[key]:,} {unit}) failed: {why}; at its limit: {r.get('saturation', '-')}"
            )
        else:
            tail = f"; no step failed (the ramp's top): at its limit there: {steps[-1].get('saturation', '-') if steps else '-'}"
        lines.append(f"- **{kind}**: sustainable {best}{tail}.")
    return "\n".join(lines)


def idle_table(d: dict[str, Any]) -> str:
    rows = []
    for t in sorted(d["tables_before"]):
        b, e, a = (d[k].get(t, {}) for k in ("tables_before", "tables_at_end", "tables_after_vacuum"))
        rows.append([f"`{t}`", _f(b.get("dead")), _f(e.get("dead")), _f(a.get("dead")), _f(b.get("bytes")),
                     _f(e.get("bytes")), _f(a.get("bytes"))])  # fmt: skip
    return md(["table", "dead tuples before", "at the end (session still open)", "after VACUUM", "bytes before",
               "bytes at the end", "bytes after VACUUM"], rows)  # fmt: skip


def fault_table(faults: list[dict[str, Any]]) -> str:
    rows = []
    for r in faults:
        w = r["webhooks"]
        rows.append([r["name"], _f(r["fault_end_s"] - r["fault_at_s"], 1), _f(r["recovery_s"], 1), _f(r.get("serving_again_s"), 1),
                     _f(r.get("held_back_delivered_s"), 1),
                     _f(w["deliveries"]), _f(w["lost"]), _f(w["duplicates"]), _f(w["latency_max_ms"]), _errors(r),
                     _f(r["lock_timeouts"]), _f(r["samples"]["max_backlog"])])  # fmt: skip
    return md(["fault", "fault lasted s", "recovered in s", "serving again s", "held-back deliveries delivered s", "deliveries", "lost", "duplicates",
               "max commit→POST ms", "client errors (status code: n)", "lock timeouts", "max backlog"], rows)  # fmt: skip


def _series(r: dict[str, Any], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for h in r.get("locust", {}).get("history", []):
        if h.get(key) is not None and h["users"] > 0:
            xs.append(h["t"] - r["t0"])
            ys.append(h[key])
    return xs, ys


def _samples(r: dict[str, Any], f: Any) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in r.get("sample_rows", []):
        v = f(row)
        if v is not None:
            xs.append(row["t"])
            ys.append(v)
    return xs, ys


def _pool(row: dict[str, Any]) -> Any:
    return row.get("health_pool", {}).get("connections")


def _active(row: dict[str, Any]) -> Any:
    return row.get("health_pool", {}).get("by_state", {}).get("active")


def _backlog(row: dict[str, Any]) -> Any:
    return row.get("health_webhooks", {}).get("backlog")


def plot_runs(runs: list[dict[str, Any]], path: Path, title: str, marks: bool = False) -> None:
    n = len(runs)
    fig, axes = plt.subplots(n, 4, figsize=(18, 2.6 * n), squeeze=False)
    for i, r in enumerate(runs):
        ax = axes[i]
        for key in ("p50", "p95", "p99"):
            ax[0].plot(*_series(r, key), label=key)
        ax[0].axhline(500, color="red", lw=0.6, ls="--")
        ax[0].set_ylabel(r["name"], fontsize=8)
        ax[1].plot(*_series(r, "rps"), label="req/s")
        ax[1].plot(*_series(r, "fps"), label="failures/s", color="red")
        ax[2].plot(*_samples(r, _pool), label="connections")
        ax[2].plot(*_samples(r, _active), label="active")
        ax[3].plot(*_samples(r, _backlog), label="backlog")
        ax[3].axhline(100, color="red", lw=0.6, ls="--")
        for a in ax:
            if marks and "fault_at_s" in r:
                a.axvspan(r["fault_at_s"], r["fault_end_s"], color="orange", alpha=0.3)
                if r.get("recovery_s") is not None:
                    a.axvline(r["fault_end_s"] + r["recovery_s"], color="green", lw=1)
            a.tick_params(labelsize=7)
        if i == 0:
            for a, t in zip(ax, ("latency ms (window percentiles)", "throughput", "DB connections (health_pool)",
                                 "webhook backlog (health_webhooks)"), strict=True):  # fmt: skip
                a.set_title(t, fontsize=9)
                a.legend(fontsize=7)
    for a in axes[-1]:
        a.set_xlabel("s", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_knee(k: dict[str, Any], path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    o = k.get("orders", [])
    a.plot([r["multiple"] for r in o], [_agg(r).get("p95") for r in o], "o-", label="aggregated P95")
    a.plot(
        [r["multiple"] for r in o],
        [r["verdict"]["worst_endpoint_p95_ms"] for r in o],
        "s-",
        label="worst endpoint P95",
    )
    a.axhline(500, color="red", ls="--")
    a.set_xscale("log")
    a.set_xlabel("order rate, × the plan's 200/h")
    a.set_ylabel("ms")
    a.legend()
    w = k.get("webhooks", [])
    b.plot(
        [r["emit_per_min"] for r in w], [r["samples"]["max_backlog"] for r in w], "o-", label="max backlog"
    )
    b.plot(
        [r["emit_per_min"] for r in w],
        [r["webhooks"]["latency_p95_ms"] for r in w],
        "s-",
        label="commit→POST P95 ms",
    )
    b.axhline(100, color="red", ls="--")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("webhook events/min")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write(results: dict[str, Any], out: Path) -> Path:
    parts = [f"# Load, soak and chaos — {results['started'][:16]} UTC", "",
             "Produced by `make load` (`python -m bench.load`, bench/load/README.md). Machine: "
             f"`{results['uptime_before']}` before, `{results.get('uptime_after')}` after (2 cores shared with other work: "
             "absolute figures are low and noisy).", "",
             f"**Compression**: the order scenarios run {results['compress']}× faster than the plan (the same orders in "
             f"1/{results['compress']} of the time, so {results['compress']}× the plan's rate: harder, not easier); the "
             f"10-minute faults last 10 min / {results['fault_compress']} and the dispatcher's retry schedule is divided by "
             f"{results['fault_compress']} (webhooks.retry_schedule in the run's own database).", ""]  # fmt: skip
    if results.get("suite"):
        plot_runs(results["suite"], out / "scenarios.png", "Scenarios")
        parts += ["## Scenarios (targets printed, not asserted)", "", headline(results), "",
                  "![scenarios](scenarios.png)", ""]  # fmt: skip
        for r in results["suite"]:
            parts += [f"### {r['name']}", "", f"Users {r['users']}, {r['seconds']:.0f} s; errors: {_errors(r)}; "
                      f"webhooks {r['webhooks']}; pool {r['samples']}.", "", endpoints(r), ""]  # fmt: skip
    if results.get("knee"):
        plot_knee(results["knee"], out / "knee.png")
        plot_runs(
            results["knee"]["orders"] + results["knee"]["webhooks"], out / "knee_runs.png", "Knee steps"
        )
        parts += ["## The knee", "", knee_summary(results["knee"]), "", knee_tables(results["knee"]), "", "![knee](knee.png)", "",
                  "![knee steps](knee_runs.png)", ""]  # fmt: skip
    if results.get("faults"):
        plot_runs(
            results["faults"], out / "faults.png", "Faults (orange: the fault; green: recovered)", marks=True
        )
        parts += ["## Faults", "", fault_table(results["faults"]), "", "![faults](faults.png)", ""]
        for r in results["faults"]:
            d = {k: v for k, v in r["detail"].items() if not k.startswith("tables_")}
            if d:
                parts += [f"- `{r['name']}`: {d}"]
        parts += [""]
        idle = next((r["detail"] for r in results["faults"] if "tables_before" in r["detail"]), None)
        if idle:
            parts += ["### idle_in_tx: what a transaction left open does to vacuum", "", idle_table(idle), ""]
    if results.get("orders"):
        parts += ["## Orders over the whole run", "", f"{results['orders']}", ""]
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path
