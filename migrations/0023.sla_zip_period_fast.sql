-- 0023 SLA zip period fast (issue 11 §6): sla_summary for one zip code over a non-standard period
-- no longer merges every minute bucket of the period's days (4,052 for the busiest zip code's week
-- at 1M assignments: 3.2 ms of its 5.1 ms). metrics.sla_summary is rebuilt with, per zip code, its
-- minutes cut into bands: each zip_day row holds the zip code's deliveries per band cumulated over
-- the bands and the days up to it (band_counts), and one zip_band row per band its (minute, day)
-- postings with running counts; metrics.zip_period_percentiles subtracts two zip_day rows, finds
-- each rank's band by binary search, then its minute from that band's postings: a cost that does not
-- grow with the period. Same figures (percentile_cont over whole minutes); zip_day rows lose their
-- minute histograms, which nothing reads any more. docs/performance/agent-metrics.md "Migration
-- 0023" measures it; docs/metrics.md defines the figures.
-- depends: 0022.leaderboard_zip_fast
-- Same text as sql/310_metrics_views.sql and sql/830_api_metrics.sql (tests/test_migrations.py
-- proves both build the same schema).
-- squawk: metrics.sla_summary is derived data (a view's query cannot be altered): it is rebuilt from
-- core.shipping_assignments in this same file, its unique index built on the view created just
-- above, which nothing reads yet; its pg_cron job names the view (metrics.refresh), untouched. The
-- band numbers and counts are integer like the view's other counts (one zip code's deliveries
-- cannot reach 2^31).
-- squawk-ignore-file ban-drop-view, require-concurrent-index-creation, prefer-bigint-over-int

-- A deploy never hangs behind a long transaction; the view reads every delivered assignment.
set local lock_timeout = '5s';
set local statement_timeout = '5min';

create function metrics.posting_key(p_minute integer, p_day date)
returns bigint
language sql
immutable
as $$
    -- the minute in the high 32 bits, the day (days since 1970-01-01, shifted to be >= 0) in the low
    -- ones: ascending keys are in (minute, day) order for any minute and any date
    select (p_minute::bigint << 32) + (p_day - date '1970-01-01') + 2147483648
$$;
comment on function metrics.posting_key(integer, date) is 'A zip_band posting''s key: (minute, day) as one bigint ordered as the pair.';
grant execute on function metrics.posting_key(integer, date) to admin, platform_admin;

drop materialized view metrics.sla_summary;
-- toast_tuple_target 8160 (0023): a zip_band row (up to ~6 KB) stays inline and uncompressed, so that
-- width_bucket reads its arrays in place (a compressed or out-of-line array is decompressed again
-- by every function call that reads it: 64 minutes x 2 binary searches)
create materialized view metrics.sla_summary with (toast_tuple_target = 8160) as
with d as (
    select a.zip_code, metrics.utc_day(a.delivered_at) as day, a.delivered_at, a.sla_due_at,
           a.delivered_at - coalesce(a.accepted_at, a.created_at) as took
      from core.shipping_assignments a
     where a.status = 'DELIVERED'
), zm as (
    -- per zip code, day and whole minute: the deliveries (the buckets of the zip code's day histogram)
    select d.zip_code, d.day, metrics.minutes(d.took) as minute, count(*) as n
      from d group by d.zip_code, d.day, metrics.minutes(d.took)
), zd as (
    -- per zip code and day: counts, sums, exact percentiles and the minute histogram
    select x.zip_code, x.day, x.delivered, x.on_time, x.delivery_us, x.minutes_p, h.minutes, h.counts
      from (select d.zip_code, d.day, count(*)::integer as delivered,
                   count(*) filter (where d.delivered_at <= d.sla_due_at)::integer as on_time,
                   sum(metrics.micros(d.took))::bigint as delivery_us,
                   percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60) as minutes_p
              from d group by d.zip_code, d.day) x
      join (select zm.zip_code, zm.day, array_agg(zm.minute order by zm.minute) as minutes,
                   array_agg(zm.n order by zm.minute) as counts
              from zm group by zm.zip_code, zm.day) h on h.zip_code = x.zip_code and h.day = x.day
), zi as (
    -- each zip code with deliveries as a number: the band CTEs below sort and join integers (a
    -- linguistic sort of text keys costs seconds at 1M assignments)
    select z.zip_code, (row_number() over (order by z.zip_code collate "C"))::integer as zid
      from (select distinct zm.zip_code from zm) z
), zp as (
    -- the postings (deliveries per zip code, minute and day) with their band: bands cut each zip
    -- code's distinct minutes, ascending; one ends after 64 minutes or once 384 postings precede it
    -- in the band. rank() - 1 counts the zip code's postings of smaller minutes, dense_rank() - 1 its
    -- smaller distinct minutes.
    select y.zid, y.minute, y.day, y.n,
           dense_rank() over (partition by y.zid order by y.before / 384, y.rn / 64)::integer as band
      from (select zi.zid, zm.minute, zm.day, zm.n,
                   rank() over w - 1 as before, dense_rank() over w - 1 as rn
              from zm join zi on zi.zip_code = zm.zip_code
            window w as (partition by zi.zid order by zm.minute)) y
), zg as (
    -- band_counts of each zip code's days: a dense grid (the zip code's days x its bands), cumulated
    -- within each day over the bands, then over the days
    select g.zid, g.day, array_agg(g.c::integer order by g.band) as counts
      from (select w.zid, w.day, w.band, sum(w.within) over (partition by w.zid, w.band order by w.day) as c
              from (select pd.zid, pd.day, b.band,
                           sum(coalesce(pb.n, 0)) over (partition by pd.zid, pd.day order by b.band) as within
                      from (select zi.zid, zd.day from zd join zi on zi.zip_code = zd.zip_code) pd
                      join (select zp.zid, max(zp.band) as bands from zp group by zp.zid) nb on nb.zid = pd.zid
                     cross join lateral generate_series(1, nb.bands) b (band)
                      left join (select zp.zid, zp.day, zp.band, sum(zp.n) as n
                                   from zp group by zp.zid, zp.day, zp.band) pb
                        on pb.zid = pd.zid and pb.day = pd.day and pb.band = b.band) w) g
     group by g.zid, g.day
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
select 'day'::text as grain, x.day as d_from, x.day + 1 as d_to, ''::text as zip_code, 0 as band, x.delivered,
       x.on_time, x.delivery_us, x.minutes_p, h.minutes as hist_minutes, h.counts as hist_counts,
       null::integer[] as band_counts, null::bigint[] as posting_keys, null::integer[] as posting_counts,
       0 as open, 0 as open_past_due
  from (select d.day, count(*)::integer as delivered,
               count(*) filter (where d.delivered_at <= d.sla_due_at)::integer as on_time,
               sum(metrics.micros(d.took))::bigint as delivery_us,
               percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60) as minutes_p
          from d group by d.day) x
  join (select dm.day, array_agg(dm.minute order by dm.minute) as minutes, array_agg(dm.n order by dm.minute) as counts
          from dm group by dm.day) h on h.day = x.day
union all
select 'window', w.d_from, w.d_to, '', 0, count(d.delivered_at)::integer,
       count(*) filter (where d.delivered_at <= d.sla_due_at)::integer,
       coalesce(sum(metrics.micros(d.took)), 0)::bigint,
       percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60),
       null, null, null, null, null, 0, 0
  from metrics.windows(metrics.utc_day(now())) w
  left join d on d.day >= w.d_from and d.day < w.d_to
 group by w.d_from, w.d_to
union all
-- (no minute histogram since 0023: a zip code's period reads band_counts and its zip_band rows)
select 'zip_day', zd.day, zd.day + 1, zd.zip_code, 0, zd.delivered, zd.on_time, zd.delivery_us, zd.minutes_p,
       null, null, zg.counts, null, null, 0, 0
  from zd join zi on zi.zip_code = zd.zip_code join zg on zg.zid = zi.zid and zg.day = zd.day
union all
select 'zip_window', w.d_from, w.d_to, d.zip_code, 0, count(*)::integer,
       count(*) filter (where d.delivered_at <= d.sla_due_at)::integer,
       sum(metrics.micros(d.took))::bigint,
       percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from d.took) / 60),
       null, null, null, null, null, 0, 0
  from metrics.windows(metrics.utc_day(now())) w
  join d on d.day >= w.d_from and d.day < w.d_to
 group by w.d_from, w.d_to, d.zip_code
union all
select 'open', metrics.utc_day(now()), metrics.utc_day(now()) + 1, coalesce(a.zip_code, ''), 0, 0, 0, 0, null, null, null,
       null, null, null, count(*)::integer, count(*) filter (where a.sla_due_at < now())::integer
  from core.shipping_assignments a
 where a.status in ('OFFERED', 'ACCEPTED', 'PICKED_UP', 'IN_TRANSIT')
 group by grouping sets ((a.zip_code), ())  -- and all zip codes: one row (zip_code '') instead of a sum per request
union all
select 'cum', cum.day, cum.day + 1, '', 0, 0, 0, 0, null, axis.minutes, cum.counts, null, null, null, 0, 0
  from cum cross join axis
union all
select 'zip_band', '-infinity', 'infinity', zi.zip_code, p.band, p.delivered, 0, 0, null, p.minutes, null, null,
       p.keys, p.counts, 0, 0
  from (select p.zid, p.band, sum(p.n)::integer as delivered, array_agg(distinct p.minute order by p.minute) as minutes,
               array_agg(metrics.posting_key(p.minute, p.day) order by p.minute, p.day) as keys,
               array_agg(p.c::integer order by p.minute, p.day) as counts
          from (select zp.*, sum(zp.n) over (partition by zp.zid, zp.band order by zp.minute, zp.day) as c from zp) p
         group by p.zid, p.band) p
  join zi on zi.zid = p.zid
with data;
comment on materialized view metrics.sla_summary is 'SLA figures: exact per day and per standard window, for all zip codes and per zip code, open and past-due assignments per zip code; refreshed every 10 minutes.';
-- (grain, zip_code, d_from, band): all zip codes' days are one range (zip_code ''), one zip code's
-- days another, a zip code's band one probe; (grain, d_from, zip_code) would read every zip code's
-- rows of a period to find one's.
comment on column metrics.sla_summary.band is 'zip_band rows: the band''s number (1 = the zip code''s shortest minutes); 0 in every other row.';
comment on column metrics.sla_summary.hist_minutes is 'day and cum rows: the minute buckets of the delivery times, ascending (cum rows: every minute of every day); zip_band rows: the band''s minutes, ascending.';
comment on column metrics.sla_summary.hist_counts is 'day rows: the number of deliveries in each bucket of hist_minutes; cum rows: of that day and every day before, cumulated over the buckets.';
comment on column metrics.sla_summary.band_counts is 'zip_day rows: band_counts[b] = the zip code''s deliveries on that day or any day before it in bands 1 to b.';
comment on column metrics.sla_summary.posting_keys is 'zip_band rows: one key per minute and day with deliveries in the band (metrics.posting_key), ascending.';
comment on column metrics.sla_summary.posting_counts is 'zip_band rows: posting_counts[i] = the band''s deliveries in postings 1 to i (same positions as posting_keys).';
create unique index sla_summary_grain_zip_code_d_from_band_key on metrics.sla_summary (grain, zip_code, d_from, band);
comment on index metrics.sla_summary_grain_zip_code_d_from_band_key is 'One row per (grain, zip code, day or window start, band): REFRESH CONCURRENTLY''s key; serves a period''s days, all zip codes or one, and a zip code''s band.';
grant select on metrics.sla_summary to admin, platform_admin;

create function metrics.zip_period_percentiles(p_zip_code text, p_from date, p_to date, p_fractions float8[])
returns float8[]
language plpgsql
stable
set search_path = ''
as $$
-- percentile_cont of each fraction over one zip code's delivery times in whole minutes on the days
-- [p_from, p_to), as of the view's refresh: the same values as merging those days' minute
-- histograms, in a cost that does not grow with the period or the zip code's deliveries (0023).
-- 1. band_counts of the zip code's last day before p_to minus those of its last day before p_from:
--    the period's deliveries in bands 1..b (non-decreasing in b); width_bucket (a binary search)
--    gives the band of each rank and the rank within that band.
-- 2. per band needed (a zip_band row, read in place): each minute's deliveries in the period are
--    two binary searches in its postings (the counts up to the period's last day minus those up to
--    the day before it); cumulated over the minutes, width_bucket again gives the minute of a rank.
-- Null when the period has no delivery.
declare
    -- posting_key(m, d) = (m << 32) + posting_key(0, d): the keys of any minute up to these days
    v_before bigint := metrics.posting_key(0, p_from - 1);
    v_upto bigint := metrics.posting_key(0, p_to - 1);
    v_cum bigint[];
    v_out float8[];
begin
    select array(select (u.upto - coalesce(u.before, 0))::bigint from unnest(t.band_counts, f.band_counts) u (upto, before))
      into v_cum
      from (select s.band_counts from metrics.sla_summary s
             where s.grain = 'zip_day' and s.zip_code = p_zip_code and s.d_from < p_to
             order by s.d_from desc limit 1) t
      left join (select s.band_counts from metrics.sla_summary s
                  where s.grain = 'zip_day' and s.zip_code = p_zip_code and s.d_from < p_from
                  order by s.d_from desc limit 1) f on true;
    if coalesce(v_cum[cardinality(v_cum)], 0) <= 0 then
        return null;
    end if;
    with q as (
        -- percentile_cont's position (n - 1) * fraction, between the 0-based ranks floor and ceil
        select f.k, (v_cum[cardinality(v_cum)] - 1) * f.fraction as pos
          from unnest(p_fractions) with ordinality f (fraction, k)
    ), r as (
        -- each rank: its band (the first whose cumulated count exceeds it), its rank in the band
        select x.rank, width_bucket(x.rank, v_cum) + 1 as band,
               x.rank - coalesce(v_cum[width_bucket(x.rank, v_cum)], 0) as rank_in_band
          from (select distinct y.rank from q, lateral (values (floor(q.pos)::bigint), (ceil(q.pos)::bigint)) y (rank)) x
    ), n as materialized (
        -- each band needed (one index probe each): its minutes' deliveries in the period. Materialized:
        -- the window below then sorts these small rows, not rows carrying the band's arrays
        select x.band, m.i, m.minute,
               coalesce(s.posting_counts[width_bucket((m.minute::bigint << 32) + v_upto, s.posting_keys)], 0)
               - coalesce(s.posting_counts[width_bucket((m.minute::bigint << 32) + v_before, s.posting_keys)], 0) as n
          from (select distinct r.band from r) x
         cross join lateral (select s.hist_minutes, s.posting_keys, s.posting_counts from metrics.sla_summary s
                              where s.grain = 'zip_band' and s.zip_code = p_zip_code and s.d_from = '-infinity'
                                and s.band = x.band) s
         cross join lateral unnest(s.hist_minutes) with ordinality m (minute, i)
    ), c as (
        -- cumulated over each band's minutes
        select n.band, n.i, n.minute, sum(n.n) over (partition by n.band order by n.i) as run from n
    ), v as (
        -- each rank's minute: the first of its band whose cumulated count exceeds its rank in the band
        select r.rank, (select c.minute from c where c.band = r.band and c.run > r.rank_in_band
                         order by c.i limit 1)::float8 as minute
          from r
    )
    select array_agg(lo.minute + (q.pos - floor(q.pos)) * (hi.minute - lo.minute) order by q.k)
      into v_out
      from q
      join v lo on lo.rank = floor(q.pos)::bigint
      join v hi on hi.rank = ceil(q.pos)::bigint;
    return v_out;
end
$$;
comment on function metrics.zip_period_percentiles(text, date, date, float8[]) is
    'percentile_cont of each fraction over a zip code''s delivery times in whole minutes in a period, from its zip_day band counts and zip_band postings (null when none).';
grant execute on function metrics.zip_period_percentiles(text, date, date, float8[]) to admin, platform_admin;

create or replace function api.sla_summary("from" text default null, "to" text default null, zip_code text default null,
                                agent_id text default null)
returns json
language plpgsql
stable
set search_path = ''
as $$
-- All zip codes or one zip code: metrics.sla_summary (exact per day and for a standard window; a
-- non-standard period's percentiles from cumulative minute histograms). One agent:
-- metrics.agent_daily, live (percentiles from minute histograms).
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
grant execute on function api.sla_summary(text, text, text, text) to admin, platform_admin;

-- ---- existing assignments: the view's as-of ----
do $existing$
begin
    if exists (select 1 from core.shipping_assignments) then
        perform metrics.refresh('sla_summary', 'migration');
    end if;
end
$existing$;
