"""pg_cron really refreshes the metrics views. pg_cron lives in one database per cluster
(cron.database_name = the cluster's `waybill`): migrating that database creates the four named jobs
(idempotently); a job scheduled from there into this test's database (cron.schedule_in_database)
really runs and refreshes a view there. pg_cron 1.4 schedules by the minute, so this test waits for
the next minute once (at most ~65 s) — the only wait of the kind in the suite."""

from __future__ import annotations

import time

import psycopg

from waybill import migrate
from waybill.cluster import Cluster

JOBS = {
    "waybill-metrics-agent-recent": "*/30 * * * *",
    "waybill-metrics-agent-running-totals": "*/30 * * * *",
    "waybill-metrics-geographic-coverage": "*/15 * * * *",
    "waybill-metrics-leaderboard": "*/30 * * * *",
    "waybill-metrics-sla-summary": "*/10 * * * *",
}
PROBE = "waybill-metrics-test-probe"


def _jobs(cron: psycopg.Connection) -> dict[str, str]:
    return dict(
        cron.execute(
            "select jobname, schedule from cron.job where jobname like 'waybill-metrics-%'"
        ).fetchall()
    )


def test_named_jobs_are_created_idempotently_and_really_run(cluster: Cluster, db_url: str) -> None:
    cron_url = cluster.url(cluster.db_name)
    migrate.apply(cron_url)
    with psycopg.connect(cron_url, autocommit=True) as cron:
        try:
            assert _jobs(cron) == JOBS
            assert migrate.apply(cron_url) == 0
            assert cron.execute("select metrics.schedule_refresh_jobs()").fetchone()[0] == len(JOBS)
            assert _jobs(cron) == JOBS, "scheduling again must update the jobs, not add more"
            commands = dict(cron.execute("select jobname, command from cron.job").fetchall())
            assert commands["waybill-metrics-sla-summary"] == "select metrics.refresh('sla_summary', 'cron')"

            db = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
            job = cron.execute(
                "select cron.schedule_in_database(%s, '* * * * *', %s, %s)",
                [PROBE, "select metrics.refresh('sla_summary', 'cron')", db],
            ).fetchone()[0]
            deadline = time.monotonic() + 75
            status = None
            while time.monotonic() < deadline:
                row = cron.execute(
                    "select status, return_message from cron.job_run_details where jobid = %s"
                    " and status in ('succeeded', 'failed') order by start_time desc limit 1",
                    [job],
                ).fetchone()
                if row:
                    status = row
                    break
                time.sleep(0.5)
            assert status is not None, "pg_cron did not run the job within 75 s"
            assert status[0] == "succeeded", status
            with psycopg.connect(db_url) as conn:
                logged = conn.execute(
                    "select count(*) from metrics.refresh_log where view_name = 'sla_summary' and source = 'cron'"
                ).fetchone()[0]
            assert logged >= 1

            # health_metrics in the pg_cron database reads the jobs and their last runs
            with cron.transaction():
                cron.execute("select set_config('request.jwt.claims', '{\"role\": \"admin\"}', true)")
                cron.execute("set local role admin")
                health = cron.execute("select api.health_metrics()").fetchone()[0]
            assert health["cron"]["installed"] is True
            assert {j["jobName"] for j in health["cron"]["jobs"]} == set(JOBS)
            assert {v["view"] for v in health["views"]} == {
                "agent_recent",
                "agent_running_totals",
                "leaderboard",
                "sla_summary",
                "geographic_coverage",
            }
        finally:
            cron.execute("select cron.unschedule(jobid) from cron.job where jobname = %s", [PROBE])
            cron.execute("select metrics.unschedule_refresh_jobs()")
