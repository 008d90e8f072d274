-- Test helper (loaded into schema tap by `waybill test`, never part of the product schema).
-- tap.throws_code(sql, code): passes when running sql raises the registered error `code`
-- (the JSON code of a PGRST raise, or the registry row of a native SQLSTATE). Asserts codes, not text.
create or replace function tap.throws_code(p_sql text, p_code text, p_description text default null)
returns text
language plpgsql
as $$
declare
    v_state text;
    v_message text;
    v_got text;
begin
    begin
        execute p_sql;
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
        -- Inline (not ops.error_code): the test may run as a request role without EXECUTE on ops.
        v_got := case when v_state = 'PGRST' then v_message::jsonb ->> 'code'
                      else (select e.code from ops.error_codes e where e.sqlstate = v_state limit 1) end;
        return tap.is(v_got, p_code, coalesce(p_description, p_sql || ' raises ' || p_code));
    end;
    return tap.fail(coalesce(p_description, p_sql || ' raises ' || p_code))
        || e'\n' || tap.diag('    no error was raised');
end
$$;
