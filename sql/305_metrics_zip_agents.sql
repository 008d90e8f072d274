-- =================================================================================================
-- 305 Metrics: the agents serving each zip code, kept by triggers (for the leaderboard's zip filter)
-- "Agents serving zip Z" through the GIN index on core.delivery_agents.serviceable_zip_codes visits
-- one heap page per agent (147 agents on 118 pages at 10,000 agents: ~0.2 ms, a third of a zip
-- code's leaderboard). This table holds the same pairs under a B-tree: one zip code's agents are one
-- key range of a few index pages, read index-only (docs/indexes.md, docs/performance/agent-metrics.md
-- "Migration 0025"). Kept in the transaction that changes an agent, so it is always live.
-- =================================================================================================

create table metrics.zip_agents (
    zip_code  text not null,
    agent_id  bigint not null,
    constraint zip_agents_pkey primary key (zip_code, agent_id)
);
alter table metrics.zip_agents enable row level security;
comment on table metrics.zip_agents is 'Each (zip code, agent serving it) pair of core.delivery_agents.serviceable_zip_codes (kept by triggers).';
comment on column metrics.zip_agents.zip_code is 'A zip code of the agent''s serviceable_zip_codes.';
comment on column metrics.zip_agents.agent_id is 'core.delivery_agents.id (no foreign key: the triggers below keep the pairs, deletes included).';
grant select on metrics.zip_agents to admin, platform_admin;
create policy staff_read on metrics.zip_agents for select to admin, platform_admin using (true);
comment on policy staff_read on metrics.zip_agents is 'Admins read every zip code''s agents.';

-- -------------------------------------------------------------------------------------------------
-- The triggers: an agent's pairs follow its row (insert, a change of its zip codes, delete,
-- truncate). The agent's row lock orders two changes of one agent; every statement below touches
-- only that agent's pairs, by primary key.
-- -------------------------------------------------------------------------------------------------

create function metrics.tg_delivery_agents__zip_agents()
returns trigger
language plpgsql
set search_path = ''
as $$
-- AFTER INSERT, DELETE or UPDATE OF serviceable_zip_codes (when it changed) on core.delivery_agents:
-- remove the pairs of the zip codes the agent no longer serves, add those of the ones it now serves
-- (an array may repeat a zip code: one pair each).
begin
    if tg_op in ('UPDATE', 'DELETE') then
        delete from metrics.zip_agents z
         where z.zip_code = any (old.serviceable_zip_codes)
           and z.agent_id = old.id
           and (tg_op = 'DELETE' or z.zip_code <> all (new.serviceable_zip_codes));
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
        insert into metrics.zip_agents (zip_code, agent_id)
        select distinct z.zip_code, new.id from unnest(new.serviceable_zip_codes) z (zip_code)
        on conflict do nothing;
    end if;
    return null;
end
$$;
comment on function metrics.tg_delivery_agents__zip_agents() is
    'Trigger: keeps metrics.zip_agents equal to the (zip code, agent) pairs of core.delivery_agents.';

create function metrics.tg_delivery_agents__zip_agents_truncate()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    truncate metrics.zip_agents;
    return null;
end
$$;
comment on function metrics.tg_delivery_agents__zip_agents_truncate() is
    'Trigger: empties metrics.zip_agents when core.delivery_agents is truncated.';

create trigger _500_metrics_zip_agents_insert
    after insert on core.delivery_agents
    for each row execute function metrics.tg_delivery_agents__zip_agents();
comment on trigger _500_metrics_zip_agents_insert on core.delivery_agents is 'Adds a new agent''s (zip code, agent) pairs to metrics.zip_agents.';
create trigger _500_metrics_zip_agents_update
    after update of serviceable_zip_codes on core.delivery_agents
    for each row
    when (new.serviceable_zip_codes is distinct from old.serviceable_zip_codes)
    execute function metrics.tg_delivery_agents__zip_agents();
comment on trigger _500_metrics_zip_agents_update on core.delivery_agents is 'Moves an agent''s pairs in metrics.zip_agents when its zip codes change.';
create trigger _500_metrics_zip_agents_delete
    after delete on core.delivery_agents
    for each row execute function metrics.tg_delivery_agents__zip_agents();
comment on trigger _500_metrics_zip_agents_delete on core.delivery_agents is 'Removes a deleted agent''s pairs from metrics.zip_agents.';
create trigger _500_metrics_zip_agents_truncate
    after truncate on core.delivery_agents
    for each statement execute function metrics.tg_delivery_agents__zip_agents_truncate();
comment on trigger _500_metrics_zip_agents_truncate on core.delivery_agents is 'Empties metrics.zip_agents with its source.';

-- -------------------------------------------------------------------------------------------------
-- Rebuild from core.delivery_agents (bulk loads: waybill seed inserts with triggers off)
-- -------------------------------------------------------------------------------------------------

create function metrics.rebuild_zip_agents()
returns void
language plpgsql
volatile
set search_path = ''
as $$
-- The ACCESS EXCLUSIVE lock waits for agent changes in flight (their triggers hold row locks here)
-- and holds new ones until COMMIT; they then apply their change on top of the rebuilt pairs.
begin
    lock table metrics.zip_agents in access exclusive mode;
    truncate metrics.zip_agents;
    insert into metrics.zip_agents (zip_code, agent_id)
    select distinct z.zip_code, d.id
      from core.delivery_agents d, unnest(d.serviceable_zip_codes) z (zip_code)
     order by 1, 2;
end
$$;
comment on function metrics.rebuild_zip_agents() is
    'Recompute metrics.zip_agents from core.delivery_agents (after bulk loads that skip triggers; metrics.rebuild_rollups calls it).';

-- Filled from the agents already there (a migration onto a loaded database).
select metrics.rebuild_zip_agents();
