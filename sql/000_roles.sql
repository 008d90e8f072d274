-- =================================================================================================
-- 000 Roles
-- Cluster-wide roles of ARCHITECTURE.md. Roles are shared by every database of a cluster, so each is
-- created only when missing; passwords are never set here (the environment sets them).
-- waybill_owner owns every object of Waybill's schemas (migrations/post-apply.sql hands each new one
-- over), so a SECURITY DEFINER function runs as a role that is no superuser; migrations still run
-- as the migrating login, which is a superuser or a member of waybill_owner.
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
    -- metrics_cache: the answer cache worker logs in as itself and only fills that cache.
    if not exists (select 1 from pg_roles where rolname = 'metrics_cache') then
        create role metrics_cache login;
    end if;
    -- waybill_owner: owns the schema objects; cannot log in, create roles or databases, or bypass RLS.
    if not exists (select 1 from pg_roles where rolname = 'waybill_owner') then
        create role waybill_owner nologin nosuperuser nocreaterole nocreatedb noreplication nobypassrls;
    end if;
    -- A migrating login that is no superuser must be able to hand objects over and alter them later.
    if not (select r.rolsuper from pg_roles r where r.rolname = current_user) then
        execute format('grant waybill_owner to %I', current_user);
    end if;
end
$roles$;

grant anon, admin, platform_admin, service, agent to authenticator;
-- ops.statement_stats() and api.health_pool() run as the owner and read every role's statistics.
grant pg_read_all_stats to waybill_owner;

-- Per-request time limits. PostgREST v12+ applies a request role's settings (pg_db_role_setting)
-- to each request it serves as that role ("impersonated role settings"; gateway/ does the same);
-- SET ROLE alone would not. agent stays above core.lock_assignment's 5 s lock_timeout, so a busy
-- offer still answers ASSIGNMENT_LOCK_TIMEOUT (503) rather than a cancelled statement.
alter role anon set statement_timeout = '3s';
alter role agent set statement_timeout = '8s';
alter role service set statement_timeout = '10s';
alter role admin set statement_timeout = '30s';
alter role platform_admin set statement_timeout = '30s';
-- A fill ranks one leaderboard (~20 ms at 10,000 agents); a runaway one is stopped.
alter role metrics_cache set statement_timeout = '30s';

comment on role waybill_owner is 'Owns every object of Waybill''s schemas; NOLOGIN, no superuser: SECURITY DEFINER functions run as it.';
comment on role anon is 'Request role without a token: health and the error registry. statement_timeout 3 s.';
comment on role agent is 'Request role of delivery agents (JWT sub = agent id). statement_timeout 8 s (above the 5 s accept lock_timeout).';
comment on role service is 'Request role of back-end services driving the lifecycle. statement_timeout 10 s.';
comment on role admin is 'Request role of admins: reads everything, metrics and webhooks. statement_timeout 30 s.';
comment on role platform_admin is 'Request role of platform admins (as admin). statement_timeout 30 s.';
comment on role metrics_cache is 'The metrics cache worker (waybill/metrics_cache.py): LISTENs for answer cache misses and may only call metrics.fill_answer_cache. statement_timeout 30 s.';
