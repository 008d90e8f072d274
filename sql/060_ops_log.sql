-- =================================================================================================
-- 060 Structured event log (database side)
-- ops.log_event writes one LogEntry-shaped JSON object as a RAISE LOG line. With
-- log_destination = jsonlog it lands in the server log at once, so it survives a rollback: a
-- ledger_invariant_violated line stays visible although its transaction died.
-- =================================================================================================

create function ops.request_id()
returns text
language sql
stable
as $$
    -- The X-Request-Id of the HTTP request in progress (set by PostgREST/gateway), or null.
    -- No SET clause (0017), like auth.jwt(): it calls pg_catalog functions only, so it inlines
    -- into ops.log_event instead of being parsed and planned at each call (43 us measured).
    select nullif(current_setting('request.headers', true), '')::json ->> 'x-request-id'
$$;
comment on function ops.request_id() is 'The current HTTP request''s X-Request-Id header, or null outside a request.';

create function ops.log_event(
    p_event text,
    p_level text default 'info',
    p_context jsonb default '{}',
    p_error_code text default null,
    p_duration_ms numeric default null
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
-- Emit one structured line {ts, level, event, service, request_id, duration_ms, error_code, ...context}.
begin
    raise log '%', (
        jsonb_build_object(
            'ts', to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'level', p_level,
            'event', p_event,
            'service', 'postgres',
            'request_id', ops.request_id(),
            'duration_ms', p_duration_ms,
            'error_code', p_error_code
        ) || coalesce(p_context, '{}')
    )::text;
end
$$;
comment on function ops.log_event(text, text, jsonb, text, numeric) is
    'Write a LogEntry-shaped JSON line to the server log (jsonlog); survives rollback.';
