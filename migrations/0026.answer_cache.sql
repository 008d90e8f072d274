-- 0026 answer cache (issue 11 §6: requests/s >= 0.5 x health_db and P95 <= 10 ms at 1M
-- assignments). Two endpoints computed per request what their views cannot hand out by one index
-- range: a leaderboard over another period, a zip code or another min_deliveries ranked every agent
-- it covers (~5 ms for a week of 10,000 agents), and sla_summary merged a period's day rows. The
-- plan caches them (leaderboard 30 min, SLA 10 min): metrics.answer_cache keeps each such answer
-- whole for its view's TTL, and only while its view's as-of is the one it was computed from; the
-- metrics cache worker (role metrics_cache, waybill/metrics_cache.py) fills it from the NOTIFY a
-- miss sends. The endpoints' computing moves, unchanged, to metrics.leaderboard_page and
-- metrics.sla_summary_answer; api.health_metrics shows the cache's size and its worker's
-- connections. docs/metrics.md "The answer cache"; docs/performance/agent-metrics.md "Migration 0026".
-- depends: 0025.zip_agents
-- Same text as sql/000_roles.sql (metrics_cache), sql/325_metrics_answer_cache.sql,
-- sql/830_api_metrics.sql (health_metrics), sql/835_api_metrics_leaderboard.sql and
-- sql/840_api_metrics_sla_coverage.sql
-- (tests/test_migrations.py proves both build the same schema).

-- A deploy never hangs behind a long transaction; nothing here reads data.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

-- Roles are cluster-wide: created only when missing (sql/000_roles.sql).
do $roles$
begin
    if not exists (select 1 from pg_roles where rolname = 'metrics_cache') then
        create role metrics_cache login;
    end if;
end
$roles$;
-- A fill ranks one leaderboard (~20 ms at 10,000 agents); a runaway one is stopped.
alter role metrics_cache set statement_timeout = '30s';
comment on role metrics_cache is 'The metrics cache worker (waybill/metrics_cache.py): LISTENs for answer cache misses and may only call metrics.fill_answer_cache. statement_timeout 30 s.';

-- The worker connects to this database (PUBLIC may not: sql/010_schemas.sql).
do $connect$
begin
    execute format('grant connect on database %I to metrics_cache', current_database());
end
$connect$;
grant usage on schema metrics to metrics_cache;

create table metrics.answer_cache (
    id            bigint generated always as identity,
    key           text not null,
    source_as_of  timestamptz,
    as_of         timestamptz not null,
    expires_at    timestamptz not null,
    total         bigint not null,
    size_bytes    bigint not null,
    constraint answer_cache_pkey primary key (id),
    constraint answer_cache_key_key unique (key),
    constraint answer_cache_key_length_check check (octet_length(key) <= 512),
    constraint answer_cache_sizes_not_negative_check check (total >= 0 and size_bytes >= 0)
);
alter table metrics.answer_cache enable row level security;
comment on table metrics.answer_cache is 'One cached answer per request key (all arguments but the page): its as-of, expiry, items and size.';
comment on column metrics.answer_cache.key is 'metrics.leaderboard_cache_key() or metrics.sla_summary_cache_key(): the endpoint and its normalized arguments, a JSON text.';
comment on column metrics.answer_cache.source_as_of is 'The as-of of the view the answer was computed from (valid while it is that view''s latest); null for a leaderboard period summed from the rollups.';
comment on column metrics.answer_cache.as_of is 'When the answer''s data was computed: its asOf.';
comment on column metrics.answer_cache.expires_at is 'The fill plus its view''s TTL: unused from then on, dropped by a later fill.';
comment on column metrics.answer_cache.total is 'Item rows: a leaderboard''s ranked agents (its total), 1 for an SLA summary.';
comment on column metrics.answer_cache.size_bytes is 'The items'' JSON text length: what the bound on the cache''s size counts.';
grant select on metrics.answer_cache to admin, platform_admin;
create policy staff_read on metrics.answer_cache for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.answer_cache is 'Admins read the answer cache (the endpoints run as the caller).';

create table metrics.answer_cache_items (
    entry_id  bigint not null,
    ordinal   bigint not null,
    item      json not null,
    constraint answer_cache_items_pkey primary key (entry_id, ordinal),
    constraint answer_cache_items_entry_id_fkey foreign key (entry_id)
        references metrics.answer_cache (id) on delete cascade,
    constraint answer_cache_items_ordinal_positive_check check (ordinal >= 1)
);
alter table metrics.answer_cache_items enable row level security;
comment on table metrics.answer_cache_items is 'The items of a cached answer in answer order: a leaderboard page is one primary-key range.';
comment on column metrics.answer_cache_items.ordinal is 'Position from 1: page p of size n holds ordinals (p - 1) * n + 1 .. p * n; an SLA summary is item 1.';
comment on column metrics.answer_cache_items.item is 'A leaderboard item as metrics.leaderboard_item() built it, or a whole SLA summary answer.';
grant select on metrics.answer_cache_items to admin, platform_admin;
create policy staff_read on metrics.answer_cache_items for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.answer_cache_items is 'Admins read the cached answers.';

create function metrics.answer_cache_channel()
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
    return 'metrics_answer_cache';
end
$$;
comment on function metrics.answer_cache_channel() is 'The NOTIFY channel of answer cache misses (payload: the key); the cache worker LISTENs on it.';
grant execute on function metrics.answer_cache_channel() to admin, platform_admin, metrics_cache;

create function metrics.leaderboard_cache_key(p_from date, p_to date, p_zip text, p_sort text, p_order text, p_min integer)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
    return json_build_object('endpoint', 'agent_leaderboard', 'from', p_from, 'to', p_to, 'zipCode', p_zip,
                             'sortBy', p_sort, 'sortOrder', p_order, 'minDeliveries', p_min)::text;
end
$$;
comment on function metrics.leaderboard_cache_key(date, date, text, text, text, integer) is 'The answer cache key of a leaderboard request: its normalized arguments but the page, as JSON text (also the NOTIFY payload).';
grant execute on function metrics.leaderboard_cache_key(date, date, text, text, text, integer) to admin, platform_admin;

create function metrics.sla_summary_cache_key(p_from date, p_to date, p_zip text)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
    return json_build_object('endpoint', 'sla_summary', 'from', p_from, 'to', p_to, 'zipCode', p_zip)::text;
end
$$;
comment on function metrics.sla_summary_cache_key(date, date, text) is 'The answer cache key of an SLA summary of all zip codes or one: its normalized arguments, as JSON text (also the NOTIFY payload).';
grant execute on function metrics.sla_summary_cache_key(date, date, text) to admin, platform_admin;

create function metrics.fill_answer_cache(p_key text, p_max_bytes bigint default 67108864)
returns boolean
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Compute and cache the answer of a key (validated again: anyone may NOTIFY) unless a valid entry
-- exists. True when it filled. The cache holds at most p_max_bytes of items (the default 64 MB is
-- ~25 rankings of 10,000 agents): the oldest entries beyond it go, and a larger answer is not
-- cached. One fill at a time (a transaction-level advisory lock): two workers never compute one key
-- twice, and the evictions of two fills never deadlock.
declare
    v_args json;
    v_endpoint text;
    v_from date;
    v_to date;
    v_zip text;
    v_sort text;
    v_order text;
    v_min integer;
    v_window integer;
    v_view text;
    v_key text;
    v_source timestamptz;
    v_items json;
    v_size bigint;
    v_id bigint;
begin
    if p_key is null or octet_length(p_key) > 512 then
        perform metrics.raise_error('INVALID_ARGUMENT', 'an answer cache key is JSON of at most 512 bytes');
    end if;
    begin
        v_args := p_key::json;
    exception when invalid_text_representation then
        perform metrics.raise_error('INVALID_ARGUMENT', 'an answer cache key is JSON of at most 512 bytes');
    end;
    if json_typeof(v_args) is distinct from 'object' then
        perform metrics.raise_error('INVALID_ARGUMENT', 'an answer cache key is a JSON object');
    end if;
    v_endpoint := v_args ->> 'endpoint';
    if v_endpoint is null or v_endpoint not in ('agent_leaderboard', 'sla_summary') then
        perform metrics.raise_error('INVALID_ARGUMENT', 'an answer cache key names agent_leaderboard or sla_summary');
    end if;
    v_from := metrics.parse_day('from', v_args ->> 'from');
    v_to := metrics.parse_day('to', v_args ->> 'to');
    if v_from is null or v_to is null or v_from >= v_to or v_to - v_from > 366 then
        perform metrics.raise_error('METRICS_INVALID_PERIOD', v_from::text, v_to::text);
    end if;
    v_zip := metrics.parse_zip(v_args ->> 'zipCode');
    if v_endpoint = 'agent_leaderboard' then
        select s.sort_by, s.sort_order into v_sort, v_order
          from metrics.parse_leaderboard_sort(v_args ->> 'sortBy', v_args ->> 'sortOrder') s;
        v_min := metrics.parse_int(v_args ->> 'minDeliveries', 5, 1, 100000, 'INVALID_ARGUMENT');
        v_key := metrics.leaderboard_cache_key(v_from, v_to, v_zip, v_sort, v_order, v_min);
        v_view := 'leaderboard';
    else
        v_key := metrics.sla_summary_cache_key(v_from, v_to, v_zip);
        v_view := 'sla_summary';
    end if;
    perform pg_advisory_xact_lock(hashtextextended('metrics.fill_answer_cache', 0));
    if v_endpoint = 'agent_leaderboard' then
        v_window := metrics.leaderboard_window(v_from, v_to);
        if v_window is not null then
            v_source := metrics.as_of('leaderboard');
        end if;
    else
        v_source := metrics.as_of('sla_summary');
    end if;
    if exists (select 1 from metrics.answer_cache e
                where e.key = v_key and e.expires_at > now() and e.source_as_of is not distinct from v_source) then
        return false;
    end if;
    delete from metrics.answer_cache e where e.key = v_key;
    if v_endpoint = 'agent_leaderboard' then
        select p.items into v_items
          from metrics.leaderboard_page(v_from, v_to, v_zip, v_window, v_sort, v_order, v_min, 0, 2147483647) p;
    else
        v_items := json_build_array(metrics.sla_summary_answer(v_from, v_to, v_zip, null));
    end if;
    v_size := octet_length(v_items::text)::bigint;
    if v_size > p_max_bytes then
        return false;
    end if;
    insert into metrics.answer_cache (key, source_as_of, as_of, expires_at, total, size_bytes)
    values (v_key, v_source, coalesce(v_source, now()),
            now() + (select v.ttl_minutes from metrics.views v where v.name = v_view) * interval '1 minute',
            json_array_length(v_items), v_size)
    returning id into v_id;
    insert into metrics.answer_cache_items (entry_id, ordinal, item)
    select v_id, x.n, x.item from json_array_elements(v_items) with ordinality x (item, n);
    -- Bounded: expired entries go, then the oldest until the answers fit (this one always stays).
    delete from metrics.answer_cache e where e.expires_at <= now();
    delete from metrics.answer_cache e
     where e.id in (select r.id
                      from (select c.id, sum(c.size_bytes) over (order by c.id desc) as upto
                              from metrics.answer_cache c) r
                     where r.upto > p_max_bytes);
    return true;
end
$$;
comment on function metrics.fill_answer_cache(text, bigint) is 'Compute and cache the answer of a cache key (a miss''s NOTIFY payload) unless a valid entry exists; true when it filled. At most p_max_bytes of answers stay cached (oldest entries go first).';
grant execute on function metrics.fill_answer_cache(text, bigint) to metrics_cache;

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

create or replace function api.sla_summary("from" text default null, "to" text default null, zip_code text default null,
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

-- health_metrics shows the answer cache (sql/830_api_metrics.sql).
create or replace function api.health_metrics()
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
