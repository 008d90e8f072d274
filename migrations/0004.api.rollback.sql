-- Undo 0004: empty schema api (it belongs to 0001), drop the policies and grants 0004 made.
do $undo$
declare
    r record;
begin
    for r in select format('drop view if exists api.%I cascade', c.relname) as stmt
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'api' and c.relkind = 'v'
    loop
        execute r.stmt;
    end loop;
    for r in select format('drop function if exists %s cascade', p.oid::regprocedure) as stmt
               from pg_proc p join pg_namespace n on n.oid = p.pronamespace
              where n.nspname = 'api'
    loop
        execute r.stmt;
    end loop;
    for r in select format('drop policy %I on %I.%I', pol.policyname, pol.schemaname, pol.tablename) as stmt
               from pg_policies pol
              where pol.schemaname in ('core', 'ops')
    loop
        execute r.stmt;
    end loop;
end
$undo$;
drop function if exists auth.require_agent();
drop function if exists auth.agent_zip_codes();
drop function if exists auth.agent_id();
revoke select on all tables in schema core from admin, platform_admin, service, agent;
revoke usage on schema core from admin, platform_admin, service, agent;
revoke select on ops.error_codes from anon, admin, platform_admin, service, agent;
revoke usage on schema ops from anon, service, agent;
