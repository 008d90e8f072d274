-- Undo 0012: the dispatcher goes back to arm_wakeup then next_due_at (the sweep covers the window).
-- A deploy never hangs behind a long transaction.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

-- Lint allowlist (ban-drop-function): a rollback drops exactly what its migration created.
-- squawk-ignore ban-drop-function
drop function webhooks.await_committing(integer);
