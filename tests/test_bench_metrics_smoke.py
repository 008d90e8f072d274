"""The metrics benchmark runs end to end on a small data set: every endpoint answers 200 through the
gateway at 1 and 2 clients, the refreshes and both trigger-CPU comparisons complete, the table prints.
No timing threshold: performance never gates CI."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

import psycopg
import pytest

from bench import metrics_data, metrics_http, metrics_report, metrics_triggers
from waybill import testing
from waybill.cluster import Cluster
from waybill.seed import seed


@pytest.fixture
def bench_db(cluster: Cluster) -> Iterator[str]:
    name = f"bench_metrics_{os.getpid()}"
    cluster.drop_database(name)
    cluster.create_database(name, template=testing.TEMPLATE_DB)
    seed(cluster.url(name), orders=300, agents=20, zips=10)
    try:
        yield name
    finally:
        cluster.drop_database(name)


def test_metrics_bench_completes(cluster: Cluster, bench_db: str) -> None:
    url = cluster.url(bench_db)
    args = argparse.Namespace(requests=10, clients=2, seconds=0.3, rounds=1)
    res = {"args": {"clients": 2}, "sizes": metrics_data.sizes(url)}
    res["refresh"] = metrics_data.refresh_times(url, 1)
    res["http"] = metrics_http.http_bench(cluster, bench_db, args)
    res["triggers"] = metrics_triggers.trigger_cpu(url, 16, 1)
    res["triggers_lifecycle"] = metrics_triggers.trigger_lifecycle(url, [1, 2], 2, 0.3)
    assert set(res["http"]) >= {"health_db", "agent_metrics", "agent_leaderboard", "geographic_coverage",
                                "sla_summary", "agent_activity"}  # fmt: skip
    assert all(r["rps"] > 0 and r["p50_ms"] > 0 for r in res["http"].values())
    assert res["triggers"]["with"] and res["triggers"]["without"]
    for lvl in res["triggers_lifecycle"]["levels"]:
        assert lvl["with"]["per_s"] > 0 and lvl["without"]["per_s"] > 0, lvl
    with psycopg.connect(url) as conn:
        triggers = conn.execute(
            "select tgenabled from pg_trigger where tgname in (%s, %s)", list(metrics_triggers.TRIGGERS)
        ).fetchall()
    triggers = [t for (t,) in triggers]
    assert triggers == ["O", "O"], "the lifecycle part leaves the rollup triggers enabled"
    text = metrics_report.markdown(res)
    assert (
        "| refresh | median ms |" in text and "Rollup triggers" in text and "lifecycle bench, clients" in text
    )
