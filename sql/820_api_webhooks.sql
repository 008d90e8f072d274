-- =================================================================================================
-- 820 The webhook admin API (plan C5), in schema api
-- admin and platform_admin only (anon gets 401, service and agent 403, from missing grants), plus
-- the anon-safe GET /rpc/health_webhooks. Views are security_invoker over webhooks.* with RLS
-- policies for the admin roles; webhooks.secrets is granted to nobody: a secret leaves the database
-- only in the answer of create_webhook_subscription / rotate_webhook_secret, once.
-- =================================================================================================

grant usage on schema webhooks to admin, platform_admin;
-- service and agent commit business transactions, whose deferred wake-up trigger calls
-- webhooks.wake_dispatcher as them (sql/210): the schema's name and that function only.
grant usage on schema webhooks to service, agent;
grant select on webhooks.subscriptions, webhooks.events, webhooks.deliveries, webhooks.attempts,
                webhooks.dispatchers, webhooks.event_types
    to admin, platform_admin;
grant select on webhooks.payload_shapes to admin, platform_admin;

create policy admin_read on webhooks.subscriptions for select to admin, platform_admin using (true);
comment on policy admin_read on webhooks.subscriptions is 'Admins read every subscription (never a secret: that is another table).';
create policy admin_read on webhooks.events for select to admin, platform_admin using (true);
comment on policy admin_read on webhooks.events is 'Admins read every event.';
create policy admin_read on webhooks.deliveries for select to admin, platform_admin using (true);
comment on policy admin_read on webhooks.deliveries is 'Admins read every delivery.';
create policy admin_read on webhooks.attempts for select to admin, platform_admin using (true);
comment on policy admin_read on webhooks.attempts is 'Admins read every attempt.';
create policy admin_read on webhooks.dispatchers for select to admin, platform_admin using (true);
comment on policy admin_read on webhooks.dispatchers is 'Admins read the dispatchers'' heartbeats.';
create policy admin_read on webhooks.event_types for select to admin, platform_admin using (true);
comment on policy admin_read on webhooks.event_types is 'Admins read the event types.';
create policy admin_read on webhooks.payload_shapes for select to admin, platform_admin using (true);
comment on policy admin_read on webhooks.payload_shapes is 'Admins read the payload shapes (webhooks.event_data composes payloads with them).';

-- -------------------------------------------------------------------------------------------------
-- Views
-- -------------------------------------------------------------------------------------------------

create view api.webhook_event_types with (security_invoker = true) as
select t.event_type, t.aggregate_type, t.description
  from webhooks.event_types t;
comment on view api.webhook_event_types is $$Webhook event types
The event types a subscription can ask for.$$;
grant select on api.webhook_event_types to admin, platform_admin;

create view api.webhook_subscriptions with (security_invoker = true) as
select s.id, s.url, s.description, s.event_types, s.status, s.disabled_reason, s.disabled_at,
       s.created_at, s.created_by, s.updated_at, s.updated_by,
       -- Each count and "last" is one range of index 2 (subscription_id, status, created_at).
       (select count(*) from webhooks.deliveries d where d.subscription_id = s.id and d.status = 'PENDING') as pending,
       (select count(*) from webhooks.deliveries d where d.subscription_id = s.id and d.status = 'SENDING') as sending,
       (select count(*) from webhooks.deliveries d where d.subscription_id = s.id and d.status = 'DELIVERED') as delivered,
       (select count(*) from webhooks.deliveries d where d.subscription_id = s.id and d.status = 'FAILED') as failed,
       (select count(*) from webhooks.deliveries d where d.subscription_id = s.id and d.status = 'SKIPPED') as skipped,
       (select d.delivered_at from webhooks.deliveries d where d.subscription_id = s.id and d.status = 'DELIVERED'
         order by d.created_at desc limit 1) as last_success_at,
       (select d.finished_at from webhooks.deliveries d where d.subscription_id = s.id and d.status = 'FAILED'
         order by d.created_at desc limit 1) as last_failure_at
  from webhooks.subscriptions s;
comment on view api.webhook_subscriptions is $$Webhook subscriptions
Each consumer's URL, event types and status, with its deliveries counted by status and its last success and failure. Never a secret.$$;
grant select on api.webhook_subscriptions to admin, platform_admin;

create view api.webhook_events with (security_invoker = true) as
select e.id, e.event_type, e.aggregate_type, e.aggregate_id, e.idempotency_key, e.occurred_at, e.created_at,
       webhooks.event_body(e)::jsonb as payload
  from webhooks.events e;
comment on view api.webhook_events is $$Webhook events
Every business event with its payload (the body sent, as JSON). Filter by event_type and occurred_at.$$;
grant select on api.webhook_events to admin, platform_admin;

create view api.webhook_deliveries with (security_invoker = true) as
select d.id, d.event_id, e.event_type, d.subscription_id, d.status, d.attempts, d.next_attempt_at,
       d.next_trigger, d.lease_owner, d.lease_until, d.last_status_code, d.last_error,
       d.created_at, d.updated_at, d.delivered_at, d.finished_at
  from webhooks.deliveries d
  join webhooks.events e on e.id = d.event_id;
comment on view api.webhook_deliveries is $$Webhook deliveries
The outbox: one row per event and subscription, PENDING, SENDING, DELIVERED, FAILED or SKIPPED.$$;
grant select on api.webhook_deliveries to admin, platform_admin;

create view api.webhook_attempts with (security_invoker = true) as
select a.id, a.delivery_id, a.attempt, a.dispatcher, a.trigger, a.started_at, a.duration_ms,
       a.status_code, a.error_class, a.response_snippet, a.created_at
  from webhooks.attempts a;
comment on view api.webhook_attempts is $$Webhook attempts
One row per HTTP try: status code or error class, duration, the first KiB of the answer.$$;
grant select on api.webhook_attempts to admin, platform_admin;

create view api.webhook_dispatchers with (security_invoker = true) as
select h.name, h.started_at, h.last_seen_at,
       round(extract(epoch from now() - h.last_seen_at)::numeric, 3) as seconds_since_seen, h.info
  from webhooks.dispatchers h;
comment on view api.webhook_dispatchers is $$Webhook dispatchers
One heartbeat row per dispatcher and how long ago it was seen.$$;
grant select on api.webhook_dispatchers to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- Functions
-- -------------------------------------------------------------------------------------------------

create function webhooks.validate_subscription_input(p_url text, p_event_types text[], p_description text)
returns text[]
language plpgsql
stable
set search_path = ''
as $$
-- Registered errors for bad input (null arguments are "unchanged" and pass); returns the event
-- types with ["*"] expanded to all of them.
declare
    v_problem text := case when p_url is not null then webhooks.url_problem(p_url) end;
begin
    if v_problem is not null then
        perform ops.raise_error('WEBHOOK_INVALID_URL', v_problem);
    end if;
    if p_description is not null and length(p_description) > 1000 then
        perform ops.raise_error('INVALID_ARGUMENT', 'description is longer than 1000 characters');
    end if;
    if p_event_types is null then
        return null;
    end if;
    if cardinality(p_event_types) = 0 or array_position(p_event_types, null) is not null then
        perform ops.raise_error('INVALID_ARGUMENT', 'event_types must be a non-empty list of event types, or ["*"]');
    end if;
    if p_event_types = array['*'] then
        return array(select t.event_type from webhooks.event_types t order by t.event_type);
    end if;
    return p_event_types;  -- unknown names: WEBHOOK_UNKNOWN_EVENT_TYPE from the table's trigger
end
$$;
comment on function webhooks.validate_subscription_input(text, text[], text) is
    'Raise registered errors for a bad URL, description or event type list; expand ["*"].';

create function webhooks.subscription_json(p_id bigint)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select to_jsonb(s) from api.webhook_subscriptions s where s.id = p_id
$$;
comment on function webhooks.subscription_json(bigint) is 'One row of api.webhook_subscriptions as JSON.';

create function api.create_webhook_subscription(url text, event_types text[], description text default null)
returns json
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- A new ACTIVE subscription and its first secret, returned this once.
declare
    v_types text[] := webhooks.validate_subscription_input(url, event_types, description);
    v_id bigint;
    v_secret text := webhooks.new_secret();
begin
    if url is null then
        perform ops.raise_error('WEBHOOK_INVALID_URL', 'url is required');
    end if;
    if v_types is null then
        perform ops.raise_error('INVALID_ARGUMENT', 'event_types is required (a list of event types, or ["*"])');
    end if;
    insert into webhooks.subscriptions (url, description, event_types, created_by, updated_by)
    values (url, description, v_types, auth.actor(), auth.actor())
    returning id into v_id;
    insert into webhooks.secrets (subscription_id, secret) values (v_id, v_secret);
    return (webhooks.subscription_json(v_id) || jsonb_build_object('secret', v_secret))::json;
end
$$;
comment on function api.create_webhook_subscription(text, text[], text) is $$Create a webhook subscription
url: absolute http(s), no credentials, at most 2,048 characters; event_types: a non-empty list of event types, or ["*"] for all. The answer holds the signing secret (whsec_...), shown this once.$$;
grant execute on function api.create_webhook_subscription(text, text[], text) to admin, platform_admin;

create function api.update_webhook_subscription(id bigint, url text default null, event_types text[] default null,
                                                description text default null)
returns api.webhook_subscriptions
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Change url, event types and/or description (omitted = unchanged). New events follow the new types.
declare
    v_types text[] := webhooks.validate_subscription_input(url, event_types, description);
    v_row api.webhook_subscriptions;
begin
    update webhooks.subscriptions s
       set url = coalesce(update_webhook_subscription.url, s.url),
           event_types = coalesce(v_types, s.event_types),
           description = coalesce(update_webhook_subscription.description, s.description),
           updated_at = now(), updated_by = auth.actor()
     where s.id = update_webhook_subscription.id;
    if not found then
        perform ops.raise_error('WEBHOOK_SUBSCRIPTION_NOT_FOUND', coalesce(update_webhook_subscription.id::text, 'null'));
    end if;
    select * into v_row from api.webhook_subscriptions s where s.id = update_webhook_subscription.id;
    return v_row;
end
$$;
comment on function api.update_webhook_subscription(bigint, text, text[], text) is $$Update a webhook subscription
The plan's PUT: url, event_types and description, each optional (omitted = unchanged).$$;
grant execute on function api.update_webhook_subscription(bigint, text, text[], text) to admin, platform_admin;

create function api.disable_webhook_subscription(id bigint)
returns api.webhook_subscriptions
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- The plan's DELETE: DISABLED (reason MANUAL), history kept; pending deliveries become SKIPPED.
declare
    v_row api.webhook_subscriptions;
begin
    perform webhooks.disable_subscription(disable_webhook_subscription.id, 'MANUAL', auth.actor());
    select * into v_row from api.webhook_subscriptions s where s.id = disable_webhook_subscription.id;
    return v_row;
end
$$;
comment on function api.disable_webhook_subscription(bigint) is $$Disable a webhook subscription
The plan's DELETE: the subscription is DISABLED (reason MANUAL) and kept with its history; its pending deliveries and new events are SKIPPED.$$;
grant execute on function api.disable_webhook_subscription(bigint) to admin, platform_admin;

create function api.enable_webhook_subscription(id bigint, recover_since timestamptz default null)
returns json
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- DISABLED -> ACTIVE; with recover_since, its SKIPPED and FAILED deliveries since then are requeued.
declare
    v_n integer := 0;
begin
    if recover_since is not null and recover_since > now() then
        perform ops.raise_error('INVALID_ARGUMENT', 'recover_since must not be in the future');
    end if;
    update webhooks.subscriptions s
       set status = 'ACTIVE', disabled_reason = null, disabled_at = null, updated_at = now(), updated_by = auth.actor()
     where s.id = enable_webhook_subscription.id;
    if not found then
        perform ops.raise_error('WEBHOOK_SUBSCRIPTION_NOT_FOUND', coalesce(enable_webhook_subscription.id::text, 'null'));
    end if;
    if recover_since is not null then
        v_n := webhooks.requeue(enable_webhook_subscription.id, recover_since, null, 'recover');
    end if;
    return (webhooks.subscription_json(enable_webhook_subscription.id) || jsonb_build_object('requeued', v_n))::json;
end
$$;
comment on function api.enable_webhook_subscription(bigint, timestamptz) is $$Enable a webhook subscription
ACTIVE again; with recover_since, the SKIPPED and FAILED deliveries created since then are sent again (requeued: how many).$$;
grant execute on function api.enable_webhook_subscription(bigint, timestamptz) to admin, platform_admin;

create function api.rotate_webhook_secret(id bigint, grace_seconds integer default null)
returns json
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- A new current secret; the previous one stays valid for grace_seconds (default settings.secret_grace).
declare
    v_grace interval;
    v_secret text := webhooks.new_secret();
    v_expires timestamptz;
begin
    if grace_seconds is not null and grace_seconds not between 0 and 30 * 86400 then
        perform ops.raise_error('INVALID_ARGUMENT', 'grace_seconds must be between 0 and 2592000 (30 days)');
    end if;
    v_grace := coalesce(make_interval(secs => grace_seconds), (select s.secret_grace from webhooks.settings s where s.id));
    -- FOR UPDATE on the subscription: concurrent rotations queue here instead of both demoting the
    -- same current secret and colliding on the one-current-secret index.
    perform 1 from webhooks.subscriptions s where s.id = rotate_webhook_secret.id for update;
    if not found then
        perform ops.raise_error('WEBHOOK_SUBSCRIPTION_NOT_FOUND', coalesce(rotate_webhook_secret.id::text, 'null'));
    end if;
    v_expires := now() + v_grace;
    update webhooks.secrets k set expires_at = v_expires
     where k.subscription_id = rotate_webhook_secret.id and k.expires_at is null;
    -- Older secrets still in grace never outlive the one just demoted.
    update webhooks.secrets k set expires_at = least(k.expires_at, v_expires)
     where k.subscription_id = rotate_webhook_secret.id and k.expires_at > v_expires;
    insert into webhooks.secrets (subscription_id, secret) values (rotate_webhook_secret.id, v_secret);
    update webhooks.subscriptions s set updated_at = now(), updated_by = auth.actor() where s.id = rotate_webhook_secret.id;
    return json_build_object('subscription_id', rotate_webhook_secret.id, 'secret', v_secret,
                             'previous_secret_expires_at', v_expires);
end
$$;
comment on function api.rotate_webhook_secret(bigint, integer) is $$Rotate a webhook signing secret
Returns the new secret, shown this once. The previous one stays valid for grace_seconds (default 24 h): deliveries are signed with both meanwhile.$$;
grant execute on function api.rotate_webhook_secret(bigint, integer) to admin, platform_admin;

create function api.retry_webhook_delivery(delivery_id bigint)
returns api.webhook_deliveries
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- The plan's manual retry: FAILED or SKIPPED -> PENDING now (trigger manual), a fresh retry schedule.
declare
    v_d webhooks.deliveries;
    v_sub_status text;
    v_row api.webhook_deliveries;
begin
    -- FOR UPDATE: the dispatcher's record_attempt or a concurrent retry must not interleave.
    select * into v_d from webhooks.deliveries d where d.id = retry_webhook_delivery.delivery_id for update;
    if not found then
        perform ops.raise_error('WEBHOOK_DELIVERY_NOT_FOUND', coalesce(retry_webhook_delivery.delivery_id::text, 'null'));
    end if;
    if v_d.status not in ('FAILED', 'SKIPPED') then
        perform ops.raise_error('WEBHOOK_DELIVERY_NOT_RETRYABLE', v_d.id::text, v_d.status);
    end if;
    select s.status into v_sub_status from webhooks.subscriptions s where s.id = v_d.subscription_id;
    if v_sub_status <> 'ACTIVE' then
        perform ops.raise_error('WEBHOOK_SUBSCRIPTION_DISABLED', v_d.subscription_id::text);
    end if;
    update webhooks.deliveries d
       set status = 'PENDING', attempts_at_requeue = d.attempts, next_attempt_at = now(),
           next_trigger = 'manual', delivered_at = null, finished_at = null, updated_at = now()
     where d.id = v_d.id;
    select * into v_row from api.webhook_deliveries d where d.id = v_d.id;
    return v_row;
end
$$;
comment on function api.retry_webhook_delivery(bigint) is $$Retry a webhook delivery
The plan's manual retry: a FAILED or SKIPPED delivery is sent again now (409 for any other status).$$;
grant execute on function api.retry_webhook_delivery(bigint) to admin, platform_admin;

create function api.recover_webhook_deliveries(subscription_id bigint, since timestamptz, until timestamptz default null)
returns json
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Bulk recovery: FAILED and SKIPPED deliveries of one subscription created in [since, until) -> PENDING.
declare
    v_status text;
begin
    if since is null or (until is not null and until <= since) then
        perform ops.raise_error('INVALID_ARGUMENT', 'since is required and must be before until');
    end if;
    select s.status into v_status from webhooks.subscriptions s where s.id = recover_webhook_deliveries.subscription_id;
    if not found then
        perform ops.raise_error('WEBHOOK_SUBSCRIPTION_NOT_FOUND', coalesce(recover_webhook_deliveries.subscription_id::text, 'null'));
    end if;
    if v_status <> 'ACTIVE' then
        perform ops.raise_error('WEBHOOK_SUBSCRIPTION_DISABLED', recover_webhook_deliveries.subscription_id::text);
    end if;
    return json_build_object('requeued',
        webhooks.requeue(recover_webhook_deliveries.subscription_id, since, until, 'recover'));
end
$$;
comment on function api.recover_webhook_deliveries(bigint, timestamptz, timestamptz) is $$Recover webhook deliveries
Sends again every FAILED or SKIPPED delivery of a subscription created in [since, until); answers {requeued: n}.$$;
grant execute on function api.recover_webhook_deliveries(bigint, timestamptz, timestamptz) to admin, platform_admin;

create function api.health_webhooks()
returns json
language sql
stable
security definer
set search_path = ''
as $$
    -- Counts and ages only (anon-safe): no URL, event or subscription detail leaves this function.
    with due as (
        select count(*) as backlog,
               count(*) filter (where d.status = 'SENDING') as in_flight,
               min(d.created_at) filter (where d.status = 'PENDING') as oldest_pending
          from webhooks.deliveries d
         where d.status in ('PENDING', 'SENDING')
    )
    select json_build_object(
        'status', case when (select oldest_pending from due) < now() - interval '15 minutes' then 'degraded' else 'ok' end,
        'backlog', (select backlog from due),
        'in_flight', (select in_flight from due),
        'oldest_pending_age_s', coalesce(round(extract(epoch from now() - (select oldest_pending from due))::numeric, 3), 0),
        'failed_last_hour', (select count(*) from webhooks.deliveries d
                              where d.status = 'FAILED' and d.finished_at > now() - interval '1 hour'),
        'dispatchers_alive', (select count(*) from webhooks.dispatchers h where h.last_seen_at > now() - interval '60 seconds'),
        'checked_at', clock_timestamp())
$$;
comment on function api.health_webhooks() is $$Webhook health
Backlog (pending + in flight), oldest pending delivery's age (s), deliveries FAILED in the last hour, dispatchers seen in the last minute.$$;
grant execute on function api.health_webhooks() to anon, admin, platform_admin, service, agent;
