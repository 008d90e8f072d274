"""The lifecycle bench's results printed: text tables (`format_text`: throughput, latency per
transition, where the CPU went, the pgbench reference, the checks and notes) and markdown
(`format_markdown`).
"""

from __future__ import annotations

from bench.common import fmt, md, table
from bench.lifecycle_clients import INSERT, LOOKUP, TRANSITIONS


def _top_waits(waits: dict[str, float], k: int = 4) -> str:
    return ", ".join(f"{w} {s:.0%}" for w, s in list(waits.items())[:k]) or "-"


MAIN_HEAD = ["clients", "transitions/s", "lifecycles/s", "baseline inserts/s", "ratio", "machine busy %"]


def _main_rows(results: dict) -> list[list[str]]:
    rows = []
    for lvl in results["levels"]:
        life, base = lvl["lifecycle"], lvl["baseline"]
        cpu = life["cpu_pct_of_one_core"]
        rows.append(
            [
                str(lvl["clients"]),
                fmt(life["ops_per_s"]),
                fmt(life["lifecycles_per_s"]),
                fmt(base["ops_per_s"]),
                fmt(lvl["ratio_transitions_to_inserts"], 3),
                f"{fmt(cpu['machine_busy'], 0)} of {cpu['machine_capacity']}",
            ]
        )
    return rows


def _latency_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    head = ["ms, p50 / p95 / p99"] + [f"{lvl['clients']} client(s)" for lvl in results["levels"]]
    rows = []
    for kind in (*TRANSITIONS, LOOKUP, INSERT):
        row = {LOOKUP: f"({LOOKUP}, a read)", INSERT: "baseline insert"}.get(kind, kind)
        cells = [row]
        for lvl in results["levels"]:
            q = lvl["baseline" if kind == INSERT else "lifecycle"]["latency_ms"][kind]
            cells.append(f"{fmt(q['p50'], 2)} / {fmt(q['p95'], 2)} / {fmt(q['p99'], 2)}")
        rows.append(cells)
    return head, rows


CPU_HEAD = [
    "clients",
    "phase",
    "bench %",
    "backends %",
    "pg bg %",
    "others %",
    "backend CPU us/op",
    "WAL B/op",
    "backends were (pg_stat_activity samples)",
]


def _cpu_rows(results: dict) -> list[list[str]]:
    rows = []
    for lvl in results["levels"]:
        for phase in ("lifecycle", "baseline"):
            ph = lvl[phase]
            cpu = ph["cpu_pct_of_one_core"]
            rows.append(
                [
                    str(lvl["clients"]),
                    phase,
                    fmt(cpu["bench_clients"], 0),
                    fmt(cpu["server_backends"], 0),
                    fmt(cpu["server_background"], 0),
                    fmt(cpu["other_processes"], 0),
                    fmt(ph["backend_cpu_us_per_op"], 0),
                    fmt(ph["wal_bytes_per_op"], 0),
                    _top_waits(ph["waits"], 3),
                ]
            )
    return rows


def _pgbench_head(results: dict) -> list[str]:
    mode = (results.get("pgbench") or {}).get("mode", "builtin")
    return [
        "clients",
        f"pgbench {mode} tps",
        "latency avg ms",
        "pgbench bare inserts/s",
        "bench baseline inserts/s (Python)",
    ]


def _pgbench_rows(results: dict) -> list[list[str]]:
    tpcb = {r["clients"]: r for r in (results.get("pgbench") or {}).get("runs", [])}
    ins = {r["clients"]: r for r in (results.get("pgbench_insert") or {}).get("runs", [])}
    rows = []
    for lvl in results["levels"]:
        n = lvl["clients"]
        t, i = tpcb.get(n, {}), ins.get(n, {})
        rows.append(
            [
                str(n),
                fmt(t.get("tps")),
                fmt(t.get("latency_avg_ms"), 3),
                fmt(i.get("tps")),
                fmt(lvl["baseline"]["ops_per_s"]),
            ]
        )
    return rows


def _pgbench_title(results: dict) -> str | None:
    pg, ins = results.get("pgbench") or {}, results.get("pgbench_insert") or {}
    if not pg.get("runs") and not ins.get("runs"):
        return pg.get("error")
    parts = []
    if pg.get("runs"):
        parts.append(f"pgbench -b {pg['mode']} at scale {pg['scale']}")
    if ins.get("runs"):
        parts.append("the baseline INSERT from pgbench's C clients (-M prepared)")
    secs = (pg or ins).get("seconds")
    return f"reference ({secs:g} s each): " + "; ".join(parts)


def format_text(results: dict) -> str:
    m, s, c = results["machine"], results["server"], results["config"]
    out = [
        f"Waybill lifecycle throughput, {results['started_at']}",
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), load average at start {m['load_average_at_start']}",
        f"server: PostgreSQL {s.get('server_version')}, synchronous_commit={s.get('synchronous_commit')}, "
        f"fsync={s.get('fsync')}, wal_sync_method={s.get('wal_sync_method')}",
        f"clients: {c['clients_are']}, one connection each; per client count "
        f"{c['seconds_per_phase']:g} s of lifecycles and {c['seconds_per_phase']:g} s of baseline, "
        f"alternating in {c['slices_per_phase']} slices",
        f"world: {results['world']}",
        "",
        "throughput (ratio = transitions/s / baseline inserts/s, same client count and duration;",
        "machine busy = all processes on the machine during the lifecycle phase, % of one core)",
        table(MAIN_HEAD, _main_rows(results)),
        "",
        "latency per transition (each one autocommit transaction)",
        table(*_latency_rows(results)),
        "",
        "where the time went (CPU in % of one core: bench = the Python clients, backends = their server",
        "processes, pg bg = the server's other processes (WAL writer, logger, checkpointer...), others =",
        "the rest of the machine: other users' processes)",
        table(CPU_HEAD, _cpu_rows(results)),
    ]
    title = _pgbench_title(results)
    if title:
        out += ["", title]
        if results.get("pgbench", {}).get("runs") or results.get("pgbench_insert", {}).get("runs"):
            out.append(table(_pgbench_head(results), _pgbench_rows(results)))
    out += ["", "checks"]
    groups = ([("warm-up", results["warmup"]["checks"])] if "warmup" in results else []) + [
        (f"{lvl['clients']} clients", lvl["checks"]) for lvl in results["levels"]
    ]
    for name, checks in groups:
        for key, chk in checks.items():
            out.append(f"  {'ok  ' if chk['ok'] else 'FAIL'} {name}: {key}: {chk['detail']}")
    if results["notes"]:
        out += ["", "notes"]
        out += [f"  - {n}" for n in results["notes"]]
    out.append("")
    out.append(
        "result: " + ("all checks passed" if results["ok"] else "CHECKS FAILED: the figures are not valid")
    )
    return "\n".join(out)


def format_markdown(results: dict) -> str:
    out = [
        md(MAIN_HEAD, _main_rows(results)),
        "",
        md(*_latency_rows(results)),
        "",
        md(CPU_HEAD, _cpu_rows(results)),
    ]
    if results.get("pgbench", {}).get("runs") or results.get("pgbench_insert", {}).get("runs"):
        out += ["", _pgbench_title(results) or "", "", md(_pgbench_head(results), _pgbench_rows(results))]
    return "\n".join(out)
