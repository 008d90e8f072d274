-- Undo 0027: agent_activity and geographic_coverage get their 0021 and 0016 texts back (planned by
-- PL/pgSQL's choice again, without plan_cache_mode), and metrics.coverage_item goes.
-- squawk: nothing calls metrics.coverage_item once geographic_coverage is restored.
-- squawk-ignore-file ban-drop-function
set local lock_timeout = '5s';
set local statement_timeout = '60s';

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

drop function metrics.coverage_item(metrics.geographic_coverage, timestamptz);
