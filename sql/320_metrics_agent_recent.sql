-- =================================================================================================
-- 320 Metrics: each agent's closed days of the default window, for agent_metrics and agent_activity
-- api.agent_metrics' default period (the last 30 UTC days including today) merged up to ~900
-- minute buckets per call for a busy agent and built its 30-day series (~3 ms at 1M assignments);
-- api.agent_activity counted the agent's whole history for `total` (~0.6 ms for 9,500 rows). This
-- view holds, per agent, what the closed days of that window and the history before them add up to;
-- an answer adds the days after them (today, usually) live, so it stays exact and live (asOf = now).
-- The closed days follow metrics.agent_running_totals' rule (sql/315): days that ended at least 10
-- minutes before the refresh began, once the transactions begun before their midnight have committed.
-- =================================================================================================

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
