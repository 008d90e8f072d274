-- Runs after every `yoyo apply`; holds only what is safe to repeat.
-- Every object of Waybill's schemas belongs to waybill_owner, never to the migrating superuser:
-- hand over what the migrations just created (sql/020_ops_ownership.sql). A no-op when all is owned.
do $own$
begin
    if to_regprocedure('ops.assign_owner(name)') is not null then
        perform ops.assign_owner();
    end if;
end
$own$;
-- A running PostgREST reloads its schema cache and sees new api objects.
NOTIFY pgrst, 'reload schema';
