-- =================================================================================================
-- 300 Metrics: per-day rollups kept by triggers (docs/metrics.md has every definition)
-- metrics.agent_daily (agent, UTC day) and metrics.zip_daily (zip code, UTC day) are updated by the
-- triggers _500_metrics_rollup* on core.shipping_assignments, in the transaction of the transition:
-- always fresh, exact, O(days) to read. One UPDATE per affected rollup row (agent row, then zip row:
-- always in that order, so two transitions never wait on each other's rows in opposite orders); a
-- zip code's row holds only what an endpoint reads (offers, outcomes, on time, delivery-time sum).
-- metrics.rebuild_rollups() recomputes both from the raw rows (bulk loads skip triggers), and
-- metrics.zip_agents (sql/305).
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
    ('METRICS_INVALID_VIEW',       'PGRST', 400, 'view must be one of leaderboard, sla_summary, geographic_coverage, agent_running_totals, agent_recent; got %s', null, false),
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

create function metrics.sorted_hist_percentiles(p_minutes integer[], p_counts bigint[], p_fractions float8[])
returns float8[]
language plpgsql
immutable
set search_path = ''
as $$
-- percentile_cont of each fraction over the values a minute histogram describes, given as its
-- buckets in ascending order (p_minutes) and their counts: position f * (n - 1), linear interpolation
-- between the values at its floor and ceil. One pass over the buckets. Null when there is no value.
declare
    v_total bigint := 0::bigint;
    v_ranks bigint[] := '{}'::bigint[];
    v_sorted bigint[];
    v_vals float8[] := '{}'::float8[];
    v_out float8[] := '{}'::float8[];
    v_cum bigint := 0::bigint;
    v_j integer := 1;
    v_pos float8;
begin
    if coalesce(array_length(p_minutes, 1), 0) = 0 then
        return null;
    end if;
    for i in 1 .. array_length(p_counts, 1) loop
        v_total := v_total + p_counts[i];
    end loop;
    for i in 1 .. coalesce(array_length(p_fractions, 1), 0) loop
        v_pos := (v_total - 1) * p_fractions[i];
        v_ranks := v_ranks || floor(v_pos)::bigint || ceil(v_pos)::bigint;
    end loop;
    -- the value at each 0-based rank: the first bucket whose running count exceeds it. The ranks
    -- are walked in ascending order (p50's ceil can exceed p90's floor when n is small).
    v_sorted := array(select r from unnest(v_ranks) r order by r);
    for i in 1 .. array_length(p_counts, 1) loop
        v_cum := v_cum + p_counts[i];
        while v_j <= array_length(v_sorted, 1) and v_sorted[v_j] < v_cum loop
            v_vals[v_j] := p_minutes[i]::float8;
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
comment on function metrics.sorted_hist_percentiles(integer[], bigint[], float8[]) is
    'percentile_cont of each fraction over a minute histogram given as ascending buckets and their counts (null when empty).';

create function metrics.cum_hist_percentiles(p_minutes integer[], p_upto bigint[], p_before bigint[],
                                             p_fractions float8[])
returns float8[]
language plpgsql
immutable
set search_path = ''
as $$
-- percentile_cont of each fraction over the values counted by p_upto minus p_before: two cumulative
-- minute histograms on the same ascending buckets p_minutes (p_upto[i] = values of at most
-- p_minutes[i] minutes up to the period's last day, p_before the same up to the day before it, null
-- when there is none). The value at each 0-based rank is found by binary search (the difference is
-- non-decreasing in i): O(log buckets) per rank, whatever the length of the period. Null when empty.
declare
    v_len integer := coalesce(cardinality(p_minutes), 0);
    v_total bigint;
    v_out float8[] := '{}'::float8[];
    v_pos float8;
    v_rank bigint;
    v_lo integer;
    v_hi integer;
    v_mid integer;
    v_vals float8[];
begin
    if v_len = 0 then
        return null;
    end if;
    v_total := p_upto[v_len] - coalesce(p_before[v_len], 0);
    if v_total <= 0 then
        return null;
    end if;
    for k in 1 .. coalesce(cardinality(p_fractions), 0) loop
        v_pos := (v_total - 1) * p_fractions[k];
        v_vals := '{}'::float8[];
        foreach v_rank in array array[floor(v_pos)::bigint, ceil(v_pos)::bigint] loop
            -- the first bucket holding more than v_rank values
            v_lo := 1;
            v_hi := v_len;
            while v_lo < v_hi loop
                v_mid := (v_lo + v_hi) / 2;
                if p_upto[v_mid] - coalesce(p_before[v_mid], 0) > v_rank then
                    v_hi := v_mid;
                else
                    v_lo := v_mid + 1;
                end if;
            end loop;
            v_vals := v_vals || p_minutes[v_lo]::float8;
        end loop;
        v_out[k] := v_vals[1] + (v_pos - floor(v_pos)) * (v_vals[2] - v_vals[1]);
    end loop;
    return v_out;
end
$$;
comment on function metrics.cum_hist_percentiles(integer[], bigint[], bigint[], float8[]) is
    'percentile_cont of each fraction over the difference of two cumulative minute histograms on the same buckets (null when empty).';

create function metrics.hist_percentiles(p_minutes integer[], p_counts integer[], p_fractions float8[])
returns float8[]
language plpgsql
immutable
set search_path = ''
as $$
-- Minute histograms given as buckets in any order (several histograms concatenated: a minute may
-- repeat) merged, then metrics.sorted_hist_percentiles. PL/pgSQL, not SQL, so its one query is
-- planned once per session (a non-inlined SQL function is planned on every call).
declare
    v_m integer[];
    v_n bigint[];
begin
    select array_agg(b.m order by b.m), array_agg(b.n order by b.m) into v_m, v_n
      from (select u.m, sum(u.n)::bigint as n
              from unnest(p_minutes, p_counts) u (m, n)
             group by u.m) b;
    return metrics.sorted_hist_percentiles(v_m, v_n, p_fractions);
end
$$;
comment on function metrics.hist_percentiles(integer[], integer[], float8[]) is
    'percentile_cont of each fraction over minute histograms given as buckets (minutes, counts) in any order, merged (null when empty).';

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
    metrics.hist_percentiles(integer[], integer[], float8[]),
    metrics.cum_hist_percentiles(integer[], bigint[], bigint[], float8[]),
    metrics.sorted_hist_percentiles(integer[], bigint[], float8[]),
    metrics.rate(bigint, bigint), metrics.mean_minutes(bigint, bigint)
    to admin, platform_admin, agent;

-- -------------------------------------------------------------------------------------------------
-- Rollup tables
-- No foreign key to core.delivery_agents: the rows are derived data (rebuilt from core at will), and
-- an FK would add a lookup to every new agent-day and to each of the ~1M rows of a rebuild.
-- No CHECK constraint either (0020): PostgreSQL parses and plans a table's CHECK expressions again
-- at every INSERT or UPDATE statement (not once per session), 17 us of a rollup update's 38 us
-- measured, and each transition runs one or two. The rows are written only by the trigger below
-- (which only adds) and by rebuild_rollups; tests/test_metrics_rollups.py proves both equal a
-- recomputation from the raw rows and checks the invariants the constraints stated (counts >= 0,
-- on_time <= delivered, histogram arrays of equal length).
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
    delivery_minutes    integer[] not null default '{}',
    delivery_counts     integer[] not null default '{}',
    acceptance_minutes  integer[] not null default '{}',
    acceptance_counts   integer[] not null default '{}',
    constraint agent_daily_pkey primary key (agent_id, day)
);
alter table metrics.agent_daily enable row level security;
comment on table metrics.agent_daily is 'One delivery agent''s assignments per UTC day: counts by outcome, time sums and minute histograms (kept by triggers).';
comment on column metrics.agent_daily.delivery_us is 'Sum of delivered_at - accepted_at over the day''s deliveries, in microseconds.';
comment on column metrics.agent_daily.acceptance_us is 'Sum of accepted_at - created_at over the day''s acceptances, in microseconds.';
-- The minute histograms are two parallel arrays, buckets in first-seen order: a bucket is found with
-- array_position and updated by subscript, a new minute appended. Exact for any duration (no cap, no
-- overflow bucket), size proportional to the distinct minutes; a jsonb {minute: count} cost a delivery
-- ~35 % more backend CPU per upsert, an array indexed by minute grows with the span of the day's
-- durations (docs/metrics.md, docs/performance.md "Migration 0016").
comment on column metrics.agent_daily.delivery_minutes is 'Delivery times of the day''s deliveries: the distinct whole minutes (buckets, first-seen order).';
comment on column metrics.agent_daily.delivery_counts is 'Deliveries in each bucket of delivery_minutes (same positions).';
comment on column metrics.agent_daily.acceptance_minutes is 'Acceptance latencies of the day''s acceptances: the distinct whole minutes (buckets, first-seen order).';
comment on column metrics.agent_daily.acceptance_counts is 'Acceptances in each bucket of acceptance_minutes (same positions).';
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
    delivered        integer not null default 0,
    on_time          integer not null default 0,
    failed           integer not null default 0,
    cancelled        integer not null default 0,
    delivery_us      bigint not null default 0,
    constraint zip_daily_pkey primary key (zip_code, day)
);
alter table metrics.zip_daily enable row level security;
comment on table metrics.zip_daily is 'Assignments of one zip code per UTC day: offers, outcomes and the delivery-time sum (kept by triggers).';
comment on column metrics.zip_daily.cancelled is 'Cancellations of the day, offers never accepted included.';
-- No acceptance counts and no histogram per zip code: no endpoint reads them (a zip code's SLA
-- percentiles are exact, computed at refresh into metrics.sla_summary), and each would cost every
-- acceptance or delivery one more upsert or jsonb rewrite (docs/performance.md, trigger cost).
-- The primary key (zip_code, day) serves one zip code's days in a period.
create index zip_daily_day_idx on metrics.zip_daily (day);
comment on index metrics.zip_daily_day_idx is 'Serves the coverage view and rebuilds: every zip code''s rows of a range of days.';
grant select on metrics.zip_daily to admin, platform_admin;
create policy staff_read on metrics.zip_daily for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.zip_daily is 'Admins read every zip code''s rollups.';

-- -------------------------------------------------------------------------------------------------
-- The trigger: nothing for PICKED_UP / IN_TRANSIT (the WHEN clause keeps PL/pgSQL out of those). An
-- acceptance touches only the agent's row, a delivery the agent's row (with its histogram arrays)
-- and the zip code's counters. Each row is an UPDATE by primary key; only when the row does not
-- exist yet (the first event of its day) an INSERT ... ON CONFLICT DO NOTHING follows, and the
-- UPDATE again if a concurrent transaction inserted it first. 0020: an UPDATE that finds its row is
-- one statement where INSERT ... ON CONFLICT DO UPDATE also checked the proposed row and locked the
-- existing one before updating it (docs/performance.md "Migration 0020"). Row locks: concurrent
-- transitions of one agent (or zip code) on the same day queue on that rollup row until the first
-- commits; agent row first, then zip row, always.
-- -------------------------------------------------------------------------------------------------

create function metrics.tg_shipping_assignments__rollup()
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
-- Each count: UPDATE the row; if there is none, INSERT it with this event alone (ON CONFLICT DO
-- NOTHING: a concurrent transaction may insert it first, after waiting for which the loop's UPDATE
-- finds it). The rows are never deleted but by rebuild_rollups, whose lock waits for us.
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
            v_day := metrics.utc_day(new.created_at);
            loop
                update metrics.zip_daily as z set offered = z.offered + 1
                 where z.zip_code = new.zip_code and z.day = v_day;
                exit when found;
                insert into metrics.zip_daily (zip_code, day, offered) values (new.zip_code, v_day, 1)
                on conflict (zip_code, day) do nothing;
                exit when found;
            end loop;
        elsif v_event = 'ACCEPTED' then
            v_day := metrics.utc_day(coalesce(new.accepted_at, new.updated_at));
            v_min := metrics.minutes(coalesce(new.accepted_at, new.updated_at) - new.created_at);
            v_us := metrics.micros(coalesce(new.accepted_at, new.updated_at) - new.created_at);
            loop
                -- the minute's bucket counts one more, or the minute is appended as a new bucket
                update metrics.agent_daily as a
                   set accepted = a.accepted + 1, acceptance_us = a.acceptance_us + v_us,
                       acceptance_minutes[coalesce(array_position(a.acceptance_minutes, v_min), cardinality(a.acceptance_minutes) + 1)] = v_min,
                       acceptance_counts[coalesce(array_position(a.acceptance_minutes, v_min), cardinality(a.acceptance_counts) + 1)]
                           = coalesce(a.acceptance_counts[array_position(a.acceptance_minutes, v_min)], 0) + 1
                 where a.agent_id = new.agent_id and a.day = v_day;
                exit when found;
                insert into metrics.agent_daily (agent_id, day, accepted, acceptance_us, acceptance_minutes, acceptance_counts)
                values (new.agent_id, v_day, 1, v_us, array[v_min], array[1])
                on conflict (agent_id, day) do nothing;
                exit when found;
            end loop;
        elsif v_event = 'DELIVERED' then
            v_day := metrics.utc_day(new.delivered_at);
            v_min := metrics.minutes(new.delivered_at - coalesce(new.accepted_at, new.created_at));
            v_us := metrics.micros(new.delivered_at - coalesce(new.accepted_at, new.created_at));
            v_on_time := (new.delivered_at <= new.sla_due_at)::integer;
            loop
                update metrics.agent_daily as a
                   set delivered = a.delivered + 1, on_time = a.on_time + v_on_time, delivery_us = a.delivery_us + v_us,
                       delivery_minutes[coalesce(array_position(a.delivery_minutes, v_min), cardinality(a.delivery_minutes) + 1)] = v_min,
                       delivery_counts[coalesce(array_position(a.delivery_minutes, v_min), cardinality(a.delivery_counts) + 1)]
                           = coalesce(a.delivery_counts[array_position(a.delivery_minutes, v_min)], 0) + 1
                 where a.agent_id = new.agent_id and a.day = v_day;
                exit when found;
                insert into metrics.agent_daily (agent_id, day, delivered, on_time, delivery_us, delivery_minutes, delivery_counts)
                values (new.agent_id, v_day, 1, v_on_time, v_us, array[v_min], array[1])
                on conflict (agent_id, day) do nothing;
                exit when found;
            end loop;
            loop
                update metrics.zip_daily as z
                   set delivered = z.delivered + 1, on_time = z.on_time + v_on_time, delivery_us = z.delivery_us + v_us
                 where z.zip_code = new.zip_code and z.day = v_day;
                exit when found;
                insert into metrics.zip_daily (zip_code, day, delivered, on_time, delivery_us)
                values (new.zip_code, v_day, 1, v_on_time, v_us)
                on conflict (zip_code, day) do nothing;
                exit when found;
            end loop;
        elsif v_event = 'FAILED' then
            v_day := metrics.utc_day(coalesce(new.failed_at, new.updated_at));
            loop
                update metrics.agent_daily as a set failed = a.failed + 1
                 where a.agent_id = new.agent_id and a.day = v_day;
                exit when found;
                insert into metrics.agent_daily (agent_id, day, failed) values (new.agent_id, v_day, 1)
                on conflict (agent_id, day) do nothing;
                exit when found;
            end loop;
            loop
                update metrics.zip_daily as z set failed = z.failed + 1
                 where z.zip_code = new.zip_code and z.day = v_day;
                exit when found;
                insert into metrics.zip_daily (zip_code, day, failed) values (new.zip_code, v_day, 1)
                on conflict (zip_code, day) do nothing;
                exit when found;
            end loop;
        elsif v_event = 'CANCELLED' then
            v_day := metrics.utc_day(coalesce(new.cancelled_at, new.updated_at));
            while new.agent_id is not null loop
                update metrics.agent_daily as a set cancelled = a.cancelled + 1
                 where a.agent_id = new.agent_id and a.day = v_day;
                exit when found;
                insert into metrics.agent_daily (agent_id, day, cancelled) values (new.agent_id, v_day, 1)
                on conflict (agent_id, day) do nothing;
                exit when found;
            end loop;
            loop
                update metrics.zip_daily as z set cancelled = z.cancelled + 1
                 where z.zip_code = new.zip_code and z.day = v_day;
                exit when found;
                insert into metrics.zip_daily (zip_code, day, cancelled) values (new.zip_code, v_day, 1)
                on conflict (zip_code, day) do nothing;
                exit when found;
            end loop;
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
