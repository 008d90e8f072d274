-- =================================================================================================
-- 325 Metrics: the answer cache (the plan's "TTL 30 min leaderboard, 10 min SLA" caches)
-- Two endpoints compute per request what their views cannot hand out by one index range:
--   * agent_leaderboard for another period, a zip code or another min_deliveries ranks every agent
--     it covers (O(agents): ~5 ms for a week of 10,000 agents); its whole ranking is cached, one
--     item per agent, so that any page is one index range;
--   * sla_summary (all zip codes or one) merges a period's day rows and histograms; its answer is
--     cached whole, one item.
-- An entry is keyed by the request's normalized arguments (but the page), lives for its view's
-- TTL (metrics.views) and, when it was computed from a view, only while that view's as-of is the
-- one it was computed from: such an entry is exactly the answer the view gives.
--
-- GET requests run in read-only transactions, so a miss cannot write: it answers as before and
-- sends its key on NOTIFY channel metrics.answer_cache_channel(); the metrics cache worker
-- (waybill/metrics_cache.py, role metrics_cache) calls metrics.fill_answer_cache(key).
-- docs/metrics.md "The answer cache".
-- =================================================================================================

-- The metrics_cache login role: sql/000_roles.sql.
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
