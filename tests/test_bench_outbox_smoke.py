"""The outbox benchmark runs end to end and checks itself (no timing threshold: performance never
gates CI): every mode completes lifecycles without errors, the outbox drains and retention empties it."""

from __future__ import annotations

import os

import psycopg

from bench import outbox
from waybill import migrate, testing
from waybill.cluster import Cluster


def test_outbox_bench_completes_and_checks_itself(db_url: str) -> None:
    results = outbox.run(
        db_url,
        levels=(2,),
        seconds=2.0,
        slices=1,
        drain_seconds=30,
        world_size={"zips": 5, "agents": 10, "customers": 50, "sellers": 3},
        log=lambda _msg: None,
    )
    assert results["ok"], results
    (level,) = results["levels"]
    assert set(level["modes"]) == set(outbox.MODES)
    for mode in level["modes"].values():
        assert mode["transitions_per_s"] > 0 and mode["errors"] == {} and mode["checks_ok"]
    assert level["modes"]["off"]["notifications_received"] == 0
    assert level["modes"]["on"]["notifications_received"] == 0
    assert level["modes"]["notify_every"]["notifications_received"] > 0
    assert results["after_bench"]["deliveries_by_status"].get("PENDING", 0) > 0
    assert results["drain"]["delivered"] > 0
    assert set(results["after_drain"]["deliveries_by_status"]) == {"DELIVERED"}
    assert results["retention"]["deliveries_left"] == 0
    assert "| clients |" in outbox.format_markdown(results)


def test_before_after_mode_interleaves_both_databases_and_checks_itself(
    db_url: str, cluster: Cluster
) -> None:
    """--before: off and on in two databases, one of them with the newest migration rolled back (the
    rollback itself is tests/test_migrations.py's business): every slice completes and checks."""
    name = f"bench_before_{os.getpid()}"
    cluster.create_database(name, template=testing.TEMPLATE_DB)
    before = cluster.url(name)
    migrate.apply_step(before, migrate.ordered_ids()[-1], rollback=True)
    results = outbox.run_before_after(
        {"before": before, "after": db_url},
        levels=(2,),
        seconds=2.0,
        slices=2,
        world_size={"zips": 5, "agents": 10, "customers": 50, "sellers": 3},
        log=lambda _msg: None,
    )
    assert results["ok"], results
    (level,) = results["levels"]
    for v in ("before", "after"):
        for mode in ("off", "on"):
            f = level[v][mode]
            assert f["transitions_per_s"] > 0 and f["errors"] == {} and f["checks_ok"], (v, mode)
        assert level[v]["ratio"] > 0
    for url in (before, db_url):  # both databases emitted in "on" and left it on
        with psycopg.connect(url) as conn:
            assert conn.execute("select count(*) from webhooks.events").fetchone()[0] > 0
    assert "| clients | before: off t/s" in outbox.format_before_after(results)
    cluster.drop_database(name)
