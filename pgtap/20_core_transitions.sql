-- Core transitions: every lifecycle function, allowed and refused (refusals asserted by registry code),
-- the trigger that refuses status changes skipping the state machine, and the status history.
-- Times are injected through p_now; the request runs as role "service" (JWT claims), so history
-- actors are "service:svc-1" unless a call names its actor.
begin;
select plan(126);

set local request.jwt.claims = '{"role": "service", "sub": "svc-1"}';

-- ---------------------------------------------------------------------------------------------
-- Fixtures and helpers
-- ---------------------------------------------------------------------------------------------
insert into core.customers (id, name, email) overriding system value values (1001, 'Ana', 'ana@example.com');
insert into core.sellers (id, name, fee_bps) overriding system value values (2001, 'Shop', 1000);
insert into core.delivery_agents (id, name, status, serviceable_zip_codes) overriding system value values
    (3001, 'Ann', 'ACTIVE',   array['10001', '10002']),
    (3002, 'Ben', 'ACTIVE',   array['10001']),
    (3003, 'Cal', 'INACTIVE', array['10001']),
    (3004, 'Dot', 'ACTIVE',   array['20002']),
    (3005, 'Eli', 'INACTIVE', array['30003']);

-- Ids of rows made by the functions under test, by name: pg_temp.id('o_main').
create temp table ids (name text primary key, id bigint not null);
create function pg_temp.id(p_name text) returns bigint
language plpgsql stable
as $$
declare
    v_id bigint;
begin
    select i.id into strict v_id from ids i where i.name = p_name;
    return v_id;
end
$$;

-- A PENDING order (and its PENDING payment) named o_<name> / p_<name>.
create function pg_temp.new_order(p_name text, p_zip text, p_amount bigint, p_now timestamptz) returns void
language plpgsql
as $$
declare
    v_order core.orders;
begin
    v_order := core.create_order(1001, 2001, p_zip, p_amount, 'EUR', p_now => p_now);
    insert into ids values ('o_' || p_name, v_order.id),
                           ('p_' || p_name, (select p.id from core.payments p where p.order_id = v_order.id));
end
$$;

-- A CONFIRMED order: created, captured a minute later, confirmed a minute after that.
create function pg_temp.confirmed_order(p_name text, p_zip text, p_amount bigint, p_now timestamptz) returns void
language plpgsql
as $$
begin
    perform pg_temp.new_order(p_name, p_zip, p_amount, p_now);
    perform core.capture_payment(pg_temp.id('p_' || p_name), 'PSP-' || p_name, p_now => p_now + interval '1 minute');
    perform core.confirm_order(pg_temp.id('o_' || p_name), p_now => p_now + interval '2 minutes');
end
$$;

-- Row count and content digest of every core table: equal before/after means nothing changed.
create function pg_temp.census() returns table (tbl text, n bigint, digest text)
language plpgsql
as $$
declare
    v_table text;
begin
    for v_table in select tablename from pg_tables where schemaname = 'core' order by 1 loop
        tbl := v_table;
        execute format('select count(*), md5(coalesce(string_agg(t::text, ''|'' order by t::text), '''')) from core.%I t',
                       v_table)
           into n, digest;
        return next;
    end loop;
end
$$;

create function pg_temp.ledger_size() returns text
language sql stable
as $$
    select format('%s transactions, %s entries',
                  (select count(*) from core.ledger_transactions), (select count(*) from core.ledger_entries))
$$;

-- ---------------------------------------------------------------------------------------------
-- create_order: refusals change nothing
-- ---------------------------------------------------------------------------------------------
create temp table snap_create as select * from pg_temp.census();

select throws_code($$select core.create_order(1001, 2001, '10001', 0, 'EUR')$$, 'INVALID_AMOUNT', 'create_order: amount 0');
select throws_code($$select core.create_order(1001, 2001, '10001', -5, 'EUR')$$, 'INVALID_AMOUNT', 'create_order: amount -5');
select throws_code($$select core.create_order(1001, 2001, '10001', null, 'EUR')$$, 'INVALID_AMOUNT', 'create_order: amount null');
select throws_code($$select core.create_order(1001, 2001, '10001', 100, 'eur')$$, 'INVALID_CURRENCY', 'create_order: currency eur');
select throws_code($$select core.create_order(1001, 2001, '1234', 100, 'EUR')$$, 'INVALID_ZIP_CODE', 'create_order: zip 1234');
select throws_code($$select core.create_order(1001, 2001, null, 100, 'EUR')$$, 'INVALID_ZIP_CODE', 'create_order: zip null');
select throws_code($$select core.create_order(999999, 2001, '10001', 100, 'EUR')$$, 'CUSTOMER_NOT_FOUND', 'create_order: unknown customer');
select throws_code($$select core.create_order(1001, 999999, '10001', 100, 'EUR')$$, 'SELLER_NOT_FOUND', 'create_order: unknown seller');

select set_eq('select * from pg_temp.census()', 'select * from snap_create',
    'refused create_order calls changed no row of core');

-- ---------------------------------------------------------------------------------------------
-- create_order: a PENDING order with a PENDING payment for the full amount
-- ---------------------------------------------------------------------------------------------
do $$
begin
    perform pg_temp.new_order('main', '10001', 10000, '2030-01-01 09:00Z');
    perform pg_temp.new_order('other', '10002', 2500, '2030-01-01 09:00Z');
    perform pg_temp.new_order('nopay', '10001', 3000, '2030-01-01 09:00Z');
    perform pg_temp.confirmed_order('cancel', '10001', 4000, '2030-01-01 09:00Z');
    perform pg_temp.confirmed_order('fail', '10002', 5000, '2030-01-01 09:00Z');
    perform pg_temp.confirmed_order('nozip', '99999', 1000, '2030-01-01 09:00Z');
    perform pg_temp.confirmed_order('inzip', '30003', 1000, '2030-01-01 09:00Z');
end
$$;

select results_eq(
    $$select status, version, customer_id, seller_id, ship_to_zip, amount, currency, created_at, status_changed_by
        from core.orders where id = pg_temp.id('o_main')$$,
    $$values ('PENDING', 1, 1001::bigint, 2001::bigint, '10001', 10000::bigint, 'EUR', '2030-01-01 09:00Z'::timestamptz, 'service:svc-1')$$,
    'create_order: a PENDING order, version 1, stamped with p_now and the acting role');
select results_eq(
    $$select status, amount, currency, provider_ref, fee_amount from core.payments where order_id = pg_temp.id('o_main')$$,
    $$values ('PENDING', 10000::bigint, 'EUR', null::text, null::bigint)$$,
    'create_order: exactly one PENDING payment for the full amount');

-- ---------------------------------------------------------------------------------------------
-- capture_payment
-- ---------------------------------------------------------------------------------------------
select throws_code($$select core.confirm_order(pg_temp.id('o_main'))$$, 'ORDER_NOT_PAID',
    'confirm_order before the capture: ORDER_NOT_PAID');

create temp table ledger_before_capture as select pg_temp.ledger_size() as size;
create temp table cap1 as
select * from core.capture_payment(pg_temp.id('p_main'), 'PSP-MAIN', p_now => '2030-01-01 09:05Z');

select results_eq(
    $$select id, status, provider_ref, fee_amount, captured_at, updated_at from cap1$$,
    $$values (pg_temp.id('p_main'), 'CAPTURED', 'PSP-MAIN', 1000::bigint,
              '2030-01-01 09:05Z'::timestamptz, '2030-01-01 09:05Z'::timestamptz)$$,
    'capture_payment: CAPTURED with the provider ref, the 10 % fee and the capture time');
select results_eq(
    $$select count(distinct t.id), count(e.id) from core.ledger_transactions t
        join core.ledger_entries e on e.transaction_id = t.id
       where t.payment_id = pg_temp.id('p_main') and t.kind = 'CAPTURE'$$,
    $$values (1::bigint, 3::bigint)$$,
    'capture_payment: one CAPTURE ledger transaction with three entries');

create temp table ledger_after_capture as select pg_temp.ledger_size() as size;
select results_eq(
    $$select * from core.capture_payment(pg_temp.id('p_main'), 'PSP-MAIN', p_now => '2030-01-01 09:06Z')$$,
    $$select * from cap1$$,
    'capture_payment repeated with the same provider ref returns the captured row unchanged');
select is(pg_temp.ledger_size(), (select size from ledger_after_capture),
    'the idempotent repeat adds no ledger rows');

create temp table snap_capture as select * from pg_temp.census();
select throws_code($$select core.capture_payment(pg_temp.id('p_main'), 'PSP-ANOTHER')$$, 'PAYMENT_ALREADY_CAPTURED',
    'capture_payment of a captured payment with another ref: PAYMENT_ALREADY_CAPTURED');
select throws_code($$select core.capture_payment(pg_temp.id('p_other'), 'PSP-MAIN')$$, 'PAYMENT_PROVIDER_REF_IN_USE',
    'capture_payment with a ref that belongs to another payment: PAYMENT_PROVIDER_REF_IN_USE');
select throws_code($$select core.capture_payment(999999, 'PSP-X')$$, 'PAYMENT_NOT_FOUND',
    'capture_payment of an unknown payment: PAYMENT_NOT_FOUND');
select throws_code($$select core.capture_payment(pg_temp.id('p_other'), '   ')$$, 'INVALID_ARGUMENT',
    'capture_payment with a blank provider ref: INVALID_ARGUMENT');
select throws_code($$select core.capture_payment(pg_temp.id('p_other'), null)$$, 'INVALID_ARGUMENT',
    'capture_payment with a null provider ref: INVALID_ARGUMENT');
select set_eq('select * from pg_temp.census()', 'select * from snap_capture',
    'refused capture_payment calls changed no row of core');

-- ---------------------------------------------------------------------------------------------
-- fail_payment and create_payment
-- ---------------------------------------------------------------------------------------------
select throws_code($$select core.create_payment(pg_temp.id('o_other'))$$, 'ORDER_HAS_LIVE_PAYMENT',
    'create_payment while the order''s payment is PENDING: ORDER_HAS_LIVE_PAYMENT');
select throws_code($$select core.create_payment(pg_temp.id('o_main'))$$, 'ORDER_HAS_LIVE_PAYMENT',
    'create_payment while the order''s payment is CAPTURED: ORDER_HAS_LIVE_PAYMENT');
select throws_code($$select core.fail_payment(pg_temp.id('p_other'), ' ')$$, 'INVALID_ARGUMENT',
    'fail_payment without a reason: INVALID_ARGUMENT');
select throws_code($$select core.fail_payment(pg_temp.id('p_main'), 'declined')$$, 'PAYMENT_INVALID_TRANSITION',
    'fail_payment of a CAPTURED payment: PAYMENT_INVALID_TRANSITION');
select throws_code($$select core.fail_payment(999999, 'declined')$$, 'PAYMENT_NOT_FOUND',
    'fail_payment of an unknown payment: PAYMENT_NOT_FOUND');

select results_eq(
    $$select status, failure_reason, failed_at, provider_ref
        from core.fail_payment(pg_temp.id('p_other'), 'card declined', p_now => '2030-01-01 09:20Z')$$,
    $$values ('FAILED', 'card declined', '2030-01-01 09:20Z'::timestamptz, null::text)$$,
    'fail_payment: PENDING -> FAILED with the reason and time');
select is(pg_temp.ledger_size(), (select size from ledger_after_capture),
    'a failed payment moves no money');
select throws_code($$select core.capture_payment(pg_temp.id('p_other'), 'PSP-LATE')$$, 'PAYMENT_INVALID_TRANSITION',
    'capture_payment of a FAILED payment: PAYMENT_INVALID_TRANSITION');
select throws_code($$select core.fail_payment(pg_temp.id('p_other'), 'again')$$, 'PAYMENT_INVALID_TRANSITION',
    'fail_payment of a FAILED payment: PAYMENT_INVALID_TRANSITION');

insert into ids select 'p_other2', id from core.create_payment(pg_temp.id('o_other'), p_now => '2030-01-01 09:25Z');
select results_eq(
    $$select order_id, status, amount, currency, created_at from core.payments where id = pg_temp.id('p_other2')$$,
    $$values (pg_temp.id('o_other'), 'PENDING', 2500::bigint, 'EUR', '2030-01-01 09:25Z'::timestamptz)$$,
    'create_payment after a failure: a new PENDING attempt for the order''s amount');
select throws_code($$select core.create_payment(pg_temp.id('o_other'))$$, 'ORDER_HAS_LIVE_PAYMENT',
    'create_payment beside the new PENDING attempt: ORDER_HAS_LIVE_PAYMENT');
select throws_code($$select core.create_payment(999999)$$, 'ORDER_NOT_FOUND',
    'create_payment for an unknown order: ORDER_NOT_FOUND');

-- ---------------------------------------------------------------------------------------------
-- confirm_order (optimistic: p_expected_version)
-- ---------------------------------------------------------------------------------------------
select results_eq(
    $$select status, version, confirmed_at, updated_at
        from core.confirm_order(pg_temp.id('o_main'), p_expected_version => 1, p_now => '2030-01-01 09:10Z')$$,
    $$values ('CONFIRMED', 2, '2030-01-01 09:10Z'::timestamptz, '2030-01-01 09:10Z'::timestamptz)$$,
    'confirm_order after the capture: CONFIRMED, version 2');
select throws_code($$select core.confirm_order(pg_temp.id('o_main'), p_expected_version => 1)$$, 'ORDER_STATUS_CONFLICT',
    'confirm_order with a stale expected version: ORDER_STATUS_CONFLICT');
select throws_code($$select core.confirm_order(pg_temp.id('o_main'))$$, 'ORDER_INVALID_TRANSITION',
    'confirm_order a second time: ORDER_INVALID_TRANSITION');
select throws_code($$select core.confirm_order(999999)$$, 'ORDER_NOT_FOUND',
    'confirm_order of an unknown order: ORDER_NOT_FOUND');
select throws_code($$select core.create_payment(pg_temp.id('o_main'))$$, 'ORDER_INVALID_TRANSITION',
    'create_payment for a CONFIRMED order: ORDER_INVALID_TRANSITION');

-- ---------------------------------------------------------------------------------------------
-- cancel_order from PENDING fails the pending payment
-- ---------------------------------------------------------------------------------------------
select results_eq(
    $$select status, version, cancelled_at from core.cancel_order(pg_temp.id('o_nopay'), p_now => '2030-01-01 09:30Z')$$,
    $$values ('CANCELLED', 2, '2030-01-01 09:30Z'::timestamptz)$$,
    'cancel_order of a PENDING order: CANCELLED, version 2');
select results_eq(
    $$select status, failure_reason, failed_at from core.payments where order_id = pg_temp.id('o_nopay')$$,
    $$values ('FAILED', 'order cancelled', '2030-01-01 09:30Z'::timestamptz)$$,
    'cancel_order of a PENDING order fails its PENDING payment');
select throws_code($$select core.cancel_order(pg_temp.id('o_nopay'))$$, 'ORDER_INVALID_TRANSITION',
    'cancel_order of a CANCELLED order: ORDER_INVALID_TRANSITION');
select throws_code($$select core.confirm_order(pg_temp.id('o_nopay'))$$, 'ORDER_INVALID_TRANSITION',
    'confirm_order of a CANCELLED order: ORDER_INVALID_TRANSITION');

-- ---------------------------------------------------------------------------------------------
-- offer_assignment
-- ---------------------------------------------------------------------------------------------
create temp table snap_offer as select * from pg_temp.census();
select throws_code($$select core.offer_assignment(pg_temp.id('o_other'))$$, 'ASSIGNMENT_ORDER_NOT_READY',
    'offer_assignment for a PENDING order: ASSIGNMENT_ORDER_NOT_READY');
select throws_code($$select core.offer_assignment(pg_temp.id('o_nopay'))$$, 'ASSIGNMENT_ORDER_NOT_READY',
    'offer_assignment for a CANCELLED order: ASSIGNMENT_ORDER_NOT_READY');
select throws_code($$select core.offer_assignment(pg_temp.id('o_nozip'))$$, 'ASSIGNMENT_NO_AGENT_FOR_ZIP',
    'offer_assignment where no agent serves the zip: ASSIGNMENT_NO_AGENT_FOR_ZIP');
select throws_code($$select core.offer_assignment(pg_temp.id('o_inzip'))$$, 'ASSIGNMENT_NO_AGENT_FOR_ZIP',
    'offer_assignment where only an INACTIVE agent serves the zip: ASSIGNMENT_NO_AGENT_FOR_ZIP');
select throws_code($$select core.offer_assignment(pg_temp.id('o_cancel'), p_sla_due_at => '2030-01-01 09:00Z',
                                                  p_now => '2030-01-01 10:00Z')$$, 'INVALID_ARGUMENT',
    'offer_assignment with an SLA in the past: INVALID_ARGUMENT');
select throws_code($$select core.offer_assignment(pg_temp.id('o_cancel'), p_sla_due_at => '2030-01-01 10:00Z',
                                                  p_now => '2030-01-01 10:00Z')$$, 'INVALID_ARGUMENT',
    'offer_assignment with an SLA due right now: INVALID_ARGUMENT');
select throws_code($$select core.offer_assignment(999999)$$, 'ORDER_NOT_FOUND',
    'offer_assignment for an unknown order: ORDER_NOT_FOUND');
select set_eq('select * from pg_temp.census()', 'select * from snap_offer',
    'refused offer_assignment calls changed no row of core');

insert into ids select 'a_main', id from core.offer_assignment(pg_temp.id('o_main'), p_now => '2030-01-01 10:00Z');
insert into ids select 'a_cancel', id from core.offer_assignment(pg_temp.id('o_cancel'), p_now => '2030-01-01 10:00Z');
insert into ids select 'a_fail', id from core.offer_assignment(pg_temp.id('o_fail'), p_now => '2030-01-01 10:00Z');

select results_eq(
    $$select order_id, status, agent_id, zip_code, created_at, sla_due_at
        from core.shipping_assignments where id = pg_temp.id('a_main')$$,
    $$values (pg_temp.id('o_main'), 'OFFERED', null::bigint, '10001',
              '2030-01-01 10:00Z'::timestamptz, '2030-01-03 10:00Z'::timestamptz)$$,
    'offer_assignment: OFFERED to no agent yet, zip copied, SLA 48 hours by default');
select throws_code($$select core.offer_assignment(pg_temp.id('o_main'))$$, 'ASSIGNMENT_ALREADY_LIVE',
    'offer_assignment for an order with a live assignment: ASSIGNMENT_ALREADY_LIVE');

-- ---------------------------------------------------------------------------------------------
-- accept_assignment
-- ---------------------------------------------------------------------------------------------
create temp table snap_accept as select * from pg_temp.census();
select throws_code($$select core.accept_assignment(pg_temp.id('a_cancel'), 3003)$$, 'AGENT_NOT_ELIGIBLE',
    'accept_assignment by an INACTIVE agent: AGENT_NOT_ELIGIBLE');
select throws_code($$select core.accept_assignment(pg_temp.id('a_cancel'), 3004)$$, 'AGENT_NOT_ELIGIBLE',
    'accept_assignment by an agent not serving the zip: AGENT_NOT_ELIGIBLE');
select throws_code($$select core.accept_assignment(pg_temp.id('a_cancel'), 999999)$$, 'AGENT_NOT_FOUND',
    'accept_assignment by an unknown agent: AGENT_NOT_FOUND');
select throws_code($$select core.accept_assignment(999999, 3001)$$, 'ASSIGNMENT_NOT_FOUND',
    'accept_assignment of an unknown assignment: ASSIGNMENT_NOT_FOUND');
select throws_code($$select core.advance_assignment(pg_temp.id('a_cancel'), 'DELIVERED')$$, 'ASSIGNMENT_INVALID_TRANSITION',
    'advance_assignment OFFERED -> DELIVERED: ASSIGNMENT_INVALID_TRANSITION');
select set_eq('select * from pg_temp.census()', 'select * from snap_accept',
    'refused accept/advance calls changed no row of core');

select results_eq(
    $$select status, agent_id, accepted_at, status_changed_by
        from core.accept_assignment(pg_temp.id('a_main'), 3001, 'agent:3001', '2030-01-01 10:05Z')$$,
    $$values ('ACCEPTED', 3001::bigint, '2030-01-01 10:05Z'::timestamptz, 'agent:3001')$$,
    'accept_assignment: ACCEPTED by the eligible agent');
select throws_code($$select core.accept_assignment(pg_temp.id('a_main'), 3002)$$, 'ASSIGNMENT_ALREADY_TAKEN',
    'accept_assignment by a second agent: ASSIGNMENT_ALREADY_TAKEN');
select is((select agent_id from core.shipping_assignments where id = pg_temp.id('a_main')), 3001::bigint,
    'the first agent keeps the assignment');

-- ---------------------------------------------------------------------------------------------
-- advance_assignment: the order follows the assignment
-- ---------------------------------------------------------------------------------------------
select throws_code($$select core.advance_assignment(pg_temp.id('a_main'), 'PICKED_UP', 3002)$$, 'ASSIGNMENT_NOT_YOURS',
    'advance_assignment by another agent: ASSIGNMENT_NOT_YOURS');
select throws_code($$select core.advance_assignment(pg_temp.id('a_main'), 'DELIVERED', 3001)$$, 'ASSIGNMENT_INVALID_TRANSITION',
    'advance_assignment ACCEPTED -> DELIVERED (skipping pick-up): ASSIGNMENT_INVALID_TRANSITION');
select throws_code($$select core.advance_assignment(pg_temp.id('a_main'), 'LOST', 3001)$$, 'INVALID_ARGUMENT',
    'advance_assignment to an unknown status: INVALID_ARGUMENT');
select throws_code($$select core.advance_assignment(999999, 'PICKED_UP')$$, 'ASSIGNMENT_NOT_FOUND',
    'advance_assignment of an unknown assignment: ASSIGNMENT_NOT_FOUND');

select results_eq(
    $$select status, picked_up_at from core.advance_assignment(pg_temp.id('a_main'), 'PICKED_UP', 3001,
                                                                p_actor => 'agent:3001', p_now => '2030-01-01 11:00Z')$$,
    $$values ('PICKED_UP', '2030-01-01 11:00Z'::timestamptz)$$,
    'advance_assignment: PICKED_UP');
select results_eq(
    $$select status, version, shipped_at from core.orders where id = pg_temp.id('o_main')$$,
    $$values ('SHIPPED', 3, '2030-01-01 11:00Z'::timestamptz)$$,
    'the pick-up makes the order SHIPPED');
select throws_code($$select core.cancel_order(pg_temp.id('o_main'))$$, 'ORDER_INVALID_TRANSITION',
    'cancel_order of a SHIPPED order: ORDER_INVALID_TRANSITION');

select results_eq(
    $$select status, in_transit_at from core.advance_assignment(pg_temp.id('a_main'), 'IN_TRANSIT', 3001,
                                                                 p_actor => 'agent:3001', p_now => '2030-01-01 11:30Z')$$,
    $$values ('IN_TRANSIT', '2030-01-01 11:30Z'::timestamptz)$$,
    'advance_assignment: IN_TRANSIT');
select is((select status from core.orders where id = pg_temp.id('o_main')), 'SHIPPED',
    'in transit, the order stays SHIPPED');

select results_eq(
    $$select status, delivered_at from core.advance_assignment(pg_temp.id('a_main'), 'DELIVERED', 3001,
                                                                p_actor => 'agent:3001', p_now => '2030-01-01 12:00Z')$$,
    $$values ('DELIVERED', '2030-01-01 12:00Z'::timestamptz)$$,
    'advance_assignment: DELIVERED');
select results_eq(
    $$select status, version, delivered_at from core.orders where id = pg_temp.id('o_main')$$,
    $$values ('DELIVERED', 4, '2030-01-01 12:00Z'::timestamptz)$$,
    'the delivery makes the order DELIVERED with delivered_at');
select throws_code($$select core.cancel_order(pg_temp.id('o_main'))$$, 'ORDER_INVALID_TRANSITION',
    'cancel_order of a DELIVERED order: ORDER_INVALID_TRANSITION');
select throws_code($$select core.advance_assignment(pg_temp.id('a_main'), 'FAILED', 3001, 'too late')$$,
    'ASSIGNMENT_INVALID_TRANSITION', 'advance_assignment DELIVERED -> FAILED: ASSIGNMENT_INVALID_TRANSITION');

-- A failed delivery after pick-up sends the order back to CONFIRMED, ready to be offered again.
select lives_ok($$select core.accept_assignment(pg_temp.id('a_fail'), 3001, 'agent:3001', '2030-01-01 10:05Z')$$,
    'agent 3001 accepts the second order''s assignment');
select throws_code($$select core.advance_assignment(pg_temp.id('a_fail'), 'FAILED', 3001, null)$$, 'INVALID_ARGUMENT',
    'advance_assignment to FAILED without a reason: INVALID_ARGUMENT');
select throws_code($$select core.advance_assignment(pg_temp.id('a_fail'), 'FAILED', 3001, '  ')$$, 'INVALID_ARGUMENT',
    'advance_assignment to FAILED with a blank reason: INVALID_ARGUMENT');
select lives_ok($$select core.advance_assignment(pg_temp.id('a_fail'), 'PICKED_UP', 3001,
                                                 p_actor => 'agent:3001', p_now => '2030-01-01 11:00Z')$$,
    'the second order is picked up');
select results_eq(
    $$select status, failure_reason, failed_at
        from core.advance_assignment(pg_temp.id('a_fail'), 'FAILED', 3001, 'flat tyre', 'agent:3001', '2030-01-01 11:15Z')$$,
    $$values ('FAILED', 'flat tyre', '2030-01-01 11:15Z'::timestamptz)$$,
    'advance_assignment: FAILED with its reason');
select results_eq(
    $$select status, version from core.orders where id = pg_temp.id('o_fail')$$,
    $$values ('CONFIRMED', 4)$$,
    'a failure after pick-up returns the order to CONFIRMED (version 4)');
insert into ids select 'a_fail2', id from core.offer_assignment(pg_temp.id('o_fail'), p_now => '2030-01-01 11:20Z');
select is((select status from core.shipping_assignments where id = pg_temp.id('a_fail2')), 'OFFERED',
    'the order can be offered again after the failure');

-- ---------------------------------------------------------------------------------------------
-- cancel_order from CONFIRMED cancels the OFFERED assignment
-- ---------------------------------------------------------------------------------------------
select throws_code($$select core.cancel_order(pg_temp.id('o_cancel'), p_expected_version => 1)$$, 'ORDER_STATUS_CONFLICT',
    'cancel_order with a stale expected version: ORDER_STATUS_CONFLICT');
select results_eq(
    $$select status, version, cancelled_at
        from core.cancel_order(pg_temp.id('o_cancel'), p_expected_version => 2, p_now => '2030-01-01 10:30Z')$$,
    $$values ('CANCELLED', 3, '2030-01-01 10:30Z'::timestamptz)$$,
    'cancel_order of a CONFIRMED order with the current version: CANCELLED');
select results_eq(
    $$select status, cancelled_at from core.shipping_assignments where id = pg_temp.id('a_cancel')$$,
    $$values ('CANCELLED', '2030-01-01 10:30Z'::timestamptz)$$,
    'cancel_order cancels the order''s OFFERED assignment');
select throws_code($$select core.accept_assignment(pg_temp.id('a_cancel'), 3001)$$, 'ASSIGNMENT_ALREADY_TAKEN',
    'accept_assignment of a cancelled offer: ASSIGNMENT_ALREADY_TAKEN');
select is((select status from core.payments where id = pg_temp.id('p_cancel')), 'CAPTURED',
    'cancelling a paid order leaves the captured payment to an explicit refund');

-- ---------------------------------------------------------------------------------------------
-- Refunds of the main payment (captured 10000)
-- ---------------------------------------------------------------------------------------------
create temp table snap_refund as select * from pg_temp.census();
select throws_code($$select core.initiate_refund(pg_temp.id('p_other2'), 100)$$, 'PAYMENT_NOT_CAPTURED',
    'initiate_refund of a PENDING payment: PAYMENT_NOT_CAPTURED');
select throws_code($$select core.initiate_refund(pg_temp.id('p_other'), 100)$$, 'PAYMENT_NOT_CAPTURED',
    'initiate_refund of a FAILED payment: PAYMENT_NOT_CAPTURED');
select throws_code($$select core.initiate_refund(999999, 100)$$, 'PAYMENT_NOT_FOUND',
    'initiate_refund of an unknown payment: PAYMENT_NOT_FOUND');
select throws_code($$select core.initiate_refund(pg_temp.id('p_main'), 0)$$, 'INVALID_AMOUNT',
    'initiate_refund of 0: INVALID_AMOUNT');
select throws_code($$select core.initiate_refund(pg_temp.id('p_main'), null)$$, 'INVALID_AMOUNT',
    'initiate_refund of null: INVALID_AMOUNT');
select throws_code($$select core.initiate_refund(pg_temp.id('p_main'), 10001)$$, 'REFUND_EXCEEDS_CAPTURED',
    'initiate_refund of more than captured: REFUND_EXCEEDS_CAPTURED');
select throws_code($$select core.complete_refund(999999)$$, 'REFUND_NOT_FOUND',
    'complete_refund of an unknown refund: REFUND_NOT_FOUND');
select throws_code($$select core.fail_refund(999999, 'x')$$, 'REFUND_NOT_FOUND',
    'fail_refund of an unknown refund: REFUND_NOT_FOUND');
select set_eq('select * from pg_temp.census()', 'select * from snap_refund',
    'refused refund calls changed no row of core');

insert into ids select 'r1', id from core.initiate_refund(pg_temp.id('p_main'), 4000, 'damaged', p_now => '2030-01-02 09:00Z');
select results_eq(
    $$select payment_id, amount, status, reason from core.refunds where id = pg_temp.id('r1')$$,
    $$values (pg_temp.id('p_main'), 4000::bigint, 'INITIATED', 'damaged')$$,
    'initiate_refund: an INITIATED refund');
select throws_code($$select core.initiate_refund(pg_temp.id('p_main'), 6001)$$, 'REFUND_EXCEEDS_CAPTURED',
    'an INITIATED refund counts against the captured amount: REFUND_EXCEEDS_CAPTURED');

select results_eq(
    $$select status, completed_at from core.complete_refund(pg_temp.id('r1'), p_now => '2030-01-02 10:00Z')$$,
    $$values ('COMPLETED', '2030-01-02 10:00Z'::timestamptz)$$,
    'complete_refund: COMPLETED');
select results_eq(
    $$select count(distinct t.id), count(e.id) from core.ledger_transactions t
        join core.ledger_entries e on e.transaction_id = t.id
       where t.refund_id = pg_temp.id('r1') and t.kind = 'REFUND'$$,
    $$values (1::bigint, 3::bigint)$$,
    'complete_refund posts one REFUND ledger transaction with three entries');
select throws_code($$select core.complete_refund(pg_temp.id('r1'))$$, 'REFUND_INVALID_TRANSITION',
    'complete_refund a second time: REFUND_INVALID_TRANSITION');
select throws_code($$select core.fail_refund(pg_temp.id('r1'), 'too late')$$, 'REFUND_INVALID_TRANSITION',
    'fail_refund of a COMPLETED refund: REFUND_INVALID_TRANSITION');

insert into ids select 'r2', id from core.initiate_refund(pg_temp.id('p_main'), 6000, p_now => '2030-01-02 11:00Z');
select throws_code($$select core.initiate_refund(pg_temp.id('p_main'), 1)$$, 'REFUND_EXCEEDS_CAPTURED',
    'with the whole amount refunded or in flight, even 1 more: REFUND_EXCEEDS_CAPTURED');
select throws_code($$select core.fail_refund(pg_temp.id('r2'), '')$$, 'INVALID_ARGUMENT',
    'fail_refund without a reason: INVALID_ARGUMENT');
create temp table ledger_before_fail_refund as select pg_temp.ledger_size() as size;
select results_eq(
    $$select status, failure_reason, failed_at from core.fail_refund(pg_temp.id('r2'), 'bank rejected', p_now => '2030-01-02 12:00Z')$$,
    $$values ('FAILED', 'bank rejected', '2030-01-02 12:00Z'::timestamptz)$$,
    'fail_refund: FAILED with its reason');
select is(pg_temp.ledger_size(), (select size from ledger_before_fail_refund),
    'a failed refund moves no money');
select lives_ok($$insert into ids select 'r3', id from core.initiate_refund(pg_temp.id('p_main'), 6000)$$,
    'a FAILED refund frees its amount: the same 6000 can be refunded again');

-- ---------------------------------------------------------------------------------------------
-- Direct UPDATEs that skip the state machine are refused by the trigger
-- ---------------------------------------------------------------------------------------------
create temp table snap_direct as select * from pg_temp.census();
select throws_code($$update core.orders set status = 'DELIVERED', delivered_at = now() where id = pg_temp.id('o_other')$$,
    'ORDER_INVALID_TRANSITION', 'UPDATE orders PENDING -> DELIVERED: ORDER_INVALID_TRANSITION');
select throws_code($$update core.orders set status = 'PENDING' where id = pg_temp.id('o_main')$$,
    'ORDER_INVALID_TRANSITION', 'UPDATE orders DELIVERED -> PENDING: ORDER_INVALID_TRANSITION');
select throws_code($$update core.payments set status = 'PENDING' where id = pg_temp.id('p_main')$$,
    'PAYMENT_INVALID_TRANSITION', 'UPDATE payments CAPTURED -> PENDING: PAYMENT_INVALID_TRANSITION');
select throws_code($$update core.payments set status = 'CAPTURED', provider_ref = 'PSP-SNEAK', fee_amount = 0, captured_at = now()
                       where id = pg_temp.id('p_other')$$,
    'PAYMENT_INVALID_TRANSITION', 'UPDATE payments FAILED -> CAPTURED: PAYMENT_INVALID_TRANSITION');
select throws_code($$update core.refunds set status = 'INITIATED' where id = pg_temp.id('r1')$$,
    'REFUND_INVALID_TRANSITION', 'UPDATE refunds COMPLETED -> INITIATED: REFUND_INVALID_TRANSITION');
select throws_code($$update core.refunds set status = 'COMPLETED', completed_at = now() where id = pg_temp.id('r2')$$,
    'REFUND_INVALID_TRANSITION', 'UPDATE refunds FAILED -> COMPLETED: REFUND_INVALID_TRANSITION');
select throws_code($$update core.shipping_assignments set status = 'DELIVERED', agent_id = 3001, delivered_at = now()
                       where id = pg_temp.id('a_fail2')$$,
    'ASSIGNMENT_INVALID_TRANSITION', 'UPDATE assignments OFFERED -> DELIVERED: ASSIGNMENT_INVALID_TRANSITION');
select throws_code($$update core.shipping_assignments set status = 'OFFERED', agent_id = null where id = pg_temp.id('a_main')$$,
    'ASSIGNMENT_INVALID_TRANSITION', 'UPDATE assignments DELIVERED -> OFFERED: ASSIGNMENT_INVALID_TRANSITION');
select set_eq('select * from pg_temp.census()', 'select * from snap_direct',
    'refused direct UPDATEs changed no row of core');

-- ---------------------------------------------------------------------------------------------
-- History: one row per step, from/to chained, versions increasing, actors and times recorded
-- ---------------------------------------------------------------------------------------------
select results_eq(
    $$select from_status, to_status, version, actor, created_at
        from core.order_status_history where order_id = pg_temp.id('o_main') order by version$$,
    $$values (null, 'PENDING', 1, 'service:svc-1', '2030-01-01 09:00Z'::timestamptz),
             ('PENDING', 'CONFIRMED', 2, 'service:svc-1', '2030-01-01 09:10Z'),
             ('CONFIRMED', 'SHIPPED', 3, 'agent:3001', '2030-01-01 11:00Z'),
             ('SHIPPED', 'DELIVERED', 4, 'agent:3001', '2030-01-01 12:00Z')$$,
    'order history of the delivered order: one row per step');
select results_eq(
    $$select from_status, to_status, agent_id, actor, created_at
        from core.assignment_status_history where assignment_id = pg_temp.id('a_main') order by id$$,
    $$values (null, 'OFFERED', null::bigint, 'service:svc-1', '2030-01-01 10:00Z'::timestamptz),
             ('OFFERED', 'ACCEPTED', 3001, 'agent:3001', '2030-01-01 10:05Z'),
             ('ACCEPTED', 'PICKED_UP', 3001, 'agent:3001', '2030-01-01 11:00Z'),
             ('PICKED_UP', 'IN_TRANSIT', 3001, 'agent:3001', '2030-01-01 11:30Z'),
             ('IN_TRANSIT', 'DELIVERED', 3001, 'agent:3001', '2030-01-01 12:00Z')$$,
    'assignment history of the delivered assignment: one row per step');
select results_eq(
    $$select from_status, to_status, version from core.order_status_history
       where order_id = pg_temp.id('o_fail') order by version$$,
    $$values (null, 'PENDING', 1), ('PENDING', 'CONFIRMED', 2), ('CONFIRMED', 'SHIPPED', 3), ('SHIPPED', 'CONFIRMED', 4)$$,
    'order history of the failed delivery: back to CONFIRMED as version 4');
select results_eq(
    $$select from_status, to_status, reason from core.assignment_status_history
       where assignment_id = pg_temp.id('a_fail') order by id$$,
    $$values (null, 'OFFERED', null), ('OFFERED', 'ACCEPTED', null), ('ACCEPTED', 'PICKED_UP', null),
             ('PICKED_UP', 'FAILED', 'flat tyre')$$,
    'assignment history of the failed delivery records the reason');
select results_eq(
    $$select from_status, to_status, version from core.order_status_history
       where order_id = pg_temp.id('o_cancel') order by version$$,
    $$values (null, 'PENDING', 1), ('PENDING', 'CONFIRMED', 2), ('CONFIRMED', 'CANCELLED', 3)$$,
    'order history of the cancelled order');
select results_eq(
    $$select from_status, to_status from core.assignment_status_history
       where assignment_id = pg_temp.id('a_cancel') order by id$$,
    $$values (null, 'OFFERED'), ('OFFERED', 'CANCELLED')$$,
    'assignment history of the cancelled offer');

-- Invariants over every order and assignment made above.
select is_empty(
    $$select o.id from core.orders o
       where o.version <> (select count(*) from core.order_status_history h where h.order_id = o.id)
          or o.version <> (select max(h.version) from core.order_status_history h where h.order_id = o.id)
          or o.status <> (select h.to_status from core.order_status_history h where h.order_id = o.id
                           order by h.version desc limit 1)$$,
    'every order: versions 1..n in its history, one per step, the last one its current status');
select is_empty(
    $$select * from (
        select h.order_id, h.version, h.from_status,
               lag(h.to_status) over (partition by h.order_id order by h.version) as previous
          from core.order_status_history h) s
       where s.from_status is distinct from s.previous
          or (s.previous is not null and not core.transition_allowed('order', s.from_status, (
                select h2.to_status from core.order_status_history h2
                 where h2.order_id = s.order_id and h2.version = s.version)))$$,
    'every order history row starts where the previous ended, by an allowed transition');
select is_empty(
    $$select * from (
        select h.assignment_id, h.from_status, h.to_status,
               lag(h.to_status) over (partition by h.assignment_id order by h.id) as previous
          from core.assignment_status_history h) s
       where s.from_status is distinct from s.previous
          or (s.previous is not null and not core.transition_allowed('assignment', s.from_status, s.to_status))$$,
    'every assignment history row starts where the previous ended, by an allowed transition');
select is_empty(
    $$select a.id from core.shipping_assignments a
       where a.status <> (select h.to_status from core.assignment_status_history h
                           where h.assignment_id = a.id order by h.id desc limit 1)$$,
    'every assignment''s last history row is its current status');

select * from finish();
rollback;
