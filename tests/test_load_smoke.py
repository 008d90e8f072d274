"""`make load`'s smoke: a few seconds of every kind of traffic (lifecycles with cancellations, failed
deliveries and refunds, the accept race, the status race, admins reading, webhook events) through the
HTTP API of a stack the runner starts itself. It asserts correctness only — no order lost or in the
wrong status, no failed request (so no 5xx), both races legal, every webhook delivery arrived, verified,
at the receiver — never a timing."""

from __future__ import annotations

import subprocess
import sys

from waybill.settings import PROJECT_ROOT


def test_load_smoke_loses_nothing() -> None:
    r = subprocess.run([sys.executable, "-m", "bench.load", "--smoke"], cwd=PROJECT_ROOT, capture_output=True,
                       text=True, timeout=240)  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("smoke: orders"))
    assert "'orders_lost': 0" in line and "'lost': 0" in line and "'not_delivered_status': 0" in line, line
    assert "smoke FAILED" not in out
