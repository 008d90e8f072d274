-- Undo 0008: the metrics endpoints, the rollup triggers, schema metrics, its error codes and its
-- pg_cron jobs. The pg_cron extension itself stays (other jobs may use it; 0008 creates it only
-- when missing, and cannot know whether it was missing).
-- squawk: dropping what 0008 created is the point of this file.
-- squawk-ignore-file ban-drop-function, ban-drop-schema
set local lock_timeout = '5s';
set local statement_timeout = '1min';
do $jobs$
begin
    perform metrics.unschedule_refresh_jobs();
end
$jobs$;
drop function if exists api.agent_metrics(text, text, text);
drop function if exists api.agent_leaderboard(text, text, text, text, text, text, text, text);
drop function if exists api.geographic_coverage(text, text, text);
drop function if exists api.sla_summary(text, text, text, text);
drop function if exists api.agent_activity(text, text, text, text);
drop function if exists api.refresh_metrics(text);
drop function if exists api.health_metrics();
drop trigger if exists _500_metrics_rollup_offer on core.shipping_assignments;
drop trigger if exists _500_metrics_rollup_transition on core.shipping_assignments;
drop schema metrics cascade;
delete from ops.error_codes where code like 'METRICS\_%';
do $temp$
begin
    execute format('revoke temporary on database %I from waybill_owner', current_database());
end
$temp$;
