-- =================================================================================================
-- 210 Webhooks: emission inside the business transaction
-- An AFTER trigger on each business status change writes the event and one delivery per subscription
-- to its type (PENDING if ACTIVE, SKIPPED if DISABLED) in the same transaction: an event exists if
-- and only if its change committed. Triggers with WHEN clauses: other changes cost no function call.
-- Seeding runs with session_replication_role = replica, so history is not news (no event at all).
--
-- Wake-up ("notify only when it matters"): NOTIFY takes a cluster-wide lock at commit and serialises
-- every committing transaction that sent one (bench/outbox.py measured it). So a commit notifies only
-- when a dispatcher has said it is idle (webhooks.arm_wakeup sets webhooks.wakeup.armed); the first
-- commit with new PENDING work disarms the flag and notifies, every other write only reads one row.
-- The flag is read as each PENDING row is written (since 0018: the WHEN clause of a deferred
-- constraint trigger, which is queued - and disarms and notifies at COMMIT - only if it was armed).
-- The writing transaction holds a transaction id by then (its row is written), so a transaction
-- that read the flag just before a dispatcher armed is still running when the dispatcher waits for
-- every transaction holding an id to end (webhooks.await_committing, sql/230) before it reads
-- next_due_at: such a row is seen, never left to the 30 s sweep.
-- Channel: webhooks, empty payload.
-- =================================================================================================

-- The helpers below are language sql without a SET clause (every name qualified), so the planner
-- inlines them into the callers: with SET search_path each call paid a GUC save/restore, ~30 us,
-- 15 calls per event (measured: the data function 408 us per call with SET; see docs/performance.md).
create function webhooks.iso_time(p_at timestamptz)
returns text
language sql
stable
as $$
    -- RFC 3339 in UTC with microseconds, whatever the session's TimeZone: payload bytes never vary.
    select to_char(p_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
comment on function webhooks.iso_time(timestamptz) is 'A timestamp as RFC 3339 UTC text (payload format).';

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

-- The payload is composed, not stored (0011.outbox_lean): an event row keeps only its data, and
-- this function wraps it with the row's columns. Byte-stable: jsonb's text output is canonical
-- (keys by length then bytes, one space after ':' and ','), data is stored as that output and
-- re-parses to itself, and iso_time ignores TimeZone and DateStyle; so every call - the claim of
-- each try, GET /webhook_events - yields the bytes emission would have stored (pgtap/51 checks it
-- under other session settings). Events written before 0011 keep their stored body. No SET clause:
-- it inlines into the claim and the admin view.
create function webhooks.event_body(p webhooks.events)
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

-- Admins read payloads through api.webhook_events (security_invoker): they execute the composer.
grant execute on function webhooks.iso_time(timestamptz), webhooks.event_data(webhooks.events), webhooks.event_body(webhooks.events)
    to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- The entity after the change, as positional values: camelCase keys come from webhooks.payload_shapes
-- (shapes 1-4, in this order); amounts are integers beside their currency. id and updatedAt are not
-- among them: they are the event's aggregate_id and occurred_at (webhooks.event_data adds them).
-- pgtap/51 checks that each function's values zip with its shape's keys into the entity.
-- -------------------------------------------------------------------------------------------------

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

-- -------------------------------------------------------------------------------------------------
-- emit: one event, one delivery per subscription to its type
-- The functions of the business path (emit and the emission triggers) have no SET
-- search_path and are not SECURITY DEFINER: a SET clause costs a GUC save and restore on every call
-- (~26 us measured, three calls per event), and they need neither. Every name in them is qualified,
-- and they always run as the owner: no role but the owner may write core.* or webhooks.* (request
-- roles change business rows only through the SECURITY DEFINER api functions, the dispatcher only
-- through its SECURITY DEFINER webhooks functions).
-- -------------------------------------------------------------------------------------------------

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

-- -------------------------------------------------------------------------------------------------
-- Emission triggers on the business tables
-- -------------------------------------------------------------------------------------------------

create function webhooks.tg_orders__emit()
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
comment on function webhooks.tg_orders__emit() is 'Trigger: emits order.confirmed, order.cancelled and order.delivered.';
create trigger _200_emit_webhook
    after update of status on core.orders
    for each row
    when (new.status is distinct from old.status and new.status in ('CONFIRMED', 'CANCELLED', 'DELIVERED'))
    execute function webhooks.tg_orders__emit();
comment on trigger _200_emit_webhook on core.orders is 'Writes the webhook event and deliveries of an order status change.';

create function webhooks.tg_payments__emit()
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
comment on function webhooks.tg_payments__emit() is 'Trigger: emits payment.captured and payment.failed.';
create trigger _200_emit_webhook
    after update of status on core.payments
    for each row
    when (new.status is distinct from old.status and new.status in ('CAPTURED', 'FAILED'))
    execute function webhooks.tg_payments__emit();
comment on trigger _200_emit_webhook on core.payments is 'Writes the webhook event and deliveries of a payment status change.';

create function webhooks.tg_refunds__emit()
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
comment on function webhooks.tg_refunds__emit() is 'Trigger: emits refund.initiated and refund.completed.';
create trigger _200_emit_webhook
    after insert on core.refunds
    for each row execute function webhooks.tg_refunds__emit();
comment on trigger _200_emit_webhook on core.refunds is 'Writes the refund.initiated event and deliveries.';
create trigger _201_emit_webhook
    after update of status on core.refunds
    for each row
    when (new.status is distinct from old.status and new.status = 'COMPLETED')
    execute function webhooks.tg_refunds__emit();
comment on trigger _201_emit_webhook on core.refunds is 'Writes the refund.completed event and deliveries.';

create function webhooks.tg_shipping_assignments__emit()
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
comment on function webhooks.tg_shipping_assignments__emit() is
    'Trigger: emits shipment.assigned, shipment.picked_up, shipment.in_transit and shipment.failed.';
create trigger _200_emit_webhook
    after update of status on core.shipping_assignments
    for each row
    when (new.status is distinct from old.status and new.status in ('ACCEPTED', 'PICKED_UP', 'IN_TRANSIT', 'FAILED'))
    execute function webhooks.tg_shipping_assignments__emit();
comment on trigger _200_emit_webhook on core.shipping_assignments is 'Writes the webhook event and deliveries of a shipment step.';

-- -------------------------------------------------------------------------------------------------
-- Wake-up: NOTIFY only when a dispatcher waits for it
-- -------------------------------------------------------------------------------------------------

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
-- Lock:tuple waits behind the disarming transaction. SECURITY DEFINER: the committing request roles
-- may neither read nor write the flag. Called by anyone, the worst it does is one spurious wake-up.
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

create function webhooks.dispatcher_armed()
returns boolean
language plpgsql
stable
as $$
-- Read by the wake-up trigger's WHEN clause as each PENDING row is written, i.e. as the writer: the
-- owner, inside the SECURITY DEFINER functions that alone write deliveries. PL/pgSQL: its query's
-- plan is kept for the session (a SQL function's would be planned on every statement). No WHERE:
-- the table holds one row (wakeup_single_row_check and its key), and a sequential scan locks only
-- the table - the business transaction has used up its 16 fast-path lock slots by then, so every
-- relation it locks more goes through the shared lock table (LWLock:LockManager at 32 clients).
begin
    return (select w.armed from webhooks.wakeup w);
end
$$;
comment on function webhooks.dispatcher_armed() is 'Whether a dispatcher went idle and waits for NOTIFY webhooks (the wake-up flag).';

create function webhooks.tg_deliveries__wake()
returns trigger
language plpgsql
as $$
-- Queued only when a dispatcher was armed as the row was written (the trigger's WHEN clause), and
-- deferred to COMMIT, so it runs as whoever is current then - the request role, once the SECURITY
-- DEFINER api function has returned (or the dispatcher, requeueing a retry). Neither SECURITY
-- DEFINER nor SET; webhooks.wake_dispatcher is, and disarms + notifies unless another committing
-- transaction is doing it.
begin
    perform webhooks.wake_dispatcher();
    return null;
end
$$;
comment on function webhooks.tg_deliveries__wake() is
    'Trigger (deferred): NOTIFY webhooks at commit when new PENDING work meets an idle, armed dispatcher.';
-- The roles whose transactions write PENDING deliveries commit them, so they run the deferred trigger:
-- every request role that can change a business row (through the api functions) and the dispatcher
-- (retries). anon changes nothing. (service and agent get USAGE on the schema in sql/820.)
grant execute on function webhooks.wake_dispatcher() to admin, platform_admin, service, agent, dispatcher;
create constraint trigger _900_wake_dispatcher
    after insert or update of status on webhooks.deliveries
    deferrable initially deferred
    for each row
    when (new.status = 'PENDING' and webhooks.dispatcher_armed())
    execute function webhooks.tg_deliveries__wake();
comment on trigger _900_wake_dispatcher on webhooks.deliveries is
    'At commit: wakes the dispatcher (NOTIFY webhooks) when PENDING work was added while it was armed; nothing is queued otherwise.';

