-- Migration 0017 (issue 12 §1): the state machine is checked once per status change, by the status
-- trigger, so a refusal that used to come from set_order_status / advance_assignment now comes from
-- the trigger inside their UPDATE: the same registered error with the same arguments (the registry
-- message filled in), nothing changed; staying in the same status is still refused by the
-- functions (the trigger lets it pass). And the helpers 0017 made cheap stay cheap: no SET clause
-- on the inlined ones (the planner inlines them: EXPLAIN shows their body), PL/pgSQL for the others.
begin;
select plan(17);

set local request.jwt.claims = '{"role": "service", "sub": "svc-1"}';

insert into core.customers (id, name, email) overriding system value values (1701, 'Lea', 'lea@example.com');
insert into core.sellers (id, name, fee_bps) overriding system value values (2701, 'Lean shop', 1000);
insert into core.delivery_agents (id, name, serviceable_zip_codes) overriding system value values
    (3701, 'Max', array['17001']);

-- One order taken to SHIPPED (its assignment PICKED_UP); its ids in a temp table.
create temp table lean as select o.id as order_id from core.create_order(1701, 2701, '17001', 5000, 'EUR') o;
alter table lean add column payment_id bigint;
update lean set payment_id = (select p.id from core.payments p where p.order_id = lean.order_id);
select core.capture_payment((select payment_id from lean), 'PSP-LEAN-1');
select core.confirm_order((select order_id from lean));
alter table lean add column assignment_id bigint;
update lean set assignment_id = (select a.id from core.offer_assignment(lean.order_id) a);
select core.accept_assignment((select assignment_id from lean), 3701);
select core.advance_assignment((select assignment_id from lean), 'PICKED_UP', 3701);

-- The JSON message ({code, message, details, hint}) of the error `p_sql` raises (null when none).
create function pg_temp.error_of(p_sql text) returns jsonb
language plpgsql
as $$
begin
    execute p_sql;
    return null;
exception when others then
    return sqlerrm::jsonb;
end
$$;

-- The registry's message for `p_code` with its %s filled from p_args.
create function pg_temp.registry_message(p_code text, variadic p_args text[]) returns text
language sql stable
as $$
    select format(e.message, variadic p_args) from ops.error_codes e where e.code = p_code
$$;

-- Status, version and history size of the order and of the assignment.
create function pg_temp.state() returns text
language sql stable
as $$
    select format('%s v%s h%s / %s h%s', o.status, o.version,
                  (select count(*) from core.order_status_history h where h.order_id = o.id),
                  a.status, (select count(*) from core.assignment_status_history h where h.assignment_id = a.id))
      from lean l join core.orders o on o.id = l.order_id join core.shipping_assignments a on a.id = l.assignment_id
$$;
select is(pg_temp.state(), 'SHIPPED v3 h3 / PICKED_UP h3', 'fixture: order SHIPPED (3 steps), assignment PICKED_UP (3 steps)');

-- ---- refusals by the status trigger: the code and arguments the functions used to give ---------
create temp table refusals as
select 'cancel SHIPPED' as what,
       pg_temp.error_of(format('select core.cancel_order(%s)', l.order_id)) as err,
       pg_temp.registry_message('ORDER_INVALID_TRANSITION', l.order_id::text, 'SHIPPED', 'CANCELLED') as expected
  from lean l
union all
select 'advance PICKED_UP -> DELIVERED',
       pg_temp.error_of(format('select core.advance_assignment(%s, %L, 3701)', l.assignment_id, 'DELIVERED')),
       pg_temp.registry_message('ASSIGNMENT_INVALID_TRANSITION', l.assignment_id::text, 'PICKED_UP', 'DELIVERED')
  from lean l
union all
-- ---- staying put: refused by the functions themselves (the trigger lets an unchanged status pass)
select 'set_order_status SHIPPED -> SHIPPED',
       pg_temp.error_of(format('select core.set_order_status(%s, %L)', l.order_id, 'SHIPPED')),
       pg_temp.registry_message('ORDER_INVALID_TRANSITION', l.order_id::text, 'SHIPPED', 'SHIPPED')
  from lean l
union all
select 'advance PICKED_UP -> PICKED_UP',
       pg_temp.error_of(format('select core.advance_assignment(%s, %L, 3701)', l.assignment_id, 'PICKED_UP')),
       pg_temp.registry_message('ASSIGNMENT_INVALID_TRANSITION', l.assignment_id::text, 'PICKED_UP', 'PICKED_UP')
  from lean l;

select is((select err ->> 'code' from refusals where what = 'cancel SHIPPED'), 'ORDER_INVALID_TRANSITION',
    'cancel_order of a SHIPPED order: ORDER_INVALID_TRANSITION (from the status trigger)');
select is((select err ->> 'message' from refusals where what = 'cancel SHIPPED'),
          (select expected from refusals where what = 'cancel SHIPPED'),
    '... naming the order, SHIPPED and CANCELLED');
select is((select err ->> 'code' from refusals where what = 'advance PICKED_UP -> DELIVERED'), 'ASSIGNMENT_INVALID_TRANSITION',
    'advance_assignment PICKED_UP -> DELIVERED: ASSIGNMENT_INVALID_TRANSITION (from the status trigger)');
select is((select err ->> 'message' from refusals where what = 'advance PICKED_UP -> DELIVERED'),
          (select expected from refusals where what = 'advance PICKED_UP -> DELIVERED'),
    '... naming the assignment, PICKED_UP and DELIVERED');
select is((select err ->> 'code' from refusals where what = 'set_order_status SHIPPED -> SHIPPED'), 'ORDER_INVALID_TRANSITION',
    'set_order_status to the status the order has: ORDER_INVALID_TRANSITION');
select is((select err ->> 'message' from refusals where what = 'set_order_status SHIPPED -> SHIPPED'),
          (select expected from refusals where what = 'set_order_status SHIPPED -> SHIPPED'),
    '... naming the order, SHIPPED and SHIPPED');
select is((select err ->> 'code' from refusals where what = 'advance PICKED_UP -> PICKED_UP'), 'ASSIGNMENT_INVALID_TRANSITION',
    'advance_assignment to the status the assignment has: ASSIGNMENT_INVALID_TRANSITION');
select is((select err ->> 'message' from refusals where what = 'advance PICKED_UP -> PICKED_UP'),
          (select expected from refusals where what = 'advance PICKED_UP -> PICKED_UP'),
    '... naming the assignment, PICKED_UP and PICKED_UP');
select is(pg_temp.state(), 'SHIPPED v3 h3 / PICKED_UP h3', 'the four refusals changed no status, version or history');

-- ---- the cheap helpers stay cheap ----------------------------------------------------------------
select is((select l.lanname from pg_proc p join pg_language l on l.oid = p.prolang
            where p.oid = 'core.transition_allowed(text, text, text)'::regprocedure), 'plpgsql',
    'core.transition_allowed is PL/pgSQL (a SQL body with SET was planned again at every call)');
select is((select l.lanname from pg_proc p join pg_language l on l.oid = p.prolang
            where p.oid = 'core.amount_max()'::regprocedure), 'plpgsql',
    'core.amount_max is PL/pgSQL (the CHECKs evaluate it once per statement)');
select is((select p.proconfig from pg_proc p where p.oid = 'core.fee_for(bigint, integer)'::regprocedure), null,
    'core.fee_for has no SET clause');
select is((select p.proconfig from pg_proc p where p.oid = 'ops.request_id()'::regprocedure), null,
    'ops.request_id has no SET clause');

-- The planner inlines them: EXPLAIN VERBOSE shows their bodies, not the calls.
create function pg_temp.plan_of(p_sql text) returns text
language plpgsql
as $$
declare
    v_line text;
    v_plan text := '';
begin
    for v_line in execute 'explain (verbose, costs off) ' || p_sql loop
        v_plan := v_plan || v_line || e'\n';
    end loop;
    return v_plan;
end
$$;
select ok(pg_temp.plan_of('select core.fee_for(o.amount, 250) from core.orders o') !~ 'fee_for'
          and pg_temp.plan_of('select core.fee_for(o.amount, 250) from core.orders o') ~ 'div\(',
    'core.fee_for inlines into its caller');
select ok(pg_temp.plan_of('select ops.request_id()') !~ 'request_id\(\)'
          and pg_temp.plan_of('select ops.request_id()') ~ 'current_setting',
    'ops.request_id inlines into its caller');
select is(core.fee_for(12345, 250), 309::bigint, 'core.fee_for still rounds half up (12345 x 2.5 % = 308.625 -> 309)');

select * from finish();
rollback;
