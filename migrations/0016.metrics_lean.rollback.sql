-- Undo 0016: metrics.agent_daily gets back its jsonb histograms (refilled by rebuild_rollups), and the
-- trigger, rebuild_rollups, agent_metrics, sla_summary, agent_leaderboard and geographic_coverage
-- as 0014 left them; metrics.sla_summary
-- without its 'cum' rows and all-zip 'open' row, no cum_hist_percentiles, and geographic_coverage
-- without its page-order index.
-- squawk: the arrays are derived data, refilled below as jsonb; every reader and writer is restored
-- in this same file.
-- The view is rebuilt as 0014 made it (its index on the view created just above, read by nothing yet).
-- The shape check and the coverage index dropped are the ones 0016 added.
-- squawk-ignore-file ban-drop-column, ban-drop-function, ban-drop-view, require-concurrent-index-creation, ban-drop-constraint, require-concurrent-index-deletion
set local lock_timeout = '5s';
set local statement_timeout = '5min';

alter table metrics.agent_daily
    add column delivery_hist jsonb not null default '{}',
    add column acceptance_hist jsonb not null default '{}';
comment on column metrics.agent_daily.delivery_hist is 'Delivery times of the day''s deliveries: {whole minutes: count}.';
comment on column metrics.agent_daily.acceptance_hist is 'Acceptance latencies of the day''s acceptances: {whole minutes: count}.';

create function metrics.hist_add(p_hist jsonb, p_minute integer)
returns jsonb
language sql
immutable
as $$
    select p_hist || jsonb_build_object(p_minute::text, coalesce((p_hist ->> p_minute::text)::bigint, 0) + 1)
$$;
comment on function metrics.hist_add(jsonb, integer) is 'A minute histogram {minute: count} with one more value in bucket p_minute.';

create function metrics.hist_percentiles(p_hists jsonb[], p_fractions float8[])
returns float8[]
language plpgsql
immutable
set search_path = ''
as $$
-- The minute histograms {minute: count} merged, then metrics.sorted_hist_percentiles. PL/pgSQL, not
-- SQL, so its one query is planned once per session (a non-inlined SQL function is planned on every call).
declare
    v_m integer[];
    v_n bigint[];
begin
    select array_agg(b.m order by b.m), array_agg(b.n order by b.m) into v_m, v_n
      from (select e.key::integer as m, sum(e.value::bigint)::bigint as n
              from unnest(p_hists) h, jsonb_each_text(h) e
             group by e.key::integer) b;
    return metrics.sorted_hist_percentiles(v_m, v_n, p_fractions);
end
$$;
comment on function metrics.hist_percentiles(jsonb[], float8[]) is
    'percentile_cont of each fraction over the values of minute histograms, merged (null when empty).';
grant execute on function metrics.hist_add(jsonb, integer), metrics.hist_percentiles(jsonb[], float8[])
    to admin, platform_admin, agent;

create or replace function metrics.tg_shipping_assignments__rollup()
returns trigger
language plpgsql
set search_path = ''
as $$
-- AFTER an offer (INSERT) or a status change to ACCEPTED, DELIVERED, FAILED or CANCELLED: count the
-- event in the agent's and the zip code's row of the event's UTC day (an offer: the zip code's only;
-- an acceptance: the agent's only). A row inserted with a later
-- status (fixtures, hand-made data) carries several events: each is counted, as rebuild_rollups does.
-- Hand-made rows may lack an event's timestamp: updated_at stands in (accepted_at: created_at as the
-- start of a delivery), in rebuild_rollups too, so that no write ever fails here.
declare
    v_events text[];
    v_event text;
    v_day date;
    v_min integer;
    v_us bigint;
    v_on_time integer;
begin
    if tg_op = 'UPDATE' then
        v_events := array[new.status];
    else
        v_events := array['OFFERED'];
        if new.accepted_at is not null and new.agent_id is not null then
            v_events := v_events || 'ACCEPTED'::text;
        end if;
        if new.status in ('DELIVERED', 'FAILED', 'CANCELLED') then
            v_events := v_events || new.status;
        end if;
    end if;
    foreach v_event in array v_events loop
        if v_event = 'OFFERED' then
            insert into metrics.zip_daily as z (zip_code, day, offered)
            values (new.zip_code, metrics.utc_day(new.created_at), 1)
            on conflict (zip_code, day) do update set offered = z.offered + 1;
        elsif v_event = 'ACCEPTED' then
            v_day := metrics.utc_day(coalesce(new.accepted_at, new.updated_at));
            v_min := metrics.minutes(coalesce(new.accepted_at, new.updated_at) - new.created_at);
            v_us := metrics.micros(coalesce(new.accepted_at, new.updated_at) - new.created_at);
            insert into metrics.agent_daily as a (agent_id, day, accepted, acceptance_us, acceptance_hist)
            values (new.agent_id, v_day, 1, v_us, jsonb_build_object(v_min::text, 1))
            on conflict (agent_id, day) do update
                set accepted = a.accepted + 1, acceptance_us = a.acceptance_us + v_us,
                    acceptance_hist = metrics.hist_add(a.acceptance_hist, v_min);
        elsif v_event = 'DELIVERED' then
            v_day := metrics.utc_day(new.delivered_at);
            v_min := metrics.minutes(new.delivered_at - coalesce(new.accepted_at, new.created_at));
            v_us := metrics.micros(new.delivered_at - coalesce(new.accepted_at, new.created_at));
            v_on_time := (new.delivered_at <= new.sla_due_at)::integer;
            insert into metrics.agent_daily as a (agent_id, day, delivered, on_time, delivery_us, delivery_hist)
            values (new.agent_id, v_day, 1, v_on_time, v_us, jsonb_build_object(v_min::text, 1))
            on conflict (agent_id, day) do update
                set delivered = a.delivered + 1, on_time = a.on_time + v_on_time,
                    delivery_us = a.delivery_us + v_us, delivery_hist = metrics.hist_add(a.delivery_hist, v_min);
            insert into metrics.zip_daily as z (zip_code, day, delivered, on_time, delivery_us)
            values (new.zip_code, v_day, 1, v_on_time, v_us)
            on conflict (zip_code, day) do update
                set delivered = z.delivered + 1, on_time = z.on_time + v_on_time, delivery_us = z.delivery_us + v_us;
        elsif v_event = 'FAILED' then
            v_day := metrics.utc_day(coalesce(new.failed_at, new.updated_at));
            insert into metrics.agent_daily as a (agent_id, day, failed)
            values (new.agent_id, v_day, 1)
            on conflict (agent_id, day) do update set failed = a.failed + 1;
            insert into metrics.zip_daily as z (zip_code, day, failed)
            values (new.zip_code, v_day, 1)
            on conflict (zip_code, day) do update set failed = z.failed + 1;
        elsif v_event = 'CANCELLED' then
            v_day := metrics.utc_day(coalesce(new.cancelled_at, new.updated_at));
            if new.agent_id is not null then
                insert into metrics.agent_daily as a (agent_id, day, cancelled)
                values (new.agent_id, v_day, 1)
                on conflict (agent_id, day) do update set cancelled = a.cancelled + 1;
            end if;
            insert into metrics.zip_daily as z (zip_code, day, cancelled)
            values (new.zip_code, v_day, 1)
            on conflict (zip_code, day) do update set cancelled = z.cancelled + 1;
        end if;
    end loop;
    return null;
end
$$;
comment on function metrics.tg_shipping_assignments__rollup() is
    'Trigger: counts an offer, acceptance, delivery, failure or cancellation in metrics.agent_daily and metrics.zip_daily.';

create or replace function metrics.rebuild_rollups()
returns void
language plpgsql
volatile
set search_path = ''
as $$
-- Recompute metrics.agent_daily and metrics.zip_daily from core.shipping_assignments. The ACCESS
-- EXCLUSIVE lock waits for transitions in flight (they hold row locks on the rollups) and holds new
-- ones until COMMIT; the inserts below then read every committed transition, and the ones that were
-- waiting add themselves on top after we commit: nothing is counted twice or lost.
begin
    lock table metrics.agent_daily, metrics.zip_daily in access exclusive mode;
    truncate metrics.agent_daily, metrics.zip_daily;

    insert into metrics.agent_daily (agent_id, day, accepted, delivered, on_time, failed, cancelled,
                                     delivery_us, acceptance_us, delivery_hist, acceptance_hist)
    with ev as (
        select a.agent_id, metrics.utc_day(a.accepted_at) as day, 'A' as kind,
               metrics.minutes(a.accepted_at - a.created_at) as m, metrics.micros(a.accepted_at - a.created_at) as us,
               0 as on_time
          from core.shipping_assignments a
         where a.accepted_at is not null and a.agent_id is not null
        union all
        select a.agent_id, metrics.utc_day(a.delivered_at), 'D',
               metrics.minutes(a.delivered_at - coalesce(a.accepted_at, a.created_at)),
               metrics.micros(a.delivered_at - coalesce(a.accepted_at, a.created_at)),
               (a.delivered_at <= a.sla_due_at)::integer
          from core.shipping_assignments a
         where a.status = 'DELIVERED'
        union all
        select a.agent_id, metrics.utc_day(coalesce(a.failed_at, a.updated_at)), 'F', null, 0, 0
          from core.shipping_assignments a
         where a.status = 'FAILED'
        union all
        select a.agent_id, metrics.utc_day(coalesce(a.cancelled_at, a.updated_at)), 'C', null, 0, 0
          from core.shipping_assignments a
         where a.status = 'CANCELLED' and a.agent_id is not null
    ), per_minute as (
        select ev.agent_id, ev.day, ev.kind, ev.m, count(*) as n, sum(ev.us) as us, sum(ev.on_time) as on_time
          from ev group by ev.agent_id, ev.day, ev.kind, ev.m
    )
    select p.agent_id, p.day,
           coalesce(sum(p.n) filter (where p.kind = 'A'), 0),
           coalesce(sum(p.n) filter (where p.kind = 'D'), 0),
           coalesce(sum(p.on_time) filter (where p.kind = 'D'), 0),
           coalesce(sum(p.n) filter (where p.kind = 'F'), 0),
           coalesce(sum(p.n) filter (where p.kind = 'C'), 0),
           coalesce(sum(p.us) filter (where p.kind = 'D'), 0),
           coalesce(sum(p.us) filter (where p.kind = 'A'), 0),
           coalesce(jsonb_object_agg(p.m::text, p.n) filter (where p.kind = 'D'), '{}'),
           coalesce(jsonb_object_agg(p.m::text, p.n) filter (where p.kind = 'A'), '{}')
      from per_minute p
     group by p.agent_id, p.day
     -- in day order, as the triggers write them: a period's rows share few pages (a non-standard
     -- leaderboard period reads every agent's rows of its days)
     order by p.day, p.agent_id;

    insert into metrics.zip_daily (zip_code, day, offered, delivered, on_time, failed, cancelled, delivery_us)
    with ev as (
        select a.zip_code, metrics.utc_day(a.created_at) as day, 'O' as kind, 0::bigint as us, 0 as on_time
          from core.shipping_assignments a
        union all
        select a.zip_code, metrics.utc_day(a.delivered_at), 'D',
               metrics.micros(a.delivered_at - coalesce(a.accepted_at, a.created_at)),
               (a.delivered_at <= a.sla_due_at)::integer
          from core.shipping_assignments a
         where a.status = 'DELIVERED'
        union all
        select a.zip_code, metrics.utc_day(coalesce(a.failed_at, a.updated_at)), 'F', 0, 0
          from core.shipping_assignments a
         where a.status = 'FAILED'
        union all
        select a.zip_code, metrics.utc_day(coalesce(a.cancelled_at, a.updated_at)), 'C', 0, 0
          from core.shipping_assignments a
         where a.status = 'CANCELLED'
    )
    select ev.zip_code, ev.day,
           count(*) filter (where ev.kind = 'O'),
           count(*) filter (where ev.kind = 'D'),
           coalesce(sum(ev.on_time) filter (where ev.kind = 'D'), 0),
           count(*) filter (where ev.kind = 'F'),
           count(*) filter (where ev.kind = 'C'),
           coalesce(sum(ev.us) filter (where ev.kind = 'D'), 0)
      from ev
     group by ev.zip_code, ev.day
     order by ev.day, ev.zip_code;  -- in day order, as the triggers write them
end
$$;
comment on function metrics.rebuild_rollups() is
    'Recompute metrics.agent_daily and metrics.zip_daily from core.shipping_assignments (after bulk loads that skip triggers).';

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
               metrics.hist_percentiles(array_agg(d.delivery_hist), array[0.5, 0.9]) as dp,
               metrics.hist_percentiles(array_agg(d.acceptance_hist), array[0.5]) as ap
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
comment on function api.agent_metrics(text, text, text) is $$Agent metrics
One agent over [from, to) (UTC dates, default the last 30 days): assignments by outcome, success and on-time rates, delivery time mean/p50/p90, acceptance latency, SLA breaches, open past due, and a per-day series. Agents may ask only about themselves.$$;

create or replace function api.sla_summary("from" text default null, "to" text default null, zip_code text default null,
                                agent_id text default null)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- All zip codes or one zip code: metrics.sla_summary (exact per day and for a standard window; a
-- non-standard period merges its days' minute histograms). One agent: metrics.agent_daily, live
-- (percentiles from minute histograms).
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
            -- the days' histograms merged: buckets summed, in ascending order
            select metrics.sorted_hist_percentiles(array_agg(h.minute order by h.minute), array_agg(h.n order by h.minute),
                                                   array[0.5, 0.9, 0.99])
              into v_p
              from (select u.minute, sum(u.n)::bigint as n
                      from metrics.sla_summary s, unnest(s.hist_minutes, s.hist_counts) u (minute, n)
                     where s.grain = case when v_zip is null then 'day' else 'zip_day' end
                       and s.zip_code = v_key and s.d_from >= v_from and s.d_from < v_to
                     group by u.minute) h;
        end if;
        if v_zip is null then
            select coalesce(sum(s.open), 0), coalesce(sum(s.open_past_due), 0) into v_open, v_past_due
              from metrics.sla_summary s where s.grain = 'open';
        else
            select coalesce(sum(s.open), 0), coalesce(sum(s.open_past_due), 0) into v_open, v_past_due
              from metrics.sla_summary s where s.grain = 'open' and s.zip_code = v_zip;
        end if;
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
               metrics.hist_percentiles(array_agg(a.delivery_hist), array[0.5, 0.9, 0.99]) 
          into v_delivered, v_on_time, v_us, v_p
          from metrics.agent_daily a where a.agent_id = v_agent and a.day >= v_from and a.day < v_to;
        select count(*), count(*) filter (where a.sla_due_at < v_now) into v_open, v_past_due
          from core.shipping_assignments a
         where a.agent_id = v_agent and a.status in ('ACCEPTED', 'PICKED_UP', 'IN_TRANSIT');
        select json_agg(metrics.sla_day(g.day::date, a.delivered, a.on_time,
                                        metrics.hist_percentiles(array[a.delivery_hist], array[0.5, 0.9, 0.99])) order by g.day)
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

create or replace function api.geographic_coverage(zip_code text default null, page text default null, page_size text default null)
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
    with rows as (
        select g.* from metrics.geographic_coverage g where v_zip is null or g.zip_code = v_zip
    ), page as (
        select r.* from rows r
         order by r.uncovered desc, r.demand desc, r.zip_code
         offset (v_page - 1)::bigint * v_limit limit v_limit
    )
    select json_build_object(
               'asOf', v_as_of,
               'from', (select min(g.d_from) from metrics.geographic_coverage g),
               'to', (select min(g.d_to) from metrics.geographic_coverage g),
               'page', v_page, 'limit', v_limit, 'total', (select count(*) from rows),
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
       and (select l.d_from from metrics.leaderboard l where l.window_days = w.window_days limit 1) = v_from;
    if v_window is not null then
        v_as_of := metrics.as_of('leaderboard');
        perform metrics.set_cache_control(metrics.seconds_to_refresh('leaderboard'));
    else
        v_as_of := now();
        perform metrics.set_cache_control(0);
    end if;
    if v_window is not null and v_zip is null and v_min = 5 then
        -- The default request: the ranks are in the view, the page comes from its index.
        execute format(
            $q$select coalesce(json_agg(json_build_object(
                       'rank', p.rnk, 'agentId', p.agent_id, 'name', d.name,
                       'deliveries', p.delivered, 'failed', p.failed, 'accepted', p.accepted,
                       'cancelled', p.cancelled, 'onTime', p.on_time,
                       'successRate', metrics.rate(p.delivered, p.delivered + p.failed),
                       'onTimeRate', metrics.rate(p.on_time, p.delivered),
                       'avgDeliveryMinutes', metrics.mean_minutes(p.delivery_us, p.delivered))
                   order by p.rnk, p.agent_id), '[]')
                 from (select l.*, l.%1$I as rnk from metrics.leaderboard l
                        where l.window_days = $1 and l.%1$I is not null
                        order by l.%1$I, l.agent_id offset $2 limit $3) p
                 left join core.delivery_agents d on d.id = p.agent_id$q$,
            'rank_' || v_sort || '_' || v_order)
          into v_items using v_window, (v_page - 1)::bigint * v_limit, v_limit;
        execute format('select count(*) from metrics.leaderboard l where l.window_days = $1 and l.%1$I is not null',
                       'rank_' || v_sort || '_' || v_order)
          into v_total using v_window;
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
        ), ranked as (
            select r.*, rank() over (order by case when $7 = 'desc' then -r.v else r.v end) as rnk,
                   count(*) over () as total
              from scored r
        ), page as (
            select r.* from ranked r
             order by r.rnk, r.agent_id
             offset $8 limit $9
        )
        select coalesce((select max(r.total) from ranked r), 0),
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
        when v_zip is not null then
            -- one primary-key range per agent of the zip code (the planner, asked for agent_id = any,
            -- prefers the (day) index and filters every agent's rows of the period)
            'select z.agent_id, s.accepted, s.delivered, s.on_time, s.failed, s.cancelled, s.delivery_us
               from unnest($2) z (agent_id)
              cross join lateral (
                    select sum(a.accepted)::integer as accepted, sum(a.delivered)::integer as delivered,
                           sum(a.on_time)::integer as on_time, sum(a.failed)::integer as failed,
                           sum(a.cancelled)::integer as cancelled, sum(a.delivery_us)::bigint as delivery_us
                      from metrics.agent_daily a
                     where a.agent_id = z.agent_id and a.day >= $3 and a.day < $4
                    having count(*) > 0) s'
        else
            'select a.agent_id, sum(a.accepted)::integer as accepted, sum(a.delivered)::integer as delivered,
                    sum(a.on_time)::integer as on_time, sum(a.failed)::integer as failed,
                    sum(a.cancelled)::integer as cancelled, sum(a.delivery_us)::bigint as delivery_us
               from metrics.agent_daily a where a.day >= $3 and a.day < $4 group by a.agent_id'
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
comment on function api.agent_leaderboard(text, text, text, text, text, text, text, text) is $$Agent leaderboard
Agents ranked over [from, to) by sort_by (deliveries, success_rate, on_time_rate, avg_delivery_minutes), sort_order asc|desc, ties sharing a rank; zip_code keeps the agents serving it; rate rankings need min_deliveries (default 5). Paged: page >= 1, page_size 1-100 (default 20).$$;

drop index metrics.geographic_coverage_uncovered_demand_zip_code_idx;
alter table metrics.agent_daily drop constraint agent_daily_histograms_shape_check;
alter table metrics.agent_daily
    drop column delivery_minutes, drop column delivery_counts,
    drop column acceptance_minutes, drop column acceptance_counts;
drop function metrics.hist_percentiles(integer[], integer[], float8[]);

drop materialized view metrics.sla_summary;
create materialized view metrics.sla_summary as
with d as (
    select a.zip_code, metrics.utc_day(a.delivered_at) as day, a.delivered_at, a.sla_due_at,
           a.delivered_at - coalesce(a.accepted_at, a.created_at) as took
      from core.shipping_assignments a
     where a.status = 'DELIVERED'
), zd as (
    -- per zip code and day: counts, sums, exact percentiles and the minute histogram
    select x.zip_code, x.day, x.delivered, x.on_time, x.delivery_us, x.minutes_p, h.minutes, h.counts
      from (select d.zip_code, d.day, count(*)::integer as delivered,
                   count(*) filter (where d.delivered_at <= d.sla_due_at)::integer as on_time,
                   sum(metrics.micros(d.took))::bigint as delivery_us,
                   percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60) as minutes_p
              from d group by d.zip_code, d.day) x
      join (select m.zip_code, m.day, array_agg(m.minute order by m.minute) as minutes,
                   array_agg(m.n order by m.minute) as counts
              from (select d.zip_code, d.day, metrics.minutes(d.took) as minute, count(*) as n
                      from d group by d.zip_code, d.day, metrics.minutes(d.took)) m
             group by m.zip_code, m.day) h on h.zip_code = x.zip_code and h.day = x.day
)
select 'day'::text as grain, x.day as d_from, x.day + 1 as d_to, ''::text as zip_code, x.delivered,
       x.on_time, x.delivery_us, x.minutes_p, h.minutes as hist_minutes, h.counts as hist_counts,
       0 as open, 0 as open_past_due
  from (select d.day, count(*)::integer as delivered,
               count(*) filter (where d.delivered_at <= d.sla_due_at)::integer as on_time,
               sum(metrics.micros(d.took))::bigint as delivery_us,
               percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60) as minutes_p
          from d group by d.day) x
  join (select m.day, array_agg(m.minute order by m.minute) as minutes, array_agg(m.n order by m.minute) as counts
          from (select zd.day, u.minute, sum(u.n)::bigint as n
                  from zd, unnest(zd.minutes, zd.counts) u (minute, n) group by zd.day, u.minute) m
         group by m.day) h on h.day = x.day
union all
select 'window', w.d_from, w.d_to, '', count(d.delivered_at)::integer,
       count(*) filter (where d.delivered_at <= d.sla_due_at)::integer,
       coalesce(sum(metrics.micros(d.took)), 0)::bigint,
       percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60),
       null, null, 0, 0
  from metrics.windows(metrics.utc_day(now())) w
  left join d on d.day >= w.d_from and d.day < w.d_to
 group by w.d_from, w.d_to
union all
select 'zip_day', zd.day, zd.day + 1, zd.zip_code, zd.delivered, zd.on_time, zd.delivery_us, zd.minutes_p,
       zd.minutes, zd.counts, 0, 0
  from zd
union all
select 'zip_window', w.d_from, w.d_to, d.zip_code, count(*)::integer,
       count(*) filter (where d.delivered_at <= d.sla_due_at)::integer,
       sum(metrics.micros(d.took))::bigint,
       percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60),
       null, null, 0, 0
  from metrics.windows(metrics.utc_day(now())) w
  join d on d.day >= w.d_from and d.day < w.d_to
 group by w.d_from, w.d_to, d.zip_code
union all
select 'open', metrics.utc_day(now()), metrics.utc_day(now()) + 1, a.zip_code, 0, 0, 0, null, null, null,
       count(*)::integer, count(*) filter (where a.sla_due_at < now())::integer
  from core.shipping_assignments a
 where a.status in ('OFFERED', 'ACCEPTED', 'PICKED_UP', 'IN_TRANSIT')
 group by a.zip_code
with data;
comment on materialized view metrics.sla_summary is 'SLA figures: exact per day and per standard window, for all zip codes and per zip code, open and past-due assignments per zip code; refreshed every 10 minutes.';
-- (grain, zip_code, d_from): all zip codes' days are one range (zip_code ''), one zip code's days
-- another; (grain, d_from, zip_code) would read every zip code's rows of a period to find one's.
comment on column metrics.sla_summary.hist_minutes is 'day and zip_day rows: the minute buckets of the delivery times, ascending (a non-standard period merges them).';
comment on column metrics.sla_summary.hist_counts is 'day and zip_day rows: the number of deliveries in each bucket of hist_minutes.';
create unique index sla_summary_grain_zip_code_d_from_key on metrics.sla_summary (grain, zip_code, d_from);
comment on index metrics.sla_summary_grain_zip_code_d_from_key is 'One row per (grain, zip code, day or window start): REFRESH CONCURRENTLY''s key; serves a period''s days, all zip codes or one.';
grant select on metrics.sla_summary to admin, platform_admin;
drop function metrics.cum_hist_percentiles(integer[], bigint[], bigint[], float8[]);

-- ---- existing assignments: the jsonb histograms, from the raw rows ----
do $existing$
begin
    if exists (select 1 from core.shipping_assignments) then
        perform metrics.rebuild_rollups();
        perform metrics.refresh('sla_summary', 'migration');
    end if;
end
$existing$;
