-- 0003 sprint 8 indexes (plan D3): the metrics and lifecycle queries' indexes, the FKs left unindexed.
-- depends: 0001.foundation
-- Only core tables of 0001 are touched, so 0003 does not need 0002. Plain CREATE INDEX in one
-- transaction: all or nothing, and rollback is trivial. Each build holds a SHARE lock on its table
-- (reads go on, writes wait) for as long as the build takes; docs/indexes.md gives the measured build
-- times and when to switch to CREATE INDEX CONCURRENTLY instead. lock_timeout: if a long transaction
-- holds one of these tables, fail fast (and retry later) rather than queue every writer behind us.

set local lock_timeout = '5s';

-- ---- sql/100_core_parties.sql ----
-- GIN, not btree: "agents serving zip Z" is array containment (serviceable_zip_codes @> array[Z]),
-- which only a GIN (array_ops) index answers. Measured (make explain, 5,000 agents, a zip served by
-- 956 of them): Bitmap Index Scan 0.18 ms vs Seq Scan 0.96 ms. docs/indexes.md.
create index delivery_agents_serviceable_zip_codes_idx on core.delivery_agents using gin (serviceable_zip_codes);
comment on index core.delivery_agents_serviceable_zip_codes_idx is
    'Serves agents serving a zip code (serviceable_zip_codes @> array[zip]): offer_assignment''s eligibility check, geographic coverage.';

-- ---- sql/120_core_ledger.sql ----
-- The unique key leads with kind, so the sellers FK had no index of its own.
create index wallets_seller_id_idx on core.wallets (seller_id);
comment on index core.wallets_seller_id_idx is 'Serves the sellers FK and a seller''s wallets (wallet_id by seller_id).';
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

-- ---- sql/150_core_shipping.sql ----
-- Equality columns first (agent, status), the range column last: one contiguous index range per
-- (agent, status, period). Measured (make explain, 189,941 assignments): an agent's latest 100
-- DELIVERED in 90 days, Index Scan 0.10 ms vs Parallel Seq Scan 27 ms. docs/indexes.md.
create index shipping_assignments_agent_id_status_created_at_idx on core.shipping_assignments (agent_id, status, created_at);
comment on index core.shipping_assignments_agent_id_status_created_at_idx is
    'Serves an agent''s assignments by status in a period (agent metrics) and the delivery_agents FK.';
-- Partial on DELIVERED (the SLA and leaderboard population), keyed by delivered_at alone. Not the
-- plan's (status, delivered_at): the planner drops "status = 'DELIVERED'" from the index conditions
-- because the predicate already implies it, so with status leading, a delivered_at range can only
-- be found by reading the whole index. Measured (make explain, 200,000 orders, 18,356 deliveries in
-- the last week): with (status, delivered_at) the SLA summary is a Seq Scan, 30 ms; with
-- (delivered_at) an Index Scan, 7-10 ms, at 55 % of the size. docs/indexes.md.
create index shipping_assignments_delivered_at_idx on core.shipping_assignments (delivered_at)
    where status = 'DELIVERED';
comment on index core.shipping_assignments_delivered_at_idx is
    'Serves SLA summary and leaderboard: DELIVERED assignments in a delivered_at range (partial).';
