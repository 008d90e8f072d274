-- 0009 dispatcher: webhooks.dispatcher_backlog for the dispatcher daemon's /metrics (issue 10).
-- depends: 0008.metrics

-- A deploy never hangs behind a long transaction.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

-- =================================================================================================
-- 230 Webhooks: what the dispatcher daemon needs beyond the interface of 220_webhooks_dispatch.sql
-- dispatcher_backlog: the backlog and the oldest due row's age for the daemon's Prometheus /metrics
-- (the dispatcher role reads no table and no api view, so it gets this one number pair by function).
-- =================================================================================================

create function webhooks.dispatcher_backlog(p_now timestamptz default null)
returns table (backlog bigint, oldest_age_seconds double precision)
language sql
stable
security definer
set search_path = ''
as $$
    -- Rows PENDING or SENDING and the age of the oldest of them. Reads only the partial due-rows
    -- index's rows (deliveries_due_idx covers exactly PENDING/SENDING), so it costs the size of the
    -- backlog, not of the outbox; the daemon calls it once per heartbeat (10 s).
    select count(*),
           coalesce(extract(epoch from coalesce(p_now, now()) - min(d.created_at)), 0)::double precision
      from webhooks.deliveries d
     where d.status in ('PENDING', 'SENDING')
$$;
comment on function webhooks.dispatcher_backlog(timestamptz) is
    'Dispatcher metrics: deliveries PENDING or SENDING, and the age in seconds of the oldest of them.';
grant execute on function webhooks.dispatcher_backlog(timestamptz) to dispatcher;
