-- =================================================================================================
-- 410 Slow queries
-- An admin-readable view over pg_stat_statements for this database: the top statements by total
-- and by mean execution time. pg_stat_statements hides other roles' query text from a caller
-- without pg_read_all_stats, so ops.statement_stats() reads it as its owner (SECURITY DEFINER,
-- pinned search_path, this database only) and admins need no cluster-wide grant.
-- The server also logs statements over 100 ms (log_min_duration_statement) and explains plans
-- over 500 ms (auto_explain): config/postgresql.waybill.conf.
-- =================================================================================================

create function ops.statement_stats()
returns table (queryid bigint, userid oid, calls bigint, total_exec_time double precision,
               mean_exec_time double precision, max_exec_time double precision, rows bigint, query text)
language sql
stable
security definer
set search_path = ''
as $$
    select s.queryid, s.userid, s.calls, s.total_exec_time, s.mean_exec_time, s.max_exec_time,
           s.rows, s.query
      from public.pg_stat_statements(true) s
     where s.dbid = (select d.oid from pg_catalog.pg_database d where d.datname = current_database())
$$;
comment on function ops.statement_stats() is
    'pg_stat_statements rows of this database, read with the owner''s rights (for ops.top_statements).';

create view ops.top_statements as
select s.queryid,
       r.rolname as role,
       s.calls,
       round(s.total_exec_time::numeric, 3) as total_ms,
       round(s.mean_exec_time::numeric, 3) as mean_ms,
       round(s.max_exec_time::numeric, 3) as max_ms,
       s.rows,
       round((100 * s.total_exec_time / nullif(sum(s.total_exec_time) over (), 0))::numeric, 2) as share_pct,
       rank() over (order by s.total_exec_time desc) as rank_by_total,
       rank() over (order by s.mean_exec_time desc) as rank_by_mean,
       left(s.query, 500) as query
  from ops.statement_stats() s
  left join pg_catalog.pg_roles r on r.oid = s.userid;
comment on view ops.top_statements is
    'Statements of this database from pg_stat_statements, ranked by total and by mean execution time (ms).';

grant usage on schema ops to admin, platform_admin;
grant execute on function ops.statement_stats() to admin, platform_admin;
grant select on ops.top_statements to admin, platform_admin;
