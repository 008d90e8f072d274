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
-- The secret-minting functions run as waybill_owner (SECURITY DEFINER), which PUBLIC's revoked
-- default does not cover: the one pgcrypto function Waybill calls.
grant execute on function public.gen_random_bytes(integer) to waybill_owner;

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
    'Trigger: subscriptions, event types and payload shapes are never deleted or re-keyed (they stand in for foreign keys).';
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

-- Key lists of positional event data (0015.outbox_positional): an event stores its data as the
-- values only, in the order of one of these lists, and webhooks.event_data() zips them back into
-- the object. A shape never changes or goes (events refer to it: the same trigger as event types);
-- an entity that gains a field gets a new shape, so old events still compose the bytes they had.
create table webhooks.payload_shapes (
    shape           smallint not null,
    aggregate_type  text not null,
    keys            text[] not null,
    constraint payload_shapes_pkey primary key (shape),
    constraint payload_shapes_aggregate_type_check check (aggregate_type in ('order', 'payment', 'refund', 'shipment')),
    constraint payload_shapes_keys_check
        check (cardinality(keys) between 1 and 100 and array_position(keys, null) is null
               and not keys && array['id', 'updatedAt'])
);
alter table webhooks.payload_shapes enable row level security;
comment on table webhooks.payload_shapes is
    'Key lists of positional event data: webhooks.events.shape names one; never changed or deleted.';
comment on column webhooks.payload_shapes.keys is
    'The data object''s keys in the order of the stored values; id and updatedAt are not stored (the event''s aggregate_id and occurred_at).';
create trigger _020_keep
    before delete or update on webhooks.payload_shapes
    for each row execute function webhooks.tg_keep_referenced_rows();
comment on trigger _020_keep on webhooks.payload_shapes is 'Shapes are never changed or deleted: events are composed with them.';
create trigger _020_keep_truncate
    before truncate on webhooks.payload_shapes
    for each statement execute function webhooks.tg_keep_referenced_rows();
comment on trigger _020_keep_truncate on webhooks.payload_shapes is 'Shapes are never truncated.';
insert into webhooks.payload_shapes (shape, aggregate_type, keys) values
    (1, 'order', '{customerId,sellerId,shipToZip,amount,currency,status,version,createdAt,confirmedAt,shippedAt,deliveredAt,cancelledAt}'),
    (2, 'payment', '{orderId,amount,currency,status,providerRef,feeAmount,failureReason,createdAt,capturedAt,failedAt}'),
    (3, 'refund', '{paymentId,orderId,amount,currency,status,reason,failureReason,createdAt,completedAt,failedAt}'),
    (4, 'shipment', '{orderId,agentId,zipCode,status,slaDueAt,failureReason,createdAt,acceptedAt,pickedUpAt,inTransitAt,deliveredAt,failedAt,cancelledAt}');

create table webhooks.events (
    id               uuid not null default webhooks.uuid_v7(),
    event_type       text not null,
    aggregate_type   text not null,
    aggregate_id     bigint not null,
    idempotency_key  text not null,
    occurred_at      timestamptz not null,
    created_at       timestamptz not null default now(),
    body             text,
    data             text,
    shape            smallint,
    constraint events_pkey primary key (id),
    constraint events_idempotency_key_key unique (idempotency_key)
);
alter table webhooks.events enable row level security;
comment on table webhooks.events is
    'Business events, append-only: id = payload eventId = webhook-id header; webhooks.event_body() = the exact bytes every try sends.';
comment on column webhooks.events.event_type is
    'A webhooks.event_types row: the emission triggers pass one of the 11 (no foreign key: see webhooks.tg_keep_referenced_rows).';
comment on column webhooks.events.idempotency_key is 'The same for the same business fact: type:aggregate:id[:version]; a repeat is not a new event.';
comment on column webhooks.events.body is
    'Events written before 0011.outbox_lean only: their payload as serialized at emission (null since; see data).';
comment on column webhooks.events.data is
    'The payload''s data (the entity after the change) as canonical JSON text: positional values of its shape, or (shape null) the object; webhooks.event_body() composes the payload.';
comment on column webhooks.events.shape is
    'The webhooks.payload_shapes row whose keys name data''s values (0015); null: data is the object itself (events written before 0015, or emitted with an object).';
create function webhooks.event_row_ok(e webhooks.events)
returns boolean
language plpgsql
immutable
as $$
-- The events row's invariants, as one CHECK (events_row_check, 0018) instead of three: PostgreSQL
-- prepares every CHECK expression of a table anew for each INSERT statement, and emission inserts
-- one event per statement. PL/pgSQL, not SQL: a SQL function would be inlined, i.e. parsed and
-- planned again by that same per-statement preparation. As in a CHECK, a test that is null passes.
begin
    return left(e.body, 1) = '{'                                                 -- a stored payload is an object
       and (e.body is null) <> (e.data is null)                                  -- a payload (before 0011) or data
       and left(e.data, 1) = case when e.shape is null then '{' else '[' end;    -- an object, or positional values
end
$$;
comment on function webhooks.event_row_ok(webhooks.events) is
    'CHECK of webhooks.events: the body is an object; body xor data; data is an object, or (with a shape) an array.';
alter table webhooks.events add constraint events_row_check check (webhooks.event_row_ok(events));

-- Why data and not the whole payload: eventId, eventType, timestamp and idempotencyKey are columns
-- already, so storing them again in the body cost ~190 bytes of heap and WAL per event in the
-- business transaction (the lifecycle is WAL-flush bound). webhooks.event_body() composes the
-- same bytes from the row at claim and read time (docs/webhooks.md "Payload bytes").
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
    constraint deliveries_event_id_subscription_id_key unique (event_id, subscription_id)
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

create function webhooks.delivery_row_ok(d webhooks.deliveries)
returns boolean
language plpgsql
immutable
as $$
-- The outbox row's invariants, as one CHECK (deliveries_row_check, 0018) instead of nine: PostgreSQL
-- prepares every CHECK expression of a table anew for each INSERT or UPDATE statement - the nine
-- cost each emitted event ~40 us of backend CPU (docs/performance.md), this call a few. PL/pgSQL,
-- not SQL: a SQL function would be inlined, i.e. parsed and planned again by that same
-- per-statement preparation. CHECK semantics are kept: a test that is null passes.
begin
    return d.status in ('PENDING', 'SENDING', 'DELIVERED', 'FAILED', 'SKIPPED')
       and d.attempts >= 0
       and d.attempts_at_requeue between 0 and d.attempts
       and d.next_trigger in ('scheduled', 'manual', 'recover')
       -- Due rows are found by next_attempt_at alone: a SENDING row is due again when its lease expires.
       and (d.status in ('PENDING', 'SENDING')) = (d.next_attempt_at is not null)
       and (d.status = 'SENDING') = (d.lease_owner is not null and d.lease_token is not null and d.lease_until is not null)
       and (d.status <> 'SENDING' or d.next_attempt_at = d.lease_until)
       and (d.status = 'DELIVERED') = (d.delivered_at is not null)
       and (d.status in ('DELIVERED', 'FAILED', 'SKIPPED')) = (d.finished_at is not null)
       and d.last_status_code between 100 and 599;
end
$$;
comment on function webhooks.delivery_row_ok(webhooks.deliveries) is
    'CHECK of webhooks.deliveries: status and trigger values, attempt counts, and which timestamps and lease fields each status has.';
alter table webhooks.deliveries add constraint deliveries_row_check check (webhooks.delivery_row_ok(deliveries));

-- The plan's "due PENDING rows by next attempt", extended to SENDING rows (due = lease expired) so
-- that one small index serves the claim, the lease recovery and next_due_at(). Partial: finished
-- rows (the vast majority) are not in it, so it stays the size of the backlog.
-- Measured: docs/indexes.md (make explain) and docs/performance.md (size after the outbox bench).
create index deliveries_due_idx on webhooks.deliveries (next_attempt_at) where status in ('PENDING', 'SENDING');
comment on index webhooks.deliveries_due_idx is
    'Serves claim_deliveries and next_due_at: due rows by time (partial on PENDING/SENDING; plan index 1 of 3).';
-- The plan's "deliveries by subscription and status": the admin list of one subscription's FAILED
-- rows newest first, the per-subscription counts of GET /webhook_subscriptions and the in-flight
-- count of the claim's per-subscription limit. Partial, without PENDING: every business transaction
-- inserts a PENDING row, and an entry here cost it ~110 bytes of WAL and an index insertion
-- (0011.outbox_lean, docs/performance.md); a row enters it when the dispatcher first claims it
-- (that update is not HOT anyway). PENDING rows of a subscription are found through
-- deliveries_due_idx, which holds only the backlog (disable_subscription, the PENDING count).
create index deliveries_subscription_id_status_created_at_idx
    on webhooks.deliveries (subscription_id, status, created_at desc) where status <> 'PENDING';
comment on index webhooks.deliveries_subscription_id_status_created_at_idx is
    'Serves per-subscription listings/counts by status (PENDING excepted: partial) and the in-flight limit (plan index 2 of 3).';
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
