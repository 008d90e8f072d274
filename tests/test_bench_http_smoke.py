"""The HTTP benchmark runs end to end: every cell (gateway, direct SQL, no-op app, at 1 and 2 clients)
completes requests with no error and no non-2xx answer, and the tables print. No timing threshold:
performance never gates CI."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench import http, http_plans, http_report
from waybill import testing
from waybill.cluster import Cluster
from waybill.seed import seed


@pytest.fixture
def bench_db(cluster: Cluster) -> Iterator[tuple[str, str]]:
    name = f"bench_http_{os.getpid()}"
    cluster.drop_database(name)
    cluster.create_database(name, template=testing.TEMPLATE_DB)
    seed(cluster.url(name), orders=300, agents=20)
    try:
        yield cluster.url(name), cluster.url(name, user="authenticator")
    finally:
        cluster.drop_database(name)


def test_http_bench_completes_every_cell_without_errors(bench_db: tuple[str, str]) -> None:
    owner_url, auth_url = bench_db
    results = http.run(
        owner_url,
        auth_url,
        clients=(1, 2),
        seconds=0.8,
        slices=1,
        warmup=0,
        statements_check=3,
        log=lambda _msg: None,
    )

    text = http_report.format_text(results)
    cells = {(c["scenario"], c["target"], c["clients"]): c for c in results["cells"]}
    expected = {(s, t, n) for s in http_plans.SCENARIOS for t in ("gateway", "direct") for n in (1, 2)}
    expected |= {("noop", "noop", n) for n in (1, 2)}
    assert set(cells) == expected
    for key, cell in cells.items():
        assert cell["requests"] >= 1, (key, text)
        assert cell["errors"] == {}, (key, cell["errors"])
        assert cell["non_2xx"] == {}, (key, cell["non_2xx"])
    assert results["ok"], text
    assert all(r["rps_gateway_to_direct"] and r["rps_gateway_to_noop"] for r in results["ratios"])
    # The direct calls are the gateway's own statement, and pg_stat_statements saw it per request.
    assert "pgrst_source" in results["direct"]["assignments"]["statement"]
    assert results["statements_per_request"]["health"]["top_level_per_request"] >= 4
    assert "gateway overhead" in text and "no error and no non-2xx" in text
    assert http_report.format_markdown(results).startswith("| scenario |")
