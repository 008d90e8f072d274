-- Metrics (issue 11): structure, privileges, row-level security, the trigger's counting and the
-- registered errors of the endpoints, codes not messages.
begin;
select plan(52);

-- Structure
select has_table('metrics', 'agent_daily', 'per-agent-per-day rollup');
select has_table('metrics', 'zip_daily', 'per-zip-per-day rollup');
select has_table('metrics', 'zip_agents', 'the agents serving each zip code (0025)');
select has_table('metrics', 'answer_cache', 'the cached answers of the leaderboard and the SLA summary (0026)');
select has_table('metrics', 'answer_cache_items', 'the cached answers'' items (0026)');
select has_materialized_view('metrics', 'leaderboard', 'leaderboard view');
select has_materialized_view('metrics', 'sla_summary', 'SLA summary view');
select has_materialized_view('metrics', 'geographic_coverage', 'coverage view');
select has_materialized_view('metrics', 'agent_running_totals', 'running totals view (a leaderboard over any period)');
select has_materialized_view('metrics', 'agent_recent', 'per-agent closed days view (agent_metrics, agent_activity)');
select is_empty(
    $$select c.relname from pg_class c
       where c.relnamespace = 'metrics'::regnamespace and c.relkind = 'm'
         and not exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisunique and i.indpred is null)$$,
    'every materialized view has a unique index (REFRESH CONCURRENTLY needs one)');
select results_eq(
    $$select t.tgname::text collate "default" from pg_trigger t
       where t.tgrelid = 'core.shipping_assignments'::regclass and not t.tgisinternal order by t.tgname$$,
    array['_010_check_transition', '_100_history', '_200_emit_webhook', '_500_metrics_rollup_offer', '_500_metrics_rollup_transition'],
    'the rollup triggers fire after the transition check, the history and the webhook emission (_500_)');
select results_eq($$select name || ':' || ttl_minutes from metrics.views order by name$$,
    array['agent_recent:30', 'agent_running_totals:30', 'geographic_coverage:15', 'leaderboard:30', 'sla_summary:10'],
    'the plan''s TTLs (the running totals and the agents'' closed days: the leaderboard''s)');
select is((select count(*)::int from ops.error_codes where code like 'METRICS\_%' and http_status in (400, 403)), 9,
    'nine registered metrics errors, all 400 or 403');

-- Privileges: who may call what
select ok(has_function_privilege('agent', 'api.agent_metrics(text, text, text)', 'EXECUTE'), 'agent may call agent_metrics');
select ok(has_function_privilege('agent', 'api.agent_activity(text, text, text, text)', 'EXECUTE'), 'agent may call agent_activity');
select ok(not has_function_privilege('agent', 'api.agent_leaderboard(text, text, text, text, text, text, text, text)', 'EXECUTE'), 'agent may not call the leaderboard');
select ok(not has_function_privilege('agent', 'api.sla_summary(text, text, text, text)', 'EXECUTE'), 'agent may not call sla_summary');
select ok(not has_function_privilege('agent', 'api.refresh_metrics(text)', 'EXECUTE'), 'agent may not refresh');
select is_empty(
    $$select p.oid::regprocedure from pg_proc p, unnest(array['anon', 'service']) r
       where p.pronamespace = 'api'::regnamespace and p.proname in
             ('agent_metrics', 'agent_leaderboard', 'geographic_coverage', 'sla_summary', 'agent_activity',
              'refresh_metrics', 'health_metrics')
         and has_function_privilege(r, p.oid, 'EXECUTE')$$,
    'anon and service may call no metrics endpoint');
select ok(not has_table_privilege('agent', 'metrics.leaderboard', 'SELECT'), 'agents cannot read the leaderboard view');
select ok(not has_table_privilege('service', 'metrics.agent_daily', 'SELECT'), 'service cannot read the rollups');
select ok(not has_table_privilege('agent', 'metrics.zip_agents', 'SELECT') and not has_table_privilege('service', 'metrics.zip_agents', 'SELECT'),
    'agents and service cannot read the zip codes'' agents');
select ok(not has_table_privilege('agent', 'metrics.answer_cache_items', 'SELECT') and not has_table_privilege('service', 'metrics.answer_cache', 'SELECT'),
    'agents and service cannot read the answer cache');
select is_empty(
    $$select r from unnest(array['admin', 'platform_admin', 'service', 'agent', 'anon', 'dispatcher', 'authenticator']) r
       where has_function_privilege(r, 'metrics.fill_answer_cache(text, bigint)', 'EXECUTE')$$,
    'only the cache worker fills the answer cache');
select ok(has_function_privilege('metrics_cache', 'metrics.fill_answer_cache(text, bigint)', 'EXECUTE')
          and (select prosecdef from pg_proc where oid = 'metrics.fill_answer_cache(text, bigint)'::regprocedure),
    'the cache worker fills through a SECURITY DEFINER function');
select ok((select rolcanlogin and not rolsuper and not rolbypassrls from pg_roles where rolname = 'metrics_cache')
          and not has_schema_privilege('metrics_cache', 'core', 'USAGE')
          and not has_table_privilege('metrics_cache', 'metrics.answer_cache', 'SELECT'),
    'metrics_cache logs in and reads nothing itself');
select is((select provolatile::text from pg_proc where oid = 'api.agent_leaderboard(text, text, text, text, text, text, text, text)'::regprocedure),
    's', 'the read endpoints are STABLE (GET-able, read-only transactions)');

-- The trigger counts each transition once, on the event's UTC day
insert into core.customers (id, name, email) overriding system value values (9601, 'C', 'c9601@example.test');
insert into core.sellers (id, name) overriding system value values (9601, 'S');
insert into core.delivery_agents (id, name, serviceable_zip_codes) overriding system value
values (9601, 'Metric', '{61111}'), (9602, 'Other', '{61111}');
select core.create_order(9601, 9601, '61111', 5000, 'EUR');
select core.capture_payment((select max(id) from core.payments), 'pi_tap_m1');
select core.confirm_order((select max(id) from core.orders));
select set_config('tap.a', (select id from core.offer_assignment((select max(id) from core.orders), '2026-01-02 12:00Z', null, '2026-01-01 23:00Z'))::text, true);
select is((select offered from metrics.zip_daily where zip_code = '61111' and day = '2026-01-01'), 1, 'an offer counts for its zip code and day');
select core.accept_assignment(current_setting('tap.a')::bigint, 9601, null, '2026-01-01 23:30Z');
select core.advance_assignment(current_setting('tap.a')::bigint, 'PICKED_UP', 9601, null, null, '2026-01-01 23:40Z');
select core.advance_assignment(current_setting('tap.a')::bigint, 'IN_TRANSIT', 9601, null, null, '2026-01-01 23:50Z');
select core.advance_assignment(current_setting('tap.a')::bigint, 'DELIVERED', 9601, null, null, '2026-01-02 12:00Z');
select results_eq(
    $$select day, accepted, delivered, on_time, delivery_us, delivery_minutes, delivery_counts, acceptance_minutes, acceptance_counts
        from metrics.agent_daily where agent_id = 9601 order by day$$,
    $$values ('2026-01-01'::date, 1, 0, 0, 0::bigint, '{}'::integer[], '{}'::integer[], '{30}'::integer[], '{1}'::integer[]),
             ('2026-01-02'::date, 0, 1, 1, 45000000000::bigint, '{750}'::integer[], '{1}'::integer[], '{}'::integer[], '{}'::integer[])$$,
    'accepted on the 1st, delivered on the 2nd exactly at the SLA: on time, 750 minutes');

-- Row-level security and the explicit 403
select tap.become('agent', '9601');
select is((select count(*)::int from metrics.agent_daily), 2, 'an agent reads its own rollup rows');
select is((select count(*)::int from metrics.agent_daily where agent_id <> 9601), 0, 'and no one else''s');
select is((api.agent_metrics(null, '2026-01-01', '2026-01-03') -> 'assignments' ->> 'delivered')::int, 1, 'agent_metrics about itself');
select throws_code($$select api.agent_metrics('9602')$$, 'METRICS_NOT_YOUR_AGENT', 'another agent''s metrics: 403');
select throws_code($$select api.agent_activity('9602')$$, 'METRICS_NOT_YOUR_AGENT', 'another agent''s activity: 403');
select throws_code($$select api.agent_leaderboard()$$, 'INSUFFICIENT_PRIVILEGE', 'no leaderboard for agents');
select tap.become('admin');
select throws_code($$select api.agent_leaderboard(sort_by => 'speed')$$, 'METRICS_INVALID_SORT_BY', 'bad sort_by');
select throws_code($$select api.agent_leaderboard(sort_order => 'sideways')$$, 'METRICS_INVALID_SORT_ORDER', 'bad sort_order');
select throws_code($$select api.sla_summary("from" => '2026-13-01')$$, 'METRICS_INVALID_DATE', 'bad date');
select throws_code($$select api.geographic_coverage(page_size => '500')$$, 'METRICS_INVALID_LIMIT', 'bad page size');
select throws_code($$select api.agent_activity('9601', before => 'x')$$, 'METRICS_INVALID_CURSOR', 'bad cursor');
select throws_code($$select api.agent_metrics('9601', '2026-01-05', '2026-01-01')$$, 'METRICS_INVALID_PERIOD', 'empty period');
select tap.become_owner();
select throws_code($$select metrics.refresh('nope')$$, 'METRICS_INVALID_VIEW', 'refresh names a known view');

-- Histogram percentiles (0016): buckets in any order, a minute repeated; cumulative histograms
select is(metrics.hist_percentiles('{5,1,5,3}', '{1,2,2,1}', array[0.5, 0.9]),
          (select percentile_cont(array[0.5, 0.9]) within group (order by v) from unnest('{1,1,3,5,5,5}'::int[]) v),
          'hist_percentiles merges unsorted buckets with repeated minutes');
select is(metrics.cum_hist_percentiles('{1,3,5,8}', '{1,2,5,7}', '{1,1,2,2}', array[0.5, 0.9, 0.99]),
          (select percentile_cont(array[0.5, 0.9, 0.99]) within group (order by v) from unnest('{3,5,5,8,8}'::int[]) v),
          'cum_hist_percentiles: the values of the period are up-to minus before');
select is(metrics.cum_hist_percentiles('{1,3,5,8}', '{1,2,5,7}', null, array[0.5]),
          (select percentile_cont(array[0.5]) within group (order by v) from unnest('{1,3,5,5,5,8,8}'::int[]) v),
          'cum_hist_percentiles with nothing before the period');
select is(metrics.cum_hist_percentiles('{1,3,5,8}', '{1,2,5,7}', '{1,2,5,7}', array[0.5]), null,
          'cum_hist_percentiles of a period without deliveries is null');

-- The zip codes' agents follow the agents (0025): a change, a delete, a truncate
insert into core.delivery_agents (id, name, serviceable_zip_codes) overriding system value
values (9701, 'Zip A', '{62001,62002,62001}'), (9702, 'Zip B', '{62002}');
select results_eq($$select zip_code || ':' || agent_id from metrics.zip_agents where agent_id in (9701, 9702) order by 1$$,
    array['62001:9701', '62002:9701', '62002:9702'], 'a new agent''s zip codes are paired with it, a repeated one once');
update core.delivery_agents set serviceable_zip_codes = '{62003,62002}' where id = 9701;
select results_eq($$select zip_code || ':' || agent_id from metrics.zip_agents where agent_id = 9701 order by 1$$,
    array['62002:9701', '62003:9701'], 'a change of zip codes moves the agent''s pairs');
delete from core.delivery_agents where id = 9702;
select is_empty($$select 1 from metrics.zip_agents where agent_id = 9702$$, 'a deleted agent leaves no pair');
select results_eq($$select (api.agent_leaderboard(zip_code => '62003') ->> 'zipCode')$$, array['62003'],
    'the leaderboard''s zip filter reads them (as the owner)');
set local client_min_messages = warning;  -- the cascade's notices
truncate core.delivery_agents cascade;
select is_empty($$select 1 from metrics.zip_agents$$, 'truncating the agents empties the pairs');

select * from finish();
rollback;
