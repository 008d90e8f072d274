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
    constraint payments_currency_fkey foreign key (currency) references core.currencies (code),
    constraint payments_provider_ref_key unique (provider_ref),
    constraint payments_amount_range_check check (amount between 1 and core.amount_max()),
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
create index payments_currency_idx on core.payments (currency);
comment on index core.payments_currency_idx is 'Serves the currencies FK (a currency row cannot go while a payment uses it).';

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
    if p_amount > core.amount_max() then
        perform ops.raise_error('AMOUNT_TOO_LARGE', p_amount::text, core.amount_max()::text);
    end if;
    if p_currency is null or not exists (select 1 from core.currencies c where c.code = p_currency) then
        perform ops.raise_error('INVALID_CURRENCY', coalesce(p_currency, 'null'));
    end if;
end
$$;
comment on function core.validate_money(bigint, text) is 'Raise INVALID_AMOUNT / AMOUNT_TOO_LARGE / INVALID_CURRENCY for bad money input.';

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
    v_fee := core.fee_for(v_payment.amount, v_seller.fee_bps);

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
    select coalesce(sum(r.amount), 0)::bigint into v_taken  -- never above the captured (bigint) amount
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
-- -(amount - fee share), platform fees -fee share (core.refund_fee_share: pro rata, overflow-safe).
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
    select coalesce(sum(r.amount), 0)::bigint into v_done  -- never above the captured (bigint) amount
      from core.refunds r where r.payment_id = v_payment.id and r.status = 'COMPLETED';
    v_fee_share := core.refund_fee_share(v_payment.fee_amount, v_payment.amount, v_done, v_refund.amount);

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
