-- Structure: the schemas of ARCHITECTURE.md exist, every table has RLS, every object has a comment.
begin;
select plan(4);

select schemas_are(array['public', 'api', 'core', 'ops', 'auth', 'webhooks', 'tap'], 'exactly the designed schemas exist');

select is_empty(
    $$select format('%I.%I', n.nspname, c.relname)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relkind in ('r', 'p') and n.nspname in ('api', 'core', 'ops', 'auth', 'webhooks')
         and not c.relrowsecurity$$,
    'every table has row-level security enabled');

select is_empty(
    $$select format('%I.%I', n.nspname, c.relname)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relkind in ('r', 'p', 'v', 'm', 'i') and n.nspname in ('api', 'core', 'ops', 'auth', 'webhooks')
         and obj_description(c.oid, 'pg_class') is null
         and not exists (select 1 from pg_constraint k where k.conindid = c.oid and k.contype in ('p', 'u'))$$,
    'every table, view and index carries a COMMENT (primary/unique key indexes excepted)');

select is_empty(
    $$select p.oid::regprocedure::text
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname in ('api', 'core', 'ops', 'auth', 'webhooks')
         and obj_description(p.oid, 'pg_proc') is null$$,
    'every function carries a COMMENT');

select * from finish();
rollback;
