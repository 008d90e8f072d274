-- =================================================================================================
-- 100 Parties: customers, sellers, delivery agents
-- =================================================================================================

create table core.customers (
    id          bigint generated always as identity,
    name        text not null,
    email       text not null,
    created_at  timestamptz not null default now(),
    constraint customers_pkey primary key (id),
    constraint customers_email_key unique (email),
    constraint customers_name_not_blank_check check (btrim(name) <> ''),
    constraint customers_email_format_check check (email ~ '^[^@\s]+@[^@\s]+$')
);
alter table core.customers enable row level security;
comment on table core.customers is 'People who buy. Orders reference them.';

create table core.sellers (
    id          bigint generated always as identity,
    name        text not null,
    fee_bps     integer not null default 1000,
    created_at  timestamptz not null default now(),
    constraint sellers_pkey primary key (id),
    constraint sellers_name_not_blank_check check (btrim(name) <> ''),
    constraint sellers_fee_bps_range_check check (fee_bps between 0 and 10000)
);
alter table core.sellers enable row level security;
comment on table core.sellers is 'Merchants who sell; each has a wallet per currency credited on capture.';
comment on column core.sellers.fee_bps is 'Platform fee in basis points of each captured payment (1000 = 10 %).';

create table core.delivery_agents (
    id                     bigint generated always as identity,
    name                   text not null,
    status                 text not null default 'ACTIVE',
    serviceable_zip_codes  text[] not null default '{}',
    created_at             timestamptz not null default now(),
    updated_at             timestamptz not null default now(),
    constraint delivery_agents_pkey primary key (id),
    constraint delivery_agents_name_not_blank_check check (btrim(name) <> ''),
    constraint delivery_agents_status_check check (status in ('ACTIVE', 'INACTIVE', 'SUSPENDED')),
    -- Every element is five digits (array_to_string + regex: CHECK cannot hold a subquery).
    constraint delivery_agents_zip_codes_format_check
        check (array_to_string(serviceable_zip_codes, ',') ~ '^([0-9]{5}(,[0-9]{5})*)?$'),
    constraint delivery_agents_zip_codes_no_nulls_check
        check (array_position(serviceable_zip_codes, null) is null)
);
alter table core.delivery_agents enable row level security;
comment on table core.delivery_agents is 'Couriers. An agent''s JWT sub is its id; it is offered work in its zip codes.';
comment on column core.delivery_agents.serviceable_zip_codes is 'Zip codes the agent delivers to (five digits each).';
