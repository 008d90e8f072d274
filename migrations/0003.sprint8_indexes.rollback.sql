-- Undo 0003: drop the sprint 8 indexes (the tables and their data are untouched).
drop index if exists core.shipping_assignments_delivered_at_idx;
drop index if exists core.shipping_assignments_agent_id_status_created_at_idx;
drop index if exists core.ledger_entries_created_at_idx;
drop index if exists core.ledger_entries_wallet_id_amount_created_at_idx;
drop index if exists core.wallets_seller_id_idx;
drop index if exists core.delivery_agents_serviceable_zip_codes_idx;
