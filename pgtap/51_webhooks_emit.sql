-- Webhooks: every emission trigger writes its event type with one delivery per matching subscription
-- (PENDING if ACTIVE, SKIPPED if DISABLED), nothing for other changes, idempotent on the key; the
-- deferred wake-up trigger notifies only when a dispatcher is armed.
begin;
select plan(24);

insert into core.customers (id, name, email) overriding system value values (9201, 'C', 'c9201@example.test');
insert into core.sellers (id, name) overriding system value values (9201, 'S');
insert into core.delivery_agents (id, name, serviceable_zip_codes) overriding system value values (9201, 'A', '{33333}');
-- Three subscriptions: everything (ACTIVE), orders only (ACTIVE), everything (DISABLED).
insert into webhooks.subscriptions (id, url, event_types, created_by, updated_by) overriding system value values
    (9201, 'https://all.example.test/', (select array_agg(event_type) from webhooks.event_types), 'tap', 'tap'),
    (9202, 'https://orders.example.test/', '{order.confirmed,order.cancelled,order.delivered}', 'tap', 'tap'),
    (9203, 'https://off.example.test/', (select array_agg(event_type) from webhooks.event_types), 'tap', 'tap');
update webhooks.subscriptions set status = 'DISABLED', disabled_reason = 'MANUAL', disabled_at = now() where id = 9203;

create temp table tap_seen (id uuid, event_type text);
create function pg_temp.new_events() returns text[] language sql as $$
    -- The types of the events written since the last call.
    with n as (
        insert into tap_seen select e.id, e.event_type from webhooks.events e
         where e.id not in (select id from tap_seen) returning event_type)
    select coalesce(array_agg(event_type order by event_type), '{}') from n
$$;

select is(pg_temp.new_events(), '{}', 'no event before any change');
select core.create_order(9201, 9201, '33333', 10000, 'EUR');
select is(pg_temp.new_events(), '{}', 'creating an order is not an event');
select core.capture_payment((select max(id) from core.payments), 'pi_tap_9201');
select is(pg_temp.new_events(), '{payment.captured}', 'capture -> payment.captured');
select core.confirm_order((select max(id) from core.orders));
select is(pg_temp.new_events(), '{order.confirmed}', 'confirm -> order.confirmed');
select core.offer_assignment((select max(id) from core.orders));
select is(pg_temp.new_events(), '{}', 'an offer is not an event');
select core.accept_assignment((select max(id) from core.shipping_assignments), 9201);
select is(pg_temp.new_events(), '{shipment.assigned}', 'accept -> shipment.assigned');
select core.advance_assignment((select max(id) from core.shipping_assignments), 'PICKED_UP');
select is(pg_temp.new_events(), '{shipment.picked_up}', 'pick-up -> shipment.picked_up (the order ships: no event)');
select core.advance_assignment((select max(id) from core.shipping_assignments), 'IN_TRANSIT');
select is(pg_temp.new_events(), '{shipment.in_transit}', 'in transit -> shipment.in_transit');
select core.advance_assignment((select max(id) from core.shipping_assignments), 'FAILED', null, 'no one home');
select is(pg_temp.new_events(), '{shipment.failed}', 'failed delivery -> shipment.failed; back to CONFIRMED is not order.confirmed');
select core.offer_assignment((select max(id) from core.orders));
select core.accept_assignment((select max(id) from core.shipping_assignments), 9201);
select core.advance_assignment((select max(id) from core.shipping_assignments), 'PICKED_UP');
select core.advance_assignment((select max(id) from core.shipping_assignments), 'IN_TRANSIT');
select core.advance_assignment((select max(id) from core.shipping_assignments), 'DELIVERED');
select is(pg_temp.new_events(), '{order.delivered,shipment.assigned,shipment.in_transit,shipment.picked_up}',
    're-offered delivery: new shipment events (new assignment), then deliver -> order.delivered');
select core.initiate_refund((select max(id) from core.payments), 100);
select is(pg_temp.new_events(), '{refund.initiated}', 'initiate -> refund.initiated');
select core.complete_refund((select max(id) from core.refunds));
select is(pg_temp.new_events(), '{refund.completed}', 'complete -> refund.completed');
select core.create_order(9201, 9201, '33333', 700, 'EUR');
select core.fail_payment((select max(id) from core.payments), 'declined');
select is(pg_temp.new_events(), '{payment.failed}', 'declined -> payment.failed');
select core.cancel_order((select max(id) from core.orders));
select is(pg_temp.new_events(), '{order.cancelled}', 'cancel -> order.cancelled');

select is((select count(*)::int from webhooks.events), 14, '14 events for the 14 business facts');
select is((select count(*)::int from webhooks.deliveries where subscription_id = 9201 and status = 'PENDING'), 14,
    'the all-types subscription has one PENDING delivery per event');
select set_eq($$select e.event_type from webhooks.deliveries d join webhooks.events e on e.id = d.event_id where d.subscription_id = 9202$$,
    array['order.confirmed', 'order.delivered', 'order.cancelled'], 'the orders-only subscription gets order events only');
select is((select count(*)::int from webhooks.deliveries where subscription_id = 9203 and status = 'SKIPPED' and finished_at is not null), 14,
    'the DISABLED subscription gets every delivery as SKIPPED');
select is((select count(*)::int from webhooks.events
            where body::jsonb ->> 'eventId' = id::text and body::jsonb ->> 'idempotencyKey' = idempotency_key
              and body::jsonb ->> 'eventType' = event_type
              and (select array_agg(k order by k) from jsonb_object_keys(body::jsonb) k) = '{data,eventId,eventType,idempotencyKey,timestamp}'),
    14, 'every body is exactly {eventId, eventType, timestamp, idempotencyKey, data} and matches its row');
select throws_code(format($$select webhooks.emit('order.confirmed', 1, %L, '{}', now())$$,
                          (select idempotency_key from webhooks.events where event_type = 'order.confirmed')),
    'UNIQUE_VIOLATION', 'the same idempotency key again is refused: one event per business fact');

-- Wake-up: armed -> the next PENDING work disarms it (and notifies at commit); unarmed -> nothing.
select webhooks.arm_wakeup('tap');
set constraints all immediate;
select core.create_order(9201, 9201, '33333', 900, 'EUR');
select core.capture_payment((select max(id) from core.payments), 'pi_tap_9202');
select is((select armed from webhooks.wakeup), false, 'new PENDING work disarms the armed wake-up (NOTIFY sent at commit)');

-- The deferred wake-up trigger runs after the SECURITY DEFINER api function has returned, i.e. as
-- the request role (constraints are immediate here: it fires at the end of each statement).
select webhooks.arm_wakeup('tap');
select tap.become('service');
select lives_ok($$select api.create_order(9201, 9201, '33333', 1000, 'EUR')$$, 'service creates an order');
select lives_ok($$select api.capture_payment((select max(id) from api.payments), 'pi_tap_9203')$$,
    'service captures: the wake-up trigger runs as service without webhooks privileges (SECURITY DEFINER)');
select tap.become_owner();
select is((select armed from webhooks.wakeup), false, 'and it disarmed the wake-up');

select * from finish();
rollback;
