"""Where a transition's time goes: switch one piece off (or swap it) at a time, interleaved A/B.

Diagnostic only (issue 12 §1): it disables triggers and replaces functions of the database it is
given, and puts them back at the end: run it on a scratch database, never a real one. For each
piece: A (as committed) and B (piece off / swapped) alternate `--reps` times, each one short
`bench.lifecycle` run (`--seconds` of lifecycles, then as many of bare INSERTs) at `--clients`
clients; it prints mean transitions/s and backend CPU per transition for A and B.

    WAYBILL_BENCH_DATABASE_URL=URL python -m bench.toggles --clients 8 --reps 2
    WAYBILL_BENCH_DATABASE_URL=URL python -m bench.toggles --pieces outbox_off,history_off
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
EMIT = ["core.orders", "core.payments", "core.refunds", "core.shipping_assignments"]
TRANSITION_ALLOWED = """create or replace function core.transition_allowed(p_machine text, p_from text, p_to text)
returns boolean language {lang} stable set search_path = '' as $$ {body} $$"""
TA_SQL = "select exists (select 1 from core.state_transitions t where t.machine = p_machine and t.from_status = p_from and t.to_status = p_to)"
REQUEST_ID = """create or replace function ops.request_id() returns text language {lang} stable
set search_path = '' as $$ {body} $$"""
RI_SQL = "select nullif(current_setting('request.headers', true), '')::json ->> 'x-request-id'"


def _triggers(pairs: list[tuple[str, str]], on: bool) -> list[str]:
    verb = "enable" if on else "disable"
    return [f"alter table {table} {verb} trigger {name}" for table, name in pairs]


def _log_event(noop: bool) -> list[str]:
    src = (ROOT / "sql" / "060_ops_log.sql").read_text()
    fn = src[src.index("create function ops.log_event(") : src.index("comment on function ops.log_event")]
    fn = fn.replace("create function", "create or replace function").strip().rstrip(";")
    if noop:
        fn = fn[: fn.index("begin\n")] + "begin\n    return;\nend\n$$"
    return [fn]


# piece -> (statements for B, statements that restore A)
PIECES: dict[str, tuple[list[str], list[str]]] = {
    "outbox_off": (
        _triggers([(t, "_200_emit_webhook") for t in EMIT] + [("core.refunds", "_201_emit_webhook")], False),
        _triggers([(t, "_200_emit_webhook") for t in EMIT] + [("core.refunds", "_201_emit_webhook")], True),
    ),
    "rollups_off": (
        _triggers(
            [
                ("core.shipping_assignments", "_500_metrics_rollup_offer"),
                ("core.shipping_assignments", "_500_metrics_rollup_transition"),
            ],
            False,
        ),
        _triggers(
            [
                ("core.shipping_assignments", "_500_metrics_rollup_offer"),
                ("core.shipping_assignments", "_500_metrics_rollup_transition"),
            ],
            True,
        ),
    ),  # fmt: skip
    "history_off": (
        _triggers([("core.orders", "_100_history"), ("core.shipping_assignments", "_100_history")], False),
        _triggers([("core.orders", "_100_history"), ("core.shipping_assignments", "_100_history")], True),
    ),
    "balance_slots_off": (
        _triggers([("core.ledger_entries", "_200_balance_slots")], False),
        _triggers([("core.ledger_entries", "_200_balance_slots")], True),
    ),
    "balance_check_off": (
        _triggers([("core.ledger_entries", "_100_check_balance")], False),
        _triggers([("core.ledger_entries", "_100_check_balance")], True),
    ),
    "log_event_off": (_log_event(True), _log_event(False)),
    "transition_allowed_plpgsql": (
        [TRANSITION_ALLOWED.format(lang="plpgsql", body=f"begin return ({TA_SQL}); end")],
        [TRANSITION_ALLOWED.format(lang="sql", body=TA_SQL)],
    ),
    "request_id_plpgsql": (
        [REQUEST_ID.format(lang="plpgsql", body=f"begin return ({RI_SQL}); end")],
        [REQUEST_ID.format(lang="sql", body=RI_SQL)],
    ),
}


def _apply(url: str, statements: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in statements:
            conn.execute(stmt)


def _run(url: str, clients: int, seconds: float, out: Path) -> tuple[float, float, float, float]:
    subprocess.run(
        [sys.executable, "-m", "bench.lifecycle", "--levels", str(clients), "--seconds", str(seconds),
         "--slices", "1", "--no-pgbench", "--warmup", "1", "--output", str(out)],
        cwd=ROOT, env=dict(os.environ, WAYBILL_BENCH_DATABASE_URL=url), check=True, capture_output=True,
    )  # fmt: skip
    level = json.loads(out.read_text())["levels"][0]
    life, base = level["lifecycle"], level["baseline"]
    return (
        life["ops_per_s"],
        life["backend_cpu_us_per_op"],
        base["backend_cpu_us_per_op"],
        life["load_average_at_start"],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", default=",".join(PIECES), help=f"comma-separated, of: {', '.join(PIECES)}")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    url = os.environ["WAYBILL_BENCH_DATABASE_URL"]
    with tempfile.TemporaryDirectory(prefix="waybill-toggles-") as tmp:
        for piece in args.pieces.split(","):
            b_sql, a_sql = PIECES[piece]
            runs: dict[str, list[tuple[float, float, float, float]]] = {"A": [], "B": []}
            try:
                for rep in range(args.reps):
                    for mode, sql in (("A", a_sql), ("B", b_sql)):
                        _apply(url, sql)
                        runs[mode].append(
                            _run(url, args.clients, args.seconds, Path(tmp) / f"{piece}-{mode}{rep}.json")
                        )
            finally:
                _apply(url, a_sql)
            for mode, rs in runs.items():
                tps = sum(r[0] for r in rs) / len(rs)
                cpu = sum(r[1] for r in rs) / len(rs)
                base = sum(r[2] for r in rs) / len(rs)
                print(
                    f"{piece:28s} {mode} transitions/s {tps:7.1f}  backend µs/transition {cpu:6.0f}"
                    f"  µs/bare INSERT {base:5.0f}  load {[r[3] for r in rs]}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
