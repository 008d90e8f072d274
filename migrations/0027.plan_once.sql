-- 0027 metrics reads planned once per session (issue 11 §6: agent_activity measured 0.50-0.52 x
-- health_db's requests/s, geographic_coverage 0.56-0.58). PL/pgSQL keeps a statement's generic plan
-- only when it looks no dearer than a custom one; a page with an unknown limit, or a filter written
-- "x is null or column = x", never does, so both endpoints' page statements were planned again on
-- every call (pg_stat_statements with track_planning: 501 plans for 500 calls). Their statements
-- now have one shape whatever the arguments and run with plan_cache_mode = force_generic_plan: each
-- is planned once per session, with the index range every call wants (the plans are in
-- explain/queries.sql). Answers are unchanged (tests/test_metrics_oracle.py and the pgTAP suite).
-- docs/performance/agent-metrics.md "Migration 0027".
-- depends: 0026.answer_cache
-- Same text as sql/830_api_metrics.sql (agent_activity) and sql/840_api_metrics_sla_coverage.sql
-- (tests/test_migrations.py proves both build the same schema).

-- A deploy never hangs behind a long transaction; nothing here reads data.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

create or replace function api.agent_activity(agent_id text default null, before text default null, page text default null,
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

create or replace function api.geographic_coverage(zip_code text default null, page text default null, page_size text default null)
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
