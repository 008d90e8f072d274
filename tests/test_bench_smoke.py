"""The lifecycle benchmark runs end to end and checks itself. No timing threshold: performance never
gates CI; this only proves the bench measures successes (lifecycles completed, no errors, ledger
balanced) and still prints its tables."""

from __future__ import annotations

from bench import lifecycle, lifecycle_report


def test_lifecycle_bench_completes_and_checks_itself(db_url: str) -> None:
    results = lifecycle.run(
        db_url,
        levels=(1, 2),
        seconds=1.0,
        slices=1,
        warmup=0,
        world_size={"zips": 5, "agents": 10, "customers": 50, "sellers": 3},
        log=lambda _msg: None,
    )

    assert results["ok"], lifecycle_report.format_text(results)
    assert [lvl["clients"] for lvl in results["levels"]] == [1, 2]
    for lvl in results["levels"]:
        life, base, checks = lvl["lifecycle"], lvl["baseline"], lvl["checks"]
        assert life["lifecycles"] >= 1
        assert life["ops"] >= 8 * life["lifecycles"]
        assert life["errors"] == {} and life["fatal"] == []
        assert base["ops"] >= 1 and base["errors"] == {}
        assert checks["ledger_balanced"]["ok"], checks
        assert checks["delivered"]["ok"], checks
        assert all(c["ok"] for c in checks.values()), checks
        assert lvl["ratio_transitions_to_inserts"] is not None

    text = lifecycle_report.format_text(results)
    assert "transitions/s" in text and "all checks passed" in text
    assert lifecycle_report.format_markdown(results).startswith("| clients |")
