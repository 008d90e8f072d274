-- Undo 0001. Roles are cluster-wide and may serve other databases of the cluster: they stay.
drop schema if exists api cascade;
drop schema if exists core cascade;
drop schema if exists auth cascade;
drop schema if exists ops cascade;
drop extension if exists pg_stat_statements;
alter default privileges grant execute on functions to public;
grant usage on schema public to public;
do $db$
begin
    execute format('revoke connect on database %I from authenticator, dispatcher', current_database());
    execute format('grant connect, temporary on database %I to public', current_database());
end
$db$;
