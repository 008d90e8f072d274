-- Undo 0009.
set local lock_timeout = '5s';
set local statement_timeout = '60s';
-- Lint allowlist (ban-drop-function): a rollback drops exactly what its migration created.
-- squawk-ignore ban-drop-function
drop function if exists webhooks.dispatcher_backlog(timestamptz);
