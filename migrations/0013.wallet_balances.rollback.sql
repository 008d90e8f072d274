-- Undo 0013: balances are sums over the entries again; the stored slots and their trigger go.
-- squawk: dropping what 0013 created is the point of this file.
-- squawk-ignore-file ban-drop-function, ban-drop-table
-- A deploy never hangs behind a long transaction.
set local lock_timeout = '5s';
set local statement_timeout = '60s';

create or replace view core.wallet_balances
with (security_invoker = true)
as
select w.id as wallet_id, w.kind, w.seller_id, w.currency,
       coalesce((select sum(e.amount) from core.ledger_entries e where e.wallet_id = w.id), 0)::bigint as balance
  from core.wallets w;
comment on view core.wallet_balances is 'Each wallet''s balance, derived from its ledger entries.';
comment on view api.wallet_balances is $$Wallet balances
Each wallet's balance in minor units, derived from its ledger entries.$$;

drop trigger _200_balance_slots on core.ledger_entries;
drop function core.tg_ledger_entries__balance_slots();
drop function core.rebuild_wallet_balances();
drop table core.wallet_balance_slots;
drop function core.wallet_slots();
