-- =================================================================================================
-- Waybill demo data (`waybill seed`): a realistic marketplace, generated set-based in ONE transaction.
--
-- Parameters, set by waybill/seed.py with set_config(..., true) just before this file runs:
--   waybill.seed_orders   N orders            waybill.seed_agents   M delivery agents
--   waybill.seed_random   the setseed() value in [-1, 1]: the same value gives the same data
--   waybill.seed_zips     Z zip codes (default 50; fewer when too few active agents to cover them)
--
-- How it is built
--   * Every random draw is taken once, in one pass over generate_series, into a temp table
--     (_seed_*_r). Everything after that is deterministic set-based SQL over those tables, so the
--     draws never depend on a join order or plan, and a given seed reproduces the same marketplace.
--   * Each order gets an outcome (delivered, delivered after a failed attempt, in progress, pending,
--     cancelled) and a timeline in seconds after its creation; every row is then inserted once with
--     its final status, version and timestamps, exactly as the core.* transition functions leave it.
--   * session_replication_role = replica: no per-row trigger fires (history triggers, version bump,
--     transition checks, FK checks, the deferred ledger balance check). This file therefore writes
--     every history row itself, and at the end re-checks in SQL, for the rows it wrote, what those
--     triggers would have checked: every ledger transaction sums to zero in its own currency, and no
--     foreign key points nowhere. Either fails the whole transaction.
--   * Ids come from the tables' identity sequences (nextval, never hard-coded), handed out in
--     chronological order, so seeding twice into one database works and ids grow with time.
-- =================================================================================================

set local session_replication_role = replica;
set local max_parallel_workers_per_gather = 0;  -- one process, one order of random() draws
set local jit = off;                            -- compiling costs more than it saves here
set local work_mem = '64MB';
set local temp_buffers = '256MB';               -- the temp tables stay in memory (fresh session)
select setseed(current_setting('waybill.seed_random')::float8);

-- ---- parameters and vocabularies -------------------------------------------------------------------
create temp table _seed_param on commit drop as
select s.n_orders, s.n_agents, s.n_zips_wanted,
       greatest(1, s.n_orders / 5) as n_customers,
       greatest(5, s.n_orders / 100) as n_sellers,
       now() as t_now
  from (select current_setting('waybill.seed_orders')::int as n_orders,
               current_setting('waybill.seed_agents')::int as n_agents,
               coalesce(nullif(current_setting('waybill.seed_zips', true), ''), '50')::int as n_zips_wanted) s;

create temp table _seed_words on commit drop as
select array['Anna', 'Ben', 'Clara', 'David', 'Elena', 'Felix', 'Greta', 'Hugo', 'Ines', 'Jonas',
             'Karla', 'Leon', 'Mia', 'Noah', 'Olivia', 'Paul', 'Quinn', 'Rosa', 'Samuel', 'Tara',
             'Umar', 'Vera', 'William', 'Xenia', 'Yusuf', 'Zoe', 'Amir', 'Chloe', 'Diego', 'Freya',
             'Hana', 'Ivan', 'Lena', 'Marco', 'Nadia', 'Omar', 'Priya', 'Ravi', 'Sofia', 'Tomas'] as first_names,
       array['Novak', 'Schmidt', 'Rossi', 'Garcia', 'Dubois', 'Jansen', 'Kowalski', 'Berg', 'Costa',
             'Murphy', 'Nilsen', 'Fischer', 'Lopez', 'Martin', 'Weber', 'Silva', 'Horvat', 'Meyer',
             'Moreau', 'Ricci', 'Santos', 'Svensson', 'Wagner', 'Young', 'Petrov', 'Keller', 'Laine',
             'Olsen', 'Brennan', 'Varga'] as last_names,
       array['example.com', 'example.org', 'example.net', 'mail.example'] as domains,
       array['Nordic', 'Urban', 'Golden', 'Little', 'Bright', 'Green', 'Blue', 'Wild', 'Happy',
             'Modern', 'Rustic', 'Coastal', 'Alpine', 'Sunny', 'Honest'] as adjectives,
       array['Lamp', 'Bean', 'Thread', 'Leaf', 'Book', 'Pantry', 'Bike', 'Paper', 'Clay', 'Wool',
             'Candle', 'Tea', 'Garden', 'Pixel', 'Spoon'] as nouns,
       array['Co.', 'Store', 'Works', 'Supply', 'Goods', 'Market', 'Studio', 'Trading'] as suffixes,
       array['card declined', 'insufficient funds', '3-D Secure authentication failed',
             'card expired'] as decline_reasons,
       array['recipient not available', 'address not found', 'parcel damaged', 'access refused',
             'vehicle breakdown'] as delivery_failures,
       array['item damaged', 'missing item', 'late delivery', 'wrong size', 'goodwill gesture'] as refund_reasons,
       array['provider timeout', 'card account closed'] as refund_failures;

-- Highest id of every core table before this run: the checks and the report look only above it.
create temp table _seed_mark (tbl regclass primary key, max_id bigint not null) on commit drop;
do $mark$
declare
    v_tbl regclass;
begin
    for v_tbl in
        select c.oid::regclass
          from pg_class c
          join pg_attribute a on a.attrelid = c.oid and a.attname = 'id' and not a.attisdropped
         where c.relnamespace = 'core'::regnamespace and c.relkind in ('r', 'p')
    loop
        execute format('insert into _seed_mark select %L::regclass, coalesce(max(id), 0) from %s',
                       v_tbl, v_tbl);
    end loop;
end
$mark$;

-- ---- all random draws, in a fixed order --------------------------------------------------------------
create temp table _seed_agent_r on commit drop as
select g as idx, random() as u_status, random() as u_size, random() as u_first, random() as u_last,
       random() as u_created, random() as u_updated
  from _seed_param p, generate_series(1, p.n_agents) g;

create temp table _seed_zip_r on commit drop as
select g as zidx, random() as u_code, random() as u_rank
  from _seed_param p, generate_series(1, p.n_zips_wanted) g;

-- one draw per (agent, candidate zip code): the weighted race that picks an agent's extra zip codes.
-- Up to 50 zip codes every agent races for all of them; beyond, for 50 candidates spread over all
-- zip codes (g * 7919 mod n: 7919 is prime, so an agent's 50 consecutive g give 50 distinct zips).
create temp table _seed_agent_zip_r on commit drop as
select (g - 1) / 50 + 1 as idx,
       case when p.n_zips_wanted <= 50 then (g - 1) % 50 + 1
            else ((g - 1)::bigint * 7919 % p.n_zips_wanted)::int + 1 end as zidx,
       random() as u
  from _seed_param p, generate_series(1, p.n_agents * 50) g;

create temp table _seed_seller_r on commit drop as
select g as idx, random() as u_adj, random() as u_noun, random() as u_suffix, random() as u_fee,
       random() as u_currency, random() as u_created
  from _seed_param p, generate_series(1, p.n_sellers) g;

create temp table _seed_customer_r on commit drop as
select g as idx, random() as u_first, random() as u_last, random() as u_domain, random() as u_zip,
       random() as u_created
  from _seed_param p, generate_series(1, p.n_customers) g;

create temp table _seed_order_r on commit drop as
select g as idx,
       random() as u_outcome, random() as u_sub, random() as u_customer, random() as u_seller,
       random() as u_zip_home, random() as u_zip, random() as u_amt1, random() as u_amt2,
       random() as u_xborder, random() as u_decline, random() as u_decline_t, random() as u_decline_reason,
       random() as u_retry_t, random() as u_capture, random() as u_confirm, random() as u_offer,
       random() as u_accept, random() as u_pickup, random() as u_transit, random() as u_d1,
       random() as u_d2, random() as u_agent1, random() as u_fail_t, random() as u_fail_reason,
       random() as u_offer2, random() as u_accept2, random() as u_pickup2, random() as u_transit2,
       random() as u_agent2, random() as u_cancel_t, random() as u_gap, random() as u_refund,
       random() as u_rf1_amt, random() as u_rf1_t, random() as u_rf1_status, random() as u_rf1_done,
       random() as u_rf2, random() as u_rf2_amt, random() as u_rf2_t, random() as u_rf2_status,
       random() as u_rf2_done, random() as u_reason, random() as u_hour
  from _seed_param p, generate_series(1, p.n_orders) g;

-- ---- delivery agents and zip codes --------------------------------------------------------------------
-- Mostly ACTIVE, a few INACTIVE/SUSPENDED; agent 1 is always ACTIVE so at least one agent can deliver.
create temp table _seed_agent0 on commit drop as
select a.*,
       case when a.status = 'ACTIVE' then row_number() over (partition by a.status = 'ACTIVE' order by a.idx) end
           as active_rank
  from (select r.*,
               case when r.idx = 1 or r.u_status < 0.90 then 'ACTIVE'
                    when r.u_status < 0.96 then 'INACTIVE'
                    else 'SUSPENDED' end as status,
               1 + floor(5 * r.u_size ^ 1.5)::int as n_zip_target  -- 1..5, mostly 1-3
          from _seed_agent_r r) a;

-- ~50 zip codes (fewer when there are too few active agents to cover 50 with at most 5 each)
create temp table _seed_dim on commit drop as
select n_active, least(p.n_zips_wanted, 5 * n_active) as n_zips
  from (select count(*)::int as n_active from _seed_agent0 where status = 'ACTIVE') a, _seed_param p;

-- Zip codes: one per 1,800-wide block (so they are distinct), popularity Zipf-like over a random rank
-- (the busiest gets ~15 % of the orders, the quietest ~0.6 %).
create temp table _seed_zip on commit drop as
with z as (
    select r.zidx,
           -- one block of 90,000 / n zip codes each (1,800 wide for the default 50)
           lpad((10000 + (r.zidx - 1) * (90000 / p.n_zips_wanted)
                 + floor(r.u_code * (90000 / p.n_zips_wanted)))::int::text, 5, '0') as zip,
           row_number() over (order by r.u_rank, r.zidx) as pop_rank
      from _seed_zip_r r, _seed_dim d, _seed_param p
     where r.zidx <= d.n_zips
), w as (
    select z.*, 1.0::float8 / z.pop_rank::float8 ^ 0.8 as weight from z
)
select w.*,
       w.weight / sum(w.weight) over () as share,
       coalesce(sum(w.weight) over (order by w.zidx rows between unbounded preceding and 1 preceding), 0)
           / sum(w.weight) over () as lo
  from w;

-- the popularity as a cumulative distribution: zips[width_bucket(u, lo)] draws a zip code by weight
create temp table _seed_zip_cdf on commit drop as
select array_agg(lo order by zidx) as lo, array_agg(zip order by zidx) as zips from _seed_zip;

-- Each agent serves 1-5 zip codes. Zip i is the "primary" of active agent ((i - 1) mod n_active) + 1,
-- so every zip code has an active agent; the rest are drawn by a weighted race (popular zip codes
-- attract more agents).
create temp table _seed_agent on commit drop as
with prim as (
    select a.idx, z.zidx
      from _seed_agent0 a
      cross join _seed_dim d
      join _seed_zip z on a.active_rank = (z.zidx - 1) % d.n_active + 1
), n_prim as (
    select idx, count(*)::int as n from prim group by idx
), extra as (
    select r.idx, r.zidx,
           row_number() over (partition by r.idx order by -ln(1 - r.u) / z.weight ^ 0.7, r.zidx) as rk
      from _seed_agent_zip_r r
      join _seed_zip z on z.zidx = r.zidx
     where not exists (select 1 from prim p where p.idx = r.idx and p.zidx = r.zidx)
), chosen as (
    select idx, zidx from prim
    union all
    select e.idx, e.zidx
      from extra e
      join _seed_agent0 a on a.idx = e.idx
      left join n_prim np on np.idx = e.idx
     where e.rk <= a.n_zip_target - coalesce(np.n, 0)
)
select nextval(pg_get_serial_sequence('core.delivery_agents', 'id')::regclass) as id, x.*
  from (select a.idx, a.status,
               w.first_names[1 + floor(a.u_first * cardinality(w.first_names))::int] || ' '
                   || w.last_names[1 + floor(a.u_last * cardinality(w.last_names))::int] as name,
               array_agg(z.zip order by z.zip) as zips,
               p.t_now - make_interval(secs => (100 + 300 * a.u_created) * 86400) as created_at,
               case when a.status = 'ACTIVE'
                    then p.t_now - make_interval(secs => (100 + 300 * a.u_created) * 86400)
                    else p.t_now - make_interval(secs => 30 * 86400 * a.u_updated) end as updated_at
          from _seed_agent0 a
          join chosen c on c.idx = a.idx
          join _seed_zip z on z.zidx = c.zidx
          cross join _seed_words w
          cross join _seed_param p
         group by a.idx, a.status, a.u_first, a.u_last, a.u_created, a.u_updated, w.first_names,
                  w.last_names, p.t_now
         order by a.idx) x;

-- zip code -> the active agents serving it (ordered; orders draw one, lower ids a little busier)
create temp table _seed_zip_agents on commit drop as
select zip, array_agg(a.id order by a.id) as agents, count(*)::int as n
  from _seed_agent a, unnest(a.zips) zip
 where a.status = 'ACTIVE'
 group by zip;

-- ---- sellers and customers ------------------------------------------------------------------------------
-- Fee 5-15 %; home currency mostly EUR, some USD/GBP (sellers 1-3 cover all three).
create temp table _seed_seller on commit drop as
select nextval(pg_get_serial_sequence('core.sellers', 'id')::regclass) as id, x.*
  from (select r.idx,
               w.adjectives[1 + floor(r.u_adj * cardinality(w.adjectives))::int] || ' '
                   || w.nouns[1 + floor(r.u_noun * cardinality(w.nouns))::int] || ' '
                   || w.suffixes[1 + floor(r.u_suffix * cardinality(w.suffixes))::int] as name,
               500 + 25 * floor(r.u_fee * 41)::int as fee_bps,
               case r.idx when 1 then 'EUR' when 2 then 'USD' when 3 then 'GBP'
                   else case when r.u_currency < 0.75 then 'EUR' when r.u_currency < 0.90 then 'USD'
                             else 'GBP' end end as currency,
               p.t_now - make_interval(secs => (95 + 700 * r.u_created) * 86400) as created_at
          from _seed_seller_r r, _seed_words w, _seed_param p
         order by r.idx) x;

-- Customers have a home zip code (drawn by popularity) most of their orders go to.
create temp table _seed_customer on commit drop as
select nextval(pg_get_serial_sequence('core.customers', 'id')::regclass) as id, x.*
  from (select r.idx,
               w.first_names[1 + floor(r.u_first * cardinality(w.first_names))::int] as first_name,
               w.last_names[1 + floor(r.u_last * cardinality(w.last_names))::int] as last_name,
               w.domains[1 + floor(r.u_domain * cardinality(w.domains))::int] as domain,
               zc.zips[width_bucket(r.u_zip, zc.lo)] as zip,
               p.t_now - make_interval(secs => (91 + 700 * r.u_created) * 86400) as created_at
          from _seed_customer_r r, _seed_words w, _seed_param p, _seed_zip_cdf zc
         order by r.idx) x;

-- ---- orders: outcome and timeline ---------------------------------------------------------------------
-- Outcome mix: DLV delivered 76.5 %, RDL delivered after a failed attempt 4 %, in progress 7 %
-- (OFR offered, ACC accepted, PKU picked up, ITR in transit, ROF failed and re-offered), PPN payment
-- pending 2 %, PFL payment declined 3 %, CBP cancelled before payment 3 %, CAC cancelled after
-- capture 4.5 % (refunded in full). All t_* are seconds after the order's creation; null = never.
create temp table _seed_order_t on commit drop as
select r.idx, k.outcome, k.stage, k.pd,
       r.u_customer, r.u_seller, r.u_zip_home, r.u_zip, r.u_xborder, r.u_agent1, r.u_agent2,
       r.u_decline_reason, r.u_fail_reason, r.u_reason, r.u_hour,
       -- log-normal basket, median ~35.00, prices end in .99
       least(199999, greatest(199, round(exp(ln(3500) + 0.85 * sqrt(-2 * ln(1 - r.u_amt1)) * cos(2 * pi() * r.u_amt2)) / 100) * 100 - 1))::bigint
           as amount,
       case when f.decl then s1.t_decl end as t_decl,
       case when f.pay then s1.t_pay end as t_pay,
       case when f.paid then s2.t_cap end as t_cap,
       case when f.paid then s2.t_conf end as t_conf,
       case when f.off1 then s2.t_off end as t_off,
       case when f.acc1 then s2.t_acc end as t_acc,
       case when f.pku1 then s2.t_pku end as t_pku,
       case when f.itr1 then s2.t_itr end as t_itr,
       case when k.outcome = 'DLV' then s3.t_dlv end as t_dlv,
       case when f.fail1 then s3.t_fail end as t_fail,
       case when f.fail1 then s4.t_off2 end as t_off2,
       case when k.outcome = 'RDL' then s4.t_acc2 end as t_acc2,
       case when k.outcome = 'RDL' then s4.t_pku2 end as t_pku2,
       case when k.outcome = 'RDL' then s4.t_itr2 end as t_itr2,
       case when k.outcome = 'RDL' then s4.t_dlv2 end as t_dlv2,
       s5.t_cxl,
       rf.rf1_kind, rf.rf1_frac, rf.rf1_status, rf.rf1_t,
       case when rf.rf1_status <> 'INITIATED' then rf.rf1_done end as rf1_done,
       rf.rf2, rf.rf2_frac, rf.rf2_status, rf.rf2_t,
       case when rf.rf2_status <> 'INITIATED' then rf.rf2_done end as rf2_done,
       r.u_gap
  from _seed_order_r r
  cross join lateral (
      select case when r.u_outcome < 0.765 then 'DLV' when r.u_outcome < 0.805 then 'RDL'
                  when r.u_outcome < 0.825 then 'OFR' when r.u_outcome < 0.840 then 'ACC'
                  when r.u_outcome < 0.850 then 'PKU' when r.u_outcome < 0.870 then 'ITR'
                  when r.u_outcome < 0.875 then 'ROF' when r.u_outcome < 0.895 then 'PPN'
                  when r.u_outcome < 0.925 then 'PFL' when r.u_outcome < 0.955 then 'CBP'
                  else 'CAC' end as outcome) k0
  cross join lateral (
      select k0.outcome,
             -- RDL/ROF: the failed attempt failed 1 = after acceptance, 2 = after pick-up, 3 = in transit
             -- CAC: cancelled 0 = before any offer, 1 = while offered, 2 = once accepted
             case when k0.outcome in ('RDL', 'ROF')
                      then case when r.u_sub < 0.1 then 1 when r.u_sub < 0.3 then 2 else 3 end
                  when k0.outcome = 'CAC'
                      then case when r.u_sub < 0.3 then 0 when r.u_sub < 0.8 then 1 else 2 end
                  else 0 end as stage,
             -- 4 % had a declined payment attempt before the one that counts
             r.u_decline < 0.04 and k0.outcome <> 'PFL' as pd) k
  cross join lateral (
      select k.pd or k.outcome = 'PFL' as decl,
             k.outcome <> 'PFL' as pay,
             k.outcome not in ('PPN', 'PFL', 'CBP') as paid,
             k.outcome in ('DLV', 'RDL', 'OFR', 'ACC', 'PKU', 'ITR', 'ROF') or (k.outcome = 'CAC' and k.stage >= 1) as off1,
             k.outcome in ('DLV', 'RDL', 'ACC', 'PKU', 'ITR', 'ROF') or (k.outcome = 'CAC' and k.stage = 2) as acc1,
             k.outcome in ('DLV', 'PKU', 'ITR') or (k.outcome in ('RDL', 'ROF') and k.stage >= 2) as pku1,
             k.outcome in ('DLV', 'ITR') or (k.outcome in ('RDL', 'ROF') and k.stage = 3) as itr1,
             k.outcome in ('RDL', 'ROF') as fail1) f
  -- the raw timeline, as if every step happened
  cross join lateral (
      select 20 + 280 * r.u_decline_t as t_decl,
             case when k.pd then 20 + 280 * r.u_decline_t + 60 + 840 * r.u_retry_t else 0 end as t_pay) s1
  cross join lateral (
      select t_cap, t_conf, t_off, t_acc, t_pku, t_itr
        from (select s1.t_pay + 20 + least(1800, -ln(1 - r.u_capture) * 150) as t_cap) c1
        cross join lateral (select c1.t_cap + 5 + least(1800, -ln(1 - r.u_confirm) * 90) as t_conf) c2
        cross join lateral (select c2.t_conf + 60 + least(21600, -ln(1 - r.u_offer) * 2400) as t_off) c3
        cross join lateral (select c3.t_off + 120 + least(36000, -ln(1 - r.u_accept) * 3000) as t_acc) c4
        cross join lateral (select c4.t_acc + 900 + least(28800, -ln(1 - r.u_pickup) * 7200) as t_pku) c5
        cross join lateral (select c5.t_pku + 300 + least(7200, -ln(1 - r.u_transit) * 1200) as t_itr) c6
  ) s2
  cross join lateral (
      -- offer -> delivery ~ log-normal, median 30 h: ~9 % miss the 48 h SLA
      select greatest(s2.t_off + exp(ln(108000) + 0.35 * sqrt(-2 * ln(1 - r.u_d1)) * cos(2 * pi() * r.u_d2)),
                      s2.t_itr + 1800) as t_dlv,
             case k.stage when 1 then s2.t_acc + 1800 + 12600 * r.u_fail_t
                          when 2 then s2.t_pku + 600 + 10200 * r.u_fail_t
                          else s2.t_itr + 3600 + 72000 * r.u_fail_t end as t_fail) s3
  cross join lateral (
      select t_off2, t_acc2, t_pku2, t_itr2,
             greatest(t_off2 + exp(ln(108000) + 0.35 * sqrt(-2 * ln(1 - r.u_d1)) * sin(2 * pi() * r.u_d2)),
                      t_itr2 + 1800) as t_dlv2
        from (select s3.t_fail + 300 + least(21600, -ln(1 - r.u_offer2) * 3600) as t_off2) c1
        cross join lateral (select c1.t_off2 + 120 + least(36000, -ln(1 - r.u_accept2) * 3000) as t_acc2) c2
        cross join lateral (select c2.t_acc2 + 900 + least(28800, -ln(1 - r.u_pickup2) * 7200) as t_pku2) c3
        cross join lateral (select c3.t_pku2 + 300 + least(7200, -ln(1 - r.u_transit2) * 1200) as t_itr2) c4
  ) s4
  cross join lateral (
      select case when k.outcome = 'CBP'
                      then s1.t_pay + 120 + least(172800, -ln(1 - r.u_cancel_t) * 3600)
                  when k.outcome = 'CAC' and k.stage = 0
                      then s2.t_conf + 60 + least(86400, -ln(1 - r.u_cancel_t) * 1800)
                  when k.outcome = 'CAC' and k.stage = 1
                      then s2.t_off + 1 + (s2.t_acc - s2.t_off - 2) * r.u_cancel_t
                  when k.outcome = 'CAC'
                      then s2.t_acc + 1 + (s2.t_pku - s2.t_acc - 2) * r.u_cancel_t end as t_cxl) s5
  cross join lateral (
      -- refunds: CAC in full right after the cancellation; 7 % of delivered orders a partial one
      -- (COMPLETED 85 %, INITIATED 8 %, FAILED 7 %), a fifth of those a second one
      select rf0.rf1_kind,
             case rf0.rf1_kind when 'FULL' then 1.0 else 0.1 + 0.3 * r.u_rf1_amt end as rf1_frac,
             case when rf0.rf1_kind = 'FULL' or r.u_rf1_status < 0.85 then 'COMPLETED'
                  when r.u_rf1_status < 0.93 then 'INITIATED' else 'FAILED' end as rf1_status,
             rf0.rf1_t,
             rf0.rf1_t + case rf0.rf1_kind when 'FULL' then 60 + least(21600, -ln(1 - r.u_rf1_done) * 1800)
                                           else 120 + least(172800, -ln(1 - r.u_rf1_done) * 10800) end
                 as rf1_done,
             rf0.rf2,
             0.05 + 0.25 * r.u_rf2_amt as rf2_frac,
             case when r.u_rf2_status < 0.85 then 'COMPLETED'
                  when r.u_rf2_status < 0.93 then 'INITIATED' else 'FAILED' end as rf2_status,
             case when rf0.rf2 then rf0.rf1_t + 3600 + least(604800, -ln(1 - r.u_rf2_t) * 86400) end as rf2_t,
             case when rf0.rf2 then rf0.rf1_t + 3600 + least(604800, -ln(1 - r.u_rf2_t) * 86400)
                                     + 120 + least(172800, -ln(1 - r.u_rf2_done) * 10800) end as rf2_done
        from (select case when k.outcome = 'CAC' then 'FULL'
                          when k.outcome in ('DLV', 'RDL') and r.u_refund < 0.07 then 'PARTIAL' end as rf1_kind,
                     case when k.outcome = 'CAC' then s5.t_cxl + 10 + 290 * r.u_rf1_t
                          when k.outcome in ('DLV', 'RDL') and r.u_refund < 0.07
                              then case k.outcome when 'DLV' then s3.t_dlv else s4.t_dlv2 end
                                   + 3600 + least(1209600, -ln(1 - r.u_rf1_t) * 172800) end as rf1_t,
                     k.outcome in ('DLV', 'RDL') and r.u_refund < 0.07 and r.u_rf2 < 0.2 as rf2) rf0
  ) rf;

-- When each order was created: finished ones anywhere in the last ~88 days (a little denser lately,
-- mostly between 08:00 and 23:00); live ones within the last 2-3 days (some in transit past their SLA).
create temp table _seed_order_age on commit drop as
select t.idx, a.age + case when t.outcome in ('DLV', 'RDL', 'PFL', 'CBP', 'CAC')
                          -- back to the latest moment at the drawn time of day
                          then mod(mod(extract(epoch from p.t_now)::numeric - a.age::numeric
                                       - (3600 * tod.hours)::numeric, 86400) + 86400, 86400)::float8
                          else 0 end as age
  from _seed_order_t t
  cross join _seed_param p
  cross join lateral (
      select greatest(0, t.t_decl, t.t_pay, t.t_cap, t.t_conf, t.t_off, t.t_acc, t.t_pku, t.t_itr, t.t_dlv,
                      t.t_fail, t.t_off2, t.t_acc2, t.t_pku2, t.t_itr2, t.t_dlv2, t.t_cxl, t.rf1_t,
                      t.rf1_done, t.rf2_t, t.rf2_done) as t_last) l
  cross join lateral (
      select l.t_last + case
          when t.outcome = 'OFR' then 172800 * t.u_gap
          when t.outcome = 'ACC' then 129600 * t.u_gap
          when t.outcome = 'PKU' then 43200 * t.u_gap
          when t.outcome = 'ITR' then 172800 * t.u_gap
          when t.outcome = 'ROF' then 129600 * t.u_gap
          when t.outcome = 'PPN' then 60 + 259200 * t.u_gap
          else greatest(0, 87 * 86400 - l.t_last) * t.u_gap ^ 1.2 end as age) a
  cross join lateral (
      select case when t.u_hour < 0.92 then 8 + 15 * t.u_hour / 0.92
                  else 24 * (t.u_hour - 0.92) / 0.08 end as hours) tod;

-- Orders with customer, seller, zip code, currency, agents and the path of statuses (history arrays);
-- ids handed out in order of creation.
create temp table _seed_order on commit drop as
select nextval(pg_get_serial_sequence('core.orders', 'id')::regclass) as id, x.*
  from (select t.*, c.id as customer_id, s.id as seller_id, s.fee_bps, z.zip, cur.currency,
               ag.agent1, ag.agent2,
               p.t_now - make_interval(secs => a.age) as created_at,
               h.h_status, h.h_t, h.h_actor, cardinality(h.h_status) as n_steps,
               case when t.t_dlv2 is not null then t.t_pku2 else t.t_pku end as t_shipped
          from _seed_order_t t
          join _seed_order_age a on a.idx = t.idx
          cross join _seed_param p
          cross join _seed_zip_cdf zc
          join _seed_customer c on c.idx = 1 + floor(p.n_customers * t.u_customer ^ 1.6)::int
          join _seed_seller s on s.idx = 1 + floor(p.n_sellers * t.u_seller ^ 2)::int
          cross join lateral (
              select case when t.u_zip_home < 0.85 then c.zip
                          else zc.zips[width_bucket(t.u_zip, zc.lo)] end as zip) z
          join _seed_zip_agents za on za.zip = z.zip
          cross join lateral (
              select case when t.u_xborder < 0.05 then case s.currency when 'EUR' then 'USD' else 'EUR' end
                          else s.currency end as currency) cur
          cross join lateral (
              select za.agents[1 + floor(za.n * t.u_agent1 ^ 1.4)::int] as agent1,
                     za.agents[1 + floor(za.n * t.u_agent2 ^ 1.4)::int] as agent2) ag
          cross join lateral (
              -- the order's steps as the transition functions record them: status, when, who
              select case pth.path
                         when 1 then array['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']
                         when 2 then array['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']
                         when 3 then array['PENDING', 'CONFIRMED', 'SHIPPED', 'CONFIRMED', 'SHIPPED', 'DELIVERED']
                         when 4 then array['PENDING', 'CONFIRMED']
                         when 5 then array['PENDING', 'CONFIRMED', 'SHIPPED']
                         when 6 then array['PENDING', 'CONFIRMED', 'SHIPPED', 'CONFIRMED']
                         when 7 then array['PENDING']
                         when 8 then array['PENDING', 'CANCELLED']
                         else array['PENDING', 'CONFIRMED', 'CANCELLED'] end as h_status,
                     case pth.path
                         when 1 then array[0::float8, t.t_conf, t.t_pku, t.t_dlv]
                         when 2 then array[0::float8, t.t_conf, t.t_pku2, t.t_dlv2]
                         when 3 then array[0::float8, t.t_conf, t.t_pku, t.t_fail, t.t_pku2, t.t_dlv2]
                         when 4 then array[0::float8, t.t_conf]
                         when 5 then array[0::float8, t.t_conf, t.t_pku]
                         when 6 then array[0::float8, t.t_conf, t.t_pku, t.t_fail]
                         when 7 then array[0::float8]
                         when 8 then array[0::float8, t.t_cxl]
                         else array[0::float8, t.t_conf, t.t_cxl] end as h_t,
                     case pth.path
                         when 1 then array['service', 'service', 'agent:' || ag.agent1, 'agent:' || ag.agent1]
                         when 2 then array['service', 'service', 'agent:' || ag.agent2, 'agent:' || ag.agent2]
                         when 3 then array['service', 'service', 'agent:' || ag.agent1, 'agent:' || ag.agent1,
                                           'agent:' || ag.agent2, 'agent:' || ag.agent2]
                         when 4 then array['service', 'service']
                         when 5 then array['service', 'service', 'agent:' || ag.agent1]
                         when 6 then array['service', 'service', 'agent:' || ag.agent1, 'agent:' || ag.agent1]
                         when 7 then array['service']
                         when 8 then array['service', 'service']
                         else array['service', 'service', 'service'] end as h_actor
                from (select case
                          when t.outcome = 'DLV' then 1
                          when t.outcome = 'RDL' and t.stage = 1 then 2
                          when t.outcome = 'RDL' then 3
                          when t.outcome in ('OFR', 'ACC') or (t.outcome = 'ROF' and t.stage = 1) then 4
                          when t.outcome in ('PKU', 'ITR') then 5
                          when t.outcome = 'ROF' then 6
                          when t.outcome in ('PPN', 'PFL') then 7
                          when t.outcome = 'CBP' then 8
                          else 9 end as path) pth
          ) h
         order by created_at, t.idx) x;

-- ---- payments, refunds, assignments, ledger (staged with their ids) ------------------------------------
create temp table _seed_payment on commit drop as
select nextval(pg_get_serial_sequence('core.payments', 'id')::regclass) as id, x.*
  from (select o.id as order_id, o.seller_id, o.amount, o.currency, 'FAILED' as status,
               o.created_at, null::timestamptz as captured_at,
               o.created_at + make_interval(secs => o.t_decl) as failed_at,
               w.decline_reasons[1 + floor(o.u_decline_reason * cardinality(w.decline_reasons))::int] as failure_reason,
               null::bigint as fee_amount
          from _seed_order o, _seed_words w
         where o.t_decl is not null
        union all
        select o.id, o.seller_id, o.amount, o.currency,
               case o.outcome when 'PPN' then 'PENDING' when 'CBP' then 'FAILED' else 'CAPTURED' end,
               o.created_at + make_interval(secs => o.t_pay),
               o.created_at + make_interval(secs => o.t_cap),
               case when o.outcome = 'CBP' then o.created_at + make_interval(secs => o.t_cxl) end,
               case when o.outcome = 'CBP' then 'order cancelled' end,
               case when o.t_cap is not null then core.fee_for(o.amount, o.fee_bps) end  -- capture's formula
          from _seed_order o
         where o.t_pay is not null
         order by created_at, order_id) x;

create temp table _seed_refund on commit drop as
select nextval(pg_get_serial_sequence('core.refunds', 'id')::regclass) as id, x.*
  from (select p.id as payment_id, p.seller_id, p.currency, p.amount as payment_amount, p.fee_amount,
               rf.amount, rf.status, rf.reason,
               case when rf.status = 'FAILED'
                    then w.refund_failures[1 + floor(o.u_reason * cardinality(w.refund_failures))::int] end
                   as failure_reason,
               o.created_at + make_interval(secs => rf.t) as created_at,
               case when rf.status = 'COMPLETED' then o.created_at + make_interval(secs => rf.t_done) end
                   as completed_at,
               case when rf.status = 'FAILED' then o.created_at + make_interval(secs => rf.t_done) end
                   as failed_at
          from _seed_order o
          join _seed_payment p on p.order_id = o.id and p.status = 'CAPTURED'
          cross join _seed_words w
          cross join lateral (values
              (1, case when o.rf1_kind = 'FULL' then o.amount
                       else greatest(1, round(o.amount * o.rf1_frac))::bigint end,
               o.rf1_status,
               case when o.rf1_kind = 'FULL' then 'order cancelled'
                    else w.refund_reasons[1 + floor(o.u_reason * cardinality(w.refund_reasons))::int] end,
               o.rf1_t, o.rf1_done),
              (2, greatest(1, round(o.amount * o.rf2_frac))::bigint, o.rf2_status,
               w.refund_reasons[1 + floor((1 - o.u_reason) * cardinality(w.refund_reasons))::int],
               o.rf2_t, o.rf2_done)
          ) rf(n, amount, status, reason, t, t_done)
         where o.rf1_kind is not null and rf.t is not null
         order by created_at, payment_id, rf.n) x;

create temp table _seed_assignment on commit drop as
select nextval(pg_get_serial_sequence('core.shipping_assignments', 'id')::regclass) as id, x.*
  from (select o.id as order_id, o.zip as zip_code, 1 as attempt,
               case when o.t_acc is not null then o.agent1 end as agent_id,
               o.created_at + make_interval(secs => o.t_off) as offered_at,
               o.created_at + make_interval(secs => o.t_acc) as accepted_at,
               o.created_at + make_interval(secs => o.t_pku) as picked_up_at,
               o.created_at + make_interval(secs => o.t_itr) as in_transit_at,
               o.created_at + make_interval(secs => o.t_dlv) as delivered_at,
               o.created_at + make_interval(secs => o.t_fail) as failed_at,
               case when o.outcome = 'CAC' then o.created_at + make_interval(secs => o.t_cxl) end as cancelled_at,
               case when o.t_fail is not null
                    then w.delivery_failures[1 + floor(o.u_fail_reason * cardinality(w.delivery_failures))::int]
               end as failure_reason
          from _seed_order o, _seed_words w
         where o.t_off is not null
        union all
        select o.id, o.zip, 2,
               case when o.t_acc2 is not null then o.agent2 end,
               o.created_at + make_interval(secs => o.t_off2),
               o.created_at + make_interval(secs => o.t_acc2),
               o.created_at + make_interval(secs => o.t_pku2),
               o.created_at + make_interval(secs => o.t_itr2),
               o.created_at + make_interval(secs => o.t_dlv2),
               null, null, null
          from _seed_order o
         where o.t_off2 is not null
         order by offered_at, order_id, attempt) x;

-- One ledger transaction per capture and per completed refund. A refund's fee share is
-- core.refund_fee_share, as core.complete_refund computes it (refunds in completion order).
create temp table _seed_ledger on commit drop as
select nextval(pg_get_serial_sequence('core.ledger_transactions', 'id')::regclass) as id, x.*
  from (select 'CAPTURE' as kind, p.currency, p.id as payment_id, null::bigint as refund_id, p.seller_id,
               p.captured_at as created_at,
               -p.amount as clearing, p.amount - p.fee_amount as seller, p.fee_amount as fees
          from _seed_payment p
         where p.status = 'CAPTURED'
        union all
        select 'REFUND', r.currency, r.payment_id, r.id, r.seller_id, r.completed_at,
               r.amount, -(r.amount - r.fee_share), -r.fee_share
          from (select r.*,
                       core.refund_fee_share(r.fee_amount, r.payment_amount, r.done, r.amount) as fee_share
                  from (select r.*,
                               coalesce(sum(r.amount) over (partition by r.payment_id order by r.completed_at, r.id
                                                            rows between unbounded preceding and 1 preceding),
                                        0)::bigint as done
                          from _seed_refund r
                         where r.status = 'COMPLETED') r) r
         order by created_at, kind, payment_id) x;

-- ---- the inserts ---------------------------------------------------------------------------------------
insert into core.delivery_agents (id, name, status, serviceable_zip_codes, created_at, updated_at)
overriding system value
select id, name, status, zips, created_at, updated_at from _seed_agent order by id;

insert into core.sellers (id, name, fee_bps, created_at)
overriding system value
select id, name, fee_bps, created_at from _seed_seller order by id;

insert into core.customers (id, name, email, created_at)
overriding system value
select id, first_name || ' ' || last_name,
       lower(first_name || '.' || last_name) || '.' || id || '@' || domain, created_at
  from _seed_customer order by id;

insert into core.orders (id, customer_id, seller_id, ship_to_zip, amount, currency, status, version,
                         status_changed_by, created_at, updated_at, confirmed_at, shipped_at,
                         delivered_at, cancelled_at)
overriding system value
select o.id, o.customer_id, o.seller_id, o.zip, o.amount, o.currency, o.h_status[o.n_steps], o.n_steps,
       o.h_actor[o.n_steps], o.created_at,
       o.created_at + make_interval(secs => o.h_t[o.n_steps]),
       o.created_at + make_interval(secs => o.t_conf),
       o.created_at + make_interval(secs => o.t_shipped),
       o.created_at + make_interval(secs => coalesce(o.t_dlv, o.t_dlv2)),
       o.created_at + make_interval(secs => o.t_cxl)
  from _seed_order o
 order by o.id;

insert into core.order_status_history (order_id, from_status, to_status, version, actor, created_at)
select o.id, o.h_status[h.n::int - 1], h.status, h.n::int, o.h_actor[h.n::int],
       o.created_at + make_interval(secs => o.h_t[h.n::int])
  from _seed_order o
 cross join lateral unnest(o.h_status) with ordinality h(status, n)
 order by 6, 1, 4;

insert into core.payments (id, order_id, amount, currency, status, provider_ref, fee_amount, failure_reason,
                           created_at, updated_at, captured_at, failed_at)
overriding system value
select p.id, p.order_id, p.amount, p.currency, p.status,
       case when p.status = 'CAPTURED'
            then 'pi_' || lpad(to_hex(p.id), 10, '0') || substr(md5(p.id::text || ':' || p.order_id), 1, 14) end,
       p.fee_amount, p.failure_reason, p.created_at,
       coalesce(p.captured_at, p.failed_at, p.created_at), p.captured_at, p.failed_at
  from _seed_payment p
 order by p.id;

insert into core.refunds (id, payment_id, amount, status, reason, failure_reason, created_at, updated_at,
                          completed_at, failed_at)
overriding system value
select r.id, r.payment_id, r.amount, r.status, r.reason, r.failure_reason, r.created_at,
       coalesce(r.completed_at, r.failed_at, r.created_at), r.completed_at, r.failed_at
  from _seed_refund r
 order by r.id;

insert into core.shipping_assignments (id, order_id, agent_id, zip_code, status, sla_due_at, failure_reason,
                                       status_changed_by, created_at, updated_at, accepted_at, picked_up_at,
                                       in_transit_at, delivered_at, failed_at, cancelled_at)
overriding system value
select a.id, a.order_id, a.agent_id, a.zip_code, st.status, a.offered_at + interval '48 hours',
       a.failure_reason,
       case when st.status in ('OFFERED', 'CANCELLED') then 'service' else 'agent:' || a.agent_id end,
       a.offered_at,
       greatest(a.offered_at, a.accepted_at, a.picked_up_at, a.in_transit_at, a.delivered_at, a.failed_at,
                a.cancelled_at),
       a.accepted_at, a.picked_up_at, a.in_transit_at, a.delivered_at, a.failed_at, a.cancelled_at
  from _seed_assignment a
 cross join lateral (
     select case when a.cancelled_at is not null then 'CANCELLED'
                 when a.failed_at is not null then 'FAILED'
                 when a.delivered_at is not null then 'DELIVERED'
                 when a.in_transit_at is not null then 'IN_TRANSIT'
                 when a.picked_up_at is not null then 'PICKED_UP'
                 when a.accepted_at is not null then 'ACCEPTED'
                 else 'OFFERED' end as status) st
 order by a.id;

insert into core.assignment_status_history (assignment_id, order_id, agent_id, from_status, to_status, actor,
                                            reason, created_at)
select a.id, a.order_id, s.agent_id, s.from_status, s.to_status, s.actor, s.reason, s.at
  from _seed_assignment a
 cross join lateral (values
     ('OFFERED', null, null::bigint, 'service', null, a.offered_at),
     ('ACCEPTED', 'OFFERED', a.agent_id, 'agent:' || a.agent_id, null, a.accepted_at),
     ('PICKED_UP', 'ACCEPTED', a.agent_id, 'agent:' || a.agent_id, null, a.picked_up_at),
     ('IN_TRANSIT', 'PICKED_UP', a.agent_id, 'agent:' || a.agent_id, null, a.in_transit_at),
     ('DELIVERED', 'IN_TRANSIT', a.agent_id, 'agent:' || a.agent_id, null, a.delivered_at),
     ('FAILED', case when a.in_transit_at is not null then 'IN_TRANSIT'
                     when a.picked_up_at is not null then 'PICKED_UP' else 'ACCEPTED' end,
      a.agent_id, 'agent:' || a.agent_id, a.failure_reason, a.failed_at),
     ('CANCELLED', case when a.accepted_at is not null then 'ACCEPTED' else 'OFFERED' end,
      a.agent_id, 'service', null, a.cancelled_at)
 ) s(to_status, from_status, agent_id, actor, reason, at)
 where s.at is not null
 order by s.at, a.id;

-- one wallet per (kind, seller, currency): created at first use, existing ones reused
insert into core.wallets (kind, seller_id, currency, created_at)
select w.kind, w.seller_id, w.currency, min(w.created_at)
  from (select 'PAYMENT_CLEARING' as kind, null::bigint as seller_id, currency, created_at from _seed_ledger
        union all
        select 'PLATFORM_FEES', null, currency, created_at from _seed_ledger
        union all
        select 'SELLER', seller_id, currency, created_at from _seed_ledger) w
 group by w.kind, w.seller_id, w.currency
 order by min(w.created_at), w.kind, w.seller_id
    on conflict on constraint wallets_kind_seller_id_currency_key do nothing;

create temp table _seed_wallet on commit drop as
select w.id, w.kind, coalesce(w.seller_id, 0) as seller_key, w.currency from core.wallets w;

insert into core.ledger_transactions (id, kind, currency, payment_id, refund_id, created_at)
overriding system value
select id, kind, currency, payment_id, refund_id, created_at from _seed_ledger order by id;

insert into core.ledger_entries (transaction_id, wallet_id, amount, created_at)
select t.id, w.id, e.amount, t.created_at
  from _seed_ledger t
 cross join lateral (values (1, 'PAYMENT_CLEARING', 0::bigint, t.clearing),
                            (2, 'SELLER', t.seller_id, t.seller),
                            (3, 'PLATFORM_FEES', 0::bigint, t.fees)) e(n, kind, seller_key, amount)
  join _seed_wallet w on w.kind = e.kind and w.seller_key = e.seller_key and w.currency = t.currency
 where e.amount <> 0
 order by t.id, e.n;

-- ---- what the skipped triggers would have checked ----------------------------------------------------
do $check$
declare
    v_bad bigint;
    v_example text;
    v_fk record;
begin
    -- every ledger transaction of this run sums to zero, in its own currency
    select count(*), min(format('transaction %s: sum %s, %s entries in another currency', b.id, b.total, b.foreign_n))
      into v_bad, v_example
      from (select t.id, sum(e.amount) as total, count(*) filter (where w.currency <> t.currency) as foreign_n
              from _seed_ledger t
              join core.ledger_entries e on e.transaction_id = t.id
              join core.wallets w on w.id = e.wallet_id
             group by t.id
            having sum(e.amount) <> 0 or count(*) filter (where w.currency <> t.currency) > 0) b;
    if v_bad > 0 then
        raise exception 'seed: % unbalanced ledger transaction(s), e.g. %', v_bad, v_example
            using errcode = 'XX000';
    end if;

    -- no foreign key of a core table points nowhere (rows of this run only)
    for v_fk in
        select c.conname, c.conrelid::regclass as tbl, a.attname as col,
               c.confrelid::regclass as ref, ra.attname as ref_col, m.max_id
          from pg_constraint c
          join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
          join pg_attribute ra on ra.attrelid = c.confrelid and ra.attnum = c.confkey[1]
          join _seed_mark m on m.tbl = c.conrelid
         where c.contype = 'f' and c.connamespace = 'core'::regnamespace and cardinality(c.conkey) = 1
    loop
        execute format('select count(*) from %s c where c.id > $1 and c.%I is not null
                          and not exists (select 1 from %s r where r.%I = c.%I)',
                       v_fk.tbl, v_fk.col, v_fk.ref, v_fk.ref_col, v_fk.col)
           into v_bad using v_fk.max_id;
        if v_bad > 0 then
            raise exception 'seed: % row(s) of % break foreign key %', v_bad, v_fk.tbl, v_fk.conname
                using errcode = 'XX000';
        end if;
    end loop;
end
$check$;

-- ---- wallet balances: the entries above skipped the trigger that stores them: ONE rebuild ---------
select core.rebuild_wallet_balances();

-- ---- metrics: the rows above skipped the rollup triggers: ONE rebuild from the raw rows, then the
-- views (their pg_cron jobs would otherwise show nothing for up to 30 minutes) --------------------
-- ANALYZE first, then again for the rollups: every row here is this transaction's, so autovacuum has
-- no statistics for them, and the views' queries planned without any (sla_summary's band windows)
-- ran for over 30 minutes at 1M assignments instead of ~30 s.
analyze;
select metrics.rebuild_rollups();
analyze metrics.agent_daily, metrics.zip_daily;
select count(*) from metrics.refresh(null, 'seed');

-- ---- the report (read by waybill/seed.py before COMMIT) ------------------------------------------
create temp table _seed_report on commit drop as
select 1 as ord, 'delivery_agents' as tbl, status, count(*) as n from _seed_agent group by status
union all select 2, 'zip codes', null, count(*) from _seed_zip
union all select 3, 'customers', null, count(*) from _seed_customer
union all select 4, 'sellers', null, count(*) from _seed_seller
union all select 5, 'orders', h_status[n_steps], count(*) from _seed_order group by h_status[n_steps]
union all select 6, 'order_status_history', null, coalesce(sum(n_steps), 0) from _seed_order
union all select 7, 'payments', status, count(*) from _seed_payment group by status
union all select 8, 'refunds', status, count(*) from _seed_refund group by status
union all select 9, 'shipping_assignments', status, count(*)
            from core.shipping_assignments
           where id > (select max_id from _seed_mark where tbl = 'core.shipping_assignments'::regclass)
           group by status
union all select 10, 'assignment_status_history', null, count(*)
            from core.assignment_status_history
           where id > (select max_id from _seed_mark where tbl = 'core.assignment_status_history'::regclass)
union all select 11, 'wallets', null, count(*)
            from core.wallets
           where id > (select max_id from _seed_mark where tbl = 'core.wallets'::regclass)
union all select 12, 'ledger_transactions', kind, count(*) from _seed_ledger group by kind
union all select 13, 'ledger_entries', null, count(*)
            from core.ledger_entries
           where id > (select max_id from _seed_mark where tbl = 'core.ledger_entries'::regclass);
