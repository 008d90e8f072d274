-- Undo 0018: the nine deliveries and three events CHECK constraints again, the wake-up flag read at
-- COMMIT by the committing role (its grant and policy again).
-- Lint allowlist: a rollback drops exactly what its migration created, in one transaction.
-- squawk-ignore-file ban-drop-function, ban-drop-constraint, constraint-missing-not-valid
-- A deploy never hangs behind a long transaction.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

grant select on webhooks.wakeup to admin, platform_admin, service, agent, dispatcher;
create policy committers_read on webhooks.wakeup for select to admin, platform_admin, service, agent, dispatcher using (true);
comment on policy committers_read on webhooks.wakeup is 'The deferred wake-up trigger reads the flag as the committing role.';

drop trigger _900_wake_dispatcher on webhooks.deliveries;
create or replace function webhooks.tg_deliveries__wake()
returns trigger
language plpgsql
as $$
-- Deferred to COMMIT, so it runs as whoever is current then - the request role, once the
-- SECURITY DEFINER api function has returned (or the dispatcher, requeueing a retry). Common case:
-- nobody is armed, one read of one row, no lock, no NOTIFY. Neither SECURITY DEFINER nor SET
-- (every name qualified): each costs every emitting transaction a user switch and a GUC save and
-- restore at commit (~25 us measured, 0015.outbox_positional); the roles that commit business
-- transactions may read the flag instead (grants below) and call webhooks.wake_dispatcher only when
-- a dispatcher is armed.
begin
    if (select w.armed from webhooks.wakeup w where w.id) then
        perform webhooks.wake_dispatcher();
    end if;
    return null;
end
$$;

create constraint trigger _900_wake_dispatcher
    after insert or update of status on webhooks.deliveries
    deferrable initially deferred
    for each row
    when (new.status = 'PENDING')
    execute function webhooks.tg_deliveries__wake();
comment on trigger _900_wake_dispatcher on webhooks.deliveries is
    'At commit: wakes an idle dispatcher (NOTIFY webhooks) when PENDING work was added; silent otherwise.';
drop function webhooks.dispatcher_armed();
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
-- Lock:tuple waits behind the disarming transaction. SECURITY DEFINER: request roles may read the
-- flag, not write it. Called by anyone, the worst it does is one spurious wake-up.
begin
    update webhooks.wakeup w set armed = false
     where w.id = (select x.id from webhooks.wakeup x where x.id and x.armed for update skip locked);
    if found then
        perform pg_notify('webhooks', '');
    end if;
end
$$;

alter table webhooks.deliveries
    add constraint deliveries_status_check check (status in ('PENDING', 'SENDING', 'DELIVERED', 'FAILED', 'SKIPPED')),
    add constraint deliveries_attempts_nonnegative_check check (attempts >= 0),
    add constraint deliveries_attempts_at_requeue_range_check check (attempts_at_requeue between 0 and attempts),
    add constraint deliveries_next_trigger_check check (next_trigger in ('scheduled', 'manual', 'recover')),
    add constraint deliveries_due_has_time_check
        check ((status in ('PENDING', 'SENDING')) = (next_attempt_at is not null)),
    add constraint deliveries_sending_has_lease_check
        check ((status = 'SENDING') = (lease_owner is not null and lease_token is not null and lease_until is not null)
               and (status <> 'SENDING' or next_attempt_at = lease_until)),
    add constraint deliveries_delivered_has_timestamp_check check ((status = 'DELIVERED') = (delivered_at is not null)),
    add constraint deliveries_finished_has_timestamp_check
        check ((status in ('DELIVERED', 'FAILED', 'SKIPPED')) = (finished_at is not null)),
    add constraint deliveries_last_status_code_range_check check (last_status_code between 100 and 599),
    drop constraint deliveries_row_check;
drop function webhooks.delivery_row_ok(webhooks.deliveries);
alter table webhooks.events
    add constraint events_body_is_json_object_check check (left(body, 1) = '{'),
    add constraint events_body_or_data_check check ((body is null) <> (data is null)),
    add constraint events_data_form_check check (left(data, 1) = case when shape is null then '{' else '[' end),
    drop constraint events_row_check;
drop function webhooks.event_row_ok(webhooks.events);
