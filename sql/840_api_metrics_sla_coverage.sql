-- =================================================================================================
-- 840 The geographic coverage and SLA summary endpoints (plan Track B; docs/metrics.md)
-- Split from sql/830_api_metrics.sql, which holds the argument parsing they use (metrics.parse_*):
-- migrations 0008-0023 that say "sql/830_api_metrics.sql" for these functions mean this file.
-- =================================================================================================

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/geographic_coverage?zip_code&page&page_size
-- -------------------------------------------------------------------------------------------------

-- It takes the view's row type (0027): a migration that recreates metrics.geographic_coverage drops
-- this function first and creates it again after.
create function metrics.coverage_item(p_row metrics.geographic_coverage, p_as_of timestamptz)
returns json
language sql
stable
as $$
    select json_build_object('zipCode', p_row.zip_code, 'uncovered', p_row.uncovered, 'activeAgents', p_row.active_agents,
                             'demand', p_row.demand, 'deliveries', p_row.delivered, 'onTime', p_row.on_time,
                             'onTimeRate', metrics.rate(p_row.on_time, p_row.delivered),
                             'openOffers', p_row.open_offers,
                             'oldestOfferMinutes', round((extract(epoch from p_as_of - p_row.oldest_offer_at) / 60)::numeric, 1))
$$;
comment on function metrics.coverage_item(metrics.geographic_coverage, timestamptz) is 'One zip code of the coverage answer as JSON (the oldest offer''s age as of p_as_of).';
grant execute on function metrics.coverage_item(metrics.geographic_coverage, timestamptz) to admin, platform_admin;

create function api.geographic_coverage(zip_code text default null, page text default null, page_size text default null)
returns json
language plpgsql
stable
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
-- Planned once per session (0027): one statement per filter, each with the plan every call wants (a
-- range of the page-order index; the zip code's unique-index probe). "zip is null or zip_code = …"
-- in one statement had no good generic plan, and PL/pgSQL planned it again on every call: 0.29 ms
-- of backend time per call, 0.19 ms since (docs/performance/agent-metrics.md "Migration 0027").
declare
    v_zip text := metrics.parse_zip(geographic_coverage.zip_code);
    v_page integer := metrics.parse_int(geographic_coverage.page, 1, 1, 1000000, 'METRICS_INVALID_PAGE');
    v_limit integer := metrics.parse_int(geographic_coverage.page_size, 20, 1, 100, 'METRICS_INVALID_LIMIT');
    v_as_of timestamptz := metrics.as_of('geographic_coverage');
    v_items json;
    v_total bigint;
begin
    perform metrics.set_cache_control(metrics.seconds_to_refresh('geographic_coverage'));
    if v_zip is null then
        select json_agg(metrics.coverage_item(p, v_as_of) order by p.uncovered desc, p.demand desc, p.zip_code)
          into v_items
          from (select g.* from metrics.geographic_coverage g
                 order by g.uncovered desc, g.demand desc, g.zip_code
                offset (v_page - 1)::bigint * v_limit limit v_limit) p;
        select count(*) into v_total from metrics.geographic_coverage g;
    else
        -- at most one row: on page 1 (a later page of one row is empty, as any page past the end)
        select json_agg(metrics.coverage_item(g, v_as_of)), count(*) into v_items, v_total
          from metrics.geographic_coverage g where g.zip_code = v_zip;
        if v_page > 1 then
            v_items := null;
        end if;
    end if;
    -- every row shares the window (d_from, d_to)
    return json_build_object(
        'asOf', v_as_of,
        'from', (select g.d_from from metrics.geographic_coverage g limit 1),
        'to', (select g.d_to from metrics.geographic_coverage g limit 1),
        'page', v_page, 'limit', v_limit, 'total', v_total, 'items', coalesce(v_items, '[]'));
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

create function metrics.sla_summary_answer(p_from date, p_to date, p_zip text, p_agent bigint)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- All zip codes or one zip code: metrics.sla_summary (exact per day and for a standard window; a
-- non-standard period's percentiles from cumulative minute histograms), as of its refresh: the
-- answer depends on the view's contents alone (sql/325 caches it while they last). One agent:
-- metrics.agent_daily, live (percentiles from minute histograms).
declare
    v_zip text := p_zip;
    v_agent bigint := p_agent;
    v_from date := p_from;
    v_to date := p_to;
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
comment on function metrics.sla_summary_answer(date, date, text, bigint) is 'The SLA summary answer over [from, to) for all zip codes, one zip code or one agent (arguments already parsed).';
grant execute on function metrics.sla_summary_answer(date, date, text, bigint) to admin, platform_admin;

create function api.sla_summary("from" text default null, "to" text default null, zip_code text default null,
                                agent_id text default null)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- metrics.sla_summary_answer. All zip codes or one: as of metrics.sla_summary's refresh, read from
-- the answer cache (sql/325) while the view's as-of is the one it was computed from; a miss answers
-- it and sends its key to the cache worker. One agent: live, never cached.
declare
    v_zip text := metrics.parse_zip(sla_summary.zip_code);
    v_agent bigint;
    v_from date;
    v_to date;
    v_cache_key text;
    v_answer json;
begin
    if sla_summary.agent_id is not null then
        if v_zip is not null then
            perform metrics.raise_error('INVALID_ARGUMENT', 'give zip_code or agent_id, not both');
        end if;
        v_agent := metrics.resolve_agent(sla_summary.agent_id);
    end if;
    select p.d_from, p.d_to into v_from, v_to from metrics.parse_period(sla_summary."from", sla_summary."to") p;
    if v_agent is not null then
        perform metrics.set_cache_control(0);
        return metrics.sla_summary_answer(v_from, v_to, null, v_agent);
    end if;
    perform metrics.set_cache_control(metrics.seconds_to_refresh('sla_summary'));
    v_cache_key := metrics.sla_summary_cache_key(v_from, v_to, v_zip);
    select i.item into v_answer
      from metrics.answer_cache e
      join metrics.answer_cache_items i on i.entry_id = e.id and i.ordinal = 1
     where e.key = v_cache_key and e.expires_at > now()
       and e.source_as_of is not distinct from metrics.as_of('sla_summary');
    if not found then
        v_answer := metrics.sla_summary_answer(v_from, v_to, v_zip, null);
        perform pg_notify(metrics.answer_cache_channel(), v_cache_key);
    end if;
    return v_answer;
end
$$;
comment on function api.sla_summary(text, text, text, text) is $$SLA summary
Over [from, to) (UTC dates, default the last 30 days), all zip codes or one zip_code or one agent_id: delivered, on time, breached, on-time rate, delivery time p50/p90/p99 (minutes), open assignments and those already past due, and the same per day.$$;
grant execute on function api.sla_summary(text, text, text, text) to admin, platform_admin;
