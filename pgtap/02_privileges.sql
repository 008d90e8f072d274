-- Privileges: the roles of ARCHITECTURE.md, what they may reach, and that PUBLIC gets nothing.
-- Request roles change data only through api functions (SECURITY DEFINER, pinned search_path): on
-- core and ops tables they may hold SELECT at most, which the api's security_invoker views need, and
-- every such read is governed by row-level security. anon and dispatcher read nothing in core.
begin;
select plan(48);

-- ---------------------------------------------------------------------------------------------
-- Roles and their attributes
-- ---------------------------------------------------------------------------------------------
select has_role('anon');
select has_role('admin');
select has_role('platform_admin');
select has_role('service');
select has_role('agent');
select has_role('authenticator');
select has_role('dispatcher');

select results_eq(
    $$select rolname::text collate "default", rolcanlogin, rolinherit
        from pg_roles
       where rolname in ('anon', 'admin', 'platform_admin', 'service', 'agent', 'authenticator', 'dispatcher')
       order by rolname$$,
    $$values ('admin', false, true), ('agent', false, true), ('anon', false, true),
             ('authenticator', true, false), ('dispatcher', true, true),
             ('platform_admin', false, true), ('service', false, true)$$,
    'request roles cannot log in; authenticator logs in with NOINHERIT; dispatcher logs in');

select is_empty(
    $$select rolname from pg_roles
       where rolname in ('anon', 'admin', 'platform_admin', 'service', 'agent', 'authenticator', 'dispatcher')
         and (rolsuper or rolcreaterole or rolcreatedb or rolbypassrls or rolreplication)$$,
    'no application role is superuser, creates roles or databases, bypasses RLS or replicates');

-- ---------------------------------------------------------------------------------------------
-- Memberships: authenticator switches to exactly the five request roles; nobody else inherits
-- ---------------------------------------------------------------------------------------------
select is_member_of('anon', array['authenticator']::name[]);
select is_member_of('admin', array['authenticator']::name[]);
select is_member_of('platform_admin', array['authenticator']::name[]);
select is_member_of('service', array['authenticator']::name[]);
select is_member_of('agent', array['authenticator']::name[]);

select set_eq(
    $$select g.rolname::text collate "default" from pg_auth_members m
        join pg_roles g on g.oid = m.roleid
        join pg_roles u on u.oid = m.member
       where u.rolname = 'authenticator'$$,
    array['anon', 'admin', 'platform_admin', 'service', 'agent'],
    'authenticator is a member of the five request roles and of nothing else');

select is_empty(
    $$select u.rolname, g.rolname from pg_auth_members m
        join pg_roles g on g.oid = m.roleid
        join pg_roles u on u.oid = m.member
       where u.rolname in ('anon', 'admin', 'platform_admin', 'service', 'agent', 'dispatcher')$$,
    'request roles and dispatcher are members of no role (they inherit nothing)');

-- ---------------------------------------------------------------------------------------------
-- Database and schemas
-- ---------------------------------------------------------------------------------------------
select is_empty(
    $$select a.* from pg_database d,
             aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
       where d.datname = current_database() and a.grantee = 0$$,
    'PUBLIC has no privilege on the database');

select database_privs_are(current_database(), 'authenticator', array['CONNECT'],
    'authenticator may only connect to the database');
select database_privs_are(current_database(), 'dispatcher', array['CONNECT'],
    'dispatcher may only connect to the database');

select is_empty(
    $$select n.nspname, a.privilege_type from pg_namespace n,
             aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
       where n.nspname in ('core', 'ops', 'auth', 'api', 'public') and a.grantee = 0$$,
    'PUBLIC has no privilege on schemas core, ops, auth, api, public');

select schema_privs_are('api', 'anon', array['USAGE']);
select schema_privs_are('api', 'admin', array['USAGE']);
select schema_privs_are('api', 'platform_admin', array['USAGE']);
select schema_privs_are('api', 'service', array['USAGE']);
select schema_privs_are('api', 'agent', array['USAGE']);

select is_empty(
    $$select r, s from unnest(array['anon', 'admin', 'platform_admin', 'service', 'agent', 'dispatcher']) r,
                      unnest(array['api', 'auth', 'core', 'ops', 'public']) s
       where has_schema_privilege(r, s, 'CREATE')$$,
    'no request role and not dispatcher may create objects in api, auth, core, ops or public');

select ok(not has_schema_privilege('anon', 'core', 'USAGE'), 'anon has no usage on the private schema core');

select is_empty(
    $$select s from unnest(array['api', 'auth', 'core', 'ops', 'public']) s
       where has_schema_privilege('dispatcher', s, 'USAGE')$$,
    'dispatcher has no usage on api, auth, core, ops or public (it works through webhooks.* only)');

-- ---------------------------------------------------------------------------------------------
-- Tables, views and sequences of core and ops: read-only at most, and every read under RLS
-- ---------------------------------------------------------------------------------------------
create temp view request_role_relation_privs as
select n.nspname::text as schema, c.oid as relid, c.relkind, r as role, p as privilege
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace,
       unnest(array['anon', 'admin', 'platform_admin', 'service', 'agent', 'dispatcher']) r,
       unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
 where n.nspname in ('core', 'ops') and c.relkind in ('r', 'p', 'v', 'm', 'f')
   and (has_table_privilege(r, c.oid, p)
        -- column-level grants count too (they exist only for these four privileges)
        or (p in ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES') and has_any_column_privilege(r, c.oid, p)));

select is_empty(
    $$select role, relid::regclass, privilege from request_role_relation_privs where privilege <> 'SELECT'$$,
    'request roles and dispatcher hold no write privilege (table or column) on any table or view in core or ops');

select is_empty(
    $$select role, relid::regclass from request_role_relation_privs
       where role = 'dispatcher' or (role = 'anon' and schema = 'core')$$,
    'dispatcher reads nothing in core or ops; anon reads nothing in core');

select is_empty(
    $$select role, relid::regclass from request_role_relation_privs rp
        join pg_class c on c.oid = rp.relid
       where rp.relkind in ('r', 'p')
         and (not c.relrowsecurity
              or not exists (select 1 from pg_policy pol
                              where pol.polrelid = c.oid and pol.polcmd in ('r', '*')
                                and (0::oid = any(pol.polroles) or rp.role::regrole = any(pol.polroles))))$$,
    'every core/ops table a request role may read has RLS enabled and a SELECT policy for that role');

select is_empty(
    $$select distinct v.oid::regclass
        from pg_class v
        join pg_namespace vn on vn.oid = v.relnamespace
        join pg_rewrite rw on rw.ev_class = v.oid
        join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = rw.oid
                        and d.refclassid = 'pg_class'::regclass and d.refobjid <> v.oid
        join pg_class t on t.oid = d.refobjid
       where v.relkind = 'v' and vn.nspname in ('api', 'core', 'ops')
         and t.relnamespace = 'core'::regnamespace
         and not exists (select 1 from unnest(v.reloptions) o
                          where o in ('security_invoker=true', 'security_invoker=on', 'security_invoker=1'))$$,
    'every view over core tables is security_invoker (RLS applies to the caller, not the owner)');

select is_empty(
    $$select r, c.oid::regclass from pg_class c
        join pg_namespace n on n.oid = c.relnamespace,
             unnest(array['anon', 'admin', 'platform_admin', 'service', 'agent', 'dispatcher']) r
       where n.nspname in ('core', 'ops') and c.relkind = 'S'
         and has_sequence_privilege(r, c.oid, 'USAGE, SELECT, UPDATE')$$,
    'request roles and dispatcher have no privilege on any sequence in core or ops');

select is_empty(
    $$select c.oid::regclass, a.privilege_type from pg_class c
        join pg_namespace n on n.oid = c.relnamespace,
             aclexplode(coalesce(c.relacl, acldefault(case when c.relkind = 'S' then 's' else 'r' end::"char", c.relowner))) a
       where n.nspname in ('core', 'ops', 'auth', 'api') and a.grantee = 0$$,
    'PUBLIC has no privilege on any relation in core, ops, auth or api');

-- The behaviour behind the catalog: a request role is refused at the door.
select throws_code($$select tap.become('service');
                     insert into core.customers (name, email) values ('Mallory', 'm@example.com')$$,
    'INSUFFICIENT_PRIVILEGE', 'service cannot INSERT into a core table');
reset role;
select throws_code($$select tap.become('service'); update core.orders set status = 'CANCELLED'$$,
    'INSUFFICIENT_PRIVILEGE', 'service cannot UPDATE a core table (status changes go through api functions)');
reset role;
select throws_code($$select tap.become('agent', '1'); delete from core.shipping_assignments$$,
    'INSUFFICIENT_PRIVILEGE', 'agent cannot DELETE from a core table');
reset role;
select throws_code($$select tap.become('anon'); select 1 from core.orders$$,
    'INSUFFICIENT_PRIVILEGE', 'anon cannot read core.orders');
reset role;
select throws_code($$select tap.become('service'); select core.cancel_order(1)$$,
    'INSUFFICIENT_PRIVILEGE', 'service cannot call core functions directly');
reset role;
select throws_code($$select tap.become('service'); select 1 from ops.top_statements$$,
    'INSUFFICIENT_PRIVILEGE', 'service cannot read the admin slow-query view');
reset role;

-- ---------------------------------------------------------------------------------------------
-- Functions
-- ---------------------------------------------------------------------------------------------
create temp view request_role_function_privs as
select n.nspname::text as schema, r || ':' || p.oid::regprocedure::text as privilege
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace,
       unnest(array['anon', 'admin', 'platform_admin', 'service', 'agent', 'dispatcher']) r
 where n.nspname in ('core', 'ops') and has_function_privilege(r, p.oid, 'EXECUTE');

select is_empty(
    $$select privilege from request_role_function_privs where schema = 'core'$$,
    'request roles and dispatcher may execute no core.* function');

select set_eq(
    $$select privilege from request_role_function_privs where schema = 'ops'$$,
    array['admin:ops.statement_stats()', 'platform_admin:ops.statement_stats()'],
    'of ops.*, request roles may execute only ops.statement_stats() (admin, platform_admin; behind ops.top_statements)');

select set_eq(
    $$select r || ':' || f
        from unnest(array['anon', 'admin', 'platform_admin', 'service', 'agent', 'dispatcher']) r,
             unnest(array['auth.jwt()', 'auth.role()', 'auth.sub()', 'auth.actor()']) f
       where has_function_privilege(r, f::regprocedure, 'EXECUTE')$$,
    $$select r || ':' || f
        from unnest(array['anon', 'admin', 'platform_admin', 'service', 'agent']) r,
             unnest(array['auth.jwt()', 'auth.role()', 'auth.sub()', 'auth.actor()']) f$$,
    'auth.jwt/role/sub/actor are executable by exactly the five request roles');

select set_eq(
    $$select r from unnest(array['anon', 'admin', 'platform_admin', 'service', 'agent', 'dispatcher']) r
       where has_schema_privilege(r, 'auth', 'USAGE')$$,
    array['anon', 'admin', 'platform_admin', 'service', 'agent'],
    'the auth helpers are reachable: usage on schema auth for exactly the five request roles');

select is_empty(
    $$select p.oid::regprocedure from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace,
             aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
       where a.grantee = 0
         and (n.nspname in ('api', 'core', 'ops', 'auth')
              or (n.nspname = 'public'
                  and not exists (select 1 from pg_depend d
                                   where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')))$$,
    'no function of ours (api, core, ops, auth, public outside extensions) is executable by PUBLIC');

-- Default privileges: a function the owner creates tomorrow is not executable by PUBLIC either.
create function core.tmp_probe() returns integer language sql immutable as 'select 1';
select ok(not has_function_privilege('public', 'core.tmp_probe()', 'EXECUTE'),
    'a newly created function is not executable by PUBLIC (default privileges revoked)');

select isnt_empty(
    $$select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname in ('api', 'core', 'ops', 'auth') and p.prosecdef$$,
    'there are SECURITY DEFINER functions (so the next assertion is not vacuous)');
select is_empty(
    $$select p.oid::regprocedure from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace
       where n.nspname in ('api', 'core', 'ops', 'auth', 'public')
         and p.prosecdef
         and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) c where c like 'search_path=%')$$,
    'every SECURITY DEFINER function pins its search_path');

select * from finish();
rollback;
