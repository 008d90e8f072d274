-- 0001 foundation: roles, schemas, error registry, event log, auth helpers and the core domain.
-- Landed migrations are never edited (tests/test_migrations.py holds their checksums).
-- depends:

-- ---- from sql/000_roles.sql at landing ----
-- =================================================================================================
-- 000 Roles
-- Cluster-wide roles of ARCHITECTURE.md. Roles are shared by every database of a cluster, so each is
-- created only when missing; passwords are never set here (the environment sets them).
-- =================================================================================================

do $roles$
declare
    v_role text;
begin
    -- Request roles: no login; PostgREST (or gateway/) switches to them from authenticator.
    foreach v_role in array array['anon', 'admin', 'platform_admin', 'service', 'agent'] loop
        if not exists (select 1 from pg_roles where rolname = v_role) then
            execute format('create role %I nologin', v_role);
        end if;
    end loop;
    -- authenticator: logs in, can do nothing itself, only switch role (PostgREST's model).
    if not exists (select 1 from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
    -- dispatcher: the webhook daemon logs in as itself and only calls webhooks.* functions.
    if not exists (select 1 from pg_roles where rolname = 'dispatcher') then
        create role dispatcher login;
    end if;
end
$roles$;

grant anon, admin, platform_admin, service, agent to authenticator;

-- ---- from sql/010_schemas.sql at landing ----
-- =================================================================================================
-- 010 Schemas and extensions
-- Private domain schemas (core, ops, auth) and the one exposed schema (api). PUBLIC gets nothing.
-- =================================================================================================

revoke all on schema public from public;
do $db$
begin
    execute format('revoke all on database %I from public', current_database());
    execute format('grant connect on database %I to authenticator, dispatcher', current_database());
end
$db$;

create extension if not exists pg_stat_statements with schema public;

create schema auth;
comment on schema auth is 'Helpers that read the request''s JWT claims (role, sub, actor); not exposed.';

create schema ops;
comment on schema ops is 'Operations: the error registry, structured event log, health and slow-query views.';

create schema core;
comment on schema core is 'The marketplace domain: agents, orders, payments, refunds, wallets, ledger, shipping.';

create schema api;
comment on schema api is 'Waybill HTTP API: views and functions served by PostgREST (or gateway/).';

-- Functions are executable by PUBLIC unless revoked: revoke that default for everything we create.
alter default privileges revoke execute on functions from public;

grant usage on schema api to anon, admin, platform_admin, service, agent;

-- ---- from sql/050_ops_errors.sql at landing ----
-- =================================================================================================
-- 050 Error registry
-- Every business rule fails through ops.raise_error(code): one row here gives its HTTP status, the
-- SQLSTATE it surfaces with, a message template, a hint and whether a retry can succeed.
-- Business errors are raised as SQLSTATE 'PGRST' with a JSON message {code,message,details,hint}
-- and a JSON detail {status,headers}: PostgREST v13 answers exactly that status and body.
-- Rows whose sqlstate is not PGRST document errors PostgreSQL raises itself (unique, FK, ...)
-- and the status PostgREST gives them. docs/errors.md is generated from this table.
-- =================================================================================================

create table ops.error_codes (
    code        text primary key,
    sqlstate    text not null,
    http_status smallint not null,
    message     text not null,
    hint        text,
    retryable   boolean not null default false,
    constraint error_codes_code_format_check check (code ~ '^[A-Z][A-Z0-9_]+$'),
    constraint error_codes_sqlstate_format_check check (sqlstate ~ '^([0-9A-Z]{5}|PGRST)$'),
    constraint error_codes_http_status_range_check check (http_status between 400 and 599)
);
alter table ops.error_codes enable row level security;
comment on table ops.error_codes is 'The error registry: one stable code per business rule, with its SQLSTATE and HTTP status.';
comment on column ops.error_codes.message is 'Message template; %s placeholders are filled from raise_error''s p_args in order.';
comment on column ops.error_codes.retryable is 'True when the same call may succeed later unchanged (lock timeouts, conflicts).';

insert into ops.error_codes (code, sqlstate, http_status, message, hint, retryable) values
    -- validation (400/422)
    ('INVALID_ARGUMENT',            'PGRST', 400, 'invalid argument: %s', 'Check the request against the API documentation.', false),
    ('INVALID_AMOUNT',              'PGRST', 422, 'amount must be a positive whole number of minor units, got %s', 'Send integer minor units (cents), greater than zero.', false),
    ('INVALID_CURRENCY',            'PGRST', 422, 'currency must be an ISO 4217 code, got %s', 'Use three upper-case letters, e.g. EUR.', false),
    ('INVALID_ZIP_CODE',            'PGRST', 422, 'zip code must be five digits, got %s', null, false),
    ('CURRENCY_MISMATCH',           'PGRST', 422, 'currency %s does not match %s', null, false),
    -- not found (404)
    ('ORDER_NOT_FOUND',             'PGRST', 404, 'order %s does not exist', null, false),
    ('PAYMENT_NOT_FOUND',           'PGRST', 404, 'payment %s does not exist', null, false),
    ('REFUND_NOT_FOUND',            'PGRST', 404, 'refund %s does not exist', null, false),
    ('AGENT_NOT_FOUND',             'PGRST', 404, 'delivery agent %s does not exist', null, false),
    ('ASSIGNMENT_NOT_FOUND',        'PGRST', 404, 'shipping assignment %s does not exist', null, false),
    ('CUSTOMER_NOT_FOUND',          'PGRST', 404, 'customer %s does not exist', null, false),
    ('SELLER_NOT_FOUND',            'PGRST', 404, 'seller %s does not exist', null, false),
    -- state machines (409)
    ('ORDER_INVALID_TRANSITION',    'PGRST', 409, 'order %s cannot go from %s to %s', 'Read the order''s current status first.', false),
    ('PAYMENT_INVALID_TRANSITION',  'PGRST', 409, 'payment %s cannot go from %s to %s', null, false),
    ('REFUND_INVALID_TRANSITION',   'PGRST', 409, 'refund %s cannot go from %s to %s', null, false),
    ('ASSIGNMENT_INVALID_TRANSITION','PGRST', 409, 'shipping assignment %s cannot go from %s to %s', null, false),
    ('ORDER_STATUS_CONFLICT',       'PGRST', 409, 'order %s changed concurrently; gave up after %s attempts', 'Re-read the order and retry.', true),
    ('ORDER_NOT_PAID',              'PGRST', 409, 'order %s has no captured payment', 'Capture the payment before confirming the order.', false),
    ('ORDER_HAS_LIVE_PAYMENT',      'PGRST', 409, 'order %s already has a pending or captured payment', null, false),
    ('PAYMENT_ALREADY_CAPTURED',    'PGRST', 409, 'payment %s was already captured with another provider reference', null, false),
    ('PAYMENT_PROVIDER_REF_IN_USE', 'PGRST', 409, 'provider reference %s belongs to another payment', null, false),
    ('PAYMENT_NOT_CAPTURED',        'PGRST', 409, 'payment %s is not captured', 'Only captured payments can be refunded.', false),
    ('REFUND_EXCEEDS_CAPTURED',     'PGRST', 422, 'refund of %s exceeds the %s still refundable on payment %s', 'Refunds of a payment never exceed what was captured.', false),
    ('ASSIGNMENT_ALREADY_TAKEN',    'PGRST', 409, 'shipping assignment %s is no longer offered (status %s)', 'Another agent accepted it first.', false),
    ('ASSIGNMENT_LOCK_TIMEOUT',     'PGRST', 503, 'shipping assignment %s is busy; lock not acquired within %s', 'Retry in a moment.', true),
    ('ASSIGNMENT_ORDER_NOT_READY',  'PGRST', 409, 'order %s is %s; only CONFIRMED orders can be offered', null, false),
    ('ASSIGNMENT_ALREADY_LIVE',     'PGRST', 409, 'order %s already has a live shipping assignment', null, false),
    ('ASSIGNMENT_NO_AGENT_FOR_ZIP', 'PGRST', 422, 'no active delivery agent serves zip code %s', 'Add the zip code to an active agent first.', false),
    ('AGENT_NOT_ELIGIBLE',          'PGRST', 403, 'agent %s cannot take assignment %s: %s', null, false),
    ('ASSIGNMENT_NOT_YOURS',        'PGRST', 403, 'shipping assignment %s belongs to another agent', null, false),
    -- ledger (500: a bug, never a client error)
    ('LEDGER_UNBALANCED',           'PGRST', 500, 'ledger transaction %s does not sum to zero (%s)', 'A code path wrote unbalanced entries; the transaction was rolled back.', false),
    ('LEDGER_IMMUTABLE',            'PGRST', 500, 'ledger entries are append-only', null, false),
    -- errors PostgreSQL raises itself, as PostgREST maps them (documented, not raised by raise_error)
    ('UNIQUE_VIOLATION',            '23505', 409, 'duplicate key value violates unique constraint', 'The plan''s Prisma P2002.', false),
    ('FOREIGN_KEY_VIOLATION',       '23503', 409, 'insert or update violates foreign key constraint', 'The plan''s Prisma P2003.', false),
    ('CHECK_VIOLATION',             '23514', 400, 'new row violates check constraint', null, false),
    ('NOT_NULL_VIOLATION',          '23502', 400, 'null value violates not-null constraint', null, false),
    ('INSUFFICIENT_PRIVILEGE',      '42501', 403, 'permission denied', '401 with WWW-Authenticate when the role is anon.', false),
    ('SERIALIZATION_FAILURE',       '40001', 500, 'could not serialize access', 'The HTTP front retries the transaction.', true);

create function ops.raise_error(p_code text, variadic p_args text[] default '{}')
returns void
language plpgsql
stable
set search_path = ''
as $$
-- Raise the registered error p_code, filling its message template with p_args.
-- SQLSTATE PGRST + JSON message/detail: PostgREST answers http_status with body {code,message,details,hint}.
declare
    v_err ops.error_codes;
    v_message text;
    v_details text;
begin
    select * into v_err from ops.error_codes where code = p_code;
    if not found then
        raise exception 'unregistered error code %', p_code using errcode = 'XX000';
    end if;
    v_message := v_err.message;
    for i in 1 .. coalesce(array_length(p_args, 1), 0) loop
        v_message := regexp_replace(v_message, '%s', replace(coalesce(p_args[i], 'null'), '\', '\\'));
    end loop;
    v_details := case when array_length(p_args, 1) > 0 then array_to_string(p_args, ', ', 'null') end;
    raise sqlstate 'PGRST' using
        message = json_build_object('code', v_err.code, 'message', v_message,
                                    'details', v_details, 'hint', v_err.hint)::text,
        detail = json_build_object('status', v_err.http_status,
                                   'headers', case when v_err.retryable and v_err.http_status = 503
                                                   then json_build_object('Retry-After', '1')
                                                   else '{}'::json end)::text;
end
$$;
comment on function ops.raise_error(text, text[]) is
    'Raise the registered error p_code (SQLSTATE PGRST, JSON message and detail as PostgREST reads them).';

create function ops.error_code(p_sqlstate text, p_message text)
returns text
language sql
stable
set search_path = ''
as $$
    -- The registered code of a caught error: the JSON code of a PGRST raise, else the SQLSTATE's row.
    select case
        when p_sqlstate = 'PGRST' then (p_message::jsonb ->> 'code')
        else (select e.code from ops.error_codes e where e.sqlstate = p_sqlstate limit 1)
    end
$$;
comment on function ops.error_code(text, text) is
    'The registry code of an error given its SQLSTATE and message (for handlers, tests and logs).';

-- ---- from sql/060_ops_log.sql at landing ----
-- =================================================================================================
-- 060 Structured event log (database side)
-- ops.log_event writes one LogEntry-shaped JSON object as a RAISE LOG line. With
-- log_destination = jsonlog it lands in the server log at once, so it survives a rollback: a
-- ledger_invariant_violated line stays visible although its transaction died.
-- =================================================================================================

create function ops.request_id()
returns text
language sql
stable
set search_path = ''
as $$
    -- The X-Request-Id of the HTTP request in progress (set by PostgREST/gateway), or null.
    select nullif(current_setting('request.headers', true), '')::json ->> 'x-request-id'
$$;
comment on function ops.request_id() is 'The current HTTP request''s X-Request-Id header, or null outside a request.';

create function ops.log_event(
    p_event text,
    p_level text default 'info',
    p_context jsonb default '{}',
    p_error_code text default null,
    p_duration_ms numeric default null
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
-- Emit one structured line {ts, level, event, service, request_id, duration_ms, error_code, ...context}.
begin
    raise log '%', (
        jsonb_build_object(
            'ts', to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'level', p_level,
            'event', p_event,
            'service', 'postgres',
            'request_id', ops.request_id(),
            'duration_ms', p_duration_ms,
            'error_code', p_error_code
        ) || coalesce(p_context, '{}')
    )::text;
end
$$;
comment on function ops.log_event(text, text, jsonb, text, numeric) is
    'Write a LogEntry-shaped JSON line to the server log (jsonlog); survives rollback.';

-- ---- from sql/070_auth.sql at landing ----
-- =================================================================================================
-- 070 Auth helpers
-- The request's JWT claims as PostgREST v12+ sets them: one JSON GUC, request.jwt.claims.
-- These SQL functions name everything schema-qualified and carry no SET clause, so the planner can
-- inline them into RLS policies and callers (a SET search_path would forbid inlining: auth.actor()
-- cost 0.06-0.08 ms per call with it, bench/lifecycle).
-- =================================================================================================

create function auth.jwt()
returns jsonb
language sql
stable
as $$
    select coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;
comment on function auth.jwt() is 'The request''s JWT claims ({} outside a request).';

create function auth.role()
returns text
language sql
stable
as $$
    select coalesce(auth.jwt() ->> 'role', current_user::text)
$$;
comment on function auth.role() is 'The JWT role claim, or the current database role outside a request.';

create function auth.sub()
returns text
language sql
stable
as $$
    select auth.jwt() ->> 'sub'
$$;
comment on function auth.sub() is 'The JWT subject (for agents: the delivery agent id), or null.';

create function auth.actor()
returns text
language sql
stable
as $$
    -- Who is acting, for history rows: "role:sub", "role" without a subject, or the database role.
    select auth.role() || coalesce(':' || auth.sub(), '')
$$;
comment on function auth.actor() is 'The acting principal recorded in history rows: role[:sub].';

grant usage on schema auth to anon, admin, platform_admin, service, agent;
grant execute on function auth.jwt(), auth.role(), auth.sub(), auth.actor()
    to anon, admin, platform_admin, service, agent;

-- ---- from sql/100_core_parties.sql at landing ----
-- =================================================================================================
-- 100 Parties: customers, sellers, delivery agents
-- =================================================================================================

create table core.customers (
    id          bigint generated always as identity,
    name        text not null,
    email       text not null,
    created_at  timestamptz not null default now(),
    constraint customers_pkey primary key (id),
    constraint customers_name_not_blank_check check (btrim(name) <> ''),
    constraint customers_email_format_check check (email ~ '^[^@\s]+@[^@\s]+$')
);
alter table core.customers enable row level security;
comment on table core.customers is 'People who buy. Orders reference them.';

create unique index customers_email_lower_key on core.customers (lower(email));
comment on index core.customers_email_lower_key is 'One customer per e-mail address, case-insensitively.';

create table core.sellers (
    id          bigint generated always as identity,
    name        text not null,
    fee_bps     integer not null default 1000,
    created_at  timestamptz not null default now(),
    constraint sellers_pkey primary key (id),
    constraint sellers_name_not_blank_check check (btrim(name) <> ''),
    constraint sellers_fee_bps_range_check check (fee_bps between 0 and 10000)
);
alter table core.sellers enable row level security;
comment on table core.sellers is 'Merchants who sell; each has a wallet per currency credited on capture.';
comment on column core.sellers.fee_bps is 'Platform fee in basis points of each captured payment (1000 = 10 %).';

create function core.zip_codes_valid(p_zip_codes text[])
returns boolean
language sql
immutable
set search_path = ''
as $$
    -- Every element is five digits (nulls are the no_nulls check's business).
    select coalesce(bool_and(z ~ '^[0-9]{5}$'), true) from unnest(p_zip_codes) as z
$$;
comment on function core.zip_codes_valid(text[]) is 'Whether every zip code of the array is five digits (for CHECK constraints).';

create table core.delivery_agents (
    id                     bigint generated always as identity,
    name                   text not null,
    status                 text not null default 'ACTIVE',
    serviceable_zip_codes  text[] not null default '{}',
    created_at             timestamptz not null default now(),
    updated_at             timestamptz not null default now(),
    constraint delivery_agents_pkey primary key (id),
    constraint delivery_agents_name_not_blank_check check (btrim(name) <> ''),
    constraint delivery_agents_status_check check (status in ('ACTIVE', 'INACTIVE', 'SUSPENDED')),
    -- Each element on its own (a regex over the joined string would accept '10001,10002' as one).
    constraint delivery_agents_zip_codes_format_check check (core.zip_codes_valid(serviceable_zip_codes)),
    constraint delivery_agents_zip_codes_no_nulls_check
        check (array_position(serviceable_zip_codes, null) is null)
);
alter table core.delivery_agents enable row level security;
comment on table core.delivery_agents is 'Couriers. An agent''s JWT sub is its id; it is offered work in its zip codes.';
comment on column core.delivery_agents.serviceable_zip_codes is 'Zip codes the agent delivers to (five digits each).';

-- ---- from sql/110_core_state_machines.sql at landing ----
-- =================================================================================================
-- 110 State machines as data
-- One row per allowed (machine, from, to). A BEFORE UPDATE trigger on each stateful table refuses any
-- other change of status, whoever writes it: functions give the specific error earlier, the trigger
-- makes an illegal transition impossible.
-- =================================================================================================

create table core.state_transitions (
    machine      text not null,
    from_status  text not null,
    to_status    text not null,
    constraint state_transitions_pkey primary key (machine, from_status, to_status),
    constraint state_transitions_machine_check
        check (machine in ('order', 'payment', 'refund', 'assignment')),
    constraint state_transitions_not_a_loop_check check (from_status <> to_status)
);
alter table core.state_transitions enable row level security;
comment on table core.state_transitions is 'Allowed status transitions of every state machine (order, payment, refund, assignment).';

insert into core.state_transitions (machine, from_status, to_status) values
    -- orders: paid and confirmed, shipped when picked up, delivered; back to CONFIRMED when a delivery fails
    ('order', 'PENDING',   'CONFIRMED'),
    ('order', 'PENDING',   'CANCELLED'),
    ('order', 'CONFIRMED', 'SHIPPED'),
    ('order', 'CONFIRMED', 'CANCELLED'),
    ('order', 'SHIPPED',   'DELIVERED'),
    ('order', 'SHIPPED',   'CONFIRMED'),
    -- payments
    ('payment', 'PENDING', 'CAPTURED'),
    ('payment', 'PENDING', 'FAILED'),
    -- refunds
    ('refund', 'INITIATED', 'COMPLETED'),
    ('refund', 'INITIATED', 'FAILED'),
    -- shipping assignments
    ('assignment', 'OFFERED',    'ACCEPTED'),
    ('assignment', 'OFFERED',    'CANCELLED'),
    ('assignment', 'ACCEPTED',   'PICKED_UP'),
    ('assignment', 'ACCEPTED',   'FAILED'),
    ('assignment', 'ACCEPTED',   'CANCELLED'),
    ('assignment', 'PICKED_UP',  'IN_TRANSIT'),
    ('assignment', 'PICKED_UP',  'FAILED'),
    ('assignment', 'IN_TRANSIT', 'DELIVERED'),
    ('assignment', 'IN_TRANSIT', 'FAILED');

create function core.transition_allowed(p_machine text, p_from text, p_to text)
returns boolean
language sql
stable
set search_path = ''
as $$
    select exists (
        select 1 from core.state_transitions t
        where t.machine = p_machine and t.from_status = p_from and t.to_status = p_to
    )
$$;
comment on function core.transition_allowed(text, text, text) is 'Whether the state machine allows from -> to.';

create function core.tg_status__check_transition()
returns trigger
language plpgsql
set search_path = ''
as $$
-- BEFORE UPDATE OF status: refuse transitions missing from core.state_transitions.
-- TG_ARGV[0] names the machine; its registered error is <MACHINE>_INVALID_TRANSITION.
begin
    if new.status is distinct from old.status
       and not core.transition_allowed(tg_argv[0], old.status, new.status) then
        perform ops.raise_error(upper(tg_argv[0]) || '_INVALID_TRANSITION',
                                old.id::text, old.status, new.status);
    end if;
    return new;
end
$$;
comment on function core.tg_status__check_transition() is
    'Trigger: refuses a status change that core.state_transitions does not allow.';

-- ---- from sql/120_core_ledger.sql at landing ----
-- =================================================================================================
-- 120 Wallets and the double-entry ledger
-- Entries are signed minor units; every ledger transaction sums to zero, checked at COMMIT by a
-- deferred constraint trigger, so no code path can commit an unbalanced transaction. Entries are
-- append-only. A wallet's balance is the sum of its entries (core.wallet_balances).
-- =================================================================================================

create table core.wallets (
    id          bigint generated always as identity,
    kind        text not null,
    seller_id   bigint,
    currency    text not null,
    created_at  timestamptz not null default now(),
    constraint wallets_pkey primary key (id),
    constraint wallets_seller_id_fkey foreign key (seller_id) references core.sellers (id),
    constraint wallets_kind_check check (kind in ('SELLER', 'PLATFORM_FEES', 'PAYMENT_CLEARING')),
    constraint wallets_seller_only_for_seller_kind_check check ((kind = 'SELLER') = (seller_id is not null)),
    constraint wallets_currency_format_check check (currency ~ '^[A-Z]{3}$'),
    -- One wallet per owner and currency; NULLS NOT DISTINCT makes the platform wallets unique too.
    constraint wallets_kind_seller_id_currency_key unique nulls not distinct (kind, seller_id, currency)
);
alter table core.wallets enable row level security;
comment on table core.wallets is 'Accounts of the ledger: one per seller and currency, plus the platform''s fee and clearing wallets.';
comment on column core.wallets.kind is 'SELLER (seller earnings), PLATFORM_FEES (platform revenue), PAYMENT_CLEARING (money received from customers).';

create table core.ledger_transactions (
    id          bigint generated always as identity,
    kind        text not null,
    currency    text not null,
    payment_id  bigint,
    refund_id   bigint,
    created_at  timestamptz not null default now(),
    constraint ledger_transactions_pkey primary key (id),
    constraint ledger_transactions_kind_check check (kind in ('CAPTURE', 'REFUND')),
    constraint ledger_transactions_currency_format_check check (currency ~ '^[A-Z]{3}$')
);
alter table core.ledger_transactions enable row level security;
comment on table core.ledger_transactions is 'One money movement; its entries sum to zero.';

create table core.ledger_entries (
    id              bigint generated always as identity,
    transaction_id  bigint not null,
    wallet_id       bigint not null,
    amount          bigint not null,
    created_at      timestamptz not null default now(),
    constraint ledger_entries_pkey primary key (id),
    constraint ledger_entries_transaction_id_fkey foreign key (transaction_id) references core.ledger_transactions (id),
    constraint ledger_entries_wallet_id_fkey foreign key (wallet_id) references core.wallets (id),
    constraint ledger_entries_amount_not_zero_check check (amount <> 0)
);
alter table core.ledger_entries enable row level security;
comment on table core.ledger_entries is 'Signed postings (minor units) of a ledger transaction to one wallet; append-only.';
comment on column core.ledger_entries.amount is 'Positive credits the wallet, negative debits it.';

create index ledger_entries_transaction_id_idx on core.ledger_entries (transaction_id);
comment on index core.ledger_entries_transaction_id_idx is 'Serves the balance check at commit (sum of one transaction''s entries) and the FK.';

create function core.tg_ledger_entries__check_balance()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
-- Deferred to COMMIT: the entries of new.transaction_id must sum to zero, in the transaction's currency.
-- SECURITY DEFINER: a deferred trigger runs at COMMIT as the session's role (e.g. an API role that
-- wrote through a SECURITY DEFINER function), which may not read the ledger itself.
-- A violation is logged as ledger_invariant_violated (the log line survives the rollback) and raised.
declare
    v_sum bigint;
    v_currency text;
    v_foreign integer;
begin
    select lt.currency into v_currency from core.ledger_transactions lt where lt.id = new.transaction_id;
    select coalesce(sum(e.amount), 0), count(*) filter (where w.currency <> v_currency)
      into v_sum, v_foreign
      from core.ledger_entries e
      join core.wallets w on w.id = e.wallet_id
     where e.transaction_id = new.transaction_id;
    if v_sum <> 0 or v_foreign > 0 then
        perform ops.log_event('ledger_invariant_violated', 'error',
            jsonb_build_object('transaction_id', new.transaction_id, 'sum', v_sum,
                               'foreign_currency_entries', v_foreign),
            'LEDGER_UNBALANCED');
        perform ops.raise_error('LEDGER_UNBALANCED', new.transaction_id::text,
            format('sum %s, %s entries in another currency', v_sum, v_foreign));
    end if;
    return null;
end
$$;
comment on function core.tg_ledger_entries__check_balance() is
    'Constraint trigger (deferred): a ledger transaction''s entries sum to zero in one currency.';

create constraint trigger _100_check_balance
    after insert on core.ledger_entries
    deferrable initially deferred
    for each row execute function core.tg_ledger_entries__check_balance();
comment on trigger _100_check_balance on core.ledger_entries is
    'Checks at COMMIT that every ledger transaction balances.';

create function core.tg_ledger_entries__append_only()
returns trigger
language plpgsql
set search_path = ''
as $$
-- Ledger entries are never updated, deleted or truncated: corrections are new transactions.
begin
    perform ops.raise_error('LEDGER_IMMUTABLE');
    return null;
end
$$;
comment on function core.tg_ledger_entries__append_only() is 'Trigger: refuses UPDATE, DELETE and TRUNCATE of ledger entries and transactions.';

create trigger _010_append_only
    before update or delete on core.ledger_entries
    for each row execute function core.tg_ledger_entries__append_only();
comment on trigger _010_append_only on core.ledger_entries is 'Ledger entries are append-only.';

create trigger _011_append_only_truncate
    before truncate on core.ledger_entries
    for each statement execute function core.tg_ledger_entries__append_only();
comment on trigger _011_append_only_truncate on core.ledger_entries is 'Ledger entries are never truncated.';

-- The transaction rows are append-only too: rewriting one's currency or kind would change what its
-- (already checked) entries mean.
create trigger _010_append_only
    before update or delete on core.ledger_transactions
    for each row execute function core.tg_ledger_entries__append_only();
comment on trigger _010_append_only on core.ledger_transactions is 'Ledger transactions are append-only.';
create trigger _011_append_only_truncate
    before truncate on core.ledger_transactions
    for each statement execute function core.tg_ledger_entries__append_only();
comment on trigger _011_append_only_truncate on core.ledger_transactions is 'Ledger transactions are never truncated.';

create function core.wallet_for(p_kind text, p_seller_id bigint, p_currency text)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
-- The wallet of (kind, seller, currency), created on first use (race-safe via ON CONFLICT).
declare
    v_id bigint;
begin
    select w.id into v_id from core.wallets w
     where w.kind = p_kind and w.seller_id is not distinct from p_seller_id and w.currency = p_currency;
    if v_id is null then
        insert into core.wallets (kind, seller_id, currency) values (p_kind, p_seller_id, p_currency)
        on conflict on constraint wallets_kind_seller_id_currency_key do nothing
        returning id into v_id;
        if v_id is null then
            select w.id into v_id from core.wallets w
             where w.kind = p_kind and w.seller_id is not distinct from p_seller_id and w.currency = p_currency;
        end if;
    end if;
    return v_id;
end
$$;
comment on function core.wallet_for(text, bigint, text) is 'The wallet for an owner and currency, created on first use.';

create function core.post_ledger(
    p_kind text, p_currency text, p_payment_id bigint, p_refund_id bigint,
    p_wallet_ids bigint[], p_amounts bigint[], p_now timestamptz default null
)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
-- Write one ledger transaction with entries (wallet_ids[i], amounts[i]); zero amounts are skipped.
-- The balance is enforced at COMMIT by the constraint trigger, not trusted here.
declare
    v_tx bigint;
    v_now timestamptz := coalesce(p_now, now());
begin
    insert into core.ledger_transactions (kind, currency, payment_id, refund_id, created_at)
    values (p_kind, p_currency, p_payment_id, p_refund_id, v_now)
    returning id into v_tx;
    insert into core.ledger_entries (transaction_id, wallet_id, amount, created_at)
    select v_tx, w, a, v_now
      from unnest(p_wallet_ids, p_amounts) as u (w, a)
     where a <> 0;
    return v_tx;
end
$$;
comment on function core.post_ledger(text, text, bigint, bigint, bigint[], bigint[], timestamptz) is
    'Write one ledger transaction and its entries; the deferred trigger checks it balances.';

create view core.wallet_balances
with (security_invoker = true)
as
select w.id as wallet_id, w.kind, w.seller_id, w.currency,
       coalesce((select sum(e.amount) from core.ledger_entries e where e.wallet_id = w.id), 0)::bigint as balance
  from core.wallets w;
comment on view core.wallet_balances is 'Each wallet''s balance, derived from its ledger entries.';

-- ---- from sql/130_core_orders.sql at landing ----
-- =================================================================================================
-- 130 Orders
-- Status changes are optimistic: UPDATE … WHERE status and version are as read; on a lost race,
-- re-read and retry (3 attempts, exponential backoff with jitter), then ORDER_STATUS_CONFLICT.
-- Every status change bumps version and appends to core.order_status_history (triggers).
-- =================================================================================================

create table core.orders (
    id                 bigint generated always as identity,
    customer_id        bigint not null,
    seller_id          bigint not null,
    ship_to_zip        text not null,
    amount             bigint not null,
    currency           text not null,
    status             text not null default 'PENDING',
    version            integer not null default 1,
    status_changed_by  text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    confirmed_at       timestamptz,
    shipped_at         timestamptz,
    delivered_at       timestamptz,
    cancelled_at       timestamptz,
    constraint orders_pkey primary key (id),
    constraint orders_customer_id_fkey foreign key (customer_id) references core.customers (id),
    constraint orders_seller_id_fkey foreign key (seller_id) references core.sellers (id),
    constraint orders_ship_to_zip_format_check check (ship_to_zip ~ '^[0-9]{5}$'),
    constraint orders_amount_positive_check check (amount > 0),
    constraint orders_currency_format_check check (currency ~ '^[A-Z]{3}$'),
    constraint orders_status_check check (status in ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    constraint orders_version_positive_check check (version > 0),
    constraint orders_delivered_has_timestamp_check check (status <> 'DELIVERED' or delivered_at is not null),
    constraint orders_cancelled_has_timestamp_check check (status <> 'CANCELLED' or cancelled_at is not null)
);
alter table core.orders enable row level security;
comment on table core.orders is 'Customer orders: PENDING -> CONFIRMED (paid) -> SHIPPED (picked up) -> DELIVERED, or CANCELLED.';
comment on column core.orders.amount is 'Order total in minor units of currency.';
comment on column core.orders.version is 'Bumped on every status change; the optimistic-lock token.';
comment on column core.orders.status_changed_by is 'Actor (role[:sub]) of the last status change; copied into the history row.';

create index orders_customer_id_idx on core.orders (customer_id);
comment on index core.orders_customer_id_idx is 'Serves the customers FK (deletes/updates of customers) and per-customer listings.';
create index orders_seller_id_idx on core.orders (seller_id);
comment on index core.orders_seller_id_idx is 'Serves the sellers FK and per-seller listings.';

create table core.order_status_history (
    id           bigint generated always as identity,
    order_id     bigint not null,
    from_status  text,
    to_status    text not null,
    version      integer not null,
    actor        text not null,
    created_at   timestamptz not null default now(),
    constraint order_status_history_pkey primary key (id),
    constraint order_status_history_order_id_fkey foreign key (order_id) references core.orders (id),
    constraint order_status_history_order_id_version_key unique (order_id, version)
);
alter table core.order_status_history enable row level security;
comment on table core.order_status_history is 'Every order status change (and the creation) with its version, actor and time.';
comment on constraint order_status_history_order_id_version_key on core.order_status_history is
    'One row per order version: no duplicate in the path; also serves reads of one order''s history.';

create function core.tg_orders__bump_version()
returns trigger
language plpgsql
set search_path = ''
as $$
-- BEFORE UPDATE: a status change is a new version of the order.
begin
    if new.status is distinct from old.status then
        new.version := old.version + 1;
    end if;
    return new;
end
$$;
comment on function core.tg_orders__bump_version() is 'Trigger: bumps orders.version on every status change.';

create function core.tg_orders__history()
returns trigger
language plpgsql
set search_path = ''
as $$
-- AFTER INSERT or status change: append the step to core.order_status_history.
begin
    if tg_op = 'INSERT' or new.status is distinct from old.status then
        insert into core.order_status_history (order_id, from_status, to_status, version, actor, created_at)
        values (new.id, case when tg_op = 'UPDATE' then old.status end, new.status, new.version,
                coalesce(new.status_changed_by, auth.actor()), new.updated_at);
    end if;
    return null;
end
$$;
comment on function core.tg_orders__history() is 'Trigger: records every order status step in core.order_status_history.';

create trigger _010_check_transition
    before update of status on core.orders
    for each row execute function core.tg_status__check_transition('order');
comment on trigger _010_check_transition on core.orders is 'Refuses transitions not in core.state_transitions.';
create trigger _020_bump_version
    before update on core.orders
    for each row execute function core.tg_orders__bump_version();
comment on trigger _020_bump_version on core.orders is 'Bumps version on status change.';
create trigger _100_history
    after insert or update of status on core.orders
    for each row execute function core.tg_orders__history();
comment on trigger _100_history on core.orders is 'Appends each status step to the history.';

create function core.set_order_status(
    p_order_id bigint,
    p_to text,
    p_actor text default null,
    p_expected_version integer default null,
    p_now timestamptz default null,
    p_from text[] default null
)
returns core.orders
language plpgsql
volatile
set search_path = ''
as $$
-- Optimistic status change: UPDATE only if status and version are still what we read. A concurrent
-- change makes the UPDATE match nothing (READ COMMITTED re-checks the WHERE on the newest row), so we
-- re-read and retry: 3 attempts, backoff 10 ms then 20 ms (x 0.5-1.5 jitter), then a registered
-- conflict. p_expected_version lets a client insist on the version it saw (no retry then);
-- p_from restricts the statuses this action may start from (confirm: PENDING only), checked again
-- on every re-read, since the machine alone allows e.g. SHIPPED -> CONFIRMED after a failed delivery.
declare
    v_order core.orders;
    v_now timestamptz := coalesce(p_now, now());
    v_attempts constant integer := 3;
begin
    for v_attempt in 1 .. v_attempts loop
        select * into v_order from core.orders o where o.id = p_order_id;
        if not found then
            perform ops.raise_error('ORDER_NOT_FOUND', p_order_id::text);
        end if;
        if p_expected_version is not null and v_order.version <> p_expected_version then
            perform ops.log_event('order_status_conflict', 'warn',
                jsonb_build_object('order_id', p_order_id, 'expected_version', p_expected_version,
                                   'version', v_order.version, 'to_status', p_to),
                'ORDER_STATUS_CONFLICT');
            perform ops.raise_error('ORDER_STATUS_CONFLICT', p_order_id::text, '1');
        end if;
        if not core.transition_allowed('order', v_order.status, p_to)
           or (p_from is not null and v_order.status <> all (p_from)) then
            perform ops.raise_error('ORDER_INVALID_TRANSITION', p_order_id::text, v_order.status, p_to);
        end if;

        update core.orders o
           set status = p_to,
               status_changed_by = coalesce(p_actor, auth.actor()),
               updated_at = v_now,
               confirmed_at = case when p_to = 'CONFIRMED' then coalesce(o.confirmed_at, v_now) else o.confirmed_at end,
               shipped_at   = case when p_to = 'SHIPPED'   then v_now else o.shipped_at end,
               delivered_at = case when p_to = 'DELIVERED' then v_now else o.delivered_at end,
               cancelled_at = case when p_to = 'CANCELLED' then v_now else o.cancelled_at end
         where o.id = p_order_id and o.status = v_order.status and o.version = v_order.version
        returning * into v_order;
        if found then
            return v_order;
        end if;
        if v_attempt < v_attempts then
            perform pg_sleep(0.010 * power(2, v_attempt - 1) * (0.5 + random()));
        end if;
    end loop;
    perform ops.log_event('order_status_conflict', 'warn',
        jsonb_build_object('order_id', p_order_id, 'to_status', p_to, 'attempts', v_attempts),
        'ORDER_STATUS_CONFLICT');
    perform ops.raise_error('ORDER_STATUS_CONFLICT', p_order_id::text, v_attempts::text);
    return null;
end
$$;
comment on function core.set_order_status(bigint, text, text, integer, timestamptz, text[]) is
    'Move an order to p_to with optimistic locking (3 attempts, exponential backoff), or raise a registered error.';

-- ---- from sql/140_core_payments.sql at landing ----
-- =================================================================================================
-- 140 Payments and refunds
-- Capture is idempotent on the provider reference and credits the seller minus the platform fee;
-- a completed refund reverses it pro rata. Money rows are locked pessimistically (FOR UPDATE on the
-- payment) because two refunds racing for the same captured amount must be serialised.
-- =================================================================================================

create table core.payments (
    id              bigint generated always as identity,
    order_id        bigint not null,
    amount          bigint not null,
    currency        text not null,
    status          text not null default 'PENDING',
    provider_ref    text,
    fee_amount      bigint,
    failure_reason  text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    captured_at     timestamptz,
    failed_at       timestamptz,
    constraint payments_pkey primary key (id),
    constraint payments_order_id_fkey foreign key (order_id) references core.orders (id),
    constraint payments_provider_ref_key unique (provider_ref),
    constraint payments_amount_positive_check check (amount > 0),
    constraint payments_currency_format_check check (currency ~ '^[A-Z]{3}$'),
    constraint payments_status_check check (status in ('PENDING', 'CAPTURED', 'FAILED')),
    constraint payments_fee_within_amount_check check (fee_amount between 0 and amount),
    constraint payments_captured_complete_check
        check (status <> 'CAPTURED' or (provider_ref is not null and fee_amount is not null and captured_at is not null)),
    constraint payments_failed_has_reason_check check (status <> 'FAILED' or (failure_reason is not null and failed_at is not null))
);
alter table core.payments enable row level security;
comment on table core.payments is 'Payment attempts of an order: PENDING -> CAPTURED or FAILED.';
comment on column core.payments.provider_ref is 'The payment provider''s reference; unique, so a repeated capture is recognised and answered idempotently.';
comment on column core.payments.fee_amount is 'Platform fee taken at capture (minor units).';

-- At most one live (pending or captured) payment per order; failed attempts may pile up.
create unique index payments_order_id_live_key on core.payments (order_id) where status in ('PENDING', 'CAPTURED');
comment on index core.payments_order_id_live_key is 'One live payment per order; also serves the orders FK and "the payment of order X".';
create index payments_order_id_idx on core.payments (order_id);
comment on index core.payments_order_id_idx is 'Serves the orders FK for failed payments too (the partial unique index skips them).';

create trigger _010_check_transition
    before update of status on core.payments
    for each row execute function core.tg_status__check_transition('payment');
comment on trigger _010_check_transition on core.payments is 'Refuses transitions not in core.state_transitions.';

create table core.refunds (
    id              bigint generated always as identity,
    payment_id      bigint not null,
    amount          bigint not null,
    status          text not null default 'INITIATED',
    reason          text,
    failure_reason  text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    completed_at    timestamptz,
    failed_at       timestamptz,
    constraint refunds_pkey primary key (id),
    constraint refunds_payment_id_fkey foreign key (payment_id) references core.payments (id),
    constraint refunds_amount_positive_check check (amount > 0),
    constraint refunds_status_check check (status in ('INITIATED', 'COMPLETED', 'FAILED')),
    constraint refunds_completed_has_timestamp_check check (status <> 'COMPLETED' or completed_at is not null),
    constraint refunds_failed_has_reason_check check (status <> 'FAILED' or (failure_reason is not null and failed_at is not null))
);
alter table core.refunds enable row level security;
comment on table core.refunds is 'Refunds of a captured payment: INITIATED -> COMPLETED or FAILED; never more than captured.';

create index refunds_payment_id_idx on core.refunds (payment_id);
comment on index core.refunds_payment_id_idx is 'Serves the payments FK and the refundable-amount sum per payment.';

create trigger _010_check_transition
    before update of status on core.refunds
    for each row execute function core.tg_status__check_transition('refund');
comment on trigger _010_check_transition on core.refunds is 'Refuses transitions not in core.state_transitions.';

alter table core.ledger_transactions
    add constraint ledger_transactions_payment_id_fkey foreign key (payment_id) references core.payments (id),
    add constraint ledger_transactions_refund_id_fkey foreign key (refund_id) references core.refunds (id),
    add constraint ledger_transactions_refund_has_refund_id_check check ((kind = 'REFUND') = (refund_id is not null));
create index ledger_transactions_payment_id_idx on core.ledger_transactions (payment_id);
comment on index core.ledger_transactions_payment_id_idx is 'Serves the payments FK and "the ledger of a payment".';
create index ledger_transactions_refund_id_idx on core.ledger_transactions (refund_id) where refund_id is not null;
comment on index core.ledger_transactions_refund_id_idx is 'Serves the refunds FK.';

create function core.validate_money(p_amount bigint, p_currency text)
returns void
language plpgsql
stable
set search_path = ''
as $$
-- Registered errors for bad money input, before any row is touched.
begin
    if p_amount is null or p_amount <= 0 then
        perform ops.raise_error('INVALID_AMOUNT', coalesce(p_amount::text, 'null'));
    end if;
    if p_currency is null or p_currency !~ '^[A-Z]{3}$' then
        perform ops.raise_error('INVALID_CURRENCY', coalesce(p_currency, 'null'));
    end if;
end
$$;
comment on function core.validate_money(bigint, text) is 'Raise INVALID_AMOUNT / INVALID_CURRENCY for bad money input.';

create function core.create_order(
    p_customer_id bigint,
    p_seller_id bigint,
    p_ship_to_zip text,
    p_amount bigint,
    p_currency text,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.orders
language plpgsql
volatile
set search_path = ''
as $$
-- A new PENDING order and its PENDING payment for the full amount.
declare
    v_order core.orders;
    v_now timestamptz := coalesce(p_now, now());
begin
    perform core.validate_money(p_amount, p_currency);
    if p_ship_to_zip is null or p_ship_to_zip !~ '^[0-9]{5}$' then
        perform ops.raise_error('INVALID_ZIP_CODE', coalesce(p_ship_to_zip, 'null'));
    end if;
    if not exists (select 1 from core.customers c where c.id = p_customer_id) then
        perform ops.raise_error('CUSTOMER_NOT_FOUND', coalesce(p_customer_id::text, 'null'));
    end if;
    if not exists (select 1 from core.sellers s where s.id = p_seller_id) then
        perform ops.raise_error('SELLER_NOT_FOUND', coalesce(p_seller_id::text, 'null'));
    end if;
    insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency,
                             status_changed_by, created_at, updated_at)
    values (p_customer_id, p_seller_id, p_ship_to_zip, p_amount, p_currency,
            coalesce(p_actor, auth.actor()), v_now, v_now)
    returning * into v_order;
    insert into core.payments (order_id, amount, currency, created_at, updated_at)
    values (v_order.id, p_amount, p_currency, v_now, v_now);
    return v_order;
end
$$;
comment on function core.create_order(bigint, bigint, text, bigint, text, text, timestamptz) is
    'Create a PENDING order with its PENDING payment; validates money, zip code, customer and seller.';

create function core.create_payment(p_order_id bigint, p_now timestamptz default null)
returns core.payments
language plpgsql
volatile
set search_path = ''
as $$
-- A fresh PENDING payment for a PENDING order whose previous attempts failed.
declare
    v_order core.orders;
    v_payment core.payments;
    v_now timestamptz := coalesce(p_now, now());
begin
    select * into v_order from core.orders o where o.id = p_order_id for share;
    if not found then
        perform ops.raise_error('ORDER_NOT_FOUND', coalesce(p_order_id::text, 'null'));
    end if;
    if v_order.status <> 'PENDING' then
        perform ops.raise_error('ORDER_INVALID_TRANSITION', p_order_id::text, v_order.status, 'PENDING');
    end if;
    if exists (select 1 from core.payments p where p.order_id = p_order_id and p.status in ('PENDING', 'CAPTURED')) then
        perform ops.raise_error('ORDER_HAS_LIVE_PAYMENT', p_order_id::text);
    end if;
    insert into core.payments (order_id, amount, currency, created_at, updated_at)
    values (p_order_id, v_order.amount, v_order.currency, v_now, v_now)
    returning * into v_payment;
    return v_payment;
end
$$;
comment on function core.create_payment(bigint, timestamptz) is 'A new PENDING payment attempt for a PENDING order with no live payment.';

create function core.lock_payment(p_payment_id bigint)
returns core.payments
language plpgsql
volatile
set search_path = ''
as $$
-- The payment row, locked FOR UPDATE (capture, fail and refunds serialise on it), or PAYMENT_NOT_FOUND.
declare
    v_payment core.payments;
begin
    select * into v_payment from core.payments p where p.id = p_payment_id for update;
    if not found then
        perform ops.raise_error('PAYMENT_NOT_FOUND', coalesce(p_payment_id::text, 'null'));
    end if;
    return v_payment;
end
$$;
comment on function core.lock_payment(bigint) is 'Lock a payment row FOR UPDATE or raise PAYMENT_NOT_FOUND.';

create function core.capture_payment(
    p_payment_id bigint,
    p_provider_ref text,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.payments
language plpgsql
volatile
set search_path = ''
as $$
-- Capture: PENDING -> CAPTURED and one balanced ledger transaction (clearing -amount, seller
-- +amount-fee, platform fees +fee). The same provider_ref again returns the captured row unchanged.
declare
    v_payment core.payments;
    v_seller core.sellers;
    v_fee bigint;
    v_now timestamptz := coalesce(p_now, now());
begin
    if p_provider_ref is null or btrim(p_provider_ref) = '' then
        perform ops.raise_error('INVALID_ARGUMENT', 'provider_ref is required');
    end if;
    v_payment := core.lock_payment(p_payment_id);
    if v_payment.status = 'CAPTURED' then
        if v_payment.provider_ref = p_provider_ref then
            return v_payment;  -- idempotent repeat: nothing moves twice
        end if;
        perform ops.raise_error('PAYMENT_ALREADY_CAPTURED', p_payment_id::text);
    end if;
    if v_payment.status <> 'PENDING' then
        perform ops.log_event('payment_capture_failed', 'warn',
            jsonb_build_object('payment_id', p_payment_id, 'status', v_payment.status),
            'PAYMENT_INVALID_TRANSITION');
        perform ops.raise_error('PAYMENT_INVALID_TRANSITION', p_payment_id::text, v_payment.status, 'CAPTURED');
    end if;
    if exists (select 1 from core.payments p where p.provider_ref = p_provider_ref) then
        perform ops.raise_error('PAYMENT_PROVIDER_REF_IN_USE', p_provider_ref);
    end if;

    select s.* into v_seller
      from core.sellers s join core.orders o on o.seller_id = s.id
     where o.id = v_payment.order_id;
    -- Fee rounded half up to the minor unit.
    v_fee := (v_payment.amount * v_seller.fee_bps + 5000) / 10000;

    update core.payments p
       set status = 'CAPTURED', provider_ref = p_provider_ref, fee_amount = v_fee,
           captured_at = v_now, updated_at = v_now
     where p.id = p_payment_id
    returning * into v_payment;

    perform core.post_ledger('CAPTURE', v_payment.currency, v_payment.id, null,
        array[core.wallet_for('PAYMENT_CLEARING', null, v_payment.currency),
              core.wallet_for('SELLER', v_seller.id, v_payment.currency),
              core.wallet_for('PLATFORM_FEES', null, v_payment.currency)],
        array[-v_payment.amount, v_payment.amount - v_fee, v_fee],
        v_now);

    perform ops.log_event('payment_capture_succeeded', 'info',
        jsonb_build_object('payment_id', v_payment.id, 'order_id', v_payment.order_id,
                           'amount', v_payment.amount, 'currency', v_payment.currency,
                           'fee', v_fee, 'actor', coalesce(p_actor, auth.actor())));
    return v_payment;
end
$$;
comment on function core.capture_payment(bigint, text, text, timestamptz) is
    'Capture a PENDING payment (idempotent on provider_ref) and post the balanced capture to the ledger.';

create function core.fail_payment(
    p_payment_id bigint,
    p_reason text,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.payments
language plpgsql
volatile
set search_path = ''
as $$
-- The provider declined: PENDING -> FAILED with the reason. Nothing moves in the ledger.
declare
    v_payment core.payments;
    v_now timestamptz := coalesce(p_now, now());
begin
    if p_reason is null or btrim(p_reason) = '' then
        perform ops.raise_error('INVALID_ARGUMENT', 'a failure reason is required');
    end if;
    v_payment := core.lock_payment(p_payment_id);
    if v_payment.status <> 'PENDING' then
        perform ops.raise_error('PAYMENT_INVALID_TRANSITION', p_payment_id::text, v_payment.status, 'FAILED');
    end if;
    update core.payments p
       set status = 'FAILED', failure_reason = p_reason, failed_at = v_now, updated_at = v_now
     where p.id = p_payment_id
    returning * into v_payment;
    perform ops.log_event('payment_capture_failed', 'warn',
        jsonb_build_object('payment_id', v_payment.id, 'order_id', v_payment.order_id,
                           'reason', p_reason, 'actor', coalesce(p_actor, auth.actor())));
    return v_payment;
end
$$;
comment on function core.fail_payment(bigint, text, text, timestamptz) is 'Mark a PENDING payment FAILED (provider declined).';

create function core.initiate_refund(
    p_payment_id bigint,
    p_amount bigint,
    p_reason text default null,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.refunds
language plpgsql
volatile
set search_path = ''
as $$
-- INITIATED refund of a captured payment. The payment row lock serialises concurrent refunds, so
-- initiated + completed refunds can never exceed the captured amount.
declare
    v_payment core.payments;
    v_refund core.refunds;
    v_taken bigint;
    v_now timestamptz := coalesce(p_now, now());
begin
    if p_amount is null or p_amount <= 0 then
        perform ops.raise_error('INVALID_AMOUNT', coalesce(p_amount::text, 'null'));
    end if;
    v_payment := core.lock_payment(p_payment_id);
    if v_payment.status <> 'CAPTURED' then
        perform ops.raise_error('PAYMENT_NOT_CAPTURED', p_payment_id::text);
    end if;
    select coalesce(sum(r.amount), 0) into v_taken
      from core.refunds r where r.payment_id = p_payment_id and r.status in ('INITIATED', 'COMPLETED');
    if p_amount > v_payment.amount - v_taken then
        perform ops.raise_error('REFUND_EXCEEDS_CAPTURED', p_amount::text,
                                (v_payment.amount - v_taken)::text, p_payment_id::text);
    end if;
    insert into core.refunds (payment_id, amount, reason, created_at, updated_at)
    values (p_payment_id, p_amount, p_reason, v_now, v_now)
    returning * into v_refund;
    perform ops.log_event('refund_initiate_succeeded', 'info',
        jsonb_build_object('refund_id', v_refund.id, 'payment_id', p_payment_id, 'amount', p_amount,
                           'actor', coalesce(p_actor, auth.actor())));
    return v_refund;
end
$$;
comment on function core.initiate_refund(bigint, bigint, text, text, timestamptz) is
    'Start a refund of a captured payment; refunds never exceed what was captured.';

create function core.lock_refund(p_refund_id bigint)
returns core.refunds
language plpgsql
volatile
set search_path = ''
as $$
-- Lock the refund's payment, then the refund (the same order as initiate_refund: no deadlock).
declare
    v_refund core.refunds;
begin
    select * into v_refund from core.refunds r where r.id = p_refund_id;
    if not found then
        perform ops.raise_error('REFUND_NOT_FOUND', coalesce(p_refund_id::text, 'null'));
    end if;
    perform core.lock_payment(v_refund.payment_id);
    select * into v_refund from core.refunds r where r.id = p_refund_id for update;
    return v_refund;
end
$$;
comment on function core.lock_refund(bigint) is 'Lock a refund (after its payment) FOR UPDATE or raise REFUND_NOT_FOUND.';

create function core.complete_refund(
    p_refund_id bigint,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.refunds
language plpgsql
volatile
set search_path = ''
as $$
-- INITIATED -> COMPLETED and the reversing ledger transaction: clearing +amount, seller
-- -(amount - fee share), platform fees -fee share. The fee share is the difference of
-- floor(fee * refunded / captured) before and after, so partial refunds never reverse more fee than taken.
declare
    v_refund core.refunds;
    v_payment core.payments;
    v_seller_id bigint;
    v_done bigint;
    v_fee_share bigint;
    v_now timestamptz := coalesce(p_now, now());
begin
    v_refund := core.lock_refund(p_refund_id);
    if v_refund.status <> 'INITIATED' then
        perform ops.raise_error('REFUND_INVALID_TRANSITION', p_refund_id::text, v_refund.status, 'COMPLETED');
    end if;
    select * into v_payment from core.payments p where p.id = v_refund.payment_id;
    select o.seller_id into v_seller_id from core.orders o where o.id = v_payment.order_id;
    select coalesce(sum(r.amount), 0) into v_done
      from core.refunds r where r.payment_id = v_payment.id and r.status = 'COMPLETED';
    v_fee_share := (v_payment.fee_amount * (v_done + v_refund.amount)) / v_payment.amount
                 - (v_payment.fee_amount * v_done) / v_payment.amount;

    update core.refunds r
       set status = 'COMPLETED', completed_at = v_now, updated_at = v_now
     where r.id = p_refund_id
    returning * into v_refund;

    perform core.post_ledger('REFUND', v_payment.currency, v_payment.id, v_refund.id,
        array[core.wallet_for('PAYMENT_CLEARING', null, v_payment.currency),
              core.wallet_for('SELLER', v_seller_id, v_payment.currency),
              core.wallet_for('PLATFORM_FEES', null, v_payment.currency)],
        array[v_refund.amount, -(v_refund.amount - v_fee_share), -v_fee_share],
        v_now);
    perform ops.log_event('refund_complete_succeeded', 'info',
        jsonb_build_object('refund_id', v_refund.id, 'payment_id', v_payment.id,
                           'amount', v_refund.amount, 'fee_share', v_fee_share,
                           'actor', coalesce(p_actor, auth.actor())));
    return v_refund;
end
$$;
comment on function core.complete_refund(bigint, text, timestamptz) is
    'Complete an INITIATED refund and post the reversing, balanced ledger transaction.';

create function core.fail_refund(
    p_refund_id bigint,
    p_reason text,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.refunds
language plpgsql
volatile
set search_path = ''
as $$
-- INITIATED -> FAILED: the amount becomes refundable again. Nothing moves in the ledger.
declare
    v_refund core.refunds;
    v_now timestamptz := coalesce(p_now, now());
begin
    if p_reason is null or btrim(p_reason) = '' then
        perform ops.raise_error('INVALID_ARGUMENT', 'a failure reason is required');
    end if;
    v_refund := core.lock_refund(p_refund_id);
    if v_refund.status <> 'INITIATED' then
        perform ops.raise_error('REFUND_INVALID_TRANSITION', p_refund_id::text, v_refund.status, 'FAILED');
    end if;
    update core.refunds r
       set status = 'FAILED', failure_reason = p_reason, failed_at = v_now, updated_at = v_now
     where r.id = p_refund_id
    returning * into v_refund;
    perform ops.log_event('refund_fail_succeeded', 'warn',
        jsonb_build_object('refund_id', v_refund.id, 'reason', p_reason,
                           'actor', coalesce(p_actor, auth.actor())));
    return v_refund;
end
$$;
comment on function core.fail_refund(bigint, text, text, timestamptz) is 'Mark an INITIATED refund FAILED; its amount is refundable again.';

-- ---- from sql/150_core_shipping.sql at landing ----
-- =================================================================================================
-- 150 Shipping assignments
-- An assignment is offered for a CONFIRMED order to every active agent serving its zip code; exactly
-- one agent accepts it (row lock), then PICKED_UP -> IN_TRANSIT -> DELIVERED, or FAILED / CANCELLED.
-- Every step lands in core.assignment_status_history (the metrics activity feed reads it).
-- Lock order everywhere: assignment row, then order row.
-- =================================================================================================

create table core.shipping_assignments (
    id                 bigint generated always as identity,
    order_id           bigint not null,
    agent_id           bigint,
    zip_code           text not null,
    status             text not null default 'OFFERED',
    sla_due_at         timestamptz not null,
    failure_reason     text,
    status_changed_by  text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    accepted_at        timestamptz,
    picked_up_at       timestamptz,
    in_transit_at      timestamptz,
    delivered_at       timestamptz,
    failed_at          timestamptz,
    cancelled_at       timestamptz,
    constraint shipping_assignments_pkey primary key (id),
    constraint shipping_assignments_order_id_fkey foreign key (order_id) references core.orders (id),
    constraint shipping_assignments_agent_id_fkey foreign key (agent_id) references core.delivery_agents (id),
    constraint shipping_assignments_zip_code_format_check check (zip_code ~ '^[0-9]{5}$'),
    constraint shipping_assignments_status_check
        check (status in ('OFFERED', 'ACCEPTED', 'PICKED_UP', 'IN_TRANSIT', 'DELIVERED', 'FAILED', 'CANCELLED')),
    constraint shipping_assignments_sla_after_offer_check check (sla_due_at > created_at),
    -- Offers have no agent yet; from ACCEPTED on (FAILED included) the row names its agent.
    constraint shipping_assignments_agent_matches_status_check
        check (case status when 'OFFERED' then agent_id is null
                           when 'CANCELLED' then true
                           else agent_id is not null end),
    constraint shipping_assignments_delivered_has_timestamp_check check (status <> 'DELIVERED' or delivered_at is not null),
    constraint shipping_assignments_failed_has_reason_check check (status <> 'FAILED' or failure_reason is not null)
);
alter table core.shipping_assignments enable row level security;
comment on table core.shipping_assignments is 'Delivery work: offered for an order, accepted by one agent, then picked up, in transit, delivered (or failed/cancelled).';
comment on column core.shipping_assignments.zip_code is 'The order''s ship-to zip code, copied so offers match agents without a join.';
comment on column core.shipping_assignments.sla_due_at is 'When delivery is due; delivered_at after it is an SLA breach.';

-- One live (not failed, not cancelled) assignment per order.
create unique index shipping_assignments_order_id_live_key on core.shipping_assignments (order_id)
    where status not in ('FAILED', 'CANCELLED');
comment on index core.shipping_assignments_order_id_live_key is 'At most one live assignment per order.';
create index shipping_assignments_order_id_idx on core.shipping_assignments (order_id);
comment on index core.shipping_assignments_order_id_idx is 'Serves the orders FK, including failed and cancelled rows.';
create index shipping_assignments_offered_zip_code_idx on core.shipping_assignments (zip_code, created_at)
    where status = 'OFFERED';
comment on index core.shipping_assignments_offered_zip_code_idx is 'Serves an agent''s open offers: OFFERED rows in its zip codes, oldest first.';

create table core.assignment_status_history (
    id             bigint generated always as identity,
    assignment_id  bigint not null,
    order_id       bigint not null,
    agent_id       bigint,
    from_status    text,
    to_status      text not null,
    actor          text not null,
    reason         text,
    created_at     timestamptz not null default now(),
    constraint assignment_status_history_pkey primary key (id),
    constraint assignment_status_history_assignment_id_fkey foreign key (assignment_id) references core.shipping_assignments (id),
    constraint assignment_status_history_order_id_fkey foreign key (order_id) references core.orders (id),
    constraint assignment_status_history_agent_id_fkey foreign key (agent_id) references core.delivery_agents (id)
);
alter table core.assignment_status_history enable row level security;
comment on table core.assignment_status_history is 'Every shipping-assignment step with agent, actor and time (the agent activity feed).';

create index assignment_status_history_assignment_id_idx on core.assignment_status_history (assignment_id, id);
comment on index core.assignment_status_history_assignment_id_idx is 'Serves the FK and one assignment''s steps in order.';
create index assignment_status_history_order_id_idx on core.assignment_status_history (order_id);
comment on index core.assignment_status_history_order_id_idx is 'Serves the orders FK and the delivery steps of one order.';
create index assignment_status_history_agent_id_created_at_idx on core.assignment_status_history (agent_id, created_at desc);
comment on index core.assignment_status_history_agent_id_created_at_idx is 'Serves the FK and an agent''s activity feed, newest first.';

create function core.tg_shipping_assignments__history()
returns trigger
language plpgsql
set search_path = ''
as $$
-- AFTER INSERT or status change: append the step to core.assignment_status_history.
begin
    if tg_op = 'INSERT' or new.status is distinct from old.status then
        insert into core.assignment_status_history
            (assignment_id, order_id, agent_id, from_status, to_status, actor, reason, created_at)
        values (new.id, new.order_id, new.agent_id, case when tg_op = 'UPDATE' then old.status end,
                new.status, coalesce(new.status_changed_by, auth.actor()),
                case when new.status = 'FAILED' then new.failure_reason end, new.updated_at);
    end if;
    return null;
end
$$;
comment on function core.tg_shipping_assignments__history() is 'Trigger: records every assignment step in core.assignment_status_history.';

create trigger _010_check_transition
    before update of status on core.shipping_assignments
    for each row execute function core.tg_status__check_transition('assignment');
comment on trigger _010_check_transition on core.shipping_assignments is 'Refuses transitions not in core.state_transitions.';
create trigger _100_history
    after insert or update of status on core.shipping_assignments
    for each row execute function core.tg_shipping_assignments__history();
comment on trigger _100_history on core.shipping_assignments is 'Appends each status step to the history.';

create function core.offer_assignment(
    p_order_id bigint,
    p_sla_due_at timestamptz default null,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.shipping_assignments
language plpgsql
volatile
set search_path = ''
as $$
-- Offer a CONFIRMED order's delivery to the agents of its zip code (default SLA: 48 hours).
declare
    v_order core.orders;
    v_assignment core.shipping_assignments;
    v_now timestamptz := coalesce(p_now, now());
begin
    -- FOR SHARE: the order cannot be cancelled under us; concurrent offers still race on the
    -- partial unique index, whose violation we turn into ASSIGNMENT_ALREADY_LIVE (409).
    select * into v_order from core.orders o where o.id = p_order_id for share;
    if not found then
        perform ops.raise_error('ORDER_NOT_FOUND', coalesce(p_order_id::text, 'null'));
    end if;
    if v_order.status <> 'CONFIRMED' then
        perform ops.raise_error('ASSIGNMENT_ORDER_NOT_READY', p_order_id::text, v_order.status);
    end if;
    if exists (select 1 from core.shipping_assignments a
                where a.order_id = p_order_id and a.status not in ('FAILED', 'CANCELLED')) then
        perform ops.raise_error('ASSIGNMENT_ALREADY_LIVE', p_order_id::text);
    end if;
    if p_sla_due_at is not null and p_sla_due_at <= v_now then
        perform ops.raise_error('INVALID_ARGUMENT', 'sla_due_at must be in the future');
    end if;
    if not exists (select 1 from core.delivery_agents d
                    where d.status = 'ACTIVE' and d.serviceable_zip_codes @> array[v_order.ship_to_zip]) then
        perform ops.raise_error('ASSIGNMENT_NO_AGENT_FOR_ZIP', v_order.ship_to_zip);
    end if;
    begin
        insert into core.shipping_assignments (order_id, zip_code, sla_due_at, status_changed_by, created_at, updated_at)
        values (p_order_id, v_order.ship_to_zip, coalesce(p_sla_due_at, v_now + interval '48 hours'),
                coalesce(p_actor, auth.actor()), v_now, v_now)
        returning * into v_assignment;
    exception when unique_violation then
        -- A concurrent offer for the same order committed between our check and our insert.
        perform ops.raise_error('ASSIGNMENT_ALREADY_LIVE', p_order_id::text);
    end;
    return v_assignment;
end
$$;
comment on function core.offer_assignment(bigint, timestamptz, text, timestamptz) is
    'Offer a CONFIRMED order''s delivery to the active agents serving its zip code.';

create function core.lock_assignment(p_assignment_id bigint)
returns core.shipping_assignments
language plpgsql
volatile
set search_path = ''
set lock_timeout = '5s'
as $$
-- The assignment row FOR UPDATE, waiting at most 5 s (then the registered, retryable
-- ASSIGNMENT_LOCK_TIMEOUT and an assignment_lock_timeout log line), or ASSIGNMENT_NOT_FOUND.
-- The loser of a race must wait to learn that the row is taken and get a clean conflict, not a
-- spurious "busy", so the fallback waits (FOR UPDATE, not NOWAIT). The uncontended path first tries
-- SKIP LOCKED outside any exception block: catching lock_not_available needs a subtransaction, and
-- a row locked in a subtransaction then updated by the main one gets a MultiXact on every step
-- (bench/lifecycle measured one per accept/pick-up/transit/deliver).
declare
    v_assignment core.shipping_assignments;
begin
    select * into v_assignment from core.shipping_assignments a
     where a.id = p_assignment_id for update skip locked;
    if v_assignment.id is not null then
        return v_assignment;
    end if;
    begin  -- absent, or locked by someone else: wait for it, at most lock_timeout
        select * into v_assignment from core.shipping_assignments a where a.id = p_assignment_id for update;
    exception when lock_not_available then
        perform ops.log_event('assignment_lock_timeout', 'warn',
            jsonb_build_object('assignment_id', p_assignment_id, 'lock_timeout', '5s'),
            'ASSIGNMENT_LOCK_TIMEOUT');
        perform ops.raise_error('ASSIGNMENT_LOCK_TIMEOUT', p_assignment_id::text, '5s');
    end;
    if v_assignment.id is null then
        perform ops.raise_error('ASSIGNMENT_NOT_FOUND', coalesce(p_assignment_id::text, 'null'));
    end if;
    return v_assignment;
end
$$;
comment on function core.lock_assignment(bigint) is
    'Lock an assignment FOR UPDATE with a 5 s lock_timeout, raising registered errors on timeout or absence.';

create function core.accept_assignment(
    p_assignment_id bigint,
    p_agent_id bigint,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.shipping_assignments
language plpgsql
volatile
set search_path = ''
as $$
-- OFFERED -> ACCEPTED by one eligible agent. Concurrent acceptors queue on the row lock; the first
-- wins, every later one finds the row no longer OFFERED and gets ASSIGNMENT_ALREADY_TAKEN.
declare
    v_assignment core.shipping_assignments;
    v_agent core.delivery_agents;
    v_now timestamptz := coalesce(p_now, now());
begin
    select * into v_agent from core.delivery_agents d where d.id = p_agent_id;
    if not found then
        perform ops.raise_error('AGENT_NOT_FOUND', coalesce(p_agent_id::text, 'null'));
    end if;
    v_assignment := core.lock_assignment(p_assignment_id);
    if v_assignment.status <> 'OFFERED' then
        perform ops.log_event('assignment_accept_conflict', 'warn',
            jsonb_build_object('assignment_id', p_assignment_id, 'agent_id', p_agent_id,
                               'status', v_assignment.status, 'winner_agent_id', v_assignment.agent_id),
            'ASSIGNMENT_ALREADY_TAKEN');
        perform ops.raise_error('ASSIGNMENT_ALREADY_TAKEN', p_assignment_id::text, v_assignment.status);
    end if;
    if v_agent.status <> 'ACTIVE' then
        perform ops.raise_error('AGENT_NOT_ELIGIBLE', p_agent_id::text, p_assignment_id::text,
                                'agent is ' || v_agent.status);
    end if;
    if not v_agent.serviceable_zip_codes @> array[v_assignment.zip_code] then
        perform ops.raise_error('AGENT_NOT_ELIGIBLE', p_agent_id::text, p_assignment_id::text,
                                'zip code ' || v_assignment.zip_code || ' is not served');
    end if;
    update core.shipping_assignments a
       set status = 'ACCEPTED', agent_id = p_agent_id, accepted_at = v_now, updated_at = v_now,
           status_changed_by = coalesce(p_actor, auth.actor())
     where a.id = p_assignment_id
    returning * into v_assignment;
    return v_assignment;
end
$$;
comment on function core.accept_assignment(bigint, bigint, text, timestamptz) is
    'Accept an offered assignment: exactly one agent wins; the others get ASSIGNMENT_ALREADY_TAKEN.';

create function core.advance_assignment(
    p_assignment_id bigint,
    p_to text,
    p_agent_id bigint default null,
    p_reason text default null,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.shipping_assignments
language plpgsql
volatile
set search_path = ''
as $$
-- Move an accepted assignment on: PICKED_UP, IN_TRANSIT, DELIVERED, FAILED or CANCELLED, with the
-- order following (picked up -> SHIPPED, delivered -> DELIVERED, failed after pick-up -> CONFIRMED
-- again so it can be re-offered). p_agent_id, when given, must be the assignment's agent.
declare
    v_assignment core.shipping_assignments;
    v_order_status text;
    v_actor text := coalesce(p_actor, auth.actor());
    v_now timestamptz := coalesce(p_now, now());
begin
    if p_to is null or p_to not in ('PICKED_UP', 'IN_TRANSIT', 'DELIVERED', 'FAILED', 'CANCELLED') then
        perform ops.raise_error('INVALID_ARGUMENT', 'unknown assignment status ' || coalesce(p_to, 'null'));
    end if;
    if p_to = 'FAILED' and (p_reason is null or btrim(p_reason) = '') then
        perform ops.raise_error('INVALID_ARGUMENT', 'a failure reason is required');
    end if;
    v_assignment := core.lock_assignment(p_assignment_id);
    if p_agent_id is not null and v_assignment.agent_id is distinct from p_agent_id then
        perform ops.raise_error('ASSIGNMENT_NOT_YOURS', p_assignment_id::text);
    end if;
    if not core.transition_allowed('assignment', v_assignment.status, p_to) then
        perform ops.raise_error('ASSIGNMENT_INVALID_TRANSITION', p_assignment_id::text, v_assignment.status, p_to);
    end if;
    select o.status into v_order_status from core.orders o where o.id = v_assignment.order_id;

    update core.shipping_assignments a
       set status = p_to, updated_at = v_now, status_changed_by = v_actor,
           picked_up_at  = case when p_to = 'PICKED_UP'  then v_now else a.picked_up_at end,
           in_transit_at = case when p_to = 'IN_TRANSIT' then v_now else a.in_transit_at end,
           delivered_at  = case when p_to = 'DELIVERED'  then v_now else a.delivered_at end,
           failed_at     = case when p_to = 'FAILED'     then v_now else a.failed_at end,
           cancelled_at  = case when p_to = 'CANCELLED'  then v_now else a.cancelled_at end,
           failure_reason = case when p_to = 'FAILED' then p_reason else a.failure_reason end
     where a.id = p_assignment_id
    returning * into v_assignment;

    if p_to = 'PICKED_UP' then
        perform core.set_order_status(v_assignment.order_id, 'SHIPPED', v_actor, null, v_now, array['CONFIRMED']);
    elsif p_to = 'DELIVERED' then
        perform core.set_order_status(v_assignment.order_id, 'DELIVERED', v_actor, null, v_now, array['SHIPPED']);
    elsif p_to = 'FAILED' and v_order_status = 'SHIPPED' then
        perform core.set_order_status(v_assignment.order_id, 'CONFIRMED', v_actor, null, v_now, array['SHIPPED']);
    end if;
    return v_assignment;
end
$$;
comment on function core.advance_assignment(bigint, text, bigint, text, text, timestamptz) is
    'Move an assignment to PICKED_UP, IN_TRANSIT, DELIVERED, FAILED or CANCELLED; the order follows.';

create function core.confirm_order(
    p_order_id bigint,
    p_actor text default null,
    p_expected_version integer default null,
    p_now timestamptz default null
)
returns core.orders
language plpgsql
volatile
set search_path = ''
as $$
-- PENDING -> CONFIRMED, only once the order's payment is captured.
declare
    v_status text;
begin
    select o.status into v_status from core.orders o where o.id = p_order_id;
    if not found then
        perform ops.raise_error('ORDER_NOT_FOUND', coalesce(p_order_id::text, 'null'));
    end if;
    if v_status = 'PENDING' and not exists (
        select 1 from core.payments p where p.order_id = p_order_id and p.status = 'CAPTURED') then
        perform ops.raise_error('ORDER_NOT_PAID', p_order_id::text);
    end if;
    return core.set_order_status(p_order_id, 'CONFIRMED', p_actor, p_expected_version, p_now, array['PENDING']);
end
$$;
comment on function core.confirm_order(bigint, text, integer, timestamptz) is
    'Confirm a PENDING order whose payment is captured (optimistic status change).';

create function core.cancel_order(
    p_order_id bigint,
    p_actor text default null,
    p_expected_version integer default null,
    p_now timestamptz default null
)
returns core.orders
language plpgsql
volatile
set search_path = ''
as $$
-- PENDING/CONFIRMED -> CANCELLED. A pending payment fails with reason "order cancelled"; a live
-- offer or accepted assignment is cancelled. Captured money is returned by refunds, explicitly.
declare
    v_order core.orders;
    v_actor text := coalesce(p_actor, auth.actor());
    v_now timestamptz := coalesce(p_now, now());
begin
    -- Lock order: assignments first, then the order (as advance_assignment does), so no deadlock.
    perform 1 from core.shipping_assignments a
     where a.order_id = p_order_id and a.status in ('OFFERED', 'ACCEPTED')
       for update;
    v_order := core.set_order_status(p_order_id, 'CANCELLED', v_actor, p_expected_version, v_now);
    update core.shipping_assignments a
       set status = 'CANCELLED', cancelled_at = v_now, updated_at = v_now, status_changed_by = v_actor
     where a.order_id = p_order_id and a.status in ('OFFERED', 'ACCEPTED');
    update core.payments p
       set status = 'FAILED', failure_reason = 'order cancelled', failed_at = v_now, updated_at = v_now
     where p.order_id = p_order_id and p.status = 'PENDING';
    return v_order;
end
$$;
comment on function core.cancel_order(bigint, text, integer, timestamptz) is
    'Cancel a PENDING or CONFIRMED order; cancels its live assignment and fails its pending payment.';
