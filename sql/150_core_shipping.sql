-- =================================================================================================
-- 150 Shipping assignments
-- An assignment is offered for a CONFIRMED order to every active agent serving its zip code; exactly
-- one agent accepts it (row lock), then PICKED_UP -> IN_TRANSIT -> DELIVERED, or FAILED / CANCELLED.
-- Every step lands in core.assignment_status_history (the metrics activity feed reads it).
-- Lock order everywhere: assignment row, then order row.
-- =================================================================================================

create table core.shipping_assignments (
    id                 bigint generated always as identity,
    order_id           bigint not null,
    agent_id           bigint,
    zip_code           text not null,
    status             text not null default 'OFFERED',
    sla_due_at         timestamptz not null,
    failure_reason     text,
    status_changed_by  text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    accepted_at        timestamptz,
    picked_up_at       timestamptz,
    in_transit_at      timestamptz,
    delivered_at       timestamptz,
    failed_at          timestamptz,
    cancelled_at       timestamptz,
    constraint shipping_assignments_pkey primary key (id),
    constraint shipping_assignments_order_id_fkey foreign key (order_id) references core.orders (id),
    constraint shipping_assignments_agent_id_fkey foreign key (agent_id) references core.delivery_agents (id),
    constraint shipping_assignments_zip_code_format_check check (zip_code ~ '^[0-9]{5}$'),
    constraint shipping_assignments_status_check
        check (status in ('OFFERED', 'ACCEPTED', 'PICKED_UP', 'IN_TRANSIT', 'DELIVERED', 'FAILED', 'CANCELLED')),
    constraint shipping_assignments_sla_after_offer_check check (sla_due_at > created_at),
    -- Offers have no agent yet; from ACCEPTED on (FAILED included) the row names its agent.
    constraint shipping_assignments_agent_matches_status_check
        check (case status when 'OFFERED' then agent_id is null
                           when 'CANCELLED' then true
                           else agent_id is not null end),
    constraint shipping_assignments_delivered_has_timestamp_check check (status <> 'DELIVERED' or delivered_at is not null),
    constraint shipping_assignments_failed_has_reason_check check (status <> 'FAILED' or failure_reason is not null)
);
alter table core.shipping_assignments enable row level security;
comment on table core.shipping_assignments is 'Delivery work: offered for an order, accepted by one agent, then picked up, in transit, delivered (or failed/cancelled).';
comment on column core.shipping_assignments.zip_code is 'The order''s ship-to zip code, copied so offers match agents without a join.';
comment on column core.shipping_assignments.sla_due_at is 'When delivery is due; delivered_at after it is an SLA breach.';

-- One live (not failed, not cancelled) assignment per order.
create unique index shipping_assignments_order_id_live_key on core.shipping_assignments (order_id)
    where status not in ('FAILED', 'CANCELLED');
comment on index core.shipping_assignments_order_id_live_key is 'At most one live assignment per order.';
create index shipping_assignments_order_id_idx on core.shipping_assignments (order_id);
comment on index core.shipping_assignments_order_id_idx is 'Serves the orders FK, including failed and cancelled rows.';
create index shipping_assignments_offered_zip_code_idx on core.shipping_assignments (zip_code, created_at)
    where status = 'OFFERED';
comment on index core.shipping_assignments_offered_zip_code_idx is 'Serves an agent''s open offers: OFFERED rows in its zip codes, oldest first.';
-- Equality columns first (agent, status), the range column last: one contiguous index range per
-- (agent, status, period). Measured (make explain, 189,941 assignments): an agent's latest 100
-- DELIVERED in 90 days, Index Scan 0.10 ms vs Parallel Seq Scan 27 ms. docs/indexes.md.
create index shipping_assignments_agent_id_status_created_at_idx on core.shipping_assignments (agent_id, status, created_at);
comment on index core.shipping_assignments_agent_id_status_created_at_idx is
    'Serves an agent''s assignments by status in a period (agent metrics) and the delivery_agents FK.';
-- Partial on DELIVERED (the SLA and leaderboard population), keyed by delivered_at alone. Not the
-- plan's (status, delivered_at): the planner drops "status = 'DELIVERED'" from the index conditions
-- because the predicate already implies it, so with status leading, a delivered_at range can only
-- be found by reading the whole index. Measured (make explain, 200,000 orders, 18,356 deliveries in
-- the last week): with (status, delivered_at) the SLA summary is a Seq Scan, 30 ms; with
-- (delivered_at) an Index Scan, 7-10 ms, at 55 % of the size. docs/indexes.md.
create index shipping_assignments_delivered_at_idx on core.shipping_assignments (delivered_at)
    where status = 'DELIVERED';
comment on index core.shipping_assignments_delivered_at_idx is
    'Serves SLA summary and leaderboard: DELIVERED assignments in a delivered_at range (partial).';

create table core.assignment_status_history (
    id             bigint generated always as identity,
    assignment_id  bigint not null,
    order_id       bigint not null,
    agent_id       bigint,
    from_status    text,
    to_status      text not null,
    actor          text not null,
    reason         text,
    created_at     timestamptz not null default now(),
    constraint assignment_status_history_pkey primary key (id),
    constraint assignment_status_history_assignment_id_fkey foreign key (assignment_id) references core.shipping_assignments (id),
    constraint assignment_status_history_order_id_fkey foreign key (order_id) references core.orders (id),
    constraint assignment_status_history_agent_id_fkey foreign key (agent_id) references core.delivery_agents (id)
);
alter table core.assignment_status_history enable row level security;
comment on table core.assignment_status_history is 'Every shipping-assignment step with agent, actor and time (the agent activity feed).';

create index assignment_status_history_assignment_id_idx on core.assignment_status_history (assignment_id, id);
comment on index core.assignment_status_history_assignment_id_idx is 'Serves the FK and one assignment''s steps in order.';
create index assignment_status_history_order_id_idx on core.assignment_status_history (order_id);
comment on index core.assignment_status_history_order_id_idx is 'Serves the orders FK and the delivery steps of one order.';
create index assignment_status_history_agent_id_created_at_idx on core.assignment_status_history (agent_id, created_at desc);
comment on index core.assignment_status_history_agent_id_created_at_idx is 'Serves the FK and an agent''s activity feed, newest first.';

create function core.tg_shipping_assignments__history()
returns trigger
language plpgsql
set search_path = ''
as $$
-- AFTER INSERT or status change: append the step to core.assignment_status_history.
begin
    if tg_op = 'INSERT' or new.status is distinct from old.status then
        insert into core.assignment_status_history
            (assignment_id, order_id, agent_id, from_status, to_status, actor, reason, created_at)
        values (new.id, new.order_id, new.agent_id, case when tg_op = 'UPDATE' then old.status end,
                new.status, coalesce(new.status_changed_by, auth.actor()),
                case when new.status = 'FAILED' then new.failure_reason end, new.updated_at);
    end if;
    return null;
end
$$;
comment on function core.tg_shipping_assignments__history() is 'Trigger: records every assignment step in core.assignment_status_history.';

create trigger _010_check_transition
    before update of status on core.shipping_assignments
    for each row execute function core.tg_status__check_transition('assignment');
comment on trigger _010_check_transition on core.shipping_assignments is 'Refuses transitions not in core.state_transitions.';
create trigger _100_history
    after insert or update of status on core.shipping_assignments
    for each row execute function core.tg_shipping_assignments__history();
comment on trigger _100_history on core.shipping_assignments is 'Appends each status step to the history.';

create function core.offer_assignment(
    p_order_id bigint,
    p_sla_due_at timestamptz default null,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.shipping_assignments
language plpgsql
volatile
set search_path = ''
as $$
-- Offer a CONFIRMED order's delivery to the agents of its zip code (default SLA: 48 hours).
declare
    v_order core.orders;
    v_assignment core.shipping_assignments;
    v_now timestamptz := coalesce(p_now, now());
begin
    -- FOR SHARE: the order cannot be cancelled under us; concurrent offers still race on the
    -- partial unique index, whose violation we turn into ASSIGNMENT_ALREADY_LIVE (409).
    select * into v_order from core.orders o where o.id = p_order_id for share;
    if not found then
        perform ops.raise_error('ORDER_NOT_FOUND', coalesce(p_order_id::text, 'null'));
    end if;
    if v_order.status <> 'CONFIRMED' then
        perform ops.raise_error('ASSIGNMENT_ORDER_NOT_READY', p_order_id::text, v_order.status);
    end if;
    if exists (select 1 from core.shipping_assignments a
                where a.order_id = p_order_id and a.status not in ('FAILED', 'CANCELLED')) then
        perform ops.raise_error('ASSIGNMENT_ALREADY_LIVE', p_order_id::text);
    end if;
    if p_sla_due_at is not null and p_sla_due_at <= v_now then
        perform ops.raise_error('INVALID_ARGUMENT', 'sla_due_at must be in the future');
    end if;
    if not exists (select 1 from core.delivery_agents d
                    where d.status = 'ACTIVE' and d.serviceable_zip_codes @> array[v_order.ship_to_zip]) then
        perform ops.raise_error('ASSIGNMENT_NO_AGENT_FOR_ZIP', v_order.ship_to_zip);
    end if;
    begin
        insert into core.shipping_assignments (order_id, zip_code, sla_due_at, status_changed_by, created_at, updated_at)
        values (p_order_id, v_order.ship_to_zip, coalesce(p_sla_due_at, v_now + interval '48 hours'),
                coalesce(p_actor, auth.actor()), v_now, v_now)
        returning * into v_assignment;
    exception when unique_violation then
        -- A concurrent offer for the same order committed between our check and our insert.
        perform ops.raise_error('ASSIGNMENT_ALREADY_LIVE', p_order_id::text);
    end;
    return v_assignment;
end
$$;
comment on function core.offer_assignment(bigint, timestamptz, text, timestamptz) is
    'Offer a CONFIRMED order''s delivery to the active agents serving its zip code.';

create function core.lock_assignment(p_assignment_id bigint)
returns core.shipping_assignments
language plpgsql
volatile
set search_path = ''
set lock_timeout = '5s'
as $$
-- The assignment row FOR UPDATE, waiting at most 5 s (then the registered, retryable
-- ASSIGNMENT_LOCK_TIMEOUT and an assignment_lock_timeout log line), or ASSIGNMENT_NOT_FOUND.
-- The loser of a race must wait to learn that the row is taken and get a clean conflict, not a
-- spurious "busy", so the fallback waits (FOR UPDATE, not NOWAIT). The uncontended path first tries
-- SKIP LOCKED outside any exception block: catching lock_not_available needs a subtransaction, and
-- a row locked in a subtransaction then updated by the main one gets a MultiXact on every step
-- (bench/lifecycle measured one per accept/pick-up/transit/deliver).
declare
    v_assignment core.shipping_assignments;
begin
    select * into v_assignment from core.shipping_assignments a
     where a.id = p_assignment_id for update skip locked;
    if v_assignment.id is not null then
        return v_assignment;
    end if;
    begin  -- absent, or locked by someone else: wait for it, at most lock_timeout
        select * into v_assignment from core.shipping_assignments a where a.id = p_assignment_id for update;
    exception when lock_not_available then
        perform ops.log_event('assignment_lock_timeout', 'warn',
            jsonb_build_object('assignment_id', p_assignment_id, 'lock_timeout', '5s'),
            'ASSIGNMENT_LOCK_TIMEOUT');
        perform ops.raise_error('ASSIGNMENT_LOCK_TIMEOUT', p_assignment_id::text, '5s');
    end;
    if v_assignment.id is null then
        perform ops.raise_error('ASSIGNMENT_NOT_FOUND', coalesce(p_assignment_id::text, 'null'));
    end if;
    return v_assignment;
end
$$;
comment on function core.lock_assignment(bigint) is
    'Lock an assignment FOR UPDATE with a 5 s lock_timeout, raising registered errors on timeout or absence.';

create function core.accept_assignment(
    p_assignment_id bigint,
    p_agent_id bigint,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.shipping_assignments
language plpgsql
volatile
set search_path = ''
as $$
-- OFFERED -> ACCEPTED by one eligible agent. Concurrent acceptors queue on the row lock; the first
-- wins, every later one finds the row no longer OFFERED and gets ASSIGNMENT_ALREADY_TAKEN.
declare
    v_assignment core.shipping_assignments;
    v_agent core.delivery_agents;
    v_now timestamptz := coalesce(p_now, now());
begin
    select * into v_agent from core.delivery_agents d where d.id = p_agent_id;
    if not found then
        perform ops.raise_error('AGENT_NOT_FOUND', coalesce(p_agent_id::text, 'null'));
    end if;
    v_assignment := core.lock_assignment(p_assignment_id);
    if v_assignment.status <> 'OFFERED' then
        perform ops.log_event('assignment_accept_conflict', 'warn',
            jsonb_build_object('assignment_id', p_assignment_id, 'agent_id', p_agent_id,
                               'status', v_assignment.status, 'winner_agent_id', v_assignment.agent_id),
            'ASSIGNMENT_ALREADY_TAKEN');
        perform ops.raise_error('ASSIGNMENT_ALREADY_TAKEN', p_assignment_id::text, v_assignment.status);
    end if;
    if v_agent.status <> 'ACTIVE' then
        perform ops.raise_error('AGENT_NOT_ELIGIBLE', p_agent_id::text, p_assignment_id::text,
                                'agent is ' || v_agent.status);
    end if;
    if not v_agent.serviceable_zip_codes @> array[v_assignment.zip_code] then
        perform ops.raise_error('AGENT_NOT_ELIGIBLE', p_agent_id::text, p_assignment_id::text,
                                'zip code ' || v_assignment.zip_code || ' is not served');
    end if;
    update core.shipping_assignments a
       set status = 'ACCEPTED', agent_id = p_agent_id, accepted_at = v_now, updated_at = v_now,
           status_changed_by = coalesce(p_actor, auth.actor())
     where a.id = p_assignment_id
    returning * into v_assignment;
    return v_assignment;
end
$$;
comment on function core.accept_assignment(bigint, bigint, text, timestamptz) is
    'Accept an offered assignment: exactly one agent wins; the others get ASSIGNMENT_ALREADY_TAKEN.';

create function core.advance_assignment(
    p_assignment_id bigint,
    p_to text,
    p_agent_id bigint default null,
    p_reason text default null,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.shipping_assignments
language plpgsql
volatile
set search_path = ''
as $$
-- Move an accepted assignment on: PICKED_UP, IN_TRANSIT, DELIVERED, FAILED or CANCELLED, with the
-- order following (picked up -> SHIPPED, delivered -> DELIVERED, failed after pick-up -> CONFIRMED
-- again so it can be re-offered). p_agent_id, when given, must be the assignment's agent.
declare
    v_assignment core.shipping_assignments;
    v_order_status text;
    v_actor text := coalesce(p_actor, auth.actor());
    v_now timestamptz := coalesce(p_now, now());
begin
    if p_to is null or p_to not in ('PICKED_UP', 'IN_TRANSIT', 'DELIVERED', 'FAILED', 'CANCELLED') then
        perform ops.raise_error('INVALID_ARGUMENT', 'unknown assignment status ' || coalesce(p_to, 'null'));
    end if;
    if p_to = 'FAILED' and (p_reason is null or btrim(p_reason) = '') then
        perform ops.raise_error('INVALID_ARGUMENT', 'a failure reason is required');
    end if;
    v_assignment := core.lock_assignment(p_assignment_id);
    if p_agent_id is not null and v_assignment.agent_id is distinct from p_agent_id then
        perform ops.raise_error('ASSIGNMENT_NOT_YOURS', p_assignment_id::text);
    end if;
    -- The machine is checked once, by the _010_check_transition trigger on the UPDATE below (the
    -- same ASSIGNMENT_INVALID_TRANSITION with the same arguments, 0017); staying put is refused here.
    if v_assignment.status = p_to then
        perform ops.raise_error('ASSIGNMENT_INVALID_TRANSITION', p_assignment_id::text, v_assignment.status, p_to);
    end if;
    select o.status into v_order_status from core.orders o where o.id = v_assignment.order_id;

    update core.shipping_assignments a
       set status = p_to, updated_at = v_now, status_changed_by = v_actor,
           picked_up_at  = case when p_to = 'PICKED_UP'  then v_now else a.picked_up_at end,
           in_transit_at = case when p_to = 'IN_TRANSIT' then v_now else a.in_transit_at end,
           delivered_at  = case when p_to = 'DELIVERED'  then v_now else a.delivered_at end,
           failed_at     = case when p_to = 'FAILED'     then v_now else a.failed_at end,
           cancelled_at  = case when p_to = 'CANCELLED'  then v_now else a.cancelled_at end,
           failure_reason = case when p_to = 'FAILED' then p_reason else a.failure_reason end
     where a.id = p_assignment_id
    returning * into v_assignment;

    if p_to = 'PICKED_UP' then
        perform core.set_order_status(v_assignment.order_id, 'SHIPPED', v_actor, null, v_now, array['CONFIRMED']);
    elsif p_to = 'DELIVERED' then
        perform core.set_order_status(v_assignment.order_id, 'DELIVERED', v_actor, null, v_now, array['SHIPPED']);
    elsif p_to = 'FAILED' and v_order_status = 'SHIPPED' then
        perform core.set_order_status(v_assignment.order_id, 'CONFIRMED', v_actor, null, v_now, array['SHIPPED']);
    end if;
    return v_assignment;
end
$$;
comment on function core.advance_assignment(bigint, text, bigint, text, text, timestamptz) is
    'Move an assignment to PICKED_UP, IN_TRANSIT, DELIVERED, FAILED or CANCELLED; the order follows.';

create function core.confirm_order(
    p_order_id bigint,
    p_actor text default null,
    p_expected_version integer default null,
    p_now timestamptz default null
)
returns core.orders
language plpgsql
volatile
set search_path = ''
as $$
-- PENDING -> CONFIRMED, only once the order's payment is captured.
declare
    v_status text;
begin
    select o.status into v_status from core.orders o where o.id = p_order_id;
    if not found then
        perform ops.raise_error('ORDER_NOT_FOUND', coalesce(p_order_id::text, 'null'));
    end if;
    if v_status = 'PENDING' and not exists (
        select 1 from core.payments p where p.order_id = p_order_id and p.status = 'CAPTURED') then
        perform ops.raise_error('ORDER_NOT_PAID', p_order_id::text);
    end if;
    return core.set_order_status(p_order_id, 'CONFIRMED', p_actor, p_expected_version, p_now, array['PENDING']);
end
$$;
comment on function core.confirm_order(bigint, text, integer, timestamptz) is
    'Confirm a PENDING order whose payment is captured (optimistic status change).';

create function core.cancel_order(
    p_order_id bigint,
    p_actor text default null,
    p_expected_version integer default null,
    p_now timestamptz default null
)
returns core.orders
language plpgsql
volatile
set search_path = ''
as $$
-- PENDING/CONFIRMED -> CANCELLED. A pending payment fails with reason "order cancelled"; a live
-- offer or accepted assignment is cancelled. Captured money is returned by refunds, explicitly.
declare
    v_order core.orders;
    v_actor text := coalesce(p_actor, auth.actor());
    v_now timestamptz := coalesce(p_now, now());
begin
    -- Lock order: assignments first, then the order (as advance_assignment does), so no deadlock.
    perform 1 from core.shipping_assignments a
     where a.order_id = p_order_id and a.status in ('OFFERED', 'ACCEPTED')
       for update;
    v_order := core.set_order_status(p_order_id, 'CANCELLED', v_actor, p_expected_version, v_now);
    update core.shipping_assignments a
       set status = 'CANCELLED', cancelled_at = v_now, updated_at = v_now, status_changed_by = v_actor
     where a.order_id = p_order_id and a.status in ('OFFERED', 'ACCEPTED');
    update core.payments p
       set status = 'FAILED', failure_reason = 'order cancelled', failed_at = v_now, updated_at = v_now
     where p.order_id = p_order_id and p.status = 'PENDING';
    return v_order;
end
$$;
comment on function core.cancel_order(bigint, text, integer, timestamptz) is
    'Cancel a PENDING or CONFIRMED order; cancels its live assignment and fails its pending payment.';
