-- Security (issue 7, SQL side): no object of Waybill is owned by a superuser and SECURITY DEFINER code
-- never runs as one; post-apply's ops.assign_owner hands over whatever a migration creates; request
-- roles carry their statement_timeout; money is bounded and ISO 4217; an agent learns nothing of an
-- assignment it cannot read.
begin;
select plan(37);

-- ---------------------------------------------------------------------------------------------
-- The owner role
-- ---------------------------------------------------------------------------------------------
select results_eq(
    $$select rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls
        from pg_roles where rolname = 'waybill_owner'$$,
    $$values (false, false, false, false, false, false)$$,
    'waybill_owner cannot log in, is no superuser, creates no role or database, does not bypass RLS');
select ok(pg_has_role('waybill_owner', 'pg_read_all_stats', 'USAGE'),
    'waybill_owner has the rights of pg_read_all_stats (slow statements, health_pool of every role)');

-- Every object in a schema of ours, by catalog (indexes, row and array types included), and its owner.
create temp view waybill_objects as
select 'schema ' || n.nspname as object, n.nspowner as owner
  from pg_namespace n
 where n.nspname not in ('public', 'tap', 'cron', 'information_schema') and n.nspname !~ '^pg_'
union all
select c.relkind::text || ' ' || c.oid::regclass, c.relowner from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where n.nspname not in ('public', 'tap', 'cron', 'information_schema') and n.nspname !~ '^pg_'
union all
select 'function ' || p.oid::regprocedure, p.proowner from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname not in ('public', 'tap', 'cron', 'information_schema') and n.nspname !~ '^pg_'
union all
select 'type ' || t.oid::regtype, t.typowner from pg_type t join pg_namespace n on n.oid = t.typnamespace
 where n.nspname not in ('public', 'tap', 'cron', 'information_schema') and n.nspname !~ '^pg_';

select ok((select count(*) > 100 from waybill_objects), 'the ownership checks below see Waybill''s objects');
select is_empty(
    $$select object from waybill_objects o join pg_roles r on r.oid = o.owner where r.rolsuper$$,
    'no schema, relation, function or type of Waybill is owned by a superuser');
select is_empty(
    $$select object from waybill_objects where owner <> 'waybill_owner'::regrole$$,
    'every one of them is owned by waybill_owner');
select isnt_empty(
    $$select 1 from pg_proc p where p.prosecdef and p.pronamespace = 'api'::regnamespace$$,
    'there are SECURITY DEFINER functions in api (so the next check is not vacuous)');
select is_empty(
    $$select p.oid::regprocedure from pg_proc p join pg_roles r on r.oid = p.proowner
       where p.prosecdef and r.rolsuper
         and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass
                          and d.objid = p.oid and d.deptype = 'e')$$,
    'no SECURITY DEFINER function outside extensions runs as a superuser');

-- What the owner needs, working as the owner: other roles' statement text, not "<insufficient privilege>".
select is((select count(*)::int from ops.statement_stats() where query = '<insufficient privilege>'), 0,
    'ops.statement_stats(), run as waybill_owner, reads every role''s statement text');

-- post-apply's hand-over: objects a later migration creates as the superuser become the owner's.
create schema if not exists webhooks;
create table webhooks.tap_probe (id bigint generated always as identity primary key, kind text);
create view core.tap_probe_view as select 1 as one;
create materialized view core.tap_probe_mv as select 1 as one;
create sequence core.tap_probe_seq;
create type core.tap_probe_enum as enum ('A', 'B');
create domain core.tap_probe_domain as text check (value <> '');
create function core.tap_probe_whoami() returns text language sql stable security definer set search_path = ''
    as 'select current_user::text';
create statistics core.tap_probe_stats on id, kind from webhooks.tap_probe;
select ok(ops.assign_owner() >= 8, 'ops.assign_owner() hands over a new schema, table, view, matview, sequence, type, domain, function, statistics');
select is(ops.assign_owner(), 0, 'a second run changes nothing (idempotent: no lock taken)');
select is_empty(
    $$select object from waybill_objects where owner <> 'waybill_owner'::regrole$$,
    'afterwards every object is the owner''s again, identity sequence and indexes included');
select is((select s.stxowner from pg_statistic_ext s where s.stxname = 'tap_probe_stats'), 'waybill_owner'::regrole::oid,
    'statistics objects are handed over too');
select is(core.tap_probe_whoami(), 'waybill_owner', 'a SECURITY DEFINER function created tomorrow runs as waybill_owner');

-- ---------------------------------------------------------------------------------------------
-- Per-role statement_timeout (pg_db_role_setting, applied per request by PostgREST / gateway/)
-- ---------------------------------------------------------------------------------------------
select set_eq(
    $$select r.rolname::text, c
        from pg_db_role_setting s join pg_roles r on r.oid = s.setrole, unnest(s.setconfig) c
       where s.setdatabase = 0 and c like 'statement_timeout=%'$$,
    $$values ('anon', 'statement_timeout=3s'), ('agent', 'statement_timeout=8s'),
             ('service', 'statement_timeout=10s'), ('admin', 'statement_timeout=30s'),
             ('platform_admin', 'statement_timeout=30s'), ('metrics_cache', 'statement_timeout=30s')$$,
    'anon 3 s, agent 8 s, service 10 s, admin and platform_admin 30 s; the cache worker''s fills 30 s');
select ok(
    (select substring(c from '=(.*)$')::interval from pg_db_role_setting s, unnest(s.setconfig) c
      where s.setrole = 'agent'::regrole and c like 'statement_timeout=%')
    > (select substring(c from '=(.*)$')::interval from pg_proc p, unnest(p.proconfig) c
        where p.oid = 'core.lock_assignment(bigint)'::regprocedure and c like 'lock_timeout=%'),
    'the agent''s statement_timeout outlasts the accept lock_timeout (a busy offer still gives ASSIGNMENT_LOCK_TIMEOUT)');

-- ---------------------------------------------------------------------------------------------
-- Money: the maximum amount, ISO 4217 currencies
-- ---------------------------------------------------------------------------------------------
insert into core.customers (id, name, email) overriding system value values (9501, 'C', 'c9501@example.test');
insert into core.sellers (id, name, fee_bps) overriding system value values (9501, 'S', 10000);
insert into core.delivery_agents (id, name, serviceable_zip_codes) overriding system value
values (9501, 'North', '{11111}'), (9502, 'North too', '{11111}'), (9503, 'South', '{22222}'),
       (9504, 'Idle', '{11111}');
update core.delivery_agents set status = 'INACTIVE' where id = 9504;

select is(core.amount_max(), 1000000000000::bigint, 'the maximum amount is 10^12 minor units (README, Money)');
select set_config('tap.max', core.amount_max()::text, true);
select tap.become('service');
select is((select amount from api.create_order(9501, 9501, '11111', current_setting('tap.max')::bigint, 'EUR')),
    current_setting('tap.max')::bigint, 'an order of exactly core.amount_max() is accepted');
select throws_code($$select api.create_order(9501, 9501, '11111', current_setting('tap.max')::bigint + 1, 'EUR')$$,
    'AMOUNT_TOO_LARGE', 'one minor unit more: AMOUNT_TOO_LARGE');
select throws_code($$select api.create_order(9501, 9501, '11111', 9223372036854775807, 'EUR')$$,
    'AMOUNT_TOO_LARGE', '2^63-1: AMOUNT_TOO_LARGE, not an order that can never be captured');
select throws_code($$select api.create_order(9501, 9501, '11111', 100, 'XYZ')$$,
    'INVALID_CURRENCY', 'three capitals that are no ISO 4217 code: INVALID_CURRENCY');
select throws_code($$select api.create_order(9501, 9501, '11111', 100, 'HRK')$$,
    'INVALID_CURRENCY', 'a withdrawn ISO 4217 code (HRK): INVALID_CURRENCY');
select is((select currency from api.create_order(9501, 9501, '11111', 100, 'JPY')), 'JPY',
    'an active code other than EUR/USD/GBP is accepted');
select is((select minor_unit from api.currencies where code = 'KWD'), 3::smallint,
    'api.currencies gives each code''s minor unit (KWD: 3)');
select tap.become_owner();
select is(core.fee_for(core.amount_max(), 10000), core.amount_max(), 'a 100 % fee of the maximum is the maximum');
select is(core.refund_fee_share(core.amount_max(), core.amount_max(), core.amount_max() - 1, 1), 1::bigint,
    'the last minor unit of a maximal refund reverses exactly one unit of a 100 % fee (no overflow)');
select is(core.refund_fee_share(1000000000, 10000000000, 0, 10000000000), 1000000000::bigint,
    'the issue''s case: a full refund of 10^10 with a 10^9 fee reverses the whole fee');

-- ---------------------------------------------------------------------------------------------
-- Agents: an assignment they cannot read answers exactly as an unknown one
-- ---------------------------------------------------------------------------------------------
-- Offers in 11111 (open, then accepted by 9501) and 22222 (open).
select core.capture_payment(p.id, 'pi_tap_sec_' || p.id) from core.payments p
  join core.orders o on o.id = p.order_id where o.customer_id = 9501;
select core.confirm_order(o.id) from core.orders o where o.customer_id = 9501 and o.currency = 'EUR';
select set_config('tap.taken', (select id from core.offer_assignment(
    (select min(id) from core.orders where customer_id = 9501)))::text, true);
insert into core.orders (id, customer_id, seller_id, ship_to_zip, amount, currency) overriding system value
values (9511, 9501, 9501, '11111', 500, 'EUR'), (9512, 9501, 9501, '22222', 500, 'EUR');
insert into core.payments (order_id, amount, currency) values (9511, 500, 'EUR'), (9512, 500, 'EUR');
select core.capture_payment(p.id, 'pi_tap_sec_' || p.id) from core.payments p where p.order_id in (9511, 9512);
select core.confirm_order(9511), core.confirm_order(9512);
select set_config('tap.open_north', (select id from core.offer_assignment(9511))::text, true);
select set_config('tap.open_south', (select id from core.offer_assignment(9512))::text, true);
select core.accept_assignment(current_setting('tap.taken')::bigint, 9501);

-- The function the api uses and the RLS policy agree for every agent and every assignment.
create temp table sees (agent_id bigint, assignment_id bigint, by_rls boolean, by_function boolean);
do $$
declare
    v_agent bigint;
    v_assignment bigint;
    v_rls boolean;
begin
    foreach v_agent in array array[9501, 9502, 9503, 9504, 999999] loop
        foreach v_assignment in array array[current_setting('tap.taken'), current_setting('tap.open_north'),
                                            current_setting('tap.open_south')]::bigint[] loop
            perform tap.become('agent', v_agent::text);
            v_rls := exists (select 1 from api.shipping_assignments v where v.id = v_assignment);
            reset role;  -- the claims stay: auth.agent_sees_assignment reads them as the api functions do
            insert into sees values (v_agent, v_assignment, v_rls, auth.agent_sees_assignment(v_assignment));
        end loop;
    end loop;
    perform tap.become_owner();
end
$$;
select is((select count(*)::int from sees where by_rls), 4,
    'the fixture mixes visible and invisible pairs (9501: own + open north; 9502: open north; 9503: open south)');
select is_empty($$select * from sees where by_rls is distinct from by_function$$,
    'auth.agent_sees_assignment agrees with the agent_reads_own_and_offers policy on every pair');

select tap.become('agent', '9502');
select throws_code(format('select api.accept_assignment(%s)', current_setting('tap.taken')),
    'ASSIGNMENT_NOT_FOUND', 'accepting an offer another agent took: 404 as if absent (was ASSIGNMENT_ALREADY_TAKEN + its status)');
select throws_code(format('select api.advance_assignment(%s, ''PICKED_UP'')', current_setting('tap.taken')),
    'ASSIGNMENT_NOT_FOUND', 'moving another agent''s assignment: 404 as if absent (was ASSIGNMENT_NOT_YOURS)');
select throws_code(format('select api.accept_assignment(%s)', current_setting('tap.open_south')),
    'ASSIGNMENT_NOT_FOUND', 'accepting an offer outside its zip codes: 404 (was AGENT_NOT_ELIGIBLE naming the zip code)');
select throws_code(format('select api.advance_assignment(%s, ''DELIVERED'')', current_setting('tap.open_south')),
    'ASSIGNMENT_NOT_FOUND', 'moving an offer outside its zip codes: 404 (was ASSIGNMENT_NOT_YOURS)');
select throws_code('select api.accept_assignment(987654321)', 'ASSIGNMENT_NOT_FOUND',
    'a truly unknown id: the same 404');
select throws_code(format('select api.advance_assignment(%s, ''PICKED_UP'')', current_setting('tap.open_north')),
    'ASSIGNMENT_NOT_YOURS', 'an open offer it can read but has not accepted: still ASSIGNMENT_NOT_YOURS');
select tap.become('agent', '9504');
select throws_code(format('select api.accept_assignment(%s)', current_setting('tap.open_north')),
    'AGENT_NOT_ELIGIBLE', 'an INACTIVE agent is told about itself, not about the assignment');
select tap.become('agent', '999999');
select throws_code(format('select api.accept_assignment(%s)', current_setting('tap.open_north')),
    'AGENT_NOT_FOUND', 'a token naming no agent: AGENT_NOT_FOUND');
select tap.become('agent', '9501');
select is((select status from api.advance_assignment(current_setting('tap.taken')::bigint, 'PICKED_UP')), 'PICKED_UP',
    'the agent of an assignment still moves it');
select tap.become_owner();

select * from finish();
rollback;
