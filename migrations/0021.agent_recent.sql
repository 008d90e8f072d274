-- 0021 agent recent (issue 11 §6: requests/s >= 0.5 x health_db at 1M assignments): agent_metrics'
-- default period and agent_activity's total read a per-agent materialized view of the closed days,
-- metrics.agent_recent, and add the days after them live. agent_metrics merged up to ~900 minute
-- buckets and built 30 series items per call (~3 ms of backend CPU for a busy agent), agent_activity
-- counted the agent's whole history (~0.6 ms): docs/performance/agent-metrics.md "Migration 0021".
-- depends: 0020.rollup_lean
-- Same text as sql/320_metrics_agent_recent.sql and sql/830_api_metrics.sql (tests/test_migrations.py
-- proves both build the same schema).
-- squawk: the unique index is built on the view created just above in this transaction, which
-- nothing reads yet.
-- squawk-ignore-file require-concurrent-index-creation

-- A deploy never hangs behind a long transaction; the view's first build reads every agent's
-- history (~5 s at 1M assignments).
set local lock_timeout = '5s';
set local statement_timeout = '5min';

-- -------------------------------------------------------------------------------------------------
-- Helpers shared by the view and api.agent_metrics (one definition of a day's figures)
-- -------------------------------------------------------------------------------------------------

-- STABLE, not IMMUTABLE, so that it is inlined (json_build_object is stable: see metrics.sla_day).
create function metrics.agent_day(p_day date, p_accepted integer, p_delivered integer, p_on_time integer,
                                  p_failed integer, p_cancelled integer, p_delivery_us bigint)
returns json
language sql
stable
as $$
    select json_build_object(
               'day', p_day, 'accepted', coalesce(p_accepted, 0), 'delivered', coalesce(p_delivered, 0),
               'onTime', coalesce(p_on_time, 0), 'breached', coalesce(p_delivered - p_on_time, 0),
               'failed', coalesce(p_failed, 0), 'cancelled', coalesce(p_cancelled, 0),
               'successRate', metrics.rate(p_delivered, p_delivered + p_failed),
               'onTimeRate', metrics.rate(p_on_time, p_delivered),
               'meanDeliveryMinutes', metrics.mean_minutes(p_delivery_us, p_delivered))
$$;
comment on function metrics.agent_day(date, integer, integer, integer, integer, integer, bigint) is 'One day of agent_metrics'' series as JSON (null counts are 0).';
grant execute on function metrics.agent_day(date, integer, integer, integer, integer, integer, bigint)
    to admin, platform_admin, agent;

create function metrics.union_percentiles(p_a integer[], p_b integer[], p_fractions float8[])
returns float8[]
language plpgsql
immutable
set search_path = ''
as $$
-- percentile_cont of each fraction over the values of two ascending arrays taken together (one
-- element per value): position f * (n - 1), linear interpolation between the values at its floor
-- and ceil, as metrics.sorted_hist_percentiles. The value at a 0-based rank r is the (r + 1)-th
-- smallest of the two arrays: a binary search over how many of those r + 1 come from p_a, so
-- O(log) per rank whatever the lengths (a busy agent's 900 closed-day values and today's few are
-- never merged). Null when both are empty.
declare
    v_na integer := coalesce(cardinality(p_a), 0);
    v_nb integer := coalesce(cardinality(p_b), 0);
    v_out float8[] := '{}'::float8[];
    v_vals float8[];
    v_pos float8;
    v_rank integer;
    v_t integer;
    v_lo integer;
    v_hi integer;
    v_i integer;
begin
    if v_na + v_nb = 0 then
        return null;
    end if;
    for k in 1 .. coalesce(cardinality(p_fractions), 0) loop
        v_pos := (v_na + v_nb - 1) * p_fractions[k];
        v_vals := '{}'::float8[];
        foreach v_rank in array array[floor(v_pos)::integer, ceil(v_pos)::integer] loop
            -- take v_lo values from p_a and v_t - v_lo from p_b: the least v_lo whose next p_a
            -- value is not below the last p_b value taken
            v_t := v_rank + 1;
            v_lo := greatest(0, v_t - v_nb);
            v_hi := least(v_t, v_na);
            while v_lo < v_hi loop
                v_i := (v_lo + v_hi) / 2;
                if p_a[v_i + 1] < p_b[v_t - v_i] then
                    v_lo := v_i + 1;
                else
                    v_hi := v_i;
                end if;
            end loop;
            v_vals := v_vals || greatest(case when v_lo > 0 then p_a[v_lo] end,
                                         case when v_t > v_lo then p_b[v_t - v_lo] end)::float8;
        end loop;
        v_out[k] := v_vals[1] + (v_pos - floor(v_pos)) * (v_vals[2] - v_vals[1]);
    end loop;
    return v_out;
end
$$;
comment on function metrics.union_percentiles(integer[], integer[], float8[]) is
    'percentile_cont of each fraction over two ascending arrays of values taken together (null when both are empty).';
grant execute on function metrics.union_percentiles(integer[], integer[], float8[]) to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- The view
-- -------------------------------------------------------------------------------------------------

-- Every agent (an agent without a row is one created after the refresh: its answers take the
-- request-time path). The window is [d_to - 29, d_to): with d_to = today it is the default period
-- less today.
create materialized view metrics.agent_recent as
with lim as (
    select metrics.utc_day(now() - interval '10 minutes') as d_to
), hist as (
    select h.agent_id, count(*) as n
      from core.assignment_status_history h, lim
     where h.agent_id is not null and h.created_at < lim.d_to::timestamp at time zone 'UTC'
     group by h.agent_id
), win as (
    select a.agent_id, sum(a.accepted)::bigint as accepted, sum(a.delivered)::bigint as delivered,
           sum(a.on_time)::bigint as on_time, sum(a.failed)::bigint as failed,
           sum(a.cancelled)::bigint as cancelled, sum(a.delivery_us)::bigint as delivery_us,
           sum(a.acceptance_us)::bigint as acceptance_us
      from metrics.agent_daily a, lim
     where a.day >= lim.d_to - 29 and a.day < lim.d_to
     group by a.agent_id
), dv as (
    -- one element per delivery: its delivery time in whole minutes, ascending
    select a.agent_id, array_agg(u.m order by u.m) as v
      from metrics.agent_daily a, lim, unnest(a.delivery_minutes, a.delivery_counts) u (m, n), generate_series(1, u.n) r
     where a.day >= lim.d_to - 29 and a.day < lim.d_to
     group by a.agent_id
), av as (
    select a.agent_id, array_agg(u.m order by u.m) as v
      from metrics.agent_daily a, lim, unnest(a.acceptance_minutes, a.acceptance_counts) u (m, n), generate_series(1, u.n) r
     where a.day >= lim.d_to - 29 and a.day < lim.d_to
     group by a.agent_id
), series as (
    select ag.id as agent_id,
           json_agg(metrics.agent_day(g.day::date, d.accepted, d.delivered, d.on_time, d.failed, d.cancelled, d.delivery_us)
                    order by g.day) as daily
      from core.delivery_agents ag
     cross join lim
     cross join generate_series(lim.d_to - 29, lim.d_to - 1, interval '1 day') g (day)
      left join metrics.agent_daily d on d.agent_id = ag.id and d.day = g.day::date
     group by ag.id
)
select ag.id as agent_id, lim.d_to - 29 as d_from, lim.d_to as d_to, coalesce(hist.n, 0)::bigint as history_rows,
       coalesce(win.accepted, 0) as accepted, coalesce(win.delivered, 0) as delivered,
       coalesce(win.on_time, 0) as on_time, coalesce(win.failed, 0) as failed,
       coalesce(win.cancelled, 0) as cancelled, coalesce(win.delivery_us, 0) as delivery_us,
       coalesce(win.acceptance_us, 0) as acceptance_us,
       coalesce(dv.v, '{}') as delivery_values, coalesce(av.v, '{}') as acceptance_values, series.daily
  from core.delivery_agents ag
 cross join lim
  left join hist on hist.agent_id = ag.id
  left join win on win.agent_id = ag.id
  left join dv on dv.agent_id = ag.id
  left join av on av.agent_id = ag.id
  left join series on series.agent_id = ag.id
with data;
comment on materialized view metrics.agent_recent is 'Per agent: the closed days of the default 30-day window summed and its history before them counted, for agent_metrics and agent_activity; refreshed every 30 minutes.';
comment on column metrics.agent_recent.d_from is 'First day of the closed days (every row: d_to - 29).';
comment on column metrics.agent_recent.d_to is 'The day after the closed days: the first day an answer sums live.';
comment on column metrics.agent_recent.history_rows is 'The agent''s core.assignment_status_history rows created before d_to (midnight UTC).';
comment on column metrics.agent_recent.delivery_values is 'Delivery time of each delivery of the closed days, in whole minutes, ascending (one element per delivery).';
comment on column metrics.agent_recent.acceptance_values is 'Acceptance latency of each acceptance of the closed days, in whole minutes, ascending.';
comment on column metrics.agent_recent.daily is 'agent_metrics'' per-day series for the closed days (metrics.agent_day of each).';
create unique index agent_recent_agent_id_key on metrics.agent_recent (agent_id);
comment on index metrics.agent_recent_agent_id_key is 'One row per agent: REFRESH CONCURRENTLY''s key; an answer reads its agent''s row.';
-- Staff only: a materialized view has no row-level security. Agents read their own row through
-- metrics.agent_recent_row, which checks the JWT's agent as the rollups' policy does.
grant select on metrics.agent_recent to admin, platform_admin;

insert into metrics.views (name, matview, ttl_minutes, cron_job) values
    ('agent_recent', 'agent_recent', 30, 'waybill-metrics-agent-recent');

create function metrics.agent_recent_row(p_agent_id bigint)
returns metrics.agent_recent
language plpgsql
stable
security definer
set search_path = ''
as $$
-- The agent's row, for staff or for the agent itself (null for anyone else: the endpoints have
-- already answered another agent's id with a 403).
declare
    v_row metrics.agent_recent;
begin
    if auth.role() is distinct from 'agent' or p_agent_id = auth.agent_id() then
        select r.* into v_row from metrics.agent_recent r where r.agent_id = p_agent_id;
    end if;
    return v_row;
end
$$;
comment on function metrics.agent_recent_row(bigint) is 'One agent''s metrics.agent_recent row, for staff or the agent itself (the view has no row-level security).';
grant execute on function metrics.agent_recent_row(bigint) to admin, platform_admin, agent;

-- The fifth view's pg_cron job.
do $jobs$
begin
    perform metrics.schedule_refresh_jobs();
end
$jobs$;

update ops.error_codes set message = 'view must be one of leaderboard, sla_summary, geographic_coverage, agent_running_totals, agent_recent; got %s' where code = 'METRICS_INVALID_VIEW';
comment on function api.refresh_metrics(text) is $$Refresh metrics views now
view: leaderboard, sla_summary, geographic_coverage, agent_running_totals or agent_recent (all when omitted). Answers each view's new as-of and the refresh's duration.$$;

create or replace function api.agent_metrics(agent_id text default null, "from" text default null, "to" text default null)
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

create or replace function api.agent_activity(agent_id text default null, before text default null, page text default null,
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

-- ---- existing data: the new view's as-of ----
do $existing$
begin
    if exists (select 1 from core.shipping_assignments) then
        perform metrics.refresh('agent_recent', 'migration');
    end if;
end
$existing$;
