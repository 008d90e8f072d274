-- 0006 webhooks (issue 9): schema webhooks (outbox, events, subscriptions, secrets, attempts), emission
-- triggers on the business tables, the dispatcher's functions, the retention job, the admin API.
-- The same text as sql/200_webhooks_schema.sql, sql/210_webhooks_emit.sql, sql/220_webhooks_dispatch.sql
-- and sql/820_api_webhooks.sql (tests/test_migrations.py compares the two builds).
-- depends: 0004.api

-- =================================================================================================
-- 200 Webhooks: schema (the transactional outbox)
-- subscriptions -> secrets (never readable by a request role) ; events (append-only, one per business
-- fact) -> deliveries (the outbox: one row per event and subscription) -> attempts (one per HTTP try).
-- Enumerations are data (event_types, error_classes, retry_schedule), settings one typed row.
-- Emission triggers: 210_webhooks_emit.sql; the dispatcher's functions: 220_webhooks_dispatch.sql.
-- =================================================================================================

create schema webhooks;
comment on schema webhooks is 'Signed webhooks: subscriptions, secrets, events, the delivery outbox and attempts (private).';

-- Secrets are whsec_ + base64 of random bytes from pgcrypto's gen_random_bytes (pg_strong_random).
create extension if not exists pgcrypto with schema public;

-- -------------------------------------------------------------------------------------------------
-- Enumerations and settings as data
-- -------------------------------------------------------------------------------------------------

create table webhooks.event_types (
    event_type      text not null,
    aggregate_type  text not null,
    description     text not null,
    constraint event_types_pkey primary key (event_type),
    constraint event_types_name_format_check check (event_type ~ '^[a-z]+\.[a-z_]+$'),
    constraint event_types_aggregate_type_check check (aggregate_type in ('order', 'payment', 'refund', 'shipment'))
);
alter table webhooks.event_types enable row level security;
comment on table webhooks.event_types is 'The event types a subscription can ask for (ARCHITECTURE.md "Events": all 11).';

insert into webhooks.event_types (event_type, aggregate_type, description) values
    ('order.confirmed',     'order',    'An order was paid and confirmed (PENDING -> CONFIRMED).'),
    ('order.cancelled',     'order',    'An order was cancelled.'),
    ('order.delivered',     'order',    'An order was delivered.'),
    ('payment.captured',    'payment',  'A payment was captured.'),
    ('payment.failed',      'payment',  'A payment failed (declined, or its order was cancelled).'),
    ('refund.initiated',    'refund',   'A refund was started.'),
    ('refund.completed',    'refund',   'A refund was completed and reversed in the ledger.'),
    ('shipment.assigned',   'shipment', 'A delivery agent accepted the shipping assignment.'),
    ('shipment.picked_up',  'shipment', 'The agent picked the parcel up.'),
    ('shipment.in_transit', 'shipment', 'The parcel is on its way.'),
    ('shipment.failed',     'shipment', 'The delivery failed (the order goes back to CONFIRMED when it had shipped).');

create table webhooks.error_classes (
    error_class  text not null,
    description  text not null,
    constraint error_classes_pkey primary key (error_class),
    constraint error_classes_format_check check (error_class ~ '^[a-z][a-z0-9_]+$')
);
alter table webhooks.error_classes enable row level security;
comment on table webhooks.error_classes is 'Why an HTTP try failed: the vocabulary of webhooks.attempts.error_class.';

insert into webhooks.error_classes (error_class, description) values
    ('timeout',                 'No complete answer within the timeout (10 s).'),
    ('connect',                 'The TCP connection failed or was reset.'),
    ('refused',                 'The receiver refused the connection.'),
    ('dns',                     'The host name did not resolve.'),
    ('tls',                     'The TLS handshake or certificate check failed.'),
    ('refused_private_address', 'The host resolved to a private, loopback, link-local or multicast address (SSRF guard).'),
    ('http_3xx',                'The receiver answered a redirect; redirects are not followed.'),
    ('http_4xx',                'The receiver answered 4xx.'),
    ('http_5xx',                'The receiver answered 5xx.'),
    ('lease_expired',           'The dispatcher holding the delivery stopped (crash) before recording the try.'),
    ('other',                   'Any other failure; the response snippet says more.');

create table webhooks.retry_schedule (
    retry  smallint not null,
    delay  interval not null,
    constraint retry_schedule_pkey primary key (retry),
    constraint retry_schedule_retry_positive_check check (retry > 0),
    constraint retry_schedule_delay_positive_check check (delay > interval '0')
);
alter table webhooks.retry_schedule enable row level security;
comment on table webhooks.retry_schedule is
    'Delay before retry N after a failed try (plan C4); a failure with no row for the next retry is final (FAILED).';

insert into webhooks.retry_schedule (retry, delay) values
    (1, '30 seconds'), (2, '60 seconds'), (3, '120 seconds'), (4, '300 seconds'), (5, '900 seconds');

create table webhooks.settings (
    id                 boolean not null default true,
    retention          interval not null default '30 days',
    prune_batch_size   integer not null default 500,
    prune_max_batches  integer not null default 200,
    secret_grace       interval not null default '24 hours',
    retry_jitter       numeric not null default 0.1,
    retry_after_max    interval not null default '1 hour',
    constraint settings_pkey primary key (id),
    constraint settings_single_row_check check (id),
    constraint settings_retention_positive_check check (retention > interval '0'),
    constraint settings_prune_batch_size_range_check check (prune_batch_size between 1 and 100000),
    constraint settings_prune_max_batches_positive_check check (prune_max_batches > 0),
    constraint settings_secret_grace_nonnegative_check check (secret_grace >= interval '0'),
    constraint settings_retry_jitter_range_check check (retry_jitter between 0 and 1),
    constraint settings_retry_after_max_positive_check check (retry_after_max > interval '0')
);
alter table webhooks.settings enable row level security;
comment on table webhooks.settings is 'Webhook settings (one row): retention of finished deliveries, prune batch, secret grace, retry jitter.';
comment on column webhooks.settings.retention is 'Finished deliveries (and their attempts, then orphaned events) older than this are pruned.';
comment on column webhooks.settings.prune_batch_size is 'Rows deleted per prune batch (small: short locks, small WAL bursts).';
comment on column webhooks.settings.secret_grace is 'Default time a rotated-out secret stays valid (receivers switch over meanwhile).';
comment on column webhooks.settings.retry_jitter is 'Retry delays are stretched by a random 0..jitter fraction so failures do not retry in lockstep.';
insert into webhooks.settings default values;

-- The webhook rules' error codes (the registry itself is sql/050_ops_errors.sql).
insert into ops.error_codes (code, sqlstate, http_status, message, hint, retryable) values
    ('WEBHOOK_SUBSCRIPTION_NOT_FOUND', 'PGRST', 404, 'webhook subscription %s does not exist', null, false),
    ('WEBHOOK_DELIVERY_NOT_FOUND',     'PGRST', 404, 'webhook delivery %s does not exist', null, false),
    ('WEBHOOK_INVALID_URL',            'PGRST', 422, 'invalid webhook url: %s', 'Use an absolute http(s) URL without credentials, at most 2,048 characters.', false),
    ('WEBHOOK_UNKNOWN_EVENT_TYPE',     'PGRST', 422, 'unknown webhook event type %s', 'GET /webhook_event_types lists them; ["*"] subscribes to all.', false),
    ('WEBHOOK_DELIVERY_NOT_RETRYABLE', 'PGRST', 409, 'webhook delivery %s is %s; only FAILED or SKIPPED deliveries can be retried', null, false),
    ('WEBHOOK_SUBSCRIPTION_DISABLED',  'PGRST', 409, 'webhook subscription %s is disabled', 'Enable it first (POST /rpc/enable_webhook_subscription).', false),
    ('WEBHOOK_EVENTS_IMMUTABLE',       'PGRST', 500, 'webhook events are append-only', null, false),
    ('WEBHOOK_ROW_PERMANENT',          'PGRST', 500, 'rows of webhooks.%s are never deleted or re-keyed', 'Disable a subscription instead of deleting it.', false);

-- -------------------------------------------------------------------------------------------------
-- Subscriptions and their secrets
-- -------------------------------------------------------------------------------------------------

create function webhooks.url_problem(p_url text)
returns text
language sql
immutable
set search_path = ''
as $$
    -- Why p_url is not an acceptable webhook URL, or null: absolute http(s), a host, no credentials
    -- (user:pass@), no fragment, no whitespace, at most 2,048 characters.
    select case
        when p_url is null then 'url is required'
        when length(p_url) > 2048 then 'url is longer than 2048 characters'
        when p_url ~ '[[:space:][:cntrl:]]' then 'url contains whitespace or control characters'
        when p_url !~* '^https?://' then 'url must be absolute http:// or https://'
        when substring(p_url from '^[A-Za-z]+://([^/?#]*)') like '%@%' then 'url must not contain credentials'
        when substring(p_url from '^[A-Za-z]+://([^/?#]*)') !~ '^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?$'
            then 'url has no valid host'
        when p_url ~ '#' then 'url must not contain a fragment'
    end
$$;
comment on function webhooks.url_problem(text) is 'Why a URL is not an acceptable webhook target (null when it is).';

create table webhooks.subscriptions (
    id               bigint generated always as identity,
    url              text not null,
    description      text,
    event_types      text[] not null,
    status           text not null default 'ACTIVE',
    disabled_reason  text,
    disabled_at      timestamptz,
    created_at       timestamptz not null default now(),
    created_by       text not null,
    updated_at       timestamptz not null default now(),
    updated_by       text not null,
    constraint subscriptions_pkey primary key (id),
    constraint subscriptions_url_valid_check check (webhooks.url_problem(url) is null),
    constraint subscriptions_event_types_nonempty_check
        check (cardinality(event_types) > 0 and array_position(event_types, null) is null),
    constraint subscriptions_description_length_check check (length(description) <= 1000),
    constraint subscriptions_status_check check (status in ('ACTIVE', 'DISABLED')),
    constraint subscriptions_disabled_reason_check check (disabled_reason in ('MANUAL', 'GONE')),
    constraint subscriptions_disabled_has_reason_check
        check ((status = 'DISABLED') = (disabled_reason is not null and disabled_at is not null))
);
alter table webhooks.subscriptions enable row level security;
comment on table webhooks.subscriptions is 'Webhook consumers: a URL and the event types it wants; DISABLED keeps history (reason MANUAL or GONE).';
comment on column webhooks.subscriptions.event_types is 'A non-empty subset of webhooks.event_types (checked by the functions that write it).';
comment on column webhooks.subscriptions.disabled_reason is 'MANUAL (an admin disabled it) or GONE (the receiver answered 410).';

create function webhooks.tg_subscriptions__check_event_types()
returns trigger
language plpgsql
set search_path = ''
as $$
-- BEFORE INSERT OR UPDATE OF event_types: every element must be a known event type (an array
-- cannot hold a foreign key, so this trigger is its stand-in); stored sorted and distinct.
declare
    v_unknown text;
begin
    select min(t) into v_unknown
      from unnest(new.event_types) t
     where not exists (select 1 from webhooks.event_types e where e.event_type = t);
    if v_unknown is not null then
        perform ops.raise_error('WEBHOOK_UNKNOWN_EVENT_TYPE', v_unknown);
    end if;
    new.event_types := array(select distinct t from unnest(new.event_types) t order by t);
    return new;
end
$$;
comment on function webhooks.tg_subscriptions__check_event_types() is
    'Trigger: refuses unknown event types in a subscription (the array''s foreign key); sorts and dedups them.';
create trigger _010_check_event_types
    before insert or update of event_types on webhooks.subscriptions
    for each row execute function webhooks.tg_subscriptions__check_event_types();
comment on trigger _010_check_event_types on webhooks.subscriptions is 'Only known event types, sorted and distinct.';

-- Why no foreign keys from events.event_type and deliveries.subscription_id: a foreign key check
-- takes FOR KEY SHARE on the referenced row, and every business transaction references the same
-- few rows (one subscription to everything, 11 event types). Concurrent KEY SHARE lockers of one
-- row share it through a MultiXact that each new locker rebuilds with all current members: at 32
-- clients every commit paid for it (bench/outbox.py, docs/performance.md). Instead the referenced
-- rows can never go away: emit() reads them to write the references, and this trigger refuses to
-- delete them or change their key (a subscription is disabled, never deleted: its history stays).
create function webhooks.tg_keep_referenced_rows()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    perform ops.raise_error('WEBHOOK_ROW_PERMANENT', tg_table_name);
    return null;
end
$$;
comment on function webhooks.tg_keep_referenced_rows() is
    'Trigger: subscriptions and event types are never deleted or re-keyed (they stand in for foreign keys).';
create trigger _020_keep
    before delete or update of id on webhooks.subscriptions
    for each row execute function webhooks.tg_keep_referenced_rows();
comment on trigger _020_keep on webhooks.subscriptions is 'Subscriptions are never deleted (disable them): deliveries refer to them.';
create trigger _020_keep_truncate
    before truncate on webhooks.subscriptions
    for each statement execute function webhooks.tg_keep_referenced_rows();
comment on trigger _020_keep_truncate on webhooks.subscriptions is 'No TRUNCATE of subscriptions either.';
create trigger _020_keep
    before delete or update of event_type on webhooks.event_types
    for each row execute function webhooks.tg_keep_referenced_rows();
comment on trigger _020_keep on webhooks.event_types is 'Event types are never deleted or renamed: events refer to them.';

create table webhooks.secrets (
    id               bigint generated always as identity,
    subscription_id  bigint not null,
    secret           text not null,
    created_at       timestamptz not null default now(),
    expires_at       timestamptz,
    constraint secrets_pkey primary key (id),
    constraint secrets_subscription_id_fkey foreign key (subscription_id) references webhooks.subscriptions (id),
    -- Standard Webhooks: whsec_ + base64 of the key; 24-64 bytes is 32-88 base64 characters.
    constraint secrets_secret_format_check
        check (secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'
               and length(decode(substr(secret, 7), 'base64')) between 24 and 64),
    constraint secrets_secret_key unique (secret),
    constraint secrets_expiry_after_creation_check check (expires_at is null or expires_at >= created_at)
);
alter table webhooks.secrets enable row level security;
comment on table webhooks.secrets is
    'Signing secrets (whsec_ + base64 of random bytes). No request role may read them; the dispatcher gets them through a function.';
comment on column webhooks.secrets.expires_at is 'Null for the current secret; a rotated-out secret stays valid until then (grace period).';
-- Why: the dispatcher reads one subscription's valid secrets per claimed delivery (newest first).
create index secrets_subscription_id_idx on webhooks.secrets (subscription_id, id desc);
comment on index webhooks.secrets_subscription_id_idx is 'Serves the subscriptions FK and "valid secrets of subscription X, newest first".';
-- At most one current (unexpiring) secret per subscription.
create unique index secrets_subscription_id_current_key on webhooks.secrets (subscription_id) where expires_at is null;
comment on index webhooks.secrets_subscription_id_current_key is 'One current secret per subscription.';

create function webhooks.new_secret()
returns text
language sql
volatile
set search_path = ''
as $$
    -- 32 random bytes (256 bits, from pg_strong_random through pgcrypto), Standard Webhooks format.
    select 'whsec_' || encode(public.gen_random_bytes(32), 'base64')
$$;
comment on function webhooks.new_secret() is 'A fresh signing secret: whsec_ + base64 of 32 random bytes.';

-- -------------------------------------------------------------------------------------------------
-- Events (append-only)
-- -------------------------------------------------------------------------------------------------

create function webhooks.uuid_v7(p_at timestamptz default null)
returns uuid
language sql
volatile
as $$
    -- A time-ordered UUID (RFC 9562 version 7): 48 bits of Unix milliseconds, then the random bits
    -- of gen_random_uuid() (version nibble set to 7, variant kept). Why not gen_random_uuid(): a
    -- random key sends every insert to a random leaf of the primary key and of deliveries'
    -- (event_id, subscription_id) key - a full-page image after each checkpoint and a cache miss
    -- per insert; time-ordered keys append to the rightmost leaf. bench/outbox.py measured the
    -- outbox at 0.72 of the commit rate at 32 clients with random ids (docs/performance.md).
    -- No SET clause (every name qualified) so it inlines: with one it cost ~37 us per call.
    select encode(set_byte(overlay(r.b placing substring(int8send((extract(epoch from coalesce(p_at, clock_timestamp())) * 1000)::bigint) from 3)
                                   from 1 for 6),
                           6, (get_byte(r.b, 6) & 15) | 112), 'hex')::uuid
      from (select uuid_send(gen_random_uuid()) as b) r
$$;
comment on function webhooks.uuid_v7(timestamptz) is
    'A time-ordered (version 7) UUID: event ids, so inserts append to the end of their indexes; p_at gives the lower bound of a time.';

create table webhooks.events (
    id               uuid not null default webhooks.uuid_v7(),
    event_type       text not null,
    aggregate_type   text not null,
    aggregate_id     bigint not null,
    idempotency_key  text not null,
    occurred_at      timestamptz not null,
    created_at       timestamptz not null default now(),
    body             text not null,
    constraint events_pkey primary key (id),
    constraint events_idempotency_key_key unique (idempotency_key),
    constraint events_body_is_json_object_check check (left(body, 1) = '{')
);
alter table webhooks.events enable row level security;
comment on table webhooks.events is
    'Business events, append-only: id = payload eventId = webhook-id header; body = the exact bytes every try sends.';
comment on column webhooks.events.event_type is
    'A webhooks.event_types row, checked by webhooks.emit (no foreign key: see webhooks.tg_keep_referenced_rows).';
comment on column webhooks.events.idempotency_key is 'The same for the same business fact: type:aggregate:id[:version]; a repeat is not a new event.';
comment on column webhooks.events.body is
    'The payload {eventId, eventType, timestamp, idempotencyKey, data} serialized once at emission; every retry sends these bytes.';
-- The plan's "events by type and time": admins list recent events of one type (GET /webhook_events).
-- Equality column first, range column second: one index range per (type, period).
create index events_event_type_occurred_at_idx on webhooks.events (event_type, occurred_at desc);
comment on index webhooks.events_event_type_occurred_at_idx is
    'Serves "events of type T in a period, newest first" (plan index 3 of 3).';
-- Retention reads events oldest first through the primary key: ids are time-ordered (uuid_v7).

create function webhooks.tg_events__append_only()
returns trigger
language plpgsql
set search_path = ''
as $$
-- BEFORE UPDATE OR DELETE: events never change. Only webhooks.prune() deletes, past retention, and
-- says so with the transaction-local setting webhooks.pruning (the table is not granted to anyone).
begin
    if tg_op = 'DELETE' and current_setting('webhooks.pruning', true) = 'on' then
        return old;
    end if;
    perform ops.raise_error('WEBHOOK_EVENTS_IMMUTABLE');
    return null;
end
$$;
comment on function webhooks.tg_events__append_only() is 'Trigger: refuses UPDATE and DELETE of events (retention pruning excepted).';
create trigger _010_append_only
    before update or delete on webhooks.events
    for each row execute function webhooks.tg_events__append_only();
comment on trigger _010_append_only on webhooks.events is 'Events are append-only.';
create trigger _011_no_truncate
    before truncate on webhooks.events
    for each statement execute function webhooks.tg_events__append_only();
comment on trigger _011_no_truncate on webhooks.events is 'Events are append-only: no TRUNCATE either.';

-- -------------------------------------------------------------------------------------------------
-- Deliveries (the outbox) and attempts
-- -------------------------------------------------------------------------------------------------

create table webhooks.deliveries (
    id                bigint generated always as identity,
    event_id          uuid not null,
    subscription_id   bigint not null,
    status            text not null default 'PENDING',
    attempts          integer not null default 0,
    attempts_at_requeue integer not null default 0,
    next_attempt_at   timestamptz,
    next_trigger      text not null default 'scheduled',
    lease_owner       text,
    lease_token       uuid,
    lease_until       timestamptz,
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    delivered_at      timestamptz,
    finished_at       timestamptz,
    constraint deliveries_pkey primary key (id),
    constraint deliveries_event_id_subscription_id_key unique (event_id, subscription_id),
    constraint deliveries_status_check check (status in ('PENDING', 'SENDING', 'DELIVERED', 'FAILED', 'SKIPPED')),
    constraint deliveries_attempts_nonnegative_check check (attempts >= 0),
    constraint deliveries_attempts_at_requeue_range_check check (attempts_at_requeue between 0 and attempts),
    constraint deliveries_next_trigger_check check (next_trigger in ('scheduled', 'manual', 'recover')),
    -- Due rows are found by next_attempt_at alone: a SENDING row is due again when its lease expires.
    constraint deliveries_due_has_time_check
        check ((status in ('PENDING', 'SENDING')) = (next_attempt_at is not null)),
    constraint deliveries_sending_has_lease_check
        check ((status = 'SENDING') = (lease_owner is not null and lease_token is not null and lease_until is not null)
               and (status <> 'SENDING' or next_attempt_at = lease_until)),
    constraint deliveries_delivered_has_timestamp_check check ((status = 'DELIVERED') = (delivered_at is not null)),
    constraint deliveries_finished_has_timestamp_check
        check ((status in ('DELIVERED', 'FAILED', 'SKIPPED')) = (finished_at is not null)),
    constraint deliveries_last_status_code_range_check check (last_status_code between 100 and 599)
);
alter table webhooks.deliveries enable row level security;
comment on column webhooks.deliveries.event_id is
    'The webhooks.events row, written with it by webhooks.emit (no foreign key: events are append-only and retention deletes an event only once no delivery refers to it; a foreign key check would lock the event row and write one more WAL record per delivery).';
comment on column webhooks.deliveries.subscription_id is
    'A webhooks.subscriptions row, taken from it by webhooks.emit (no foreign key: see webhooks.tg_keep_referenced_rows).';
comment on table webhooks.deliveries is
    'The outbox: one row per (event, subscription). PENDING -> SENDING (leased) -> DELIVERED, back to PENDING for a retry, or FAILED; SKIPPED while the subscription is disabled.';
comment on column webhooks.deliveries.attempts is 'HTTP tries recorded so far (each is a webhooks.attempts row).';
comment on column webhooks.deliveries.attempts_at_requeue is
    'attempts when an admin last requeued the row: the retry schedule counts tries from there (attempt numbers go on).';
comment on column webhooks.deliveries.next_attempt_at is
    'When the row is due: PENDING - its next try; SENDING - its lease expiry (a crashed dispatcher''s row is then claimed again).';
comment on column webhooks.deliveries.next_trigger is 'Why the next try happens: scheduled, manual (admin retry) or recover (requeued, or lease expired).';
comment on column webhooks.deliveries.lease_owner is 'The dispatcher holding the lease (SENDING only).';
comment on column webhooks.deliveries.lease_token is
    'Fencing token of the current claim: record_attempt must present it, so a dispatcher that lost its lease cannot record over the new holder.';

-- The plan's "due PENDING rows by next attempt", extended to SENDING rows (due = lease expired) so
-- that one small index serves the claim, the lease recovery and next_due_at(). Partial: finished
-- rows (the vast majority) are not in it, so it stays the size of the backlog.
-- Measured: docs/indexes.md (make explain) and docs/performance.md (size after the outbox bench).
create index deliveries_due_idx on webhooks.deliveries (next_attempt_at) where status in ('PENDING', 'SENDING');
comment on index webhooks.deliveries_due_idx is
    'Serves claim_deliveries and next_due_at: due rows by time (partial on PENDING/SENDING; plan index 1 of 3).';
-- The plan's "deliveries by subscription and status": the admin list of one subscription's FAILED
-- rows newest first, the per-subscription counts of GET /webhook_subscriptions and the in-flight
-- count of the claim's per-subscription limit.
create index deliveries_subscription_id_status_created_at_idx
    on webhooks.deliveries (subscription_id, status, created_at desc);
comment on index webhooks.deliveries_subscription_id_status_created_at_idx is
    'Serves per-subscription listings/counts by status and the in-flight limit (plan index 2 of 3).';
-- Admins list failures across subscriptions newest first (GET /webhook_deliveries?status=eq.FAILED
-- &order=created_at.desc) and health counts the last hour's: partial, so the business transaction's
-- PENDING inserts never touch it (an index per insert costs the lifecycle; docs/performance.md).
-- Retention walks the primary key instead (identity ids follow creation time).
create index deliveries_failed_created_at_idx on webhooks.deliveries (created_at desc) where status = 'FAILED';
comment on index webhooks.deliveries_failed_created_at_idx is
    'Serves "FAILED deliveries newest first" across subscriptions and the health check (partial on FAILED).';
-- The unique (event_id, subscription_id) key serves "the deliveries of event X" (event_id leads).

create table webhooks.attempts (
    id                bigint generated always as identity,
    delivery_id       bigint not null,
    attempt           integer not null,
    dispatcher        text not null,
    trigger           text not null,
    started_at        timestamptz not null,
    duration_ms       integer not null,
    status_code       integer,
    error_class       text,
    response_snippet  text,
    created_at        timestamptz not null default now(),
    constraint attempts_pkey primary key (id),
    constraint attempts_delivery_id_fkey foreign key (delivery_id) references webhooks.deliveries (id),
    constraint attempts_error_class_fkey foreign key (error_class) references webhooks.error_classes (error_class),
    constraint attempts_delivery_id_attempt_key unique (delivery_id, attempt),
    constraint attempts_attempt_positive_check check (attempt > 0),
    constraint attempts_trigger_check check (trigger in ('scheduled', 'manual', 'recover')),
    constraint attempts_duration_nonnegative_check check (duration_ms >= 0),
    constraint attempts_status_code_range_check check (status_code between 100 and 599),
    constraint attempts_outcome_check check (status_code between 200 and 299 and error_class is null
                                             or error_class is not null),
    constraint attempts_response_snippet_length_check check (octet_length(response_snippet) <= 1024)
);
alter table webhooks.attempts enable row level security;
comment on table webhooks.attempts is 'One row per HTTP try of a delivery: when, how long, the answer or the error class, and why it was tried.';
comment on column webhooks.attempts.response_snippet is 'The first bytes of the response body (at most 1 KiB, cut on a character boundary).';
comment on constraint attempts_delivery_id_attempt_key on webhooks.attempts is
    'One row per try number of a delivery; serves the deliveries FK and one delivery''s attempts in order.';
create index attempts_error_class_idx on webhooks.attempts (error_class) where error_class is not null;
comment on index webhooks.attempts_error_class_idx is 'Serves the error_classes FK (failed tries only).';

-- -------------------------------------------------------------------------------------------------
-- Dispatcher heartbeats and the wake-up flag
-- -------------------------------------------------------------------------------------------------

create table webhooks.dispatchers (
    name          text not null,
    started_at    timestamptz not null default now(),
    last_seen_at  timestamptz not null default now(),
    info          jsonb not null default '{}',
    constraint dispatchers_pkey primary key (name),
    constraint dispatchers_name_length_check check (length(name) between 1 and 200),
    constraint dispatchers_info_object_check check (jsonb_typeof(info) = 'object')
);
alter table webhooks.dispatchers enable row level security;
comment on table webhooks.dispatchers is 'One heartbeat row per dispatcher (webhooks.heartbeat); admins read it through api.webhook_dispatchers.';

create table webhooks.wakeup (
    id         boolean not null default true,
    armed      boolean not null default false,
    armed_at   timestamptz,
    armed_by   text,
    constraint wakeup_pkey primary key (id),
    constraint wakeup_single_row_check check (id)
);
alter table webhooks.wakeup enable row level security;
comment on table webhooks.wakeup is
    'Whether a dispatcher went idle and waits for NOTIFY webhooks: only then does a commit with new work notify (see 210_webhooks_emit.sql).';
insert into webhooks.wakeup default values;

-- =================================================================================================
-- 210 Webhooks: emission inside the business transaction
-- An AFTER trigger on each business status change writes the event and one delivery per subscription
-- to its type (PENDING if ACTIVE, SKIPPED if DISABLED) in the same transaction: an event exists if
-- and only if its change committed. Triggers with WHEN clauses: other changes cost no function call.
-- Seeding runs with session_replication_role = replica, so history is not news (no event at all).
--
-- Wake-up ("notify only when it matters"): NOTIFY takes a cluster-wide lock at commit and serialises
-- every committing transaction that sent one (bench/outbox.py measured it). So a commit notifies only
-- when a dispatcher has said it is idle (webhooks.arm_wakeup sets webhooks.wakeup.armed); the first
-- commit with new PENDING work disarms the flag and notifies, every other commit only reads one row.
-- The check runs in a deferred constraint trigger, i.e. at COMMIT, so the window in which a commit
-- can miss a dispatcher that is arming is the few microseconds between that check and the commit
-- record; the dispatcher's periodic sweep (30 s) covers it. Channel: webhooks, empty payload.
-- =================================================================================================

-- The helpers below are language sql without a SET clause (every name qualified), so the planner
-- inlines them into the callers: with SET search_path each call paid a GUC save/restore, ~30 us,
-- 15 calls per event (measured: order_data 408 us per call with SET; see docs/performance.md).
create function webhooks.iso_time(p_at timestamptz)
returns text
language sql
stable
as $$
    -- RFC 3339 in UTC with microseconds, whatever the session's TimeZone: payload bytes never vary.
    select to_char(p_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
comment on function webhooks.iso_time(timestamptz) is 'A timestamp as RFC 3339 UTC text (payload format).';

-- -------------------------------------------------------------------------------------------------
-- The entity after the change, camelCase, amounts as integers beside their currency
-- -------------------------------------------------------------------------------------------------

create function webhooks.order_data(p core.orders)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'id', p.id, 'customerId', p.customer_id, 'sellerId', p.seller_id, 'shipToZip', p.ship_to_zip,
        'amount', p.amount, 'currency', p.currency, 'status', p.status, 'version', p.version,
        'createdAt', webhooks.iso_time(p.created_at), 'updatedAt', webhooks.iso_time(p.updated_at),
        'confirmedAt', webhooks.iso_time(p.confirmed_at), 'shippedAt', webhooks.iso_time(p.shipped_at),
        'deliveredAt', webhooks.iso_time(p.delivered_at), 'cancelledAt', webhooks.iso_time(p.cancelled_at))
$$;
comment on function webhooks.order_data(core.orders) is 'The data of an order.* event: the order after the change.';

create function webhooks.payment_data(p core.payments)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'id', p.id, 'orderId', p.order_id, 'amount', p.amount, 'currency', p.currency,
        'status', p.status, 'providerRef', p.provider_ref, 'feeAmount', p.fee_amount,
        'failureReason', p.failure_reason, 'createdAt', webhooks.iso_time(p.created_at),
        'updatedAt', webhooks.iso_time(p.updated_at), 'capturedAt', webhooks.iso_time(p.captured_at),
        'failedAt', webhooks.iso_time(p.failed_at))
$$;
comment on function webhooks.payment_data(core.payments) is 'The data of a payment.* event: the payment after the change.';

create function webhooks.refund_data(p core.refunds)
returns jsonb
language sql
stable
as $$
    -- A refund has no currency of its own: it is its payment's.
    select jsonb_build_object(
        'id', p.id, 'paymentId', p.payment_id, 'orderId', pay.order_id, 'amount', p.amount,
        'currency', pay.currency, 'status', p.status, 'reason', p.reason, 'failureReason', p.failure_reason,
        'createdAt', webhooks.iso_time(p.created_at), 'updatedAt', webhooks.iso_time(p.updated_at),
        'completedAt', webhooks.iso_time(p.completed_at), 'failedAt', webhooks.iso_time(p.failed_at))
      from core.payments pay
     where pay.id = p.payment_id
$$;
comment on function webhooks.refund_data(core.refunds) is 'The data of a refund.* event: the refund after the change, with its payment''s currency.';

create function webhooks.shipment_data(p core.shipping_assignments)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'id', p.id, 'orderId', p.order_id, 'agentId', p.agent_id, 'zipCode', p.zip_code,
        'status', p.status, 'slaDueAt', webhooks.iso_time(p.sla_due_at), 'failureReason', p.failure_reason,
        'createdAt', webhooks.iso_time(p.created_at), 'updatedAt', webhooks.iso_time(p.updated_at),
        'acceptedAt', webhooks.iso_time(p.accepted_at), 'pickedUpAt', webhooks.iso_time(p.picked_up_at),
        'inTransitAt', webhooks.iso_time(p.in_transit_at), 'deliveredAt', webhooks.iso_time(p.delivered_at),
        'failedAt', webhooks.iso_time(p.failed_at), 'cancelledAt', webhooks.iso_time(p.cancelled_at))
$$;
comment on function webhooks.shipment_data(core.shipping_assignments) is
    'The data of a shipment.* event: the shipping assignment after the change.';

-- -------------------------------------------------------------------------------------------------
-- emit: one event, one delivery per subscription to its type
-- The functions of the business path (emit and the emission triggers) have no SET
-- search_path and are not SECURITY DEFINER: a SET clause costs a GUC save and restore on every call
-- (~26 us measured, three calls per event), and they need neither. Every name in them is qualified,
-- and they always run as the owner: no role but the owner may write core.* or webhooks.* (request
-- roles change business rows only through the SECURITY DEFINER api functions, the dispatcher only
-- through its SECURITY DEFINER webhooks functions).
-- -------------------------------------------------------------------------------------------------

create function webhooks.emit(
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
-- Write the event (payload serialized once, here) and its deliveries. The state machines reach each
-- keyed fact once, so a repeated idempotency key is a bug: the unique key refuses it (23505) rather
-- than hiding it. Not ON CONFLICT DO NOTHING: its speculative insertion costs every event an extra
-- WAL record and a second index probe, for a case that cannot happen.
declare
    v_id uuid := webhooks.uuid_v7();
begin
    insert into webhooks.events (id, event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, body)
    select v_id, t.event_type, t.aggregate_type, p_aggregate_id, p_idempotency_key, p_occurred_at,
           jsonb_build_object('eventId', v_id, 'eventType', t.event_type,
                              'timestamp', webhooks.iso_time(p_occurred_at),
                              'idempotencyKey', p_idempotency_key, 'data', p_data)::text
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
comment on function webhooks.emit(text, bigint, text, jsonb, timestamptz) is
    'Write one event and a delivery per subscription to its type (PENDING, or SKIPPED if disabled); one event per idempotency key.';

-- -------------------------------------------------------------------------------------------------
-- Emission triggers on the business tables
-- -------------------------------------------------------------------------------------------------

create function webhooks.tg_orders__emit()
returns trigger
language plpgsql
as $$
-- AFTER UPDATE OF status: order.confirmed (from PENDING), order.cancelled, order.delivered.
-- Key: type:order:id:vVERSION (a re-confirmation after a failed delivery is not order.confirmed).
declare
    v_type text := case new.status when 'CONFIRMED' then 'order.confirmed'
                                   when 'CANCELLED' then 'order.cancelled'
                                   when 'DELIVERED' then 'order.delivered' end;
begin
    if v_type is not null and (new.status <> 'CONFIRMED' or old.status = 'PENDING') then
        perform webhooks.emit(v_type, new.id, v_type || ':order:' || new.id || ':v' || new.version,
                              webhooks.order_data(new), new.updated_at);
    end if;
    return null;
end
$$;
comment on function webhooks.tg_orders__emit() is 'Trigger: emits order.confirmed, order.cancelled and order.delivered.';
create trigger _200_emit_webhook
    after update of status on core.orders
    for each row
    when (new.status is distinct from old.status and new.status in ('CONFIRMED', 'CANCELLED', 'DELIVERED'))
    execute function webhooks.tg_orders__emit();
comment on trigger _200_emit_webhook on core.orders is 'Writes the webhook event and deliveries of an order status change.';

create function webhooks.tg_payments__emit()
returns trigger
language plpgsql
as $$
-- AFTER UPDATE OF status: payment.captured, payment.failed. A payment changes status once: key type:payment:id.
declare
    v_type text := case new.status when 'CAPTURED' then 'payment.captured' when 'FAILED' then 'payment.failed' end;
begin
    perform webhooks.emit(v_type, new.id, v_type || ':payment:' || new.id,
                          webhooks.payment_data(new), new.updated_at);
    return null;
end
$$;
comment on function webhooks.tg_payments__emit() is 'Trigger: emits payment.captured and payment.failed.';
create trigger _200_emit_webhook
    after update of status on core.payments
    for each row
    when (new.status is distinct from old.status and new.status in ('CAPTURED', 'FAILED'))
    execute function webhooks.tg_payments__emit();
comment on trigger _200_emit_webhook on core.payments is 'Writes the webhook event and deliveries of a payment status change.';

create function webhooks.tg_refunds__emit()
returns trigger
language plpgsql
as $$
-- AFTER INSERT: refund.initiated; AFTER UPDATE OF status to COMPLETED: refund.completed. Key type:refund:id.
declare
    v_type text := case when tg_op = 'INSERT' then 'refund.initiated' else 'refund.completed' end;
begin
    perform webhooks.emit(v_type, new.id, v_type || ':refund:' || new.id,
                          webhooks.refund_data(new), new.updated_at);
    return null;
end
$$;
comment on function webhooks.tg_refunds__emit() is 'Trigger: emits refund.initiated and refund.completed.';
create trigger _200_emit_webhook
    after insert on core.refunds
    for each row execute function webhooks.tg_refunds__emit();
comment on trigger _200_emit_webhook on core.refunds is 'Writes the refund.initiated event and deliveries.';
create trigger _201_emit_webhook
    after update of status on core.refunds
    for each row
    when (new.status is distinct from old.status and new.status = 'COMPLETED')
    execute function webhooks.tg_refunds__emit();
comment on trigger _201_emit_webhook on core.refunds is 'Writes the refund.completed event and deliveries.';

create function webhooks.tg_shipping_assignments__emit()
returns trigger
language plpgsql
as $$
-- AFTER UPDATE OF status: shipment.assigned (an agent accepted), picked_up, in_transit, failed.
-- Each status is reached once per assignment (a failed delivery is re-offered as a new one): key type:shipment:id.
declare
    v_type text := case new.status when 'ACCEPTED' then 'shipment.assigned'
                                   when 'PICKED_UP' then 'shipment.picked_up'
                                   when 'IN_TRANSIT' then 'shipment.in_transit'
                                   when 'FAILED' then 'shipment.failed' end;
begin
    perform webhooks.emit(v_type, new.id, v_type || ':shipment:' || new.id,
                          webhooks.shipment_data(new), new.updated_at);
    return null;
end
$$;
comment on function webhooks.tg_shipping_assignments__emit() is
    'Trigger: emits shipment.assigned, shipment.picked_up, shipment.in_transit and shipment.failed.';
create trigger _200_emit_webhook
    after update of status on core.shipping_assignments
    for each row
    when (new.status is distinct from old.status and new.status in ('ACCEPTED', 'PICKED_UP', 'IN_TRANSIT', 'FAILED'))
    execute function webhooks.tg_shipping_assignments__emit();
comment on trigger _200_emit_webhook on core.shipping_assignments is 'Writes the webhook event and deliveries of a shipment step.';

-- -------------------------------------------------------------------------------------------------
-- Wake-up: NOTIFY only when a dispatcher waits for it
-- -------------------------------------------------------------------------------------------------

create function webhooks.tg_deliveries__wake()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
-- Deferred to COMMIT, so it runs as whoever is current then - the request role, once the
-- SECURITY DEFINER api function has returned: hence SECURITY DEFINER here (and its SET).
-- Common case: nobody is armed, one read of one row, no lock, no NOTIFY.
-- When a dispatcher is armed: the first committing transaction disarms it and sends NOTIFY
-- webhooks (empty payload). SKIP LOCKED: the others committing at that moment do not queue behind
-- its row lock - the one holding it notifies for all of them. Measured (bench/outbox.py, 32
-- clients, a dispatcher re-arming at once after each wake-up): with a plain UPDATE a third of the
-- time went to Lock:tuple waits behind the disarming transaction.
begin
    if (select w.armed from webhooks.wakeup w where w.id) then
        update webhooks.wakeup w set armed = false
         where w.id = (select x.id from webhooks.wakeup x where x.id and x.armed for update skip locked);
        if found then
            perform pg_notify('webhooks', '');
        end if;
    end if;
    return null;
end
$$;
comment on function webhooks.tg_deliveries__wake() is
    'Trigger (deferred): NOTIFY webhooks at commit when new PENDING work meets an idle, armed dispatcher.';
create constraint trigger _900_wake_dispatcher
    after insert or update of status on webhooks.deliveries
    deferrable initially deferred
    for each row
    when (new.status = 'PENDING')
    execute function webhooks.tg_deliveries__wake();
comment on trigger _900_wake_dispatcher on webhooks.deliveries is
    'At commit: wakes an idle dispatcher (NOTIFY webhooks) when PENDING work was added; silent otherwise.';

-- =================================================================================================
-- 220 Webhooks: the dispatcher's interface, subscription state changes, retention
-- The dispatcher role may execute exactly the functions granted at the end of this file (SECURITY
-- DEFINER, empty search_path) and nothing else: no table of webhooks is granted to it.
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
-- when the subscription was disabled meanwhile), so the same claim takes them again. Returns each row with the exact body to POST and its secrets.
declare
    v_now timestamptz := coalesce(p_now, now());
    v_limit integer := least(greatest(coalesce(p_limit, 50), 1), 50);
    v_max_tries integer := 1 + (select count(*) from webhooks.retry_schedule);
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
    -- deliveries (make explain, docs/indexes.md).
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
         order by d.next_attempt_at
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
           c.lease_until, e.event_type, e.body, webhooks.subscription_secrets(s.id, v_now)
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
    v_deliveries bigint := 0;
    v_events bigint := 0;
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

-- =================================================================================================
-- 820 The webhook admin API (plan C5), in schema api
-- admin and platform_admin only (anon gets 401, service and agent 403, from missing grants), plus
-- the anon-safe GET /rpc/health_webhooks. Views are security_invoker over webhooks.* with RLS
-- policies for the admin roles; webhooks.secrets is granted to nobody: a secret leaves the database
-- only in the answer of create_webhook_subscription / rotate_webhook_secret, once.
-- =================================================================================================

grant usage on schema webhooks to admin, platform_admin;
grant select on webhooks.subscriptions, webhooks.events, webhooks.deliveries, webhooks.attempts,
                webhooks.dispatchers, webhooks.event_types
    to admin, platform_admin;

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
       e.body::jsonb as payload
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

