-- Objects the gateway tests call, created in a throw-away database cloned from the template.
-- Names start with t_ so they never meet the real api schema's.

create schema gwt;  -- private storage behind the test endpoints
create table gwt.notes (
    id bigint generated always as identity primary key,
    body text not null constraint notes_body_key unique
);
create sequence gwt.retry_seq;

create type api.t_note as (id bigint, body text);

-- scalars --------------------------------------------------------------------------------------
create function api.t_add(a int, b int) returns int language sql stable as $$ select a + b $$;
comment on function api.t_add(int, int) is E'Add two integers.\n\nThe rest of the description.';

create function api.t_echo(t text default 'hi', n int default 1) returns text
language sql immutable as $$ select repeat(t, n) $$;

create function api.t_half(a int, b int default 2) returns numeric
language sql immutable as $$ select a::numeric / b $$;

create function api.t_json(j jsonb) returns jsonb language sql immutable as $$ select j $$;

create function api.t_sum(xs int[]) returns int
language sql immutable as $$ select coalesce(sum(x), 0)::int from unnest(xs) x $$;

create function api.t_body(json) returns json language sql immutable as $$ select $1 $$;

create function api.t_over(a int) returns text language sql immutable as $$ select 'int' $$;
create function api.t_over(a text) returns text language sql immutable as $$ select 'text' $$;

-- shapes -----------------------------------------------------------------------------------------
create function api.t_series(n int) returns setof int language sql stable as $$ select generate_series(1, n) $$;

create function api.t_rows(n int) returns table (i int, label text, maybe text)
language sql stable as $$
    select g, 'row ' || g, case when g % 2 = 1 then 'odd' end from generate_series(1, n) g
$$;

create function api.t_out(a int, out doubled int, out tripled int)
language sql immutable as $$ select a * 2, a * 3 $$;

create function api.t_note(id bigint) returns api.t_note
language sql stable as $$ select id, 'note ' || id $$;

create function api.t_void() returns void language plpgsql volatile as $$ begin perform 1; end $$;

create function api.t_write(note text) returns api.t_note
language sql volatile security definer set search_path = '' as $$
    insert into gwt.notes (body) values (note) returning id, body
$$;

create function api.t_write_many(notes text[]) returns setof api.t_note
language sql volatile security definer set search_path = '' as $$
    insert into gwt.notes (body) select unnest(notes) returning id, body
$$;

-- errors -----------------------------------------------------------------------------------------
create function api.t_raise(state text) returns int language plpgsql stable as $$
begin
    raise exception using errcode = state, message = 'raised ' || state, detail = 'the detail', hint = 'the hint';
end
$$;

create function api.t_teapot() returns int language plpgsql stable as $$
begin
    raise sqlstate 'PT418' using message = 'I''m a teapot', detail = 'short and stout', hint = 'tip me over';
end
$$;

create function api.t_pgrst() returns int language plpgsql stable as $$
begin
    raise sqlstate 'PGRST' using
        message = '{"code":"GW_RULE_BROKEN","message":"a rule broke","details":"it was 42","hint":"try 41"}',
        detail = '{"status":422,"headers":{"X-Rule":"broken"}}';
end
$$;

create function api.t_pgrst_bad() returns int language plpgsql stable as $$
begin
    raise sqlstate 'PGRST' using message = 'not json', detail = '{"status":422,"headers":{}}';
end
$$;

create function api.t_registered(p_id text) returns int
language plpgsql stable security definer set search_path = '' as $$
begin
    perform ops.raise_error('ORDER_NOT_FOUND', p_id);
    return 0;
end
$$;

create function api.t_flaky(fail_times int) returns bigint
language plpgsql volatile security definer set search_path = '' as $$
declare
    v bigint := nextval('gwt.retry_seq');
begin
    if v % (fail_times + 1) <> 0 then
        raise sqlstate '40001' using message = 'could not serialize access (test)';
    end if;
    return v;
end
$$;

create function api.t_private() returns int language sql stable as $$ select 1 $$;

-- response.status / response.headers ----------------------------------------------------------------
create function api.t_guc() returns json language plpgsql volatile as $$
begin
    perform set_config('response.status', '201', true);
    perform set_config('response.headers',
        '[{"Location": "/t_items?id=eq.1"}, {"X-Custom": "yes"}, {"Content-Type": "application/vnd.custom+json"}]',
        true);
    return json_build_object('ok', true);
end
$$;

create function api.t_guc_bad_status() returns int language plpgsql stable as $$
begin
    perform set_config('response.status', 'teapot', true);
    return 1;
end
$$;

create function api.t_guc_bad_headers() returns int language plpgsql stable as $$
begin
    perform set_config('response.headers', '{"X-Not": "an array"}', true);
    return 1;
end
$$;

-- what the SQL side sees of the request ---------------------------------------------------------------
create function api.t_ctx() returns json language sql stable as $$
    select json_build_object(
        'user', current_user,
        'claims', current_setting('request.jwt.claims', true)::json,
        'method', current_setting('request.method', true),
        'path', current_setting('request.path', true),
        'headers', current_setting('request.headers', true)::json,
        'cookies', current_setting('request.cookies', true)::json,
        'search_path', current_setting('search_path'),
        'read_only', current_setting('transaction_read_only'),
        'isolation', current_setting('transaction_isolation'),
        'request_id', ops.request_id())
$$;

create function api.t_ctx_rw() returns json language sql volatile as $$
    select json_build_object(
        'read_only', current_setting('transaction_read_only'),
        'isolation', current_setting('transaction_isolation'))
$$;

-- views -------------------------------------------------------------------------------------------
create view api.t_items with (security_invoker = true) as
    select g as id,
           'item ' || g as name,
           g % 3 as grp,
           case when g % 5 = 0 then null else g * 10 end as score
    from generate_series(1, 30) g;
comment on view api.t_items is E'Thirty items.\nFor paging and filter tests.';
comment on column api.t_items.name is 'The item''s name';

create view api.t_secret with (security_invoker = true) as select 1 as x;

create function api.t_sleep(ms int) returns int language sql stable as $$ select ms from pg_sleep(ms / 1000.0) $$;

-- issue 7: full-text search on jsonb, timestamptz rendering, and what the gateway refuses -----------
create view api.t_docs with (security_invoker = true) as
    select 1 as id, '{"title": "fast delivery trucks", "tags": ["red"]}'::jsonb as doc,
           '2024-01-01 12:00:00+00'::timestamptz as at
    union all
    select 2, '{"title": "slow boats"}'::jsonb, '2024-06-01 00:30:00+00'::timestamptz;
create domain api.t_cents as bigint;  -- a data representation: rendered through its json cast
create function api.t_cents_json(api.t_cents) returns json language sql immutable
    as $$ select to_json($1::bigint / 100.0) $$;
create cast (api.t_cents as json) with function api.t_cents_json(api.t_cents);
create view api.t_prices with (security_invoker = true) as select 1 as id, 1999::api.t_cents as price;
create function api.t_label(item api.t_items) returns text language sql stable  -- a computed column
    as $$ select item.name || '!' $$;
create function api.t_setting(name text) returns text language sql stable
    as $$ select current_setting(name) $$;
create function api.t_var(variadic xs int[]) returns int language sql immutable
    as $$ select array_length(xs, 1) $$;

-- grants ------------------------------------------------------------------------------------------
grant execute on all functions in schema api to anon, service, admin, agent;
revoke execute on function api.t_private() from anon, service, admin, agent;
grant select on api.t_items, api.t_docs, api.t_prices to anon, service, admin, agent;
grant usage on schema ops to anon, service, admin, agent;
grant execute on function ops.request_id() to anon, service, admin, agent;

comment on schema api is E'Waybill test API\nServed by gateway/ in tests.';
