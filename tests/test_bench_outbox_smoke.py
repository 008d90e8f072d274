"""The outbox benchmark runs end to end and checks itself (no timing threshold: performance never
gates CI): every mode completes lifecycles without errors, the outbox drains and retention empties it."""

from __future__ import annotations

from bench import outbox


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
