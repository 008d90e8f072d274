-- Webhooks: the dispatcher's interface, run as the dispatcher role with an injected clock.
begin;
select plan(38);

insert into webhooks.subscriptions (id, url, event_types, created_by, updated_by) overriding system value values
    (9301, 'https://a.example.test/', '{order.confirmed}', 'tap', 'tap'),
    (9302, 'https://b.example.test/', '{order.confirmed}', 'tap', 'tap');
insert into webhooks.secrets (subscription_id, secret, created_at, expires_at) values
    (9301, webhooks.new_secret(), now() - interval '2 days', now() - interval '1 day'),  -- expired
    (9301, webhooks.new_secret(), now() - interval '1 day', now() + interval '1 hour'),  -- in grace
    (9301, webhooks.new_secret(), now(), null);                                          -- current
-- 12 events -> 24 deliveries, due now.
select webhooks.emit('order.confirmed', g, 'tap:9301:' || g, jsonb_build_object('id', g), now())
  from generate_series(1, 12) g;
-- Scratch tables made by the owner (the dispatcher may not create any), filled by the dispatcher.
create temp table t (k text primary key, v text);
create temp table c1 as select * from webhooks.claim_deliveries('x', 1, '1 second', 1, '2000-01-01') limit 0;
create temp table c2 as select * from c1 limit 0;
create temp table c3 as select * from c1 limit 0;
grant all on t, c1, c2, c3 to dispatcher;
-- tap.throws_code reads the registry (ops.error_codes); only inside this rolled-back test.
grant usage on schema ops to dispatcher;
grant select on ops.error_codes to dispatcher;
select set_config('tap.t0', (now() + interval '1 second')::text, true);

insert into t select 'secrets', array_agg(secret order by id desc)::text
  from webhooks.secrets where subscription_id = 9301 and (expires_at is null or expires_at > now());

select tap.become('dispatcher');
select throws_code($$select * from webhooks.claim_deliveries(null)$$, 'INVALID_ARGUMENT', 'a claim names its dispatcher');
select throws_code($$select * from webhooks.claim_deliveries('d1', 10, '0 seconds')$$, 'INVALID_ARGUMENT', 'a lease is at least 1 s');
select is((select count(*)::int from webhooks.claim_deliveries('d1', 50, '20 seconds', 10, now() - interval '1 minute')),
    0, 'nothing is due before its time');

-- Per-subscription limit 6: 6 + 6 of 24 due rows.
insert into c1 select * from webhooks.claim_deliveries('d1', 50, '20 seconds', 6, current_setting('tap.t0')::timestamptz);
select is((select count(*)::int from c1), 12, 'a claim takes at most p_per_subscription per subscription');
select is((select count(distinct subscription_id)::int from c1), 2, 'both subscriptions get their share');
select ok((select bool_and(attempt = 1 and trigger = 'scheduled' and lease_token is not null) from c1), 'first tries, scheduled, with a lease token');
select ok((select bool_and(body::jsonb ->> 'eventId' = event_id::text) from c1), 'the body is the event''s payload');
select is((select secrets from c1 where subscription_id = 9301 limit 1),
          (select v::text[] from t where k = 'secrets'),
          'secrets: the current one and the one in grace, newest first; not the expired one');
select is((select cardinality(secrets) from c1 where subscription_id = 9301 limit 1), 2, 'two valid secrets during the grace period');
insert into c2 select * from webhooks.claim_deliveries('d2', 50, '20 seconds', 6, current_setting('tap.t0')::timestamptz);
select is((select count(*)::int from c2), 0, 'a second claim finds both subscriptions at their in-flight limit');
insert into c3 select * from webhooks.claim_deliveries('d2', 3, '20 seconds', 10, current_setting('tap.t0')::timestamptz);
select is((select count(*)::int from c3), 3, 'p_limit caps the batch');
select is((select count(*)::int from c3 where delivery_id in (select delivery_id from c1)), 0, 'no row is claimed twice');
select is((select count(*)::int from webhooks.claim_deliveries('d3', 500, '20 seconds', 100, current_setting('tap.t0')::timestamptz)),
    9, 'a big p_limit claims the rest (9 of 24)');

-- record_attempt: 2xx -> DELIVERED
select is(webhooks.record_attempt(d.delivery_id, 'd1', d.lease_token, now(), 12, 204, null, 'ok', null, current_setting('tap.t0')::timestamptz),
    'DELIVERED', '2xx -> DELIVERED') from (select * from c1 where subscription_id = 9301 order by delivery_id limit 1) d;
-- lost lease: wrong token -> ignored
select is(webhooks.record_attempt(d.delivery_id, 'd1', gen_random_uuid(), now(), 12, 200), null,
    'a try under a lost lease (wrong token) is ignored') from (select * from c1 where subscription_id = 9301 order by delivery_id offset 1 limit 1) d;
-- 500 -> PENDING at +30 s (+ up to 10 % jitter), attempts 1
insert into t select 'r500', d.delivery_id::text from (select * from c1 where subscription_id = 9301 order by delivery_id offset 1 limit 1) d;
select is(webhooks.record_attempt(d.delivery_id, 'd1', d.lease_token, now(), 40, 500, null, repeat('é', 900), null,
                                  current_setting('tap.t0')::timestamptz),
    'PENDING', '5xx -> PENDING for a retry') from c1 d where d.delivery_id = (select v::bigint from t where k = 'r500');
select is(webhooks.record_attempt(d.delivery_id, 'd1', d.lease_token, now(), 40, 500), null,
    'the same lease cannot record twice') from c1 d where d.delivery_id = (select v::bigint from t where k = 'r500');
-- 429 with Retry-After 600 -> at least 600 s; 503 with Retry-After 10 days -> clamped to 1 h
insert into t select 'r429', d.delivery_id::text from (select * from c1 where subscription_id = 9301 order by delivery_id offset 2 limit 1) d;
insert into t select 'r503', d.delivery_id::text from (select * from c1 where subscription_id = 9301 order by delivery_id offset 3 limit 1) d;
select webhooks.record_attempt(d.delivery_id, 'd1', d.lease_token, now(), 5, 429, null, null, 600, current_setting('tap.t0')::timestamptz)
  from c1 d where d.delivery_id = (select v::bigint from t where k = 'r429');
select webhooks.record_attempt(d.delivery_id, 'd1', d.lease_token, now(), 5, 503, null, null, 864000, current_setting('tap.t0')::timestamptz)
  from c1 d where d.delivery_id = (select v::bigint from t where k = 'r503');
-- timeout (no status) -> error class kept
insert into t select 'rto', d.delivery_id::text from (select * from c1 where subscription_id = 9301 order by delivery_id offset 4 limit 1) d;
select webhooks.record_attempt(d.delivery_id, 'd1', d.lease_token, now(), 10000, null, 'timeout', null, null, current_setting('tap.t0')::timestamptz)
  from c1 d where d.delivery_id = (select v::bigint from t where k = 'rto');
select throws_code(format($$select webhooks.record_attempt(%s, 'd1', '%s', now(), 1, null, 'gremlins')$$, d.delivery_id, d.lease_token),
    'INVALID_ARGUMENT', 'unknown error classes are refused') from (select * from c1 where subscription_id = 9302 order by delivery_id limit 1) d;
-- 410 -> FAILED, subscription DISABLED (GONE), its PENDING rows SKIPPED
insert into t select 'r410', d.delivery_id::text from c1 d where d.subscription_id = 9302 order by d.delivery_id desc limit 1;
select is(webhooks.record_attempt(d.delivery_id, 'd1', d.lease_token, now(), 5, 410, null, 'gone', null, current_setting('tap.t0')::timestamptz),
    'FAILED', '410 -> FAILED') from c1 d where d.delivery_id = (select v::bigint from t where k = 'r410');
-- graceful release
select is(webhooks.release_deliveries('d2', (select array_agg(delivery_id) from c3)), 3, 'release gives back the three rows d2 holds');
select is(webhooks.release_deliveries('d1', (select array_agg(delivery_id) from c3)), 0, 'a dispatcher cannot release rows it does not hold');
select lives_ok($$select webhooks.heartbeat('d1', '{"version": "test", "in_flight": 3}')$$, 'heartbeat');
select lives_ok($$select webhooks.heartbeat('d1', '{"version": "test", "in_flight": 0}')$$, 'heartbeat again (upsert)');
select throws_code($$select webhooks.heartbeat('d1', '[]')$$, 'INVALID_ARGUMENT', 'heartbeat info is a JSON object');
select tap.become_owner();

select results_eq(format('select status, attempts, next_attempt_at > %L::timestamptz + interval ''30 s'' and next_attempt_at <= %L::timestamptz + interval ''33 s'' from webhooks.deliveries where id = %s',
                         current_setting('tap.t0'), current_setting('tap.t0'), (select v from t where k = 'r500')),
    $$values ('PENDING', 1, true)$$, 'first retry at +30 s plus at most 10 % jitter');
select is((select octet_length(response_snippet) <= 1024 and response_snippet like 'éé%' from webhooks.attempts
            where delivery_id = (select v::bigint from t where k = 'r500')), true, 'the snippet is cut to 1 KiB on a character boundary');
select is((select (next_attempt_at - current_setting('tap.t0')::timestamptz) >= interval '600 s' from webhooks.deliveries
            where id = (select v::bigint from t where k = 'r429')), true, '429 + Retry-After 600 waits at least 600 s');
select is((select next_attempt_at - current_setting('tap.t0')::timestamptz from webhooks.deliveries
            where id = (select v::bigint from t where k = 'r503')), interval '1 hour', '503 + Retry-After 10 days is clamped to 1 h');
select results_eq(format('select error_class, status_code, trigger, attempt from webhooks.attempts where delivery_id = %s', (select v from t where k = 'rto')),
    $$values ('timeout'::text, null::integer, 'scheduled'::text, 1)$$, 'a timeout is recorded with its class');
select results_eq($$select status, disabled_reason from webhooks.subscriptions where id = 9302$$,
    $$values ('DISABLED'::text, 'GONE'::text)$$, '410 disables the subscription with reason GONE');
select is((select count(*)::int from webhooks.deliveries where subscription_id = 9302 and status = 'PENDING'), 0,
    'the gone subscription has no PENDING row left (they are SKIPPED)');
select is((select count(*)::int from webhooks.dispatchers where name = 'd1' and info ->> 'in_flight' = '0'), 1, 'one heartbeat row per dispatcher');

-- A crashed dispatcher: its lease expires, the next claim records lease_expired and takes the row again.
select set_config('tap.c', (select max(delivery_id)::text from c1 where subscription_id = 9301), true);
select is((select count(*)::int from webhooks.claim_deliveries('d4', 50, '20 seconds', 100, current_setting('tap.t0')::timestamptz + interval '10 s')
            where delivery_id = current_setting('tap.c')::bigint), 0, 'a live lease is not taken over');
select results_eq(format($$select attempt, trigger from webhooks.claim_deliveries('d4', 50, '20 seconds', 100, %L::timestamptz + interval '21 s') where delivery_id = %s$$,
                         current_setting('tap.t0'), current_setting('tap.c')),
    $$values (2, 'recover'::text)$$, 'an expired lease is claimed again as try 2, trigger recover');
select results_eq(format('select error_class, dispatcher from webhooks.attempts where delivery_id = %s and attempt = 1', current_setting('tap.c')),
    $$values ('lease_expired'::text, 'd1'::text)$$, 'the lost try is an attempts row (lease_expired)');
select is((select count(*)::int from webhooks.record_attempt(current_setting('tap.c')::bigint, 'd1',
            (select lease_token from c1 where delivery_id = current_setting('tap.c')::bigint), now(), 1, 200) r where r is null),
    1, 'the crashed dispatcher''s late record is ignored (its token is stale)');

-- The retry schedule runs out: 6 tries (1 + 5 retries) then FAILED.
select set_config('tap.id', (select v from t where k = 'r500'), true);
select is(webhooks.next_due_at(), current_setting('tap.t0')::timestamptz + interval '30 s',
    'next_due_at: the earliest of the retry at +30-33 s and the leases taken at +10 s (until +30 s)');
do $$
declare
    v_at timestamptz := current_setting('tap.t0')::timestamptz;
    v_c record;
    v_status text;
begin
    for i in 1 .. 5 loop
        v_at := v_at + interval '2 hours';
        select * into v_c from webhooks.claim_deliveries('d9', 50, '20 seconds', 100, v_at) where delivery_id = current_setting('tap.id')::bigint;
        v_status := webhooks.record_attempt(v_c.delivery_id, 'd9', v_c.lease_token, v_at, 5, 502, null, null, null, v_at);
        perform set_config('tap.last', v_status || ':' || v_c.attempt, true);
    end loop;
end
$$;
select is(current_setting('tap.last'), 'FAILED:6', 'the sixth failed try (after 5 retries) is final: FAILED');

select * from finish();
rollback;
