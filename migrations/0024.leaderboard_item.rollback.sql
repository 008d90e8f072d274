-- Undo 0024: the two functions as 0022 left them, without metrics.leaderboard_item.
-- squawk: the function dropped is read by nothing once the two functions below are restored.
-- squawk-ignore-file ban-drop-function
set local lock_timeout = '5s';
set local statement_timeout = '60s';

create or replace function metrics.leaderboard_over_period(
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
    if v_zip is not null and v_window is not null and v_min = 5 then
        -- A zip code over a standard window, default threshold: the view's rank in the whole window
        -- orders the zip code's agents as their values would (equal values share a rank, a better
        -- value has a smaller rank), so their rank among themselves is rank() over the view's rank:
        -- no value computed, ~150 integers sorted. Static SQL, planned once per session (EXECUTE
        -- planned it on every call: most of its 1.4 ms).
        v_key := v_sort || '_' || v_order;
        with z as (
            select l.agent_id, l.accepted, l.delivered, l.on_time, l.failed, l.cancelled, l.delivery_us,
                   case v_key when 'deliveries_desc' then l.rank_deliveries_desc
                              when 'deliveries_asc' then l.rank_deliveries_asc
                              when 'success_rate_desc' then l.rank_success_rate_desc
                              when 'success_rate_asc' then l.rank_success_rate_asc
                              when 'on_time_rate_desc' then l.rank_on_time_rate_desc
                              when 'on_time_rate_asc' then l.rank_on_time_rate_asc
                              when 'avg_delivery_minutes_desc' then l.rank_avg_delivery_minutes_desc
                              else l.rank_avg_delivery_minutes_asc end as r
              from metrics.leaderboard l
             where l.window_days = v_window and l.agent_id = any (v_zip_agents)
        ), ranked as (
            -- the view's rank is null below the threshold: those agents are not in a rate ranking
            select z.*, rank() over (order by z.r) as rnk from z where z.r is not null
        )
        select (select count(*) from ranked), coalesce((
                   select json_agg(json_build_object(
                              'rank', p.rnk, 'agentId', p.agent_id, 'name', d.name,
                              'deliveries', p.delivered, 'failed', p.failed, 'accepted', p.accepted,
                              'cancelled', p.cancelled, 'onTime', p.on_time,
                              'successRate', metrics.rate(p.delivered, p.delivered + p.failed),
                              'onTimeRate', metrics.rate(p.on_time, p.delivered),
                              'avgDeliveryMinutes', metrics.mean_minutes(p.delivery_us, p.delivered))
                          order by p.rnk, p.agent_id)
                     from (select k.* from ranked k order by k.r, k.agent_id
                           offset (v_page - 1)::bigint * v_limit limit v_limit) p
                     left join core.delivery_agents d on d.id = p.agent_id), '[]')
          into v_total, v_items;
        return json_build_object(
            'asOf', v_as_of, 'from', v_from, 'to', v_to, 'zipCode', v_zip, 'sortBy', v_sort,
            'sortOrder', v_order, 'minDeliveries', v_min, 'page', v_page, 'limit', v_limit,
            'total', v_total, 'items', v_items);
    end if;
    if v_window is null then
        -- A zip code over another period: one primary-key range of metrics.agent_daily per agent of
        -- the zip code (the planner, asked for agent_id = any, prefers the (day) index and filters
        -- every agent's rows of the period). Static SQL, planned once per session.
        with src as (
            select z.agent_id, s.accepted, s.delivered, s.on_time, s.failed, s.cancelled, s.delivery_us
              from unnest(v_zip_agents) z (agent_id)
             cross join lateral (
                   select sum(a.accepted)::integer as accepted, sum(a.delivered)::integer as delivered,
                          sum(a.on_time)::integer as on_time, sum(a.failed)::integer as failed,
                          sum(a.cancelled)::integer as cancelled, sum(a.delivery_us)::bigint as delivery_us
                     from metrics.agent_daily a
                    where a.agent_id = z.agent_id and a.day >= v_from and a.day < v_to
                   having count(*) > 0) s
        ), scored as (
            select s.*,
                   case v_sort when 'deliveries' then s.delivered::numeric
                               when 'success_rate' then s.delivered::numeric / nullif(s.delivered + s.failed, 0)
                               when 'on_time_rate' then s.on_time::numeric / nullif(s.delivered, 0)
                               else s.delivery_us::numeric / nullif(s.delivered, 0) end as v
              from src s
             where case v_sort when 'deliveries' then true
                               when 'success_rate' then s.delivered + s.failed >= v_min
                               else s.delivered >= v_min end
        ), ranked as (
            select r.*, rank() over (order by r.k) as rnk
              from (select c.*, case when v_order = 'desc' then -c.v else c.v end as k from scored c) r
        )
        select (select count(*) from ranked), coalesce((
                   select json_agg(json_build_object(
                              'rank', p.rnk, 'agentId', p.agent_id, 'name', d.name,
                              'deliveries', p.delivered, 'failed', p.failed, 'accepted', p.accepted,
                              'cancelled', p.cancelled, 'onTime', p.on_time,
                              'successRate', metrics.rate(p.delivered, p.delivered + p.failed),
                              'onTimeRate', metrics.rate(p.on_time, p.delivered),
                              'avgDeliveryMinutes', metrics.mean_minutes(p.delivery_us, p.delivered))
                          order by p.rnk, p.agent_id)
                     from (select k.* from ranked k order by k.k, k.agent_id
                           offset (v_page - 1)::bigint * v_limit limit v_limit) p
                     left join core.delivery_agents d on d.id = p.agent_id), '[]')
          into v_total, v_items;
        return json_build_object(
            'asOf', v_as_of, 'from', v_from, 'to', v_to, 'zipCode', v_zip, 'sortBy', v_sort,
            'sortOrder', v_order, 'minDeliveries', v_min, 'page', v_page, 'limit', v_limit,
            'total', v_total, 'items', v_items);
    end if;
    -- A standard window at another threshold, any zip code: EXECUTE, each shape its own statement
    -- planned with its values, so the zip-code filter is an index condition (the view's
    -- (window_days, agent_id) key) instead of a filter over every agent behind a generic plan's OR.
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
        'select l.agent_id, l.accepted, l.delivered, l.on_time, l.failed, l.cancelled, l.delivery_us
           from metrics.leaderboard l where l.window_days = $1'
         || case when v_zip is not null then ' and l.agent_id = any ($2)' else '' end)
      into v_total, v_items
      using v_window, v_zip_agents, v_from, v_to, v_sort, v_min, v_order, (v_page - 1)::bigint * v_limit, v_limit;
    v_result := json_build_object(
        'asOf', v_as_of, 'from', v_from, 'to', v_to, 'zipCode', v_zip, 'sortBy', v_sort,
        'sortOrder', v_order, 'minDeliveries', v_min, 'page', v_page, 'limit', v_limit,
        'total', v_total, 'items', v_items);
    return v_result;
end
$$;

drop function metrics.leaderboard_item(bigint, bigint, text, bigint, bigint, bigint, bigint, bigint, bigint);
