-- Undo 0008: the four functions as 0001 made them, then drop the fee functions 0008 created.
-- Replacing a function takes a brief lock on it: wait at most 5 s for callers, never hang a deploy.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

create or replace function core.tg_ledger_entries__check_balance()
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


create or replace function core.capture_payment(
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

create or replace function core.initiate_refund(
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

create or replace function core.complete_refund(
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

-- Lint allowlist (squawk ban-drop-function): a rollback drops what its migration created; no caller
-- is left, the functions above were restored to their 0001 bodies first.
-- squawk-ignore ban-drop-function
drop function if exists core.refund_fee_share(bigint, bigint, bigint, bigint);
-- squawk-ignore ban-drop-function
drop function if exists core.platform_fee(bigint, integer);
