-- 0016 metrics lean (issue 11 §6): the agent rollup's minute histograms become integer arrays (a
-- delivery's upsert no longer rewrites a jsonb object: the rollup triggers' cost per transition);
-- metrics.sla_summary gains cumulative per-day histograms ('cum' rows), so the all-zip SLA summary
-- of any period reads two rows instead of merging every bucket of its days, and an all-zip 'open'
-- row; the coverage page is read through an index in its order; a leaderboard ranked at request
-- time ranks only the rows up to its page (a top-N sort).
-- docs/performance.md "Migration 0016" measures each change; docs/metrics.md defines the figures.
-- depends: 0015.outbox_positional
-- Same text as sql/300_metrics_rollups.sql, sql/310_metrics_views.sql and sql/830_api_metrics.sql
-- (tests/test_migrations.py proves both build the same schema).
-- squawk: agent_daily's jsonb histograms are derived data whose every reader and writer is replaced
-- in this same file, and the table is refilled from the raw rows at the end (rebuild_rollups: its
-- ACCESS EXCLUSIVE lock is the point, 10-20 s at 1M assignments); its new shape check is validated on
-- that derived table (well under a second at 572,000 rows). The materialized view is rebuilt (a
-- view's query cannot be altered) and its unique index built on the view created just above, which
-- nothing reads yet; the coverage view's new index covers 2,000 rows at 1M assignments (a moment).
-- The histogram arrays are integer[]: a minute of a duration (a 32-bit minute is 4,000 years) and one
-- agent's deliveries in one minute bucket of one day cannot overflow it, and the arrays stay half the
-- size. The jsonb helpers dropped at the end were called only by the functions replaced here.
-- squawk-ignore-file ban-drop-column, constraint-missing-not-valid, ban-drop-view, require-concurrent-index-creation, prefer-bigint-over-int, ban-drop-function

-- A deploy never hangs behind a long transaction; the refill reads every assignment.
set local lock_timeout = '5s';
set local statement_timeout = '5min';

-- ---- agent_daily: minute histograms as parallel integer arrays ----
alter table metrics.agent_daily
    add column delivery_minutes integer[] not null default '{}',
    add column delivery_counts integer[] not null default '{}',
    add column acceptance_minutes integer[] not null default '{}',
    add column acceptance_counts integer[] not null default '{}';
alter table metrics.agent_daily add constraint agent_daily_histograms_shape_check
    check (cardinality(delivery_minutes) = cardinality(delivery_counts)
           and cardinality(acceptance_minutes) = cardinality(acceptance_counts)) not valid;
alter table metrics.agent_daily validate constraint agent_daily_histograms_shape_check;
-- The minute histograms are two parallel arrays, buckets in first-seen order: a bucket is found with
-- array_position and updated by subscript, a new minute appended. Exact for any duration (no cap, no
-- overflow bucket), size proportional to the distinct minutes; a jsonb {minute: count} cost a delivery
-- ~35 % more backend CPU per upsert, an array indexed by minute grows with the span of the day's
-- durations (docs/metrics.md, docs/performance.md "Migration 0016").
comment on column metrics.agent_daily.delivery_minutes is 'Delivery times of the day''s deliveries: the distinct whole minutes (buckets, first-seen order).';
comment on column metrics.agent_daily.delivery_counts is 'Deliveries in each bucket of delivery_minutes (same positions).';
comment on column metrics.agent_daily.acceptance_minutes is 'Acceptance latencies of the day''s acceptances: the distinct whole minutes (buckets, first-seen order).';
comment on column metrics.agent_daily.acceptance_counts is 'Acceptances in each bucket of acceptance_minutes (same positions).';

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
grant execute on function metrics.hist_percentiles(integer[], integer[], float8[]) to admin, platform_admin, agent;

-- ---- the trigger and the rebuild write the arrays ----
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
            -- the minute's bucket counts one more, or the minute is appended as a new bucket
            insert into metrics.agent_daily as a (agent_id, day, accepted, acceptance_us, acceptance_minutes, acceptance_counts)
            values (new.agent_id, v_day, 1, v_us, array[v_min], array[1])
            on conflict (agent_id, day) do update
                set accepted = a.accepted + 1, acceptance_us = a.acceptance_us + v_us,
                    acceptance_minutes[coalesce(array_position(a.acceptance_minutes, v_min), cardinality(a.acceptance_minutes) + 1)] = v_min,
                    acceptance_counts[coalesce(array_position(a.acceptance_minutes, v_min), cardinality(a.acceptance_counts) + 1)]
                        = coalesce(a.acceptance_counts[array_position(a.acceptance_minutes, v_min)], 0) + 1;
        elsif v_event = 'DELIVERED' then
            v_day := metrics.utc_day(new.delivered_at);
            v_min := metrics.minutes(new.delivered_at - coalesce(new.accepted_at, new.created_at));
            v_us := metrics.micros(new.delivered_at - coalesce(new.accepted_at, new.created_at));
            v_on_time := (new.delivered_at <= new.sla_due_at)::integer;
            insert into metrics.agent_daily as a (agent_id, day, delivered, on_time, delivery_us, delivery_minutes, delivery_counts)
            values (new.agent_id, v_day, 1, v_on_time, v_us, array[v_min], array[1])
            on conflict (agent_id, day) do update
                set delivered = a.delivered + 1, on_time = a.on_time + v_on_time, delivery_us = a.delivery_us + v_us,
                    delivery_minutes[coalesce(array_position(a.delivery_minutes, v_min), cardinality(a.delivery_minutes) + 1)] = v_min,
                    delivery_counts[coalesce(array_position(a.delivery_minutes, v_min), cardinality(a.delivery_counts) + 1)]
                        = coalesce(a.delivery_counts[array_position(a.delivery_minutes, v_min)], 0) + 1;
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
end
$$;
comment on function metrics.rebuild_rollups() is
    'Recompute metrics.agent_daily and metrics.zip_daily from core.shipping_assignments (after bulk loads that skip triggers).';

-- ---- SLA summary: cumulative histograms, so that any period's percentiles are two rows ----
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
grant execute on function metrics.cum_hist_percentiles(integer[], bigint[], bigint[], float8[]) to admin, platform_admin, agent;

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
), dm as (
    -- all zip codes: deliveries per day and minute
    select zd.day, u.minute, sum(u.n)::bigint as n
      from zd, unnest(zd.minutes, zd.counts) u (minute, n)
     group by zd.day, u.minute
), axis as (
    -- every minute any delivery took, ascending: the buckets of the 'cum' rows (the same in each)
    select array_agg(x.minute order by x.minute) as minutes, count(*)::integer as n
      from (select distinct dm.minute from dm) x
), cum as (
    -- hist_counts[i] of day d = deliveries on days <= d taking at most minutes[i] minutes: a dense
    -- grid (days x buckets, a hash join to the sparse counts), cumulated within each day over the
    -- buckets, then over the days
    select g.day, array_agg(g.c::bigint order by g.i) as counts
      from (select w.day, w.i, sum(w.within) over (partition by w.i order by w.day) as c
              from (select dd.day, b.i, sum(coalesce(dm.n, 0)) over (partition by dd.day order by b.i) as within
                      from (select distinct dm.day from dm) dd
                     cross join axis
                     cross join lateral unnest(axis.minutes) with ordinality b (minute, i)
                      left join dm on dm.day = dd.day and dm.minute = b.minute) w) g
     group by g.day
)
select 'day'::text as grain, x.day as d_from, x.day + 1 as d_to, ''::text as zip_code, x.delivered,
       x.on_time, x.delivery_us, x.minutes_p, h.minutes as hist_minutes, h.counts as hist_counts,
       0 as open, 0 as open_past_due
  from (select d.day, count(*)::integer as delivered,
               count(*) filter (where d.delivered_at <= d.sla_due_at)::integer as on_time,
               sum(metrics.micros(d.took))::bigint as delivery_us,
               percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60) as minutes_p
          from d group by d.day) x
  join (select dm.day, array_agg(dm.minute order by dm.minute) as minutes, array_agg(dm.n order by dm.minute) as counts
          from dm group by dm.day) h on h.day = x.day
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
select 'open', metrics.utc_day(now()), metrics.utc_day(now()) + 1, coalesce(a.zip_code, ''), 0, 0, 0, null, null, null,
       count(*)::integer, count(*) filter (where a.sla_due_at < now())::integer
  from core.shipping_assignments a
 where a.status in ('OFFERED', 'ACCEPTED', 'PICKED_UP', 'IN_TRANSIT')
 group by grouping sets ((a.zip_code), ())  -- and all zip codes: one row (zip_code '') instead of a sum per request
union all
select 'cum', cum.day, cum.day + 1, '', 0, 0, 0, null, axis.minutes, cum.counts, 0, 0
  from cum cross join axis
with data;
comment on materialized view metrics.sla_summary is 'SLA figures: exact per day and per standard window, for all zip codes and per zip code, open and past-due assignments per zip code; refreshed every 10 minutes.';
-- (grain, zip_code, d_from): all zip codes' days are one range (zip_code ''), one zip code's days
-- another; (grain, d_from, zip_code) would read every zip code's rows of a period to find one's.
comment on column metrics.sla_summary.hist_minutes is 'day, zip_day and cum rows: the minute buckets of the delivery times, ascending (a non-standard period merges them; cum rows: every minute of every day).';
comment on column metrics.sla_summary.hist_counts is 'day and zip_day rows: the number of deliveries in each bucket of hist_minutes; cum rows: of that day and every day before, cumulated over the buckets.';
create unique index sla_summary_grain_zip_code_d_from_key on metrics.sla_summary (grain, zip_code, d_from);
comment on index metrics.sla_summary_grain_zip_code_d_from_key is 'One row per (grain, zip code, day or window start): REFRESH CONCURRENTLY''s key; serves a period''s days, all zip codes or one.';
grant select on metrics.sla_summary to admin, platform_admin;

-- ---- the readers ----
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
               (select metrics.hist_percentiles(array_agg(u.m), array_agg(u.n), array[0.5, 0.9])
                  from days x, unnest(x.delivery_minutes, x.delivery_counts) u (m, n)) as dp,
               (select metrics.hist_percentiles(array_agg(u.m), array_agg(u.n), array[0.5])
                  from days x, unnest(x.acceptance_minutes, x.acceptance_counts) u (m, n)) as ap
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
                -- one zip code: its days' histograms merged, buckets summed in ascending order
                select metrics.sorted_hist_percentiles(array_agg(h.minute order by h.minute), array_agg(h.n order by h.minute),
                                                       array[0.5, 0.9, 0.99])
                  into v_p
                  from (select u.minute, sum(u.n)::bigint as n
                          from metrics.sla_summary s, unnest(s.hist_minutes, s.hist_counts) u (minute, n)
                         where s.grain = 'zip_day' and s.zip_code = v_key and s.d_from >= v_from and s.d_from < v_to
                         group by u.minute) h;
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
        perform metrics.set_cache_control(metrics.seconds_to_refresh('sla_summary'));
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

-- ---- agent leaderboard over a period ranked at request time: only the rows up to the page ----
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

-- ---- geographic coverage: the page is an index range ----
-- The page order (uncovered first, then by demand): a page is an index range instead of a sort of
-- every zip code per request (2,000 rows in the 1M benchmark: ~0.3 ms of a ~1.5 ms call; issue 11 §6
-- measures each call's server time against health_db's).
create index geographic_coverage_uncovered_demand_zip_code_idx
    on metrics.geographic_coverage (uncovered desc, demand desc, zip_code);
comment on index metrics.geographic_coverage_uncovered_demand_zip_code_idx is 'Serves the coverage page order: uncovered zip codes first, then by demand.';
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
comment on function api.geographic_coverage(text, text, text) is $$Geographic coverage
Per zip code over the last 30 days: active agents, demand (orders), deliveries, on-time rate, open offers and the oldest one's age in minutes; zip codes with demand and no active agent first. Paged: page, page_size.$$;

-- ---- the jsonb histograms go ----
alter table metrics.agent_daily drop column delivery_hist, drop column acceptance_hist;
drop function metrics.hist_percentiles(jsonb[], float8[]);
drop function metrics.hist_add(jsonb, integer);

-- ---- existing assignments: the arrays of every agent-day, from the raw rows; the view's as-of ----
do $existing$
begin
    if exists (select 1 from core.shipping_assignments) then
        perform metrics.rebuild_rollups();
        perform metrics.refresh('sla_summary', 'migration');
    end if;
end
$existing$;
