-- =================================================================================================
-- 800 The HTTP API (schema api)
-- Served by PostgREST v13 (or gateway/). Views are security_invoker: the request role needs SELECT
-- on the core table and row-level security decides which rows it sees. Functions that change
-- state are SECURITY DEFINER with an empty search_path: they call core.* as the owner, and the
-- EXECUTE grant decides who may call them. Agents act only as themselves (JWT sub). They return the
-- core function's new row shaped as the api view's row (jsonb_populate_record matches by column
-- name), not a re-read: a re-read in the same statement could not see the row just written.
-- COMMENT ON texts are the OpenAPI descriptions (first line = summary).
-- =================================================================================================

-- -------------------------------------------------------------------------------------------------
-- Who is calling
-- -------------------------------------------------------------------------------------------------

create function auth.agent_id()
returns bigint
language sql
stable
as $$
    -- The delivery agent behind an agent token (its numeric sub), else null. No SET clause, so it
    -- inlines into the RLS policies (see sql/070_auth.sql).
    select case when auth.role() = 'agent' and auth.sub() ~ '^[0-9]{1,18}$' then auth.sub()::bigint end
$$;
comment on function auth.agent_id() is 'The calling delivery agent''s id (JWT role agent, numeric sub), or null.';

create function auth.agent_zip_codes()
returns text[]
language sql
stable
security definer
set search_path = ''
as $$
    -- The calling agent's zip codes if it is ACTIVE (offers are shown only to active agents).
    select coalesce((select d.serviceable_zip_codes from core.delivery_agents d
                      where d.id = auth.agent_id() and d.status = 'ACTIVE'), '{}')
$$;
comment on function auth.agent_zip_codes() is 'Zip codes the calling agent serves (empty unless it is an ACTIVE agent).';

create function auth.require_agent()
returns bigint
language plpgsql
stable
set search_path = ''
as $$
-- The calling agent's id, or the registered error for a token without a usable agent subject.
declare
    v_id bigint := auth.agent_id();
begin
    if v_id is null then
        perform ops.raise_error('INVALID_ARGUMENT', 'an agent token with a numeric sub is required');
    end if;
    return v_id;
end
$$;
comment on function auth.require_agent() is 'The calling agent''s id, or INVALID_ARGUMENT when the token names none.';

grant execute on function auth.agent_id(), auth.agent_zip_codes(), auth.require_agent()
    to anon, admin, platform_admin, service, agent;

create function auth.agent_sees_assignment(p_assignment_id bigint)
returns boolean
language sql
stable
set search_path = ''
as $$
    -- The agent_reads_own_and_offers policy's rule for one row, for api functions that run as the
    -- owner (who bypasses RLS); pgtap/50_security.sql checks that both agree row by row.
    select exists (
        select 1 from core.shipping_assignments a
         where a.id = p_assignment_id
           and (a.agent_id = auth.agent_id()
                or (a.status = 'OFFERED' and a.zip_code = any (auth.agent_zip_codes()))))
$$;
comment on function auth.agent_sees_assignment(bigint) is
    'Whether the calling agent can read the assignment through row-level security (its own, or an open offer in its zip codes).';

-- -------------------------------------------------------------------------------------------------
-- Row-level security: who sees which rows through the api views
-- Per-statement constants are wrapped in (select …) so they are evaluated once, not per row.
-- -------------------------------------------------------------------------------------------------

grant usage on schema core to admin, platform_admin, service, agent;

grant select on core.customers, core.sellers, core.orders, core.order_status_history, core.payments,
                core.refunds, core.wallets, core.ledger_entries
    to admin, platform_admin, service;
grant select on core.wallet_balances to admin, platform_admin;
-- The balances view is security_invoker: its readers read the stored slots themselves.
grant select on core.wallet_balance_slots to admin, platform_admin;
grant select on core.delivery_agents, core.shipping_assignments, core.assignment_status_history
    to admin, platform_admin, service, agent;

create policy staff_read on core.customers for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.customers is 'Admins and services read every customer.';
create policy staff_read on core.sellers for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.sellers is 'Admins and services read every seller.';
create policy staff_read on core.orders for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.orders is 'Admins and services read every order.';
create policy staff_read on core.order_status_history for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.order_status_history is 'Admins and services read every order step.';
create policy staff_read on core.payments for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.payments is 'Admins and services read every payment.';
create policy staff_read on core.refunds for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.refunds is 'Admins and services read every refund.';
create policy staff_read on core.wallets for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.wallets is 'Admins and services read every wallet.';
create policy staff_read on core.ledger_entries for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.ledger_entries is 'Admins and services read every ledger entry.';
create policy staff_read on core.wallet_balance_slots for select to admin, platform_admin using (true);
comment on policy staff_read on core.wallet_balance_slots is 'Admins read every stored balance (core.wallet_balances).';

create policy staff_read on core.delivery_agents for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.delivery_agents is 'Admins and services read every agent.';
create policy agent_reads_self on core.delivery_agents for select to agent
    using (id = (select auth.agent_id()));
comment on policy agent_reads_self on core.delivery_agents is 'An agent reads only its own row.';

create policy staff_read on core.shipping_assignments for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.shipping_assignments is 'Admins and services read every assignment.';
create policy agent_reads_own_and_offers on core.shipping_assignments for select to agent
    using (agent_id = (select auth.agent_id())
           -- "= any (array)" lets the planner use the OFFERED-by-zip index (an agent reads its ~1,400
           -- offers, 1-6 ms); "array @> array[zip_code]" read all ~5,000 (5-15 ms). docs/indexes.md.
           or (status = 'OFFERED' and zip_code = any ((select auth.agent_zip_codes())::text[])));
comment on policy agent_reads_own_and_offers on core.shipping_assignments is
    'An agent reads its own assignments and the open offers in the zip codes it serves (if ACTIVE).';

create policy staff_read on core.assignment_status_history for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.assignment_status_history is 'Admins and services read every assignment step.';
create policy agent_reads_own on core.assignment_status_history for select to agent
    using (agent_id = (select auth.agent_id()));
comment on policy agent_reads_own on core.assignment_status_history is 'An agent reads the steps it took part in.';

grant select on core.currencies to admin, platform_admin, service;
create policy staff_read on core.currencies for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.currencies is 'Admins and services read the currency list.';

-- -------------------------------------------------------------------------------------------------
-- Views
-- -------------------------------------------------------------------------------------------------

create view api.orders with (security_invoker = true) as
select o.id, o.customer_id, o.seller_id, o.ship_to_zip, o.amount, o.currency, o.status, o.version,
       o.created_at, o.updated_at, o.confirmed_at, o.shipped_at, o.delivered_at, o.cancelled_at
  from core.orders o;
comment on view api.orders is $$Orders
Customer orders with their status and version (the optimistic-lock token). Amounts are minor units.$$;
grant select on api.orders to admin, platform_admin, service;

create view api.order_status_history with (security_invoker = true) as
select h.id, h.order_id, h.from_status, h.to_status, h.version, h.actor, h.created_at
  from core.order_status_history h;
comment on view api.order_status_history is $$Order status history
Every status step of every order, with its version, actor and time.$$;
grant select on api.order_status_history to admin, platform_admin, service;

create view api.payments with (security_invoker = true) as
select p.id, p.order_id, p.amount, p.currency, p.status, p.provider_ref, p.fee_amount, p.failure_reason,
       p.created_at, p.updated_at, p.captured_at, p.failed_at
  from core.payments p;
comment on view api.payments is $$Payments
Payment attempts of orders: PENDING, CAPTURED (with the platform fee taken) or FAILED.$$;
grant select on api.payments to admin, platform_admin, service;

create view api.refunds with (security_invoker = true) as
select r.id, r.payment_id, r.amount, r.status, r.reason, r.failure_reason, r.created_at, r.updated_at,
       r.completed_at, r.failed_at
  from core.refunds r;
comment on view api.refunds is $$Refunds
Refunds of captured payments: INITIATED, COMPLETED or FAILED.$$;
grant select on api.refunds to admin, platform_admin, service;

create view api.wallet_balances with (security_invoker = true) as
select b.wallet_id, b.kind, b.seller_id, b.currency, b.balance
  from core.wallet_balances b;
comment on view api.wallet_balances is $$Wallet balances
Each wallet's balance in minor units: the stored sum of its ledger entries, kept in the same transaction.$$;
grant select on api.wallet_balances to admin, platform_admin;

create view api.delivery_agents with (security_invoker = true) as
select d.id, d.name, d.status, d.serviceable_zip_codes, d.created_at, d.updated_at
  from core.delivery_agents d;
comment on view api.delivery_agents is $$Delivery agents
Couriers and the zip codes they serve. An agent sees only itself.$$;
grant select on api.delivery_agents to admin, platform_admin, service, agent;

create view api.shipping_assignments with (security_invoker = true) as
select a.id, a.order_id, a.agent_id, a.zip_code, a.status, a.sla_due_at, a.failure_reason,
       a.created_at, a.updated_at, a.accepted_at, a.picked_up_at, a.in_transit_at, a.delivered_at,
       a.failed_at, a.cancelled_at
  from core.shipping_assignments a;
comment on view api.shipping_assignments is $$Shipping assignments
Delivery work. Agents see their own assignments and the open offers (status OFFERED) in their zip codes.$$;
grant select on api.shipping_assignments to admin, platform_admin, service, agent;

create view api.assignment_status_history with (security_invoker = true) as
select h.id, h.assignment_id, h.order_id, h.agent_id, h.from_status, h.to_status, h.actor, h.reason, h.created_at
  from core.assignment_status_history h;
comment on view api.assignment_status_history is $$Assignment status history
Every step of every shipping assignment, with agent, actor and time. Agents see their own.$$;
grant select on api.assignment_status_history to admin, platform_admin, service, agent;

create view api.error_codes with (security_invoker = true) as
select e.code, e.http_status, e.sqlstate, e.retryable, e.message, e.hint
  from ops.error_codes e;
comment on view api.error_codes is $$Error registry
Every error code the API can answer with, its HTTP status and whether a retry can succeed.$$;
grant usage on schema ops to anon, admin, platform_admin, service, agent;
grant select on ops.error_codes to anon, admin, platform_admin, service, agent;
create policy everyone_reads on ops.error_codes for select to anon, admin, platform_admin, service, agent using (true);
comment on policy everyone_reads on ops.error_codes is 'The registry is public documentation.';
grant select on api.error_codes to anon, admin, platform_admin, service, agent;

create view api.currencies with (security_invoker = true) as
select c.code, c.numeric_code, c.minor_unit, c.name
  from core.currencies c;
comment on view api.currencies is $$Currencies
The ISO 4217 currencies orders may use, with the decimal places of their minor unit.$$;
grant select on api.currencies to admin, platform_admin, service;

create view api.slow_statements with (security_invoker = true) as
select s.queryid, s.role, s.calls, s.total_ms, s.mean_ms, s.max_ms, s.rows, s.share_pct,
       s.rank_by_total, s.rank_by_mean, s.query
  from ops.top_statements s;
comment on view api.slow_statements is $$Slow statements
Statements of this database ranked by total and by mean execution time (pg_stat_statements).$$;
grant select on api.slow_statements to admin, platform_admin;

-- -------------------------------------------------------------------------------------------------
-- Lifecycle functions for services
-- -------------------------------------------------------------------------------------------------

create function api.create_order(customer_id bigint, seller_id bigint, ship_to_zip text, amount bigint, currency text)
returns api.orders
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.orders,
        to_jsonb(core.create_order(customer_id, seller_id, ship_to_zip, amount, currency, auth.actor())))
$$;
comment on function api.create_order(bigint, bigint, text, bigint, text) is $$Create an order
A PENDING order and its PENDING payment. amount is in minor units (> 0), currency ISO 4217, ship_to_zip five digits.$$;
grant execute on function api.create_order(bigint, bigint, text, bigint, text) to service;

create function api.capture_payment(payment_id bigint, provider_ref text)
returns api.payments
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.payments,
        to_jsonb(core.capture_payment(payment_id, provider_ref, auth.actor())))
$$;
comment on function api.capture_payment(bigint, text) is $$Capture a payment
Idempotent on provider_ref: the same reference again returns the captured payment unchanged.$$;
grant execute on function api.capture_payment(bigint, text) to service;

create function api.fail_payment(payment_id bigint, reason text)
returns api.payments
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.payments,
        to_jsonb(core.fail_payment(payment_id, reason, auth.actor())))
$$;
comment on function api.fail_payment(bigint, text) is $$Record a declined payment
PENDING -> FAILED with the provider's reason.$$;
grant execute on function api.fail_payment(bigint, text) to service;

create function api.retry_payment(order_id bigint)
returns api.payments
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.payments,
        to_jsonb(core.create_payment(order_id)))
$$;
comment on function api.retry_payment(bigint) is $$Open a new payment attempt
A fresh PENDING payment for a PENDING order whose previous attempts failed.$$;
grant execute on function api.retry_payment(bigint) to service;

create function api.confirm_order(order_id bigint, expected_version integer default null)
returns api.orders
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.orders,
        to_jsonb(core.confirm_order(order_id, auth.actor(), expected_version)))
$$;
comment on function api.confirm_order(bigint, integer) is $$Confirm a paid order
PENDING -> CONFIRMED once its payment is captured. expected_version (optional) makes it fail with 409 if the order changed.$$;
grant execute on function api.confirm_order(bigint, integer) to service;

create function api.cancel_order(order_id bigint, expected_version integer default null)
returns api.orders
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.orders,
        to_jsonb(core.cancel_order(order_id, auth.actor(), expected_version)))
$$;
comment on function api.cancel_order(bigint, integer) is $$Cancel an order
PENDING or CONFIRMED -> CANCELLED; its pending payment fails and its open assignment is cancelled. Refund captured money explicitly.$$;
grant execute on function api.cancel_order(bigint, integer) to service;

create function api.initiate_refund(payment_id bigint, amount bigint, reason text default null)
returns api.refunds
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.refunds,
        to_jsonb(core.initiate_refund(payment_id, amount, reason, auth.actor())))
$$;
comment on function api.initiate_refund(bigint, bigint, text) is $$Start a refund
Refunds of a payment never exceed what was captured (422 REFUND_EXCEEDS_CAPTURED).$$;
grant execute on function api.initiate_refund(bigint, bigint, text) to service;

create function api.complete_refund(refund_id bigint)
returns api.refunds
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.refunds,
        to_jsonb(core.complete_refund(refund_id, auth.actor())))
$$;
comment on function api.complete_refund(bigint) is $$Complete a refund
INITIATED -> COMPLETED; the capture is reversed in the ledger pro rata, fee included.$$;
grant execute on function api.complete_refund(bigint) to service;

create function api.fail_refund(refund_id bigint, reason text)
returns api.refunds
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.refunds,
        to_jsonb(core.fail_refund(refund_id, reason, auth.actor())))
$$;
comment on function api.fail_refund(bigint, text) is $$Record a failed refund
INITIATED -> FAILED; the amount becomes refundable again.$$;
grant execute on function api.fail_refund(bigint, text) to service;

create function api.offer_assignment(order_id bigint, sla_due_at timestamptz default null)
returns api.shipping_assignments
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.shipping_assignments,
        to_jsonb(core.offer_assignment(order_id, sla_due_at, auth.actor())))
$$;
comment on function api.offer_assignment(bigint, timestamptz) is $$Offer a delivery
Offers a CONFIRMED order's delivery to the active agents serving its zip code (SLA default 48 h).$$;
grant execute on function api.offer_assignment(bigint, timestamptz) to service;

create function api.cancel_assignment(assignment_id bigint)
returns api.shipping_assignments
language sql
volatile
security definer
set search_path = ''
as $$
    select jsonb_populate_record(null::api.shipping_assignments,
        to_jsonb(core.advance_assignment(assignment_id, 'CANCELLED', null, null, auth.actor())))
$$;
comment on function api.cancel_assignment(bigint) is $$Cancel an assignment
OFFERED or ACCEPTED -> CANCELLED.$$;
grant execute on function api.cancel_assignment(bigint) to service;

-- -------------------------------------------------------------------------------------------------
-- Functions for delivery agents (the agent is the token's sub, never an argument)
-- -------------------------------------------------------------------------------------------------

create function api.accept_assignment(assignment_id bigint)
returns api.shipping_assignments
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- An agent learns nothing of an assignment it cannot read (api.shipping_assignments under RLS):
-- that id answers ASSIGNMENT_NOT_FOUND, exactly as an unknown one. Visibility is judged as the call
-- starts: the loser of a race for an offer it could read still gets ASSIGNMENT_ALREADY_TAKEN.
declare
    v_agent_id bigint := auth.require_agent();
    v_status text;
begin
    select d.status into v_status from core.delivery_agents d where d.id = v_agent_id;
    if v_status is null then  -- these two are about the caller itself: no assignment is revealed
        perform ops.raise_error('AGENT_NOT_FOUND', v_agent_id::text);
    elsif v_status <> 'ACTIVE' then
        perform ops.raise_error('AGENT_NOT_ELIGIBLE', v_agent_id::text,
                                coalesce(accept_assignment.assignment_id::text, 'null'), 'agent is ' || v_status);
    end if;
    if not auth.agent_sees_assignment(accept_assignment.assignment_id) then
        perform ops.raise_error('ASSIGNMENT_NOT_FOUND', coalesce(accept_assignment.assignment_id::text, 'null'));
    end if;
    return jsonb_populate_record(null::api.shipping_assignments,
        to_jsonb(core.accept_assignment(accept_assignment.assignment_id, v_agent_id, auth.actor())));
end
$$;
comment on function api.accept_assignment(bigint) is $$Accept an offer
Exactly one agent wins an offer; the others get 409 ASSIGNMENT_ALREADY_TAKEN. A lock held over 5 s gives a retryable 503. An assignment the agent cannot see is 404 ASSIGNMENT_NOT_FOUND.$$;
grant execute on function api.accept_assignment(bigint) to agent;

create function api.advance_assignment(assignment_id bigint, status text, reason text default null)
returns api.shipping_assignments
language plpgsql
volatile
security definer
set search_path = ''
as $$
-- Agents move their own work forward; cancelling is the service's call (api.cancel_assignment).
-- An assignment the agent cannot read answers ASSIGNMENT_NOT_FOUND, as an unknown id does.
declare
    v_agent_id bigint := auth.require_agent();
begin
    if status is null or status not in ('PICKED_UP', 'IN_TRANSIT', 'DELIVERED', 'FAILED') then
        perform ops.raise_error('INVALID_ARGUMENT', 'status must be PICKED_UP, IN_TRANSIT, DELIVERED or FAILED');
    end if;
    if not auth.agent_sees_assignment(advance_assignment.assignment_id) then
        perform ops.raise_error('ASSIGNMENT_NOT_FOUND', coalesce(advance_assignment.assignment_id::text, 'null'));
    end if;
    return jsonb_populate_record(null::api.shipping_assignments,
        to_jsonb(core.advance_assignment(advance_assignment.assignment_id, status, v_agent_id, reason, auth.actor())));
end
$$;
comment on function api.advance_assignment(bigint, text, text) is $$Move an own assignment forward
status is PICKED_UP, IN_TRANSIT, DELIVERED or FAILED (with a reason). The order follows. An assignment the agent cannot see is 404 ASSIGNMENT_NOT_FOUND.$$;
grant execute on function api.advance_assignment(bigint, text, text) to agent;

-- -------------------------------------------------------------------------------------------------
-- Health (plan D5): readable by anyone, no sensitive detail
-- -------------------------------------------------------------------------------------------------

create function api.health_db()
returns json
language sql
stable
set search_path = ''
as $$
    -- latency_ms: from the start of this transaction (the HTTP front's BEGIN) to now: the server-side
    -- time to reach this statement. PostgREST and gateway/ pipeline BEGIN, the settings and this
    -- call, so it is ~0.2-1 ms and grows when the server or the front stalls mid-request; the full
    -- round trip is what the caller measures around the HTTP call.
    select json_build_object(
        'status', 'ok',
        'latency_ms', round((extract(epoch from clock_timestamp() - transaction_timestamp()) * 1000)::numeric, 3),
        'server_version', current_setting('server_version'),
        'database', current_database(),
        'checked_at', clock_timestamp())
$$;
comment on function api.health_db() is $$Database health
status, server-side latency of this request's transaction (ms) and server version.$$;
grant execute on function api.health_db() to anon, admin, platform_admin, service, agent;

create function api.health_pool()
returns json
language sql
stable
security definer
set search_path = ''
as $$
    -- Counts only: no query text, user or address leaves this function; application names only
    -- for admins.
    with conns as (
        select coalesce(nullif(a.application_name, ''), '(none)') as application,
               coalesce(a.state, 'unknown') as state
          from pg_catalog.pg_stat_activity a
         where a.backend_type = 'client backend'
    )
    select json_build_object(
        'status', case when (select count(*) from conns) >= 0.9 * current_setting('max_connections')::int
                       then 'degraded' else 'ok' end,
        'connections', (select count(*) from conns),
        'max_connections', current_setting('max_connections')::int,
        'utilization_pct', round(100.0 * (select count(*) from conns) / current_setting('max_connections')::int, 2),
        'by_state', (select coalesce(json_object_agg(state, n), '{}') from
                        (select state, count(*) as n from conns group by state) s),
        -- Application names describe the deployment: admins only.
        'by_application', case when auth.role() in ('admin', 'platform_admin') then
                              (select coalesce(json_object_agg(application, n), '{}') from
                                 (select application, count(*) as n from conns group by application) s) end,
        'waiting_locks', (select count(*) from pg_catalog.pg_locks l where not l.granted),
        'oldest_transaction_s', (select coalesce(round(extract(epoch from max(clock_timestamp() - a.xact_start))::numeric, 3), 0)
                                   from pg_catalog.pg_stat_activity a
                                  where a.xact_start is not null and a.backend_type = 'client backend'),
        'checked_at', clock_timestamp())
$$;
comment on function api.health_pool() is $$Connection health
Connections by state (and by application, for admins), max_connections, utilization %, waiting locks and the oldest transaction's age (s).$$;
grant execute on function api.health_pool() to anon, admin, platform_admin, service, agent;
