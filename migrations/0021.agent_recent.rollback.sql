-- Undo 0021: no metrics.agent_recent (its pg_cron job, registry row and refresh log rows go with
-- it) nor its helpers; api.agent_metrics and api.agent_activity as 0016 left them.
-- squawk: the view is derived data and the three functions dropped are its helpers, read by nothing
-- once the two endpoints below are restored.
-- squawk-ignore-file ban-drop-view, ban-drop-function
set local lock_timeout = '5s';
set local statement_timeout = '5min';

do $jobs$
begin
    -- EXECUTE: schema cron exists only where pg_cron runs
    if to_regclass('cron.job') is not null then
        execute 'select cron.unschedule(j.jobid) from cron.job j where j.jobname = $1'
          using 'waybill-metrics-agent-recent';
    end if;
end
$jobs$;

create or replace function api.agent_metrics(agent_id text default null, "from" text default null, "to" text default null)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- From metrics.agent_daily (always fresh): O(days in the period).
declare
    v_agent bigint := metrics.resolve_agent(agent_metrics.agent_id);
    v_from date;
    v_to date;
    v_now timestamptz := now();
    v_result json;
begin
    select p.d_from, p.d_to into v_from, v_to from metrics.parse_period(agent_metrics."from", agent_metrics."to") p;
    perform metrics.set_cache_control(0);
    with days as (
        select a.* from metrics.agent_daily a
         where a.agent_id = v_agent and a.day >= v_from and a.day < v_to
    ), tot as (
        select coalesce(sum(d.accepted), 0)::bigint as accepted, coalesce(sum(d.delivered), 0)::bigint as delivered,
               coalesce(sum(d.on_time), 0)::bigint as on_time, coalesce(sum(d.failed), 0)::bigint as failed,
               coalesce(sum(d.cancelled), 0)::bigint as cancelled,
               coalesce(sum(d.delivery_us), 0)::bigint as delivery_us, coalesce(sum(d.acceptance_us), 0)::bigint as acceptance_us,
               (select metrics.hist_percentiles(array_agg(u.m), array_agg(u.n), array[0.5, 0.9])
                  from days x, unnest(x.delivery_minutes, x.delivery_counts) u (m, n)) as dp,
               (select metrics.hist_percentiles(array_agg(u.m), array_agg(u.n), array[0.5])
                  from days x, unnest(x.acceptance_minutes, x.acceptance_counts) u (m, n)) as ap
          from days d
    ), series as (
        select coalesce(json_agg(json_build_object(
                   'day', g.day::date, 'accepted', coalesce(d.accepted, 0), 'delivered', coalesce(d.delivered, 0),
                   'onTime', coalesce(d.on_time, 0), 'breached', coalesce(d.delivered - d.on_time, 0),
                   'failed', coalesce(d.failed, 0), 'cancelled', coalesce(d.cancelled, 0),
                   'successRate', metrics.rate(d.delivered, d.delivered + d.failed),
                   'onTimeRate', metrics.rate(d.on_time, d.delivered),
                   'meanDeliveryMinutes', metrics.mean_minutes(d.delivery_us, d.delivered)) order by g.day), '[]') as j
          from generate_series(v_from, v_to - 1, interval '1 day') g (day)
          left join days d on d.day = g.day::date
    )
    select json_build_object(
               'asOf', v_now, 'agentId', v_agent, 'from', v_from, 'to', v_to,
               'assignments', json_build_object('accepted', t.accepted, 'delivered', t.delivered,
                                                'failed', t.failed, 'cancelled', t.cancelled),
               'onTime', t.on_time, 'slaBreaches', t.delivered - t.on_time,
               'successRate', metrics.rate(t.delivered, t.delivered + t.failed),
               'onTimeRate', metrics.rate(t.on_time, t.delivered),
               'deliveryMinutes', json_build_object('mean', metrics.mean_minutes(t.delivery_us, t.delivered),
                                                    'p50', round(t.dp[1]::numeric, 2), 'p90', round(t.dp[2]::numeric, 2)),
               'acceptanceMinutes', json_build_object('mean', metrics.mean_minutes(t.acceptance_us, t.accepted),
                                                      'p50', round(t.ap[1]::numeric, 2)),
               'percentiles', 'minute_histogram',
               'openPastDue', (select count(*) from core.shipping_assignments a
                                where a.agent_id = v_agent and a.status in ('ACCEPTED', 'PICKED_UP', 'IN_TRANSIT')
                                  and a.sla_due_at < v_now),
               'daily', s.j)
      into v_result
      from tot t, series s;
    return v_result;
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
        'total', (select count(*) from core.assignment_status_history h where h.agent_id = v_agent),
        'nextCursor', case when json_array_length(coalesce(v_items, '[]')) = v_limit then v_next end,
        'items', coalesce(v_items, '[]'));
end
$$;

drop function metrics.agent_recent_row(bigint);
delete from metrics.refresh_log where view_name = 'agent_recent';
delete from metrics.views where name = 'agent_recent';
drop materialized view metrics.agent_recent;
drop function metrics.union_percentiles(integer[], integer[], float8[]);
drop function metrics.agent_day(date, integer, integer, integer, integer, integer, bigint);
update ops.error_codes set message = 'view must be one of leaderboard, sla_summary, geographic_coverage, agent_running_totals; got %s' where code = 'METRICS_INVALID_VIEW';
comment on function api.refresh_metrics(text) is $$Refresh metrics views now
view: leaderboard, sla_summary, geographic_coverage or agent_running_totals (all when omitted). Answers each view's new as-of and the refresh's duration.$$;
