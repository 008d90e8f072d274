-- 0008 agent metrics (plan Track B, issue 11): schema metrics (rollups kept by triggers on
-- core.shipping_assignments, materialized views refreshed by named pg_cron jobs) and the five
-- metrics endpoints plus refresh_metrics / health_metrics in api.
-- depends: 0007.webhooks
-- Same text as sql/300_metrics_rollups.sql, sql/310_metrics_views.sql and sql/830_api_metrics.sql
-- (tests/test_migrations.py proves both build the same schema). The existing rows are counted once
-- by metrics.rebuild_rollups() at the end; the pg_cron jobs are created only in the database pg_cron
-- runs in (cron.database_name), idempotently (cron.schedule by name).
-- squawk: every index below is on a table or materialized view created in this same file (nothing
-- reads or writes them yet, so a plain CREATE INDEX blocks no one); the int columns are per-day
-- counters (a day's count of one agent or zip code cannot approach 2^31).
-- squawk-ignore-file require-concurrent-index-creation, prefer-bigint-over-int

-- The triggers on core.shipping_assignments take a SHARE ROW EXCLUSIVE lock: fail fast (and retry
-- later) rather than queue every transition behind a long transaction.
set local lock_timeout = '5s';
-- The rebuild over existing data reads every assignment (29-50 s at 1M in bench/metrics.py).
set local statement_timeout = '15min';

-- ---- sql/300_metrics_rollups.sql ----
-- =================================================================================================
-- 300 Metrics: per-day rollups kept by triggers (docs/metrics.md has every definition)
-- metrics.agent_daily (agent, UTC day) and metrics.zip_daily (zip code, UTC day) are updated by the
-- triggers _500_metrics_rollup* on core.shipping_assignments, in the transaction of the transition:
-- always fresh, exact, O(days) to read. One upsert per affected rollup row (agent row, then zip row:
-- always in that order, so two transitions never wait on each other's rows in opposite orders).
-- metrics.rebuild_rollups() recomputes both from the raw rows (bulk loads skip triggers).
-- =================================================================================================

create schema metrics;
comment on schema metrics is 'Agent metrics: rollups kept by triggers, materialized views refreshed by pg_cron; not exposed.';
grant usage on schema metrics to admin, platform_admin, agent;

insert into ops.error_codes (code, sqlstate, http_status, message, hint, retryable) values
    ('METRICS_INVALID_DATE',       'PGRST', 400, '%s must be a UTC date YYYY-MM-DD, got %s', 'Periods are half-open [from, to) of whole UTC days.', false),
    ('METRICS_INVALID_PERIOD',     'PGRST', 400, 'period [%s, %s) must have from < to and span at most 366 days', null, false),
    ('METRICS_INVALID_SORT_BY',    'PGRST', 400, 'sort_by must be one of deliveries, success_rate, on_time_rate, avg_delivery_minutes; got %s', null, false),
    ('METRICS_INVALID_SORT_ORDER', 'PGRST', 400, 'sort_order must be asc or desc; got %s', null, false),
    ('METRICS_INVALID_PAGE',       'PGRST', 400, 'page must be a whole number >= 1; got %s', null, false),
    ('METRICS_INVALID_LIMIT',      'PGRST', 400, 'page_size (limit) must be a whole number from 1 to 100; got %s', 'GET sends it as page_size: PostgREST reserves limit.', false),
    ('METRICS_INVALID_CURSOR',     'PGRST', 400, 'before must be a cursor returned as nextCursor (<microseconds>:<id>); got %s', null, false),
    ('METRICS_INVALID_VIEW',       'PGRST', 400, 'view must be one of leaderboard, sla_summary, geographic_coverage; got %s', null, false),
    ('METRICS_NOT_YOUR_AGENT',     'PGRST', 403, 'an agent reads only its own metrics, not agent %s', null, false);

-- -------------------------------------------------------------------------------------------------
-- Helpers. No SET clause on these SQL functions and every name schema-qualified, so the planner
-- inlines them (as sql/070_auth.sql explains: a SET would forbid inlining).
-- -------------------------------------------------------------------------------------------------

create function metrics.utc_day(p_at timestamptz)
returns date
language sql
immutable
as $$
    select (p_at at time zone 'UTC')::date
$$;
comment on function metrics.utc_day(timestamptz) is 'The UTC day of a timestamp (the day an event is counted in).';

create function metrics.minutes(p_duration interval)
returns integer
language sql
immutable
as $$
    select floor(extract(epoch from p_duration) / 60)::integer
$$;
comment on function metrics.minutes(interval) is 'A duration in whole minutes, rounded down: its 1-minute histogram bucket.';

create function metrics.micros(p_duration interval)
returns bigint
language sql
immutable
as $$
    select (extract(epoch from p_duration) * 1000000)::bigint
$$;
comment on function metrics.micros(interval) is 'A duration in microseconds (exact: sums of these give exact means).';

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
-- percentile_cont of each fraction over the values the minute histograms describe
-- together: position f * (n - 1), linear interpolation between the values at its floor and ceil.
-- One pass over the merged buckets. Null when the histograms hold no value. PL/pgSQL, not SQL, so
-- its one query is planned once per session (a non-inlined SQL function is planned on every call).
declare
    v_m integer[];
    v_n bigint[];
    v_total bigint := 0::bigint;
    v_ranks bigint[] := '{}'::bigint[];
    v_sorted bigint[];
    v_vals float8[] := '{}'::float8[];
    v_out float8[] := '{}'::float8[];
    v_cum bigint := 0::bigint;
    v_j integer := 1;
    v_pos float8;
begin
    select array_agg(b.m order by b.m), array_agg(b.n order by b.m) into v_m, v_n
      from (select e.key::integer as m, sum(e.value::bigint)::bigint as n
              from unnest(p_hists) h, jsonb_each_text(h) e
             group by e.key::integer) b;
    if v_m is null then
        return null;
    end if;
    for i in 1 .. array_length(v_n, 1) loop
        v_total := v_total + v_n[i];
    end loop;
    for i in 1 .. coalesce(array_length(p_fractions, 1), 0) loop
        v_pos := (v_total - 1) * p_fractions[i];
        v_ranks := v_ranks || floor(v_pos)::bigint || ceil(v_pos)::bigint;
    end loop;
    -- the value at each 0-based rank: the first bucket whose running count exceeds it. The ranks
    -- are walked in ascending order (p50's ceil can exceed p90's floor when n is small).
    v_sorted := array(select r from unnest(v_ranks) r order by r);
    for i in 1 .. array_length(v_n, 1) loop
        v_cum := v_cum + v_n[i];
        while v_j <= array_length(v_sorted, 1) and v_sorted[v_j] < v_cum loop
            v_vals[v_j] := v_m[i]::float8;
            v_j := v_j + 1;
        end loop;
    end loop;
    for i in 1 .. coalesce(array_length(p_fractions, 1), 0) loop
        v_pos := (v_total - 1) * p_fractions[i];
        v_out[i] := v_vals[array_position(v_sorted, floor(v_pos)::bigint)]
                    + (v_pos - floor(v_pos)) * (v_vals[array_position(v_sorted, ceil(v_pos)::bigint)]
                                                - v_vals[array_position(v_sorted, floor(v_pos)::bigint)]);
    end loop;
    return v_out;
end
$$;
comment on function metrics.hist_percentiles(jsonb[], float8[]) is
    'percentile_cont of each fraction over the values of minute histograms, merged (null when empty).';

create function metrics.rate(p_part bigint, p_whole bigint)
returns numeric
language sql
immutable
as $$
    select case when p_whole > 0 then round(p_part::numeric / p_whole, 4) end
$$;
comment on function metrics.rate(bigint, bigint) is 'part / whole rounded to 4 decimals, null when whole is 0 (no finished assignment is not 0 %).';

create function metrics.mean_minutes(p_micros bigint, p_count bigint)
returns numeric
language sql
immutable
as $$
    select case when p_count > 0 then round(p_micros::numeric / p_count / 60000000, 2) end
$$;
comment on function metrics.mean_minutes(bigint, bigint) is 'Mean duration in minutes (2 decimals) from a sum of microseconds, null when count is 0.';

grant execute on function metrics.utc_day(timestamptz), metrics.minutes(interval), metrics.micros(interval),
    metrics.hist_add(jsonb, integer), metrics.hist_percentiles(jsonb[], float8[]),
    metrics.rate(bigint, bigint), metrics.mean_minutes(bigint, bigint)
    to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- Rollup tables
-- No foreign key to core.delivery_agents: the rows are derived data (rebuilt from core at will), and
-- an FK would add a lookup to every new agent-day and to each of the ~1M rows of a rebuild.
-- -------------------------------------------------------------------------------------------------

create table metrics.agent_daily (
    agent_id         bigint not null,
    day              date not null,
    accepted         integer not null default 0,
    delivered        integer not null default 0,
    on_time          integer not null default 0,
    failed           integer not null default 0,
    cancelled        integer not null default 0,
    delivery_us      bigint not null default 0,
    acceptance_us    bigint not null default 0,
    delivery_hist    jsonb not null default '{}',
    acceptance_hist  jsonb not null default '{}',
    constraint agent_daily_pkey primary key (agent_id, day),
    constraint agent_daily_counts_not_negative_check
        check (accepted >= 0 and delivered >= 0 and failed >= 0 and cancelled >= 0),
    constraint agent_daily_on_time_within_delivered_check check (on_time between 0 and delivered)
);
alter table metrics.agent_daily enable row level security;
comment on table metrics.agent_daily is 'One delivery agent''s assignments per UTC day: counts by outcome, time sums and minute histograms (kept by triggers).';
comment on column metrics.agent_daily.delivery_us is 'Sum of delivered_at - accepted_at over the day''s deliveries, in microseconds.';
comment on column metrics.agent_daily.acceptance_us is 'Sum of accepted_at - created_at over the day''s acceptances, in microseconds.';
comment on column metrics.agent_daily.delivery_hist is 'Delivery times of the day''s deliveries: {whole minutes: count}.';
comment on column metrics.agent_daily.acceptance_hist is 'Acceptance latencies of the day''s acceptances: {whole minutes: count}.';
-- The primary key (agent_id, day) serves one agent's days in a period, one contiguous range.
-- (day): every agent's rows of a non-standard leaderboard period; written only when an agent-day row
-- is new (the updates that follow touch no indexed column, so they stay HOT). docs/indexes.md.
create index agent_daily_day_idx on metrics.agent_daily (day);
comment on index metrics.agent_daily_day_idx is 'Serves the leaderboard over a non-standard period: every agent''s rows of a range of days.';
grant select on metrics.agent_daily to admin, platform_admin, agent;
create policy staff_read on metrics.agent_daily for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.agent_daily is 'Admins read every agent''s rollups.';
-- The agent's own-rows policy is in sql/830_api_metrics.sql, next to auth.agent_id()'s other users.

create table metrics.zip_daily (
    zip_code         text not null,
    day              date not null,
    offered          integer not null default 0,
    accepted         integer not null default 0,
    delivered        integer not null default 0,
    on_time          integer not null default 0,
    failed           integer not null default 0,
    cancelled        integer not null default 0,
    delivery_us      bigint not null default 0,
    acceptance_us    bigint not null default 0,
    delivery_hist    jsonb not null default '{}',
    constraint zip_daily_pkey primary key (zip_code, day),
    constraint zip_daily_counts_not_negative_check
        check (offered >= 0 and accepted >= 0 and delivered >= 0 and failed >= 0 and cancelled >= 0),
    constraint zip_daily_on_time_within_delivered_check check (on_time between 0 and delivered)
);
alter table metrics.zip_daily enable row level security;
comment on table metrics.zip_daily is 'Assignments of one zip code per UTC day: offers, outcomes, time sums and a delivery-time histogram (kept by triggers).';
comment on column metrics.zip_daily.cancelled is 'Cancellations of the day, offers never accepted included.';
-- The primary key (zip_code, day) serves one zip code's days in a period.
create index zip_daily_day_idx on metrics.zip_daily (day);
comment on index metrics.zip_daily_day_idx is 'Serves the coverage view and rebuilds: every zip code''s rows of a range of days.';
grant select on metrics.zip_daily to admin, platform_admin;
create policy staff_read on metrics.zip_daily for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.zip_daily is 'Admins read every zip code''s rollups.';

-- -------------------------------------------------------------------------------------------------
-- The trigger: one upsert per affected row, nothing for PICKED_UP / IN_TRANSIT (the WHEN clause
-- keeps PL/pgSQL out of those). Row locks: concurrent transitions of one agent (or zip code) on the
-- same day queue on that rollup row until the first commits; agent row first, then zip row, always.
-- -------------------------------------------------------------------------------------------------

create function metrics.tg_shipping_assignments__rollup()
returns trigger
language plpgsql
set search_path = ''
as $$
-- AFTER an offer (INSERT) or a status change to ACCEPTED, DELIVERED, FAILED or CANCELLED: count the
-- event in the agent's and the zip code's row of the event's UTC day. A row inserted with a later
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
            insert into metrics.zip_daily as z (zip_code, day, accepted, acceptance_us)
            values (new.zip_code, v_day, 1, v_us)
            on conflict (zip_code, day) do update
                set accepted = z.accepted + 1, acceptance_us = z.acceptance_us + v_us;
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
            insert into metrics.zip_daily as z (zip_code, day, delivered, on_time, delivery_us, delivery_hist)
            values (new.zip_code, v_day, 1, v_on_time, v_us, jsonb_build_object(v_min::text, 1))
            on conflict (zip_code, day) do update
                set delivered = z.delivered + 1, on_time = z.on_time + v_on_time,
                    delivery_us = z.delivery_us + v_us, delivery_hist = metrics.hist_add(z.delivery_hist, v_min);
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

-- _500_: after core's own triggers (_010_ transition check, _100_ history); webhooks' triggers on the
-- same table pick their own numbers.
create trigger _500_metrics_rollup_offer
    after insert on core.shipping_assignments
    for each row execute function metrics.tg_shipping_assignments__rollup();
comment on trigger _500_metrics_rollup_offer on core.shipping_assignments is 'Counts each new offer in metrics.zip_daily.';
create trigger _500_metrics_rollup_transition
    after update of status on core.shipping_assignments
    for each row
    when (new.status is distinct from old.status and new.status in ('ACCEPTED', 'DELIVERED', 'FAILED', 'CANCELLED'))
    execute function metrics.tg_shipping_assignments__rollup();
comment on trigger _500_metrics_rollup_transition on core.shipping_assignments is
    'Counts acceptances, deliveries, failures and cancellations in metrics.agent_daily and metrics.zip_daily.';

-- -------------------------------------------------------------------------------------------------
-- Rebuild from the raw rows (bulk loads: waybill seed inserts with triggers off)
-- -------------------------------------------------------------------------------------------------

create function metrics.rebuild_rollups()
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
     group by p.agent_id, p.day;

    insert into metrics.zip_daily (zip_code, day, offered, accepted, delivered, on_time, failed, cancelled,
                                   delivery_us, acceptance_us, delivery_hist)
    with ev as (
        select a.zip_code, metrics.utc_day(a.created_at) as day, 'O' as kind, null::integer as m,
               0::bigint as us, 0 as on_time
          from core.shipping_assignments a
        union all
        select a.zip_code, metrics.utc_day(a.accepted_at), 'A', null,
               metrics.micros(a.accepted_at - a.created_at), 0
          from core.shipping_assignments a
         where a.accepted_at is not null and a.agent_id is not null
        union all
        select a.zip_code, metrics.utc_day(a.delivered_at), 'D',
               metrics.minutes(a.delivered_at - coalesce(a.accepted_at, a.created_at)),
               metrics.micros(a.delivered_at - coalesce(a.accepted_at, a.created_at)),
               (a.delivered_at <= a.sla_due_at)::integer
          from core.shipping_assignments a
         where a.status = 'DELIVERED'
        union all
        select a.zip_code, metrics.utc_day(coalesce(a.failed_at, a.updated_at)), 'F', null, 0, 0
          from core.shipping_assignments a
         where a.status = 'FAILED'
        union all
        select a.zip_code, metrics.utc_day(coalesce(a.cancelled_at, a.updated_at)), 'C', null, 0, 0
          from core.shipping_assignments a
         where a.status = 'CANCELLED'
    ), per_minute as (
        select ev.zip_code, ev.day, ev.kind, ev.m, count(*) as n, sum(ev.us) as us, sum(ev.on_time) as on_time
          from ev group by ev.zip_code, ev.day, ev.kind, ev.m
    )
    select p.zip_code, p.day,
           coalesce(sum(p.n) filter (where p.kind = 'O'), 0),
           coalesce(sum(p.n) filter (where p.kind = 'A'), 0),
           coalesce(sum(p.n) filter (where p.kind = 'D'), 0),
           coalesce(sum(p.on_time) filter (where p.kind = 'D'), 0),
           coalesce(sum(p.n) filter (where p.kind = 'F'), 0),
           coalesce(sum(p.n) filter (where p.kind = 'C'), 0),
           coalesce(sum(p.us) filter (where p.kind = 'D'), 0),
           coalesce(sum(p.us) filter (where p.kind = 'A'), 0),
           coalesce(jsonb_object_agg(p.m::text, p.n) filter (where p.kind = 'D'), '{}')
      from per_minute p
     group by p.zip_code, p.day;
end
$$;
comment on function metrics.rebuild_rollups() is
    'Recompute metrics.agent_daily and metrics.zip_daily from core.shipping_assignments (after bulk loads that skip triggers).';

-- ---- sql/310_metrics_views.sql ----
-- =================================================================================================
-- 310 Metrics: materialized views refreshed by pg_cron (the plan's caches, TTL 30/10/15 min)
-- Each view has a unique index (REFRESH … CONCURRENTLY needs one: readers never wait for a refresh).
-- metrics.views lists them with their TTL and pg_cron job; metrics.refresh_log records each refresh's
-- as-of (the start of the refresh: what `asOf` answers) and its duration.
-- Standard windows: the last 7, 30 and 90 UTC days including today, [today - (n - 1), today + 1).
-- =================================================================================================

-- REFRESH MATERIALIZED VIEW CONCURRENTLY builds its diff in a temporary table as the view's owner:
-- waybill_owner (sql/020_ops_ownership.sql) needs TEMPORARY on this database, which PUBLIC lost.
do $temp$
begin
    execute format('grant temporary on database %I to waybill_owner', current_database());
end
$temp$;

create table metrics.views (
    name         text not null,
    matview      text not null,
    ttl_minutes  integer not null,
    cron_job     text not null,
    constraint views_pkey primary key (name),
    constraint views_matview_key unique (matview),
    constraint views_cron_job_key unique (cron_job),
    -- "*/n * * * *" runs at minutes that are multiples of n only when n divides 60.
    constraint views_ttl_divides_an_hour_check check (ttl_minutes between 1 and 60 and 60 % ttl_minutes = 0)
);
alter table metrics.views enable row level security;
comment on table metrics.views is 'The materialized views behind the metrics endpoints, their TTL and the pg_cron job that refreshes them.';
comment on column metrics.views.ttl_minutes is 'Refresh period; the job runs every ttl_minutes minutes ("*/ttl * * * *").';
insert into metrics.views (name, matview, ttl_minutes, cron_job) values
    ('leaderboard',         'leaderboard',         30, 'waybill-metrics-leaderboard'),
    ('sla_summary',         'sla_summary',         10, 'waybill-metrics-sla-summary'),
    ('geographic_coverage', 'geographic_coverage', 15, 'waybill-metrics-geographic-coverage');
grant select on metrics.views to admin, platform_admin;
create policy staff_read on metrics.views for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.views is 'Admins read the view registry.';

create table metrics.refresh_log (
    id           bigint generated always as identity,
    view_name    text not null,
    as_of        timestamptz not null,
    duration_ms  numeric(12, 3) not null,
    source       text not null,
    constraint refresh_log_pkey primary key (id),
    constraint refresh_log_view_name_fkey foreign key (view_name) references metrics.views (name),
    constraint refresh_log_duration_not_negative_check check (duration_ms >= 0)
);
alter table metrics.refresh_log enable row level security;
comment on table metrics.refresh_log is 'One row per refresh of a metrics view: its as-of, how long it took and who asked (cron, api, seed, migration).';
comment on column metrics.refresh_log.as_of is 'When the refresh started: the data of the view is as of this instant.';
-- Every metrics answer reads its view's latest as-of: the newest row of one view, one index probe.
create index refresh_log_view_name_as_of_idx on metrics.refresh_log (view_name, as_of desc);
comment on index metrics.refresh_log_view_name_as_of_idx is 'Serves a view''s latest refresh (asOf of every answer) and the FK.';
grant select on metrics.refresh_log to admin, platform_admin;
create policy staff_read on metrics.refresh_log for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.refresh_log is 'Admins read the refresh log.';

create function metrics.windows(p_today date)
returns table (window_days integer, d_from date, d_to date)
language sql
immutable
as $$
    select n, p_today - (n - 1), p_today + 1 from unnest(array[7, 30, 90]) n
$$;
comment on function metrics.windows(date) is 'The standard windows ending today: the last 7, 30 and 90 UTC days, [today - (n-1), today + 1).';
grant execute on function metrics.windows(date) to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- Leaderboard: per standard window and agent, summed from metrics.agent_daily
-- -------------------------------------------------------------------------------------------------

create materialized view metrics.leaderboard as
with t as (
    select w.window_days, w.d_from, w.d_to, a.agent_id,
           sum(a.accepted)::integer as accepted, sum(a.delivered)::integer as delivered,
           sum(a.on_time)::integer as on_time, sum(a.failed)::integer as failed,
           sum(a.cancelled)::integer as cancelled, sum(a.delivery_us)::bigint as delivery_us
      from metrics.windows(metrics.utc_day(now())) w
      join metrics.agent_daily a on a.day >= w.d_from and a.day < w.d_to
     group by w.window_days, w.d_from, w.d_to, a.agent_id
), v as (
    -- the values ranked, exactly as api.agent_leaderboard computes them; 5 = its default min_deliveries
    select t.*, t.delivered::numeric / nullif(t.delivered + t.failed, 0) as success,
           t.on_time::numeric / nullif(t.delivered, 0) as punctual, t.delivery_us::numeric / nullif(t.delivered, 0) as speed,
           t.delivered + t.failed >= 5 as rated_success, t.delivered >= 5 as rated_delivered
      from t
)
select v.window_days, v.d_from, v.d_to, v.agent_id, v.accepted, v.delivered, v.on_time, v.failed, v.cancelled,
       v.delivery_us,
       rank() over (partition by v.window_days order by v.delivered desc)::integer as rank_deliveries_desc,
       rank() over (partition by v.window_days order by v.delivered)::integer as rank_deliveries_asc,
       case when v.rated_success then rank() over (partition by v.window_days, v.rated_success order by v.success desc)::integer end
           as rank_success_rate_desc,
       case when v.rated_success then rank() over (partition by v.window_days, v.rated_success order by v.success)::integer end
           as rank_success_rate_asc,
       case when v.rated_delivered then rank() over (partition by v.window_days, v.rated_delivered order by v.punctual desc)::integer end
           as rank_on_time_rate_desc,
       case when v.rated_delivered then rank() over (partition by v.window_days, v.rated_delivered order by v.punctual)::integer end
           as rank_on_time_rate_asc,
       case when v.rated_delivered then rank() over (partition by v.window_days, v.rated_delivered order by v.speed desc)::integer end
           as rank_avg_delivery_minutes_desc,
       case when v.rated_delivered then rank() over (partition by v.window_days, v.rated_delivered order by v.speed)::integer end
           as rank_avg_delivery_minutes_asc
  from v
with data;
comment on materialized view metrics.leaderboard is 'Each agent''s totals and ranks (per sort, default threshold) over the standard windows (7/30/90 days); refreshed every 30 minutes.';
create unique index leaderboard_window_days_agent_id_key on metrics.leaderboard (window_days, agent_id);
comment on index metrics.leaderboard_window_days_agent_id_key is 'One row per (window, agent): what REFRESH CONCURRENTLY matches rows on; serves the zip-filtered and threshold-changed rankings.';
-- One index per ranking: the default request (a standard window, no zip code, default threshold)
-- reads its page straight from the index, no sort of the window's ~10,000 agents (measured at 1M
-- assignments: ranking at request time cost 44 ms at P50 on a loaded machine; docs/performance.md).
create index leaderboard_window_days_rank_deliveries_desc_idx on metrics.leaderboard (window_days, rank_deliveries_desc, agent_id) where rank_deliveries_desc is not null;
comment on index metrics.leaderboard_window_days_rank_deliveries_desc_idx is 'Serves the default leaderboard page sorted by deliveries desc.';
create index leaderboard_window_days_rank_deliveries_asc_idx on metrics.leaderboard (window_days, rank_deliveries_asc, agent_id) where rank_deliveries_asc is not null;
comment on index metrics.leaderboard_window_days_rank_deliveries_asc_idx is 'Serves the default leaderboard page sorted by deliveries asc.';
create index leaderboard_window_days_rank_success_rate_desc_idx on metrics.leaderboard (window_days, rank_success_rate_desc, agent_id) where rank_success_rate_desc is not null;
comment on index metrics.leaderboard_window_days_rank_success_rate_desc_idx is 'Serves the default leaderboard page sorted by success_rate desc.';
create index leaderboard_window_days_rank_success_rate_asc_idx on metrics.leaderboard (window_days, rank_success_rate_asc, agent_id) where rank_success_rate_asc is not null;
comment on index metrics.leaderboard_window_days_rank_success_rate_asc_idx is 'Serves the default leaderboard page sorted by success_rate asc.';
create index leaderboard_window_days_rank_on_time_rate_desc_idx on metrics.leaderboard (window_days, rank_on_time_rate_desc, agent_id) where rank_on_time_rate_desc is not null;
comment on index metrics.leaderboard_window_days_rank_on_time_rate_desc_idx is 'Serves the default leaderboard page sorted by on_time_rate desc.';
create index leaderboard_window_days_rank_on_time_rate_asc_idx on metrics.leaderboard (window_days, rank_on_time_rate_asc, agent_id) where rank_on_time_rate_asc is not null;
comment on index metrics.leaderboard_window_days_rank_on_time_rate_asc_idx is 'Serves the default leaderboard page sorted by on_time_rate asc.';
create index leaderboard_window_days_rank_avg_delivery_minutes_desc_idx on metrics.leaderboard (window_days, rank_avg_delivery_minutes_desc, agent_id) where rank_avg_delivery_minutes_desc is not null;
comment on index metrics.leaderboard_window_days_rank_avg_delivery_minutes_desc_idx is 'Serves the default leaderboard page sorted by avg_delivery_minutes desc.';
create index leaderboard_window_days_rank_avg_delivery_minutes_asc_idx on metrics.leaderboard (window_days, rank_avg_delivery_minutes_asc, agent_id) where rank_avg_delivery_minutes_asc is not null;
comment on index metrics.leaderboard_window_days_rank_avg_delivery_minutes_asc_idx is 'Serves the default leaderboard page sorted by avg_delivery_minutes asc.';
grant select on metrics.leaderboard to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- SLA summary: exact per-day figures, exact standard-window figures, open and past-due per zip code
--   grain 'day'    one row per UTC day with deliveries (zip_code '')
--   grain 'window' one row per standard window (zip_code '')
--   grain 'open'   one row per zip code with open assignments (d_from = the refresh day)
-- -------------------------------------------------------------------------------------------------

create materialized view metrics.sla_summary as
with d as (
    select a.delivered_at, a.sla_due_at, a.delivered_at - coalesce(a.accepted_at, a.created_at) as took
      from core.shipping_assignments a
     where a.status = 'DELIVERED'
)
select 'day'::text as grain, x.day as d_from, x.day + 1 as d_to, ''::text as zip_code, x.delivered,
       x.on_time, x.delivery_us, x.minutes_p, h.hist as delivery_hist, 0 as open, 0 as open_past_due
  from (select metrics.utc_day(d.delivered_at) as day, count(*)::integer as delivered,
               count(*) filter (where d.delivered_at <= d.sla_due_at)::integer as on_time,
               sum(metrics.micros(d.took))::bigint as delivery_us,
               percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60) as minutes_p
          from d group by 1) x
  join (select m.day, jsonb_object_agg(m.minute::text, m.n) as hist
          from (select metrics.utc_day(d.delivered_at) as day, metrics.minutes(d.took) as minute, count(*) as n
                  from d group by 1, 2) m
         group by m.day) h on h.day = x.day
union all
select 'window', w.d_from, w.d_to, '', count(d.delivered_at)::integer,
       count(*) filter (where d.delivered_at <= d.sla_due_at)::integer,
       coalesce(sum(metrics.micros(d.took)), 0)::bigint,
       percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60),
       null, 0, 0
  from metrics.windows(metrics.utc_day(now())) w
  left join d on d.delivered_at >= w.d_from::timestamp at time zone 'UTC'
             and d.delivered_at < w.d_to::timestamp at time zone 'UTC'
 group by w.d_from, w.d_to
union all
select 'open', metrics.utc_day(now()), metrics.utc_day(now()) + 1, a.zip_code, 0, 0, 0, null, null,
       count(*)::integer, count(*) filter (where a.sla_due_at < now())::integer
  from core.shipping_assignments a
 where a.status in ('OFFERED', 'ACCEPTED', 'PICKED_UP', 'IN_TRANSIT')
 group by a.zip_code
with data;
comment on materialized view metrics.sla_summary is 'SLA figures: exact per day and per standard window, open and past-due assignments per zip code; refreshed every 10 minutes.';
create unique index sla_summary_grain_d_from_zip_code_key on metrics.sla_summary (grain, d_from, zip_code);
comment on index metrics.sla_summary_grain_d_from_zip_code_key is 'One row per (grain, day or window start, zip code): REFRESH CONCURRENTLY''s key; serves a period''s days.';
grant select on metrics.sla_summary to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- Geographic coverage: per zip code over the last 30 days, as of the refresh
-- -------------------------------------------------------------------------------------------------

create materialized view metrics.geographic_coverage as
with w as (
    select d_from, d_to from metrics.windows(metrics.utc_day(now())) where window_days = 30
), zips as (
    select z.zip_code from metrics.zip_daily z, w where z.day >= w.d_from and z.day < w.d_to
    union
    select o.ship_to_zip from core.orders o, w where o.created_at >= w.d_from::timestamp at time zone 'UTC'
    union
    select unnest(d.serviceable_zip_codes) from core.delivery_agents d where d.status = 'ACTIVE'
), agents as (
    select z.zip_code, count(*)::integer as active_agents
      from core.delivery_agents d, unnest(d.serviceable_zip_codes) z (zip_code)
     where d.status = 'ACTIVE'
     group by z.zip_code
), demand as (
    select o.ship_to_zip as zip_code, count(*)::integer as demand
      from core.orders o, w
     where o.created_at >= w.d_from::timestamp at time zone 'UTC'
       and o.created_at < w.d_to::timestamp at time zone 'UTC'
     group by o.ship_to_zip
), done as (
    select z.zip_code, sum(z.delivered)::integer as delivered, sum(z.on_time)::integer as on_time
      from metrics.zip_daily z, w
     where z.day >= w.d_from and z.day < w.d_to
     group by z.zip_code
), offers as (
    select a.zip_code, count(*)::integer as open_offers, min(a.created_at) as oldest_offer_at
      from core.shipping_assignments a
     where a.status = 'OFFERED'
     group by a.zip_code
)
select zips.zip_code, w.d_from, w.d_to,
       coalesce(agents.active_agents, 0) as active_agents, coalesce(demand.demand, 0) as demand,
       coalesce(done.delivered, 0) as delivered, coalesce(done.on_time, 0) as on_time,
       coalesce(offers.open_offers, 0) as open_offers, offers.oldest_offer_at,
       coalesce(demand.demand, 0) > 0 and coalesce(agents.active_agents, 0) = 0 as uncovered
  from zips cross join w
  left join agents using (zip_code)
  left join demand using (zip_code)
  left join done using (zip_code)
  left join offers using (zip_code)
with data;
comment on materialized view metrics.geographic_coverage is 'Per zip code: active agents, demand, deliveries, on time, open offers (30-day window); refreshed every 15 minutes.';
create unique index geographic_coverage_zip_code_key on metrics.geographic_coverage (zip_code);
comment on index metrics.geographic_coverage_zip_code_key is 'One row per zip code: REFRESH CONCURRENTLY''s key; serves the zip_code filter.';
-- No index for the page order (uncovered first, then by demand): one row per zip code (2,000 in the
-- 1M benchmark) is sorted in well under a millisecond, and the planner would read the table anyway.
grant select on metrics.geographic_coverage to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- Refresh, as-of, and the seconds to the next scheduled refresh
-- -------------------------------------------------------------------------------------------------

create function metrics.refresh(p_view text default null, p_source text default 'manual')
returns setof metrics.refresh_log
language plpgsql
volatile
set search_path = ''
as $$
-- Refresh one view (p_view) or all, CONCURRENTLY (readers keep reading the previous contents), and
-- log each refresh's as-of and duration. Two refreshes of one view queue on its EXCLUSIVE lock.
declare
    v metrics.views;
    v_start timestamptz;
    v_row metrics.refresh_log;
begin
    if p_view is not null and not exists (select 1 from metrics.views x where x.name = p_view) then
        perform ops.raise_error('METRICS_INVALID_VIEW', p_view);
    end if;
    for v in select * from metrics.views x where p_view is null or x.name = p_view order by x.name loop
        v_start := clock_timestamp();
        execute format('refresh materialized view concurrently metrics.%I', v.matview);
        insert into metrics.refresh_log (view_name, as_of, duration_ms, source)
        values (v.name, v_start, round((extract(epoch from clock_timestamp() - v_start) * 1000)::numeric, 3), p_source)
        returning * into v_row;
        return next v_row;
    end loop;
    -- A week of history is plenty for health_metrics; older rows go (one index range).
    delete from metrics.refresh_log l where l.as_of < v_start - interval '7 days';
end
$$;
comment on function metrics.refresh(text, text) is 'Refresh one metrics view or all of them concurrently and log as-of and duration.';

create function metrics.as_of(p_view text)
returns timestamptz
language sql
stable
set search_path = ''
as $$
    select l.as_of from metrics.refresh_log l where l.view_name = p_view order by l.as_of desc limit 1
$$;
comment on function metrics.as_of(text) is 'When the data of a metrics view was computed (its latest refresh''s start).';
grant execute on function metrics.as_of(text) to admin, platform_admin;

create function metrics.seconds_to_refresh(p_view text, p_now timestamptz default null)
returns integer
language sql
stable
set search_path = ''
as $$
    -- The jobs run at minutes that are multiples of ttl ("*/ttl * * * *"), aligned on the hour, so
    -- the next run is the next multiple of ttl * 60 seconds of the Unix epoch.
    select (v.ttl_minutes * 60 - floor(extract(epoch from coalesce(p_now, now())))::bigint % (v.ttl_minutes * 60))::integer
      from metrics.views v where v.name = p_view
$$;
comment on function metrics.seconds_to_refresh(text, timestamptz) is 'Seconds until the view''s next scheduled refresh (Cache-Control max-age).';
grant execute on function metrics.seconds_to_refresh(text, timestamptz) to admin, platform_admin;

create function metrics.set_cache_control(p_max_age integer)
returns void
language sql
volatile
set search_path = ''
as $$
    -- PostgREST (and gateway/) turn response.headers into HTTP headers.
    select set_config('response.headers',
                      json_build_array(json_build_object('Cache-Control', 'max-age=' || greatest(p_max_age, 0)))::text,
                      true)
$$;
comment on function metrics.set_cache_control(integer) is 'Set the answer''s Cache-Control: max-age header (seconds).';
grant execute on function metrics.set_cache_control(integer) to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- pg_cron jobs: one named job per view, created or updated idempotently. pg_cron lives in one
-- database per cluster (cron.database_name); elsewhere (test clones) this does nothing and says so.
-- -------------------------------------------------------------------------------------------------

create function metrics.schedule_refresh_jobs()
returns integer
language plpgsql
volatile
set search_path = ''
as $$
-- cron.schedule(name, …) updates a job of the same name instead of adding one: safe to repeat.
declare
    v metrics.views;
    v_n integer := 0;
begin
    if current_database() is distinct from current_setting('cron.database_name', true) then
        raise notice 'metrics: pg_cron runs in database %, not %: no refresh job scheduled here',
            current_setting('cron.database_name', true), current_database();
        return 0;
    end if;
    create extension if not exists pg_cron with schema pg_catalog;  -- it makes and fills its own schema, cron
    -- api.health_metrics runs as waybill_owner (it owns every Waybill object): let it read these
    -- jobs and their runs, which pg_cron's own policies show only to the role that scheduled them.
    grant usage on schema cron to waybill_owner;
    grant select on cron.job, cron.job_run_details to waybill_owner;
    drop policy if exists waybill_owner_reads_metrics_jobs on cron.job;
    create policy waybill_owner_reads_metrics_jobs on cron.job for select to waybill_owner
        using (jobname like 'waybill-metrics-%');
    drop policy if exists waybill_owner_reads_metrics_runs on cron.job_run_details;
    create policy waybill_owner_reads_metrics_runs on cron.job_run_details for select to waybill_owner
        using (jobid in (select j.jobid from cron.job j where j.jobname like 'waybill-metrics-%'));
    for v in select * from metrics.views order by name loop
        -- EXECUTE: schema cron exists only in the pg_cron database (checked above)
        execute 'select cron.schedule($1, $2, $3)'
          using v.cron_job, format('*/%s * * * *', v.ttl_minutes), format('select metrics.refresh(%L, ''cron'')', v.name);
        v_n := v_n + 1;
    end loop;
    return v_n;
end
$$;
comment on function metrics.schedule_refresh_jobs() is 'Create or update the named pg_cron jobs refreshing the metrics views (in the pg_cron database only).';

create function metrics.unschedule_refresh_jobs()
returns integer
language plpgsql
volatile
set search_path = ''
as $$
-- EXECUTE: schema cron exists only where pg_cron runs.
declare
    v_n integer := 0;
begin
    if to_regclass('cron.job') is not null then
        execute 'select count(cron.unschedule(j.jobname))::integer
                   from cron.job j join metrics.views v on v.cron_job = j.jobname' into v_n;
        drop policy if exists waybill_owner_reads_metrics_jobs on cron.job;
        drop policy if exists waybill_owner_reads_metrics_runs on cron.job_run_details;
        revoke select on cron.job, cron.job_run_details from waybill_owner;
        revoke usage on schema cron from waybill_owner;
    end if;
    return v_n;
end
$$;
comment on function metrics.unschedule_refresh_jobs() is 'Remove the metrics views'' pg_cron jobs (rollback).';

-- No refresh_log row yet: a schema build writes no clock-dependent data (the drift test compares
-- data too); asOf is null until the first refresh (seed, a migration over data, or the first job).
do $jobs$
begin
    perform metrics.schedule_refresh_jobs();
end
$jobs$;

-- ---- sql/830_api_metrics.sql ----
-- =================================================================================================
-- 830 The metrics endpoints (plan Track B; docs/metrics.md defines every figure)
-- GET-able (STABLE) functions returning one JSON object each. Read functions are SECURITY INVOKER:
-- the request role needs SELECT on what they read, and row-level security keeps an agent on its own
-- rows (metrics.agent_daily, core.assignment_status_history); the explicit agent check turns "not
-- yours" into a 403 instead of an empty answer. Arguments are text so that a bad value is a
-- registered 400 naming what is allowed, never a cast error. `limit` is reserved by PostgREST on GET
-- (it pages the rows a function returns), so the page size travels as `page_size`; answers say `limit`.
-- =================================================================================================

-- An agent reads only its own rollup rows (the endpoints also refuse other ids with a 403).
create policy agent_reads_own on metrics.agent_daily for select to agent
    using (agent_id = (select auth.agent_id()));
comment on policy agent_reads_own on metrics.agent_daily is 'An agent reads only its own rollups.';

-- -------------------------------------------------------------------------------------------------
-- Argument parsing (registered 400s)
-- -------------------------------------------------------------------------------------------------

create function metrics.raise_error(p_code text, variadic p_args text[] default '{}')
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
-- The read endpoints run as the caller (SECURITY INVOKER), which may not execute ops.*: this raises
-- the registered error for it (it only raises; it reads nothing but the registry).
begin
    perform ops.raise_error(p_code, variadic p_args);
end
$$;
comment on function metrics.raise_error(text, text[]) is 'ops.raise_error for the metrics endpoints, which run as the caller.';
grant execute on function metrics.raise_error(text, text[]) to admin, platform_admin, agent;

create function metrics.parse_day(p_name text, p_value text)
returns date
language plpgsql
immutable
set search_path = ''
as $$
-- A 'YYYY-MM-DD' that is a real calendar date (null stays null), else METRICS_INVALID_DATE.
begin
    if p_value is null then
        return null;
    end if;
    if p_value ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' then
        begin
            return to_date(p_value, 'YYYY-MM-DD') where to_char(to_date(p_value, 'YYYY-MM-DD'), 'YYYY-MM-DD') = p_value;
        exception when others then
            null;  -- out-of-range month or day: the registered error below
        end;
    end if;
    perform metrics.raise_error('METRICS_INVALID_DATE', p_name, coalesce(p_value, 'null'));
    return null;
end
$$;
comment on function metrics.parse_day(text, text) is 'Parse a YYYY-MM-DD argument, or raise METRICS_INVALID_DATE naming it.';

create function metrics.parse_period(p_from text, p_to text, p_now timestamptz default null)
returns table (d_from date, d_to date)
language plpgsql
stable
set search_path = ''
as $$
-- [from, to) in whole UTC days; default the last 30 days including today. At most 366 days.
declare
    v_today date := metrics.utc_day(coalesce(p_now, now()));
    v_to date := coalesce(metrics.parse_day('to', p_to), v_today + 1);
    v_from date := coalesce(metrics.parse_day('from', p_from), v_to - 30);
begin
    if p_to is null and p_from is not null and v_from >= v_to then
        v_to := v_from + 30;  -- only from given: the 30 days from it
    end if;
    if v_from >= v_to or v_to - v_from > 366 then
        perform metrics.raise_error('METRICS_INVALID_PERIOD', v_from::text, v_to::text);
    end if;
    return query select v_from, v_to;
end
$$;
comment on function metrics.parse_period(text, text, timestamptz) is 'Parse from/to into a half-open period of UTC days (default the last 30 days), or raise a registered 400.';

create function metrics.parse_int(p_value text, p_default integer, p_min integer, p_max integer, p_code text)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
-- A whole number in [p_min, p_max] (p_default when null), else the registered error p_code.
begin
    if p_value is null then
        return p_default;
    end if;
    if p_value ~ '^\s*[0-9]{1,9}\s*$' and btrim(p_value)::integer between p_min and p_max then
        return btrim(p_value)::integer;
    end if;
    perform metrics.raise_error(p_code, p_value);
    return null;
end
$$;
comment on function metrics.parse_int(text, integer, integer, integer, text) is 'Parse a bounded whole-number argument (page, page_size), or raise the registered error given.';

create function metrics.parse_zip(p_value text)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
    if p_value is null or p_value ~ '^[0-9]{5}$' then
        return p_value;
    end if;
    perform metrics.raise_error('INVALID_ARGUMENT', 'zip_code must be five digits, got ' || p_value);
    return null;
end
$$;
comment on function metrics.parse_zip(text) is 'A five-digit zip code filter (or null), else INVALID_ARGUMENT.';

create function metrics.resolve_agent(p_agent_id text)
returns bigint
language plpgsql
stable
set search_path = ''
as $$
-- The agent an answer is about. Agents: their own id only (omitted = themselves), another id is a
-- 403 before anything about it is read. Staff: a required, existing agent id.
declare
    v_self bigint;
    v_id bigint;
begin
    if p_agent_id is not null and p_agent_id !~ '^[0-9]{1,18}$' then
        perform metrics.raise_error('INVALID_ARGUMENT', 'agent_id must be a delivery agent id, got ' || p_agent_id);
    end if;
    v_id := p_agent_id::bigint;
    if auth.role() = 'agent' then
        v_self := auth.agent_id();
        if v_self is null then
            perform metrics.raise_error('INVALID_ARGUMENT', 'an agent token with a numeric sub is required');
        end if;
        if v_id is not null and v_id <> v_self then
            perform metrics.raise_error('METRICS_NOT_YOUR_AGENT', v_id::text);
        end if;
        return v_self;
    end if;
    if v_id is null then
        perform metrics.raise_error('INVALID_ARGUMENT', 'agent_id is required');
    end if;
    if not exists (select 1 from core.delivery_agents d where d.id = v_id) then
        perform metrics.raise_error('AGENT_NOT_FOUND', v_id::text);
    end if;
    return v_id;
end
$$;
comment on function metrics.resolve_agent(text) is 'Validate agent_id for the caller: agents only themselves (403 otherwise), staff an existing agent.';

grant execute on function metrics.parse_day(text, text), metrics.parse_period(text, text, timestamptz),
    metrics.parse_int(text, integer, integer, integer, text), metrics.parse_zip(text), metrics.resolve_agent(text)
    to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/agent_metrics?agent_id&from&to  (plan: GET /api/admin/agents/metrics/:id)
-- -------------------------------------------------------------------------------------------------

create function api.agent_metrics(agent_id text default null, "from" text default null, "to" text default null)
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
grant execute on function api.agent_metrics(text, text, text) to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/agent_leaderboard?from&to&zip_code&sort_by&sort_order&page&page_size&min_deliveries
-- -------------------------------------------------------------------------------------------------

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
    select l.window_days into v_window from metrics.leaderboard l
     where l.d_from = v_from and l.d_to = v_to limit 1;
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
    with src as (
        select l.agent_id, l.accepted, l.delivered, l.on_time, l.failed, l.cancelled, l.delivery_us
          from metrics.leaderboard l
         where v_window is not null and l.window_days = v_window
        union all
        select a.agent_id, sum(a.accepted)::integer, sum(a.delivered)::integer, sum(a.on_time)::integer,
               sum(a.failed)::integer, sum(a.cancelled)::integer, sum(a.delivery_us)::bigint
          from metrics.agent_daily a
         where v_window is null and a.day >= v_from and a.day < v_to
         group by a.agent_id
    ), scored as (
        select s.*,
               case v_sort when 'deliveries' then s.delivered::numeric
                           when 'success_rate' then s.delivered::numeric / nullif(s.delivered + s.failed, 0)
                           when 'on_time_rate' then s.on_time::numeric / nullif(s.delivered, 0)
                           else s.delivery_us::numeric / nullif(s.delivered, 0) end as v
          from src s
         where (v_zip is null or s.agent_id = any (v_zip_agents))
           and case v_sort when 'deliveries' then true
                           when 'success_rate' then s.delivered + s.failed >= v_min
                           else s.delivered >= v_min end
    ), ranked as (
        select r.*, rank() over (order by case when v_order = 'desc' then -r.v else r.v end) as rnk,
               count(*) over () as total
          from scored r
    ), page as (
        select r.* from ranked r
         order by r.rnk, r.agent_id
         offset (v_page - 1)::bigint * v_limit limit v_limit
    )
    select json_build_object(
               'asOf', v_as_of, 'from', v_from, 'to', v_to, 'zipCode', v_zip, 'sortBy', v_sort,
               'sortOrder', v_order, 'minDeliveries', v_min, 'page', v_page, 'limit', v_limit,
               'total', coalesce((select max(r.total) from ranked r), 0),
               'items', coalesce((
                   select json_agg(json_build_object(
                              'rank', p.rnk, 'agentId', p.agent_id, 'name', d.name,
                              'deliveries', p.delivered, 'failed', p.failed, 'accepted', p.accepted,
                              'cancelled', p.cancelled, 'onTime', p.on_time,
                              'successRate', metrics.rate(p.delivered, p.delivered + p.failed),
                              'onTimeRate', metrics.rate(p.on_time, p.delivered),
                              'avgDeliveryMinutes', metrics.mean_minutes(p.delivery_us, p.delivered))
                          order by p.rnk, p.agent_id)
                     from page p left join core.delivery_agents d on d.id = p.agent_id), '[]'))
      into v_result;
    return v_result;
end
$$;
comment on function api.agent_leaderboard(text, text, text, text, text, text, text, text) is $$Agent leaderboard
Agents ranked over [from, to) by sort_by (deliveries, success_rate, on_time_rate, avg_delivery_minutes), sort_order asc|desc, ties sharing a rank; zip_code keeps the agents serving it; rate rankings need min_deliveries (default 5). Paged: page >= 1, page_size 1-100 (default 20).$$;
grant execute on function api.agent_leaderboard(text, text, text, text, text, text, text, text) to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/geographic_coverage?zip_code&page&page_size
-- -------------------------------------------------------------------------------------------------

create function api.geographic_coverage(zip_code text default null, page text default null, page_size text default null)
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
grant execute on function api.geographic_coverage(text, text, text) to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/sla_summary?from&to&zip_code&agent_id
-- -------------------------------------------------------------------------------------------------

create function metrics.sla_day(p_day date, p_delivered bigint, p_on_time bigint, p_minutes float8[])
returns json
language sql
immutable
as $$
    select json_build_object('day', p_day, 'delivered', coalesce(p_delivered, 0), 'onTime', coalesce(p_on_time, 0),
                             'breached', coalesce(p_delivered - p_on_time, 0),
                             'onTimeRate', metrics.rate(p_on_time, p_delivered),
                             'p50', round(p_minutes[1]::numeric, 2), 'p90', round(p_minutes[2]::numeric, 2),
                             'p99', round(p_minutes[3]::numeric, 2))
$$;
comment on function metrics.sla_day(date, bigint, bigint, float8[]) is 'One day of the SLA summary''s series as JSON.';
grant execute on function metrics.sla_day(date, bigint, bigint, float8[]) to admin, platform_admin;

create function api.sla_summary("from" text default null, "to" text default null, zip_code text default null,
                                agent_id text default null)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- All zip codes: metrics.sla_summary (exact per day; exact for a standard window). One zip code:
-- metrics.zip_daily; one agent: metrics.agent_daily (percentiles from minute histograms).
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
begin
    if sla_summary.agent_id is not null then
        if v_zip is not null then
            perform metrics.raise_error('INVALID_ARGUMENT', 'give zip_code or agent_id, not both');
        end if;
        v_agent := metrics.resolve_agent(sla_summary.agent_id);
    end if;
    select p.d_from, p.d_to into v_from, v_to from metrics.parse_period(sla_summary."from", sla_summary."to") p;

    if v_agent is null and v_zip is null then
        v_as_of := metrics.as_of('sla_summary');
        select s.delivered::bigint, s.on_time::bigint, s.delivery_us, s.minutes_p into v_delivered, v_on_time, v_us, v_p
          from metrics.sla_summary s where s.grain = 'window' and s.d_from = v_from and s.d_to = v_to;
        v_method := case when found then 'exact' else 'minute_histogram' end;
        select coalesce(sum(s.open), 0), coalesce(sum(s.open_past_due), 0) into v_open, v_past_due
          from metrics.sla_summary s where s.grain = 'open';
        if v_method = 'minute_histogram' then
            select coalesce(sum(s.delivered), 0) as delivered, coalesce(sum(s.on_time), 0) as on_time,
                   coalesce(sum(s.delivery_us), 0)::bigint as delivery_us,
                   metrics.hist_percentiles(array_agg(s.delivery_hist), array[0.5, 0.9, 0.99]) 
              into v_delivered, v_on_time, v_us, v_p
              from metrics.sla_summary s where s.grain = 'day' and s.d_from >= v_from and s.d_from < v_to;
        end if;
        select json_agg(metrics.sla_day(g.day::date, s.delivered, s.on_time, s.minutes_p) order by g.day) into v_days
          from generate_series(v_from, v_to - 1, interval '1 day') g (day)
          left join metrics.sla_summary s on s.grain = 'day' and s.zip_code = '' and s.d_from = g.day::date;
        perform metrics.set_cache_control(metrics.seconds_to_refresh('sla_summary'));
    elsif v_zip is not null then
        v_as_of := metrics.as_of('sla_summary');  -- open / past due come from the view
        v_method := 'minute_histogram';
        select coalesce(sum(z.delivered), 0) as delivered, coalesce(sum(z.on_time), 0) as on_time,
               coalesce(sum(z.delivery_us), 0)::bigint as delivery_us,
               metrics.hist_percentiles(array_agg(z.delivery_hist), array[0.5, 0.9, 0.99]) 
          into v_delivered, v_on_time, v_us, v_p
          from metrics.zip_daily z where z.zip_code = v_zip and z.day >= v_from and z.day < v_to;
        select coalesce(sum(s.open), 0), coalesce(sum(s.open_past_due), 0) into v_open, v_past_due
          from metrics.sla_summary s where s.grain = 'open' and s.zip_code = v_zip;
        select json_agg(metrics.sla_day(g.day::date, z.delivered, z.on_time,
                                        metrics.hist_percentiles(array[z.delivery_hist], array[0.5, 0.9, 0.99])) order by g.day)
          into v_days
          from generate_series(v_from, v_to - 1, interval '1 day') g (day)
          left join metrics.zip_daily z on z.zip_code = v_zip and z.day = g.day::date;
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
        'delivered', v_delivered, 'onTime', v_on_time, 'breached', v_delivered - v_on_time,
        'onTimeRate', metrics.rate(v_on_time, v_delivered),
        'deliveryMinutes', json_build_object('mean', metrics.mean_minutes(v_us, v_delivered),
                                             'p50', round(v_p[1]::numeric, 2), 'p90', round(v_p[2]::numeric, 2),
                                             'p99', round(v_p[3]::numeric, 2)),
        'percentiles', v_method, 'dailyPercentiles', case when v_agent is null and v_zip is null then 'exact' else 'minute_histogram' end,
        'open', v_open, 'openPastDue', v_past_due,
        'daily', coalesce(v_days, '[]'));
end
$$;
comment on function api.sla_summary(text, text, text, text) is $$SLA summary
Over [from, to) (UTC dates, default the last 30 days), all zip codes or one zip_code or one agent_id: delivered, on time, breached, on-time rate, delivery time p50/p90/p99 (minutes), open assignments and those already past due, and the same per day.$$;
grant execute on function api.sla_summary(text, text, text, text) to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- GET /rpc/agent_activity?agent_id&before&page_size  (plan: GET /api/admin/agents/:id/activity)
-- -------------------------------------------------------------------------------------------------

create function api.agent_activity(agent_id text default null, before text default null, page text default null,
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
comment on function api.agent_activity(text, text, text, text) is $$Agent activity
An agent's status history, newest first: keyset paging with before = the previous answer's nextCursor (page also accepted), page_size 1-100 (default 20). Agents may read only their own.$$;
grant execute on function api.agent_activity(text, text, text, text) to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- POST /rpc/refresh_metrics {view?}   GET /rpc/health_metrics   (admins)
-- -------------------------------------------------------------------------------------------------

create function api.refresh_metrics(view text default null)
returns json
language sql
volatile
security definer
set search_path = ''
as $$
    select json_build_object('refreshed', coalesce(json_agg(json_build_object(
               'view', r.view_name, 'asOf', r.as_of, 'durationMs', r.duration_ms) order by r.view_name), '[]'))
      from metrics.refresh(refresh_metrics.view, 'api') r
$$;
comment on function api.refresh_metrics(text) is $$Refresh metrics views now
view: leaderboard, sla_summary or geographic_coverage (all when omitted). Answers each view's new as-of and the refresh's duration.$$;
grant execute on function api.refresh_metrics(text) to admin, platform_admin;

create function api.health_metrics()
returns json
language plpgsql
stable
security definer
set search_path = ''
as $$
-- Each view's as-of, age and last refresh duration; each pg_cron job's last run and status (when
-- pg_cron lives in this database).
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
                                        order by x.as_of desc limit 1) l on true));
end
$$;
comment on function api.health_metrics() is $$Metrics health
Each metrics view's as-of, age, staleness (older than twice its TTL) and last refresh duration, and each pg_cron job's schedule, last run and status.$$;
grant execute on function api.health_metrics() to admin, platform_admin;

-- ---- existing assignments (a server that already has data) ----
do $existing$
begin
    if exists (select 1 from core.shipping_assignments) then
        perform metrics.rebuild_rollups();
        perform metrics.refresh(null, 'migration');
    end if;
end
$existing$;
