"""The metrics bench's results as markdown tables (`markdown`): data sizes, the HTTP endpoints,
refreshes, the before/after of --ab, and the rollup triggers' CPU.
"""

from __future__ import annotations

import statistics


# -- output ---------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    lines = [
        f"Data: {res['sizes']['assignments']:,} assignments, {res['sizes']['agents']:,} agents, "
        f"{res['sizes']['zip_codes']:,} zip codes; rollups {res['sizes']['agent_daily_rows']:,} agent-days, "
        f"{res['sizes']['zip_daily_rows']:,} zip-days.",
    ]
    if "http" in res:
        lines += [
            "",
            f"| endpoint (GET, admin) | P50 ms | P95 ms | P99 ms | health_db P50 / P95 ms (interleaved) "
            f"| req/s at {res['args']['clients']} clients | ÷ health_db |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for name, r in res["http"].items():
            how = (
                " computed (cache empty)"
                if name.endswith("_live")
                else " cached"
                if f"{name}_live" in res["http"]
                else ""
            )
            lines.append(f"| `{r['target']}`{how} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['health_db_p50_ms']:.2f} / {r['health_db_p95_ms']:.2f} | "
                         f"{r['rps']:,.0f} | {r['ratio_to_health_db']:.2f} |")  # fmt: skip
    if "refresh" in res:
        lines += ["", "| refresh | median ms |", "|---|--:|"]
        for view in res["refresh"]:
            if view == "rebuild_rollups":
                continue
            lines.append(f"| `metrics.{view}` | {res['refresh'][view]['median_ms']:,.0f} |")
        lines.append(f"| `metrics.rebuild_rollups()` | {res['refresh']['rebuild_rollups']['ms']:,.0f} |")
    if "ab" in res:
        lines += [
            "",
            f"Before / after `{res['args']['ab']}`, {len(res['ab']['after'])} interleaved rounds (medians):",
            "",
            "| endpoint (GET, admin) | backend CPU ms per call (in the database) before / after "
            "| HTTP P50 ms before / after | P95 ms before / after | ÷ health_db before / after |",
            "|---|--:|--:|--:|--:|",
        ]
        for name, r in res["ab"]["after"][0].items():
            b = [run[name] for run in res["ab"]["before"]]
            a = [run[name] for run in res["ab"]["after"]]

            def med(runs: list[dict], key: str) -> float:
                return statistics.median(x[key] for x in runs)

            bs = [run[name] for run in res["ab"]["before_server"]]
            as_ = [run[name] for run in res["ab"]["after_server"]]
            lines.append(f"| `{r['target']}` | {med(bs, 'cpu_ms_per_call'):.2f} / {med(as_, 'cpu_ms_per_call'):.2f} | "
                         f"{med(b, 'p50_ms'):.2f} / {med(a, 'p50_ms'):.2f} | "
                         f"{med(b, 'p95_ms'):.2f} / {med(a, 'p95_ms'):.2f} | "
                         f"{med(b, 'ratio_to_health_db'):.2f} / {med(a, 'ratio_to_health_db'):.2f} |")  # fmt: skip
    if "triggers_ab" in res:
        ab = res["triggers_ab"]
        lines += ["", f"| run | before {ab['migration']} with / without µs | extra | after | extra | load |",
                  "|---|--:|--:|--:|--:|---|"]  # fmt: skip
        for i, r in enumerate(ab["runs"], 1):
            b, a = r["before"], r["after"]
            lines.append(f"| {i} | {b['cpu_us_with']:.0f} / {b['cpu_us_without']:.0f} | {b['extra_pct']:+.1f} % | "
                         f"{a['cpu_us_with']:.0f} / {a['cpu_us_without']:.0f} | {a['extra_pct']:+.1f} % | "
                         f"{b['load_before']:.1f}–{a['load_after']:.1f} |")  # fmt: skip
    if "triggers" in res:
        s = res["triggers"]["summary"]
        extra = "n/a" if s["extra_pct"] is None else f"{s['extra_pct']:+.1f} %"
        lines += ["", f"Rollup triggers: backend CPU per transition {s['cpu_us_with']:.0f} µs with, "
                  f"{s['cpu_us_without']:.0f} µs without: {extra}."]  # fmt: skip
    if "triggers_lifecycle" in res:
        lines += ["", "| lifecycle bench, clients | backend CPU µs per transition with / without the rollup triggers "
                  "| extra | transitions/s with / without |", "|--:|--:|--:|--:|"]  # fmt: skip
        for lvl in res["triggers_lifecycle"]["levels"]:
            w, wo = lvl["with"], lvl["without"]
            extra = "n/a" if lvl["extra_pct"] is None else f"{lvl['extra_pct']:+.1f} %"
            lines.append(f"| {lvl['clients']} | {w['cpu_us']} / {wo['cpu_us']} | {extra} | "
                         f"{w['per_s']:.0f} / {wo['per_s']:.0f} |")  # fmt: skip
    return "\n".join(lines)
