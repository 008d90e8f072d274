-- 0015 outbox positional (issue 9 §4): less WAL and CPU per emitted event in the business transaction.
-- - events store their data as positional values (a JSON array in the order of a
--   webhooks.payload_shapes key list, without id and updatedAt, which are the row's aggregate_id
--   and occurred_at): ~45 % fewer bytes per event; webhooks.event_data() rebuilds the object, so the
--   payload's bytes are what they were (events written before keep their object: nothing rewritten);
-- - the deferred wake-up trigger is neither SECURITY DEFINER nor SET: the committing roles read the
--   flag themselves and call the SECURITY DEFINER webhooks.wake_dispatcher() only when it is armed.
-- Measured: docs/performance.md "Webhook outbox (issue 9 §4)".
-- depends: 0014.metrics_fast

-- A deploy never hangs behind a long transaction.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

-- ---- sql/200_webhooks_schema.sql ----
-- Key lists of positional event data (0015.outbox_positional): an event stores its data as the
-- values only, in the order of one of these lists, and webhooks.event_data() zips them back into
-- the object. A shape never changes or goes (events refer to it: the same trigger as event types);
-- an entity that gains a field gets a new shape, so old events still compose the bytes they had.
create table webhooks.payload_shapes (
    -- squawk: a shape number is one of a handful of key lists, written by migrations only.
    -- squawk-ignore prefer-bigint-over-smallint
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

comment on function webhooks.tg_keep_referenced_rows() is
    'Trigger: subscriptions, event types and payload shapes are never deleted or re-keyed (they stand in for foreign keys).';

-- A nullable column without default is a catalog change (no rewrite). The new check replaces
-- the object-only one: validated separately (SHARE UPDATE EXCLUSIVE: writers go on meanwhile),
-- and it cannot fail, every existing row having shape null and an object (or no data).
-- squawk-ignore prefer-bigint-over-smallint
alter table webhooks.events add column shape smallint;
comment on column webhooks.events.data is
    'The payload''s data (the entity after the change) as canonical JSON text: positional values of its shape, or (shape null) the object; webhooks.event_body() composes the payload.';
comment on column webhooks.events.event_type is
    'A webhooks.event_types row: the emission triggers pass one of the 11 (no foreign key: see webhooks.tg_keep_referenced_rows).';
comment on column webhooks.events.shape is
    'The webhooks.payload_shapes row whose keys name data''s values (0015); null: data is the object itself (events written before 0015, or emitted with an object).';
alter table webhooks.events
    add constraint events_data_form_check check (left(data, 1) = case when shape is null then '{' else '[' end) not valid;
-- squawk: validated in this transaction on purpose: shape is a new, empty column, so the check cannot
-- fail, and its one scan of events (~0.1 s per 300,000 events, 0011's measure) holds the lock of the
-- ALTERs above, not a longer one.
-- squawk-ignore constraint-missing-not-valid
alter table webhooks.events validate constraint events_data_form_check;
-- squawk: replaced by events_data_form_check just above (objects stay required when shape is null).
-- squawk-ignore ban-drop-constraint
alter table webhooks.events drop constraint events_data_is_json_object_check;

-- ---- sql/210_webhooks_emit.sql ----
-- Positional data (0015.outbox_positional): since 0015 an event stores its data as a JSON array of
-- values in the order of its webhooks.payload_shapes key list, without the id and updatedAt that
-- the row holds already (aggregate_id, occurred_at): ~45 % fewer bytes than the object, written in
-- every business transaction. The object is rebuilt here: keys zipped with values, plus id and
-- updatedAt; a jsonb object, so its text is canonical and equals what jsonb_build_object gave.
-- Events stored before 0015 (shape null) hold the object itself. Not inlinable (a sub-select): it
-- is planned once per query, i.e. once per claim batch or admin page, never in the business path.
create function webhooks.event_data(p webhooks.events)
returns jsonb
language sql
stable
as $$
    select case when p.shape is null then p.data::jsonb
                else jsonb_build_object('id', p.aggregate_id, 'updatedAt', webhooks.iso_time(p.occurred_at))
                     || (select jsonb_object_agg(u.key, v.vals -> (u.i::integer - 1))
                           from webhooks.payload_shapes s
                                cross join lateral unnest(s.keys) with ordinality u(key, i)
                                cross join (select p.data::jsonb) v(vals)
                          where s.shape = p.shape) end
$$;
comment on function webhooks.event_data(webhooks.events) is
    'The payload''s data object of an event: stored positional values zipped with their shape''s keys (plus id and updatedAt), or the stored object.';

create or replace function webhooks.event_body(p webhooks.events)
returns text
language sql
stable
as $$
    select coalesce(p.body,
                    jsonb_build_object('eventId', p.id, 'eventType', p.event_type,
                                       'timestamp', webhooks.iso_time(p.occurred_at),
                                       'idempotencyKey', p.idempotency_key, 'data', webhooks.event_data(p))::text)
$$;
comment on function webhooks.event_body(webhooks.events) is
    'The exact payload bytes of an event: {eventId, eventType, timestamp, idempotencyKey, data} (what the dispatcher signs and sends).';

grant execute on function webhooks.event_data(webhooks.events) to admin, platform_admin;

create function webhooks.order_values(p core.orders)
returns jsonb
language sql
stable
as $$
    -- Shape 1: customerId sellerId shipToZip amount currency status version createdAt confirmedAt
    -- shippedAt deliveredAt cancelledAt.
    select jsonb_build_array(
        p.customer_id, p.seller_id, p.ship_to_zip, p.amount, p.currency, p.status, p.version,
        webhooks.iso_time(p.created_at), webhooks.iso_time(p.confirmed_at), webhooks.iso_time(p.shipped_at),
        webhooks.iso_time(p.delivered_at), webhooks.iso_time(p.cancelled_at))
$$;
comment on function webhooks.order_values(core.orders) is 'The data of an order.* event (shape 1): the order after the change, as positional values.';

create function webhooks.payment_values(p core.payments)
returns jsonb
language sql
stable
as $$
    -- Shape 2: orderId amount currency status providerRef feeAmount failureReason createdAt
    -- capturedAt failedAt.
    select jsonb_build_array(
        p.order_id, p.amount, p.currency, p.status, p.provider_ref, p.fee_amount, p.failure_reason,
        webhooks.iso_time(p.created_at), webhooks.iso_time(p.captured_at), webhooks.iso_time(p.failed_at))
$$;
comment on function webhooks.payment_values(core.payments) is 'The data of a payment.* event (shape 2): the payment after the change, as positional values.';

create function webhooks.refund_values(p core.refunds)
returns jsonb
language sql
stable
as $$
    -- Shape 3: paymentId orderId amount currency status reason failureReason createdAt completedAt
    -- failedAt. A refund has no currency of its own: it is its payment's.
    select jsonb_build_array(
        p.payment_id, pay.order_id, p.amount, pay.currency, p.status, p.reason, p.failure_reason,
        webhooks.iso_time(p.created_at), webhooks.iso_time(p.completed_at), webhooks.iso_time(p.failed_at))
      from core.payments pay
     where pay.id = p.payment_id
$$;
comment on function webhooks.refund_values(core.refunds) is
    'The data of a refund.* event (shape 3): the refund after the change, with its payment''s currency, as positional values.';

create function webhooks.shipment_values(p core.shipping_assignments)
returns jsonb
language sql
stable
as $$
    -- Shape 4: orderId agentId zipCode status slaDueAt failureReason createdAt acceptedAt pickedUpAt
    -- inTransitAt deliveredAt failedAt cancelledAt.
    select jsonb_build_array(
        p.order_id, p.agent_id, p.zip_code, p.status, webhooks.iso_time(p.sla_due_at), p.failure_reason,
        webhooks.iso_time(p.created_at), webhooks.iso_time(p.accepted_at), webhooks.iso_time(p.picked_up_at),
        webhooks.iso_time(p.in_transit_at), webhooks.iso_time(p.delivered_at), webhooks.iso_time(p.failed_at),
        webhooks.iso_time(p.cancelled_at))
$$;
comment on function webhooks.shipment_values(core.shipping_assignments) is
    'The data of a shipment.* event (shape 4): the shipping assignment after the change, as positional values.';

-- emit gains p_shape (a new signature: the old one goes, its callers are the triggers below).
-- squawk: emit is no client's: only the owner's triggers call it (tests through the default p_shape).
-- squawk-ignore ban-drop-function
drop function webhooks.emit(text, bigint, text, jsonb, timestamptz);
create function webhooks.emit(
    p_event_type text,
    p_aggregate_id bigint,
    p_idempotency_key text,
    p_data jsonb,
    p_occurred_at timestamptz,
    p_shape smallint default null
)
returns uuid
language plpgsql
volatile
as $$
-- Write the event (its data serialized once, here: webhooks.event_body() composes the payload
-- around it) and its deliveries. p_data is the data object, or with p_shape the positional values
-- of that webhooks.payload_shapes row (what the emission triggers pass: webhooks.event_data). The state machines reach each keyed fact once, so a repeated
-- idempotency key is a bug: the unique key refuses it (23505) rather than hiding it. Not ON
-- CONFLICT DO NOTHING: its speculative insertion costs every event an extra WAL record and a second
-- index probe, for a case that cannot happen.
declare
    v_id uuid := webhooks.uuid_v7();
begin
    -- The aggregate type is the event type's first part (pgtap/51 checks it for every row of
    -- webhooks.event_types): no lookup, so the business transaction locks and probes two relations
    -- fewer (0015). Only the owner's triggers call emit, each with one of the 11 types.
    insert into webhooks.events (id, event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, data, shape)
    values (v_id, p_event_type, split_part(p_event_type, '.', 1), p_aggregate_id, p_idempotency_key, p_occurred_at,
            p_data::text, p_shape);
    -- Subscriptions are few (tens): a sequential scan with the array test is the cheapest plan.
    insert into webhooks.deliveries (event_id, subscription_id, status, next_attempt_at, finished_at)
    select v_id, s.id,
           case s.status when 'ACTIVE' then 'PENDING' else 'SKIPPED' end,
           case s.status when 'ACTIVE' then now() end,
           case s.status when 'ACTIVE' then null else now() end
      from webhooks.subscriptions s
     where s.event_types @> array[p_event_type];
    return v_id;
end
$$;
comment on function webhooks.emit(text, bigint, text, jsonb, timestamptz, smallint) is
    'Write one event and a delivery per subscription to its type (PENDING, or SKIPPED if disabled); one event per idempotency key.';

create or replace function webhooks.tg_orders__emit()
returns trigger
language plpgsql
as $$
-- AFTER UPDATE OF status: order.confirmed (from PENDING), order.cancelled, order.delivered.
-- Key: type:order:id:vVERSION (a re-confirmation after a failed delivery is not order.confirmed).
declare
    v_type text := case new.status when 'CONFIRMED' then 'order.confirmed'
                                   when 'CANCELLED' then 'order.cancelled'
                                   when 'DELIVERED' then 'order.delivered' end;
begin
    if v_type is not null and (new.status <> 'CONFIRMED' or old.status = 'PENDING') then
        perform webhooks.emit(v_type, new.id, v_type || ':order:' || new.id || ':v' || new.version,
                              webhooks.order_values(new), new.updated_at, 1::smallint);
    end if;
    return null;
end
$$;

create or replace function webhooks.tg_payments__emit()
returns trigger
language plpgsql
as $$
-- AFTER UPDATE OF status: payment.captured, payment.failed. A payment changes status once: key type:payment:id.
declare
    v_type text := case new.status when 'CAPTURED' then 'payment.captured' when 'FAILED' then 'payment.failed' end;
begin
    perform webhooks.emit(v_type, new.id, v_type || ':payment:' || new.id,
                          webhooks.payment_values(new), new.updated_at, 2::smallint);
    return null;
end
$$;

create or replace function webhooks.tg_refunds__emit()
returns trigger
language plpgsql
as $$
-- AFTER INSERT: refund.initiated; AFTER UPDATE OF status to COMPLETED: refund.completed. Key type:refund:id.
declare
    v_type text := case when tg_op = 'INSERT' then 'refund.initiated' else 'refund.completed' end;
begin
    perform webhooks.emit(v_type, new.id, v_type || ':refund:' || new.id,
                          webhooks.refund_values(new), new.updated_at, 3::smallint);
    return null;
end
$$;

create or replace function webhooks.tg_shipping_assignments__emit()
returns trigger
language plpgsql
as $$
-- AFTER UPDATE OF status: shipment.assigned (an agent accepted), picked_up, in_transit, failed.
-- Each status is reached once per assignment (a failed delivery is re-offered as a new one): key type:shipment:id.
declare
    v_type text := case new.status when 'ACCEPTED' then 'shipment.assigned'
                                   when 'PICKED_UP' then 'shipment.picked_up'
                                   when 'IN_TRANSIT' then 'shipment.in_transit'
                                   when 'FAILED' then 'shipment.failed' end;
begin
    perform webhooks.emit(v_type, new.id, v_type || ':shipment:' || new.id,
                          webhooks.shipment_values(new), new.updated_at, 4::smallint);
    return null;
end
$$;

-- The object-building data functions have no caller left.
-- squawk-ignore ban-drop-function
drop function webhooks.order_data(core.orders);
-- squawk-ignore ban-drop-function
drop function webhooks.payment_data(core.payments);
-- squawk-ignore ban-drop-function
drop function webhooks.refund_data(core.refunds);
-- squawk-ignore ban-drop-function
drop function webhooks.shipment_data(core.shipping_assignments);

create function webhooks.wake_dispatcher()
returns void
language plpgsql
security definer
set search_path = ''
as $$
-- The first committing transaction to find a dispatcher armed disarms it and sends NOTIFY webhooks
-- (empty payload). SKIP LOCKED: the others committing at that moment do not queue behind its row
-- lock - the one holding it notifies for all of them. Measured (bench/outbox.py, 32 clients, a
-- dispatcher re-arming at once after each wake-up): with a plain UPDATE a third of the time went to
-- Lock:tuple waits behind the disarming transaction. SECURITY DEFINER: request roles may read the
-- flag, not write it. Called by anyone, the worst it does is one spurious wake-up.
begin
    update webhooks.wakeup w set armed = false
     where w.id = (select x.id from webhooks.wakeup x where x.id and x.armed for update skip locked);
    if found then
        perform pg_notify('webhooks', '');
    end if;
end
$$;
comment on function webhooks.wake_dispatcher() is
    'Disarm the wake-up and NOTIFY webhooks, unless another committing transaction is doing it.';

create or replace function webhooks.tg_deliveries__wake()
returns trigger
language plpgsql
as $$
-- Deferred to COMMIT, so it runs as whoever is current then - the request role, once the
-- SECURITY DEFINER api function has returned (or the dispatcher, requeueing a retry). Common case:
-- nobody is armed, one read of one row, no lock, no NOTIFY. Neither SECURITY DEFINER nor SET
-- (every name qualified): each costs every emitting transaction a user switch and a GUC save and
-- restore at commit (~25 us measured, 0015.outbox_positional); the roles that commit business
-- transactions may read the flag instead (grants below) and call webhooks.wake_dispatcher only when
-- a dispatcher is armed.
begin
    if (select w.armed from webhooks.wakeup w where w.id) then
        perform webhooks.wake_dispatcher();
    end if;
    return null;
end
$$;
comment on function webhooks.tg_deliveries__wake() is
    'Trigger (deferred): NOTIFY webhooks at commit when new PENDING work meets an idle, armed dispatcher.';
-- The roles whose transactions write PENDING deliveries: every request role that can change a
-- business row (through the api functions) and the dispatcher (retries). anon changes nothing.
grant select on webhooks.wakeup to admin, platform_admin, service, agent, dispatcher;
create policy committers_read on webhooks.wakeup for select to admin, platform_admin, service, agent, dispatcher using (true);
comment on policy committers_read on webhooks.wakeup is 'The deferred wake-up trigger reads the flag as the committing role.';
grant execute on function webhooks.wake_dispatcher() to admin, platform_admin, service, agent, dispatcher;

-- ---- sql/820_api_webhooks.sql ----
-- service and agent commit business transactions, whose deferred wake-up trigger reads
-- webhooks.wakeup as them (sql/210): the schema's name, that flag and webhooks.wake_dispatcher only.
grant usage on schema webhooks to service, agent;
grant select on webhooks.payload_shapes to admin, platform_admin;
create policy admin_read on webhooks.payload_shapes for select to admin, platform_admin using (true);
comment on policy admin_read on webhooks.payload_shapes is 'Admins read the payload shapes (webhooks.event_data composes payloads with them).';
