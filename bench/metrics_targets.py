"""What the metrics bench requests: each endpoint's target with realistic arguments from the data
(`targets`; the answer cache's shapes, `answer_cache_shapes`), the SQL call an HTTP target makes
(`sql_call`), and the answer cache put in the state each shape is measured in (`AnswerCache`).
"""

from __future__ import annotations

import datetime as dt

import psycopg


def targets(url: str) -> dict[str, tuple[str, str]]:
    """endpoint name -> (path?query, role) with realistic arguments from the data."""
    with psycopg.connect(url) as conn:
        # Not the trigger part's agent and zip code (trigger_cpu: the lowest-id active agent): on a
        # kept data directory its synthetic deliveries pile up run after run (32,000 assignments,
        # 129,000 history rows after a few runs), an outlier no seeded agent resembles.
        synthetic = conn.execute(
            "select d.id, d.serviceable_zip_codes[1] from core.delivery_agents d"
            " where d.status = 'ACTIVE' order by d.id limit 1"
        ).fetchone()
        busy = conn.execute(
            "select agent_id from metrics.leaderboard where window_days = 30 and agent_id <> %s"
            " order by delivered desc limit 1",
            [synthetic[0]],
        ).fetchone()[0]
        zip_code = conn.execute(
            "select zip_code from metrics.geographic_coverage where zip_code <> %s order by demand desc limit 1",
            [synthetic[1]],
        ).fetchone()[0]
        # a cursor deep in the busiest agent's history: page ~10 by keyset
        cursor = conn.execute(
            "select (extract(epoch from created_at) * 1000000)::bigint || ':' || id"
            " from core.assignment_status_history where agent_id = %s"
            " order by created_at desc, id desc offset 200 limit 1",
            [busy],
        ).fetchone()
        today = conn.execute("select metrics.utc_day(now())").fetchone()[0]
    frm, to = today - dt.timedelta(days=13), today - dt.timedelta(days=6)  # a non-standard week
    cached = answer_cache_shapes(frm, to, zip_code)
    return {
        "health_db": ("/rpc/health_db", None),
        "agent_metrics": (f"/rpc/agent_metrics?agent_id={busy}", "admin"),
        **cached,  # read from the answer cache (sql/325), as the worker keeps it
        # the same answered as on a miss: the cache empty, every request computed
        **{f"{name}_live": plan for name, plan in cached.items()},
        "geographic_coverage": ("/rpc/geographic_coverage?page=2", "admin"),
        "agent_activity": (
            f"/rpc/agent_activity?agent_id={busy}" + (f"&before={cursor[0]}" if cursor else ""),
            "admin",
        ),
    }


def answer_cache_shapes(frm: dt.date, to: dt.date, zip_code: str) -> dict[str, tuple[str, str]]:
    """The requests the answer cache serves (0026): every leaderboard, SLA summaries but an agent's."""
    return {
        "agent_leaderboard": ("/rpc/agent_leaderboard?sort_by=on_time_rate&page=3", "admin"),
        "agent_leaderboard_zip": (f"/rpc/agent_leaderboard?zip_code={zip_code}", "admin"),
        "agent_leaderboard_week": (f"/rpc/agent_leaderboard?from={frm}&to={to}", "admin"),
        "agent_leaderboard_week_zip": (
            f"/rpc/agent_leaderboard?from={frm}&to={to}&zip_code={zip_code}",
            "admin",
        ),
        "sla_summary": ("/rpc/sla_summary", "admin"),
        "sla_summary_week": (f"/rpc/sla_summary?from={frm}&to={to}", "admin"),
        "sla_summary_zip": (f"/rpc/sla_summary?zip_code={zip_code}", "admin"),
        "sla_summary_week_zip": (f"/rpc/sla_summary?from={frm}&to={to}&zip_code={zip_code}", "admin"),
    }


def sql_call(target: str) -> tuple[str, list[str]]:
    """The api function call an HTTP target makes, as SQL with its arguments."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(target)
    fn = parts.path.rsplit("/", 1)[1]
    args = parse_qsl(parts.query)
    named = ", ".join(f'"{k}" => %s' for k, _ in args)
    return f"select api.{fn}({named})::text", [v for _, v in args]


class AnswerCache:
    """Puts the answer cache in the state a shape is measured in: its entry filled (as the
    worker would, from the key its miss sends) or its entry deleted (`_live`: each request a miss)."""

    def __init__(self, url: str, plan: dict[str, tuple[str, str | None]]) -> None:
        self.url = url
        self.keys: dict[str, str] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            self.present = conn.execute("select to_regclass('metrics.answer_cache') is not null").fetchone()[
                0
            ]
            if not self.present:  # before migration 0026 (an A/B run): nothing to prepare
                return
            channel = conn.execute("select metrics.answer_cache_channel()").fetchone()[0]
            conn.execute("delete from metrics.answer_cache")  # every shape a miss: it sends its key
            conn.execute(f"listen {channel}")
            for name, (target, _) in plan.items():
                if f"{name}_live" in plan:
                    q, a = sql_call(target)
                    with conn.transaction():
                        conn.execute("set local role admin")
                        conn.execute(q, a)
                    self.keys[name] = next(conn.notifies(timeout=0, stop_after=1)).payload

    def prepare(self, name: str) -> None:
        if not self.present:
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            if name in self.keys:
                conn.execute("select metrics.fill_answer_cache(%s)", [self.keys[name]])
            elif name.endswith("_live"):  # only this request's entry: the others stay (no churn)
                conn.execute(
                    "delete from metrics.answer_cache where key = %s", [self.keys[name.removesuffix("_live")]]
                )
