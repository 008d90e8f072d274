-- Undo 0005. Role attributes (waybill_owner, its pg_read_all_stats membership, the request roles'
-- statement_timeout and comments) are cluster-wide like the roles of 0001 and may serve other
-- databases of the cluster: they stay. Everything of this database goes back as 0004 left it.

-- Ownership back to the migrating login, as before 0005.
-- Lint allowlist: a rollback drops exactly what its migration created, in one transaction.
-- squawk-ignore-file ban-drop-function, ban-drop-view, ban-drop-table, ban-drop-constraint, constraint-missing-not-valid, require-concurrent-index-deletion
set local lock_timeout = '5s';
set local statement_timeout = '120s';

do $own$ begin perform ops.assign_owner(current_user); end $own$;
drop function ops.assign_owner(name);
drop function ops.owned_schemas();
revoke usage on schema public from waybill_owner;

-- The HTTP API
create or replace function api.accept_assignment(assignment_id bigint)
returns api.shipping_assignments
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.shipping_assignments,
        to_jsonb(core.accept_assignment(assignment_id, auth.require_agent(), auth.actor())))
$$;
comment on function api.accept_assignment(bigint) is $$Accept an offer
Exactly one agent wins an offer; the others get 409 ASSIGNMENT_ALREADY_TAKEN. A lock held over 5 s gives a retryable 503.$$;

create or replace function api.advance_assignment(assignment_id bigint, status text, reason text default null)
returns api.shipping_assignments
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Agents move their own work forward; cancelling is the service's call (api.cancel_assignment).
begin
    if status is null or status not in ('PICKED_UP', 'IN_TRANSIT', 'DELIVERED', 'FAILED') then
        perform ops.raise_error('INVALID_ARGUMENT', 'status must be PICKED_UP, IN_TRANSIT, DELIVERED or FAILED');
    end if;
    return jsonb_populate_record(null::api.shipping_assignments,
        to_jsonb(core.advance_assignment(assignment_id, status, auth.require_agent(), reason, auth.actor())));
end
$$;
comment on function api.advance_assignment(bigint, text, text) is $$Move an own assignment forward
status is PICKED_UP, IN_TRANSIT, DELIVERED or FAILED (with a reason). The order follows.$$;

drop function auth.agent_sees_assignment(bigint);
drop view api.currencies;

-- Money
create or replace function core.validate_money(p_amount bigint, p_currency text)
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

drop index core.orders_currency_idx;
drop index core.payments_currency_idx;
drop index core.wallets_currency_idx;
alter table core.orders
    drop constraint orders_currency_fkey,
    drop constraint orders_amount_range_check,
    add constraint orders_amount_positive_check check (amount > 0);
alter table core.payments
    drop constraint payments_currency_fkey,
    drop constraint payments_amount_range_check,
    add constraint payments_amount_positive_check check (amount > 0);
alter table core.wallets drop constraint wallets_currency_fkey;
drop function core.refund_fee_share(bigint, bigint, bigint, bigint);
drop function core.fee_for(bigint, integer);
drop function core.amount_max();
drop table core.currencies;

-- Error registry
delete from ops.error_codes where code in ('AMOUNT_TOO_LARGE', 'STATEMENT_TIMEOUT');
update ops.error_codes
   set message = 'currency must be an ISO 4217 code, got %s', hint = 'Use three upper-case letters, e.g. EUR.'
 where code = 'INVALID_CURRENCY';
