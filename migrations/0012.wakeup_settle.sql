-- 0012 wake-up settle: webhooks.await_committing, which the dispatcher calls between arm_wakeup and
-- next_due_at so that a business commit racing with the arm is either notified or seen (issue 10;
-- the window reached milliseconds under load and cost that row the 30 s sweep).
-- depends: 0011.outbox_lean

-- A deploy never hangs behind a long transaction.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

create function webhooks.await_committing(p_timeout_ms integer default 250)
returns boolean
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Closes the arm/commit window of the wake-up (sql/210): a business transaction checks `armed` in
-- its deferred trigger at COMMIT, then flushes its commit record; one that checked just before the
-- dispatcher's arm_wakeup committed, and becomes visible only after the dispatcher's next_due_at
-- took its snapshot, would be neither notified nor seen (measured: milliseconds under load, so its
-- row waited for the 30 s sweep). The dispatcher calls this between arm_wakeup and next_due_at: it
-- waits until every transaction that held a transaction id at the call has ended. pg_locks lists
-- them all (each holds the lock on its own id until after its commit became visible to new
-- snapshots); pg_current_snapshot() would not (it omits ids at or above its xmax). Nothing waits on
-- the dispatcher: business transactions take no lock for this. Bounded: an unrelated long
-- transaction (idle in transaction) costs an idle dispatcher p_timeout_ms, never a hang; false
-- means the bound was hit.
declare
    v_waiting xid[] := array(select l.transactionid from pg_catalog.pg_locks l
                              where l.locktype = 'transactionid' and l.mode = 'ExclusiveLock' and l.granted
                                and l.pid <> pg_catalog.pg_backend_pid());
    v_deadline timestamptz := pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => p_timeout_ms / 1000.0);
begin
    while cardinality(v_waiting) > 0 loop
        if pg_catalog.clock_timestamp() >= v_deadline then
            return false;
        end if;
        perform pg_catalog.pg_sleep(0.001);
        v_waiting := array(select x from unnest(v_waiting) x
                            where exists (select from pg_catalog.pg_locks l
                                           where l.locktype = 'transactionid' and l.mode = 'ExclusiveLock'
                                             and l.granted and l.transactionid operator(pg_catalog.=) x));
    end loop;
    return true;
end
$$;
comment on function webhooks.await_committing(integer) is
    'Dispatcher, between arm_wakeup and next_due_at: wait (at most p_timeout_ms) until every transaction running now has ended; false on timeout.';
grant execute on function webhooks.await_committing(integer) to dispatcher;
