-- Undo 0002.
drop view if exists ops.top_statements;
drop function if exists ops.statement_stats();
revoke usage on schema ops from admin, platform_admin;
