-- =================================================================================================
-- 835 The agent leaderboard endpoint (plan Track B; docs/metrics.md defines every figure)
-- Split from sql/830_api_metrics.sql, which holds the argument parsing it uses (metrics.parse_*):
-- migrations 0008-0022 that say "sql/830_api_metrics.sql" for api.agent_leaderboard mean this file.
-- =================================================================================================

-- -------------------------------------------------------------------------------------------------
-- The parts every leaderboard request shares: its sort, its standard window, a page of its ranking
-- -------------------------------------------------------------------------------------------------

create function metrics.parse_leaderboard_sort(p_sort text, p_order text, out sort_by text, out sort_order text)
returns record
language plpgsql
immutable
set search_path = ''
as $$
begin
    sort_by := coalesce(p_sort, 'deliveries');
    sort_order := lower(coalesce(p_order, 'desc'));
    if sort_by not in ('deliveries', 'success_rate', 'on_time_rate', 'avg_delivery_minutes') then
        perform metrics.raise_error('METRICS_INVALID_SORT_BY', sort_by);
    end if;
    if sort_order not in ('asc', 'desc') then
        perform metrics.raise_error('METRICS_INVALID_SORT_ORDER', p_order);
    end if;
end
$$;
comment on function metrics.parse_leaderboard_sort(text, text) is 'The leaderboard''s sort_by (default deliveries) and sort_order (default desc), or the registered 400 naming the allowed values.';
grant execute on function metrics.parse_leaderboard_sort(text, text) to admin, platform_admin;

create function metrics.leaderboard_window(p_from date, p_to date)
returns integer
language plpgsql
stable
set search_path = ''
as $$
-- A standard window as of the view's refresh: same length, same first day (every row of a window
-- shares d_from and d_to = d_from + window_days): one index probe per window, never a scan.
begin
    return (select w.window_days
              from metrics.windows(p_to - 1) w
             where w.d_from = p_from
               and (select l.d_from from metrics.leaderboard l where l.window_days = w.window_days
                     order by l.agent_id limit 1) = p_from);  -- the (window_days, agent_id) key, not a scan
end
$$;
comment on function metrics.leaderboard_window(date, date) is 'The standard window (7, 30 or 90 days) metrics.leaderboard holds for [from, to) as of its refresh, else null.';
grant execute on function metrics.leaderboard_window(date, date) to admin, platform_admin;

create function metrics.leaderboard_page(
    p_from date, p_to date, p_zip text, p_window integer, p_sort text, p_order text, p_min integer,
    p_offset bigint, p_limit integer, out total bigint, out items json
)
returns record
language plpgsql
stable
set search_path = ''
as $$
-- One page of a leaderboard ranked now. A miss of any request but the default one (a standard
-- window, all zip codes, min_deliveries 5: api.agent_leaderboard reads the view's ranks) answers
-- from it; metrics.fill_answer_cache ranks every whole leaderboard with it, the default one too.
declare
    v_from date := p_from;
    v_to date := p_to;
    v_zip text := p_zip;
    v_window integer := p_window;
    v_sort text := p_sort;
    v_order text := p_order;
    v_min integer := p_min;
    v_offset bigint := p_offset;
    v_limit integer := p_limit;
    v_zip_agents bigint[];
    v_key text;
begin
    if v_window is null and v_zip is null then
        -- Any other period, all zip codes: two rows of metrics.agent_running_totals subtracted
        -- instead of summing every agent-day row of the period (sql/315).
        select l.total, l.items into total, items
          from metrics.leaderboard_over_period(v_from, v_to, v_sort, v_order, v_min,
                                               v_offset, v_limit) l;
        return;
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
                           offset v_offset limit v_limit) p
                     left join core.delivery_agents d on d.id = p.agent_id), '[]')
          into total, items;
        return;
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
                           offset v_offset limit v_limit) p
                     left join core.delivery_agents d on d.id = p.agent_id), '[]')
          into total, items;
        return;
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
      into total, items
      using v_window, v_zip_agents, v_from, v_to, v_sort, v_min, v_order, v_offset, v_limit;
end
$$;
comment on function metrics.leaderboard_page(date, date, text, integer, text, text, integer, bigint, integer) is 'A page (offset, limit) of a leaderboard ranked now, and the ranking''s length: a miss''s answer (but the default request''s), and every cache fill.';
grant execute on function metrics.leaderboard_page(date, date, text, integer, text, text, integer, bigint, integer) to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/agent_leaderboard?from&to&zip_code&sort_by&sort_order&page&page_size&min_deliveries
-- -------------------------------------------------------------------------------------------------
-- A correction to the text below, which migrations fix (0026): the default request's rank
-- statements, on a miss, are not "planned once per session". Their limit is a parameter, so their
-- generic plan looks dearer than a custom one and PL/pgSQL plans them on every miss (~0.05 ms;
-- pg_stat_statements with track_planning, 2026-12-01). A miss comes once per key and TTL while the
-- cache worker runs; the reads of the cache keep their generic plans (docs/metrics.md "Planned once
-- per session").

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
-- other period sums the rollups. rank() gives ties one rank; rate rankings list only agents with at
-- least min_deliveries (default 5) finished (success) or delivered (on time, speed). Every request
-- is ranked whole once per TTL (sql/325, the answer cache): a miss answers as above and asks the
-- cache worker to rank it, later pages are one index range of the cache.
declare
    v_sort text;
    v_order text;
    v_zip text := metrics.parse_zip(agent_leaderboard.zip_code);
    v_page integer := metrics.parse_int(agent_leaderboard.page, 1, 1, 1000000, 'METRICS_INVALID_PAGE');
    v_limit integer := metrics.parse_int(agent_leaderboard.page_size, 20, 1, 100, 'METRICS_INVALID_LIMIT');
    v_min integer := metrics.parse_int(agent_leaderboard.min_deliveries, 5, 1, 100000, 'INVALID_ARGUMENT');
    v_offset bigint := (v_page - 1)::bigint * v_limit;
    v_from date;
    v_to date;
    v_window integer;
    v_as_of timestamptz;
    v_source timestamptz;
    v_cache_key text;
    v_expires timestamptz;
    v_key text;
    v_ids bigint[];
    v_ranks integer[];
    v_items json;
    v_total bigint;
begin
    select s.sort_by, s.sort_order into v_sort, v_order
      from metrics.parse_leaderboard_sort(agent_leaderboard.sort_by, agent_leaderboard.sort_order) s;
    select p.d_from, p.d_to into v_from, v_to from metrics.parse_period(agent_leaderboard."from", agent_leaderboard."to") p;
    v_window := metrics.leaderboard_window(v_from, v_to);
    if v_window is not null then
        v_as_of := metrics.as_of('leaderboard');
        v_source := v_as_of;
        perform metrics.set_cache_control(metrics.seconds_to_refresh('leaderboard'));
    end if;
    -- A page of the request's cached ranking (one snapshot: the entry and its items agree), valid
    -- until it expires and, for a standard window, while the view's as-of is the one it was ranked from.
    v_cache_key := metrics.leaderboard_cache_key(v_from, v_to, v_zip, v_sort, v_order, v_min);
    select e.as_of, e.expires_at, e.total,
           coalesce((select json_agg(i.item order by i.ordinal)
                       from metrics.answer_cache_items i
                      where i.entry_id = e.id and i.ordinal > v_offset and i.ordinal <= v_offset + v_limit), '[]')
      into v_as_of, v_expires, v_total, v_items
      from metrics.answer_cache e
     where e.key = v_cache_key and e.expires_at > now() and e.source_as_of is not distinct from v_source;
    if not found then
        -- A miss: ranked now, and the key sent to the cache worker (NOTIFY: a read-only transaction
        -- cannot write; delivered at commit, once per distinct key and transaction).
        if v_window is not null and v_zip is null and v_min = 5 then
            -- The default request: the ranks and each ranking's length are in the view, the page is a
            -- range of its ranking's index. Static SQL, one statement per ranking, each planned once
            -- per session (EXECUTE planned it on every call; one UNION of the eight was planned per
            -- call too). ~0.4 ms of backend CPU at 10,000 agents, a hit ~0.2 (0026).
            v_key := v_sort || '_' || v_order;
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
        else
            select p.total, p.items into v_total, v_items
              from metrics.leaderboard_page(v_from, v_to, v_zip, v_window, v_sort, v_order, v_min, v_offset, v_limit) p;
        end if;
        perform pg_notify(metrics.answer_cache_channel(), v_cache_key);
        v_as_of := coalesce(v_source, now());
        v_expires := now();  -- a period ranked live: not to be cached by the client
    end if;
    if v_window is null then
        perform metrics.set_cache_control(ceil(extract(epoch from v_expires - now()))::integer);
    end if;
    return json_build_object(
        'asOf', v_as_of, 'from', v_from, 'to', v_to, 'zipCode', v_zip, 'sortBy', v_sort,
        'sortOrder', v_order, 'minDeliveries', v_min, 'page', v_page, 'limit', v_limit,
        'total', v_total, 'items', v_items);
end
$$;
comment on function api.agent_leaderboard(text, text, text, text, text, text, text, text) is $$Agent leaderboard
Agents ranked over [from, to) by sort_by (deliveries, success_rate, on_time_rate, avg_delivery_minutes), sort_order asc|desc, ties sharing a rank; zip_code keeps the agents serving it; rate rankings need min_deliveries (default 5). Paged: page >= 1, page_size 1-100 (default 20).$$;
grant execute on function api.agent_leaderboard(text, text, text, text, text, text, text, text) to admin, platform_admin;
