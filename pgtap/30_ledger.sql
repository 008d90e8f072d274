-- Ledger: captures and refunds post balanced double-entry transactions whose amounts follow the fee
-- rule; wallet balances are the sums of their entries; the deferred balance check refuses unbalanced
-- or mixed-currency transactions; entries are append-only.
-- Expected amounts are computed here in SQL from the inputs (numeric arithmetic), never copied from
-- output: fee = round-half-up(amount * fee_bps / 10000); a refund's fee share =
-- floor(fee * refunded_after / captured) - floor(fee * refunded_before / captured).
begin;
set local client_min_messages = warning;  -- quiet the NOTICE of TRUNCATE ... CASCADE
select plan(28);

-- ---------------------------------------------------------------------------------------------
-- Inputs
-- ---------------------------------------------------------------------------------------------
insert into core.customers (id, name, email) overriding system value values (1001, 'Ana', 'ana@example.com');
insert into core.sellers (id, name, fee_bps) overriding system value values
    (2001, 'Quarter', 2500),   -- 25 %: 10002 gives a fee of exactly 2500.5, rounded half up
    (2002, 'Odd', 999),
    (2003, 'Free', 0);         -- no fee: the platform entry is skipped, never a zero entry

create temp table pay_in (name text primary key, seller_id bigint, amount bigint, currency text);
insert into pay_in values
    ('a', 2001, 10002, 'EUR'),
    ('b', 2002,  5005, 'USD'),
    ('c', 2003,   777, 'EUR'),
    ('d', 2001, 12345, 'EUR');

-- Refunds, completed in seq order per payment.
create temp table refund_in (name text, seq integer, amount bigint, primary key (name, seq));
insert into refund_in values
    ('a', 1, 3333),   -- partial
    ('a', 2, 4000),   -- partial, after another: the fee share depends on what was refunded before
    ('b', 1, 1),      -- so small that its fee share is 0
    ('c', 1, 777),    -- full refund of a fee-free payment
    ('d', 1, 12345);  -- full refund: the whole fee comes back

-- ---------------------------------------------------------------------------------------------
-- Run them through the real functions
-- ---------------------------------------------------------------------------------------------
create temp table ids (name text primary key, id bigint not null);
do $$
declare
    v_in record;
    v_order core.orders;
    v_payment_id bigint;
    v_refund core.refunds;
begin
    for v_in in select * from pay_in order by name loop
        v_order := core.create_order(1001, v_in.seller_id, '10001', v_in.amount, v_in.currency);
        select p.id into v_payment_id from core.payments p where p.order_id = v_order.id;
        perform core.capture_payment(v_payment_id, 'PSP-' || v_in.name);
        insert into ids values ('p_' || v_in.name, v_payment_id);
    end loop;
    for v_in in select * from refund_in order by name, seq loop
        v_refund := core.initiate_refund((select id from ids where name = 'p_' || v_in.name), v_in.amount);
        perform core.complete_refund(v_refund.id);
        insert into ids values ('r_' || v_in.name || v_in.seq, v_refund.id);
    end loop;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- What the ledger must hold, from the inputs alone
-- ---------------------------------------------------------------------------------------------
create temp view expected_fees as
select p.name, p.seller_id, p.currency, p.amount,
       round(p.amount * s.fee_bps / 10000.0)::bigint as fee   -- numeric round(): half away from zero
  from pay_in p join core.sellers s on s.id = p.seller_id;

create temp view expected_refunds as
select r.name, r.seq, r.amount,
       (floor(f.fee::numeric * (r.before + r.amount) / f.amount)
        - floor(f.fee::numeric * r.before / f.amount))::bigint as fee_share
  from (select r.*, coalesce(sum(r.amount) over (partition by r.name order by r.seq
                                                 rows between unbounded preceding and 1 preceding), 0) as before
          from refund_in r) r
  join expected_fees f using (name);

-- (transaction kind, payment, refund seq, wallet kind, seller, currency, amount); zero amounts are never posted.
create temp view expected_entries as
select * from (
    select 'CAPTURE' as tx_kind, f.name, null::integer as seq, v.wallet_kind,
           case when v.wallet_kind = 'SELLER' then f.seller_id end as seller_id, f.currency, v.amount
      from expected_fees f,
           lateral (values ('PAYMENT_CLEARING', -f.amount), ('SELLER', f.amount - f.fee), ('PLATFORM_FEES', f.fee))
               as v (wallet_kind, amount)
    union all
    select 'REFUND', r.name, r.seq, v.wallet_kind,
           case when v.wallet_kind = 'SELLER' then f.seller_id end, f.currency, v.amount
      from expected_refunds r join expected_fees f using (name),
           lateral (values ('PAYMENT_CLEARING', r.amount), ('SELLER', -(r.amount - r.fee_share)),
                           ('PLATFORM_FEES', -r.fee_share)) as v (wallet_kind, amount)
) e
 where amount <> 0;

create temp view actual_entries as
select t.kind as tx_kind, substr(pi.name, 3) as name, substr(ri.name, 4)::integer as seq,
       w.kind as wallet_kind, w.seller_id, w.currency, e.amount
  from core.ledger_entries e
  join core.ledger_transactions t on t.id = e.transaction_id
  join core.wallets w on w.id = e.wallet_id
  join ids pi on pi.id = t.payment_id and pi.name like 'p\_%'
  left join ids ri on ri.id = t.refund_id and ri.name like 'r\_%';

-- ---------------------------------------------------------------------------------------------
-- Captures and refunds
-- ---------------------------------------------------------------------------------------------
select set_eq(
    $$select substr(i.name, 3), p.fee_amount from core.payments p join ids i on i.id = p.id and i.name like 'p\_%'$$,
    $$select name, fee from expected_fees$$,
    'each captured payment took the fee round-half-up(amount * fee_bps / 10000)');
select results_eq(
    $$select fee from expected_fees where name = 'a'$$,
    $$values (2501::bigint)$$,
    'the half-way case rounds up (10002 at 25 % is 2500.5 -> 2501)');

select is_empty(
    $$select transaction_id, sum(amount) from core.ledger_entries group by transaction_id having sum(amount) <> 0$$,
    'every ledger transaction sums to zero');
select is_empty(
    $$select e.id from core.ledger_entries e
        join core.ledger_transactions t on t.id = e.transaction_id
        join core.wallets w on w.id = e.wallet_id
       where w.currency <> t.currency$$,
    'every entry is in its transaction''s currency');
select results_eq(
    $$select count(*) filter (where kind = 'CAPTURE'), count(*) filter (where kind = 'REFUND') from core.ledger_transactions$$,
    $$select (select count(*) from pay_in), (select count(*) from refund_in)$$,
    'one CAPTURE transaction per capture and one REFUND transaction per completed refund');
select bag_eq(
    'select * from actual_entries',
    'select * from expected_entries',
    'every entry of every capture and refund is the hand-computed one (fee and pro-rata fee share)');

-- ---------------------------------------------------------------------------------------------
-- Wallet balances
-- ---------------------------------------------------------------------------------------------
select is_empty(
    $$select b.wallet_id from core.wallet_balances b
       where b.balance <> coalesce((select sum(e.amount) from core.ledger_entries e where e.wallet_id = b.wallet_id), 0)$$,
    'core.wallet_balances is the sum of each wallet''s entries');
select set_eq(
    $$select kind, seller_id, currency, balance from core.wallet_balances$$,
    $$select wallet_kind, seller_id, currency, sum(amount)::bigint from expected_entries
       group by wallet_kind, seller_id, currency$$,
    'every wallet balance equals the hand-computed one');
select results_eq(
    $$select balance from core.wallet_balances where kind = 'PLATFORM_FEES' and currency = 'EUR'$$,
    $$select sum(f.fee)::bigint - (select sum(r.fee_share) from expected_refunds r join expected_fees f2 using (name)
                                    where f2.currency = 'EUR')::bigint
        from expected_fees f where f.currency = 'EUR'$$,
    'the platform keeps, in EUR, the fees taken minus the fee shares refunded');
select is_empty(
    $$select currency from core.wallet_balances group by currency having sum(balance) <> 0$$,
    'in each currency the wallets sum to zero (money is only moved, never made)');

-- Stored balances (core.wallet_balance_slots): kept by a per-statement trigger, rebuilt from entries.
select has_trigger('core', 'ledger_entries', '_200_balance_slots', 'ledger_entries keeps the stored balances');
create temp table balances_before as select wallet_id, balance from core.wallet_balances;
select lives_ok(
    $$select core.post_ledger('CAPTURE', 'EUR', (select min(id) from core.payments where currency = 'EUR'), null,
        array[(select id from core.wallets where kind = 'PAYMENT_CLEARING' and currency = 'EUR'),
              (select id from core.wallets where kind = 'PLATFORM_FEES' and currency = 'EUR'),
              (select id from core.wallets where kind = 'PLATFORM_FEES' and currency = 'EUR')],
        array[-300, 100, 200]::bigint[])$$,
    'one statement posting two entries to one wallet');
select set_eq(
    $$select wallet_id, balance from core.wallet_balances$$,
    $$select b.wallet_id, b.balance + case w.kind when 'PAYMENT_CLEARING' then -300 when 'PLATFORM_FEES' then 300 else 0 end
        from balances_before b join core.wallets w on w.id = b.wallet_id
       where w.currency = 'EUR'
      union all
      select b.wallet_id, b.balance from balances_before b join core.wallets w on w.id = b.wallet_id
       where w.currency <> 'EUR'$$,
    'the stored balances moved by exactly the statement''s entries, summed per wallet');
select is(
    (select core.rebuild_wallet_balances()
         - (select count(distinct wallet_id) from core.ledger_entries))::integer
      + (select count(*) from (select wallet_id, balance from core.wallet_balances
                               except select wallet_id, sum(amount)::bigint from core.ledger_entries group by 1) d)::integer,
    0, 'core.rebuild_wallet_balances recomputes one slot per wallet with entries, equal to its entries');

-- ---------------------------------------------------------------------------------------------
-- A refund beyond what is left is refused and moves nothing
-- ---------------------------------------------------------------------------------------------
create function pg_temp.ledger_digest() returns text
language sql stable
as $$
    select md5(coalesce((select string_agg(t::text, '|' order by t.id) from core.ledger_transactions t), '')
            || '#' || coalesce((select string_agg(e::text, '|' order by e.id) from core.ledger_entries e), ''))
$$;
create temp table digest_before_refund as select pg_temp.ledger_digest() as digest;

select throws_code(
    $$select core.initiate_refund((select id from ids where name = 'p_a'),
                                  (select amount - (select sum(amount) from refund_in where name = 'a')::bigint + 1
                                     from pay_in where name = 'a'))$$,
    'REFUND_EXCEEDS_CAPTURED', 'a further refund of payment a one unit beyond what is left: REFUND_EXCEEDS_CAPTURED');
select throws_code(
    $$select core.initiate_refund((select id from ids where name = 'p_b'), (select amount from pay_in where name = 'b'))$$,
    'REFUND_EXCEEDS_CAPTURED', 'a second refund of payment b for its full amount: REFUND_EXCEEDS_CAPTURED');
select is(pg_temp.ledger_digest(), (select digest from digest_before_refund),
    'the refused refunds left the ledger unchanged');

-- ---------------------------------------------------------------------------------------------
-- The deferred balance check
-- ---------------------------------------------------------------------------------------------
create function pg_temp.wallet(p_kind text, p_seller_id bigint, p_currency text) returns bigint
language sql stable
as $$
    select w.id from core.wallets w
     where w.kind = p_kind and w.seller_id is not distinct from p_seller_id and w.currency = p_currency
$$;

-- A ledger transaction written directly, entries in one INSERT (no core function involved).
create function pg_temp.raw_transaction(p_currency text, p_wallet_ids bigint[], p_amounts bigint[]) returns bigint
language plpgsql
as $$
declare
    v_tx bigint;
begin
    insert into core.ledger_transactions (kind, currency) values ('CAPTURE', p_currency) returning id into v_tx;
    insert into core.ledger_entries (transaction_id, wallet_id, amount)
    select v_tx, w, a from unnest(p_wallet_ids, p_amounts) as u (w, a);
    return v_tx;
end
$$;

select lives_ok(
    $sql$do $x$
      begin
          begin
              perform pg_temp.raw_transaction('EUR', array[pg_temp.wallet('PAYMENT_CLEARING', null, 'EUR')], array[-100::bigint]);
              raise sqlstate 'TAPOK';   -- reached only if the INSERT was not refused on the spot
          exception when sqlstate 'TAPOK' then
              null;                     -- roll the half-written transaction back
          end;
      end
      $x$$sql$,
    'an unbalanced INSERT is not refused before commit: the balance check is deferred');

select throws_code(
    $$select pg_temp.raw_transaction('EUR',
          array[pg_temp.wallet('PAYMENT_CLEARING', null, 'EUR'), pg_temp.wallet('PLATFORM_FEES', null, 'EUR')],
          array[-100, 99]::bigint[]);
      set constraints all immediate$$,
    'LEDGER_UNBALANCED', 'an unbalanced transaction inserted directly: LEDGER_UNBALANCED when the check runs');

select throws_code(
    $$select pg_temp.raw_transaction('EUR',
          array[pg_temp.wallet('PAYMENT_CLEARING', null, 'EUR'), pg_temp.wallet('PAYMENT_CLEARING', null, 'USD')],
          array[-100, 100]::bigint[]);
      set constraints all immediate$$,
    'LEDGER_UNBALANCED', 'a transaction summing to zero across EUR and USD wallets: LEDGER_UNBALANCED');

select lives_ok(
    $sql$do $x$
      declare
          v_tx bigint;
      begin
          v_tx := pg_temp.raw_transaction('EUR', array[pg_temp.wallet('SELLER', 2003, 'EUR')], array[-25::bigint]);
          insert into core.ledger_entries (transaction_id, wallet_id, amount)
          values (v_tx, pg_temp.wallet('PLATFORM_FEES', null, 'EUR'), 25);
          set constraints all immediate;
          set constraints all deferred;
      end
      $x$$sql$,
    'a transaction balanced only after its second INSERT is accepted (judged whole, at the check)');

select lives_ok('set constraints all immediate; set constraints all deferred',
    'forcing the deferred check over everything written in this test passes');

-- ---------------------------------------------------------------------------------------------
-- Append-only
-- ---------------------------------------------------------------------------------------------
create temp table digest_before_dml as select pg_temp.ledger_digest() as digest;
select throws_code($$update core.ledger_entries set amount = amount + 1 where id = (select min(id) from core.ledger_entries)$$,
    'LEDGER_IMMUTABLE', 'UPDATE of a ledger entry: LEDGER_IMMUTABLE');
select throws_code($$delete from core.ledger_entries where id = (select min(id) from core.ledger_entries)$$,
    'LEDGER_IMMUTABLE', 'DELETE of a ledger entry: LEDGER_IMMUTABLE');
select throws_code($$truncate core.ledger_entries$$,
    'LEDGER_IMMUTABLE', 'TRUNCATE of ledger_entries: LEDGER_IMMUTABLE');
select throws_code($$truncate core.ledger_transactions cascade$$,
    'LEDGER_IMMUTABLE', 'TRUNCATE of ledger_transactions cascading to the entries: LEDGER_IMMUTABLE');
select is(pg_temp.ledger_digest(), (select digest from digest_before_dml),
    'the ledger is unchanged after the refused UPDATE, DELETE and TRUNCATEs');

-- Ledger transactions are append-only too: rewriting one's currency would silently turn every one
-- of its entries into a foreign-currency entry.
select throws_code($$update core.ledger_transactions set currency = 'USD' where id = (select min(id) from core.ledger_transactions)$$,
    'LEDGER_IMMUTABLE', 'UPDATE of a ledger transaction''s currency: LEDGER_IMMUTABLE');

select * from finish();
rollback;
