"""`make load` (python -m bench.load): the stack, the scenarios, the knee, the faults, the report.

    python -m bench.load                 # everything (~20 min on 2 shared cores), report under bench/results/<date>/
    python -m bench.load --smoke         # a few seconds of each kind of traffic; exit 1 on a correctness failure
    python -m bench.load --only suite    # suite | knee | faults (repeatable)

The smoke (tests/test_load_smoke.py) asserts correctness only: no lost order, no 5xx, every delivery
arrived exactly where it should. Targets (P95, pool, locks, backlog) are printed, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, log
from bench.load import measure, scenarios
from bench.load.stack import LoadStack

FAULT_COMPRESS = 20  # the 10-minute faults last 30 s; the dispatcher's retry schedule is divided as much


def smoke(stack: LoadStack, out: Path) -> int:
    users = {"LifecycleUser": 2, "AcceptRaceUser": 1, "StatusRaceUser": 1, "AdminUser": 1}
    r = scenarios.run(stack, "smoke", out, users=users, seconds=6, emit_per_min=600, drain_timeout=30)
    r["locust"]["endpoints"].pop("Aggregated", None)
    orders = measure.orders_check(stack)
    fails = r["locust"]["failures"]
    problems = []
    if not r["locust"]["endpoints"]:
        problems.append("no request made")
    if r["locust"]["locust_exit"] not in (0, 1):
        problems.append(f"locust exited {r['locust']['locust_exit']}: {r['locust']['locust_tail']}")
    if fails:
        problems.append(f"failures: {fails}")
    if orders["orders_created"] == 0 or orders["orders_lost"] or orders["orders_wrong_status"]:
        problems.append(f"orders: {orders}")
    wh = r["webhooks"]
    if wh["deliveries"] == 0 or wh["lost"] or wh["not_delivered_status"]:
        problems.append(f"webhooks: {wh}")
    print(f"smoke: orders {orders} webhooks {wh} requests "
          f"{sum(e['requests'] for e in r['locust']['endpoints'].values())}", flush=True)  # fmt: skip
    for p in problems:
        print(f"smoke FAILED: {p}", flush=True)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--only", action="append", choices=["suite", "knee", "faults"])
    p.add_argument("--scale", type=float, default=1.0, help="shorten every scenario by this factor")
    p.add_argument(
        "--knee-start", type=int, default=0, help="skip the order-rate steps below this multiple of 200/h"
    )
    p.add_argument(
        "--knee-webhooks-start", type=int, default=0, help="skip the webhook steps below this many/min"
    )
    p.add_argument("--out", type=Path, help="results folder (default bench/results/<UTC date>/)")
    args = p.parse_args(argv)
    parts = args.only or ["suite", "knee", "faults"]
    stack = LoadStack(retry_factor=FAULT_COMPRESS)
    # the smoke's locust files live and die with the stack's temporary data directory
    out = (
        stack.data_dir / "smoke"
        if args.smoke
        else args.out or RESULTS_DIR / dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    )
    out.mkdir(parents=True, exist_ok=True)
    try:
        stack.start()
        measure.write_world(stack)
        if args.smoke:
            return smoke(stack, out)
        results: dict[str, Any] = {
            "started": dt.datetime.now(dt.UTC).isoformat(), "compress": scenarios.COMPRESS,
            "fault_compress": FAULT_COMPRESS, "uptime_before": _uptime(),
        }  # fmt: skip
        if "suite" in parts:
            results["suite"] = scenarios.suite(stack, out, args.scale)
            scenarios.save(results, out / "results.json")
        if "knee" in parts:
            results["knee"] = scenarios.knee(stack, out, step_s=30 * args.scale, start=args.knee_start,
                                             webhooks_start=args.knee_webhooks_start)  # fmt: skip
            scenarios.save(results, out / "results.json")
        if "faults" in parts:
            from bench.load import faults

            results["faults"] = faults.all_faults(stack, out, FAULT_COMPRESS, args.scale)
        results["orders"] = measure.orders_check(stack)
        results["uptime_after"] = _uptime()
        results["finished"] = dt.datetime.now(dt.UTC).isoformat()
        scenarios.save(results, out / "results.json")
        from bench.load import report

        path = report.write(results, out)
        log(f"[load] report: {path}")
        return 0
    finally:
        stack.close()


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
