-- Undo 0006: the retention job, the api objects, the schema webhooks (its triggers on core tables go
-- with their functions), the error codes and pgcrypto. pg_cron itself stays: other migrations may
-- schedule jobs too, and dropping it would drop theirs.
do $undo$
begin
    if exists (select 1 from pg_extension where extname = 'pg_cron') then
        perform cron.unschedule(j.jobid) from cron.job j where j.jobname = 'waybill_webhooks_prune';
    end if;
end
$undo$;
drop function if exists api.health_webhooks();
drop function if exists api.recover_webhook_deliveries(bigint, timestamptz, timestamptz);
drop function if exists api.retry_webhook_delivery(bigint);
drop function if exists api.rotate_webhook_secret(bigint, integer);
drop function if exists api.enable_webhook_subscription(bigint, timestamptz);
drop function if exists api.disable_webhook_subscription(bigint);
drop function if exists api.update_webhook_subscription(bigint, text, text[], text);
drop function if exists api.create_webhook_subscription(text, text[], text);
drop view if exists api.webhook_dispatchers;
drop view if exists api.webhook_attempts;
drop view if exists api.webhook_deliveries;
drop view if exists api.webhook_events;
drop view if exists api.webhook_subscriptions;
drop view if exists api.webhook_event_types;
drop schema webhooks cascade;
delete from ops.error_codes where code like 'WEBHOOK\_%';
drop extension if exists pgcrypto;
