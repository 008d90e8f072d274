"""Outbox overhead: lifecycle throughput with the webhook outbox on vs off, and the NOTIFY designs.

The lifecycle clients of bench/lifecycle_clients.py (each transition its own transaction) run, interleaved in
slices at each client count, in these modes:

    off           webhook emission triggers disabled (the business transaction alone)
    on            one ACTIVE subscription to every event type; nobody armed: no NOTIFY at all
    on_armed      as on, plus a dispatcher connection that LISTENs and re-arms the wake-up as soon
                  as it is woken (the worst case of "notify only when a dispatcher waits")
    notify_every  as on, but the wake-up trigger sends NOTIFY on every commit with new work (the
                  naive design the issue measured at ~20 % of the commit rate at 32 clients)

Figures: transitions/s, backend CPU and WAL per transition, and their ratios to `off`. Afterwards
the outbox is drained through the dispatcher's own functions (claim_deliveries + record_attempt,
no HTTP: the claim-and-complete ceiling), then retention runs (webhooks.prune with the clock moved
31 days on); dead tuples and index sizes are reported after the bench, after the drain, after
retention and after a VACUUM.

    python -m bench.outbox                       # throw-away cluster, 1/8/32 clients, ~5 minutes
    WAYBILL_BENCH_DATABASE_URL=URL python -m bench.outbox    # an existing, migrated database

Before/after a schema change, in one interleaved run (`--before MIGRATION`): a second database of
the same throw-away cluster has MIGRATION (and every later one) rolled back; off and on run in both,
interleaved (before:off, before:on, after:off, after:on, the order of the two databases alternating
slice by slice), and each database's on/off ratio, extra CPU and extra WAL are reported side by side.

    python -m bench.outbox --before 0018.outbox_row_checks --seconds 12 --slices 4   # docs/performance/webhook-outbox.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.common import RESULTS_DIR, before_after_databases
from bench.lifecycle_checks import check_lifecycle
from bench.lifecycle_slices import run_slice, summarise
from bench.lifecycle_world import build_world

MODES = ("off", "on", "on_armed", "notify_every")
EMIT_TRIGGERS = [
    ("core.orders", "_200_emit_webhook"),
    ("core.payments", "_200_emit_webhook"),
    ("core.refunds", "_200_emit_webhook"),
    ("core.refunds", "_201_emit_webhook"),
    ("core.shipping_assignments", "_200_emit_webhook"),
]
NOTIFY_EVERY = """
create or replace function webhooks.tg_deliveries__wake() returns trigger language plpgsql
security definer set search_path = '' as $$
begin
    perform pg_notify('webhooks', '');
    return null;
end
$$"""


def _log(msg: str) -> None:
    print(f"[bench.outbox {dt.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Armer:
    """A dispatcher stand-in that LISTENs and re-arms the wake-up each time it is woken."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.wakeups = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("set role dispatcher")
            conn.execute("listen webhooks")
            while not self.stop.is_set():
                conn.execute("select webhooks.arm_wakeup('bench-armer')")
                for _ in conn.notifies(timeout=0.5, stop_after=1):
                    self.wakeups += 1

    def __enter__(self) -> Armer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class Listener(Armer):
    """Only LISTENs (for notify_every): notifications are consumed, as a dispatcher would."""

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("listen webhooks")
            while not self.stop.is_set():
                for _ in conn.notifies(timeout=0.5):
                    self.wakeups += 1


def set_mode(url: str, mode: str, wake_def: str) -> None:
    """Emission triggers on or off; the wake-up function as designed or notifying every commit."""
    verb = "disable" if mode == "off" else "enable"
    with psycopg.connect(url, autocommit=True) as conn:
        for table, trigger in EMIT_TRIGGERS:
            conn.execute(f"alter table {table} {verb} trigger {trigger}")
        conn.execute(NOTIFY_EVERY if mode == "notify_every" else wake_def)
        # The trigger is queued only while the flag is armed (its WHEN clause, 0018): notify_every
        # leaves it armed for good (its function never disarms), every other mode starts disarmed.
        conn.execute("update webhooks.wakeup set armed = %s", [mode == "notify_every"])


def outbox_stats(url: str) -> dict:
    """Rows, dead tuples and sizes of the outbox tables and indexes."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_stat_clear_snapshot()")
        tables = conn.execute(
            "select relname, n_live_tup, n_dead_tup, pg_relation_size(relid) from pg_stat_user_tables"
            " where schemaname = 'webhooks' and relname in ('events', 'deliveries', 'attempts') order by relname"
        ).fetchall()
        indexes = conn.execute(
            "select indexrelname, pg_relation_size(indexrelid) from pg_stat_user_indexes"
            " where schemaname = 'webhooks' and relname = 'deliveries' order by indexrelname"
        ).fetchall()
        by_status = dict(
            conn.execute("select status, count(*) from webhooks.deliveries group by status").fetchall()
        )
    return {
        "tables": {t: {"live": live, "dead": dead, "bytes": size} for t, live, dead, size in tables},
        "deliveries_indexes_bytes": dict(indexes),
        "deliveries_by_status": by_status,
    }


def drain(url: str, dispatchers: int = 2, max_seconds: float = 60.0) -> dict:
    """Claim and complete every due delivery through the dispatcher's functions (no HTTP)."""
    done = [0] * dispatchers
    deadline = time.monotonic() + max_seconds

    def work(i: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("set role dispatcher")
            while time.monotonic() < deadline:
                rows = conn.execute(
                    "select delivery_id, lease_token from webhooks.claim_deliveries(%s, 50, '20 seconds', 50)",
                    [f"bench-{i}"],
                ).fetchall()
                if not rows:
                    return
                with conn.cursor() as cur:
                    cur.executemany(
                        "select webhooks.record_attempt(%s, %s, %s, now(), 1, 200)",
                        [(d, f"bench-{i}", t) for d, t in rows],
                    )
                done[i] += len(rows)

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(dispatchers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    with psycopg.connect(url, autocommit=True) as conn:
        left = conn.execute(
            "select count(*) from webhooks.deliveries where status in ('PENDING', 'SENDING')"
        ).fetchone()[0]
        if left:  # the drain ran out of time: finish the rest in bulk so retention sees finished rows
            conn.execute(
                "update webhooks.deliveries set status = 'DELIVERED', attempts = attempts + 1, lease_owner = null,"
                " lease_token = null, lease_until = null, next_attempt_at = null, delivered_at = now(),"
                " finished_at = now() where status in ('PENDING', 'SENDING')"
            )
    return {
        "dispatchers": dispatchers,
        "delivered": sum(done),
        "seconds": round(elapsed, 2),
        "deliveries_per_s": round(sum(done) / elapsed, 1) if elapsed else None,
        "left_for_bulk_finish": left,
    }


def retention(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.monotonic()
        conn.execute("call webhooks.prune(now() + interval '31 days')")
        elapsed = time.monotonic() - t0
        left = conn.execute("select count(*) from webhooks.deliveries").fetchone()[0]
    return {"seconds": round(elapsed, 2), "deliveries_left": left}


def run(url: str, *, levels: Sequence[int] = (1, 8, 32), seconds: float = 12.0, slices: int = 4,
        seed: int = 7, drain_seconds: float = 60.0, world_size: dict | None = None, log: Any = _log) -> dict:  # fmt: skip
    """The outbox benchmark against a migrated database at `url`."""
    started = dt.datetime.now(dt.UTC)
    world = build_world(url, **(world_size or {}))
    with psycopg.connect(url, autocommit=True) as conn:
        wake_def = conn.execute(
            "select pg_get_functiondef('webhooks.tg_deliveries__wake'::regproc)"
        ).fetchone()[0]
        conn.execute(
            "insert into webhooks.subscriptions (url, event_types, created_by, updated_by)"
            " select 'https://bench.example.test/hook', array_agg(event_type), 'bench', 'bench' from webhooks.event_types"
        )
    results: dict[str, Any] = {
        "benchmark": "outbox",
        "started_at": started.isoformat(timespec="seconds"),
        "config": {
            "levels": list(levels),
            "seconds_per_mode": seconds,
            "slices": slices,
            "modes": list(MODES),
        },
        "levels": [],
    }
    ok = True
    piece = seconds / slices
    try:
        for n in levels:
            log(f"{n} client(s): {slices} x ({', '.join(MODES)}) of {piece:g} s each")
            parts: dict[str, list] = {m: [] for m in MODES}
            wakeups: dict[str, int] = dict.fromkeys(MODES, 0)
            for k in range(slices):
                for mode in MODES:
                    set_mode(url, mode, wake_def)
                    helper = (
                        Armer(url)
                        if mode == "on_armed"
                        else Listener(url)
                        if mode == "notify_every"
                        else None
                    )
                    with helper or contextlib.nullcontext():
                        parts[mode].append(
                            run_slice(url, "lifecycle", world, n, piece, seed + 100 * n + k, 1)
                        )
                    wakeups[mode] += helper.wakeups if helper else 0
            level: dict[str, Any] = {"clients": n, "modes": {}}
            for mode in MODES:
                summary, ids = summarise("lifecycle", n, parts[mode])
                checks = check_lifecycle(url, summary, ids)
                ok &= all(c["ok"] for c in checks.values())
                level["modes"][mode] = {
                    "transitions_per_s": summary["ops_per_s"],
                    "backend_cpu_us_per_transition": summary["backend_cpu_us_per_op"],
                    "wal_bytes_per_transition": summary["wal_bytes_per_op"],
                    "notifications_received": wakeups[mode],
                    "top_waits": dict(list(summary["waits"].items())[:6]),
                    "errors": summary["errors"],
                    "checks_ok": all(c["ok"] for c in checks.values()),
                }
            off = level["modes"]["off"]
            for mode in MODES[1:]:
                m = level["modes"][mode]
                m["ratio_to_off"] = round(m["transitions_per_s"] / off["transitions_per_s"], 3)
                if m["backend_cpu_us_per_transition"] and off["backend_cpu_us_per_transition"]:
                    m["extra_cpu_us_per_transition"] = (
                        m["backend_cpu_us_per_transition"] - off["backend_cpu_us_per_transition"]
                    )
                if m["wal_bytes_per_transition"] and off["wal_bytes_per_transition"]:
                    m["extra_wal_bytes_per_transition"] = (
                        m["wal_bytes_per_transition"] - off["wal_bytes_per_transition"]
                    )
            results["levels"].append(level)
    finally:
        set_mode(url, "on", wake_def)
    log("outbox after the bench; draining it through claim_deliveries + record_attempt")
    results["after_bench"] = outbox_stats(url)
    results["drain"] = drain(url, max_seconds=drain_seconds)
    results["after_drain"] = outbox_stats(url)
    log("retention: webhooks.prune with the clock 31 days on")
    results["retention"] = retention(url)
    results["after_retention"] = outbox_stats(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum webhooks.deliveries, webhooks.attempts, webhooks.events")
    results["after_vacuum"] = outbox_stats(url)
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["ok"] = bool(ok)
    return results


def _figures(mode_summary: dict) -> dict:
    return {
        "transitions_per_s": mode_summary["ops_per_s"],
        "backend_cpu_us_per_transition": mode_summary["backend_cpu_us_per_op"],
        "wal_bytes_per_transition": mode_summary["wal_bytes_per_op"],
        "top_waits": dict(list(mode_summary["waits"].items())[:6]),
        "errors": mode_summary["errors"],
    }


def _overhead(off: dict, on: dict) -> dict:
    """on against off of the same database: ratio of rates, extra CPU and WAL per transition."""
    out: dict[str, Any] = {"ratio": round(on["transitions_per_s"] / off["transitions_per_s"], 3)}
    for key, name in (
        ("backend_cpu_us_per_transition", "extra_cpu_us"),
        ("wal_bytes_per_transition", "extra_wal_bytes"),
    ):
        if on[key] and off[key]:
            out[name] = on[key] - off[key]
    return out


def run_before_after(urls: dict[str, str], *, levels: Sequence[int] = (1, 8, 32), seconds: float = 12.0,
                     slices: int = 4, seed: int = 7, world_size: dict | None = None, log: Any = _log) -> dict:  # fmt: skip
    """Outbox off vs on in two databases ("before", "after" a schema change), all slices interleaved."""
    started = dt.datetime.now(dt.UTC)
    versions = list(urls)
    worlds, wake_defs = {}, {}
    for v, url in urls.items():
        worlds[v] = build_world(url, **(world_size or {}))
        with psycopg.connect(url, autocommit=True) as conn:
            wake_defs[v] = conn.execute(
                "select pg_get_functiondef('webhooks.tg_deliveries__wake'::regproc)"
            ).fetchone()[0]
            conn.execute(
                "insert into webhooks.subscriptions (url, event_types, created_by, updated_by)"
                " select 'https://bench.example.test/hook', array_agg(event_type), 'bench', 'bench' from webhooks.event_types"
            )
    results: dict[str, Any] = {
        "benchmark": "outbox-before-after",
        "started_at": started.isoformat(timespec="seconds"),
        "load_average_start": os.getloadavg(),
        "config": {
            "levels": list(levels),
            "seconds_per_mode": seconds,
            "slices": slices,
            "versions": versions,
        },
        "levels": [],
    }
    ok = True
    piece = seconds / slices
    for n in levels:
        log(f"{n} client(s): {slices} x (off, on) in {' and '.join(versions)}, {piece:g} s each")
        parts: dict[tuple[str, str], list] = {(v, m): [] for v in versions for m in ("off", "on")}
        for k in range(slices):
            for v in versions if k % 2 == 0 else versions[::-1]:
                for mode in ("off", "on"):
                    set_mode(urls[v], mode, wake_defs[v])
                    parts[(v, mode)].append(
                        run_slice(urls[v], "lifecycle", worlds[v], n, piece, seed + 100 * n + k, 1)
                    )
        level: dict[str, Any] = {"clients": n, "load_average": os.getloadavg()}
        for v in versions:
            figs = {}
            for mode in ("off", "on"):
                summary, ids = summarise("lifecycle", n, parts[(v, mode)])
                checks = check_lifecycle(urls[v], summary, ids)
                ok &= all(c["ok"] for c in checks.values())
                figs[mode] = _figures(summary) | {"checks_ok": all(c["ok"] for c in checks.values())}
            level[v] = figs | _overhead(figs["off"], figs["on"])
        results["levels"].append(level)
        log(format_before_after({"levels": [level], "config": results["config"]}))
    for v in versions:
        set_mode(urls[v], "on", wake_defs[v])
    results["load_average_end"] = os.getloadavg()
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["ok"] = bool(ok)
    return results


def format_before_after(results: dict) -> str:
    versions = results["config"]["versions"]
    head = (
        "| clients | "
        + " | ".join(f"{v}: off t/s | {v}: on t/s (ratio) | {v}: +CPU µs/t | {v}: +WAL B/t" for v in versions)
        + " | load average |"
    )
    rows = [head, "|---:" * (1 + 4 * len(versions)) + "|---|"]
    for lvl in results["levels"]:
        cells = [str(lvl["clients"])]
        for v in versions:
            f = lvl[v]
            cells += [f"{f['off']['transitions_per_s']:.0f}", f"{f['on']['transitions_per_s']:.0f} ({f['ratio']:.2f})",
                      str(f.get("extra_cpu_us")), str(f.get("extra_wal_bytes"))]  # fmt: skip
        cells.append(" / ".join(f"{x:.1f}" for x in lvl["load_average"]))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_markdown(results: dict) -> str:
    head = "| clients | off t/s | on t/s (ratio) | on_armed t/s (ratio) | notify_every t/s (ratio) | +CPU µs/t (on) | +WAL B/t (on) | NOTIFYs (armed / every) |"
    rows = [head, "|" + "---|" * 8]
    for lvl in results["levels"]:
        m = lvl["modes"]
        rows.append(
            f"| {lvl['clients']} | {m['off']['transitions_per_s']:.0f} "
            + "".join(f"| {m[k]['transitions_per_s']:.0f} ({m[k]['ratio_to_off']:.2f}) " for k in MODES[1:])
            + f"| {m['on'].get('extra_cpu_us_per_transition')} | {m['on'].get('extra_wal_bytes_per_transition')} "
            f"| {m['on_armed']['notifications_received']} / {m['notify_every']['notifications_received']} |"
        )
    out = [
        "\n".join(rows),
        "",
        "| outbox | deliveries live / dead | deliveries_due_idx bytes | all deliveries indexes bytes |",
        "|---|---|---|---|",
    ]
    for key in ("after_bench", "after_drain", "after_retention", "after_vacuum"):
        st = results[key]
        d = st["tables"].get("deliveries", {})
        idx = st["deliveries_indexes_bytes"]
        out.append(
            f"| {key} | {d.get('live')} / {d.get('dead')} | {idx.get('deliveries_due_idx')} | {sum(idx.values())} |"
        )
    dr = results["drain"]
    out += ["", f"drain (claim + record, {dr['dispatchers']} dispatchers, no HTTP): {dr['delivered']} deliveries in "
            f"{dr['seconds']} s = {dr['deliveries_per_s']}/s; retention: {results['retention']['seconds']} s"]  # fmt: skip
    return "\n".join(out)


@contextlib.contextmanager
def _database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from waybill import testing

    with testing.test_cluster() as cluster:
        _log(f"throw-away cluster in {cluster.data_dir}; migrating the template")
        testing.build_template(cluster)
        cluster.drop_database("bench_outbox")
        cluster.create_database("bench_outbox", template=testing.TEMPLATE_DB)
        yield cluster.url("bench_outbox")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="1,8,32", help="client counts, comma-separated (default 1,8,32)")
    p.add_argument(
        "--seconds", type=float, default=12.0, help="seconds per mode per client count (default 12)"
    )
    p.add_argument(
        "--slices", type=int, default=4, help="interleave the modes in this many slices (default 4)"
    )
    p.add_argument(
        "--drain-seconds", type=float, default=60.0, help="longest claim-and-complete drain (default 60)"
    )
    p.add_argument("--output", type=Path, help="results JSON (default bench/results/outbox-<time>.json)")
    p.add_argument(
        "--before", metavar="MIGRATION",
        help="compare off/on with MIGRATION (and later ones) rolled back vs applied, interleaved (no drain)",
    )  # fmt: skip
    args = p.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if args.before:
        with before_after_databases(args.before) as urls:
            results = run_before_after(urls, levels=levels, seconds=args.seconds, slices=args.slices)
        results["config"]["before"] = args.before
        path = args.output or RESULTS_DIR / (
            f"outbox-before-after-{results['started_at'].replace('+00:00', 'Z').replace(':', '').replace('-', '')}.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(format_before_after(results))
        print(f"\nresults: {path}")
        return 0 if results["ok"] else 1
    # an existing, migrated database by environment, never argv (a password in it would be public)
    with _database(os.environ.get("WAYBILL_BENCH_DATABASE_URL")) as url:
        results = run(
            url, levels=levels, seconds=args.seconds, slices=args.slices, drain_seconds=args.drain_seconds
        )
    path = args.output
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = (
            RESULTS_DIR
            / f"outbox-{results['started_at'].replace('+00:00', 'Z').replace(':', '').replace('-', '')}.json"
        )
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(format_markdown(results))
    print(f"\nresults: {path}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
