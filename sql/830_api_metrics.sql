-- =================================================================================================
-- 830 The metrics endpoints (plan Track B; docs/metrics.md defines every figure)
-- GET-able (STABLE) functions returning one JSON object each. Read functions are SECURITY INVOKER:
-- the request role needs SELECT on what they read, and row-level security keeps an agent on its own
-- rows (metrics.agent_daily, core.assignment_status_history); the explicit agent check turns "not
-- yours" into a 403 instead of an empty answer. Arguments are text so that a bad value is a
-- registered 400 naming what is allowed, never a cast error. `limit` is reserved by PostgREST on GET
-- (it pages the rows a function returns), so the page size travels as `page_size`; answers say `limit`.
-- Here: argument parsing, agent_metrics, agent_activity, refresh_metrics and health_metrics; the
-- leaderboard is sql/835_api_metrics_leaderboard.sql, coverage and the SLA summary
-- sql/840_api_metrics_sla_coverage.sql.
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
-- GET /rpc/agent_activity?agent_id&before&page_size  (plan: GET /api/admin/agents/:id/activity)
-- -------------------------------------------------------------------------------------------------

create function api.agent_activity(agent_id text default null, before text default null, page text default null,
                                   page_size text default null)
returns json
language plpgsql
stable
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
-- Newest first. Keyset: `before` = the nextCursor of the previous page ("<microseconds since the
-- epoch>:<history id>"), so page 1,000 costs what page 1 costs (an index range from the cursor);
-- page = n pages by offset instead. Planned once per session (0027): each statement has one shape
-- whatever the arguments (no cursor = a cursor past the newest row, no page = offset 0) and its
-- generic plan is the index range every call wants. Left to choose, PL/pgSQL planned the page again
-- on every call (a generic plan with an unknown limit looks dearer than a custom one): 0.34 ms of
-- backend time per call, 0.14 ms since (docs/performance/agent-metrics.md "Migration 0027").
declare
    v_agent bigint := metrics.resolve_agent(agent_activity.agent_id);
    v_limit integer := metrics.parse_int(agent_activity.page_size, 20, 1, 100, 'METRICS_INVALID_LIMIT');
    v_page integer := metrics.parse_int(agent_activity.page, 1, 1, 1000000, 'METRICS_INVALID_PAGE');
    v_at timestamptz := timestamptz 'infinity';
    v_id bigint := 9223372036854775807;
    v_items json;
    v_next text;
    v_total bigint;
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
    select json_agg(json_build_object('id', s.id, 'assignmentId', s.assignment_id, 'orderId', s.order_id,
                                      'fromStatus', s.from_status, 'toStatus', s.to_status, 'actor', s.actor,
                                      'reason', s.reason, 'at', s.created_at, 'cursor', s.cursor)
                    order by s.created_at desc, s.id desc),
           (array_agg(s.cursor order by s.created_at, s.id))[1]
      into v_items, v_next
      from (select h.id, h.assignment_id, h.order_id, h.from_status, h.to_status, h.actor, h.reason, h.created_at,
                   metrics.micros(h.created_at - timestamptz 'epoch')::text || ':' || h.id as cursor
              from core.assignment_status_history h
             where h.agent_id = v_agent
               and (h.created_at, h.id) < (v_at, v_id)
             order by h.created_at desc, h.id desc
             offset coalesce((v_page - 1)::bigint * v_limit, 0)
             limit v_limit) s;
    -- the history before the row's first live day is counted in metrics.agent_recent (sql/320)
    if v_r.agent_id is null then
        select count(*) into v_total from core.assignment_status_history h where h.agent_id = v_agent;
    else
        select v_r.history_rows + count(*) into v_total
          from core.assignment_status_history h
         where h.agent_id = v_agent and h.created_at >= v_r.d_to::timestamp at time zone 'UTC';
    end if;
    return json_build_object(
        'asOf', now(), 'agentId', v_agent, 'page', v_page, 'limit', v_limit, 'total', v_total,
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
-- pg_cron lives in this database); the answer cache's size and its worker's connections.
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
                                        order by x.as_of desc limit 1) l on true),
        -- The answer cache (sql/325, 0026): how much it holds, and whether its worker is connected
        -- (waybill_owner reads every session: pg_read_all_stats).
        'answerCache', (select json_build_object(
                            'answers', count(*), 'valid', count(*) filter (where e.expires_at > now()),
                            'items', coalesce(sum(e.total), 0), 'bytes', coalesce(sum(e.size_bytes), 0),
                            'workerConnections', (select count(*) from pg_catalog.pg_stat_activity a
                                                   where a.usename = 'metrics_cache'
                                                     and a.datname = pg_catalog.current_database()))
                          from metrics.answer_cache e));
end
$$;
comment on function api.health_metrics() is $$Metrics health
Each metrics view's as-of, age, staleness (older than twice its TTL) and last refresh duration, each pg_cron job's schedule, last run and status, and the answer cache's size and its worker's connections.$$;
grant execute on function api.health_metrics() to admin, platform_admin;
