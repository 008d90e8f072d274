-- =================================================================================================
-- 120 Wallets and the double-entry ledger
-- Entries are signed minor units; every ledger transaction sums to zero, checked at COMMIT by a
-- deferred constraint trigger, so no code path can commit an unbalanced transaction. Entries are
-- append-only. A wallet's balance is the sum of its entries, stored per wallet (core.wallet_balance_slots)
-- in the same transaction, so reading it does not grow with the ledger (core.wallet_balances).
-- =================================================================================================

create table core.wallets (
    id          bigint generated always as identity,
    kind        text not null,
    seller_id   bigint,
    currency    text not null,
    created_at  timestamptz not null default now(),
    constraint wallets_pkey primary key (id),
    constraint wallets_seller_id_fkey foreign key (seller_id) references core.sellers (id),
    constraint wallets_currency_fkey foreign key (currency) references core.currencies (code),
    constraint wallets_kind_check check (kind in ('SELLER', 'PLATFORM_FEES', 'PAYMENT_CLEARING')),
    constraint wallets_seller_only_for_seller_kind_check check ((kind = 'SELLER') = (seller_id is not null)),
    constraint wallets_currency_format_check check (currency ~ '^[A-Z]{3}$'),
    -- One wallet per owner and currency; NULLS NOT DISTINCT makes the platform wallets unique too.
    constraint wallets_kind_seller_id_currency_key unique nulls not distinct (kind, seller_id, currency)
);
alter table core.wallets enable row level security;
comment on table core.wallets is 'Accounts of the ledger: one per seller and currency, plus the platform''s fee and clearing wallets.';
comment on column core.wallets.kind is 'SELLER (seller earnings), PLATFORM_FEES (platform revenue), PAYMENT_CLEARING (money received from customers).';

-- The unique key leads with kind, so the sellers FK had no index of its own.
create index wallets_seller_id_idx on core.wallets (seller_id);
comment on index core.wallets_seller_id_idx is 'Serves the sellers FK and a seller''s wallets (wallet_id by seller_id).';
create index wallets_currency_idx on core.wallets (currency);
comment on index core.wallets_currency_idx is 'Serves the currencies FK (a currency row cannot go while a wallet uses it).';

create table core.ledger_transactions (
    id          bigint generated always as identity,
    kind        text not null,
    currency    text not null,
    payment_id  bigint,
    refund_id   bigint,
    created_at  timestamptz not null default now(),
    constraint ledger_transactions_pkey primary key (id),
    constraint ledger_transactions_kind_check check (kind in ('CAPTURE', 'REFUND')),
    constraint ledger_transactions_currency_format_check check (currency ~ '^[A-Z]{3}$')
);
alter table core.ledger_transactions enable row level security;
comment on table core.ledger_transactions is 'One money movement; its entries sum to zero.';

create table core.ledger_entries (
    id              bigint generated always as identity,
    transaction_id  bigint not null,
    wallet_id       bigint not null,
    amount          bigint not null,
    created_at      timestamptz not null default now(),
    constraint ledger_entries_pkey primary key (id),
    constraint ledger_entries_transaction_id_fkey foreign key (transaction_id) references core.ledger_transactions (id),
    constraint ledger_entries_wallet_id_fkey foreign key (wallet_id) references core.wallets (id),
    constraint ledger_entries_amount_not_zero_check check (amount <> 0)
);
alter table core.ledger_entries enable row level security;
comment on table core.ledger_entries is 'Signed postings (minor units) of a ledger transaction to one wallet; append-only.';
comment on column core.ledger_entries.amount is 'Positive credits the wallet, negative debits it.';

create index ledger_entries_transaction_id_idx on core.ledger_entries (transaction_id);
comment on index core.ledger_entries_transaction_id_idx is 'Serves the balance check at commit (sum of one transaction''s entries) and the FK.';
-- (wallet_id, amount, created_at): a balance is sum(amount) where wallet_id = $1 (core.wallet_balances),
-- answered by an Index Only Scan without touching the heap; created_at also serves a wallet's
-- statement over a period. Measured (make explain, 613,047 entries): a seller wallet's balance,
-- Index Only Scan 0.34 ms vs Seq Scan 72 ms. docs/indexes.md.
create index ledger_entries_wallet_id_amount_created_at_idx on core.ledger_entries (wallet_id, amount, created_at);
comment on index core.ledger_entries_wallet_id_amount_created_at_idx is
    'Serves a wallet''s balance (sum(amount) where wallet_id = $1, index-only) and the wallets FK.';
-- Measured (make explain): the latest 50 entries, Index Scan 0.02 ms vs Parallel Seq Scan + sort 72 ms.
create index ledger_entries_created_at_idx on core.ledger_entries (created_at desc);
comment on index core.ledger_entries_created_at_idx is
    'Serves the latest ledger entries (order by created_at desc limit N) and entries in a time range.';

create function core.tg_ledger_entries__check_balance()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
-- Deferred to COMMIT: the entries of new.transaction_id must sum to zero, in the transaction's currency.
-- SECURITY DEFINER: a deferred trigger runs at COMMIT as the session's role (e.g. an API role that
-- wrote through a SECURITY DEFINER function), which may not read the ledger itself.
-- A violation is logged as ledger_invariant_violated (the log line survives the rollback) and raised.
declare
    v_sum numeric;  -- sum() of bigint is numeric: an unbalanced sum beyond bigint is still reported, not 22003
    v_currency text;
    v_foreign bigint;  -- count(*) is bigint
begin
    select lt.currency into v_currency from core.ledger_transactions lt where lt.id = new.transaction_id;
    select coalesce(sum(e.amount), 0), count(*) filter (where w.currency <> v_currency)
      into v_sum, v_foreign
      from core.ledger_entries e
      join core.wallets w on w.id = e.wallet_id
     where e.transaction_id = new.transaction_id;
    if v_sum <> 0 or v_foreign > 0 then
        perform ops.log_event('ledger_invariant_violated', 'error',
            jsonb_build_object('transaction_id', new.transaction_id, 'sum', v_sum,
                               'foreign_currency_entries', v_foreign),
            'LEDGER_UNBALANCED');
        perform ops.raise_error('LEDGER_UNBALANCED', new.transaction_id::text,
            format('sum %s, %s entries in another currency', v_sum, v_foreign));
    end if;
    return null;
end
$$;
comment on function core.tg_ledger_entries__check_balance() is
    'Constraint trigger (deferred): a ledger transaction''s entries sum to zero in one currency.';

create constraint trigger _100_check_balance
    after insert on core.ledger_entries
    deferrable initially deferred
    for each row execute function core.tg_ledger_entries__check_balance();
comment on trigger _100_check_balance on core.ledger_entries is
    'Checks at COMMIT that every ledger transaction balances.';

create function core.tg_ledger_entries__append_only()
returns trigger
language plpgsql
set search_path = ''
as $$
-- Ledger entries are never updated, deleted or truncated: corrections are new transactions.
begin
    perform ops.raise_error('LEDGER_IMMUTABLE');
    return null;
end
$$;
comment on function core.tg_ledger_entries__append_only() is 'Trigger: refuses UPDATE, DELETE and TRUNCATE of ledger entries and transactions.';

create trigger _010_append_only
    before update or delete on core.ledger_entries
    for each row execute function core.tg_ledger_entries__append_only();
comment on trigger _010_append_only on core.ledger_entries is 'Ledger entries are append-only.';

create trigger _011_append_only_truncate
    before truncate on core.ledger_entries
    for each statement execute function core.tg_ledger_entries__append_only();
comment on trigger _011_append_only_truncate on core.ledger_entries is 'Ledger entries are never truncated.';

-- The transaction rows are append-only too: rewriting one's currency or kind would change what its
-- (already checked) entries mean.
create trigger _010_append_only
    before update or delete on core.ledger_transactions
    for each row execute function core.tg_ledger_entries__append_only();
comment on trigger _010_append_only on core.ledger_transactions is 'Ledger transactions are append-only.';
create trigger _011_append_only_truncate
    before truncate on core.ledger_transactions
    for each statement execute function core.tg_ledger_entries__append_only();
comment on trigger _011_append_only_truncate on core.ledger_transactions is 'Ledger transactions are never truncated.';

create function core.wallet_for(p_kind text, p_seller_id bigint, p_currency text)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
-- The wallet of (kind, seller, currency), created on first use (race-safe via ON CONFLICT).
declare
    v_id bigint;
begin
    select w.id into v_id from core.wallets w
     where w.kind = p_kind and w.seller_id is not distinct from p_seller_id and w.currency = p_currency;
    if v_id is null then
        insert into core.wallets (kind, seller_id, currency) values (p_kind, p_seller_id, p_currency)
        on conflict on constraint wallets_kind_seller_id_currency_key do nothing
        returning id into v_id;
        if v_id is null then
            select w.id into v_id from core.wallets w
             where w.kind = p_kind and w.seller_id is not distinct from p_seller_id and w.currency = p_currency;
        end if;
    end if;
    return v_id;
end
$$;
comment on function core.wallet_for(text, bigint, text) is 'The wallet for an owner and currency, created on first use.';

create function core.post_ledger(
    p_kind text, p_currency text, p_payment_id bigint, p_refund_id bigint,
    p_wallet_ids bigint[], p_amounts bigint[], p_now timestamptz default null
)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
-- Write one ledger transaction with entries (wallet_ids[i], amounts[i]); zero amounts are skipped.
-- The balance is enforced at COMMIT by the constraint trigger, not trusted here.
declare
    v_tx bigint;
    v_now timestamptz := coalesce(p_now, now());
begin
    insert into core.ledger_transactions (kind, currency, payment_id, refund_id, created_at)
    values (p_kind, p_currency, p_payment_id, p_refund_id, v_now)
    returning id into v_tx;
    insert into core.ledger_entries (transaction_id, wallet_id, amount, created_at)
    select v_tx, w, a, v_now
      from unnest(p_wallet_ids, p_amounts) as u (w, a)
     where a <> 0;
    return v_tx;
end
$$;
comment on function core.post_ledger(text, text, bigint, bigint, bigint[], bigint[], timestamptz) is
    'Write one ledger transaction and its entries; the deferred trigger checks it balances.';

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
    slot        smallint not null,  -- 0-63 (wallet_balance_slots_slot_range_check)
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

create view core.wallet_balances
with (security_invoker = true)
as
select w.id as wallet_id, w.kind, w.seller_id, w.currency, coalesce(b.balance, 0)::bigint as balance
  from core.wallets w
  left join (select s.wallet_id, sum(s.balance) as balance
               from core.wallet_balance_slots s
              group by s.wallet_id) b on b.wallet_id = w.id;
comment on view core.wallet_balances is
    'Each wallet''s balance: the sum of its stored balance slots (equal to the sum of its ledger entries).';
