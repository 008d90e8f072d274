"""The HTTP benchmark's output: its results as text tables (format_text) and as markdown
(format_markdown).
"""

from __future__ import annotations

from bench.common import fmt as _f
from bench.common import md as _md
from bench.common import table as _table

# -- output ---------------------------------------------------------------------------------------

MAIN_HEAD = [
    "scenario",
    "clients",
    "target",
    "req/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "mean ms",
    "per-client req/s min-max",
    "non-2xx",
    "errors",
]
RATIO_HEAD = [
    "scenario",
    "clients",
    "gateway req/s",
    "gw/direct req/s",
    "gw/direct p50",
    "gw/direct mean",
    "gw/noop req/s",
]
CPU_HEAD = [
    "scenario",
    "clients",
    "target",
    "client %",
    "max proc %",
    "server %",
    "postgres %",
    "others %",
    "busy %",
    "client us/req",
    "server us/req",
    "postgres us/req",
]


def _count(d: dict) -> str:
    return str(sum(d.values()))


def _main_rows(results: dict) -> list[list[str]]:
    rows = []
    for c in results["cells"]:
        q = c["latency_ms"]
        rows.append(
            [
                c["scenario"],
                str(c["clients"]),
                c["target"],
                _f(c["rps"]),
                _f(q["p50"], 2),
                _f(q["p95"], 2),
                _f(q["p99"], 2),
                _f(q["mean"], 2),
                f"{_f(c['per_client_rps']['min'], 0)}-{_f(c['per_client_rps']['max'], 0)}",
                _count(c["non_2xx"]),
                _count(c["errors"]),
            ]
        )
    return rows


def _ratio_rows(results: dict) -> list[list[str]]:
    return [
        [
            r["scenario"],
            str(r["clients"]),
            _f(r["gateway_rps"]),
            _f(r["rps_gateway_to_direct"], 2),
            _f(r["p50_gateway_to_direct"], 2),
            _f(r["mean_gateway_to_direct"], 2),
            _f(r["rps_gateway_to_noop"], 2),
        ]
        for r in results["ratios"]
    ]


def _cpu_rows(results: dict) -> list[list[str]]:
    rows = []
    for c in results["cells"]:
        cpu, us = c["cpu_pct_of_one_core"], c["cpu_us_per_request"]
        server = cpu["gateway"] if c["target"] == "gateway" else cpu["noop"]
        rows.append(
            [
                c["scenario"],
                str(c["clients"]),
                c["target"],
                _f(cpu["clients"], 0),
                _f(cpu["client_process_max"], 0),
                _f(server, 0),
                _f(cpu["postgres"], 0),
                _f(cpu["others"], 0),
                _f(cpu["machine_busy"], 0),
                _f(us["clients"], 0),
                _f(us["server"], 0),
                _f(us["postgres"], 0),
            ]
        )
    return rows


def _statement_lines(results: dict) -> list[str]:
    stmts = results.get("statements_per_request") or {}
    if "error" in stmts:
        return [f"  {stmts['error']}"]
    out = []
    for name, s in stmts.items():
        out.append(
            f"  {name}: {s['top_level_per_request']:g} statements per request "
            f"(+ {s['nested_per_request']:g} nested, inside functions)"
        )
        out += [
            f"    {x['calls_per_request']:>5g} x {'' if x['top_level'] else '(nested) '}{x['query'][:110]}"
            for x in s["statements"]
        ]
    return out


def format_text(results: dict) -> str:
    m, s, c = results["machine"], results["server"], results["config"]
    out = [
        f"Waybill HTTP API throughput, {results['started_at']}",
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), load average at start {m['load_average_at_start']}",
        f"server: PostgreSQL {s.get('server_version')}; gateway: pool {c['gateway_pool_size']}, "
        f"log level {c['gateway_log_level']}",
        f"clients: {c['http_client']} HTTP client / psycopg AsyncConnection, one connection per client, "
        f"asyncio (uvloop); processes per client count {c['client_processes']}; "
        f"{c['seconds_per_cell']:g} s per cell "
        f"in {c['slices']} interleaved slices",
        f"data: {results['data']}",
        "scenarios:",
        *(f"  {k:<12} {v}" for k, v in results["scenarios"].items()),
        f"  noop         any GET answered {{}} by a bare Starlette app (uvicorn as the gateway's, "
        f"{c['noop_loop']} loop)",
        "direct = one pipelined round trip: begin read only; the gateway's set_config batch; the",
        "gateway's statement (gateway.sqlbuild, same parameters); commit",
        "",
        "throughput and latency",
        _table(MAIN_HEAD, _main_rows(results)),
        "",
        "gateway overhead (ratios at the same client count)",
        _table(RATIO_HEAD, _ratio_rows(results)),
        "",
        "where the CPU went (% of one core over each cell; server = the gateway or no-op process;",
        "postgres = every server process; others = the rest of the machine; us/req = CPU per request)",
        _table(CPU_HEAD, _cpu_rows(results)),
    ]
    lines = _statement_lines(results)
    if lines:
        out += ["", "statements per gateway request (pg_stat_statements, sequential requests)", *lines]
    logs = results.get("server_log_problems") or {}
    if logs:
        out += [
            "",
            "server logs: " + ", ".join(f"{k} {v['lines']} warning/error line(s)" for k, v in logs.items()),
        ]
        out += [f"  {k}: {line}" for k, v in logs.items() for line in v["first"]]
    if results["notes"]:
        out += ["", "notes", *(f"  - {n}" for n in results["notes"])]
    bad = [
        f"{x['scenario']}/{x['target']}@{x['clients']}: {x['requests']} requests, "
        f"non-2xx {x['non_2xx']}, errors {x['errors']}"
        for x in results["cells"]
        if x["requests"] < 1 or x["errors"] or x["non_2xx"]
    ]
    out += [
        "",
        "result: " + ("every cell completed requests with no error and no non-2xx" if not bad else ""),
    ]
    out += [f"  FAIL {b}" for b in bad]
    return "\n".join(out)


def format_markdown(results: dict) -> str:
    return "\n".join(
        [
            _md(MAIN_HEAD, _main_rows(results)),
            "",
            _md(RATIO_HEAD, _ratio_rows(results)),
            "",
            _md(CPU_HEAD, _cpu_rows(results)),
        ]
    )
