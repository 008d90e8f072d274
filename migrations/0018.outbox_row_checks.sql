-- 0018 outbox row checks (issue 9 §4): less backend CPU per emitted event in the business transaction.
-- - deliveries' nine CHECK constraints become one (webhooks.delivery_row_ok), events' three one
--   (webhooks.event_row_ok): PostgreSQL deserializes and prepares every CHECK expression of a table
--   on every INSERT statement (ExecRelCheck, once per statement), ~1 kB of node tree per constraint;
--   one call of a PL/pgSQL function of the row does the same tests for a fraction of that;
-- - the wake-up flag is read when a PENDING row is written (the deferred trigger's WHEN clause), not
--   at COMMIT for every such row: the trigger is queued, and fires at COMMIT, only when a dispatcher
--   is armed. Still safe against an arm racing the commit: see sql/210 "Wake-up".
-- Measured: docs/performance.md "Webhook outbox (issue 9 §4)".
-- depends: 0017.transition_lean

-- A deploy never hangs behind a long transaction.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

-- ---- sql/200_webhooks_schema.sql ----
create function webhooks.event_row_ok(e webhooks.events)
returns boolean
language plpgsql
immutable
as $$
-- The events row's invariants, as one CHECK (events_row_check, 0018) instead of three: PostgreSQL
-- prepares every CHECK expression of a table anew for each INSERT statement, and emission inserts
-- one event per statement. PL/pgSQL, not SQL: a SQL function would be inlined, i.e. parsed and
-- planned again by that same per-statement preparation. As in a CHECK, a test that is null passes.
begin
    return left(e.body, 1) = '{'                                                 -- a stored payload is an object
       and (e.body is null) <> (e.data is null)                                  -- a payload (before 0011) or data
       and left(e.data, 1) = case when e.shape is null then '{' else '[' end;    -- an object, or positional values
end
$$;
comment on function webhooks.event_row_ok(webhooks.events) is
    'CHECK of webhooks.events: the body is an object; body xor data; data is an object, or (with a shape) an array.';
-- Lint allowlist: yoyo runs a migration in one transaction, where a separate VALIDATE cannot be
-- used; the outbox tables are scanned once, under the 5 s lock_timeout above. The dropped checks
-- are the new one's tests, word for word: no guarantee goes.
alter table webhooks.events
    -- squawk-ignore constraint-missing-not-valid
    add constraint events_row_check check (webhooks.event_row_ok(events)),
    -- squawk-ignore ban-drop-constraint
    drop constraint events_body_is_json_object_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint events_body_or_data_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint events_data_form_check;

create function webhooks.delivery_row_ok(d webhooks.deliveries)
returns boolean
language plpgsql
immutable
as $$
-- The outbox row's invariants, as one CHECK (deliveries_row_check, 0018) instead of nine: PostgreSQL
-- prepares every CHECK expression of a table anew for each INSERT or UPDATE statement - the nine
-- cost each emitted event ~40 us of backend CPU (docs/performance.md), this call a few. PL/pgSQL,
-- not SQL: a SQL function would be inlined, i.e. parsed and planned again by that same
-- per-statement preparation. CHECK semantics are kept: a test that is null passes.
begin
    return d.status in ('PENDING', 'SENDING', 'DELIVERED', 'FAILED', 'SKIPPED')
       and d.attempts >= 0
       and d.attempts_at_requeue between 0 and d.attempts
       and d.next_trigger in ('scheduled', 'manual', 'recover')
       -- Due rows are found by next_attempt_at alone: a SENDING row is due again when its lease expires.
       and (d.status in ('PENDING', 'SENDING')) = (d.next_attempt_at is not null)
       and (d.status = 'SENDING') = (d.lease_owner is not null and d.lease_token is not null and d.lease_until is not null)
       and (d.status <> 'SENDING' or d.next_attempt_at = d.lease_until)
       and (d.status = 'DELIVERED') = (d.delivered_at is not null)
       and (d.status in ('DELIVERED', 'FAILED', 'SKIPPED')) = (d.finished_at is not null)
       and d.last_status_code between 100 and 599;
end
$$;
comment on function webhooks.delivery_row_ok(webhooks.deliveries) is
    'CHECK of webhooks.deliveries: status and trigger values, attempt counts, and which timestamps and lease fields each status has.';
-- Lint allowlist: as for events above.
alter table webhooks.deliveries
    -- squawk-ignore constraint-missing-not-valid
    add constraint deliveries_row_check check (webhooks.delivery_row_ok(deliveries)),
    -- squawk-ignore ban-drop-constraint
    drop constraint deliveries_status_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint deliveries_attempts_nonnegative_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint deliveries_attempts_at_requeue_range_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint deliveries_next_trigger_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint deliveries_due_has_time_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint deliveries_sending_has_lease_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint deliveries_delivered_has_timestamp_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint deliveries_finished_has_timestamp_check,
    -- squawk-ignore ban-drop-constraint
    drop constraint deliveries_last_status_code_range_check;

-- ---- sql/210_webhooks_emit.sql ----
create or replace function webhooks.wake_dispatcher()
returns void
language plpgsql
security definer
set search_path = ''
as $$
-- The first committing transaction to find a dispatcher armed disarms it and sends NOTIFY webhooks
-- (empty payload). SKIP LOCKED: the others committing at that moment do not queue behind its row
-- lock - the one holding it notifies for all of them. Measured (bench/outbox.py, 32 clients, a
-- dispatcher re-arming at once after each wake-up): with a plain UPDATE a third of the time went to
-- Lock:tuple waits behind the disarming transaction. SECURITY DEFINER: the committing request roles
-- may neither read nor write the flag. Called by anyone, the worst it does is one spurious wake-up.
begin
    update webhooks.wakeup w set armed = false
     where w.id = (select x.id from webhooks.wakeup x where x.id and x.armed for update skip locked);
    if found then
        perform pg_notify('webhooks', '');
    end if;
end
$$;

create function webhooks.dispatcher_armed()
returns boolean
language plpgsql
stable
as $$
-- Read by the wake-up trigger's WHEN clause as each PENDING row is written, i.e. as the writer: the
-- owner, inside the SECURITY DEFINER functions that alone write deliveries. PL/pgSQL: its query's
-- plan is kept for the session (a SQL function's would be planned on every statement). No WHERE:
-- the table holds one row (wakeup_single_row_check and its key), and a sequential scan locks only
-- the table - the business transaction has used up its 16 fast-path lock slots by then, so every
-- relation it locks more goes through the shared lock table (LWLock:LockManager at 32 clients).
begin
    return (select w.armed from webhooks.wakeup w);
end
$$;
comment on function webhooks.dispatcher_armed() is 'Whether a dispatcher went idle and waits for NOTIFY webhooks (the wake-up flag).';

create or replace function webhooks.tg_deliveries__wake()
returns trigger
language plpgsql
as $$
-- Queued only when a dispatcher was armed as the row was written (the trigger's WHEN clause), and
-- deferred to COMMIT, so it runs as whoever is current then - the request role, once the SECURITY
-- DEFINER api function has returned (or the dispatcher, requeueing a retry). Neither SECURITY
-- DEFINER nor SET; webhooks.wake_dispatcher is, and disarms + notifies unless another committing
-- transaction is doing it.
begin
    perform webhooks.wake_dispatcher();
    return null;
end
$$;

drop trigger _900_wake_dispatcher on webhooks.deliveries;
create constraint trigger _900_wake_dispatcher
    after insert or update of status on webhooks.deliveries
    deferrable initially deferred
    for each row
    when (new.status = 'PENDING' and webhooks.dispatcher_armed())
    execute function webhooks.tg_deliveries__wake();
comment on trigger _900_wake_dispatcher on webhooks.deliveries is
    'At commit: wakes the dispatcher (NOTIFY webhooks) when PENDING work was added while it was armed; nothing is queued otherwise.';

-- The committing roles no longer read the flag (the writer does, as the owner): only
-- webhooks.wake_dispatcher stays theirs to execute, at COMMIT.
drop policy committers_read on webhooks.wakeup;
revoke select on webhooks.wakeup from admin, platform_admin, service, agent, dispatcher;
