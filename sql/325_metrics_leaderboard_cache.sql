-- =================================================================================================
-- 325 Metrics: the leaderboard's response cache (the plan's "TTL 30 min leaderboard" cache)
-- A leaderboard request the views cannot answer by one index range (another period, a zip code,
-- another min_deliveries) ranks every agent it covers: O(agents) per call (~10 ms at 10,000
-- agents). Its whole ranking is kept here, keyed by its arguments but the page, for the
-- leaderboard's TTL (metrics.views): any page of it is then one index range of this cache.
--
-- GET requests run in read-only transactions, so a miss cannot write: it answers live and sends
-- its key on NOTIFY channel metrics.leaderboard_cache_channel(); the metrics cache worker
-- (waybill/metrics_cache.py, role metrics_cache) calls metrics.fill_leaderboard_cache(key).
-- Entries are exact as of their asOf: a standard window's as of the view's refresh (and dropped
-- by the next one), a period's as of its fill (a period of past days never changes afterwards).
-- docs/metrics.md "The leaderboard cache".
-- =================================================================================================

-- The metrics_cache login role: sql/000_roles.sql.
-- The worker connects to this database (PUBLIC may not: sql/010_schemas.sql).
do $connect$
begin
    execute format('grant connect on database %I to metrics_cache', current_database());
end
$connect$;
grant usage on schema metrics to metrics_cache;

create table metrics.leaderboard_cache (
    id            bigint generated always as identity,
    key           text not null,
    source_as_of  timestamptz,
    as_of         timestamptz not null,
    expires_at    timestamptz not null,
    total         bigint not null,
    constraint leaderboard_cache_pkey primary key (id),
    constraint leaderboard_cache_key_key unique (key),
    constraint leaderboard_cache_key_length_check check (octet_length(key) <= 512),
    constraint leaderboard_cache_total_not_negative_check check (total >= 0)
);
alter table metrics.leaderboard_cache enable row level security;
comment on table metrics.leaderboard_cache is 'One cached leaderboard ranking per request key (all but the page): its as-of, expiry and length.';
comment on column metrics.leaderboard_cache.key is 'metrics.leaderboard_cache_key(): the normalized arguments, a JSON text.';
comment on column metrics.leaderboard_cache.source_as_of is 'A standard window''s metrics.leaderboard as-of the entry was ranked from (valid while it is the latest); null for a period summed from the rollups.';
comment on column metrics.leaderboard_cache.as_of is 'When the ranked data was computed: the answer''s asOf.';
comment on column metrics.leaderboard_cache.expires_at is 'The fill plus the leaderboard''s TTL: unused from then on, dropped by the next fill.';
comment on column metrics.leaderboard_cache.total is 'Agents in the ranking: the answer''s total, and the number of item rows.';
grant select on metrics.leaderboard_cache to admin, platform_admin;
create policy staff_read on metrics.leaderboard_cache for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.leaderboard_cache is 'Admins read the leaderboard cache (api.agent_leaderboard runs as the caller).';

create table metrics.leaderboard_cache_items (
    entry_id  bigint not null,
    ordinal   bigint not null,
    item      json not null,
    constraint leaderboard_cache_items_pkey primary key (entry_id, ordinal),
    constraint leaderboard_cache_items_entry_id_fkey foreign key (entry_id)
        references metrics.leaderboard_cache (id) on delete cascade,
    constraint leaderboard_cache_items_ordinal_positive_check check (ordinal >= 1)
);
alter table metrics.leaderboard_cache_items enable row level security;
comment on table metrics.leaderboard_cache_items is 'The ranked items of a cached leaderboard, in answer order: a page is one primary-key range.';
comment on column metrics.leaderboard_cache_items.ordinal is 'Position in the ranking, from 1: page p of size n holds ordinals (p - 1) * n + 1 .. p * n.';
comment on column metrics.leaderboard_cache_items.item is 'The answer''s item as metrics.leaderboard_item() built it at the fill.';
grant select on metrics.leaderboard_cache_items to admin, platform_admin;
create policy staff_read on metrics.leaderboard_cache_items for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.leaderboard_cache_items is 'Admins read the cached rankings.';

create function metrics.leaderboard_cache_channel()
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
    return 'metrics_leaderboard_cache';
end
$$;
comment on function metrics.leaderboard_cache_channel() is 'The NOTIFY channel of leaderboard cache misses (payload: the key); the cache worker LISTENs on it.';
grant execute on function metrics.leaderboard_cache_channel() to admin, platform_admin, metrics_cache;

create function metrics.leaderboard_cache_key(p_from date, p_to date, p_zip text, p_sort text, p_order text, p_min integer)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
    return json_build_object('from', p_from, 'to', p_to, 'zipCode', p_zip, 'sortBy', p_sort,
                             'sortOrder', p_order, 'minDeliveries', p_min)::text;
end
$$;
comment on function metrics.leaderboard_cache_key(date, date, text, text, text, integer) is 'The cache key of a leaderboard request: its normalized arguments but the page, as JSON text (also the NOTIFY payload).';
grant execute on function metrics.leaderboard_cache_key(date, date, text, text, text, integer) to admin, platform_admin;

create function metrics.fill_leaderboard_cache(p_key text, p_max_items integer default 200000)
returns boolean
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Rank the whole leaderboard of a key (validated again: anyone may NOTIFY) and cache it, unless a
-- valid entry exists. True when it filled. The cache holds at most p_max_items item rows (~250
-- bytes each; the default, ~50 MB, is twenty rankings of 10,000 agents): the oldest entries beyond
-- it go, and a longer ranking is not cached. One fill at a time (a transaction-level advisory lock):
-- two workers never rank one key twice, and the evictions of two fills never deadlock.
declare
    v_args json;
    v_from date;
    v_to date;
    v_zip text;
    v_sort text;
    v_order text;
    v_min integer;
    v_window integer;
    v_key text;
    v_source timestamptz;
    v_total bigint;
    v_items json;
    v_id bigint;
begin
    if p_key is null or octet_length(p_key) > 512 then
        perform metrics.raise_error('INVALID_ARGUMENT', 'a leaderboard cache key is JSON of at most 512 bytes');
    end if;
    begin
        v_args := p_key::json;
    exception when invalid_text_representation then
        perform metrics.raise_error('INVALID_ARGUMENT', 'a leaderboard cache key is JSON of at most 512 bytes');
    end;
    if json_typeof(v_args) is distinct from 'object' then
        perform metrics.raise_error('INVALID_ARGUMENT', 'a leaderboard cache key is a JSON object');
    end if;
    v_from := metrics.parse_day('from', v_args ->> 'from');
    v_to := metrics.parse_day('to', v_args ->> 'to');
    if v_from is null or v_to is null or v_from >= v_to or v_to - v_from > 366 then
        perform metrics.raise_error('METRICS_INVALID_PERIOD', v_from::text, v_to::text);
    end if;
    v_zip := metrics.parse_zip(v_args ->> 'zipCode');
    select s.sort_by, s.sort_order into v_sort, v_order
      from metrics.parse_leaderboard_sort(v_args ->> 'sortBy', v_args ->> 'sortOrder') s;
    v_min := metrics.parse_int(v_args ->> 'minDeliveries', 5, 1, 100000, 'INVALID_ARGUMENT');
    v_key := metrics.leaderboard_cache_key(v_from, v_to, v_zip, v_sort, v_order, v_min);
    perform pg_advisory_xact_lock(hashtextextended('metrics.fill_leaderboard_cache', 0));
    v_window := metrics.leaderboard_window(v_from, v_to);
    if v_window is not null then
        v_source := metrics.as_of('leaderboard');
    end if;
    if exists (select 1 from metrics.leaderboard_cache e
                where e.key = v_key and e.expires_at > now() and e.source_as_of is not distinct from v_source) then
        return false;
    end if;
    delete from metrics.leaderboard_cache e where e.key = v_key;
    select p.total, p.items into v_total, v_items
      from metrics.leaderboard_page(v_from, v_to, v_zip, v_window, v_sort, v_order, v_min, 0, 2147483647) p;
    if v_total > p_max_items then
        return false;
    end if;
    insert into metrics.leaderboard_cache (key, source_as_of, as_of, expires_at, total)
    values (v_key, v_source, coalesce(v_source, now()),
            now() + (select v.ttl_minutes from metrics.views v where v.name = 'leaderboard') * interval '1 minute',
            v_total)
    returning id into v_id;
    insert into metrics.leaderboard_cache_items (entry_id, ordinal, item)
    select v_id, x.n, x.item from json_array_elements(v_items) with ordinality x (item, n);
    -- Bounded: expired entries go, then the oldest until the items fit (this one always stays).
    delete from metrics.leaderboard_cache e where e.expires_at <= now();
    delete from metrics.leaderboard_cache e
     where e.id in (select r.id
                      from (select c.id, sum(c.total) over (order by c.id desc) as upto
                              from metrics.leaderboard_cache c) r
                     where r.upto > p_max_items);
    return true;
end
$$;
comment on function metrics.fill_leaderboard_cache(text, integer) is 'Rank and cache the whole leaderboard of a cache key (a miss''s NOTIFY payload) unless a valid entry exists; true when it filled. At most p_max_items item rows stay cached (oldest entries go first).';
grant execute on function metrics.fill_leaderboard_cache(text, integer) to metrics_cache;
