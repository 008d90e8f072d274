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
    ('INVALID_CURRENCY',            'PGRST', 422, 'currency must be an active ISO 4217 code, got %s', 'Use a code of GET /currencies, e.g. EUR.', false),
    ('AMOUNT_TOO_LARGE',            'PGRST', 422, 'amount %s exceeds the maximum of %s minor units', 'Split the payment; the limit is core.amount_max().', false),
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
    ('SERIALIZATION_FAILURE',       '40001', 500, 'could not serialize access', 'The HTTP front retries the transaction.', true),
    ('STATEMENT_TIMEOUT',           '57014', 500, 'canceling statement due to statement timeout', 'The request role''s statement_timeout elapsed (README, roles), or the client went away.', false);

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
