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
           as rank_avg_delivery_minutes_asc,
       -- each ranking's length (an answer's total): read from one row instead of counted per request
       count(*) over (partition by v.window_days)::integer as window_agents,
       (count(*) filter (where v.rated_success) over (partition by v.window_days))::integer as window_rated_success,
       (count(*) filter (where v.rated_delivered) over (partition by v.window_days))::integer as window_rated_delivered
  from v
with data;
comment on materialized view metrics.leaderboard is 'Each agent''s totals and ranks (per sort, default threshold) over the standard windows (7/30/90 days); refreshed every 30 minutes.';
comment on column metrics.leaderboard.window_agents is 'Agents in the window: the length of the deliveries rankings.';
comment on column metrics.leaderboard.window_rated_success is 'Agents of the window with at least 5 finished assignments: the length of the success_rate rankings.';
comment on column metrics.leaderboard.window_rated_delivered is 'Agents of the window with at least 5 deliveries: the length of the on_time_rate and avg_delivery_minutes rankings.';
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

-- One leaderboard item, the same JSON from every path of api.agent_leaderboard and
-- metrics.leaderboard_over_period (0024). STABLE, not IMMUTABLE, so that it is inlined
-- (json_build_object is stable: see metrics.sla_day).
create function metrics.leaderboard_item(p_rank bigint, p_agent_id bigint, p_name text, p_delivered bigint,
                                         p_failed bigint, p_accepted bigint, p_cancelled bigint,
                                         p_on_time bigint, p_delivery_us bigint)
returns json
language sql
stable
as $$
    select json_build_object(
               'rank', p_rank, 'agentId', p_agent_id, 'name', p_name,
               'deliveries', p_delivered, 'failed', p_failed, 'accepted', p_accepted,
               'cancelled', p_cancelled, 'onTime', p_on_time,
               'successRate', metrics.rate(p_delivered, p_delivered + p_failed),
               'onTimeRate', metrics.rate(p_on_time, p_delivered),
               'avgDeliveryMinutes', metrics.mean_minutes(p_delivery_us, p_delivered))
$$;
comment on function metrics.leaderboard_item(bigint, bigint, text, bigint, bigint, bigint, bigint, bigint, bigint) is 'One agent of a leaderboard page as JSON: rank, id, name, counts, rates and mean delivery minutes.';
grant execute on function metrics.leaderboard_item(bigint, bigint, text, bigint, bigint, bigint, bigint, bigint, bigint)
    to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- SLA summary: exact per-day and standard-window figures, for all zip codes and for each zip code,
-- and open and past-due assignments per zip code. Every request shape with a standard window (and
-- every day of any period) is a read of precomputed rows; only a non-standard period's own
-- percentiles are found at request time, from cumulative minute histograms (docs/metrics.md).
--   grain 'day'        one row per UTC day with deliveries (zip_code '')
--   grain 'window'     one row per standard window (zip_code '')
--   grain 'zip_day'    one row per zip code and UTC day with deliveries; band_counts (below)
--   grain 'zip_window' one row per zip code and standard window with deliveries
--   grain 'open'       one row per zip code with open assignments, and one for all (zip_code ''),
--                      d_from = the refresh day
--   grain 'cum'        one row per UTC day with deliveries (zip_code ''): every delivery of that day
--                      and the days before it, as a cumulative histogram (below)
--   grain 'zip_band'   one row per zip code and band of its minutes (0023, below), d_from -infinity
-- A zip code's period (0023): its distinct minutes are cut into bands (ascending, numbered from 1;
-- a band ends after 64 minutes or once it holds 384 (minute, day) postings). A zip_day row's
-- band_counts[b] = the zip code's deliveries on that day or any day before it in bands 1..b; a
-- zip_band row lists its band's minutes (hist_minutes) and, per minute and day with deliveries, a
-- posting key (metrics.posting_key, ascending) and the deliveries of the band up to that posting
-- (posting_counts). metrics.zip_period_percentiles reads two zip_day rows and a few zip_band rows.
-- -------------------------------------------------------------------------------------------------

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
-- metrics.coverage_item (sql/840, 0027) takes this view's row type: recreating the view means
-- dropping that function first.
comment on materialized view metrics.geographic_coverage is 'Per zip code: active agents, demand, deliveries, on time, open offers (30-day window); refreshed every 15 minutes.';
create unique index geographic_coverage_zip_code_key on metrics.geographic_coverage (zip_code);
comment on index metrics.geographic_coverage_zip_code_key is 'One row per zip code: REFRESH CONCURRENTLY''s key; serves the zip_code filter.';
-- The page order (uncovered first, then by demand): a page is an index range instead of a sort of
-- every zip code per request (2,000 rows in the 1M benchmark: ~0.3 ms of a ~1.5 ms call; issue 11 §6
-- measures each call's server time against health_db's).
create index geographic_coverage_uncovered_demand_zip_code_idx
    on metrics.geographic_coverage (uncovered desc, demand desc, zip_code);
comment on index metrics.geographic_coverage_uncovered_demand_zip_code_idx is 'Serves the coverage page order: uncovered zip codes first, then by demand.';
grant select on metrics.geographic_coverage to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- Refresh, as-of, and the seconds to the next scheduled refresh
-- -------------------------------------------------------------------------------------------------

create function metrics.refresh(p_view text default null, p_source text default 'manual')
returns setof metrics.refresh_log
language plpgsql
volatile
set search_path = ''
-- metrics.agent_running_totals sorts its days x agents grid twice (~800,000 rows at 1M assignments):
-- in memory 5 s, spilled to disk with the default 4 MB 21 s (docs/performance.md, issue 11).
set work_mem = '64MB'
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

-- The per-request helpers below are PL/pgSQL, not SQL: with a SET clause a SQL function is not
-- inlined and is planned again on every call (~50-80 us each, issue 11 §6); PL/pgSQL keeps its plans.
create function metrics.as_of(p_view text)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
begin
    return (select l.as_of from metrics.refresh_log l where l.view_name = p_view order by l.as_of desc limit 1);
end
$$;
comment on function metrics.as_of(text) is 'When the data of a metrics view was computed (its latest refresh''s start).';
grant execute on function metrics.as_of(text) to admin, platform_admin;

create function metrics.seconds_to_refresh(p_view text, p_now timestamptz default null)
returns integer
language plpgsql
stable
set search_path = ''
as $$
begin
    -- The jobs run at minutes that are multiples of ttl ("*/ttl * * * *"), aligned on the hour, so
    -- the next run is the next multiple of ttl * 60 seconds of the Unix epoch.
    return (select (v.ttl_minutes * 60 - floor(extract(epoch from coalesce(p_now, now())))::bigint % (v.ttl_minutes * 60))::integer
              from metrics.views v where v.name = p_view);
end
$$;
comment on function metrics.seconds_to_refresh(text, timestamptz) is 'Seconds until the view''s next scheduled refresh (Cache-Control max-age).';
grant execute on function metrics.seconds_to_refresh(text, timestamptz) to admin, platform_admin;

create function metrics.set_cache_control(p_max_age integer)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    -- PostgREST (and gateway/) turn response.headers into HTTP headers.
    perform set_config('response.headers',
                       json_build_array(json_build_object('Cache-Control', 'max-age=' || greatest(p_max_age, 0)))::text,
                       true);
end
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
