-- Every statement the dispatcher runs, each a thin call to a webhooks.* function (sql/220, sql/230).
-- The `dispatcher` role may execute these functions and nothing else. Parameters are named
-- (%(name)s, psycopg); dispatcher/queries.py reads this file by its `-- name:` headers.

-- name: claim_deliveries
-- Lease up to %(limit)s due rows (SKIP LOCKED; expired leases recovered first).
select delivery_id, event_id, subscription_id, url, attempt, trigger, lease_token, lease_until,
       event_type, body, secrets
  from webhooks.claim_deliveries(%(dispatcher)s, %(limit)s, %(lease)s, %(per_subscription)s, %(now)s);

-- name: record_attempt
-- One HTTP try under its lease token; returns the new status (null: the lease was lost).
select webhooks.record_attempt(%(delivery_id)s, %(dispatcher)s, %(lease_token)s, %(started_at)s,
                               %(duration_ms)s, %(status_code)s, %(error_class)s, %(snippet)s,
                               %(retry_after)s, %(now)s) as status;

-- name: release_deliveries
-- Shutdown: give back leased rows that were not sent.
select webhooks.release_deliveries(%(dispatcher)s, %(ids)s, %(now)s);

-- name: arm_wakeup
-- Going idle: the next commit that adds work sends NOTIFY webhooks.
select webhooks.arm_wakeup(%(dispatcher)s);

-- name: await_committing
-- Between the two: wait for commits that checked the flag just before it was set (sql/230).
select webhooks.await_committing();

-- name: next_due_at
-- The earliest retry time or lease expiry; null when nothing is pending.
select webhooks.next_due_at();

-- name: heartbeat
select webhooks.heartbeat(%(dispatcher)s, %(info)s, %(now)s);

-- name: backlog
-- For /metrics: rows PENDING or SENDING, and the age of the oldest in seconds.
select backlog, oldest_age_seconds from webhooks.dispatcher_backlog(%(now)s);
