-- 0013 wallet balances: each wallet's balance stored in core.wallet_balance_slots by the statement
-- that writes its entries (a per-statement trigger), every wallet spread over 64 slots so
-- captures do not queue on one row; core.wallet_balances sums the slots instead of every entry
-- (issue 12 §2, docs/performance.md "Wallet balances").
-- depends: 0012.wakeup_settle

-- A deploy never hangs behind a long transaction.
set local lock_timeout = '5s';
-- The backfill below sums every ledger entry once (an index-only scan: seconds at millions of rows).
set local statement_timeout = '300s';

-- ---- stored balances ---------------------------------------------------------------------------
-- A balance read must not grow with the ledger (a sum over every entry took 85-100 ms at 200k
-- orders), so each wallet's balance is kept in core.wallet_balance_slots by the statement that
-- writes its entries, in the same transaction. One row per wallet would make every capture and
-- refund queue until commit on the two platform wallets' rows (and a busy seller's); the deltas
-- instead go to one of core.wallet_slots() slots chosen at random per wallet and statement, and a
-- read sums the slots (at most 64 rows per wallet, whatever the size of the ledger).

create function core.wallet_slots()
returns smallint
language sql
immutable
parallel safe
set search_path = ''
as $$
    -- 64: at 32 clients, 16 slots still cost 20-30 % of capture throughput in lock waits, 64 none
    -- measurable (bench/captures.py, docs/performance.md "Wallet balances"). A read sums <= 64 rows.
    select 64::smallint
$$;
comment on function core.wallet_slots() is
    'How many balance slots a wallet spreads its concurrent updates over (core.wallet_balance_slots).';

create table core.wallet_balance_slots (
    wallet_id   bigint not null,
    -- smallint on purpose: 0-63 (wallet_balance_slots_slot_range_check), never near its limit.
    -- squawk-ignore prefer-bigint-over-smallint
    slot        smallint not null,
    balance     bigint not null,
    constraint wallet_balance_slots_pkey primary key (wallet_id, slot),
    constraint wallet_balance_slots_wallet_id_fkey foreign key (wallet_id) references core.wallets (id),
    constraint wallet_balance_slots_slot_range_check check (slot >= 0 and slot < 64)
);
alter table core.wallet_balance_slots enable row level security;
comment on table core.wallet_balance_slots is
    'Stored wallet balances: a wallet''s balance is the sum of its slots, always equal to the sum of its ledger entries.';
comment on column core.wallet_balance_slots.slot is
    'Writers spread over core.wallet_slots() slots at random, so concurrent captures rarely queue on one row.';
comment on column core.wallet_balance_slots.balance is 'This slot''s share of the wallet''s balance (minor units).';

create function core.tg_ledger_entries__balance_slots()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
-- @plpgsql_check_options: newtable = new_entries
-- AFTER INSERT, once per statement: add each wallet's new entries to one of its balance slots.
-- SECURITY DEFINER: the writer of entries need not be able to write the slots itself.
-- Rows are upserted in (wallet_id) order, so two statements lock slots in the same order and cannot
-- deadlock on them; a slot's row lock is held to COMMIT, so two writers queue only when they drew
-- the same slot of the same wallet.
begin
    insert into core.wallet_balance_slots as s (wallet_id, slot, balance)
    select n.wallet_id, floor(random() * core.wallet_slots())::smallint, sum(n.amount)::bigint
      from new_entries n
     group by n.wallet_id
     order by n.wallet_id
        on conflict on constraint wallet_balance_slots_pkey
        do update set balance = s.balance + excluded.balance;
    return null;
end
$$;
comment on function core.tg_ledger_entries__balance_slots() is
    'Trigger (per statement): adds new ledger entries to their wallets'' stored balance slots.';

create trigger _200_balance_slots
    after insert on core.ledger_entries
    referencing new table as new_entries
    for each statement execute function core.tg_ledger_entries__balance_slots();
comment on trigger _200_balance_slots on core.ledger_entries is
    'Keeps core.wallet_balance_slots equal to the sum of the entries, in the same transaction.';

create function core.rebuild_wallet_balances()
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
-- Recompute every stored balance from the entries, for bulk loads that skip triggers (waybill seed
-- runs with session_replication_role = replica). Returns the number of wallets with entries.
-- LOCK EXCLUSIVE on the slots: a concurrent writer holds ROW EXCLUSIVE on them until it commits, so
-- the sum below sees every committed entry and no writer adds a delta on top of it meanwhile.
declare
    v_n bigint;
begin
    lock table core.wallet_balance_slots in exclusive mode;
    delete from core.wallet_balance_slots;
    insert into core.wallet_balance_slots (wallet_id, slot, balance)
    select e.wallet_id, 0, sum(e.amount)::bigint
      from core.ledger_entries e
     group by e.wallet_id;
    get diagnostics v_n = row_count;
    return v_n;
end
$$;
comment on function core.rebuild_wallet_balances() is
    'Recompute the stored wallet balances from the ledger entries (after a bulk load without triggers).';

create or replace view core.wallet_balances
with (security_invoker = true)
as
select w.id as wallet_id, w.kind, w.seller_id, w.currency, coalesce(b.balance, 0)::bigint as balance
  from core.wallets w
  left join (select s.wallet_id, sum(s.balance) as balance
               from core.wallet_balance_slots s
              group by s.wallet_id) b on b.wallet_id = w.id;
comment on view core.wallet_balances is
    'Each wallet''s balance: the sum of its stored balance slots (equal to the sum of its ledger entries).';

-- Backfill: the balances of the entries written before this migration. The trigger exists already,
-- and the EXCLUSIVE lock taken by core.rebuild_wallet_balances makes the sum and the writers agree.
do $$ begin perform core.rebuild_wallet_balances(); end $$;

grant select on core.wallet_balance_slots to admin, platform_admin;
create policy staff_read on core.wallet_balance_slots for select to admin, platform_admin using (true);
comment on policy staff_read on core.wallet_balance_slots is 'Admins read every stored balance (core.wallet_balances).';
comment on view api.wallet_balances is $$Wallet balances
Each wallet's balance in minor units: the stored sum of its ledger entries, kept in the same transaction.$$;
