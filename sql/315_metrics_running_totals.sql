-- =================================================================================================
-- 315 Metrics: each agent's running totals per UTC day, for a leaderboard over any period
-- A leaderboard over a period that is not a standard window used to sum every agent-day row of the
-- period (~49,000 for a week at 1M assignments: 25 ms). This view holds, for every UTC day, each
-- agent's totals from the first day through that day, as arrays indexed by an agent ordinal (the
-- agents in ascending id order): a period is the row of its last day minus the row of the day
-- before it, element by element, then a top-N rank (docs/metrics.md, docs/performance.md).
-- =================================================================================================

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
    v_sign integer;
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
    if h_n is not null and p_to <= v_covered and p_sort = 'deliveries' then
        -- the whole period in the view, ranked by deliveries (the default sort): its own statement,
        -- the key an integer computed from two arrays, no per-agent CASE over the sort and order
        -- (docs/performance/agent-metrics.md, migration 0022: a third of the pass)
        v_sign := case when p_order = 'desc' then -1 else 1 end;
        if l_n is null then  -- the period starts on the view's first day: nothing before it
            l_n := array_fill(0, array[cardinality(h_n)]);
            l_d := l_n;
        end if;
        with scored as (
            select i, v_sign * (h_d[i] - l_d[i]) as k
              from generate_subscripts(h_n, 1) i
             where h_n[i] > l_n[i]
        ), top as (
            -- ordinals ascend with agent ids: i breaks ties as agent_id does
            select t.i, t.k, rank() over (order by t.k) as rnk
              from (select r.i, r.k from scored r order by r.k, r.i limit p_offset + p_limit) t
        ), page as (
            select t.rnk, v_ids[t.i] as agent_id, t.k, t.i,
                   h_a[t.i] - coalesce(l_a[t.i], 0) as accepted, h_d[t.i] - l_d[t.i] as delivered,
                   h_o[t.i] - coalesce(l_o[t.i], 0) as on_time, h_f[t.i] - coalesce(l_f[t.i], 0) as failed,
                   h_c[t.i] - coalesce(l_c[t.i], 0) as cancelled, h_us[t.i] - coalesce(l_us[t.i], 0) as delivery_us
              from top t
             order by t.k, t.i
            offset p_offset
        )
        select (select count(*) from scored), coalesce((
                   select json_agg(metrics.leaderboard_item(p.rnk, p.agent_id, d.name, p.delivered, p.failed, p.accepted,
                              p.cancelled, p.on_time, p.delivery_us)
                          order by p.rnk, p.agent_id)
                     from page p left join core.delivery_agents d on d.id = p.agent_id), '[]')
          into total, items;
        return;
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
                   select json_agg(metrics.leaderboard_item(p.rnk, p.agent_id, d.name, p.delivered, p.failed, p.accepted,
                              p.cancelled, p.on_time, p.delivery_us)
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
                   select json_agg(metrics.leaderboard_item(p.rnk, p.agent_id, d.name, p.delivered, p.failed, p.accepted,
                              p.cancelled, p.on_time, p.delivery_us)
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
