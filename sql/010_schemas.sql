-- =================================================================================================
-- 010 Schemas and extensions
-- Private domain schemas (core, ops, auth) and the one exposed schema (api). PUBLIC gets nothing.
-- =================================================================================================

revoke all on schema public from public;
do $db$
begin
    execute format('revoke all on database %I from public', current_database());
    execute format('grant connect on database %I to authenticator, dispatcher', current_database());
end
$db$;

create extension if not exists pg_stat_statements with schema public;
-- The owner's SECURITY DEFINER functions call public.pg_stat_statements() (ops.statement_stats).
grant usage on schema public to waybill_owner;

create schema auth;
comment on schema auth is 'Helpers that read the request''s JWT claims (role, sub, actor); not exposed.';

create schema ops;
comment on schema ops is 'Operations: the error registry, structured event log, health and slow-query views.';

create schema core;
comment on schema core is 'The marketplace domain: agents, orders, payments, refunds, wallets, ledger, shipping.';

create schema api;
comment on schema api is 'Waybill HTTP API: views and functions served by PostgREST (or gateway/).';

-- Functions are executable by PUBLIC unless revoked: revoke that default for everything we create.
alter default privileges revoke execute on functions from public;

grant usage on schema api to anon, admin, platform_admin, service, agent;
