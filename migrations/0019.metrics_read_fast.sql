-- 0019 metrics read fast (issue 11 §6): a leaderboard over any period reads a new materialized view,
-- metrics.agent_running_totals (each agent's totals through every UTC day: a period is two rows
-- subtracted, not a sum over every agent-day row of it), refreshed by its own pg_cron job; the
-- standard leaderboard stores each ranking's length (an answer's total, counted per request before)
-- and reads its page with static SQL (planned once per session, not per call); the per-request
-- helpers (as_of, seconds_to_refresh, set_cache_control) become PL/pgSQL (a SQL function with a SET
-- clause is planned again on every call) and metrics.sla_day STABLE (so it is inlined).
-- docs/performance.md "Migration 0019" measures each change; docs/metrics.md defines the figures.
-- depends: 0018.outbox_row_checks
-- Same text as sql/300_metrics_rollups.sql (the error message), sql/310_metrics_views.sql,
-- sql/315_metrics_running_totals.sql and sql/830_api_metrics.sql (tests/test_migrations.py proves
-- both build the same schema).
-- squawk: metrics.leaderboard is derived data (a view's query cannot be altered): it is rebuilt from
-- metrics.agent_daily in this same file (~1.5 s at 1M assignments) and its indexes built on the view
-- created just above, which nothing reads yet; so is the new view's unique index. Its arrays are
-- integer[] like the rollup counters they sum (one agent's count of a kind cannot reach 2^31).
-- squawk-ignore-file ban-drop-view, require-concurrent-index-creation, prefer-bigint-over-int

-- A deploy never hangs behind a long transaction; the new view reads every agent-day row.
set local lock_timeout = '5s';
set local statement_timeout = '5min';

-- ---- the leaderboard view: each ranking's length stored (an answer's total) ----
drop materialized view metrics.leaderboard;
create materialized view metrics.leaderboard as
with t as (
    select w.window_days, w.d_from, w.d_to, a.agent_id,
           sum(a.accepted)::integer as accepted, sum(a.delivered)::integer as delivered,
           sum(a.on_time)::integer as on_time, sum(a.failed)::integer as failed,
           sum(a.cancelled)::integer as cancelled, sum(a.delivery_us)::bigint as delivery_us
      from metrics.windows(metrics.utc_day(now())) w
      join metrics.agent_daily a on a.day >= w.d_from and a.day < w.d_to
     group by w.window_days, w.d_from, w.d_to, a.agent_id
), v as (
    -- the values ranked, exactly as api.agent_leaderboard computes them; 5 = its default min_deliveries
    select t.*, t.delivered::numeric / nullif(t.delivered + t.failed, 0) as success,
           t.on_time::numeric / nullif(t.delivered, 0) as punctual, t.delivery_us::numeric / nullif(t.delivered, 0) as speed,
           t.delivered + t.failed >= 5 as rated_success, t.delivered >= 5 as rated_delivered
      from t
)
select v.window_days, v.d_from, v.d_to, v.agent_id, v.accepted, v.delivered, v.on_time, v.failed, v.cancelled,
       v.delivery_us,
       rank() over (partition by v.window_days order by v.delivered desc)::integer as rank_deliveries_desc,
       rank() over (partition by v.window_days order by v.delivered)::integer as rank_deliveries_asc,
       case when v.rated_success then rank() over (partition by v.window_days, v.rated_success order by v.success desc)::integer end
           as rank_success_rate_desc,
       case when v.rated_success then rank() over (partition by v.window_days, v.rated_success order by v.success)::integer end
           as rank_success_rate_asc,
       case when v.rated_delivered then rank() over (partition by v.window_days, v.rated_delivered order by v.punctual desc)::integer end
           as rank_on_time_rate_desc,
       case when v.rated_delivered then rank() over (partition by v.window_days, v.rated_delivered order by v.punctual)::integer end
           as rank_on_time_rate_asc,
       case when v.rated_delivered then rank() over (partition by v.window_days, v.rated_delivered order by v.speed desc)::integer end
           as rank_avg_delivery_minutes_desc,
       case when v.rated_delivered then rank() over (partition by v.window_days, v.rated_delivered order by v.speed)::integer end
           as rank_avg_delivery_minutes_asc,
       -- each ranking's length (an answer's total): read from one row instead of counted per request
       count(*) over (partition by v.window_days)::integer as window_agents,
       (count(*) filter (where v.rated_success) over (partition by v.window_days))::integer as window_rated_success,
       (count(*) filter (where v.rated_delivered) over (partition by v.window_days))::integer as window_rated_delivered
  from v
with data;
comment on materialized view metrics.leaderboard is 'Each agent''s totals and ranks (per sort, default threshold) over the standard windows (7/30/90 days); refreshed every 30 minutes.';
comment on column metrics.leaderboard.window_agents is 'Agents in the window: the length of the deliveries rankings.';
comment on column metrics.leaderboard.window_rated_success is 'Agents of the window with at least 5 finished assignments: the length of the success_rate rankings.';
comment on column metrics.leaderboard.window_rated_delivered is 'Agents of the window with at least 5 deliveries: the length of the on_time_rate and avg_delivery_minutes rankings.';
create unique index leaderboard_window_days_agent_id_key on metrics.leaderboard (window_days, agent_id);
comment on index metrics.leaderboard_window_days_agent_id_key is 'One row per (window, agent): what REFRESH CONCURRENTLY matches rows on; serves the zip-filtered and threshold-changed rankings.';
-- One index per ranking: the default request (a standard window, no zip code, default threshold)
-- reads its page straight from the index, no sort of the window's ~10,000 agents (measured at 1M
-- assignments: ranking at request time cost 44 ms at P50 on a loaded machine; docs/performance.md).
create index leaderboard_window_days_rank_deliveries_desc_idx on metrics.leaderboard (window_days, rank_deliveries_desc, agent_id) where rank_deliveries_desc is not null;
comment on index metrics.leaderboard_window_days_rank_deliveries_desc_idx is 'Serves the default leaderboard page sorted by deliveries desc.';
create index leaderboard_window_days_rank_deliveries_asc_idx on metrics.leaderboard (window_days, rank_deliveries_asc, agent_id) where rank_deliveries_asc is not null;
comment on index metrics.leaderboard_window_days_rank_deliveries_asc_idx is 'Serves the default leaderboard page sorted by deliveries asc.';
create index leaderboard_window_days_rank_success_rate_desc_idx on metrics.leaderboard (window_days, rank_success_rate_desc, agent_id) where rank_success_rate_desc is not null;
comment on index metrics.leaderboard_window_days_rank_success_rate_desc_idx is 'Serves the default leaderboard page sorted by success_rate desc.';
create index leaderboard_window_days_rank_success_rate_asc_idx on metrics.leaderboard (window_days, rank_success_rate_asc, agent_id) where rank_success_rate_asc is not null;
comment on index metrics.leaderboard_window_days_rank_success_rate_asc_idx is 'Serves the default leaderboard page sorted by success_rate asc.';
create index leaderboard_window_days_rank_on_time_rate_desc_idx on metrics.leaderboard (window_days, rank_on_time_rate_desc, agent_id) where rank_on_time_rate_desc is not null;
comment on index metrics.leaderboard_window_days_rank_on_time_rate_desc_idx is 'Serves the default leaderboard page sorted by on_time_rate desc.';
create index leaderboard_window_days_rank_on_time_rate_asc_idx on metrics.leaderboard (window_days, rank_on_time_rate_asc, agent_id) where rank_on_time_rate_asc is not null;
comment on index metrics.leaderboard_window_days_rank_on_time_rate_asc_idx is 'Serves the default leaderboard page sorted by on_time_rate asc.';
create index leaderboard_window_days_rank_avg_delivery_minutes_desc_idx on metrics.leaderboard (window_days, rank_avg_delivery_minutes_desc, agent_id) where rank_avg_delivery_minutes_desc is not null;
comment on index metrics.leaderboard_window_days_rank_avg_delivery_minutes_desc_idx is 'Serves the default leaderboard page sorted by avg_delivery_minutes desc.';
create index leaderboard_window_days_rank_avg_delivery_minutes_asc_idx on metrics.leaderboard (window_days, rank_avg_delivery_minutes_asc, agent_id) where rank_avg_delivery_minutes_asc is not null;
comment on index metrics.leaderboard_window_days_rank_avg_delivery_minutes_asc_idx is 'Serves the default leaderboard page sorted by avg_delivery_minutes asc.';
grant select on metrics.leaderboard to admin, platform_admin;

-- ---- per-request helpers: PL/pgSQL (plans kept per session); the refresh's work_mem ----
create or replace function metrics.refresh(p_view text default null, p_source text default 'manual')
returns setof metrics.refresh_log
language plpgsql
volatile
set search_path = ''
-- metrics.agent_running_totals sorts its days x agents grid twice (~800,000 rows at 1M assignments):
-- in memory 5 s, spilled to disk with the default 4 MB 21 s (docs/performance.md, issue 11).
set work_mem = '64MB'
as $$
-- Refresh one view (p_view) or all, CONCURRENTLY (readers keep reading the previous contents), and
-- log each refresh's as-of and duration. Two refreshes of one view queue on its EXCLUSIVE lock.
declare
    v metrics.views;
    v_start timestamptz;
    v_row metrics.refresh_log;
begin
    if p_view is not null and not exists (select 1 from metrics.views x where x.name = p_view) then
        perform ops.raise_error('METRICS_INVALID_VIEW', p_view);
    end if;
    for v in select * from metrics.views x where p_view is null or x.name = p_view order by x.name loop
        v_start := clock_timestamp();
        execute format('refresh materialized view concurrently metrics.%I', v.matview);
        insert into metrics.refresh_log (view_name, as_of, duration_ms, source)
        values (v.name, v_start, round((extract(epoch from clock_timestamp() - v_start) * 1000)::numeric, 3), p_source)
        returning * into v_row;
        return next v_row;
    end loop;
    -- A week of history is plenty for health_metrics; older rows go (one index range).
    delete from metrics.refresh_log l where l.as_of < v_start - interval '7 days';
end
$$;
create or replace function metrics.as_of(p_view text)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
begin
    return (select l.as_of from metrics.refresh_log l where l.view_name = p_view order by l.as_of desc limit 1);
end
$$;
create or replace function metrics.seconds_to_refresh(p_view text, p_now timestamptz default null)
returns integer
language plpgsql
stable
set search_path = ''
as $$
begin
    -- The jobs run at minutes that are multiples of ttl ("*/ttl * * * *"), aligned on the hour, so
    -- the next run is the next multiple of ttl * 60 seconds of the Unix epoch.
    return (select (v.ttl_minutes * 60 - floor(extract(epoch from coalesce(p_now, now())))::bigint % (v.ttl_minutes * 60))::integer
              from metrics.views v where v.name = p_view);
end
$$;
create or replace function metrics.set_cache_control(p_max_age integer)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    -- PostgREST (and gateway/) turn response.headers into HTTP headers.
    perform set_config('response.headers',
                       json_build_array(json_build_object('Cache-Control', 'max-age=' || greatest(p_max_age, 0)))::text,
                       true);
end
$$;

update ops.error_codes set message = 'view must be one of leaderboard, sla_summary, geographic_coverage, agent_running_totals; got %s' where code = 'METRICS_INVALID_VIEW';

-- ---- metrics.agent_running_totals (sql/315_metrics_running_totals.sql) ----
-- Days that ended at least 10 minutes before the refresh began: a transition counts on the UTC day
-- its transaction began, so a day's rows are final once the transactions begun before its midnight
-- have committed. Rows: the agent ordinals (day '-infinity'), then one per day from the first
-- day with a rollup row through the last final day, every day present (a dense series), so
-- the totals through any day are one index probe.
create materialized view metrics.agent_running_totals as
with lim as (
    select min(a.day) as d0, metrics.utc_day(now() - interval '10 minutes') as cutoff from metrics.agent_daily a
), ag as (
    select x.agent_id, (row_number() over (order by x.agent_id))::integer as i
      from (select distinct a.agent_id from metrics.agent_daily a, lim where a.day < lim.cutoff) x
), g as (
    -- a dense grid (days x agents), each agent's rows cumulated over the days
    select dd.day::date as day, ag.i,
           sum(coalesce(a.accepted, 0)) over w as accepted, sum(coalesce(a.delivered, 0)) over w as delivered,
           sum(coalesce(a.on_time, 0)) over w as on_time, sum(coalesce(a.failed, 0)) over w as failed,
           sum(coalesce(a.cancelled, 0)) over w as cancelled, sum(coalesce(a.delivery_us, 0)) over w as delivery_us,
           count(a.day) over w as days
      from lim
     cross join generate_series(lim.d0, lim.cutoff - 1, interval '1 day') dd (day)
     cross join ag
      left join metrics.agent_daily a on a.agent_id = ag.agent_id and a.day = dd.day::date
    window w as (partition by ag.i order by dd.day)
)
select '-infinity'::date as day, (select array_agg(ag.agent_id order by ag.i) from ag) as agent_ids,
       null::integer[] as days, null::integer[] as accepted, null::integer[] as delivered,
       null::integer[] as on_time, null::integer[] as failed, null::integer[] as cancelled,
       null::bigint[] as delivery_us
union all
select g.day, null, array_agg(g.days::integer order by g.i), array_agg(g.accepted::integer order by g.i),
       array_agg(g.delivered::integer order by g.i), array_agg(g.on_time::integer order by g.i),
       array_agg(g.failed::integer order by g.i), array_agg(g.cancelled::integer order by g.i),
       array_agg(g.delivery_us::bigint order by g.i)
  from g
 group by g.day
with data;
comment on materialized view metrics.agent_running_totals is 'Each agent''s leaderboard totals from the first day through each UTC day (arrays by agent ordinal), for leaderboards over any period; refreshed every 30 minutes.';
comment on column metrics.agent_running_totals.day is 'The totals count every agent-day on or before this day; ''-infinity'': the row holding agent_ids.';
comment on column metrics.agent_running_totals.agent_ids is 'Row ''-infinity'' only: the agents in ascending id order; element i of every array is agent_ids[i]''s.';
comment on column metrics.agent_running_totals.days is 'The number of the agent''s metrics.agent_daily rows so far: an agent is in a period''s leaderboard when it has one in the period.';
create unique index agent_running_totals_day_key on metrics.agent_running_totals (day);
comment on index metrics.agent_running_totals_day_key is 'One row per day: REFRESH CONCURRENTLY''s key; a period reads the row of its last day and of the day before it.';
grant select on metrics.agent_running_totals to admin, platform_admin;

insert into metrics.views (name, matview, ttl_minutes, cron_job) values
    ('agent_running_totals', 'agent_running_totals', 30, 'waybill-metrics-agent-running-totals');

-- -------------------------------------------------------------------------------------------------
-- A leaderboard page over a period: the view's days, and the days after them live
-- -------------------------------------------------------------------------------------------------

create function metrics.leaderboard_over_period(
    p_from date, p_to date, p_sort text, p_order text, p_min integer, p_offset bigint, p_limit integer,
    out total bigint, out items json
)
returns record
language plpgsql
stable
set search_path = ''
as $$
-- The same ranking as api.agent_leaderboard's for a period summed live, all zip codes: the days the
-- view holds are two of its rows subtracted, the days after them (today, usually) summed from
-- metrics.agent_daily. A past day's rollup rows no longer change (a transition counts on the day it
-- happens), so the answer is live. Arrays in PL/pgSQL variables: read once, subscripted in O(1).
declare
    v_covered date;
    v_ids bigint[];
    h_n integer[]; h_a integer[]; h_d integer[]; h_o integer[]; h_f integer[]; h_c integer[]; h_us bigint[];
    l_n integer[]; l_a integer[]; l_d integer[]; l_o integer[]; l_f integer[]; l_c integer[]; l_us bigint[];
begin
    select r.day + 1 into v_covered
      from metrics.agent_running_totals r where r.day > '-infinity' order by r.day desc limit 1;
    if v_covered is not null and p_from < v_covered then
        select r.agent_ids into v_ids from metrics.agent_running_totals r where r.day = '-infinity';
        -- totals through the period's last day the view holds, and through the day before the period
        select r.days, r.accepted, r.delivered, r.on_time, r.failed, r.cancelled, r.delivery_us
          into h_n, h_a, h_d, h_o, h_f, h_c, h_us
          from metrics.agent_running_totals r
         where r.day > '-infinity' and r.day < least(p_to, v_covered) order by r.day desc limit 1;
        select r.days, r.accepted, r.delivered, r.on_time, r.failed, r.cancelled, r.delivery_us
          into l_n, l_a, l_d, l_o, l_f, l_c, l_us
          from metrics.agent_running_totals r
         where r.day > '-infinity' and r.day < p_from order by r.day desc limit 1;
    end if;
    if h_n is not null and p_to <= v_covered then
        -- the whole period in the view: per agent (an ordinal i), only what ranks it, then the page's
        -- other figures for its rows alone
        with scored as (
            -- deliveries rank by an integer (k1; cheaper to sort than numeric), rates by numeric (k2)
            select s.i,
                   case when p_sort <> 'deliveries' then 0
                        when p_order = 'desc' then -s.delivered else s.delivered end as k1,
                   case when p_sort = 'deliveries' then null
                        else (case when p_order = 'desc' then -1 else 1 end)
                             * case p_sort when 'success_rate' then s.delivered::numeric / nullif(s.delivered + s.failed, 0)
                                           when 'on_time_rate' then (h_o[s.i] - coalesce(l_o[s.i], 0))::numeric / nullif(s.delivered, 0)
                                           else (h_us[s.i] - coalesce(l_us[s.i], 0))::numeric / nullif(s.delivered, 0) end
                   end as k2
              from (select i, h_d[i] - coalesce(l_d[i], 0) as delivered,
                           case when p_sort = 'success_rate' then h_f[i] - coalesce(l_f[i], 0) end as failed
                      from generate_subscripts(h_n, 1) i
                     where h_n[i] - coalesce(l_n[i], 0) > 0) s
             where case p_sort when 'deliveries' then true
                               when 'success_rate' then s.delivered + s.failed >= p_min
                               else s.delivered >= p_min end
        ), top as (
            -- rank() needs only the rows before the page: the first offset + limit in rank order
            -- (ordinals ascend with agent ids: i breaks ties as agent_id does)
            select t.*, rank() over (order by t.k1, t.k2) as rnk
              from (select r.i, r.k1, r.k2
                      from scored r
                     order by r.k1, r.k2, r.i
                     limit p_offset + p_limit) t
        ), page as (
            select t.rnk, v_ids[t.i] as agent_id, t.k1, t.k2,
                   h_a[t.i] - coalesce(l_a[t.i], 0) as accepted, h_d[t.i] - coalesce(l_d[t.i], 0) as delivered,
                   h_o[t.i] - coalesce(l_o[t.i], 0) as on_time, h_f[t.i] - coalesce(l_f[t.i], 0) as failed,
                   h_c[t.i] - coalesce(l_c[t.i], 0) as cancelled, h_us[t.i] - coalesce(l_us[t.i], 0) as delivery_us
              from top t
             order by t.k1, t.k2, t.i
            offset p_offset
        )
        select (select count(*) from scored), coalesce((
                   select json_agg(json_build_object(
                              'rank', p.rnk, 'agentId', p.agent_id, 'name', d.name,
                              'deliveries', p.delivered, 'failed', p.failed, 'accepted', p.accepted,
                              'cancelled', p.cancelled, 'onTime', p.on_time,
                              'successRate', metrics.rate(p.delivered, p.delivered + p.failed),
                              'onTimeRate', metrics.rate(p.on_time, p.delivered),
                              'avgDeliveryMinutes', metrics.mean_minutes(p.delivery_us, p.delivered))
                          order by p.rnk, p.agent_id)
                     from page p left join core.delivery_agents d on d.id = p.agent_id), '[]')
          into total, items;
        return;
    end if;
    -- the days after the view's (or every day, without it): summed live, the view's days added
    with src as (
        select x.agent_id, sum(x.accepted)::integer as accepted, sum(x.delivered)::integer as delivered,
               sum(x.on_time)::integer as on_time, sum(x.failed)::integer as failed,
               sum(x.cancelled)::integer as cancelled, sum(x.delivery_us)::bigint as delivery_us
          from (select v_ids[i] as agent_id, h_a[i] - coalesce(l_a[i], 0) as accepted,
                       h_d[i] - coalesce(l_d[i], 0) as delivered, h_o[i] - coalesce(l_o[i], 0) as on_time,
                       h_f[i] - coalesce(l_f[i], 0) as failed, h_c[i] - coalesce(l_c[i], 0) as cancelled,
                       h_us[i] - coalesce(l_us[i], 0) as delivery_us
                  from generate_subscripts(h_n, 1) i
                 where h_n[i] - coalesce(l_n[i], 0) > 0
                union all
                select a.agent_id, a.accepted, a.delivered, a.on_time, a.failed, a.cancelled, a.delivery_us
                  from metrics.agent_daily a
                 where a.day >= greatest(p_from, coalesce(v_covered, p_from)) and a.day < p_to) x
         group by x.agent_id
    ), scored as (
        select s.*,
               case p_sort when 'deliveries' then s.delivered::numeric
                           when 'success_rate' then s.delivered::numeric / nullif(s.delivered + s.failed, 0)
                           when 'on_time_rate' then s.on_time::numeric / nullif(s.delivered, 0)
                           else s.delivery_us::numeric / nullif(s.delivered, 0) end as v
          from src s
         where case p_sort when 'deliveries' then true
                           when 'success_rate' then s.delivered + s.failed >= p_min
                           else s.delivered >= p_min end
    ), top as (
        select t.*, rank() over (order by t.k) as rnk
          from (select r.*, case when p_order = 'desc' then -r.v else r.v end as k
                  from scored r
                 order by k, r.agent_id
                 limit p_offset + p_limit) t
    )
    select (select count(*) from scored), coalesce((
                   select json_agg(json_build_object(
                              'rank', p.rnk, 'agentId', p.agent_id, 'name', d.name,
                              'deliveries', p.delivered, 'failed', p.failed, 'accepted', p.accepted,
                              'cancelled', p.cancelled, 'onTime', p.on_time,
                              'successRate', metrics.rate(p.delivered, p.delivered + p.failed),
                              'onTimeRate', metrics.rate(p.on_time, p.delivered),
                              'avgDeliveryMinutes', metrics.mean_minutes(p.delivery_us, p.delivered))
                          order by p.rnk, p.agent_id)
                     from (select t.* from top t order by t.k, t.agent_id offset p_offset) p left join core.delivery_agents d on d.id = p.agent_id), '[]')
      into total, items;
end
$$;
comment on function metrics.leaderboard_over_period(date, date, text, text, integer, bigint, integer) is 'A leaderboard page and its total over any period, all zip codes: metrics.agent_running_totals for the days it holds, metrics.agent_daily for the days after them.';
grant execute on function metrics.leaderboard_over_period(date, date, text, text, integer, bigint, integer)
    to admin, platform_admin;

-- The fourth view's pg_cron job (sql/310 scheduled the first three before this view existed).
do $jobs$
begin
    perform metrics.schedule_refresh_jobs();
end
$jobs$;

-- ---- the endpoints (sql/830_api_metrics.sql) ----
create or replace function api.agent_leaderboard(
    "from" text default null, "to" text default null, zip_code text default null,
    sort_by text default null, sort_order text default null, page text default null,
    page_size text default null, min_deliveries text default null
)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- A standard window (7/30/90 days ending today) reads metrics.leaderboard (as of its refresh); any
-- other period sums metrics.agent_daily live. rank() gives ties one rank; rate rankings list only
-- agents with at least min_deliveries (default 5) finished (success) or delivered (on time, speed).
declare
    v_sort text := coalesce(agent_leaderboard.sort_by, 'deliveries');
    v_order text := lower(coalesce(agent_leaderboard.sort_order, 'desc'));
    v_zip text := metrics.parse_zip(agent_leaderboard.zip_code);
    v_page integer := metrics.parse_int(agent_leaderboard.page, 1, 1, 1000000, 'METRICS_INVALID_PAGE');
    v_limit integer := metrics.parse_int(agent_leaderboard.page_size, 20, 1, 100, 'METRICS_INVALID_LIMIT');
    v_min integer := metrics.parse_int(agent_leaderboard.min_deliveries, 5, 1, 100000, 'INVALID_ARGUMENT');
    v_from date;
    v_to date;
    v_window integer;
    v_as_of timestamptz;
    v_zip_agents bigint[];
    v_key text;
    v_offset bigint;
    v_ids bigint[];
    v_ranks integer[];
    v_items json;
    v_total bigint;
    v_result json;
begin
    if v_sort not in ('deliveries', 'success_rate', 'on_time_rate', 'avg_delivery_minutes') then
        perform metrics.raise_error('METRICS_INVALID_SORT_BY', v_sort);
    end if;
    if v_order not in ('asc', 'desc') then
        perform metrics.raise_error('METRICS_INVALID_SORT_ORDER', agent_leaderboard.sort_order);
    end if;
    select p.d_from, p.d_to into v_from, v_to from metrics.parse_period(agent_leaderboard."from", agent_leaderboard."to") p;
    -- A standard window as of the view's refresh: same length, same first day (every row of a window
    -- shares d_from and d_to = d_from + window_days): one index probe per window, never a scan.
    select w.window_days into v_window
      from metrics.windows(v_to - 1) w
     where w.d_from = v_from
       and (select l.d_from from metrics.leaderboard l where l.window_days = w.window_days
             order by l.agent_id limit 1) = v_from;  -- the order: the (window_days, agent_id) key, not a scan
    if v_window is not null then
        v_as_of := metrics.as_of('leaderboard');
        perform metrics.set_cache_control(metrics.seconds_to_refresh('leaderboard'));
    else
        v_as_of := now();
        perform metrics.set_cache_control(0);
    end if;
    if v_window is not null and v_zip is null and v_min = 5 then
        -- The default request: the ranks and each ranking's length are in the view, the page is a
        -- range of its ranking's index. Static SQL, one statement per ranking, each planned once per
        -- session (EXECUTE planned it on every call; one UNION of the eight was planned per call too).
        v_key := v_sort || '_' || v_order;
        v_offset := (v_page - 1)::bigint * v_limit;
        if v_key = 'deliveries_desc' then
            select array_agg(x.agent_id), array_agg(x.rnk) into v_ids, v_ranks
              from (select l.agent_id, l.rank_deliveries_desc as rnk from metrics.leaderboard l
                     where l.window_days = v_window and l.rank_deliveries_desc is not null
                     order by l.rank_deliveries_desc, l.agent_id offset v_offset limit v_limit) x;
        elsif v_key = 'deliveries_asc' then
            select array_agg(x.agent_id), array_agg(x.rnk) into v_ids, v_ranks
              from (select l.agent_id, l.rank_deliveries_asc as rnk from metrics.leaderboard l
                     where l.window_days = v_window and l.rank_deliveries_asc is not null
                     order by l.rank_deliveries_asc, l.agent_id offset v_offset limit v_limit) x;
        elsif v_key = 'success_rate_desc' then
            select array_agg(x.agent_id), array_agg(x.rnk) into v_ids, v_ranks
              from (select l.agent_id, l.rank_success_rate_desc as rnk from metrics.leaderboard l
                     where l.window_days = v_window and l.rank_success_rate_desc is not null
                     order by l.rank_success_rate_desc, l.agent_id offset v_offset limit v_limit) x;
        elsif v_key = 'success_rate_asc' then
            select array_agg(x.agent_id), array_agg(x.rnk) into v_ids, v_ranks
              from (select l.agent_id, l.rank_success_rate_asc as rnk from metrics.leaderboard l
                     where l.window_days = v_window and l.rank_success_rate_asc is not null
                     order by l.rank_success_rate_asc, l.agent_id offset v_offset limit v_limit) x;
        elsif v_key = 'on_time_rate_desc' then
            select array_agg(x.agent_id), array_agg(x.rnk) into v_ids, v_ranks
              from (select l.agent_id, l.rank_on_time_rate_desc as rnk from metrics.leaderboard l
                     where l.window_days = v_window and l.rank_on_time_rate_desc is not null
                     order by l.rank_on_time_rate_desc, l.agent_id offset v_offset limit v_limit) x;
        elsif v_key = 'on_time_rate_asc' then
            select array_agg(x.agent_id), array_agg(x.rnk) into v_ids, v_ranks
              from (select l.agent_id, l.rank_on_time_rate_asc as rnk from metrics.leaderboard l
                     where l.window_days = v_window and l.rank_on_time_rate_asc is not null
                     order by l.rank_on_time_rate_asc, l.agent_id offset v_offset limit v_limit) x;
        elsif v_key = 'avg_delivery_minutes_desc' then
            select array_agg(x.agent_id), array_agg(x.rnk) into v_ids, v_ranks
              from (select l.agent_id, l.rank_avg_delivery_minutes_desc as rnk from metrics.leaderboard l
                     where l.window_days = v_window and l.rank_avg_delivery_minutes_desc is not null
                     order by l.rank_avg_delivery_minutes_desc, l.agent_id offset v_offset limit v_limit) x;
        elsif v_key = 'avg_delivery_minutes_asc' then
            select array_agg(x.agent_id), array_agg(x.rnk) into v_ids, v_ranks
              from (select l.agent_id, l.rank_avg_delivery_minutes_asc as rnk from metrics.leaderboard l
                     where l.window_days = v_window and l.rank_avg_delivery_minutes_asc is not null
                     order by l.rank_avg_delivery_minutes_asc, l.agent_id offset v_offset limit v_limit) x;
        end if;
        select coalesce(json_agg(json_build_object(
                   'rank', u.rnk, 'agentId', u.agent_id, 'name', d.name,
                   'deliveries', p.delivered, 'failed', p.failed, 'accepted', p.accepted,
                   'cancelled', p.cancelled, 'onTime', p.on_time,
                   'successRate', metrics.rate(p.delivered, p.delivered + p.failed),
                   'onTimeRate', metrics.rate(p.on_time, p.delivered),
                   'avgDeliveryMinutes', metrics.mean_minutes(p.delivery_us, p.delivered))
               order by u.n), '[]')
          into v_items
          from unnest(v_ids, v_ranks) with ordinality u (agent_id, rnk, n)
          join metrics.leaderboard p on p.window_days = v_window and p.agent_id = u.agent_id
          left join core.delivery_agents d on d.id = u.agent_id;
        select (case v_sort when 'deliveries' then l.window_agents when 'success_rate' then l.window_rated_success
                            else l.window_rated_delivered end)::bigint
          into v_total
          from metrics.leaderboard l where l.window_days = v_window order by l.agent_id limit 1;
        return json_build_object(
            'asOf', v_as_of, 'from', v_from, 'to', v_to, 'zipCode', v_zip, 'sortBy', v_sort,
            'sortOrder', v_order, 'minDeliveries', v_min, 'page', v_page, 'limit', v_limit,
            'total', v_total, 'items', v_items);
    end if;
    if v_window is null and v_zip is null then
        -- Any other period, all zip codes: two rows of metrics.agent_running_totals subtracted
        -- instead of summing every agent-day row of the period (sql/315).
        select l.total, l.items into v_total, v_items
          from metrics.leaderboard_over_period(v_from, v_to, v_sort, v_order, v_min,
                                               (v_page - 1)::bigint * v_limit, v_limit) l;
        return json_build_object(
            'asOf', v_as_of, 'from', v_from, 'to', v_to, 'zipCode', v_zip, 'sortBy', v_sort,
            'sortOrder', v_order, 'minDeliveries', v_min, 'page', v_page, 'limit', v_limit,
            'total', v_total, 'items', v_items);
    end if;
    if v_zip is not null then
        -- Agents serving the zip code (GIN on serviceable_zip_codes): a small set to rank among.
        v_zip_agents := array(select d.id from core.delivery_agents d where d.serviceable_zip_codes @> array[v_zip]);
    end if;
    -- EXECUTE: each shape gets its own statement, planned with its values, so the zip-code filter is
    -- an index condition (the view's (window_days, agent_id) key, or agent_daily's (agent_id, day))
    -- instead of a filter over every agent of the period behind a generic plan's OR.
    execute format(
        $q$with src as (%s
        ), scored as (
            select s.*,
                   case $5 when 'deliveries' then s.delivered::numeric
                           when 'success_rate' then s.delivered::numeric / nullif(s.delivered + s.failed, 0)
                           when 'on_time_rate' then s.on_time::numeric / nullif(s.delivered, 0)
                           else s.delivery_us::numeric / nullif(s.delivered, 0) end as v
              from src s
             where case $5 when 'deliveries' then true
                           when 'success_rate' then s.delivered + s.failed >= $6
                           else s.delivered >= $6 end
        ), top as (
            -- rank() needs only the rows before the page: the first offset + limit in rank order
            -- (a top-N sort), not a sort and two window passes over every agent of the period
            select t.*, rank() over (order by t.k) as rnk
              from (select r.*, case when $7 = 'desc' then -r.v else r.v end as k
                      from scored r
                     order by k, r.agent_id
                     limit $8 + $9) t
        ), page as (
            select t.* from top t
             order by t.k, t.agent_id
             offset $8
        )
        select (select count(*) from scored),
               coalesce((
                   select json_agg(json_build_object(
                              'rank', p.rnk, 'agentId', p.agent_id, 'name', d.name,
                              'deliveries', p.delivered, 'failed', p.failed, 'accepted', p.accepted,
                              'cancelled', p.cancelled, 'onTime', p.on_time,
                              'successRate', metrics.rate(p.delivered, p.delivered + p.failed),
                              'onTimeRate', metrics.rate(p.on_time, p.delivered),
                              'avgDeliveryMinutes', metrics.mean_minutes(p.delivery_us, p.delivered))
                          order by p.rnk, p.agent_id)
                     from page p left join core.delivery_agents d on d.id = p.agent_id), '[]')$q$,
        case when v_window is not null then
            'select l.agent_id, l.accepted, l.delivered, l.on_time, l.failed, l.cancelled, l.delivery_us
               from metrics.leaderboard l where l.window_days = $1'
             || case when v_zip is not null then ' and l.agent_id = any ($2)' else '' end
        else
            -- a zip code over another period: one primary-key range per agent of the zip code (the
            -- planner, asked for agent_id = any, prefers the (day) index and filters every agent's
            -- rows of the period)
            'select z.agent_id, s.accepted, s.delivered, s.on_time, s.failed, s.cancelled, s.delivery_us
               from unnest($2) z (agent_id)
              cross join lateral (
                    select sum(a.accepted)::integer as accepted, sum(a.delivered)::integer as delivered,
                           sum(a.on_time)::integer as on_time, sum(a.failed)::integer as failed,
                           sum(a.cancelled)::integer as cancelled, sum(a.delivery_us)::bigint as delivery_us
                      from metrics.agent_daily a
                     where a.agent_id = z.agent_id and a.day >= $3 and a.day < $4
                    having count(*) > 0) s'
        end)
      into v_total, v_items
      using v_window, v_zip_agents, v_from, v_to, v_sort, v_min, v_order, (v_page - 1)::bigint * v_limit, v_limit;
    v_result := json_build_object(
        'asOf', v_as_of, 'from', v_from, 'to', v_to, 'zipCode', v_zip, 'sortBy', v_sort,
        'sortOrder', v_order, 'minDeliveries', v_min, 'page', v_page, 'limit', v_limit,
        'total', v_total, 'items', v_items);
    return v_result;
end
$$;
create or replace function metrics.sla_day(p_day date, p_delivered bigint, p_on_time bigint, p_minutes float8[])
returns json
language sql
stable
as $$
    select json_build_object('day', p_day, 'delivered', coalesce(p_delivered, 0), 'onTime', coalesce(p_on_time, 0),
                             'breached', coalesce(p_delivered - p_on_time, 0),
                             'onTimeRate', metrics.rate(p_on_time, p_delivered),
                             'p50', round(p_minutes[1]::numeric, 2), 'p90', round(p_minutes[2]::numeric, 2),
                             'p99', round(p_minutes[3]::numeric, 2))
$$;
comment on function api.refresh_metrics(text) is $$Refresh metrics views now
view: leaderboard, sla_summary, geographic_coverage or agent_running_totals (all when omitted). Answers each view's new as-of and the refresh's duration.$$;

-- ---- existing data: the rebuilt views' as-of ----
do $existing$
begin
    if exists (select 1 from core.shipping_assignments) then
        perform metrics.refresh('leaderboard', 'migration');
        perform metrics.refresh('agent_running_totals', 'migration');
    end if;
end
$existing$;
