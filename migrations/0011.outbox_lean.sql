-- 0011 outbox lean (issue 9 §4): less WAL and CPU per emitted event in the business transaction.
-- - events store their data only; webhooks.event_body() composes the payload {eventId, eventType,
--   timestamp, idempotencyKey, data} byte-identically at claim and read time (events written
--   before keep their stored body: nothing is rewritten);
-- - deliveries_subscription_id_status_created_at_idx is partial without PENDING, so the PENDING
--   insert of every business transaction no longer writes an entry there;
-- - webhooks.uuid_v7 is one inlinable expression.
-- Measured: docs/performance.md "Webhook outbox (issue 9 §4)".
-- depends: 0010.dispatcher_batch

-- A deploy never hangs behind a long transaction.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

-- ---- sql/200_webhooks_schema.sql ----
create or replace function webhooks.uuid_v7(p_at timestamptz default null)
returns uuid
language sql
volatile
as $$
    -- A time-ordered UUID (RFC 9562 version 7): 48 bits of Unix milliseconds, then the random bits
    -- of gen_random_uuid() (version nibble - hex digit 13 - set to 7, variant kept). Why not
    -- gen_random_uuid(): a random key sends every insert to a random leaf of the primary key and of
    -- deliveries' (event_id, subscription_id) key - a full-page image after each checkpoint and a
    -- cache miss per insert; time-ordered keys append to the rightmost leaf. bench/outbox.py
    -- measured the outbox at 0.72 of the commit rate at 32 clients with random ids.
    -- One expression, no FROM and no SET clause (every name qualified), so the planner inlines it:
    -- as a sub-select it was not inlinable, and each emission paid ~20-80 us to plan it afresh
    -- (0011.outbox_lean, docs/performance.md).
    select overlay(encode(overlay(uuid_send(gen_random_uuid())
                                  placing substring(int8send((extract(epoch from coalesce(p_at, clock_timestamp())) * 1000)::bigint) from 3)
                                  from 1 for 6), 'hex')
                   placing '7' from 13 for 1)::uuid
$$;
comment on function webhooks.uuid_v7(timestamptz) is
    'A time-ordered (version 7) UUID: event ids, so inserts append to the end of their indexes; p_at gives the lower bound of a time.';

-- New events keep data only; old ones their body. No rewrite: dropping NOT NULL and adding a
-- nullable column are catalog changes; each validation reads events once (the new column is empty,
-- so neither check can fail). One transaction: the locks taken here last until its commit.
-- squawk: body may be null from now on by design (data replaces it); only the database writes events.
-- squawk-ignore ban-drop-not-null
alter table webhooks.events alter column body drop not null;
alter table webhooks.events add column data text;
-- squawk: validated in this transaction on purpose: data is a new, empty column, so the checks cannot
-- fail, and their one scan of events (retention keeps 30 days; ~0.1 s per 300,000 events measured
-- with make explain's outbox) holds the lock of the ALTERs above, not a longer one.
alter table webhooks.events add constraint events_data_is_json_object_check check (left(data, 1) = '{') not valid;
-- squawk-ignore constraint-missing-not-valid
alter table webhooks.events validate constraint events_data_is_json_object_check;
alter table webhooks.events add constraint events_body_or_data_check check ((body is null) <> (data is null)) not valid;
-- squawk-ignore constraint-missing-not-valid
alter table webhooks.events validate constraint events_body_or_data_check;
comment on table webhooks.events is
    'Business events, append-only: id = payload eventId = webhook-id header; webhooks.event_body() = the exact bytes every try sends.';
comment on column webhooks.events.event_type is
    'A webhooks.event_types row, checked by webhooks.emit (no foreign key: see webhooks.tg_keep_referenced_rows).';
comment on column webhooks.events.idempotency_key is 'The same for the same business fact: type:aggregate:id[:version]; a repeat is not a new event.';
comment on column webhooks.events.body is
    'Events written before 0011.outbox_lean only: their payload as serialized at emission (null since; see data).';
comment on column webhooks.events.data is
    'The payload''s data (the entity after the change) as canonical JSON text; webhooks.event_body() wraps it with the columns into the payload.';
-- Why data and not the whole payload: eventId, eventType, timestamp and idempotencyKey are columns
-- already, so storing them again in the body cost ~190 bytes of heap and WAL per event in the
-- business transaction (the lifecycle is WAL-flush bound). webhooks.event_body() composes the
-- same bytes from the row at claim and read time (docs/webhooks.md "Payload bytes").

-- The plan's "deliveries by subscription and status": the admin list of one subscription's FAILED
-- rows newest first, the per-subscription counts of GET /webhook_subscriptions and the in-flight
-- count of the claim's per-subscription limit. Partial, without PENDING: every business transaction
-- inserts a PENDING row, and an entry here cost it ~110 bytes of WAL and an index insertion
-- (0011.outbox_lean, docs/performance.md); a row enters it when the dispatcher first claims it
-- (that update is not HOT anyway). PENDING rows of a subscription are found through
-- deliveries_due_idx, which holds only the backlog (disable_subscription, the PENDING count).
-- Built under a new name first (SHARE lock: reads go on, writers wait for the build), then the
-- old one dropped (its ACCESS EXCLUSIVE lasts only to the commit that follows at once) and the new
-- one renamed. Not CONCURRENTLY: yoyo runs a migration in one transaction, all or nothing; the
-- table holds 30 days at most (retention); the build took 1.7 s for 600,000 deliveries (docs/indexes.md).
-- squawk-ignore require-concurrent-index-creation
create index deliveries_subscription_id_status_created_at_new_idx
    on webhooks.deliveries (subscription_id, status, created_at desc) where status <> 'PENDING';
-- squawk-ignore require-concurrent-index-deletion
drop index webhooks.deliveries_subscription_id_status_created_at_idx;
-- squawk: the index keeps its name (make explain and docs/indexes.md refer to it); the new one
-- exists under a temporary name only inside this transaction.
-- squawk-ignore renaming-object
alter index webhooks.deliveries_subscription_id_status_created_at_new_idx rename to deliveries_subscription_id_status_created_at_idx;
comment on index webhooks.deliveries_subscription_id_status_created_at_idx is
    'Serves per-subscription listings/counts by status (PENDING excepted: partial) and the in-flight limit (plan index 2 of 3).';

-- ---- sql/210_webhooks_emit.sql ----
-- The payload is composed, not stored (0011.outbox_lean): an event row keeps only its data, and
-- this function wraps it with the row's columns. Byte-stable: jsonb's text output is canonical
-- (keys by length then bytes, one space after ':' and ','), data is stored as that output and
-- re-parses to itself, and iso_time ignores TimeZone and DateStyle; so every call - the claim of
-- each try, GET /webhook_events - yields the bytes emission would have stored (pgtap/51 checks it
-- under other session settings). Events written before 0011 keep their stored body. No SET clause:
-- it inlines into the claim and the admin view.
create function webhooks.event_body(p webhooks.events)
returns text
language sql
stable
as $$
    select coalesce(p.body,
                    jsonb_build_object('eventId', p.id, 'eventType', p.event_type,
                                       'timestamp', webhooks.iso_time(p.occurred_at),
                                       'idempotencyKey', p.idempotency_key, 'data', p.data::jsonb)::text)
$$;
comment on function webhooks.event_body(webhooks.events) is
    'The exact payload bytes of an event: {eventId, eventType, timestamp, idempotencyKey, data} (what the dispatcher signs and sends).';
-- Admins read payloads through api.webhook_events (security_invoker): they execute the composer.
grant execute on function webhooks.iso_time(timestamptz), webhooks.event_body(webhooks.events) to admin, platform_admin;

create or replace function webhooks.emit(
    p_event_type text,
    p_aggregate_id bigint,
    p_idempotency_key text,
    p_data jsonb,
    p_occurred_at timestamptz
)
returns uuid
language plpgsql
volatile
as $$
-- Write the event (its data serialized once, here: webhooks.event_body() composes the payload
-- around it) and its deliveries. The state machines reach each keyed fact once, so a repeated
-- idempotency key is a bug: the unique key refuses it (23505) rather than hiding it. Not ON
-- CONFLICT DO NOTHING: its speculative insertion costs every event an extra WAL record and a second
-- index probe, for a case that cannot happen.
declare
    v_id uuid := webhooks.uuid_v7();
begin
    insert into webhooks.events (id, event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, data)
    select v_id, t.event_type, t.aggregate_type, p_aggregate_id, p_idempotency_key, p_occurred_at, p_data::text
      from webhooks.event_types t
     where t.event_type = p_event_type;
    if not found then
        return null;  -- not an event type
    end if;
    -- Subscriptions are few (tens): a sequential scan with the array test is the cheapest plan.
    insert into webhooks.deliveries (event_id, subscription_id, status, next_attempt_at, finished_at)
    select v_id, s.id,
           case s.status when 'ACTIVE' then 'PENDING' else 'SKIPPED' end,
           case s.status when 'ACTIVE' then now() end,
           case s.status when 'ACTIVE' then null else now() end
      from webhooks.subscriptions s
     where s.event_types @> array[p_event_type];
    return v_id;
end
$$;

-- ---- sql/220_webhooks_dispatch.sql ----
create or replace function webhooks.claim_deliveries(
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

-- ---- sql/820_api_webhooks.sql ----
create or replace view api.webhook_events with (security_invoker = true) as
select e.id, e.event_type, e.aggregate_type, e.aggregate_id, e.idempotency_key, e.occurred_at, e.created_at,
       webhooks.event_body(e)::jsonb as payload
  from webhooks.events e;
