-- Core constraints: every table has its primary key and foreign keys, and every CHECK, UNIQUE and
-- FOREIGN KEY constraint of core refuses a row that breaks it (asserted by registry code). Bad rows
-- are table-driven: each one is a valid template row with one value broken, and a last pair of
-- assertions proves each bad row trips the very constraint it targets and that no constraint of core
-- is left without a bad row.
begin;
select plan(147);

-- ---------------------------------------------------------------------------------------------
-- Structure: the tables, their primary keys, their foreign keys
-- ---------------------------------------------------------------------------------------------
select tables_are('core', array[
    'customers', 'sellers', 'delivery_agents', 'state_transitions', 'wallets', 'ledger_transactions',
    'ledger_entries', 'orders', 'order_status_history', 'payments', 'refunds', 'shipping_assignments',
    'assignment_status_history', 'currencies', 'wallet_balance_slots']);

select has_pk('core', 'customers', 'core.customers has a primary key');
select has_pk('core', 'sellers', 'core.sellers has a primary key');
select has_pk('core', 'delivery_agents', 'core.delivery_agents has a primary key');
select has_pk('core', 'state_transitions', 'core.state_transitions has a primary key');
select has_pk('core', 'wallets', 'core.wallets has a primary key');
select has_pk('core', 'wallet_balance_slots', 'core.wallet_balance_slots has a primary key');
select has_pk('core', 'ledger_transactions', 'core.ledger_transactions has a primary key');
select has_pk('core', 'ledger_entries', 'core.ledger_entries has a primary key');
select has_pk('core', 'orders', 'core.orders has a primary key');
select has_pk('core', 'order_status_history', 'core.order_status_history has a primary key');
select has_pk('core', 'payments', 'core.payments has a primary key');
select has_pk('core', 'refunds', 'core.refunds has a primary key');
select has_pk('core', 'shipping_assignments', 'core.shipping_assignments has a primary key');
select has_pk('core', 'assignment_status_history', 'core.assignment_status_history has a primary key');
select has_pk('core', 'currencies', 'core.currencies has a primary key');

select fk_ok('core', 'wallets', 'seller_id', 'core', 'sellers', 'id');
select fk_ok('core', 'ledger_transactions', 'payment_id', 'core', 'payments', 'id');
select fk_ok('core', 'ledger_transactions', 'refund_id', 'core', 'refunds', 'id');
select fk_ok('core', 'ledger_entries', 'transaction_id', 'core', 'ledger_transactions', 'id');
select fk_ok('core', 'ledger_entries', 'wallet_id', 'core', 'wallets', 'id');
select fk_ok('core', 'wallet_balance_slots', 'wallet_id', 'core', 'wallets', 'id');
select fk_ok('core', 'orders', 'customer_id', 'core', 'customers', 'id');
select fk_ok('core', 'orders', 'seller_id', 'core', 'sellers', 'id');
select fk_ok('core', 'order_status_history', 'order_id', 'core', 'orders', 'id');
select fk_ok('core', 'payments', 'order_id', 'core', 'orders', 'id');
select fk_ok('core', 'refunds', 'payment_id', 'core', 'payments', 'id');
select fk_ok('core', 'shipping_assignments', 'order_id', 'core', 'orders', 'id');
select fk_ok('core', 'shipping_assignments', 'agent_id', 'core', 'delivery_agents', 'id');
select fk_ok('core', 'assignment_status_history', 'assignment_id', 'core', 'shipping_assignments', 'id');
select fk_ok('core', 'assignment_status_history', 'agent_id', 'core', 'delivery_agents', 'id');
select fk_ok('core', 'assignment_status_history', 'order_id', 'core', 'orders', 'id');
select fk_ok('core', 'orders', 'currency', 'core', 'currencies', 'code');
select fk_ok('core', 'payments', 'currency', 'core', 'currencies', 'code');
select fk_ok('core', 'wallets', 'currency', 'core', 'currencies', 'code');

-- The partial unique indexes behind "one live payment / one live assignment per order".
select index_is_unique('core', 'payments', 'payments_order_id_live_key');
select index_is_unique('core', 'shipping_assignments', 'shipping_assignments_order_id_live_key');

-- ---------------------------------------------------------------------------------------------
-- Fixtures: one valid row per table, with fixed ids so the bad rows below read plainly
-- ---------------------------------------------------------------------------------------------
insert into core.customers (id, name, email) overriding system value values (1001, 'Ana', 'ana@example.com');
insert into core.sellers (id, name, fee_bps) overriding system value values (2001, 'Shop', 1000);
insert into core.delivery_agents (id, name, serviceable_zip_codes) overriding system value
values (3001, 'Dan', array['10001']);
-- 4001 has a live payment and a live assignment; 4002 has neither.
insert into core.orders (id, customer_id, seller_id, ship_to_zip, amount, currency) overriding system value
values (4001, 1001, 2001, '10001', 5000, 'EUR'), (4002, 1001, 2001, '10001', 7000, 'EUR');
insert into core.payments (id, order_id, amount, currency, provider_ref) overriding system value
values (5001, 4001, 5000, 'EUR', 'PSP-1');
insert into core.refunds (id, payment_id, amount) overriding system value values (6001, 5001, 100);
insert into core.wallets (id, kind, seller_id, currency) overriding system value
values (7001, 'PLATFORM_FEES', null, 'EUR'), (7002, 'SELLER', 2001, 'EUR');
insert into core.ledger_transactions (id, kind, currency, payment_id) overriding system value
values (8001, 'CAPTURE', 'EUR', 5001);
insert into core.shipping_assignments (id, order_id, zip_code, sla_due_at) overriding system value
values (9001, 4001, '10001', now() + interval '1 day');

-- The constraint (or, for NOT NULL, the column) a statement trips; null when it succeeds. Never keeps rows.
create function pg_temp.violated(p_sql text) returns text
language plpgsql
as $$
declare
    v_constraint text;
    v_column text;
begin
    begin
        execute p_sql;
        raise sqlstate 'TAPOK';
    exception
        when sqlstate 'TAPOK' then
            return null;
        when others then
            get stacked diagnostics v_constraint = constraint_name, v_column = column_name;
            return coalesce(nullif(v_constraint, ''), 'not null: ' || v_column);
    end;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- The bad rows: (target constraint, expected registry code, what is broken, statement)
-- ---------------------------------------------------------------------------------------------
create temp table bad_rows (
    n serial,
    target text not null,
    code text not null,
    what text not null,
    stmt text not null
);

insert into bad_rows (target, code, what, stmt) values
-- currencies (ISO 4217 reference data)
('currencies_code_format_check', 'CHECK_VIOLATION', 'lower-case code',
 $$insert into core.currencies (code, numeric_code, minor_unit, name) values ('zzz', '999', 2, 'Test')$$),
('currencies_numeric_code_format_check', 'CHECK_VIOLATION', 'two-digit numeric code',
 $$insert into core.currencies (code, numeric_code, minor_unit, name) values ('ZZZ', '99', 2, 'Test')$$),
('currencies_minor_unit_range_check', 'CHECK_VIOLATION', 'five decimal places',
 $$insert into core.currencies (code, numeric_code, minor_unit, name) values ('ZZZ', '999', 5, 'Test')$$),
('currencies_name_not_blank_check', 'CHECK_VIOLATION', 'blank name',
 $$insert into core.currencies (code, numeric_code, minor_unit, name) values ('ZZZ', '999', 2, ' ')$$),
('currencies_numeric_code_key', 'UNIQUE_VIOLATION', 'the numeric code of EUR again',
 $$insert into core.currencies (code, numeric_code, minor_unit, name) values ('ZZZ', '978', 2, 'Test')$$),
-- customers
('customers_email_format_check', 'CHECK_VIOLATION', 'email without @',
 $$insert into core.customers (name, email) values ('Bo', 'bo.example.com')$$),
('customers_email_format_check', 'CHECK_VIOLATION', 'email with a space',
 $$insert into core.customers (name, email) values ('Bo', 'bo smith@example.com')$$),
('customers_email_format_check', 'CHECK_VIOLATION', 'email with two @',
 $$insert into core.customers (name, email) values ('Bo', 'bo@ex@ample.com')$$),
('customers_email_lower_key', 'UNIQUE_VIOLATION', 'email already taken, in another case',
 $$insert into core.customers (name, email) values ('Ana Two', 'ANA@example.com')$$),
('customers_name_not_blank_check', 'CHECK_VIOLATION', 'blank name',
 $$insert into core.customers (name, email) values ('  ', 'blank@example.com')$$),
('not null: email', 'NOT_NULL_VIOLATION', 'null email',
 $$insert into core.customers (name, email) values ('Bo', null)$$),
-- sellers
('sellers_fee_bps_range_check', 'CHECK_VIOLATION', 'fee_bps below 0',
 $$insert into core.sellers (name, fee_bps) values ('Neg', -1)$$),
('sellers_fee_bps_range_check', 'CHECK_VIOLATION', 'fee_bps above 10000',
 $$insert into core.sellers (name, fee_bps) values ('Greedy', 10001)$$),
('sellers_name_not_blank_check', 'CHECK_VIOLATION', 'blank name',
 $$insert into core.sellers (name) values ('')$$),
-- delivery agents
('delivery_agents_zip_codes_format_check', 'CHECK_VIOLATION', 'four-digit zip code',
 $$insert into core.delivery_agents (name, serviceable_zip_codes) values ('Eve', array['1000'])$$),
('delivery_agents_zip_codes_format_check', 'CHECK_VIOLATION', 'six-digit zip code',
 $$insert into core.delivery_agents (name, serviceable_zip_codes) values ('Eve', array['100011'])$$),
('delivery_agents_zip_codes_format_check', 'CHECK_VIOLATION', 'letters in the second zip code',
 $$insert into core.delivery_agents (name, serviceable_zip_codes) values ('Eve', array['10001', 'abcde'])$$),
('delivery_agents_zip_codes_no_nulls_check', 'CHECK_VIOLATION', 'null zip code',
 $$insert into core.delivery_agents (name, serviceable_zip_codes) values ('Eve', array['10001', null])$$),
('delivery_agents_status_check', 'CHECK_VIOLATION', 'unknown status',
 $$insert into core.delivery_agents (name, status) values ('Eve', 'ON_LEAVE')$$),
('delivery_agents_name_not_blank_check', 'CHECK_VIOLATION', 'blank name',
 $$insert into core.delivery_agents (name) values (' ')$$),
-- state machines
('state_transitions_machine_check', 'CHECK_VIOLATION', 'unknown machine',
 $$insert into core.state_transitions values ('invoice', 'OPEN', 'PAID')$$),
('state_transitions_not_a_loop_check', 'CHECK_VIOLATION', 'transition to itself',
 $$insert into core.state_transitions values ('order', 'PENDING', 'PENDING')$$),
('state_transitions_pkey', 'UNIQUE_VIOLATION', 'transition listed twice',
 $$insert into core.state_transitions values ('order', 'PENDING', 'CONFIRMED')$$),
-- wallets
('wallets_kind_check', 'CHECK_VIOLATION', 'unknown kind',
 $$insert into core.wallets (kind, currency) values ('BANK', 'EUR')$$),
('wallets_currency_format_check', 'CHECK_VIOLATION', 'lower-case currency',
 $$insert into core.wallets (kind, currency) values ('PLATFORM_FEES', 'usd')$$),
('wallets_currency_fkey', 'FOREIGN_KEY_VIOLATION', 'three capitals that are no ISO 4217 code',
 $$insert into core.wallets (kind, currency) values ('PLATFORM_FEES', 'XYZ')$$),
('wallets_seller_only_for_seller_kind_check', 'CHECK_VIOLATION', 'seller wallet without seller',
 $$insert into core.wallets (kind, currency) values ('SELLER', 'USD')$$),
('wallets_seller_only_for_seller_kind_check', 'CHECK_VIOLATION', 'platform wallet with a seller',
 $$insert into core.wallets (kind, seller_id, currency) values ('PLATFORM_FEES', 2001, 'USD')$$),
('wallets_kind_seller_id_currency_key', 'UNIQUE_VIOLATION', 'second platform fee wallet in EUR (nulls not distinct)',
 $$insert into core.wallets (kind, currency) values ('PLATFORM_FEES', 'EUR')$$),
('wallets_kind_seller_id_currency_key', 'UNIQUE_VIOLATION', 'second wallet of seller 2001 in EUR',
 $$insert into core.wallets (kind, seller_id, currency) values ('SELLER', 2001, 'EUR')$$),
('wallets_seller_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown seller',
 $$insert into core.wallets (kind, seller_id, currency) values ('SELLER', 999999, 'EUR')$$),
-- ledger transactions and entries
('ledger_transactions_kind_check', 'CHECK_VIOLATION', 'unknown kind',
 $$insert into core.ledger_transactions (kind, currency, payment_id) values ('ADJUSTMENT', 'EUR', 5001)$$),
('ledger_transactions_currency_format_check', 'CHECK_VIOLATION', 'four-letter currency',
 $$insert into core.ledger_transactions (kind, currency, payment_id) values ('CAPTURE', 'EURO', 5001)$$),
('ledger_transactions_refund_has_refund_id_check', 'CHECK_VIOLATION', 'refund transaction without refund',
 $$insert into core.ledger_transactions (kind, currency, payment_id) values ('REFUND', 'EUR', 5001)$$),
('ledger_transactions_refund_has_refund_id_check', 'CHECK_VIOLATION', 'capture transaction with a refund',
 $$insert into core.ledger_transactions (kind, currency, payment_id, refund_id) values ('CAPTURE', 'EUR', 5001, 6001)$$),
('ledger_transactions_payment_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown payment',
 $$insert into core.ledger_transactions (kind, currency, payment_id) values ('CAPTURE', 'EUR', 999999)$$),
('ledger_transactions_refund_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown refund',
 $$insert into core.ledger_transactions (kind, currency, payment_id, refund_id) values ('REFUND', 'EUR', 5001, 999999)$$),
('ledger_entries_amount_not_zero_check', 'CHECK_VIOLATION', 'zero amount',
 $$insert into core.ledger_entries (transaction_id, wallet_id, amount) values (8001, 7001, 0)$$),
('ledger_entries_transaction_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown transaction',
 $$insert into core.ledger_entries (transaction_id, wallet_id, amount) values (999999, 7001, 10)$$),
('ledger_entries_wallet_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown wallet',
 $$insert into core.ledger_entries (transaction_id, wallet_id, amount) values (8001, 999999, 10)$$),
('wallet_balance_slots_slot_range_check', 'CHECK_VIOLATION', 'slot beyond the 64 slots',
 $$insert into core.wallet_balance_slots (wallet_id, slot, balance) values (7001, 64, 0)$$),
('wallet_balance_slots_wallet_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown wallet',
 $$insert into core.wallet_balance_slots (wallet_id, slot, balance) values (999999, 0, 0)$$),
-- orders
('orders_ship_to_zip_format_check', 'CHECK_VIOLATION', 'four-digit zip',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (1001, 2001, '1000', 100, 'EUR')$$),
('orders_ship_to_zip_format_check', 'CHECK_VIOLATION', 'letters in zip',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (1001, 2001, '1000A', 100, 'EUR')$$),
('orders_amount_range_check', 'CHECK_VIOLATION', 'zero amount',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (1001, 2001, '10001', 0, 'EUR')$$),
('orders_amount_range_check', 'CHECK_VIOLATION', 'negative amount',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (1001, 2001, '10001', -5, 'EUR')$$),
('orders_amount_range_check', 'CHECK_VIOLATION', 'one minor unit above core.amount_max()',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (1001, 2001, '10001', core.amount_max() + 1, 'EUR')$$),
('orders_currency_fkey', 'FOREIGN_KEY_VIOLATION', 'three capitals that are no ISO 4217 code',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (1001, 2001, '10001', 100, 'XYZ')$$),
('not null: amount', 'NOT_NULL_VIOLATION', 'null amount',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (1001, 2001, '10001', null, 'EUR')$$),
('orders_currency_format_check', 'CHECK_VIOLATION', 'lower-case currency',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (1001, 2001, '10001', 100, 'eur')$$),
('orders_status_check', 'CHECK_VIOLATION', 'unknown status',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency, status) values (1001, 2001, '10001', 100, 'EUR', 'LOST')$$),
('orders_version_positive_check', 'CHECK_VIOLATION', 'version 0',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency, version) values (1001, 2001, '10001', 100, 'EUR', 0)$$),
('orders_delivered_has_timestamp_check', 'CHECK_VIOLATION', 'delivered without delivered_at',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency, status) values (1001, 2001, '10001', 100, 'EUR', 'DELIVERED')$$),
('orders_cancelled_has_timestamp_check', 'CHECK_VIOLATION', 'cancelled without cancelled_at',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency, status) values (1001, 2001, '10001', 100, 'EUR', 'CANCELLED')$$),
('orders_customer_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown customer',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (999999, 2001, '10001', 100, 'EUR')$$),
('orders_seller_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown seller',
 $$insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency) values (1001, 999999, '10001', 100, 'EUR')$$),
-- order status history
('order_status_history_order_id_version_key', 'UNIQUE_VIOLATION', 'a second row for version 1 of order 4001',
 $$insert into core.order_status_history (order_id, from_status, to_status, version, actor) values (4001, null, 'PENDING', 1, 'test')$$),
('order_status_history_order_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown order',
 $$insert into core.order_status_history (order_id, to_status, version, actor) values (999999, 'PENDING', 1, 'test')$$),
-- payments (template: a PENDING payment of order 4002, which has none)
('payments_amount_range_check', 'CHECK_VIOLATION', 'zero amount',
 $$insert into core.payments (order_id, amount, currency) values (4002, 0, 'EUR')$$),
('payments_amount_range_check', 'CHECK_VIOLATION', 'one minor unit above core.amount_max()',
 $$insert into core.payments (order_id, amount, currency) values (4002, core.amount_max() + 1, 'EUR')$$),
('payments_currency_fkey', 'FOREIGN_KEY_VIOLATION', 'three capitals that are no ISO 4217 code',
 $$insert into core.payments (order_id, amount, currency) values (4002, 7000, 'XYZ')$$),
('payments_currency_format_check', 'CHECK_VIOLATION', 'lower-case currency',
 $$insert into core.payments (order_id, amount, currency) values (4002, 7000, 'eur')$$),
('payments_status_check', 'CHECK_VIOLATION', 'unknown status',
 $$insert into core.payments (order_id, amount, currency, status) values (4002, 7000, 'EUR', 'REFUNDED')$$),
('payments_fee_within_amount_check', 'CHECK_VIOLATION', 'fee above the amount',
 $$insert into core.payments (order_id, amount, currency, fee_amount) values (4002, 7000, 'EUR', 7001)$$),
('payments_fee_within_amount_check', 'CHECK_VIOLATION', 'negative fee',
 $$insert into core.payments (order_id, amount, currency, fee_amount) values (4002, 7000, 'EUR', -1)$$),
('payments_captured_complete_check', 'CHECK_VIOLATION', 'captured without provider_ref',
 $$insert into core.payments (order_id, amount, currency, status, fee_amount, captured_at) values (4002, 7000, 'EUR', 'CAPTURED', 700, now())$$),
('payments_failed_has_reason_check', 'CHECK_VIOLATION', 'failed without a reason',
 $$insert into core.payments (order_id, amount, currency, status, failed_at) values (4002, 7000, 'EUR', 'FAILED', now())$$),
('payments_provider_ref_key', 'UNIQUE_VIOLATION', 'provider_ref of payment 5001 again',
 $$insert into core.payments (order_id, amount, currency, status, provider_ref, failure_reason, failed_at) values (4002, 7000, 'EUR', 'FAILED', 'PSP-1', 'declined', now())$$),
('payments_order_id_live_key', 'UNIQUE_VIOLATION', 'second PENDING payment of order 4001',
 $$insert into core.payments (order_id, amount, currency) values (4001, 5000, 'EUR')$$),
('payments_order_id_live_key', 'UNIQUE_VIOLATION', 'a CAPTURED payment beside the PENDING one of order 4001',
 $$insert into core.payments (order_id, amount, currency, status, provider_ref, fee_amount, captured_at) values (4001, 5000, 'EUR', 'CAPTURED', 'PSP-2', 500, now())$$),
('payments_order_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown order',
 $$insert into core.payments (order_id, amount, currency) values (999999, 7000, 'EUR')$$),
-- refunds
('refunds_amount_positive_check', 'CHECK_VIOLATION', 'zero amount',
 $$insert into core.refunds (payment_id, amount) values (5001, 0)$$),
('refunds_amount_positive_check', 'CHECK_VIOLATION', 'negative amount',
 $$insert into core.refunds (payment_id, amount) values (5001, -5)$$),
('refunds_status_check', 'CHECK_VIOLATION', 'unknown status',
 $$insert into core.refunds (payment_id, amount, status) values (5001, 100, 'REVERSED')$$),
('refunds_completed_has_timestamp_check', 'CHECK_VIOLATION', 'completed without completed_at',
 $$insert into core.refunds (payment_id, amount, status) values (5001, 100, 'COMPLETED')$$),
('refunds_failed_has_reason_check', 'CHECK_VIOLATION', 'failed without a reason',
 $$insert into core.refunds (payment_id, amount, status, failed_at) values (5001, 100, 'FAILED', now())$$),
('refunds_payment_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown payment',
 $$insert into core.refunds (payment_id, amount) values (999999, 100)$$),
-- shipping assignments (template: an OFFERED assignment of order 4002, which has none)
('shipping_assignments_zip_code_format_check', 'CHECK_VIOLATION', 'four-digit zip',
 $$insert into core.shipping_assignments (order_id, zip_code, sla_due_at) values (4002, '1000', now() + interval '1 day')$$),
('shipping_assignments_status_check', 'CHECK_VIOLATION', 'unknown status',
 $$insert into core.shipping_assignments (order_id, agent_id, zip_code, sla_due_at, status) values (4002, 3001, '10001', now() + interval '1 day', 'LOST')$$),
('shipping_assignments_sla_after_offer_check', 'CHECK_VIOLATION', 'sla due at the offer time',
 $$insert into core.shipping_assignments (order_id, zip_code, sla_due_at) values (4002, '10001', now())$$),
('shipping_assignments_sla_after_offer_check', 'CHECK_VIOLATION', 'sla due before the offer',
 $$insert into core.shipping_assignments (order_id, zip_code, sla_due_at) values (4002, '10001', now() - interval '1 hour')$$),
('shipping_assignments_agent_matches_status_check', 'CHECK_VIOLATION', 'an offer that names an agent',
 $$insert into core.shipping_assignments (order_id, agent_id, zip_code, sla_due_at) values (4002, 3001, '10001', now() + interval '1 day')$$),
('shipping_assignments_agent_matches_status_check', 'CHECK_VIOLATION', 'accepted without an agent',
 $$insert into core.shipping_assignments (order_id, zip_code, sla_due_at, status) values (4002, '10001', now() + interval '1 day', 'ACCEPTED')$$),
('shipping_assignments_agent_matches_status_check', 'CHECK_VIOLATION', 'failed without an agent',
 $$insert into core.shipping_assignments (order_id, zip_code, sla_due_at, status, failure_reason) values (4002, '10001', now() + interval '1 day', 'FAILED', 'flat tyre')$$),
('shipping_assignments_delivered_has_timestamp_check', 'CHECK_VIOLATION', 'delivered without delivered_at',
 $$insert into core.shipping_assignments (order_id, agent_id, zip_code, sla_due_at, status) values (4002, 3001, '10001', now() + interval '1 day', 'DELIVERED')$$),
('shipping_assignments_failed_has_reason_check', 'CHECK_VIOLATION', 'failed without a reason',
 $$insert into core.shipping_assignments (order_id, agent_id, zip_code, sla_due_at, status) values (4002, 3001, '10001', now() + interval '1 day', 'FAILED')$$),
('shipping_assignments_order_id_live_key', 'UNIQUE_VIOLATION', 'second live assignment of order 4001',
 $$insert into core.shipping_assignments (order_id, zip_code, sla_due_at) values (4001, '10001', now() + interval '1 day')$$),
('shipping_assignments_order_id_live_key', 'UNIQUE_VIOLATION', 'an ACCEPTED assignment beside the OFFERED one of order 4001',
 $$insert into core.shipping_assignments (order_id, agent_id, zip_code, sla_due_at, status) values (4001, 3001, '10001', now() + interval '1 day', 'ACCEPTED')$$),
('shipping_assignments_order_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown order',
 $$insert into core.shipping_assignments (order_id, zip_code, sla_due_at) values (999999, '10001', now() + interval '1 day')$$),
('shipping_assignments_agent_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown agent',
 $$insert into core.shipping_assignments (order_id, agent_id, zip_code, sla_due_at, status) values (4002, 999999, '10001', now() + interval '1 day', 'ACCEPTED')$$),
-- assignment status history
('assignment_status_history_assignment_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown assignment',
 $$insert into core.assignment_status_history (assignment_id, order_id, to_status, actor) values (999999, 4001, 'OFFERED', 'test')$$),
('assignment_status_history_agent_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown agent',
 $$insert into core.assignment_status_history (assignment_id, order_id, agent_id, to_status, actor) values (9001, 4001, 999999, 'ACCEPTED', 'test')$$),
('assignment_status_history_order_id_fkey', 'FOREIGN_KEY_VIOLATION', 'unknown order',
 $$insert into core.assignment_status_history (assignment_id, order_id, to_status, actor) values (9001, 999999, 'OFFERED', 'test')$$);

-- One assertion per bad row, in catalogue order.
select throws_code(stmt, code, format('%s refuses %s', target, what))
  from (select * from bad_rows order by n offset 0) b;

-- Each bad row trips exactly the constraint it targets (not some other rule by accident) ...
select is_empty(
    $$select n, target, pg_temp.violated(stmt) as tripped from bad_rows
       where pg_temp.violated(stmt) is distinct from target$$,
    'every bad row is refused by the very constraint it targets');

-- ... and every CHECK, UNIQUE (constraint or unique index) and FOREIGN KEY of core has a bad row.
select is_empty(
    $$select conname::text from pg_constraint
       where connamespace = 'core'::regnamespace and contype in ('c', 'u', 'f')
      union
      select i.indexrelid::regclass::text from pg_index i join pg_class c on c.oid = i.indrelid
       where c.relnamespace = 'core'::regnamespace and i.indisunique and not i.indisprimary
         and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid)
      except
      select 'core.' || target from bad_rows
      except
      select target from bad_rows$$,
    'every CHECK, UNIQUE and FOREIGN KEY constraint of core is exercised by a bad row');

-- ---------------------------------------------------------------------------------------------
-- The template rows and the edges are accepted (so the refusals above are about the broken value)
-- ---------------------------------------------------------------------------------------------
select lives_ok($$insert into core.customers (name, email) values ('Bo', 'bo@example.com')$$,
    'a customer with a well-formed new email is accepted');
select lives_ok($$insert into core.sellers (name, fee_bps) values ('Free', 0), ('All', 10000)$$,
    'fee_bps 0 and 10000 (the range edges) are accepted');
select lives_ok($$insert into core.delivery_agents (name, serviceable_zip_codes, status)
                  values ('Fay', '{}', 'ACTIVE'), ('Gus', array['10001', '20002'], 'SUSPENDED')$$,
    'agents with no zip code or several five-digit ones are accepted');
select lives_ok($$insert into core.wallets (kind, seller_id, currency) values ('SELLER', 2001, 'USD'), ('PLATFORM_FEES', null, 'USD')$$,
    'the same owners may have a wallet in another currency');
select lives_ok($$insert into core.payments (order_id, amount, currency, status, failure_reason, failed_at)
                  values (4001, 5000, 'EUR', 'FAILED', 'declined', now()), (4001, 5000, 'EUR', 'FAILED', 'declined', now())$$,
    'failed payments may pile up beside the live one (the unique index is partial)');
select lives_ok($$insert into core.payments (order_id, amount, currency) values (4002, 7000, 'EUR')$$,
    'the payment template row is valid');
select lives_ok($$insert into core.shipping_assignments (order_id, agent_id, zip_code, sla_due_at, status, failure_reason)
                  values (4001, 3001, '10001', now() + interval '1 day', 'FAILED', 'flat tyre'),
                         (4001, null, '10001', now() + interval '1 day', 'CANCELLED', null)$$,
    'failed and cancelled assignments may sit beside the live one; a cancelled offer needs no agent');
select lives_ok($$insert into core.shipping_assignments (order_id, zip_code, sla_due_at) values (4002, '10001', now() + interval '1 day')$$,
    'the assignment template row is valid');
select lives_ok($$insert into core.refunds (payment_id, amount) values (5001, 1)$$,
    'a refund of 1 minor unit is accepted');

-- ---------------------------------------------------------------------------------------------
-- Each zip code is checked on its own: an empty element or one holding a comma is refused.
-- ---------------------------------------------------------------------------------------------
select throws_code($$insert into core.delivery_agents (name, serviceable_zip_codes) values ('Hal', array[''])$$,
    'CHECK_VIOLATION', 'delivery_agents_zip_codes_format_check refuses an empty zip code');
select throws_code($$insert into core.delivery_agents (name, serviceable_zip_codes) values ('Hal', array['10001,10002'])$$,
    'CHECK_VIOLATION', 'delivery_agents_zip_codes_format_check refuses one element holding two zip codes');

-- ---------------------------------------------------------------------------------------------
-- State machines: the statuses a table's CHECK allows are exactly those its machine mentions
-- ---------------------------------------------------------------------------------------------
create function pg_temp.check_statuses(p_constraint text) returns setof text
language sql stable
as $$
    select m[1] from pg_constraint c, regexp_matches(pg_get_constraintdef(c.oid), '''([A-Z_]+)''', 'g') m
     where c.connamespace = 'core'::regnamespace and c.conname = p_constraint
$$;
create function pg_temp.machine_statuses(p_machine text) returns setof text
language sql stable
as $$
    select from_status from core.state_transitions where machine = p_machine
    union
    select to_status from core.state_transitions where machine = p_machine
$$;

select set_eq($$select pg_temp.check_statuses('orders_status_check')$$,
              $$select pg_temp.machine_statuses('order')$$,
    'orders: the statuses of orders_status_check are exactly those of the order machine');
select set_eq($$select pg_temp.check_statuses('payments_status_check')$$,
              $$select pg_temp.machine_statuses('payment')$$,
    'payments: the statuses of payments_status_check are exactly those of the payment machine');
select set_eq($$select pg_temp.check_statuses('refunds_status_check')$$,
              $$select pg_temp.machine_statuses('refund')$$,
    'refunds: the statuses of refunds_status_check are exactly those of the refund machine');
select set_eq($$select pg_temp.check_statuses('shipping_assignments_status_check')$$,
              $$select pg_temp.machine_statuses('assignment')$$,
    'assignments: the statuses of shipping_assignments_status_check are exactly those of the assignment machine');

select * from finish();
rollback;
