-- Undo 0026: api.agent_leaderboard and api.sla_summary compute every answer per request again (their
-- 0025 and 0023 texts), api.health_metrics no longer shows the cache (its 0008 text), and the cache, its functions, metrics.leaderboard_page and
-- metrics.sla_summary_answer go. The metrics_cache role stays: roles are cluster-wide, other
-- databases of the cluster may use it.
-- squawk: nothing reads the tables or functions dropped once the two endpoints are restored.
-- squawk-ignore-file ban-drop-function, ban-drop-table
set local lock_timeout = '5s';
set local statement_timeout = '60s';

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
        select coalesce(json_agg(metrics.leaderboard_item(u.rnk, u.agent_id, d.name, p.delivered, p.failed, p.accepted,
                              p.cancelled, p.on_time, p.delivery_us)
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
        -- Agents serving the zip code, live (metrics.zip_agents, one key range): a small set to rank among.
        v_zip_agents := array(select z.agent_id from metrics.zip_agents z where z.zip_code = v_zip order by z.agent_id);
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
                   select json_agg(metrics.leaderboard_item(p.rnk, p.agent_id, d.name, p.delivered, p.failed, p.accepted,
                              p.cancelled, p.on_time, p.delivery_us)
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
                   select json_agg(metrics.leaderboard_item(p.rnk, p.agent_id, d.name, p.delivered, p.failed, p.accepted,
                              p.cancelled, p.on_time, p.delivery_us)
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
                   select json_agg(metrics.leaderboard_item(p.rnk, p.agent_id, d.name, p.delivered, p.failed, p.accepted,
                              p.cancelled, p.on_time, p.delivery_us)
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

create or replace function api.sla_summary("from" text default null, "to" text default null, zip_code text default null,
                                agent_id text default null)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- All zip codes or one zip code: metrics.sla_summary (exact per day and for a standard window; a
-- non-standard period's percentiles from cumulative minute histograms). One agent:
-- metrics.agent_daily, live (percentiles from minute histograms).
declare
    v_zip text := metrics.parse_zip(sla_summary.zip_code);
    v_agent bigint;
    v_from date;
    v_to date;
    v_as_of timestamptz;
    v_method text;
    v_days json;
    v_delivered bigint;
    v_on_time bigint;
    v_us bigint;
    v_p float8[];
    v_open bigint;
    v_past_due bigint;
    v_now timestamptz := now();
    v_key text;
begin
    if sla_summary.agent_id is not null then
        if v_zip is not null then
            perform metrics.raise_error('INVALID_ARGUMENT', 'give zip_code or agent_id, not both');
        end if;
        v_agent := metrics.resolve_agent(sla_summary.agent_id);
    end if;
    select p.d_from, p.d_to into v_from, v_to from metrics.parse_period(sla_summary."from", sla_summary."to") p;

    if v_agent is null then
        -- All zip codes (zip_code '') or one: precomputed rows of metrics.sla_summary, as of its refresh.
        v_as_of := metrics.as_of('sla_summary');
        v_key := coalesce(v_zip, '');
        -- a standard window as of the refresh: its all-zip row exists (possibly with 0 deliveries)
        if exists (select 1 from metrics.sla_summary s
                    where s.grain = 'window' and s.zip_code = '' and s.d_from = v_from and s.d_to = v_to) then
            v_method := 'exact';
            select s.delivered::bigint, s.on_time::bigint, s.delivery_us, s.minutes_p into v_delivered, v_on_time, v_us, v_p
              from metrics.sla_summary s
             where s.grain = case when v_zip is null then 'window' else 'zip_window' end
               and s.zip_code = v_key and s.d_from = v_from and s.d_to = v_to;
        else
            v_method := 'minute_histogram';
            select sum(s.delivered), sum(s.on_time), sum(s.delivery_us)::bigint
              into v_delivered, v_on_time, v_us
              from metrics.sla_summary s
             where s.grain = case when v_zip is null then 'day' else 'zip_day' end
               and s.zip_code = v_key and s.d_from >= v_from and s.d_from < v_to;
            if v_zip is null then
                -- all zip codes: the cumulative histogram up to the period's last day minus the one
                -- up to the day before it (two index probes, a binary search per percentile; merging
                -- a week's ~18,000 day buckets cost 11-15 ms at 1M assignments)
                select metrics.cum_hist_percentiles(
                           upto.hist_minutes, upto.hist_counts,
                           (select b.hist_counts from metrics.sla_summary b
                             where b.grain = 'cum' and b.zip_code = '' and b.d_from < v_from
                             order by b.d_from desc limit 1),
                           array[0.5, 0.9, 0.99])
                  into v_p
                  from (select u.hist_minutes, u.hist_counts from metrics.sla_summary u
                         where u.grain = 'cum' and u.zip_code = '' and u.d_from < v_to
                         order by u.d_from desc limit 1) upto;
            else
                -- one zip code: its cumulative band counts and a few bands' postings (0023; merging
                -- a week's ~4,000 day buckets of the busiest zip code cost 3.2 ms at 1M assignments)
                v_p := metrics.zip_period_percentiles(v_key, v_from, v_to, array[0.5, 0.9, 0.99]);
            end if;
        end if;
        -- one row: the zip code's, or all zip codes' (zip_code '')
        select coalesce(sum(s.open), 0), coalesce(sum(s.open_past_due), 0) into v_open, v_past_due
          from metrics.sla_summary s where s.grain = 'open' and s.zip_code = v_key;
        select json_agg(metrics.sla_day(g.day::date, s.delivered, s.on_time, s.minutes_p) order by g.day) into v_days
          from generate_series(v_from, v_to - 1, interval '1 day') g (day)
          left join metrics.sla_summary s
            on s.grain = case when v_zip is null then 'day' else 'zip_day' end
           and s.zip_code = v_key and s.d_from = g.day::date;
        perform metrics.set_cache_control(metrics.seconds_to_refresh('sla_summary'));
    else
        v_as_of := v_now;
        v_method := 'minute_histogram';
        select coalesce(sum(a.delivered), 0) as delivered, coalesce(sum(a.on_time), 0) as on_time,
               coalesce(sum(a.delivery_us), 0)::bigint as delivery_us,
               (select metrics.hist_percentiles(array_agg(u.m), array_agg(u.n), array[0.5, 0.9, 0.99])
                  from metrics.agent_daily x, unnest(x.delivery_minutes, x.delivery_counts) u (m, n)
                 where x.agent_id = v_agent and x.day >= v_from and x.day < v_to)
          into v_delivered, v_on_time, v_us, v_p
          from metrics.agent_daily a where a.agent_id = v_agent and a.day >= v_from and a.day < v_to;
        select count(*), count(*) filter (where a.sla_due_at < v_now) into v_open, v_past_due
          from core.shipping_assignments a
         where a.agent_id = v_agent and a.status in ('ACCEPTED', 'PICKED_UP', 'IN_TRANSIT');
        select json_agg(metrics.sla_day(g.day::date, a.delivered, a.on_time,
                                        metrics.hist_percentiles(a.delivery_minutes, a.delivery_counts, array[0.5, 0.9, 0.99]))
                        order by g.day)
          into v_days
          from generate_series(v_from, v_to - 1, interval '1 day') g (day)
          left join metrics.agent_daily a on a.agent_id = v_agent and a.day = g.day::date;
        perform metrics.set_cache_control(0);
    end if;
    return json_build_object(
        'asOf', v_as_of, 'from', v_from, 'to', v_to, 'zipCode', v_zip, 'agentId', v_agent,
        'delivered', coalesce(v_delivered, 0), 'onTime', coalesce(v_on_time, 0),
        'breached', coalesce(v_delivered - v_on_time, 0),
        'onTimeRate', metrics.rate(v_on_time, v_delivered),
        'deliveryMinutes', json_build_object('mean', metrics.mean_minutes(v_us, v_delivered),
                                             'p50', round(v_p[1]::numeric, 2), 'p90', round(v_p[2]::numeric, 2),
                                             'p99', round(v_p[3]::numeric, 2)),
        'percentiles', v_method, 'dailyPercentiles', case when v_agent is null then 'exact' else 'minute_histogram' end,
        'open', v_open, 'openPastDue', v_past_due,
        'daily', coalesce(v_days, '[]'));
end
$$;

create or replace function api.health_metrics()
returns json
language plpgsql
stable
security definer
set search_path = ''
as $$
-- Each view's as-of, age and last refresh duration; each pg_cron job's last run and status (when
-- pg_cron lives in this database).
declare
    v_jobs json;
    v_cron boolean := exists (select 1 from pg_catalog.pg_extension e where e.extname = 'pg_cron')
                      and pg_catalog.has_schema_privilege('cron', 'USAGE');
begin
    if v_cron then
        execute $q$
            select coalesce(json_agg(json_build_object(
                       'view', v.name, 'jobName', v.cron_job, 'schedule', j.schedule, 'active', j.active,
                       'lastRunStart', r.start_time, 'lastRunEnd', r.end_time, 'lastStatus', r.status,
                       'lastMessage', r.return_message) order by v.name), '[]')
              from metrics.views v
              left join cron.job j on j.jobname = v.cron_job
              left join lateral (select d.start_time, d.end_time, d.status, d.return_message
                                   from cron.job_run_details d where d.jobid = j.jobid
                                  order by d.start_time desc nulls last limit 1) r on true
        $q$ into v_jobs;
    end if;
    return json_build_object(
        'asOf', now(),
        'cron', json_build_object('installed', v_cron, 'jobs', v_jobs),
        'views', (select json_agg(json_build_object(
                      'view', v.name, 'ttlMinutes', v.ttl_minutes, 'cronJob', v.cron_job,
                      'asOf', l.as_of, 'ageSeconds', round(extract(epoch from now() - l.as_of)::numeric, 1),
                      'stale', l.as_of is null or now() - l.as_of > 2 * v.ttl_minutes * interval '1 minute',
                      'lastDurationMs', l.duration_ms, 'lastSource', l.source,
                      'nextRefreshSeconds', metrics.seconds_to_refresh(v.name)) order by v.name)
                    from metrics.views v
                    left join lateral (select * from metrics.refresh_log x where x.view_name = v.name
                                        order by x.as_of desc limit 1) l on true));
end
$$;
comment on function api.health_metrics() is $$Metrics health
Each metrics view's as-of, age, staleness (older than twice its TTL) and last refresh duration, and each pg_cron job's schedule, last run and status.$$;
drop function metrics.fill_answer_cache(text, bigint);
drop function metrics.sla_summary_answer(date, date, text, bigint);
drop function metrics.leaderboard_page(date, date, text, integer, text, text, integer, bigint, integer);
drop function metrics.leaderboard_window(date, date);
drop function metrics.parse_leaderboard_sort(text, text);
drop function metrics.sla_summary_cache_key(date, date, text);
drop function metrics.leaderboard_cache_key(date, date, text, text, text, integer);
drop function metrics.answer_cache_channel();
drop table metrics.answer_cache_items;
drop table metrics.answer_cache;
revoke usage on schema metrics from metrics_cache;
do $connect$
begin
    execute format('revoke connect on database %I from metrics_cache', current_database());
end
$connect$;
