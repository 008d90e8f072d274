-- =================================================================================================
-- The key queries of the lifecycle and of the Track B metrics endpoints, written as the SQL functions
-- run them ($1, $2 … are the functions' parameters). explain/suite.py prepares each one, runs
-- EXPLAIN (ANALYZE, FORMAT JSON) with a custom plan and with a generic plan (what a non-inlined SQL
-- function and a PL/pgSQL function after five calls get), and checks the plan.
--
-- Headers of each query:
--   -- name: <id>            one per query, first
--   -- serves: <text>        the function / endpoint that runs it
--   -- expect: <index>       the index the plan must use (dropped, in a rolled-back transaction, to
--                            measure the query without it); more than one expect line means "all"
--   -- expect-node: <type>   the plan node that must read it (e.g. Index Only Scan), when it matters
--   -- params: <select>      one row whose columns are $1, $2 … (picked from the seeded data)
--   -- as-agent: <select>    run as PostgREST runs an agent's request: role agent, JWT sub = this id,
--                            so the row-level security policies are part of the plan
--   -- plan: generic         its function runs it with plan_cache_mode = force_generic_plan (0027):
--                            only the generic plan is checked (the custom one is shown)
-- =================================================================================================

-- name: wallet_balance
-- serves: a seller wallet's balance (core.wallet_balances, GET /wallet_balances?wallet_id=eq.N: the
-- sum of its stored balance slots, whatever the size of the ledger)
-- expect: wallet_balance_slots_pkey
-- params: select w.wallet_id from explain_params w where w.k = 'busiest_seller_wallet'
select b.wallet_id, b.currency, b.balance
  from core.wallet_balances b
 where b.wallet_id = $1;

-- name: latest_ledger_entries
-- serves: the latest ledger entries (admin ledger view, newest first)
-- expect: ledger_entries_created_at_idx
-- params: select 50
select e.id, e.transaction_id, e.wallet_id, e.amount, e.created_at
  from core.ledger_entries e
 order by e.created_at desc
 limit $1;

-- name: agent_assignments
-- serves: agent_metrics: one agent's assignments in one status over a period, newest first
-- expect: shipping_assignments_agent_id_status_created_at_idx
-- params: select p.agent_id, 'DELIVERED', p.t_from, p.t_to from explain_params p where p.k = 'busiest_agent'
select a.id, a.order_id, a.status, a.created_at, a.delivered_at, a.sla_due_at
  from core.shipping_assignments a
 where a.agent_id = $1 and a.status = $2 and a.created_at >= $3 and a.created_at < $4
 order by a.created_at desc
 limit 100;

-- name: agent_status_counts
-- serves: agent_metrics: one agent's assignment counts by status over a period
-- expect: shipping_assignments_agent_id_status_created_at_idx
-- params: select p.agent_id, p.t_from, p.t_to from explain_params p where p.k = 'busiest_agent'
select a.status, count(*) as assignments,
       count(*) filter (where a.delivered_at <= a.sla_due_at) as on_time
  from core.shipping_assignments a
 where a.agent_id = $1 and a.created_at >= $2 and a.created_at < $3
 group by a.status;

-- name: sla_summary
-- serves: sla_summary: delivered assignments of a period, on time vs late
-- expect: shipping_assignments_delivered_at_idx
-- params: select p.t_from, p.t_to from explain_params p where p.k = 'last_week'
select count(*) as delivered,
       count(*) filter (where a.delivered_at <= a.sla_due_at) as on_time,
       count(*) filter (where a.delivered_at > a.sla_due_at) as late,
       avg(a.delivered_at - a.accepted_at) as mean_accept_to_deliver
  from core.shipping_assignments a
 where a.status = 'DELIVERED' and a.delivered_at >= $1 and a.delivered_at < $2;

-- name: leaderboard
-- serves: agent_leaderboard: agents by deliveries over a period (top 20)
-- expect: shipping_assignments_delivered_at_idx
-- params: select p.t_from, p.t_to from explain_params p where p.k = 'last_week'
select a.agent_id, count(*) as delivered,
       count(*) filter (where a.delivered_at <= a.sla_due_at) as on_time
  from core.shipping_assignments a
 where a.status = 'DELIVERED' and a.delivered_at >= $1 and a.delivered_at < $2
 group by a.agent_id
 order by delivered desc, a.agent_id
 limit 20;

-- name: agents_for_zip
-- serves: offer_assignment's eligibility check and geographic coverage: active agents serving a zip
-- expect: delivery_agents_serviceable_zip_codes_idx
-- params: select p.zip from explain_params p where p.k = 'busiest_zip'
select d.id, d.name
  from core.delivery_agents d
 where d.status = 'ACTIVE' and d.serviceable_zip_codes @> array[$1::text];

-- name: open_offers
-- serves: an agent's open offers: OFFERED assignments in its zip codes, oldest first
-- expect: shipping_assignments_offered_zip_code_idx
-- params: select p.agent_id from explain_params p where p.k = 'busiest_agent'
select a.id, a.order_id, a.zip_code, a.sla_due_at, a.created_at
  from core.delivery_agents d
 cross join lateral unnest(d.serviceable_zip_codes) as z (zip_code)
  join core.shipping_assignments a on a.zip_code = z.zip_code and a.status = 'OFFERED'
 where d.id = $1
 order by a.created_at
 limit 50;

-- name: order_history
-- serves: one order's status history, in version order
-- expect: order_status_history_order_id_version_key
-- params: select p.order_id from explain_params p where p.k = 'some_order'
select h.version, h.from_status, h.to_status, h.actor, h.created_at
  from core.order_status_history h
 where h.order_id = $1
 order by h.version;

-- name: order_shipping_steps
-- serves: one order's delivery steps (GET /assignment_status_history?order_id=eq.…)
-- expect: assignment_status_history_order_id_idx
-- params: select p.order_id from explain_params p where p.k = 'some_order'
select h.assignment_id, h.from_status, h.to_status, h.agent_id, h.created_at
  from core.assignment_status_history h
 where h.order_id = $1
 order by h.assignment_id, h.id;

-- name: agent_activity
-- serves: agent_activity: an agent's latest 50 steps
-- expect: assignment_status_history_agent_id_created_at_idx
-- params: select p.agent_id from explain_params p where p.k = 'busiest_agent'
select h.id, h.assignment_id, h.order_id, h.from_status, h.to_status, h.reason, h.created_at
  from core.assignment_status_history h
 where h.agent_id = $1
 order by h.created_at desc
 limit 50;

-- name: refundable_amount
-- serves: initiate_refund: what a captured payment still has to refund (refunds by payment)
-- expect: refunds_payment_id_idx
-- params: select p.payment_id from explain_params p where p.k = 'refunded_payment'
select p.amount - coalesce((select sum(r.amount)
                              from core.refunds r
                             where r.payment_id = p.id and r.status in ('INITIATED', 'COMPLETED')), 0)
       as refundable
  from core.payments p
 where p.id = $1;

-- name: agent_open_offers_api
-- serves: GET /shipping_assignments?status=eq.OFFERED&order=created_at as an agent (RLS: its zip codes)
-- expect: shipping_assignments_offered_zip_code_idx
-- params: select 50
-- as-agent: select p.agent_id from explain_params p where p.k = 'busiest_agent'
select a.id, a.order_id, a.zip_code, a.sla_due_at, a.created_at
  from api.shipping_assignments a
 where a.status = 'OFFERED'
 order by a.created_at
 limit $1;

-- name: agent_activity_api
-- serves: GET /assignment_status_history?order=created_at.desc&limit=50 as an agent (RLS: its own steps)
-- expect: assignment_status_history_agent_id_created_at_idx
-- params: select 50
-- as-agent: select p.agent_id from explain_params p where p.k = 'busiest_agent'
select h.id, h.assignment_id, h.order_id, h.from_status, h.to_status, h.created_at
  from api.assignment_status_history h
 order by h.created_at desc
 limit $1;

-- name: webhook_due_deliveries
-- serves: webhooks.claim_deliveries: due PENDING rows, oldest first (the dispatcher's claim)
-- expect: deliveries_due_idx
-- params: select now(), 100
select d.id, d.subscription_id, d.next_attempt_at
  from webhooks.deliveries d
 where d.status = 'PENDING' and d.next_attempt_at <= $1
 order by d.next_attempt_at
 limit $2;

-- name: webhook_next_due
-- serves: webhooks.next_due_at: when the dispatcher must wake (earliest retry or lease expiry)
-- expect: deliveries_due_idx
-- params: select
select min(d.next_attempt_at)
  from webhooks.deliveries d
 where d.status in ('PENDING', 'SENDING');

-- name: webhook_failed_deliveries_of_subscription
-- serves: GET /webhook_deliveries?subscription_id=eq.X&status=eq.FAILED&order=created_at.desc (and the counts of GET /webhook_subscriptions)
-- expect: deliveries_subscription_id_status_created_at_idx
-- params: select p.agent_id from explain_params p where p.k = 'busiest_webhook_subscription'
select d.id, d.event_id, d.status, d.attempts, d.last_status_code, d.created_at
  from webhooks.deliveries d
 where d.subscription_id = $1 and d.status = 'FAILED'
 order by d.created_at desc
 limit 50;

-- name: webhook_pending_of_subscription
-- serves: webhooks.disable_subscription (its PENDING rows become SKIPPED) and the PENDING count of GET /webhook_subscriptions: index 2 leaves PENDING rows out since 0011, the due index holds them (the backlog only)
-- expect: deliveries_due_idx
-- params: select p.agent_id from explain_params p where p.k = 'busiest_webhook_subscription'
select count(*)
  from webhooks.deliveries d
 where d.subscription_id = $1 and d.status = 'PENDING';

-- name: webhook_events_by_type
-- serves: GET /webhook_events?event_type=eq.T&occurred_at=gte.X&order=occurred_at.desc
-- expect: events_event_type_occurred_at_idx
-- params: select 'order.delivered', p.t_from from explain_params p where p.k = 'busiest_webhook_subscription'
select e.id, e.event_type, e.aggregate_id, e.occurred_at
  from webhooks.events e
 where e.event_type = $1 and e.occurred_at >= $2
 order by e.occurred_at desc
 limit 50;

-- ---- metrics (issue 11): the statements the five endpoints run ------------------------------------

-- name: metrics_agent_days
-- serves: agent_metrics and sla_summary?agent_id: one agent's rollup rows of a period (O(days))
-- expect: agent_daily_pkey
-- params: select p.agent_id, metrics.utc_day(p.t_to) - 30, metrics.utc_day(p.t_to) + 1 from explain_params p where p.k = 'busiest_agent'
select a.day, a.accepted, a.delivered, a.on_time, a.failed, a.cancelled, a.delivery_us, a.delivery_minutes, a.delivery_counts
  from metrics.agent_daily a
 where a.agent_id = $1 and a.day >= $2 and a.day < $3;

-- name: metrics_sla_zip_days
-- serves: sla_summary?zip_code: one zip code's days of a period, precomputed in the view (exact)
-- expect: sla_summary_grain_zip_code_d_from_band_key
-- params: select p.zip, current_date - 30, current_date + 1 from explain_params p where p.k = 'busiest_zip'
select s.d_from, s.delivered, s.on_time, s.minutes_p
  from metrics.sla_summary s
 where s.grain = 'zip_day' and s.zip_code = $1 and s.d_from >= $2 and s.d_from < $3;

-- name: metrics_sla_zip_window
-- serves: sla_summary?zip_code over a standard window: one row of the view
-- expect: sla_summary_grain_zip_code_d_from_band_key
-- params: select p.zip, current_date - 29, current_date + 1 from explain_params p where p.k = 'busiest_zip'
select s.delivered, s.on_time, s.delivery_us, s.minutes_p
  from metrics.sla_summary s
 where s.grain = 'zip_window' and s.zip_code = $1 and s.d_from = $2 and s.d_to = $3;

-- name: metrics_sla_zip_period_bands
-- serves: sla_summary?zip_code over a non-standard period: the zip code's cumulative band counts of
-- the last day before a bound (read twice: before `to` and before `from`; 0023)
-- expect: sla_summary_grain_zip_code_d_from_band_key
-- params: select p.zip, current_date - 6 from explain_params p where p.k = 'busiest_zip'
select s.band_counts
  from metrics.sla_summary s
 where s.grain = 'zip_day' and s.zip_code = $1 and s.d_from < $2
 order by s.d_from desc
 limit 1;

-- name: metrics_sla_zip_period_postings
-- serves: sla_summary?zip_code over a non-standard period: one band's minutes and postings (a probe
-- per band holding a percentile's rank; 0023)
-- expect: sla_summary_grain_zip_code_d_from_band_key
-- params: select p.zip from explain_params p where p.k = 'busiest_zip'
select s.hist_minutes, s.posting_keys, s.posting_counts
  from metrics.sla_summary s
 where s.grain = 'zip_band' and s.zip_code = $1 and s.d_from = '-infinity' and s.band = 1;

-- name: metrics_sla_period_cumulative
-- serves: sla_summary over a non-standard period, all zip codes: the cumulative histogram of the
-- last day before a bound (read twice: before `to` and before `from`; 0016)
-- expect: sla_summary_grain_zip_code_d_from_band_key
-- params: select metrics.utc_day(p.t_to) - 6 from explain_params p where p.k = 'last_week'
select s.hist_minutes, s.hist_counts
  from metrics.sla_summary s
 where s.grain = 'cum' and s.zip_code = '' and s.d_from < $1
 order by s.d_from desc
 limit 1;

-- name: metrics_zip_agents
-- serves: agent_leaderboard?zip_code: the agents serving the zip code, live (0025: one key range of
-- metrics.zip_agents, kept by triggers, instead of the GIN index and a heap page per agent)
-- expect: zip_agents_pkey
-- params: select p.zip from explain_params p where p.k = 'busiest_zip'
select z.agent_id from metrics.zip_agents z where z.zip_code = $1 order by z.agent_id;

-- name: metrics_leaderboard_zip
-- serves: agent_leaderboard?zip_code over a standard window: the view's rows of the zip code's agents
-- (since 0022 with the sort's rank column, ranked among them; a static statement, a generic plan)
-- expect: leaderboard_window_days_agent_id_key
-- params: select array(select z.agent_id from metrics.zip_agents z where z.zip_code = p.zip) from explain_params p where p.k = 'busiest_zip'
select l.agent_id, l.accepted, l.delivered, l.on_time, l.failed, l.cancelled, l.delivery_us
  from metrics.leaderboard l
 where l.window_days = 30 and l.agent_id = any ($1);

-- name: metrics_agents_live_period_zip
-- serves: agent_leaderboard?zip_code over a non-standard period: the zip code's agents' rows, summed
-- expect: agent_daily_pkey
-- params: select array(select z.agent_id from metrics.zip_agents z where z.zip_code = p.zip), current_date - 13, current_date - 6 from explain_params p where p.k = 'busiest_zip'
select z.agent_id, s.delivered, s.on_time, s.failed, s.delivery_us
  from unnest($1::bigint[]) z (agent_id)
 cross join lateral (
       select sum(a.delivered) as delivered, sum(a.on_time) as on_time, sum(a.failed) as failed,
              sum(a.delivery_us) as delivery_us
         from metrics.agent_daily a
        where a.agent_id = z.agent_id and a.day >= $2 and a.day < $3
       having count(*) > 0) s;

-- name: metrics_agents_live_period
-- serves: agent_leaderboard over a non-standard period through today: every agent's rows of the days
-- after metrics.agent_running_totals' (0019), summed
-- expect: agent_daily_day_idx
-- params: select metrics.utc_day(p.t_to) - 7, metrics.utc_day(p.t_to) - 6 from explain_params p where p.k = 'last_week'
select a.agent_id, sum(a.delivered), sum(a.on_time), sum(a.failed), sum(a.delivery_us)
  from metrics.agent_daily a
 where a.day >= $1 and a.day < $2
 group by a.agent_id;

-- name: metrics_running_totals_day
-- serves: agent_leaderboard over a non-standard period, all zip codes: every agent's totals through
-- the last day before a bound (read twice: before `to` and before `from`; 0019)
-- expect: agent_running_totals_day_key
-- params: select metrics.utc_day(p.t_to) - 6 from explain_params p where p.k = 'last_week'
select r.days, r.accepted, r.delivered, r.on_time, r.failed, r.cancelled, r.delivery_us
  from metrics.agent_running_totals r
 where r.day > '-infinity' and r.day < $1
 order by r.day desc
 limit 1;

-- name: metrics_coverage_window
-- serves: the geographic_coverage view's refresh: every zip code's rows of the 30-day window
-- expect: zip_daily_day_idx
-- params: select metrics.utc_day(p.t_to) - 7, metrics.utc_day(p.t_to) - 6 from explain_params p where p.k = 'last_week'
select z.zip_code, sum(z.delivered), sum(z.on_time)
  from metrics.zip_daily z
 where z.day >= $1 and z.day < $2
 group by z.zip_code;

-- name: metrics_coverage_page
-- serves: geographic_coverage?page=n: one page in the answer's order, uncovered zip codes first (0016;
-- the page size a parameter too since 0027: the function runs its generic plan, planned once)
-- expect: geographic_coverage_uncovered_demand_zip_code_idx
-- plan: generic
-- params: select 20, 20
select g.zip_code, g.uncovered, g.active_agents, g.demand, g.delivered, g.on_time, g.open_offers, g.oldest_offer_at
  from metrics.geographic_coverage g
 order by g.uncovered desc, g.demand desc, g.zip_code
 offset $1 limit $2;

-- name: metrics_activity_keyset
-- serves: agent_activity?before=<cursor>: the next page of an agent's history after a cursor (0027:
-- one statement for every page, planned once per session: offset and page size are parameters)
-- expect: assignment_status_history_agent_id_created_at_idx
-- plan: generic
-- params: select p.agent_id, p.t_to - interval '30 days', 2147483647, 0, 20 from explain_params p where p.k = 'busiest_agent'
select h.id, h.assignment_id, h.order_id, h.from_status, h.to_status, h.created_at
  from core.assignment_status_history h
 where h.agent_id = $1 and (h.created_at, h.id) < ($2, $3)
 order by h.created_at desc, h.id desc
 offset $4 limit $5;

-- name: metrics_activity_page
-- serves: agent_activity?page=n: the same statement without a cursor (one past the newest row) at an
-- offset (0027)
-- expect: assignment_status_history_agent_id_created_at_idx
-- plan: generic
-- params: select p.agent_id, 'infinity', 9223372036854775807, 100, 20 from explain_params p where p.k = 'busiest_agent'
select h.id, h.assignment_id, h.order_id, h.from_status, h.to_status, h.created_at
  from core.assignment_status_history h
 where h.agent_id = $1 and (h.created_at, h.id) < ($2, $3)
 order by h.created_at desc, h.id desc
 offset $4 limit $5;

-- name: metrics_agent_open_past_due
-- serves: agent_metrics and sla_summary?agent_id: the agent's open assignments past their SLA
-- expect: shipping_assignments_agent_id_status_created_at_idx
-- params: select p.agent_id, p.t_to from explain_params p where p.k = 'busiest_agent'
select count(*)
  from core.shipping_assignments a
 where a.agent_id = $1 and a.status in ('ACCEPTED', 'PICKED_UP', 'IN_TRANSIT') and a.sla_due_at < $2;

-- name: metrics_answer_cache_entry
-- serves: agent_leaderboard and sla_summary: the request's cached answer, one probe of its key (0026)
-- expect: answer_cache_key_key
-- params: select e.key, now(), e.source_as_of from metrics.answer_cache e order by e.total desc, e.id limit 1
select e.id, e.as_of, e.expires_at, e.total
  from metrics.answer_cache e
 where e.key = $1 and e.expires_at > $2 and e.source_as_of is not distinct from $3;

-- name: metrics_answer_cache_page
-- serves: agent_leaderboard from the answer cache: page n of the ranking, one range of the items'
-- primary key (0026; here page 6 of 20)
-- expect: answer_cache_items_pkey
-- params: select e.id, 100::bigint, 120::bigint from metrics.answer_cache e order by e.total desc, e.id limit 1
select json_agg(i.item order by i.ordinal)
  from metrics.answer_cache_items i
 where i.entry_id = $1 and i.ordinal > $2 and i.ordinal <= $3;
