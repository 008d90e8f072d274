-- Webhooks: structure, enumerations, privileges (no request role reads a secret; the dispatcher only
-- executes its functions), append-only events.
begin;
select plan(52);

select tables_are('webhooks',
    array['event_types', 'error_classes', 'retry_schedule', 'settings', 'subscriptions', 'secrets',
          'events', 'deliveries', 'attempts', 'dispatchers', 'wakeup', 'payload_shapes'],
    'webhooks holds exactly the designed tables');
select results_eq($$select event_type from webhooks.event_types order by 1$$,
    array['order.cancelled', 'order.confirmed', 'order.delivered', 'payment.captured', 'payment.failed',
          'refund.completed', 'refund.initiated', 'shipment.assigned', 'shipment.failed',
          'shipment.in_transit', 'shipment.picked_up'],
    'the 11 event types of ARCHITECTURE.md');
select results_eq($$select extract(epoch from delay)::int from webhooks.retry_schedule order by retry$$,
    array[30, 60, 120, 300, 900], 'retry schedule +30 s, +60 s, +120 s, +300 s, +900 s');
select is((select retention from webhooks.settings), interval '30 days', 'retention defaults to 30 days');
select is((select secret_grace from webhooks.settings), interval '24 hours', 'secret grace defaults to 24 h');
select ok((select count(*) from webhooks.error_classes
            where error_class in ('timeout', 'connect', 'dns', 'tls', 'http_4xx', 'http_5xx', 'refused_private_address')) = 7,
    'the error classes the dispatcher reports exist');

-- Enumerations enforced by CHECK constraints (codes, not text)
insert into webhooks.subscriptions (id, url, event_types, created_by, updated_by) overriding system value
values (9101, 'https://example.test/hook', '{order.confirmed}', 'tap', 'tap');
select throws_code($$update webhooks.subscriptions set status = 'PAUSED' where id = 9101$$, 'CHECK_VIOLATION',
    'subscription status is ACTIVE or DISABLED');
select throws_code($$update webhooks.subscriptions set status = 'DISABLED' where id = 9101$$, 'CHECK_VIOLATION',
    'DISABLED needs a reason and a time');
select throws_code($$update webhooks.subscriptions set status = 'DISABLED', disabled_reason = 'BORED', disabled_at = now() where id = 9101$$,
    'CHECK_VIOLATION', 'disabled reason is MANUAL or GONE');
select throws_code($$update webhooks.subscriptions set url = 'https://user:pw@example.test/' where id = 9101$$,
    'CHECK_VIOLATION', 'no credentials in a URL');
select throws_code($$update webhooks.subscriptions set url = 'ftp://example.test/' where id = 9101$$,
    'CHECK_VIOLATION', 'only http(s) URLs');
select throws_code($$update webhooks.subscriptions set url = 'https://example.test/' || repeat('a', 2048) where id = 9101$$,
    'CHECK_VIOLATION', 'URLs of at most 2,048 characters');
select throws_code($$update webhooks.subscriptions set event_types = '{order.shipped}' where id = 9101$$,
    'WEBHOOK_UNKNOWN_EVENT_TYPE', 'only known event types');
select throws_code($$update webhooks.subscriptions set event_types = '{}' where id = 9101$$,
    'CHECK_VIOLATION', 'at least one event type');
select throws_code($$insert into webhooks.secrets (subscription_id, secret) values (9101, 'whsec_' || encode('short', 'base64'))$$,
    'CHECK_VIOLATION', 'a secret has at least 24 random bytes');
select throws_code($$insert into webhooks.secrets (subscription_id, secret) values (9101, encode(gen_random_bytes(32), 'base64'))$$,
    'CHECK_VIOLATION', 'a secret starts with whsec_');
select lives_ok($$insert into webhooks.secrets (subscription_id, secret) values (9101, webhooks.new_secret())$$,
    'new_secret() makes a valid secret');
select is(length(decode(substr(webhooks.new_secret(), 7), 'base64')), 32, 'new_secret() holds 32 random bytes');

select throws_code($$delete from webhooks.subscriptions where id = 9101$$, 'WEBHOOK_ROW_PERMANENT',
    'subscriptions are never deleted (deliveries refer to them without a foreign key)');
select throws_code($$delete from webhooks.event_types where event_type = 'order.confirmed'$$, 'WEBHOOK_ROW_PERMANENT',
    'event types are never deleted');

-- Events are append-only
insert into webhooks.events (id, event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, body)
values ('00000000-0000-4000-8000-000000009101', 'order.confirmed', 'order', 1, 'tap:1', now(), '{}');
select throws_code($$update webhooks.events set aggregate_id = 2$$, 'WEBHOOK_EVENTS_IMMUTABLE', 'events cannot be updated');
select throws_code($$delete from webhooks.events$$, 'WEBHOOK_EVENTS_IMMUTABLE', 'events cannot be deleted');
select throws_code($$truncate webhooks.events cascade$$, 'WEBHOOK_EVENTS_IMMUTABLE', 'events cannot be truncated');
select throws_code($$insert into webhooks.events (event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, body)
                    values ('order.confirmed', 'order', 1, 'tap:1', now(), '{}')$$,
    'UNIQUE_VIOLATION', 'one event per idempotency key');
insert into webhooks.deliveries (event_id, subscription_id, next_attempt_at) values ('00000000-0000-4000-8000-000000009101', 9101, now());
select throws_code($$insert into webhooks.deliveries (event_id, subscription_id, next_attempt_at) values ('00000000-0000-4000-8000-000000009101', 9101, now())$$,
    'UNIQUE_VIOLATION', 'one delivery per (event, subscription)');
select throws_code($$update webhooks.deliveries set status = 'LOST' where subscription_id = 9101$$, 'CHECK_VIOLATION',
    'delivery status is PENDING, SENDING, DELIVERED, FAILED or SKIPPED');
-- Each of the row check's tests alone (one CHECK since 0018: webhooks.delivery_row_ok / event_row_ok)
select throws_code($$update webhooks.deliveries set attempts = -1 where subscription_id = 9101$$, 'CHECK_VIOLATION', 'attempts >= 0');
select throws_code($$update webhooks.deliveries set attempts_at_requeue = 1 where subscription_id = 9101$$, 'CHECK_VIOLATION',
    'attempts_at_requeue <= attempts');
select throws_code($$update webhooks.deliveries set next_trigger = 'cron' where subscription_id = 9101$$, 'CHECK_VIOLATION',
    'next_trigger is scheduled, manual or recover');
select throws_code($$update webhooks.deliveries set next_attempt_at = null where subscription_id = 9101$$, 'CHECK_VIOLATION',
    'a PENDING row has a next attempt time');
select throws_code($$update webhooks.deliveries set status = 'SENDING' where subscription_id = 9101$$, 'CHECK_VIOLATION',
    'a SENDING row has a lease');
select throws_code($$update webhooks.deliveries set status = 'SENDING', lease_owner = 'd', lease_token = gen_random_uuid(),
                                                    lease_until = next_attempt_at + interval '1 s' where subscription_id = 9101$$,
    'CHECK_VIOLATION', 'a SENDING row is due when its lease ends');
select lives_ok($$update webhooks.deliveries set status = 'SENDING', lease_owner = 'd', lease_token = gen_random_uuid(),
                                                 lease_until = next_attempt_at, last_status_code = null where subscription_id = 9101$$,
    'a SENDING row with its lease passes (a null status code passes, as in any CHECK)');
select throws_code($$update webhooks.deliveries set lease_owner = null where subscription_id = 9101$$, 'CHECK_VIOLATION',
    'a SENDING row keeps its whole lease');
select throws_code($$update webhooks.deliveries set status = 'DELIVERED', next_attempt_at = null, lease_owner = null, lease_token = null,
                                                    lease_until = null, finished_at = now() where subscription_id = 9101$$,
    'CHECK_VIOLATION', 'a DELIVERED row has delivered_at');
select throws_code($$update webhooks.deliveries set status = 'FAILED', next_attempt_at = null, lease_owner = null, lease_token = null,
                                                    lease_until = null where subscription_id = 9101$$,
    'CHECK_VIOLATION', 'a finished row has finished_at');
select throws_code($$update webhooks.deliveries set last_status_code = 99 where subscription_id = 9101$$, 'CHECK_VIOLATION',
    'a status code is 100-599');
select throws_code($$insert into webhooks.events (event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, body)
                    values ('order.confirmed', 'order', 1, 'tap:array', now(), '[]')$$, 'CHECK_VIOLATION', 'a stored payload is an object');
select throws_code($$insert into webhooks.events (event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, body, data)
                    values ('order.confirmed', 'order', 1, 'tap:both', now(), '{}', '{}')$$, 'CHECK_VIOLATION', 'a payload or data, not both');
select throws_code($$insert into webhooks.events (event_type, aggregate_type, aggregate_id, idempotency_key, occurred_at, data, shape)
                    values ('order.confirmed', 'order', 1, 'tap:shape', now(), '{}', 1)$$, 'CHECK_VIOLATION',
    'data with a shape is positional (an array)');

-- Privileges: secrets are nobody's; the dispatcher executes its functions only
select is_empty($$select r from unnest(array['anon', 'admin', 'platform_admin', 'service', 'agent', 'dispatcher', 'authenticator']) r
                  where has_table_privilege(r, 'webhooks.secrets', 'select')$$,
    'no request role and not the dispatcher can read webhooks.secrets');
select is_empty($$select c.relname from pg_class c
                   where c.relnamespace = 'webhooks'::regnamespace and c.relkind in ('r', 'v')
                     and (has_table_privilege('dispatcher', c.oid, 'select')
                          or has_table_privilege('dispatcher', c.oid, 'update')
                          or has_table_privilege('dispatcher', c.oid, 'insert') or has_table_privilege('dispatcher', c.oid, 'delete'))$$,
    'the dispatcher has no privilege on any webhooks table (its functions read and write for it; since 0018 not even the wake-up flag)');
select set_eq($$select p.proname::text from pg_proc p
                 where p.pronamespace = 'webhooks'::regnamespace and has_function_privilege('dispatcher', p.oid, 'execute')$$,
    array['claim_deliveries', 'record_attempt', 'release_deliveries', 'heartbeat', 'arm_wakeup', 'next_due_at',
          'subscription_secrets', 'dispatcher_backlog', 'await_committing', 'wake_dispatcher'],
    'the dispatcher executes exactly its nine functions (dispatcher_backlog, await_committing: sql/230) and the wake-up''s');
select is_empty($$select p.oid::regprocedure::text from pg_proc p
                   where p.pronamespace = 'api'::regnamespace and has_function_privilege('dispatcher', p.oid, 'execute')$$,
    'the dispatcher executes nothing in api');
select is_empty($$select p.oid::regprocedure::text from pg_proc p
                   where p.pronamespace = 'webhooks'::regnamespace and p.prosecdef
                     and not coalesce(p.proconfig, '{}') @> array['search_path=""']$$,
    'every SECURITY DEFINER function of webhooks pins an empty search_path');
select is_empty($$select p.oid::regprocedure::text from pg_proc p
                   where p.pronamespace = 'webhooks'::regnamespace
                     and (has_function_privilege('anon', p.oid, 'execute')
                          or ((has_function_privilege('service', p.oid, 'execute') or has_function_privilege('agent', p.oid, 'execute'))
                              and p.proname <> 'wake_dispatcher'))$$,
    'no request role executes a webhooks function directly, but wake_dispatcher (what their commits call when a dispatcher waits: a spurious wake-up at worst)');
select is_empty($$select c.relname from pg_class c
                   where c.relnamespace = 'webhooks'::regnamespace and c.relkind in ('r', 'v')
                     and (has_table_privilege('anon', c.oid, 'select') or has_table_privilege('service', c.oid, 'select')
                          or has_table_privilege('agent', c.oid, 'select'))$$,
    'service, agent and anon read no webhooks table (since 0018 the wake-up flag is read by the writer, the owner)');
select is_empty($$select c.relname from pg_class c
                   where c.relnamespace = 'api'::regnamespace and c.relname like 'webhook%'
                     and (has_table_privilege('service', c.oid, 'select') or has_table_privilege('agent', c.oid, 'select')
                          or has_table_privilege('anon', c.oid, 'select'))$$,
    'only admins read the webhook views');
select ok(not exists (select 1 from pg_attribute a join pg_class c on c.oid = a.attrelid
                       where c.relnamespace = 'api'::regnamespace and a.attname like '%secret%' and a.attnum > 0),
    'no api view has a secret column');
select has_index('webhooks', 'deliveries', 'deliveries_due_idx', 'plan index: due deliveries by next attempt');
select has_index('webhooks', 'deliveries', 'deliveries_subscription_id_status_created_at_idx', 'plan index: deliveries by subscription and status');
select has_index('webhooks', 'events', 'events_event_type_occurred_at_idx', 'plan index: events by type and time');

select * from finish();
rollback;
