"""Before/after for gateway/ itself: two gateways (an earlier revision's and this checkout's) on the
same database, loaded in turn by wrk, rounds interleaved (A, B, B, A, ...).

    python -m bench.gateway_ab --before 5bada1e            # --workers 1 each, 16 clients, 3 rounds
    python -m bench.gateway_ab --before 5bada1e --workers 2 --rounds 4 --seconds 4

Per scenario and gateway: requests/s and the gateway's CPU per request (every process of it, from
/proc), with wrk's own CPU and the load average. The earlier revision's gateway/ is taken with
`git archive` into a temporary folder and started from there (the rest of the code is this
checkout's). A throw-away cluster with 2,000 seeded orders; results in bench/results/gateway-ab-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import wrk
from bench.common import gateway, save, tree_cpu_s
from waybill import testing
from waybill.auth import mint
from waybill.seed import seed

ROOT = Path(__file__).resolve().parent.parent
PATHS = {
    "health": ("/rpc/health_db", None),
    "orders": ("/orders?select=id,status,amount&order=id.desc&limit=50", "admin"),
    "assignments": (
        "/shipping_assignments?agent_id=eq.7&status=eq.DELIVERED&order=created_at.desc&limit=20",
        "admin",
    ),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway_ab", description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="the git revision whose gateway/ is 'before'")
    p.add_argument("--workers", type=int, default=1, help="--workers of each gateway (default 1)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    wrk_bin = wrk.ensure_wrk()
    if wrk_bin is None:
        raise SystemExit("bench: needs wrk (Debian package wrk)")
    before = Path(tempfile.mkdtemp(prefix="gateway-before-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", args.before, "gateway"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
    trees = {"before": before, "after": ROOT}
    results: dict = {
        "benchmark": "gateway-ab",
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    results["config"] = vars(args)
    with testing.test_cluster() as cluster:
        testing.build_template(cluster)
        cluster.drop_database("bench_ab")
        cluster.create_database("bench_ab", template=testing.TEMPLATE_DB)
        seed(cluster.url("bench_ab"), orders=2000, agents=50)
        secret = secrets.token_urlsafe(40)
        auth_url = cluster.url("bench_ab", user="authenticator")
        procs, ports = {}, {}
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, before, ignore_errors=True)
            for name, tree in trees.items():
                options = [
                    "--log-level",
                    "info",
                    *(["--workers", str(args.workers)] if name == "after" else []),
                ]
                procs[name], ports[name] = stack.enter_context(
                    gateway(auth_url, secret, before / f"{name}.log", options, cwd=tree)
                )
            token = mint(secret, "admin", None, 3600)
            cells: dict[str, dict[str, list]] = {}
            for r in range(args.rounds):
                order = list(trees) if r % 2 == 0 else list(trees)[::-1]
                for scenario, (path, role) in PATHS.items():
                    headers = {"Accept": "application/json"}
                    if role:
                        headers["Authorization"] = f"Bearer {token}"
                    lua = wrk.script(before / f"{scenario}.lua", headers, [path])
                    for name in order:
                        pid = procs[name].pid
                        c0 = tree_cpu_s(pid)
                        figures, _, _, _ = wrk.run(
                            wrk_bin, f"http://127.0.0.1:{ports[name]}", lua, args.clients, args.seconds, dict
                        )
                        c1 = tree_cpu_s(pid)
                        n = figures["requests"]
                        secs = figures["duration_us"] / 1e6
                        cell = cells.setdefault(
                            f"{scenario}/{name}", {"rps": [], "gw_us": [], "wrk_us": [], "bad": 0}
                        )
                        cell["rps"].append(round(n / secs, 1))
                        cell["gw_us"].append(round(1e6 * (c1 - c0) / max(n, 1)))
                        cell["wrk_us"].append(round(1e6 * figures["cpu_s"] / max(n, 1)))
                        cell["bad"] += figures["status"] + sum(
                            figures[k] for k in ("connect", "read", "timeout")
                        )
    results["cells"] = cells
    results["load_average"] = list(os.getloadavg())
    for key, c in cells.items():
        print(
            f"{key:22} req/s {c['rps']}  gateway us/req {c['gw_us']}  wrk us/req {c['wrk_us']}  bad {c['bad']}"
        )
    print(f"load average {results['load_average']}")
    print(f"results: {save(results, 'gateway-ab')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
