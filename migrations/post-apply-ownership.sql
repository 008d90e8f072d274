-- Runs after every `yoyo apply` (yoyo runs every migrations/post-apply* file, in name order: this one
-- before post-apply.sql, which landed before ownership existed and never changes); safe to repeat.
-- Every object of Waybill's schemas belongs to waybill_owner, never to the migrating superuser:
-- hand over what the migrations just created (sql/020_ops_ownership.sql). A no-op when all is owned.
do $own$
begin
    if to_regprocedure('ops.assign_owner(name)') is not null then
        perform ops.assign_owner();
    end if;
end
$own$;
