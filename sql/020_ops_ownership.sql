-- =================================================================================================
-- 020 Ownership
-- Every object of Waybill's schemas belongs to waybill_owner (sql/000_roles.sql), never to the
-- superuser that migrates: a SECURITY DEFINER function runs with its owner's rights, and those must
-- not be a superuser's. Migrations create objects as the migrating login; migrations/post-apply.sql
-- (after every apply) calls ops.assign_owner(), which hands over whatever is not the owner's yet, so
-- a new migration needs nothing special. A migration that adds a schema adds it to ops.owned_schemas().
-- =================================================================================================

create function ops.owned_schemas()
returns text[]
language sql
immutable
set search_path = ''
as $$
    select array['api', 'auth', 'core', 'metrics', 'ops', 'webhooks']
$$;
comment on function ops.owned_schemas() is 'Waybill''s schemas: their objects belong to waybill_owner (ops.assign_owner).';

create function ops.assign_owner(p_owner name default 'waybill_owner')
returns integer
language plpgsql
volatile
set search_path = ''
as $$
-- ALTER … OWNER TO p_owner for each schema of ops.owned_schemas() and each object in them (tables,
-- views, sequences, functions, types, statistics, …: whatever depends on the schema) whose owner
-- differs; returns how many changed. Objects already owned are not touched: ALTER TABLE … OWNER
-- takes an ACCESS EXCLUSIVE lock even when nothing changes, and this runs on every deploy.
-- Skipped: extension members (the extension owns them), sequences of identity/serial columns and
-- indexes (they follow their table). Run by the migrating login (superuser or member of p_owner).
declare
    v_object record;
    v_changed integer := 0;
begin
    for v_object in
        -- Schemas first: a non-superuser's new owner needs CREATE on the schema of what it receives.
        select 1 as step, 'schema' as kind, format('%I', n.nspname) as identity
          from pg_catalog.pg_namespace n
         where n.nspname = any (ops.owned_schemas())
           and n.nspowner <> p_owner::regrole
        union all
        select 2, case o.type when 'composite type' then 'type' when 'statistics object' then 'statistics'
                              else o.type end, o.identity
          from pg_catalog.pg_depend d
          join pg_catalog.pg_namespace n on n.oid = d.refobjid
          cross join lateral pg_catalog.pg_identify_object(d.classid, d.objid, 0) o
          cross join lateral (
              select case d.classid
                  when 'pg_catalog.pg_class'::regclass then (select c.relowner from pg_catalog.pg_class c where c.oid = d.objid)
                  when 'pg_catalog.pg_proc'::regclass then (select p.proowner from pg_catalog.pg_proc p where p.oid = d.objid)
                  when 'pg_catalog.pg_type'::regclass then (select t.typowner from pg_catalog.pg_type t where t.oid = d.objid)
                  when 'pg_catalog.pg_statistic_ext'::regclass then (select s.stxowner from pg_catalog.pg_statistic_ext s where s.oid = d.objid)
                  when 'pg_catalog.pg_collation'::regclass then (select c.collowner from pg_catalog.pg_collation c where c.oid = d.objid)
                  when 'pg_catalog.pg_conversion'::regclass then (select c.conowner from pg_catalog.pg_conversion c where c.oid = d.objid)
                  when 'pg_catalog.pg_operator'::regclass then (select o2.oprowner from pg_catalog.pg_operator o2 where o2.oid = d.objid)
                  when 'pg_catalog.pg_opclass'::regclass then (select c.opcowner from pg_catalog.pg_opclass c where c.oid = d.objid)
                  when 'pg_catalog.pg_opfamily'::regclass then (select f.opfowner from pg_catalog.pg_opfamily f where f.oid = d.objid)
                  when 'pg_catalog.pg_ts_config'::regclass then (select c.cfgowner from pg_catalog.pg_ts_config c where c.oid = d.objid)
                  when 'pg_catalog.pg_ts_dict'::regclass then (select t.dictowner from pg_catalog.pg_ts_dict t where t.oid = d.objid)
              end as owner) w
         where d.refclassid = 'pg_catalog.pg_namespace'::regclass
           and n.nspname = any (ops.owned_schemas())
           and w.owner is not null and w.owner <> p_owner::regrole
           and o.type <> 'index'
           and not exists (select 1 from pg_catalog.pg_depend x
                            where x.classid = d.classid and x.objid = d.objid
                              and (x.deptype = 'e'
                                   or (o.type = 'sequence' and x.deptype in ('a', 'i')
                                       and x.refclassid = 'pg_catalog.pg_class'::regclass)))
        order by 1, 2, 3
    loop
        execute format('alter %s %s owner to %I', v_object.kind, v_object.identity, p_owner);
        v_changed := v_changed + 1;
    end loop;
    return v_changed;
end
$$;
comment on function ops.assign_owner(name) is
    'Hand every schema and object of ops.owned_schemas() not yet owned by p_owner over to it; returns how many.';
