-- 0006 what plpgsql_check reported, fixed.
-- depends: 0005.security
-- plpgsql_check (make test) reported a numeric sum() assigned to a bigint in three functions:
-- initiate_refund and complete_refund cast it (a payment's refunds never exceed its bigint amount);
-- the ledger balance check keeps it numeric so an unbalanced sum beyond bigint is reported as
-- LEDGER_UNBALANCED instead of failing with 22003, and its count(*) goes into a bigint. The fee rules
-- themselves have their one home in core.fee_for / core.refund_fee_share (0005). CREATE OR REPLACE
-- keeps grants, triggers and the functions' oids; no table is touched.

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
    v_sum numeric;  -- sum() of bigint is numeric: an unbalanced sum beyond bigint is still reported, not 22003
    v_currency text;
    v_foreign bigint;  -- count(*) is bigint
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
