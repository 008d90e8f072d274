-- Webhooks: every emission trigger writes its event type with one delivery per matching subscription
-- (PENDING if ACTIVE, SKIPPED if DISABLED), nothing for other changes, idempotent on the key; the
-- deferred wake-up trigger notifies only when a dispatcher is armed.
begin;
select plan(33);

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
select is((select count(*)::int from webhooks.events e
            where webhooks.event_body(e)::jsonb ->> 'eventId' = id::text
              and webhooks.event_body(e)::jsonb ->> 'idempotencyKey' = idempotency_key
              and webhooks.event_body(e)::jsonb ->> 'eventType' = event_type
              and webhooks.event_body(e)::jsonb -> 'data' = webhooks.event_data(e)
              and webhooks.event_data(e) ->> 'id' = aggregate_id::text
              and (select array_agg(k order by k) from jsonb_object_keys(webhooks.event_body(e)::jsonb) k) = '{data,eventId,eventType,idempotencyKey,timestamp}'),
    14, 'every body is exactly {eventId, eventType, timestamp, idempotencyKey, data} and matches its row');
-- The payload is composed from the row (0011.outbox_lean): the row stores data only, and the
-- composition must give the same bytes whatever the session's settings (the dispatcher signs them).
select is((select count(*)::int from webhooks.events where body is null and data is not null), 14,
    'new events store their data, not the whole payload');
-- Positional data (0015): values only, in the order of the shape's keys, without id and updatedAt.
select is((select count(*)::int from webhooks.events e join webhooks.payload_shapes s on s.shape = e.shape
            where s.aggregate_type = e.aggregate_type and jsonb_typeof(e.data::jsonb) = 'array'
              and jsonb_array_length(e.data::jsonb) = cardinality(s.keys)
              and (select array_agg(k order by k) from jsonb_object_keys(webhooks.event_data(e)) k)
                  = (select array_agg(k order by k) from unnest(s.keys || array['id', 'updatedAt']) k)
              and webhooks.event_data(e) ->> 'updatedAt' = webhooks.iso_time(e.occurred_at)), 14,
    'new events store positional values of their aggregate''s shape; the data object has its keys plus id and updatedAt');
select is((select webhooks.event_data(e) from webhooks.events e where e.event_type = 'order.cancelled'),
          (select jsonb_build_object('id', o.id, 'customerId', o.customer_id, 'sellerId', o.seller_id, 'shipToZip', o.ship_to_zip,
                                     'amount', o.amount, 'currency', o.currency, 'status', o.status, 'version', o.version,
                                     'createdAt', webhooks.iso_time(o.created_at), 'updatedAt', webhooks.iso_time(o.updated_at),
                                     'confirmedAt', null, 'shippedAt', null, 'deliveredAt', null,
                                     'cancelledAt', webhooks.iso_time(o.cancelled_at))
             from core.orders o where o.id = (select max(id) from core.orders)),
    'an order event''s data zips back into the order, key for key');
select is_empty($$select event_type from webhooks.event_types where split_part(event_type, '.', 1) <> aggregate_type$$,
    'every event type''s aggregate is its first part (what emit writes, without a lookup)');
select throws_code($$update webhooks.payload_shapes set keys = '{x}' where shape = 1$$, 'WEBHOOK_ROW_PERMANENT',
    'a payload shape never changes: events are composed with it');
select is((select count(*)::int from webhooks.events e
            where webhooks.event_body(e)::jsonb::text = webhooks.event_body(e)
              and webhooks.event_body(e) ~ '"timestamp": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"'),
    14, 'each body is canonical JSON (re-parsing gives the same bytes) with an RFC 3339 UTC timestamp');
create temp table tap_bodies as select e.id, md5(webhooks.event_body(e)) as h from webhooks.events e;
set local timezone = 'Pacific/Chatham';
set local datestyle = 'SQL, DMY';
set local intervalstyle = 'sql_standard';
set local extra_float_digits = -15;
set local lc_numeric = 'C';
select is((select count(*)::int from webhooks.events e join tap_bodies b on b.id = e.id
            where md5(webhooks.event_body(e)) = b.h), 14,
    'the same bytes under another TimeZone, DateStyle, IntervalStyle and extra_float_digits');
reset timezone; reset datestyle; reset intervalstyle; reset extra_float_digits; reset lc_numeric;
-- An event written before 0011 keeps its stored body, byte for byte (even when not canonical).
insert into webhooks.events (id, event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, body)
values ('00000000-0000-7000-8000-000000009201', 'payment.failed', 'payment', 9201, 'tap:legacy', now(), '{"eventId":"legacy"}');
select is((select webhooks.event_body(e) from webhooks.events e where e.idempotency_key = 'tap:legacy'), '{"eventId":"legacy"}',
    'an event stored with its body (before 0011) is sent with exactly that body');
-- Event ids: version 7, variant 10, the millisecond of their time first, in time order.
select ok((select bool_and(substr(u::text, 15, 1) = '7' and substr(u::text, 20, 1) in ('8', '9', 'a', 'b')
                  and substr(replace(u::text, '-', ''), 1, 12) = lpad(to_hex((extract(epoch from t) * 1000)::bigint), 12, '0'))
             from (select t, webhooks.uuid_v7(t) as u
                     from generate_series(timestamptz '2026-01-01 00:00:00.0004+00', timestamptz '2026-01-02', interval '37 min 0.001 s') t) x)
          and webhooks.uuid_v7(timestamptz '2026-01-01 00:00:00.001+00') < webhooks.uuid_v7(timestamptz '2026-01-01 00:00:00.002+00'),
    'uuid_v7: version 7, RFC 9562 variant, 48-bit millisecond prefix, ordered by time');
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
