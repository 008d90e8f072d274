-- Test helper: become a request role exactly as PostgREST does (set local role + request.jwt.claims).
-- tap.become('agent', '12') ... tap.become_owner() to go back.
create or replace function tap.become(p_role text, p_sub text default null)
returns void
language plpgsql
as $$
begin
    perform set_config('request.jwt.claims',
        json_build_object('role', p_role, 'sub', p_sub)::text, true);
    execute format('set local role %I', p_role);
end
$$;

create or replace function tap.become_owner()
returns void
language plpgsql
as $$
begin
    reset role;
    perform set_config('request.jwt.claims', '', true);
end
$$;
