-- =================================================================================================
-- 220 Webhooks: the dispatcher's interface, subscription state changes, retention
-- The dispatcher role may execute exactly the functions granted at the end of this file (SECURITY
-- DEFINER, empty search_path), plus what every committing role has (sql/210: calling
-- webhooks.wake_dispatcher, for its requeues' commit-time wake-up; since 0018 it no longer reads the
-- flag itself); no table of webhooks is granted to it.
-- Protocol (dispatcher/, issue 10):
--   LISTEN webhooks; loop { claim_deliveries -> sign + POST each -> record_attempt each;
--     when a claim returns fewer rows than asked: arm_wakeup, then next_due_at, then sleep until
--     that time, a NOTIFY or the 30 s sweep }; heartbeat every few seconds; on SIGTERM
--     release_deliveries what was not sent.
-- Leases: a claim sets SENDING, lease_until = now + p_lease (longer than the HTTP timeout) and a
-- fresh lease_token. record_attempt must present that token: a dispatcher that stalled past its
-- lease and lost the row to another is ignored (null), never recorded over the new holder.
-- =================================================================================================

create function webhooks.subscription_secrets(p_subscription_id bigint, p_now timestamptz default null)
returns text[]
language sql
stable
security definer
set search_path = ''
as $$
    -- The current secret and every rotated-out one still in its grace period, newest first.
    select coalesce(array_agg(s.secret order by s.id desc), '{}')
      from webhooks.secrets s
     where s.subscription_id = p_subscription_id
       and (s.expires_at is null or s.expires_at > coalesce(p_now, now()))
$$;
comment on function webhooks.subscription_secrets(bigint, timestamptz) is
    'Valid signing secrets of a subscription, newest first (the current one and those within their grace period).';

create function webhooks.disable_subscription(
    p_subscription_id bigint,
    p_reason text,
    p_actor text,
    p_now timestamptz default null
)
returns webhooks.subscriptions
language plpgsql
volatile
set search_path = ''
as $$
-- ACTIVE -> DISABLED (MANUAL or GONE); its PENDING deliveries become SKIPPED (kept, replayable).
-- Rows being sent finish their try; record_attempt skips instead of rescheduling them.
declare
    v_sub webhooks.subscriptions;
    v_now timestamptz := coalesce(p_now, now());
begin
    update webhooks.subscriptions s
       set status = 'DISABLED', disabled_reason = p_reason, disabled_at = v_now,
           updated_at = v_now, updated_by = p_actor
     where s.id = p_subscription_id and s.status = 'ACTIVE'
    returning * into v_sub;
    if not found then
        select * into v_sub from webhooks.subscriptions s where s.id = p_subscription_id;
        if not found then
            perform ops.raise_error('WEBHOOK_SUBSCRIPTION_NOT_FOUND', coalesce(p_subscription_id::text, 'null'));
        end if;
        return v_sub;  -- already disabled: nothing to do
    end if;
    update webhooks.deliveries d
       set status = 'SKIPPED', next_attempt_at = null, finished_at = v_now, updated_at = v_now
     where d.subscription_id = p_subscription_id and d.status = 'PENDING';
    perform ops.log_event('webhook_subscription_disabled', case p_reason when 'GONE' then 'warn' else 'info' end,
        jsonb_build_object('subscription_id', p_subscription_id, 'reason', p_reason, 'actor', p_actor));
    return v_sub;
end
$$;
comment on function webhooks.disable_subscription(bigint, text, text, timestamptz) is
    'Disable a subscription (MANUAL or GONE); its PENDING deliveries become SKIPPED.';

-- -------------------------------------------------------------------------------------------------
-- Claim
-- -------------------------------------------------------------------------------------------------

create function webhooks.claim_deliveries(
    p_dispatcher text,
    p_limit integer default 50,
    p_lease interval default '20 seconds',
    p_per_subscription integer default 10,
    p_now timestamptz default null
)
returns table (
    delivery_id bigint,
    event_id uuid,
    subscription_id bigint,
    url text,
    attempt integer,
    trigger text,
    lease_token uuid,
    lease_until timestamptz,
    event_type text,
    body text,
    secrets text[]
)
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Claim up to p_limit (at most 50) due deliveries for p_dispatcher: PENDING rows whose
-- next_attempt_at has come, at most p_per_subscription in flight per subscription, oldest first.
-- First, SENDING rows whose lease expired (their dispatcher died) get a lease_expired attempt
-- row and become PENDING now with trigger 'recover' (FAILED when that was the last try, SKIPPED
-- when the subscription was disabled meanwhile), so the same claim takes them again. Returns each row with the exact body to POST
-- (composed by webhooks.event_body, byte-stable) and its secrets.
declare
    v_now timestamptz := coalesce(p_now, now());
    v_limit integer := least(greatest(coalesce(p_limit, 50), 1), 50);
    v_max_tries integer := 1 + (select count(*)::integer from webhooks.retry_schedule);
begin
    if p_dispatcher is null or length(p_dispatcher) not between 1 and 200 then
        perform ops.raise_error('INVALID_ARGUMENT', 'p_dispatcher must be 1 to 200 characters');
    end if;
    if p_lease is null or p_lease < interval '1 second' or p_lease > interval '1 hour' then
        perform ops.raise_error('INVALID_ARGUMENT', 'p_lease must be between 1 second and 1 hour');
    end if;
    if p_per_subscription is null or p_per_subscription < 1 then
        perform ops.raise_error('INVALID_ARGUMENT', 'p_per_subscription must be at least 1');
    end if;

    -- 1. Recover expired leases. SKIP LOCKED: a row another dispatcher is recovering or recording
    -- right now is its business; we neither wait for it nor take it twice.
    with expired as (
        select d.id
          from webhooks.deliveries d
         where d.status = 'SENDING' and d.next_attempt_at <= v_now
         order by d.next_attempt_at
         limit v_limit
           for update of d skip locked
    ), lost as (
        insert into webhooks.attempts (delivery_id, attempt, dispatcher, trigger, started_at, duration_ms, error_class, created_at)
        select d.id, d.attempts + 1, d.lease_owner, d.next_trigger, d.lease_until - p_lease, 0, 'lease_expired', v_now
          from webhooks.deliveries d join expired x on x.id = d.id
    )
    update webhooks.deliveries d
       set status = case when d.attempts + 1 - d.attempts_at_requeue >= v_max_tries then 'FAILED'
                         when s.status <> 'ACTIVE' then 'SKIPPED' else 'PENDING' end,
           attempts = d.attempts + 1,
           next_attempt_at = case when d.attempts + 1 - d.attempts_at_requeue >= v_max_tries or s.status <> 'ACTIVE'
                                  then null else v_now end,
           next_trigger = 'recover',
           lease_owner = null, lease_token = null, lease_until = null,
           last_error = 'lease_expired: ' || d.lease_owner,
           finished_at = case when d.attempts + 1 - d.attempts_at_requeue >= v_max_tries or s.status <> 'ACTIVE'
                              then v_now end,
           updated_at = v_now
      from expired x, webhooks.subscriptions s
     where d.id = x.id and s.id = d.subscription_id;

    -- 2. Claim. Subscriptions at their in-flight limit are left out before the LIMIT, so one slow
    -- receiver's backlog cannot fill every batch and starve the others; the rest get at most their
    -- remaining share of this batch. The in-flight counts read index 2 (subscription, SENDING).
    -- The limit is per claim snapshot: two dispatchers claiming at the same instant may together
    -- exceed it by at most one batch; each dispatcher also enforces it locally.
    -- SKIP LOCKED: concurrent dispatchers take disjoint rows instead of queueing on each other's
    -- locks (tests/test_webhooks_outbox.py races 4 of them 200 times: never a row twice, none
    -- lost). Batch <= 50: a claim holds its row locks only for its own statement, and 50 rows keep
    -- it short - bench/outbox.py drained 29,734 deliveries with 2 dispatchers claiming 50 and
    -- recording them at 1,035 deliveries/s (no HTTP, loaded 2-core machine); the candidate scan
    -- reads deliveries_due_idx: 0.021 ms vs 58.9 ms for a Parallel Seq Scan at 600,000
    -- deliveries (make explain, docs/indexes.md). Ties are broken by id (creation order): the rows
    -- of one commit share next_attempt_at, and without the tie-break the window could hold one
    -- subscription's rows only, so a claim returned its remaining share (10) instead of 50
    -- (bench/dispatch.py, 0010.dispatcher_batch).
    return query
    with busy as (
        select s.id as subscription_id,
               (select count(*) from webhooks.deliveries d
                 where d.subscription_id = s.id and d.status = 'SENDING' and d.lease_until > v_now) as in_flight
          from webhooks.subscriptions s
         where s.status = 'ACTIVE'
    ), candidates as materialized (
        select d.id, d.subscription_id, d.next_attempt_at
          from webhooks.deliveries d
         where d.status = 'PENDING' and d.next_attempt_at <= v_now
           and d.subscription_id in (select b.subscription_id from busy b where b.in_flight < p_per_subscription)
         order by d.next_attempt_at, d.id
         limit v_limit * 2
           for update of d skip locked
    ), picked as (
        select r.id
          from (select c.id, c.subscription_id, c.next_attempt_at,
                       row_number() over (partition by c.subscription_id order by c.next_attempt_at, c.id) as rn
                  from candidates c) r
          join busy b on b.subscription_id = r.subscription_id
         where r.rn <= p_per_subscription - b.in_flight
         order by r.next_attempt_at, r.id
         limit v_limit
    ), claimed as (
        update webhooks.deliveries d
           set status = 'SENDING', lease_owner = p_dispatcher, lease_token = gen_random_uuid(),
               lease_until = v_now + p_lease, next_attempt_at = v_now + p_lease, updated_at = v_now
          from picked p
         where d.id = p.id
        returning d.id, d.event_id, d.subscription_id, d.attempts, d.next_trigger, d.lease_token, d.lease_until
    )
    select c.id, c.event_id, c.subscription_id, s.url, c.attempts + 1, c.next_trigger, c.lease_token,
           c.lease_until, e.event_type, webhooks.event_body(e), webhooks.subscription_secrets(s.id, v_now)
      from claimed c
      join webhooks.events e on e.id = c.event_id
      join webhooks.subscriptions s on s.id = c.subscription_id
     order by c.id;
end
$$;
comment on function webhooks.claim_deliveries(text, integer, interval, integer, timestamptz) is
    'Dispatcher: lease up to 50 due deliveries (SKIP LOCKED, per-subscription in-flight limit), recovering expired leases first.';

-- -------------------------------------------------------------------------------------------------
-- Record a try
-- -------------------------------------------------------------------------------------------------

create function webhooks.record_attempt(
    p_delivery_id bigint,
    p_dispatcher text,
    p_lease_token uuid,
    p_started_at timestamptz,
    p_duration_ms integer,
    p_status_code integer default null,
    p_error_class text default null,
    p_response_snippet text default null,
    p_retry_after_seconds integer default null,
    p_now timestamptz default null
)
returns text
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Record one HTTP try of a leased delivery and apply the retry policy (data: webhooks.retry_schedule,
-- webhooks.settings). 2xx -> DELIVERED. 410 -> FAILED and the subscription DISABLED (GONE). Else
-- retry N after try N: PENDING at now + delay x (1 + random jitter), at least Retry-After (429/503,
-- clamped to settings.retry_after_max); no retry left -> FAILED. Returns the new status, or null
-- when the lease was lost (the row is no longer SENDING under p_lease_token): nothing is written.
declare
    v_d webhooks.deliveries;
    v_set webhooks.settings;
    v_now timestamptz := coalesce(p_now, now());
    v_ok boolean;
    v_class text;
    v_snippet text := p_response_snippet;
    v_delay interval;
    v_status text;
    v_sub_status text;
begin
    if p_duration_ms is null or p_duration_ms < 0 or p_started_at is null then
        perform ops.raise_error('INVALID_ARGUMENT', 'p_started_at and a non-negative p_duration_ms are required');
    end if;
    if p_status_code is not null and p_status_code not between 100 and 599 then
        perform ops.raise_error('INVALID_ARGUMENT', 'p_status_code must be an HTTP status (100-599)');
    end if;
    if p_status_code is null and p_error_class is null then
        perform ops.raise_error('INVALID_ARGUMENT', 'a try has a status code or an error class');
    end if;
    -- FOR UPDATE (waiting, not SKIP LOCKED): only a claim or an admin retry can hold this row, for
    -- milliseconds; we must see their outcome to know whether our lease still stands.
    select * into v_d from webhooks.deliveries d where d.id = p_delivery_id for update;
    if not found then
        perform ops.raise_error('WEBHOOK_DELIVERY_NOT_FOUND', coalesce(p_delivery_id::text, 'null'));
    end if;
    if v_d.status <> 'SENDING' or v_d.lease_token is distinct from p_lease_token then
        perform ops.log_event('webhook_attempt_lease_lost', 'warn',
            jsonb_build_object('delivery_id', p_delivery_id, 'dispatcher', p_dispatcher,
                               'status', v_d.status, 'lease_owner', v_d.lease_owner));
        return null;
    end if;

    v_ok := p_status_code between 200 and 299 and p_error_class is null;
    if not v_ok then
        v_class := coalesce(p_error_class, case when p_status_code >= 500 then 'http_5xx'
                                                when p_status_code >= 400 then 'http_4xx'
                                                when p_status_code >= 300 then 'http_3xx'
                                                else 'other' end);
        if not exists (select 1 from webhooks.error_classes c where c.error_class = v_class) then
            perform ops.raise_error('INVALID_ARGUMENT', 'unknown error class ' || v_class);
        end if;
    end if;
    -- At most 1 KiB, cut on a character boundary.
    v_snippet := left(v_snippet, 1024);
    while octet_length(v_snippet) > 1024 loop
        v_snippet := left(v_snippet, length(v_snippet) - 1 - (octet_length(v_snippet) - 1025) / 4);
    end loop;

    insert into webhooks.attempts (delivery_id, attempt, dispatcher, trigger, started_at, duration_ms,
                                   status_code, error_class, response_snippet, created_at)
    values (v_d.id, v_d.attempts + 1, p_dispatcher, v_d.next_trigger, p_started_at, p_duration_ms,
            p_status_code, v_class, v_snippet, v_now);

    select s.status into v_sub_status from webhooks.subscriptions s where s.id = v_d.subscription_id;
    if v_ok then
        v_status := 'DELIVERED';
    elsif p_status_code = 410 then
        v_status := 'FAILED';
        perform webhooks.disable_subscription(v_d.subscription_id, 'GONE', 'dispatcher:' || p_dispatcher, v_now);
    else
        select * into v_set from webhooks.settings where id;
        select r.delay * (1 + random() * v_set.retry_jitter) into v_delay
          from webhooks.retry_schedule r where r.retry = v_d.attempts - v_d.attempts_at_requeue + 1;
        if v_delay is null then
            v_status := 'FAILED';
        elsif v_sub_status = 'DISABLED' then
            v_status := 'SKIPPED';
        else
            v_status := 'PENDING';
            if p_status_code in (429, 503) and p_retry_after_seconds is not null then
                v_delay := greatest(v_delay, least(make_interval(secs => greatest(p_retry_after_seconds, 0)),
                                                   v_set.retry_after_max));
            end if;
        end if;
    end if;

    update webhooks.deliveries d
       set status = v_status,
           attempts = d.attempts + 1,
           next_attempt_at = case when v_status = 'PENDING' then v_now + v_delay end,
           next_trigger = 'scheduled',
           lease_owner = null, lease_token = null, lease_until = null,
           last_status_code = p_status_code,
           last_error = case when v_ok then null else v_class || coalesce(': ' || left(v_snippet, 200), '') end,
           delivered_at = case when v_ok then v_now end,
           finished_at = case when v_status in ('DELIVERED', 'FAILED', 'SKIPPED') then v_now end,
           updated_at = v_now
     where d.id = v_d.id;
    return v_status;
end
$$;
comment on function webhooks.record_attempt(bigint, text, uuid, timestamptz, integer, integer, text, text, integer, timestamptz) is
    'Dispatcher: record one HTTP try under its lease token and apply the retry policy; returns the new status (null: lease lost).';

-- -------------------------------------------------------------------------------------------------
-- Release, heartbeat, wake-up, next due time
-- -------------------------------------------------------------------------------------------------

create function webhooks.release_deliveries(p_dispatcher text, p_ids bigint[], p_now timestamptz default null)
returns integer
language sql
volatile
security definer
set search_path = ''
as $$
    -- Graceful shutdown: rows p_dispatcher leased but did not send go back to PENDING, due now; no
    -- try is counted. Rows it no longer holds are left alone. Returns how many were released.
    -- A row whose subscription was disabled meanwhile is SKIPPED instead.
    with released as (
        update webhooks.deliveries d
           set status = case s.status when 'ACTIVE' then 'PENDING' else 'SKIPPED' end,
               next_attempt_at = case s.status when 'ACTIVE' then coalesce(p_now, now()) end,
               finished_at = case s.status when 'ACTIVE' then null else coalesce(p_now, now()) end,
               lease_owner = null, lease_token = null, lease_until = null, updated_at = coalesce(p_now, now())
          from webhooks.subscriptions s
         where s.id = d.subscription_id
           and d.id = any (p_ids) and d.status = 'SENDING' and d.lease_owner = p_dispatcher
        returning 1
    )
    select count(*)::integer from released
$$;
comment on function webhooks.release_deliveries(text, bigint[], timestamptz) is
    'Dispatcher: give back unsent leased rows (PENDING, due now, no try counted); returns how many.';

create function webhooks.heartbeat(p_dispatcher text, p_info jsonb default '{}', p_now timestamptz default null)
returns void
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Upsert this dispatcher's heartbeat row (admins: GET /webhook_dispatchers).
begin
    if p_dispatcher is null or length(p_dispatcher) not between 1 and 200 then
        perform ops.raise_error('INVALID_ARGUMENT', 'p_dispatcher must be 1 to 200 characters');
    end if;
    if p_info is null or jsonb_typeof(p_info) <> 'object' then
        perform ops.raise_error('INVALID_ARGUMENT', 'p_info must be a JSON object');
    end if;
    insert into webhooks.dispatchers as h (name, started_at, last_seen_at, info)
    values (p_dispatcher, coalesce(p_now, now()), coalesce(p_now, now()), p_info)
    on conflict (name) do update set last_seen_at = excluded.last_seen_at, info = excluded.info;
end
$$;
comment on function webhooks.heartbeat(text, jsonb, timestamptz) is 'Dispatcher: record that p_dispatcher is alive, with free-form info.';

create function webhooks.arm_wakeup(p_dispatcher text)
returns void
language sql
volatile
security definer
set search_path = ''
as $$
    -- The dispatcher is going idle: the next commit that adds PENDING work sends NOTIFY webhooks.
    -- Call it in its own (autocommit) transaction, after LISTEN and before next_due_at.
    update webhooks.wakeup w set armed = true, armed_at = now(), armed_by = p_dispatcher where w.id
$$;
comment on function webhooks.arm_wakeup(text) is
    'Dispatcher: ask for a NOTIFY webhooks at the next commit that adds PENDING work (then re-read next_due_at).';

create function webhooks.next_due_at()
returns timestamptz
language sql
stable
security definer
set search_path = ''
as $$
    -- The earliest next try or lease expiry (index 1: one index tuple read); null when nothing is pending.
    select min(d.next_attempt_at) from webhooks.deliveries d where d.status in ('PENDING', 'SENDING')
$$;
comment on function webhooks.next_due_at() is
    'Dispatcher: when the next delivery is due (a retry time or a lease expiry); null when none is pending or in flight.';

-- -------------------------------------------------------------------------------------------------
-- Requeue (admin retry / recover / enable)
-- -------------------------------------------------------------------------------------------------

create function webhooks.requeue(
    p_subscription_id bigint,
    p_since timestamptz,
    p_until timestamptz,
    p_trigger text,
    p_now timestamptz default null
)
returns integer
language sql
volatile
set search_path = ''
as $$
    -- FAILED and SKIPPED deliveries of a subscription created in [since, until) -> PENDING now.
    -- The retry schedule starts again (attempts_at_requeue); past attempts stay in webhooks.attempts.
    with requeued as (
        update webhooks.deliveries d
           set status = 'PENDING', attempts_at_requeue = d.attempts, next_attempt_at = coalesce(p_now, now()),
               next_trigger = p_trigger, delivered_at = null, finished_at = null,
               updated_at = coalesce(p_now, now())
         where d.subscription_id = p_subscription_id and d.status in ('FAILED', 'SKIPPED')
           and d.created_at >= p_since and (p_until is null or d.created_at < p_until)
        returning 1
    )
    select count(*)::integer from requeued
$$;
comment on function webhooks.requeue(bigint, timestamptz, timestamptz, text, timestamptz) is
    'FAILED/SKIPPED deliveries of a subscription in a creation-time window -> PENDING now; returns how many.';

-- -------------------------------------------------------------------------------------------------
-- Retention (pg_cron job waybill_webhooks_prune)
-- -------------------------------------------------------------------------------------------------

create function webhooks.prune_batch(p_now timestamptz default null)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
-- One retention batch: up to settings.prune_batch_size finished deliveries (DELIVERED, FAILED,
-- SKIPPED) created and finished before now - settings.retention, with their attempts; then as many
-- events of that age left without any delivery. SKIP LOCKED: a row an admin is requeueing right
-- now is left for the next batch rather than waited for. Returns {deliveries, events} deleted.
declare
    v_set webhooks.settings;
    v_cutoff timestamptz;
    v_deliveries integer;
    v_events integer;
begin
    select * into v_set from webhooks.settings where id;
    v_cutoff := coalesce(p_now, now()) - v_set.retention;
    -- Oldest first along the primary key (ids follow creation time); rows still in play are passed over.
    with doomed as (
        select d.id from webhooks.deliveries d
         where d.status in ('DELIVERED', 'FAILED', 'SKIPPED') and d.created_at < v_cutoff
           and d.finished_at < v_cutoff
         order by d.id
         limit v_set.prune_batch_size
           for update skip locked
    ), gone as (
        delete from webhooks.attempts a using doomed x where a.delivery_id = x.id
    )
    delete from webhooks.deliveries d using doomed x where d.id = x.id;
    get diagnostics v_deliveries = row_count;
    -- Events are append-only; retention is the one sanctioned delete (see tg_events__append_only).
    perform set_config('webhooks.pruning', 'on', true);
    -- Oldest first along the primary key: uuid_v7 ids below uuid_v7(cutoff)'s millisecond.
    with doomed as (
        select e.id from webhooks.events e
         where e.id < webhooks.uuid_v7(v_cutoff) and e.created_at < v_cutoff
           and not exists (select 1 from webhooks.deliveries d where d.event_id = e.id)
         order by e.id
         limit v_set.prune_batch_size
    )
    delete from webhooks.events e using doomed x where e.id = x.id;
    get diagnostics v_events = row_count;
    perform set_config('webhooks.pruning', 'off', true);
    return jsonb_build_object('deliveries', v_deliveries, 'events', v_events);
end
$$;
comment on function webhooks.prune_batch(timestamptz) is
    'One retention batch: finished deliveries and their attempts, then orphaned events, older than settings.retention.';

-- No SET search_path here: a procedure with a SET clause may not COMMIT. Every name is qualified.
create procedure webhooks.prune(p_now timestamptz default null)
language plpgsql
as $$
-- Retention (the pg_cron job waybill_webhooks_prune): webhooks.prune_batch until a batch finds less
-- than a full batch (or settings.prune_max_batches), committing after each one - short
-- transactions, small WAL bursts, and vacuum can reclaim as it goes. CALL it outside a transaction.
declare
    v_batch jsonb;
    v_deliveries bigint := 0::bigint;
    v_events bigint := 0::bigint;
    v_size integer := (select s.prune_batch_size from webhooks.settings s where s.id);
    v_max integer := (select s.prune_max_batches from webhooks.settings s where s.id);
    v_started timestamptz := clock_timestamp();
begin
    for i in 1 .. v_max loop
        v_batch := webhooks.prune_batch(p_now);
        v_deliveries := v_deliveries + (v_batch ->> 'deliveries')::bigint;
        v_events := v_events + (v_batch ->> 'events')::bigint;
        commit;
        exit when (v_batch ->> 'deliveries')::int < v_size and (v_batch ->> 'events')::int < v_size;
    end loop;
    perform ops.log_event('webhook_retention_pruned', 'info',
        jsonb_build_object('deliveries', v_deliveries, 'events', v_events),
        null, round((extract(epoch from clock_timestamp() - v_started) * 1000)::numeric, 3));
end
$$;
comment on procedure webhooks.prune(timestamptz) is
    'Retention: prune_batch in committed batches until done; logs webhook_retention_pruned.';

create function webhooks.schedule_retention()
returns text
language plpgsql
volatile
set search_path = ''
as $$
-- (Re)create the pg_cron job waybill_webhooks_prune (every 10 minutes) when this database is the one
-- pg_cron runs in (cron.database_name); cron.schedule replaces a job of the same name, so this is
-- idempotent. Elsewhere (test clones, a database without pg_cron) it says why it did nothing.
begin
    if current_setting('cron.database_name', true) is distinct from current_database() then
        return 'not scheduled: pg_cron runs in database ' || coalesce(current_setting('cron.database_name', true), '(none)');
    end if;
    create extension if not exists pg_cron with schema public;  -- its objects go to its own schema cron
    perform cron.schedule('waybill_webhooks_prune', '*/10 * * * *', 'call webhooks.prune()');
    return 'scheduled waybill_webhooks_prune';
end
$$;
comment on function webhooks.schedule_retention() is
    'Create or replace the pg_cron job waybill_webhooks_prune when pg_cron runs in this database.';

-- -------------------------------------------------------------------------------------------------
-- Grants: the dispatcher executes these and nothing else
-- -------------------------------------------------------------------------------------------------

grant usage on schema webhooks to dispatcher;
grant execute on function
    webhooks.claim_deliveries(text, integer, interval, integer, timestamptz),
    webhooks.record_attempt(bigint, text, uuid, timestamptz, integer, integer, text, text, integer, timestamptz),
    webhooks.release_deliveries(text, bigint[], timestamptz),
    webhooks.heartbeat(text, jsonb, timestamptz),
    webhooks.arm_wakeup(text),
    webhooks.next_due_at(),
    webhooks.subscription_secrets(bigint, timestamptz)
    to dispatcher;

-- The retention job, where pg_cron runs in this database (silently nothing elsewhere).
do $schedule$
begin
    perform webhooks.schedule_retention();
end
$schedule$;
