-- =================================================================================================
-- 830 The metrics endpoints (plan Track B; docs/metrics.md defines every figure)
-- GET-able (STABLE) functions returning one JSON object each. Read functions are SECURITY INVOKER:
-- the request role needs SELECT on what they read, and row-level security keeps an agent on its own
-- rows (metrics.agent_daily, core.assignment_status_history); the explicit agent check turns "not
-- yours" into a 403 instead of an empty answer. Arguments are text so that a bad value is a
-- registered 400 naming what is allowed, never a cast error. `limit` is reserved by PostgREST on GET
-- (it pages the rows a function returns), so the page size travels as `page_size`; answers say `limit`.
-- =================================================================================================

-- An agent reads only its own rollup rows (the endpoints also refuse other ids with a 403).
create policy agent_reads_own on metrics.agent_daily for select to agent
    using (agent_id = (select auth.agent_id()));
comment on policy agent_reads_own on metrics.agent_daily is 'An agent reads only its own rollups.';

-- -------------------------------------------------------------------------------------------------
-- Argument parsing (registered 400s)
-- -------------------------------------------------------------------------------------------------

create function metrics.raise_error(p_code text, variadic p_args text[] default '{}')
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
-- The read endpoints run as the caller (SECURITY INVOKER), which may not execute ops.*: this raises
-- the registered error for it (it only raises; it reads nothing but the registry).
begin
    perform ops.raise_error(p_code, variadic p_args);
end
$$;
comment on function metrics.raise_error(text, text[]) is 'ops.raise_error for the metrics endpoints, which run as the caller.';
grant execute on function metrics.raise_error(text, text[]) to admin, platform_admin, agent;

create function metrics.parse_day(p_name text, p_value text)
returns date
language plpgsql
immutable
set search_path = ''
as $$
-- A 'YYYY-MM-DD' that is a real calendar date (null stays null), else METRICS_INVALID_DATE.
begin
    if p_value is null then
        return null;
    end if;
    if p_value ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' then
        begin
            return to_date(p_value, 'YYYY-MM-DD') where to_char(to_date(p_value, 'YYYY-MM-DD'), 'YYYY-MM-DD') = p_value;
        exception when others then
            null;  -- out-of-range month or day: the registered error below
        end;
    end if;
    perform metrics.raise_error('METRICS_INVALID_DATE', p_name, coalesce(p_value, 'null'));
    return null;
end
$$;
comment on function metrics.parse_day(text, text) is 'Parse a YYYY-MM-DD argument, or raise METRICS_INVALID_DATE naming it.';

create function metrics.parse_period(p_from text, p_to text, p_now timestamptz default null)
returns table (d_from date, d_to date)
language plpgsql
stable
set search_path = ''
as $$
-- [from, to) in whole UTC days; default the last 30 days including today. At most 366 days.
declare
    v_today date := metrics.utc_day(coalesce(p_now, now()));
    v_to date := coalesce(metrics.parse_day('to', p_to), v_today + 1);
    v_from date := coalesce(metrics.parse_day('from', p_from), v_to - 30);
begin
    if p_to is null and p_from is not null and v_from >= v_to then
        v_to := v_from + 30;  -- only from given: the 30 days from it
    end if;
    if v_from >= v_to or v_to - v_from > 366 then
        perform metrics.raise_error('METRICS_INVALID_PERIOD', v_from::text, v_to::text);
    end if;
    return query select v_from, v_to;
end
$$;
comment on function metrics.parse_period(text, text, timestamptz) is 'Parse from/to into a half-open period of UTC days (default the last 30 days), or raise a registered 400.';

create function metrics.parse_int(p_value text, p_default integer, p_min integer, p_max integer, p_code text)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
-- A whole number in [p_min, p_max] (p_default when null), else the registered error p_code.
begin
    if p_value is null then
        return p_default;
    end if;
    if p_value ~ '^\s*[0-9]{1,9}\s*$' and btrim(p_value)::integer between p_min and p_max then
        return btrim(p_value)::integer;
    end if;
    perform metrics.raise_error(p_code, p_value);
    return null;
end
$$;
comment on function metrics.parse_int(text, integer, integer, integer, text) is 'Parse a bounded whole-number argument (page, page_size), or raise the registered error given.';

create function metrics.parse_zip(p_value text)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
    if p_value is null or p_value ~ '^[0-9]{5}$' then
        return p_value;
    end if;
    perform metrics.raise_error('INVALID_ARGUMENT', 'zip_code must be five digits, got ' || p_value);
    return null;
end
$$;
comment on function metrics.parse_zip(text) is 'A five-digit zip code filter (or null), else INVALID_ARGUMENT.';

create function metrics.resolve_agent(p_agent_id text)
returns bigint
language plpgsql
stable
set search_path = ''
as $$
-- The agent an answer is about. Agents: their own id only (omitted = themselves), another id is a
-- 403 before anything about it is read. Staff: a required, existing agent id.
declare
    v_self bigint;
    v_id bigint;
begin
    if p_agent_id is not null and p_agent_id !~ '^[0-9]{1,18}$' then
        perform metrics.raise_error('INVALID_ARGUMENT', 'agent_id must be a delivery agent id, got ' || p_agent_id);
    end if;
    v_id := p_agent_id::bigint;
    if auth.role() = 'agent' then
        v_self := auth.agent_id();
        if v_self is null then
            perform metrics.raise_error('INVALID_ARGUMENT', 'an agent token with a numeric sub is required');
        end if;
        if v_id is not null and v_id <> v_self then
            perform metrics.raise_error('METRICS_NOT_YOUR_AGENT', v_id::text);
        end if;
        return v_self;
    end if;
    if v_id is null then
        perform metrics.raise_error('INVALID_ARGUMENT', 'agent_id is required');
    end if;
    if not exists (select 1 from core.delivery_agents d where d.id = v_id) then
        perform metrics.raise_error('AGENT_NOT_FOUND', v_id::text);
    end if;
    return v_id;
end
$$;
comment on function metrics.resolve_agent(text) is 'Validate agent_id for the caller: agents only themselves (403 otherwise), staff an existing agent.';

grant execute on function metrics.parse_day(text, text), metrics.parse_period(text, text, timestamptz),
    metrics.parse_int(text, integer, integer, integer, text), metrics.parse_zip(text), metrics.resolve_agent(text)
    to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/agent_metrics?agent_id&from&to  (plan: GET /api/admin/agents/metrics/:id)
-- -------------------------------------------------------------------------------------------------

create function api.agent_metrics(agent_id text default null, "from" text default null, "to" text default null)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- From metrics.agent_daily (always fresh): O(days in the period). A period starting on the first
-- closed day of the agent's metrics.agent_recent row (the default period, unless the view is older
-- than today's first refresh) takes those closed days from the row, precomputed, and sums only the
-- days after them (today, usually): exact and live either way (sql/320).
declare
    v_agent bigint := metrics.resolve_agent(agent_metrics.agent_id);
    v_from date;
    v_to date;
    v_now timestamptz := now();
    v_r metrics.agent_recent;
    v_live date;
    v_accepted bigint;
    v_delivered bigint;
    v_on_time bigint;
    v_failed bigint;
    v_cancelled bigint;
    v_delivery_us bigint;
    v_acceptance_us bigint;
    v_dp float8[];
    v_ap float8[];
    v_days json;
begin
    select p.d_from, p.d_to into v_from, v_to from metrics.parse_period(agent_metrics."from", agent_metrics."to") p;
    perform metrics.set_cache_control(0);
    v_r := metrics.agent_recent_row(v_agent);
    if v_r.d_from = v_from and v_r.d_to <= v_to then
        v_live := v_r.d_to;
    else
        v_live := v_from;
        v_r := null;
    end if;
    -- the live days: their sums, their values (one element per delivery or acceptance, ascending)
    -- next to the row's, and their part of the series
    with days as (
        select a.* from metrics.agent_daily a
         where a.agent_id = v_agent and a.day >= v_live and a.day < v_to
    )
    select coalesce(sum(d.accepted), 0) + coalesce(v_r.accepted, 0), coalesce(sum(d.delivered), 0) + coalesce(v_r.delivered, 0),
           coalesce(sum(d.on_time), 0) + coalesce(v_r.on_time, 0), coalesce(sum(d.failed), 0) + coalesce(v_r.failed, 0),
           coalesce(sum(d.cancelled), 0) + coalesce(v_r.cancelled, 0),
           coalesce(sum(d.delivery_us), 0)::bigint + coalesce(v_r.delivery_us, 0),
           coalesce(sum(d.acceptance_us), 0)::bigint + coalesce(v_r.acceptance_us, 0),
           metrics.union_percentiles(
               v_r.delivery_values,
               array(select u.m from days x, unnest(x.delivery_minutes, x.delivery_counts) u (m, n), generate_series(1, u.n) r
                      order by u.m),
               array[0.5, 0.9]),
           metrics.union_percentiles(
               v_r.acceptance_values,
               array(select u.m from days x, unnest(x.acceptance_minutes, x.acceptance_counts) u (m, n), generate_series(1, u.n) r
                      order by u.m),
               array[0.5]),
           (select json_agg(metrics.agent_day(g.day::date, x.accepted, x.delivered, x.on_time, x.failed, x.cancelled, x.delivery_us)
                            order by g.day)
              from generate_series(v_live, v_to - 1, interval '1 day') g (day)
              left join days x on x.day = g.day::date)
      into v_accepted, v_delivered, v_on_time, v_failed, v_cancelled, v_delivery_us, v_acceptance_us, v_dp, v_ap, v_days
      from days d;
    if v_r.daily is not null then
        -- the row's series, then the live days' (both json_agg arrays: the same ", " between items)
        v_days := case when v_days is null then v_r.daily
                       else (left(v_r.daily::text, -1) || ', ' || substr(v_days::text, 2))::json end;
    end if;
    return json_build_object(
               'asOf', v_now, 'agentId', v_agent, 'from', v_from, 'to', v_to,
               'assignments', json_build_object('accepted', v_accepted, 'delivered', v_delivered,
                                                'failed', v_failed, 'cancelled', v_cancelled),
               'onTime', v_on_time, 'slaBreaches', v_delivered - v_on_time,
               'successRate', metrics.rate(v_delivered, v_delivered + v_failed),
               'onTimeRate', metrics.rate(v_on_time, v_delivered),
               'deliveryMinutes', json_build_object('mean', metrics.mean_minutes(v_delivery_us, v_delivered),
                                                    'p50', round(v_dp[1]::numeric, 2), 'p90', round(v_dp[2]::numeric, 2)),
               'acceptanceMinutes', json_build_object('mean', metrics.mean_minutes(v_acceptance_us, v_accepted),
                                                      'p50', round(v_ap[1]::numeric, 2)),
               'percentiles', 'minute_histogram',
               'openPastDue', (select count(*) from core.shipping_assignments a
                                where a.agent_id = v_agent and a.status in ('ACCEPTED', 'PICKED_UP', 'IN_TRANSIT')
                                  and a.sla_due_at < v_now),
               'daily', coalesce(v_days, '[]'));
end
$$;
comment on function api.agent_metrics(text, text, text) is $$Agent metrics
One agent over [from, to) (UTC dates, default the last 30 days): assignments by outcome, success and on-time rates, delivery time mean/p50/p90, acceptance latency, SLA breaches, open past due, and a per-day series. Agents may ask only about themselves.$$;
grant execute on function api.agent_metrics(text, text, text) to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/agent_leaderboard?from&to&zip_code&sort_by&sort_order&page&page_size&min_deliveries
-- -------------------------------------------------------------------------------------------------

create function api.agent_leaderboard(
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
comment on function api.agent_leaderboard(text, text, text, text, text, text, text, text) is $$Agent leaderboard
Agents ranked over [from, to) by sort_by (deliveries, success_rate, on_time_rate, avg_delivery_minutes), sort_order asc|desc, ties sharing a rank; zip_code keeps the agents serving it; rate rankings need min_deliveries (default 5). Paged: page >= 1, page_size 1-100 (default 20).$$;
grant execute on function api.agent_leaderboard(text, text, text, text, text, text, text, text) to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/geographic_coverage?zip_code&page&page_size
-- -------------------------------------------------------------------------------------------------

create function api.geographic_coverage(zip_code text default null, page text default null, page_size text default null)
returns json
language plpgsql
stable
set search_path = ''
as $$
declare
    v_zip text := metrics.parse_zip(geographic_coverage.zip_code);
    v_page integer := metrics.parse_int(geographic_coverage.page, 1, 1, 1000000, 'METRICS_INVALID_PAGE');
    v_limit integer := metrics.parse_int(geographic_coverage.page_size, 20, 1, 100, 'METRICS_INVALID_LIMIT');
    v_as_of timestamptz := metrics.as_of('geographic_coverage');
    v_result json;
begin
    perform metrics.set_cache_control(metrics.seconds_to_refresh('geographic_coverage'));
    -- the page: a range of the page-order index; every row shares the window (d_from, d_to)
    with page as (
        select g.* from metrics.geographic_coverage g
         where v_zip is null or g.zip_code = v_zip
         order by g.uncovered desc, g.demand desc, g.zip_code
         offset (v_page - 1)::bigint * v_limit limit v_limit
    )
    select json_build_object(
               'asOf', v_as_of,
               'from', (select g.d_from from metrics.geographic_coverage g limit 1),
               'to', (select g.d_to from metrics.geographic_coverage g limit 1),
               'page', v_page, 'limit', v_limit,
               'total', (select count(*) from metrics.geographic_coverage g where v_zip is null or g.zip_code = v_zip),
               'items', coalesce((
                   select json_agg(json_build_object(
                              'zipCode', p.zip_code, 'uncovered', p.uncovered, 'activeAgents', p.active_agents,
                              'demand', p.demand, 'deliveries', p.delivered, 'onTime', p.on_time,
                              'onTimeRate', metrics.rate(p.on_time, p.delivered),
                              'openOffers', p.open_offers,
                              'oldestOfferMinutes', round((extract(epoch from v_as_of - p.oldest_offer_at) / 60)::numeric, 1))
                          order by p.uncovered desc, p.demand desc, p.zip_code)
                     from page p), '[]'))
      into v_result;
    return v_result;
end
$$;
comment on function api.geographic_coverage(text, text, text) is $$Geographic coverage
Per zip code over the last 30 days: active agents, demand (orders), deliveries, on-time rate, open offers and the oldest one's age in minutes; zip codes with demand and no active agent first. Paged: page, page_size.$$;
grant execute on function api.geographic_coverage(text, text, text) to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/sla_summary?from&to&zip_code&agent_id
-- -------------------------------------------------------------------------------------------------

-- STABLE, not IMMUTABLE: json_build_object is stable, and an IMMUTABLE SQL function whose body is
-- not is never inlined: it was called (and planned) once per day of the series (~13 us a day).
create function metrics.sla_day(p_day date, p_delivered bigint, p_on_time bigint, p_minutes float8[])
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
comment on function metrics.sla_day(date, bigint, bigint, float8[]) is 'One day of the SLA summary''s series as JSON.';
grant execute on function metrics.sla_day(date, bigint, bigint, float8[]) to admin, platform_admin;

create function api.sla_summary("from" text default null, "to" text default null, zip_code text default null,
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
comment on function api.sla_summary(text, text, text, text) is $$SLA summary
Over [from, to) (UTC dates, default the last 30 days), all zip codes or one zip_code or one agent_id: delivered, on time, breached, on-time rate, delivery time p50/p90/p99 (minutes), open assignments and those already past due, and the same per day.$$;
grant execute on function api.sla_summary(text, text, text, text) to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/agent_activity?agent_id&before&page_size  (plan: GET /api/admin/agents/:id/activity)
-- -------------------------------------------------------------------------------------------------

create function api.agent_activity(agent_id text default null, before text default null, page text default null,
                                   page_size text default null)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- Newest first. Keyset: `before` = the nextCursor of the previous page ("<microseconds since the
-- epoch>:<history id>"), so page 1,000 costs what page 1 costs (an index range from the cursor);
-- page = n pages by offset instead.
declare
    v_agent bigint := metrics.resolve_agent(agent_activity.agent_id);
    v_limit integer := metrics.parse_int(agent_activity.page_size, 20, 1, 100, 'METRICS_INVALID_LIMIT');
    v_page integer := metrics.parse_int(agent_activity.page, 1, 1, 1000000, 'METRICS_INVALID_PAGE');
    v_at timestamptz;
    v_id bigint;
    v_items json;
    v_next text;
    v_r metrics.agent_recent := metrics.agent_recent_row(v_agent);
begin
    if agent_activity.before is not null then
        if agent_activity.before !~ '^-?[0-9]{1,18}:[0-9]{1,18}$' then
            perform metrics.raise_error('METRICS_INVALID_CURSOR', agent_activity.before);
        end if;
        v_at := timestamptz 'epoch' + split_part(agent_activity.before, ':', 1)::bigint * interval '1 microsecond';
        v_id := split_part(agent_activity.before, ':', 2)::bigint;
        v_page := null;
    end if;
    perform metrics.set_cache_control(0);
    with page as (
        select h.id, h.assignment_id, h.order_id, h.from_status, h.to_status, h.actor, h.reason, h.created_at
          from core.assignment_status_history h
         where h.agent_id = v_agent
           and (v_at is null or (h.created_at, h.id) < (v_at, v_id))
         order by h.created_at desc, h.id desc
         offset case when v_at is null then (v_page - 1)::bigint * v_limit else 0 end
         limit v_limit
    ), shaped as (
        select p.*, metrics.micros(p.created_at - timestamptz 'epoch')::text || ':' || p.id as cursor from page p
    )
    select json_agg(json_build_object('id', s.id, 'assignmentId', s.assignment_id, 'orderId', s.order_id,
                                      'fromStatus', s.from_status, 'toStatus', s.to_status, 'actor', s.actor,
                                      'reason', s.reason, 'at', s.created_at, 'cursor', s.cursor)
                    order by s.created_at desc, s.id desc),
           (array_agg(s.cursor order by s.created_at, s.id))[1]
      into v_items, v_next
      from shaped s;
    return json_build_object(
        'asOf', now(), 'agentId', v_agent, 'page', v_page, 'limit', v_limit,
        -- the history before the row's first live day is counted in metrics.agent_recent (sql/320)
        'total', case when v_r.agent_id is null
                      then (select count(*) from core.assignment_status_history h where h.agent_id = v_agent)
                      else v_r.history_rows
                           + (select count(*) from core.assignment_status_history h
                               where h.agent_id = v_agent and h.created_at >= v_r.d_to::timestamp at time zone 'UTC') end,
        'nextCursor', case when json_array_length(coalesce(v_items, '[]')) = v_limit then v_next end,
        'items', coalesce(v_items, '[]'));
end
$$;
comment on function api.agent_activity(text, text, text, text) is $$Agent activity
An agent's status history, newest first: keyset paging with before = the previous answer's nextCursor (page also accepted), page_size 1-100 (default 20). Agents may read only their own.$$;
grant execute on function api.agent_activity(text, text, text, text) to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- POST /rpc/refresh_metrics {view?}   GET /rpc/health_metrics   (admins)
-- -------------------------------------------------------------------------------------------------

create function api.refresh_metrics(view text default null)
returns json
language sql
volatile
security definer
set search_path = ''
as $$
    select json_build_object('refreshed', coalesce(json_agg(json_build_object(
               'view', r.view_name, 'asOf', r.as_of, 'durationMs', r.duration_ms) order by r.view_name), '[]'))
      from metrics.refresh(refresh_metrics.view, 'api') r
$$;
comment on function api.refresh_metrics(text) is $$Refresh metrics views now
view: leaderboard, sla_summary, geographic_coverage, agent_running_totals or agent_recent (all when omitted). Answers each view's new as-of and the refresh's duration.$$;
grant execute on function api.refresh_metrics(text) to admin, platform_admin;

create function api.health_metrics()
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
grant execute on function api.health_metrics() to admin, platform_admin;
