-- 0017 transition lean: what a lifecycle transition costs its backend, cut without dropping a
-- feature (issue 12 §1, docs/performance.md "Issue 12 §1: cuts (migration 0017)"). Only function
-- definitions change: every event is still logged, every invariant enforced by the same triggers
-- and constraints, every history and outbox row written in the same transaction.
-- - core.transition_allowed is PL/pgSQL: as a SQL function with SET search_path it could not be
--   inlined and its body was parsed and planned again at every call (74 us, 14 calls per
--   lifecycle); the status trigger looks the transition up itself, and set_order_status /
--   advance_assignment leave the machine check to that trigger (same error code and arguments)
--   instead of looking it up a second time;
-- - core.amount_max is PL/pgSQL (the CHECKs of orders and payments evaluated the SQL body, parsed
--   and planned, once per statement); core.fee_for and ops.request_id lose their SET clause (they
--   name no object) and inline into their callers.
-- depends: 0016.metrics_lean

-- A deploy never hangs behind a long transaction (CREATE OR REPLACE FUNCTION takes no table lock).
set local lock_timeout = '5s';
set local statement_timeout = '60s';

create or replace function ops.request_id()
returns text
language sql
stable
as $$
    -- The X-Request-Id of the HTTP request in progress (set by PostgREST/gateway), or null.
    -- No SET clause (0017), like auth.jwt(): it calls pg_catalog functions only, so it inlines
    -- into ops.log_event instead of being parsed and planned at each call (43 us measured).
    select nullif(current_setting('request.headers', true), '')::json ->> 'x-request-id'
$$;
comment on function ops.request_id() is 'The current HTTP request''s X-Request-Id header, or null outside a request.';

create or replace function core.amount_max()
returns bigint
language plpgsql
immutable
parallel safe
set search_path = ''
as $$
-- 10^12 minor units (10 billion EUR). Below 2^53, so JSON clients that read numbers as doubles
-- (JavaScript) get every amount exactly; and a wallet's bigint balance has room for 9.2 million
-- payments of this size. Changing it does not re-check existing rows (CHECKs read it).
-- PL/pgSQL, not SQL (0017): the CHECKs of orders and payments evaluate it once per INSERT or
-- UPDATE statement, and a SQL function's body was parsed and planned again at each evaluation
-- (21.9 us per call with track_functions, six calls per lifecycle; PL/pgSQL: a few us).
begin
    return 1000000000000;
end
$$;
comment on function core.amount_max() is 'The largest amount accepted, in minor units (10^12); AMOUNT_TOO_LARGE above it.';

create or replace function core.fee_for(p_amount bigint, p_fee_bps integer)
returns bigint
language sql
immutable
parallel safe
as $$
    -- fee_bps basis points of the amount, rounded half up; numeric, so the product never overflows.
    -- No SET clause (0017), like auth.*: it names no object, only pg_catalog operators and div(),
    -- so the planner inlines it into capture_payment instead of planning this body at each call.
    select div(p_amount::numeric * p_fee_bps + 5000, 10000)::bigint
$$;
comment on function core.fee_for(bigint, integer) is 'The platform fee of a captured amount: fee_bps basis points, rounded half up to the minor unit.';

create or replace function core.transition_allowed(p_machine text, p_from text, p_to text)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
    return exists (
        select 1 from core.state_transitions t
        where t.machine = p_machine and t.from_status = p_from and t.to_status = p_to
    );
end
$$;
comment on function core.transition_allowed(text, text, text) is 'Whether the state machine allows from -> to.';

create or replace function core.tg_status__check_transition()
returns trigger
language plpgsql
set search_path = ''
as $$
-- BEFORE UPDATE OF status: refuse transitions missing from core.state_transitions.
-- TG_ARGV[0] names the machine; its registered error is <MACHINE>_INVALID_TRANSITION.
-- The lookup is written out rather than a call of core.transition_allowed: one frame less on every
-- status change (0017).
begin
    if new.status is distinct from old.status
       and not exists (select 1 from core.state_transitions t
                        where t.machine = tg_argv[0] and t.from_status = old.status
                          and t.to_status = new.status) then
        perform ops.raise_error(upper(tg_argv[0]) || '_INVALID_TRANSITION',
                                old.id::text, old.status, new.status);
    end if;
    return new;
end
$$;
comment on function core.tg_status__check_transition() is
    'Trigger: refuses a status change that core.state_transitions does not allow.';

create or replace function core.set_order_status(
    p_order_id bigint,
    p_to text,
    p_actor text default null,
    p_expected_version integer default null,
    p_now timestamptz default null,
    p_from text[] default null
)
returns core.orders
language plpgsql
volatile
set search_path = ''
as $$
-- Optimistic status change: UPDATE only if status and version are still what we read. A concurrent
-- change makes the UPDATE match nothing (READ COMMITTED re-checks the WHERE on the newest row), so we
-- re-read and retry: 3 attempts, backoff 10 ms then 20 ms (x 0.5-1.5 jitter), then a registered
-- conflict. p_expected_version lets a client insist on the version it saw (no retry then);
-- p_from restricts the statuses this action may start from (confirm: PENDING only), checked again
-- on every re-read, since the machine alone allows e.g. SHIPPED -> CONFIRMED after a failed delivery.
declare
    v_order core.orders;
    v_now timestamptz := coalesce(p_now, now());
    v_attempts constant integer := 3;
begin
    for v_attempt in 1 .. v_attempts loop
        select * into v_order from core.orders o where o.id = p_order_id;
        if not found then
            perform ops.raise_error('ORDER_NOT_FOUND', p_order_id::text);
        end if;
        if p_expected_version is not null and v_order.version <> p_expected_version then
            perform ops.log_event('order_status_conflict', 'warn',
                jsonb_build_object('order_id', p_order_id, 'expected_version', p_expected_version,
                                   'version', v_order.version, 'to_status', p_to),
                'ORDER_STATUS_CONFLICT');
            perform ops.raise_error('ORDER_STATUS_CONFLICT', p_order_id::text, '1');
        end if;
        -- The machine is checked once, by the _010_check_transition trigger on the UPDATE below
        -- (the same ORDER_INVALID_TRANSITION with the same arguments; 0017: a second lookup here
        -- cost ~2 % of a transition). That trigger lets a status stay as it is: refused here.
        if v_order.status = p_to
           or (p_from is not null and v_order.status <> all (p_from)) then
            perform ops.raise_error('ORDER_INVALID_TRANSITION', p_order_id::text, v_order.status, p_to);
        end if;

        update core.orders o
           set status = p_to,
               status_changed_by = coalesce(p_actor, auth.actor()),
               updated_at = v_now,
               confirmed_at = case when p_to = 'CONFIRMED' then coalesce(o.confirmed_at, v_now) else o.confirmed_at end,
               shipped_at   = case when p_to = 'SHIPPED'   then v_now else o.shipped_at end,
               delivered_at = case when p_to = 'DELIVERED' then v_now else o.delivered_at end,
               cancelled_at = case when p_to = 'CANCELLED' then v_now else o.cancelled_at end
         where o.id = p_order_id and o.status = v_order.status and o.version = v_order.version
        returning * into v_order;
        if found then
            return v_order;
        end if;
        if v_attempt < v_attempts then
            perform pg_sleep(0.010 * power(2, v_attempt - 1) * (0.5 + random()));
        end if;
    end loop;
    perform ops.log_event('order_status_conflict', 'warn',
        jsonb_build_object('order_id', p_order_id, 'to_status', p_to, 'attempts', v_attempts),
        'ORDER_STATUS_CONFLICT');
    perform ops.raise_error('ORDER_STATUS_CONFLICT', p_order_id::text, v_attempts::text);
    return null;
end
$$;
comment on function core.set_order_status(bigint, text, text, integer, timestamptz, text[]) is
    'Move an order to p_to with optimistic locking (3 attempts, exponential backoff), or raise a registered error.';

create or replace function core.advance_assignment(
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

