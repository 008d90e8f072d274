-- 0025 zip agents (issue 11 §6: requests/s >= 0.5 x health_db at 1M assignments): a zip code's
-- leaderboard found its agents through the GIN index on core.delivery_agents.serviceable_zip_codes,
-- one heap page per agent (~0.2 ms of a ~0.7 ms call at 10,000 agents). metrics.zip_agents holds the
-- (zip code, agent) pairs under a B-tree, kept by triggers on core.delivery_agents in the agent's
-- transaction (always live); api.agent_leaderboard reads one key range of it instead.
-- docs/performance/agent-metrics.md "Migration 0025".
-- depends: 0024.leaderboard_item
-- Same text as sql/305_metrics_zip_agents.sql, sql/300_metrics_rollups.sql (rebuild_rollups) and
-- sql/835_api_metrics_leaderboard.sql (tests/test_migrations.py proves both build the same schema).

-- A deploy never hangs behind a long transaction; the fill reads every agent (~0.1 s at 10,000).
set local lock_timeout = '5s';
set local statement_timeout = '60s';

create table metrics.zip_agents (
    zip_code  text not null,
    agent_id  bigint not null,
    constraint zip_agents_pkey primary key (zip_code, agent_id)
);
alter table metrics.zip_agents enable row level security;
comment on table metrics.zip_agents is 'Each (zip code, agent serving it) pair of core.delivery_agents.serviceable_zip_codes (kept by triggers).';
comment on column metrics.zip_agents.zip_code is 'A zip code of the agent''s serviceable_zip_codes.';
comment on column metrics.zip_agents.agent_id is 'core.delivery_agents.id (no foreign key: the triggers below keep the pairs, deletes included).';
grant select on metrics.zip_agents to admin, platform_admin;
create policy staff_read on metrics.zip_agents for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.zip_agents is 'Admins read every zip code''s agents.';

-- -------------------------------------------------------------------------------------------------
-- The triggers: an agent's pairs follow its row (insert, a change of its zip codes, delete,
-- truncate). The agent's row lock orders two changes of one agent; every statement below touches
-- only that agent's pairs, by primary key.
-- -------------------------------------------------------------------------------------------------

create function metrics.tg_delivery_agents__zip_agents()
returns trigger
language plpgsql
set search_path = ''
as $$
-- AFTER INSERT, DELETE or UPDATE OF serviceable_zip_codes (when it changed) on core.delivery_agents:
-- remove the pairs of the zip codes the agent no longer serves, add those of the ones it now serves
-- (an array may repeat a zip code: one pair each).
begin
    if tg_op in ('UPDATE', 'DELETE') then
        delete from metrics.zip_agents z
         where z.zip_code = any (old.serviceable_zip_codes)
           and z.agent_id = old.id
           and (tg_op = 'DELETE' or z.zip_code <> all (new.serviceable_zip_codes));
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
        insert into metrics.zip_agents (zip_code, agent_id)
        select distinct z.zip_code, new.id from unnest(new.serviceable_zip_codes) z (zip_code)
        on conflict do nothing;
    end if;
    return null;
end
$$;
comment on function metrics.tg_delivery_agents__zip_agents() is
    'Trigger: keeps metrics.zip_agents equal to the (zip code, agent) pairs of core.delivery_agents.';

create function metrics.tg_delivery_agents__zip_agents_truncate()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    truncate metrics.zip_agents;
    return null;
end
$$;
comment on function metrics.tg_delivery_agents__zip_agents_truncate() is
    'Trigger: empties metrics.zip_agents when core.delivery_agents is truncated.';

create trigger _500_metrics_zip_agents_insert
    after insert on core.delivery_agents
    for each row execute function metrics.tg_delivery_agents__zip_agents();
comment on trigger _500_metrics_zip_agents_insert on core.delivery_agents is 'Adds a new agent''s (zip code, agent) pairs to metrics.zip_agents.';
create trigger _500_metrics_zip_agents_update
    after update of serviceable_zip_codes on core.delivery_agents
    for each row
    when (new.serviceable_zip_codes is distinct from old.serviceable_zip_codes)
    execute function metrics.tg_delivery_agents__zip_agents();
comment on trigger _500_metrics_zip_agents_update on core.delivery_agents is 'Moves an agent''s pairs in metrics.zip_agents when its zip codes change.';
create trigger _500_metrics_zip_agents_delete
    after delete on core.delivery_agents
    for each row execute function metrics.tg_delivery_agents__zip_agents();
comment on trigger _500_metrics_zip_agents_delete on core.delivery_agents is 'Removes a deleted agent''s pairs from metrics.zip_agents.';
create trigger _500_metrics_zip_agents_truncate
    after truncate on core.delivery_agents
    for each statement execute function metrics.tg_delivery_agents__zip_agents_truncate();
comment on trigger _500_metrics_zip_agents_truncate on core.delivery_agents is 'Empties metrics.zip_agents with its source.';

-- -------------------------------------------------------------------------------------------------
-- Rebuild from core.delivery_agents (bulk loads: waybill seed inserts with triggers off)
-- -------------------------------------------------------------------------------------------------

create function metrics.rebuild_zip_agents()
returns void
language plpgsql
volatile
set search_path = ''
as $$
-- The ACCESS EXCLUSIVE lock waits for agent changes in flight (their triggers hold row locks here)
-- and holds new ones until COMMIT; they then apply their change on top of the rebuilt pairs.
begin
    lock table metrics.zip_agents in access exclusive mode;
    truncate metrics.zip_agents;
    insert into metrics.zip_agents (zip_code, agent_id)
    select distinct z.zip_code, d.id
      from core.delivery_agents d, unnest(d.serviceable_zip_codes) z (zip_code)
     order by 1, 2;
end
$$;
comment on function metrics.rebuild_zip_agents() is
    'Recompute metrics.zip_agents from core.delivery_agents (after bulk loads that skip triggers; metrics.rebuild_rollups calls it).';

-- Filled from the agents already there (a migration onto a loaded database).
select metrics.rebuild_zip_agents();

-- -------------------------------------------------------------------------------------------------
-- The rollups' rebuild rebuilds the pairs too; the leaderboard reads them
-- -------------------------------------------------------------------------------------------------

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
                                     delivery_us, acceptance_us, delivery_minutes, delivery_counts,
                                     acceptance_minutes, acceptance_counts)
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
           -- the buckets in ascending order (the triggers append in first-seen order: same histogram)
           coalesce(array_agg(p.m order by p.m) filter (where p.kind = 'D'), '{}'),
           coalesce(array_agg(p.n::integer order by p.m) filter (where p.kind = 'D'), '{}'),
           coalesce(array_agg(p.m order by p.m) filter (where p.kind = 'A'), '{}'),
           coalesce(array_agg(p.n::integer order by p.m) filter (where p.kind = 'A'), '{}')
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

    -- the agents' zip codes, which a bulk load of agents skips as well (sql/305)
    perform metrics.rebuild_zip_agents();
end
$$;
comment on function metrics.rebuild_rollups() is
    'Recompute metrics.agent_daily and metrics.zip_daily from core.shipping_assignments, and metrics.zip_agents (after bulk loads that skip triggers).';

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
                   select json_agg(metrics.leaderboard_item(p.rnk, p.agent_id, d.name, p.delivered, p.failed, p.accepted,
                              p.cancelled, p.on_time, p.delivery_us)
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
                   select json_agg(metrics.leaderboard_item(p.rnk, p.agent_id, d.name, p.delivered, p.failed, p.accepted,
                              p.cancelled, p.on_time, p.delivery_us)
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
