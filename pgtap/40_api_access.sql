-- The api schema as each role sees it: grants, row-level security, agents acting only as themselves.
begin;
select plan(24);

-- Fixture (as the owner): two agents in different zip codes, one offer in each zip.
insert into core.customers (id, name, email) overriding system value values (9001, 'C', 'c9001@example.test');
insert into core.sellers (id, name) overriding system value values (9001, 'S');
insert into core.delivery_agents (id, name, serviceable_zip_codes) overriding system value
values (9001, 'North', '{11111}'), (9002, 'South', '{22222}'), (9003, 'Idle', '{11111}');
update core.delivery_agents set status = 'INACTIVE' where id = 9003;

select tap.become('service');
select isnt((select id from api.create_order(9001, 9001, '11111', 5000, 'EUR')), null::bigint, 'service creates an order');
select is((select status from api.capture_payment((select max(id) from api.payments), 'pi_tap_1')), 'CAPTURED', 'service captures');
select is((select status from api.confirm_order((select max(id) from api.orders))), 'CONFIRMED', 'service confirms');
select is((select status from api.offer_assignment((select max(id) from api.orders))), 'OFFERED', 'service offers');
select lives_ok($$select api.create_order(9001, 9001, '22222', 700, 'EUR')$$, 'service creates a second order');
select tap.become_owner();
select core.capture_payment((select max(id) from core.payments), 'pi_tap_2');
select core.confirm_order((select max(id) from core.orders));
select core.offer_assignment((select max(id) from core.orders));

-- Agents see their zip codes' offers only; an inactive agent sees none.
select tap.become('agent', '9001');
select results_eq($$select zip_code from api.shipping_assignments$$, array['11111'], 'agent 9001 sees the offer in 11111 only');
select is((select count(*)::int from api.delivery_agents), 1, 'an agent sees only itself among agents');
select throws_code($$select * from api.orders$$, 'INSUFFICIENT_PRIVILEGE', 'agents cannot read orders');
select throws_code($$select api.create_order(9001, 9001, '11111', 5000, 'EUR')$$, 'INSUFFICIENT_PRIVILEGE', 'agents cannot create orders');
select is((select agent_id from api.accept_assignment((select id from api.shipping_assignments))), 9001::bigint, 'agent accepts as itself');
select tap.become('agent', '9003');
select is((select count(*)::int from api.shipping_assignments), 0, 'an inactive agent sees no offers');
select tap.become_owner();
select set_config('tap.taken', (select id from core.shipping_assignments where agent_id = 9001)::text, true);
select tap.become('agent', '9002');
select is((select count(*)::int from api.shipping_assignments where agent_id = 9001), 0, 'agent 9002 cannot see 9001''s assignment');
select throws_code(
    format($$select api.advance_assignment(%s, 'PICKED_UP')$$, current_setting('tap.taken')),
    'ASSIGNMENT_NOT_FOUND', 'agent 9002 cannot move 9001''s assignment, nor learn it exists');
select tap.become('agent', 'not-a-number');
select throws_code($$select api.accept_assignment(1)$$, 'INVALID_ARGUMENT', 'an agent token needs a numeric sub');

-- Anonymous callers: health and the error registry only.
select tap.become('anon');
select is((select api.health_db() ->> 'status'), 'ok', 'anon reads health_db');
select ok((select (api.health_pool() ->> 'max_connections')::int > 0), 'anon reads health_pool');
select ok((select count(*) > 10 from api.error_codes), 'anon reads the error registry');
select throws_code($$select * from api.orders$$, 'INSUFFICIENT_PRIVILEGE', 'anon cannot read orders');
select throws_code($$select * from api.wallet_balances$$, 'INSUFFICIENT_PRIVILEGE', 'anon cannot read balances');

-- Admins read everything they need, but do not drive the lifecycle.
select tap.become('admin');
select is((select count(*)::int from api.shipping_assignments where zip_code in ('11111', '22222')), 2, 'admin sees every assignment');
select ok((select count(*) > 0 from api.wallet_balances), 'admin reads wallet balances');
select lives_ok($$select * from api.slow_statements limit 1$$, 'admin reads slow statements');
select throws_code($$select api.cancel_order(1)$$, 'INSUFFICIENT_PRIVILEGE', 'admin does not cancel orders');
select tap.become('service');
select throws_code($$select * from api.wallet_balances$$, 'INSUFFICIENT_PRIVILEGE', 'service cannot read balances');
select tap.become_owner();

select * from finish();
rollback;
