-- Undo 0009.
drop function if exists webhooks.dispatcher_backlog(timestamptz);
