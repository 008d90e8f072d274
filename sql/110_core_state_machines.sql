-- =================================================================================================
-- 110 State machines as data
-- One row per allowed (machine, from, to). A BEFORE UPDATE trigger on each stateful table refuses any
-- other change of status, whoever writes it: functions give the specific error earlier, the trigger
-- makes an illegal transition impossible.
-- =================================================================================================

create table core.state_transitions (
    machine      text not null,
    from_status  text not null,
    to_status    text not null,
    constraint state_transitions_pkey primary key (machine, from_status, to_status),
    constraint state_transitions_machine_check
        check (machine in ('order', 'payment', 'refund', 'assignment')),
    constraint state_transitions_not_a_loop_check check (from_status <> to_status)
);
alter table core.state_transitions enable row level security;
comment on table core.state_transitions is 'Allowed status transitions of every state machine (order, payment, refund, assignment).';

insert into core.state_transitions (machine, from_status, to_status) values
    -- orders: paid and confirmed, shipped when picked up, delivered; back to CONFIRMED when a delivery fails
    ('order', 'PENDING',   'CONFIRMED'),
    ('order', 'PENDING',   'CANCELLED'),
    ('order', 'CONFIRMED', 'SHIPPED'),
    ('order', 'CONFIRMED', 'CANCELLED'),
    ('order', 'SHIPPED',   'DELIVERED'),
    ('order', 'SHIPPED',   'CONFIRMED'),
    -- payments
    ('payment', 'PENDING', 'CAPTURED'),
    ('payment', 'PENDING', 'FAILED'),
    -- refunds
    ('refund', 'INITIATED', 'COMPLETED'),
    ('refund', 'INITIATED', 'FAILED'),
    -- shipping assignments
    ('assignment', 'OFFERED',    'ACCEPTED'),
    ('assignment', 'OFFERED',    'CANCELLED'),
    ('assignment', 'ACCEPTED',   'PICKED_UP'),
    ('assignment', 'ACCEPTED',   'FAILED'),
    ('assignment', 'ACCEPTED',   'CANCELLED'),
    ('assignment', 'PICKED_UP',  'IN_TRANSIT'),
    ('assignment', 'PICKED_UP',  'FAILED'),
    ('assignment', 'IN_TRANSIT', 'DELIVERED'),
    ('assignment', 'IN_TRANSIT', 'FAILED');

-- PL/pgSQL, not SQL (0017): a SQL function with a SET clause cannot be inlined, and when called
-- from PL/pgSQL its body was parsed and planned again at every call (74 us per call, 14 calls per
-- lifecycle: bench/transition.py, docs/performance.md "Issue 12 §1: cuts"); PL/pgSQL keeps the
-- plan for the session.
create function core.transition_allowed(p_machine text, p_from text, p_to text)
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

create function core.tg_status__check_transition()
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
