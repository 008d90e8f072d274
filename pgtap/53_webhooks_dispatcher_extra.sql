-- Webhooks: what the dispatcher daemon reads beyond the claim interface (sql/230), as the dispatcher role.
begin;
select plan(4);

insert into webhooks.subscriptions (id, url, event_types, created_by, updated_by) overriding system value values
    (9531, 'https://a.example.test/', '{order.cancelled}', 'tap', 'tap');
-- 3 events -> 3 PENDING deliveries created at now().
select webhooks.emit('order.cancelled', g, 'tap:9531:' || g, jsonb_build_object('id', g), now())
  from generate_series(1, 3) g;
create temp table b (backlog bigint, oldest_age_seconds double precision);
grant all on b to dispatcher;

select tap.become('dispatcher');
insert into b select * from webhooks.dispatcher_backlog(now() + interval '90 seconds');
select * from webhooks.claim_deliveries('tap-d', 1, '20 seconds', 10, now());  -- one SENDING, two PENDING
insert into b select * from webhooks.dispatcher_backlog(now() + interval '90 seconds');
reset role;

select is((select backlog from b limit 1), 3::bigint, 'the backlog counts PENDING deliveries');
select is((select min(oldest_age_seconds) from b), 90::float8, 'the oldest age follows the injected clock');
select is((select max(backlog) from b), 3::bigint, 'a SENDING row is still backlog');
select ok(not has_table_privilege('dispatcher', 'webhooks.deliveries', 'select'),
    'the dispatcher still reads no table');

select * from finish();
rollback;
