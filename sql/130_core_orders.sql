-- =================================================================================================
-- 130 Orders
-- Status changes are optimistic: UPDATE … WHERE status and version are as read; on a lost race,
-- re-read and retry (3 attempts, exponential backoff with jitter), then ORDER_STATUS_CONFLICT.
-- Every status change bumps version and appends to core.order_status_history (triggers).
-- =================================================================================================

create table core.orders (
    id                 bigint generated always as identity,
    customer_id        bigint not null,
    seller_id          bigint not null,
    ship_to_zip        text not null,
    amount             bigint not null,
    currency           text not null,
    status             text not null default 'PENDING',
    version            integer not null default 1,
    status_changed_by  text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    confirmed_at       timestamptz,
    shipped_at         timestamptz,
    delivered_at       timestamptz,
    cancelled_at       timestamptz,
    constraint orders_pkey primary key (id),
    constraint orders_customer_id_fkey foreign key (customer_id) references core.customers (id),
    constraint orders_seller_id_fkey foreign key (seller_id) references core.sellers (id),
    constraint orders_currency_fkey foreign key (currency) references core.currencies (code),
    constraint orders_ship_to_zip_format_check check (ship_to_zip ~ '^[0-9]{5}$'),
    constraint orders_amount_range_check check (amount between 1 and core.amount_max()),
    constraint orders_currency_format_check check (currency ~ '^[A-Z]{3}$'),
    constraint orders_status_check check (status in ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    constraint orders_version_positive_check check (version > 0),
    constraint orders_delivered_has_timestamp_check check (status <> 'DELIVERED' or delivered_at is not null),
    constraint orders_cancelled_has_timestamp_check check (status <> 'CANCELLED' or cancelled_at is not null)
);
alter table core.orders enable row level security;
comment on table core.orders is 'Customer orders: PENDING -> CONFIRMED (paid) -> SHIPPED (picked up) -> DELIVERED, or CANCELLED.';
comment on column core.orders.amount is 'Order total in minor units of currency.';
comment on column core.orders.version is 'Bumped on every status change; the optimistic-lock token.';
comment on column core.orders.status_changed_by is 'Actor (role[:sub]) of the last status change; copied into the history row.';

create index orders_customer_id_idx on core.orders (customer_id);
comment on index core.orders_customer_id_idx is 'Serves the customers FK (deletes/updates of customers) and per-customer listings.';
create index orders_seller_id_idx on core.orders (seller_id);
comment on index core.orders_seller_id_idx is 'Serves the sellers FK and per-seller listings.';
-- Low cardinality, but the FK check on a currency row's removal needs it; deduplicated, it is small.
create index orders_currency_idx on core.orders (currency);
comment on index core.orders_currency_idx is 'Serves the currencies FK (a currency row cannot go while an order uses it).';

create table core.order_status_history (
    id           bigint generated always as identity,
    order_id     bigint not null,
    from_status  text,
    to_status    text not null,
    version      integer not null,
    actor        text not null,
    created_at   timestamptz not null default now(),
    constraint order_status_history_pkey primary key (id),
    constraint order_status_history_order_id_fkey foreign key (order_id) references core.orders (id),
    constraint order_status_history_order_id_version_key unique (order_id, version)
);
alter table core.order_status_history enable row level security;
comment on table core.order_status_history is 'Every order status change (and the creation) with its version, actor and time.';
comment on constraint order_status_history_order_id_version_key on core.order_status_history is
    'One row per order version: no duplicate in the path; also serves reads of one order''s history.';

create function core.tg_orders__bump_version()
returns trigger
language plpgsql
set search_path = ''
as $$
-- BEFORE UPDATE: a status change is a new version of the order.
begin
    if new.status is distinct from old.status then
        new.version := old.version + 1;
    end if;
    return new;
end
$$;
comment on function core.tg_orders__bump_version() is 'Trigger: bumps orders.version on every status change.';

create function core.tg_orders__history()
returns trigger
language plpgsql
set search_path = ''
as $$
-- AFTER INSERT or status change: append the step to core.order_status_history.
begin
    if tg_op = 'INSERT' or new.status is distinct from old.status then
        insert into core.order_status_history (order_id, from_status, to_status, version, actor, created_at)
        values (new.id, case when tg_op = 'UPDATE' then old.status end, new.status, new.version,
                coalesce(new.status_changed_by, auth.actor()), new.updated_at);
    end if;
    return null;
end
$$;
comment on function core.tg_orders__history() is 'Trigger: records every order status step in core.order_status_history.';

create trigger _010_check_transition
    before update of status on core.orders
    for each row execute function core.tg_status__check_transition('order');
comment on trigger _010_check_transition on core.orders is 'Refuses transitions not in core.state_transitions.';
create trigger _020_bump_version
    before update on core.orders
    for each row execute function core.tg_orders__bump_version();
comment on trigger _020_bump_version on core.orders is 'Bumps version on status change.';
create trigger _100_history
    after insert or update of status on core.orders
    for each row execute function core.tg_orders__history();
comment on trigger _100_history on core.orders is 'Appends each status step to the history.';

create function core.set_order_status(
    p_order_id bigint,
    p_to text,
    p_actor text default null,
    p_expected_version integer default null,
    p_now timestamptz default null,
    p_from text[] default null
)
returns core.orders
language plpgsql
volatile
set search_path = ''
as $$
-- Optimistic status change: UPDATE only if status and version are still what we read. A concurrent
-- change makes the UPDATE match nothing (READ COMMITTED re-checks the WHERE on the newest row), so we
-- re-read and retry: 3 attempts, backoff 10 ms then 20 ms (x 0.5-1.5 jitter), then a registered
-- conflict. p_expected_version lets a client insist on the version it saw (no retry then);
-- p_from restricts the statuses this action may start from (confirm: PENDING only), checked again
-- on every re-read, since the machine alone allows e.g. SHIPPED -> CONFIRMED after a failed delivery.
declare
    v_order core.orders;
    v_now timestamptz := coalesce(p_now, now());
    v_attempts constant integer := 3;
begin
    for v_attempt in 1 .. v_attempts loop
        select * into v_order from core.orders o where o.id = p_order_id;
        if not found then
            perform ops.raise_error('ORDER_NOT_FOUND', p_order_id::text);
        end if;
        if p_expected_version is not null and v_order.version <> p_expected_version then
            perform ops.log_event('order_status_conflict', 'warn',
                jsonb_build_object('order_id', p_order_id, 'expected_version', p_expected_version,
                                   'version', v_order.version, 'to_status', p_to),
                'ORDER_STATUS_CONFLICT');
            perform ops.raise_error('ORDER_STATUS_CONFLICT', p_order_id::text, '1');
        end if;
        -- The machine is checked once, by the _010_check_transition trigger on the UPDATE below
        -- (the same ORDER_INVALID_TRANSITION with the same arguments; 0017: a second lookup here
        -- cost ~2 % of a transition). That trigger lets a status stay as it is: refused here.
        if v_order.status = p_to
           or (p_from is not null and v_order.status <> all (p_from)) then
            perform ops.raise_error('ORDER_INVALID_TRANSITION', p_order_id::text, v_order.status, p_to);
        end if;

        update core.orders o
           set status = p_to,
               status_changed_by = coalesce(p_actor, auth.actor()),
               updated_at = v_now,
               confirmed_at = case when p_to = 'CONFIRMED' then coalesce(o.confirmed_at, v_now) else o.confirmed_at end,
               shipped_at   = case when p_to = 'SHIPPED'   then v_now else o.shipped_at end,
               delivered_at = case when p_to = 'DELIVERED' then v_now else o.delivered_at end,
               cancelled_at = case when p_to = 'CANCELLED' then v_now else o.cancelled_at end
         where o.id = p_order_id and o.status = v_order.status and o.version = v_order.version
        returning * into v_order;
        if found then
            return v_order;
        end if;
        if v_attempt < v_attempts then
            perform pg_sleep(0.010 * power(2, v_attempt - 1) * (0.5 + random()));
        end if;
    end loop;
    perform ops.log_event('order_status_conflict', 'warn',
        jsonb_build_object('order_id', p_order_id, 'to_status', p_to, 'attempts', v_attempts),
        'ORDER_STATUS_CONFLICT');
    perform ops.raise_error('ORDER_STATUS_CONFLICT', p_order_id::text, v_attempts::text);
    return null;
end
$$;
comment on function core.set_order_status(bigint, text, text, integer, timestamptz, text[]) is
    'Move an order to p_to with optimistic locking (3 attempts, exponential backoff), or raise a registered error.';
