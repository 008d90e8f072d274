-- =================================================================================================
-- 000 Roles
-- Cluster-wide roles of ARCHITECTURE.md. Roles are shared by every database of a cluster, so each is
-- created only when missing; passwords are never set here (the environment sets them).
-- =================================================================================================

do $roles$
declare
    v_role text;
begin
    -- Request roles: no login; PostgREST (or gateway/) switches to them from authenticator.
    foreach v_role in array array['anon', 'admin', 'platform_admin', 'service', 'agent'] loop
        if not exists (select 1 from pg_roles where rolname = v_role) then
            execute format('create role %I nologin', v_role);
        end if;
    end loop;
    -- authenticator: logs in, can do nothing itself, only switch role (PostgREST's model).
    if not exists (select 1 from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
    -- dispatcher: the webhook daemon logs in as itself and only calls webhooks.* functions.
    if not exists (select 1 from pg_roles where rolname = 'dispatcher') then
        create role dispatcher login;
    end if;
end
$roles$;

grant anon, admin, platform_admin, service, agent to authenticator;
