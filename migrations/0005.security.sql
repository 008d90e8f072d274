-- 0005 security (issue 7, SQL side): a non-superuser owner of every object, per-role statement
-- timeouts, a maximum amount with overflow-safe fee arithmetic, ISO 4217 currencies, and agents that
-- learn nothing of assignments they cannot read.
-- depends: 0004.api

-- =================================================================================================
-- Roles (sql/000_roles.sql): waybill_owner, and per-request time limits of the request roles
-- =================================================================================================
-- A deploy never hangs behind a long transaction: wait at most 5 s for a lock, 2 min in all.
set local lock_timeout = '5s';
set local statement_timeout = '120s';

do $roles$
begin
    -- waybill_owner: owns the schema objects; cannot log in, create roles or databases, or bypass RLS.
    if not exists (select 1 from pg_roles where rolname = 'waybill_owner') then
        create role waybill_owner nologin nosuperuser nocreaterole nocreatedb noreplication nobypassrls;
    end if;
    -- A migrating login that is no superuser must be able to hand objects over and alter them later.
    if not (select r.rolsuper from pg_roles r where r.rolname = current_user) then
        execute format('grant waybill_owner to %I', current_user);
    end if;
end
$roles$;

-- ops.statement_stats() and api.health_pool() run as the owner and read every role's statistics.
grant pg_read_all_stats to waybill_owner;

-- Per-request time limits. PostgREST v12+ applies a request role's settings (pg_db_role_setting)
-- to each request it serves as that role ("impersonated role settings"; gateway/ does the same);
-- SET ROLE alone would not. agent stays above core.lock_assignment's 5 s lock_timeout, so a busy
-- offer still answers ASSIGNMENT_LOCK_TIMEOUT (503) rather than a cancelled statement.
alter role anon set statement_timeout = '3s';
alter role agent set statement_timeout = '8s';
alter role service set statement_timeout = '10s';
alter role admin set statement_timeout = '30s';
alter role platform_admin set statement_timeout = '30s';

comment on role waybill_owner is 'Owns every object of Waybill''s schemas; NOLOGIN, no superuser: SECURITY DEFINER functions run as it.';
comment on role anon is 'Request role without a token: health and the error registry. statement_timeout 3 s.';
comment on role agent is 'Request role of delivery agents (JWT sub = agent id). statement_timeout 8 s (above the 5 s accept lock_timeout).';
comment on role service is 'Request role of back-end services driving the lifecycle. statement_timeout 10 s.';
comment on role admin is 'Request role of admins: reads everything, metrics and webhooks. statement_timeout 30 s.';
comment on role platform_admin is 'Request role of platform admins (as admin). statement_timeout 30 s.';

-- The owner's SECURITY DEFINER functions call public.pg_stat_statements() (ops.statement_stats).
grant usage on schema public to waybill_owner;

-- =================================================================================================
-- Ownership (sql/020_ops_ownership.sql): migrations/post-apply.sql calls ops.assign_owner() after
-- every apply, so this migration's objects and every later one's are handed to waybill_owner.
-- =================================================================================================

create function ops.owned_schemas()
returns text[]
language sql
immutable
set search_path = ''
as $$
    select array['api', 'auth', 'core', 'metrics', 'ops', 'webhooks']
$$;
comment on function ops.owned_schemas() is 'Waybill''s schemas: their objects belong to waybill_owner (ops.assign_owner).';

create function ops.assign_owner(p_owner name default 'waybill_owner')
returns integer
language plpgsql
volatile
set search_path = ''
as $$
-- ALTER … OWNER TO p_owner for each schema of ops.owned_schemas() and each object in them (tables,
-- views, sequences, functions, types, statistics, …: whatever depends on the schema) whose owner
-- differs; returns how many changed. Objects already owned are not touched: ALTER TABLE … OWNER
-- takes an ACCESS EXCLUSIVE lock even when nothing changes, and this runs on every deploy.
-- Skipped: extension members (the extension owns them), sequences of identity/serial columns and
-- indexes (they follow their table). Run by the migrating login (superuser or member of p_owner).
declare
    v_object record;
    v_changed integer := 0;
begin
    for v_object in
        -- Schemas first: a non-superuser's new owner needs CREATE on the schema of what it receives.
        select 1 as step, 'schema' as kind, format('%I', n.nspname) as identity
          from pg_catalog.pg_namespace n
         where n.nspname = any (ops.owned_schemas())
           and n.nspowner <> p_owner::regrole
        union all
        select 2, case o.type when 'composite type' then 'type' when 'statistics object' then 'statistics'
                              else o.type end, o.identity
          from pg_catalog.pg_depend d
          join pg_catalog.pg_namespace n on n.oid = d.refobjid
          cross join lateral pg_catalog.pg_identify_object(d.classid, d.objid, 0) o
          cross join lateral (
              select case d.classid
                  when 'pg_catalog.pg_class'::regclass then (select c.relowner from pg_catalog.pg_class c where c.oid = d.objid)
                  when 'pg_catalog.pg_proc'::regclass then (select p.proowner from pg_catalog.pg_proc p where p.oid = d.objid)
                  when 'pg_catalog.pg_type'::regclass then (select t.typowner from pg_catalog.pg_type t where t.oid = d.objid)
                  when 'pg_catalog.pg_statistic_ext'::regclass then (select s.stxowner from pg_catalog.pg_statistic_ext s where s.oid = d.objid)
                  when 'pg_catalog.pg_collation'::regclass then (select c.collowner from pg_catalog.pg_collation c where c.oid = d.objid)
                  when 'pg_catalog.pg_conversion'::regclass then (select c.conowner from pg_catalog.pg_conversion c where c.oid = d.objid)
                  when 'pg_catalog.pg_operator'::regclass then (select o2.oprowner from pg_catalog.pg_operator o2 where o2.oid = d.objid)
                  when 'pg_catalog.pg_opclass'::regclass then (select c.opcowner from pg_catalog.pg_opclass c where c.oid = d.objid)
                  when 'pg_catalog.pg_opfamily'::regclass then (select f.opfowner from pg_catalog.pg_opfamily f where f.oid = d.objid)
                  when 'pg_catalog.pg_ts_config'::regclass then (select c.cfgowner from pg_catalog.pg_ts_config c where c.oid = d.objid)
                  when 'pg_catalog.pg_ts_dict'::regclass then (select t.dictowner from pg_catalog.pg_ts_dict t where t.oid = d.objid)
              end as owner) w
         where d.refclassid = 'pg_catalog.pg_namespace'::regclass
           and n.nspname = any (ops.owned_schemas())
           and w.owner is not null and w.owner <> p_owner::regrole
           and o.type <> 'index'
           and not exists (select 1 from pg_catalog.pg_depend x
                            where x.classid = d.classid and x.objid = d.objid
                              and (x.deptype = 'e'
                                   or (o.type = 'sequence' and x.deptype in ('a', 'i')
                                       and x.refclassid = 'pg_catalog.pg_class'::regclass)))
        order by 1, 2, 3
    loop
        execute format('alter %s %s owner to %I', v_object.kind, v_object.identity, p_owner);
        v_changed := v_changed + 1;
    end loop;
    return v_changed;
end
$$;
comment on function ops.assign_owner(name) is
    'Hand every schema and object of ops.owned_schemas() not yet owned by p_owner over to it; returns how many.';

-- =================================================================================================
-- Error registry (sql/050_ops_errors.sql)
-- =================================================================================================
insert into ops.error_codes (code, sqlstate, http_status, message, hint, retryable) values
    ('AMOUNT_TOO_LARGE',            'PGRST', 422, 'amount %s exceeds the maximum of %s minor units', 'Split the payment; the limit is core.amount_max().', false),
    ('STATEMENT_TIMEOUT',           '57014', 500, 'canceling statement due to statement timeout', 'The request role''s statement_timeout elapsed (README, roles), or the client went away.', false);
update ops.error_codes
   set message = 'currency must be an active ISO 4217 code, got %s', hint = 'Use a code of GET /currencies, e.g. EUR.'
 where code = 'INVALID_CURRENCY';

-- =================================================================================================
-- Money (sql/105_core_money.sql): currencies, the amount limit, the fee formulas
-- =================================================================================================

create table core.currencies (
    code          text not null,
    numeric_code  text not null,
    -- ISO 4217 minor units are 0..4: a smallint cannot overflow.
    -- squawk-ignore prefer-bigint-over-smallint
    minor_unit    smallint not null,
    name          text not null,
    constraint currencies_pkey primary key (code),
    constraint currencies_numeric_code_key unique (numeric_code),
    constraint currencies_code_format_check check (code ~ '^[A-Z]{3}$'),
    constraint currencies_numeric_code_format_check check (numeric_code ~ '^[0-9]{3}$'),
    constraint currencies_minor_unit_range_check check (minor_unit between 0 and 4),
    constraint currencies_name_not_blank_check check (btrim(name) <> '')
);
alter table core.currencies enable row level security;
comment on table core.currencies is 'Active ISO 4217 currencies (list one); orders, payments and wallets may use only these.';
comment on column core.currencies.minor_unit is 'Decimal places of the minor unit (EUR 2, JPY 0, KWD 3): amount / 10^minor_unit is the major amount.';

-- ISO 4217 list one, codes with a minor unit, as of 2026: no precious metals, SDR or testing codes
-- (their minor unit is N.A.); HRK, SLL, ZWL, ANG (now XCG) and BGN (Bulgaria uses EUR since
-- 2026-01-01) are withdrawn. A row is never deleted once orders use it (the FKs refuse).
insert into core.currencies (code, numeric_code, minor_unit, name) values
    ('AED', '784', 2, 'UAE Dirham'), ('AFN', '971', 2, 'Afghani'), ('ALL', '008', 2, 'Lek'),
    ('AMD', '051', 2, 'Armenian Dram'), ('AOA', '973', 2, 'Kwanza'), ('ARS', '032', 2, 'Argentine Peso'),
    ('AUD', '036', 2, 'Australian Dollar'), ('AWG', '533', 2, 'Aruban Florin'), ('AZN', '944', 2, 'Azerbaijan Manat'),
    ('BAM', '977', 2, 'Convertible Mark'), ('BBD', '052', 2, 'Barbados Dollar'), ('BDT', '050', 2, 'Taka'),
    ('BHD', '048', 3, 'Bahraini Dinar'), ('BIF', '108', 0, 'Burundi Franc'), ('BMD', '060', 2, 'Bermudian Dollar'),
    ('BND', '096', 2, 'Brunei Dollar'), ('BOB', '068', 2, 'Boliviano'), ('BOV', '984', 2, 'Mvdol'),
    ('BRL', '986', 2, 'Brazilian Real'), ('BSD', '044', 2, 'Bahamian Dollar'), ('BTN', '064', 2, 'Ngultrum'),
    ('BWP', '072', 2, 'Pula'), ('BYN', '933', 2, 'Belarusian Ruble'), ('BZD', '084', 2, 'Belize Dollar'),
    ('CAD', '124', 2, 'Canadian Dollar'), ('CDF', '976', 2, 'Congolese Franc'), ('CHE', '947', 2, 'WIR Euro'),
    ('CHF', '756', 2, 'Swiss Franc'), ('CHW', '948', 2, 'WIR Franc'), ('CLF', '990', 4, 'Unidad de Fomento'),
    ('CLP', '152', 0, 'Chilean Peso'), ('CNY', '156', 2, 'Yuan Renminbi'), ('COP', '170', 2, 'Colombian Peso'),
    ('COU', '970', 2, 'Unidad de Valor Real'), ('CRC', '188', 2, 'Costa Rican Colon'), ('CUP', '192', 2, 'Cuban Peso'),
    ('CVE', '132', 2, 'Cabo Verde Escudo'), ('CZK', '203', 2, 'Czech Koruna'), ('DJF', '262', 0, 'Djibouti Franc'),
    ('DKK', '208', 2, 'Danish Krone'), ('DOP', '214', 2, 'Dominican Peso'), ('DZD', '012', 2, 'Algerian Dinar'),
    ('EGP', '818', 2, 'Egyptian Pound'), ('ERN', '232', 2, 'Nakfa'), ('ETB', '230', 2, 'Ethiopian Birr'),
    ('EUR', '978', 2, 'Euro'), ('FJD', '242', 2, 'Fiji Dollar'), ('FKP', '238', 2, 'Falkland Islands Pound'),
    ('GBP', '826', 2, 'Pound Sterling'), ('GEL', '981', 2, 'Lari'), ('GHS', '936', 2, 'Ghana Cedi'),
    ('GIP', '292', 2, 'Gibraltar Pound'), ('GMD', '270', 2, 'Dalasi'), ('GNF', '324', 0, 'Guinean Franc'),
    ('GTQ', '320', 2, 'Quetzal'), ('GYD', '328', 2, 'Guyana Dollar'), ('HKD', '344', 2, 'Hong Kong Dollar'),
    ('HNL', '340', 2, 'Lempira'), ('HTG', '332', 2, 'Gourde'), ('HUF', '348', 2, 'Forint'),
    ('IDR', '360', 2, 'Rupiah'), ('ILS', '376', 2, 'New Israeli Sheqel'), ('INR', '356', 2, 'Indian Rupee'),
    ('IQD', '368', 3, 'Iraqi Dinar'), ('IRR', '364', 2, 'Iranian Rial'), ('ISK', '352', 0, 'Iceland Krona'),
    ('JMD', '388', 2, 'Jamaican Dollar'), ('JOD', '400', 3, 'Jordanian Dinar'), ('JPY', '392', 0, 'Yen'),
    ('KES', '404', 2, 'Kenyan Shilling'), ('KGS', '417', 2, 'Som'), ('KHR', '116', 2, 'Riel'),
    ('KMF', '174', 0, 'Comorian Franc'), ('KPW', '408', 2, 'North Korean Won'), ('KRW', '410', 0, 'Won'),
    ('KWD', '414', 3, 'Kuwaiti Dinar'), ('KYD', '136', 2, 'Cayman Islands Dollar'), ('KZT', '398', 2, 'Tenge'),
    ('LAK', '418', 2, 'Lao Kip'), ('LBP', '422', 2, 'Lebanese Pound'), ('LKR', '144', 2, 'Sri Lanka Rupee'),
    ('LRD', '430', 2, 'Liberian Dollar'), ('LSL', '426', 2, 'Loti'), ('LYD', '434', 3, 'Libyan Dinar'),
    ('MAD', '504', 2, 'Moroccan Dirham'), ('MDL', '498', 2, 'Moldovan Leu'), ('MGA', '969', 2, 'Malagasy Ariary'),
    ('MKD', '807', 2, 'Denar'), ('MMK', '104', 2, 'Kyat'), ('MNT', '496', 2, 'Tugrik'),
    ('MOP', '446', 2, 'Pataca'), ('MRU', '929', 2, 'Ouguiya'), ('MUR', '480', 2, 'Mauritius Rupee'),
    ('MVR', '462', 2, 'Rufiyaa'), ('MWK', '454', 2, 'Malawi Kwacha'), ('MXN', '484', 2, 'Mexican Peso'),
    ('MXV', '979', 2, 'Mexican Unidad de Inversion (UDI)'), ('MYR', '458', 2, 'Malaysian Ringgit'), ('MZN', '943', 2, 'Mozambique Metical'),
    ('NAD', '516', 2, 'Namibia Dollar'), ('NGN', '566', 2, 'Naira'), ('NIO', '558', 2, 'Cordoba Oro'),
    ('NOK', '578', 2, 'Norwegian Krone'), ('NPR', '524', 2, 'Nepalese Rupee'), ('NZD', '554', 2, 'New Zealand Dollar'),
    ('OMR', '512', 3, 'Rial Omani'), ('PAB', '590', 2, 'Balboa'), ('PEN', '604', 2, 'Sol'),
    ('PGK', '598', 2, 'Kina'), ('PHP', '608', 2, 'Philippine Peso'), ('PKR', '586', 2, 'Pakistan Rupee'),
    ('PLN', '985', 2, 'Zloty'), ('PYG', '600', 0, 'Guarani'), ('QAR', '634', 2, 'Qatari Rial'),
    ('RON', '946', 2, 'Romanian Leu'), ('RSD', '941', 2, 'Serbian Dinar'), ('RUB', '643', 2, 'Russian Ruble'),
    ('RWF', '646', 0, 'Rwanda Franc'), ('SAR', '682', 2, 'Saudi Riyal'), ('SBD', '090', 2, 'Solomon Islands Dollar'),
    ('SCR', '690', 2, 'Seychelles Rupee'), ('SDG', '938', 2, 'Sudanese Pound'), ('SEK', '752', 2, 'Swedish Krona'),
    ('SGD', '702', 2, 'Singapore Dollar'), ('SHP', '654', 2, 'Saint Helena Pound'), ('SLE', '925', 2, 'Leone'),
    ('SOS', '706', 2, 'Somali Shilling'), ('SRD', '968', 2, 'Surinam Dollar'), ('SSP', '728', 2, 'South Sudanese Pound'),
    ('STN', '930', 2, 'Dobra'), ('SVC', '222', 2, 'El Salvador Colon'), ('SYP', '760', 2, 'Syrian Pound'),
    ('SZL', '748', 2, 'Lilangeni'), ('THB', '764', 2, 'Baht'), ('TJS', '972', 2, 'Somoni'),
    ('TMT', '934', 2, 'Turkmenistan New Manat'), ('TND', '788', 3, 'Tunisian Dinar'), ('TOP', '776', 2, 'Pa''anga'),
    ('TRY', '949', 2, 'Turkish Lira'), ('TTD', '780', 2, 'Trinidad and Tobago Dollar'), ('TWD', '901', 2, 'New Taiwan Dollar'),
    ('TZS', '834', 2, 'Tanzanian Shilling'), ('UAH', '980', 2, 'Hryvnia'), ('UGX', '800', 0, 'Uganda Shilling'),
    ('USD', '840', 2, 'US Dollar'), ('USN', '997', 2, 'US Dollar (Next day)'), ('UYI', '940', 0, 'Uruguay Peso en Unidades Indexadas (UI)'),
    ('UYU', '858', 2, 'Peso Uruguayo'), ('UYW', '927', 4, 'Unidad Previsional'), ('UZS', '860', 2, 'Uzbekistan Sum'),
    ('VED', '926', 2, 'Bolivar Soberano'), ('VES', '928', 2, 'Bolivar Soberano'), ('VND', '704', 0, 'Dong'),
    ('VUV', '548', 0, 'Vatu'), ('WST', '882', 2, 'Tala'), ('XAF', '950', 0, 'CFA Franc BEAC'),
    ('XCD', '951', 2, 'East Caribbean Dollar'), ('XCG', '532', 2, 'Caribbean Guilder'), ('XOF', '952', 0, 'CFA Franc BCEAO'),
    ('XPF', '953', 0, 'CFP Franc'), ('YER', '886', 2, 'Yemeni Rial'), ('ZAR', '710', 2, 'Rand'),
    ('ZMW', '967', 2, 'Zambian Kwacha'), ('ZWG', '924', 2, 'Zimbabwe Gold');

create function core.amount_max()
returns bigint
language sql
immutable
parallel safe
set search_path = ''
as $$
    -- 10^12 minor units (10 billion EUR). Below 2^53, so JSON clients that read numbers as doubles
    -- (JavaScript) get every amount exactly; and a wallet's bigint balance has room for 9.2 million
    -- payments of this size. Changing it does not re-check existing rows (CHECKs read it).
    select 1000000000000::bigint
$$;
comment on function core.amount_max() is 'The largest amount accepted, in minor units (10^12); AMOUNT_TOO_LARGE above it.';

create function core.fee_for(p_amount bigint, p_fee_bps integer)
returns bigint
language sql
immutable
parallel safe
set search_path = ''
as $$
    -- fee_bps basis points of the amount, rounded half up; numeric, so the product never overflows.
    select div(p_amount::numeric * p_fee_bps + 5000, 10000)::bigint
$$;
comment on function core.fee_for(bigint, integer) is 'The platform fee of a captured amount: fee_bps basis points, rounded half up to the minor unit.';

create function core.refund_fee_share(p_fee bigint, p_captured bigint, p_refunded_before bigint, p_refund bigint)
returns bigint
language sql
immutable
parallel safe
set search_path = ''
as $$
    -- The fee a completed refund reverses: floor(fee * refunded / captured) after it minus before it,
    -- so partial refunds never reverse more fee than was taken. numeric: fee * refunded can exceed
    -- a bigint (10^9 * 10^10 did: 22003 at refund completion).
    select (div(p_fee::numeric * (p_refunded_before + p_refund), p_captured)
          - div(p_fee::numeric * p_refunded_before, p_captured))::bigint
$$;
comment on function core.refund_fee_share(bigint, bigint, bigint, bigint) is
    'The part of a payment''s fee that a refund reverses (pro rata, never more than was taken).';

-- Existing rows must satisfy the new rules: an amount above the maximum or an unknown currency
-- stops this migration (fix the row first; such an order could never be refunded anyway).
-- Lint allowlist: yoyo runs a migration in one transaction, where CONCURRENTLY and a separate
-- VALIDATE cannot be used; these tables are scanned once, under the 5 s lock_timeout above.
alter table core.orders
    -- squawk-ignore ban-drop-constraint
    drop constraint orders_amount_positive_check,
    -- squawk-ignore constraint-missing-not-valid
    add constraint orders_amount_range_check check (amount between 1 and core.amount_max()),
    -- squawk-ignore constraint-missing-not-valid, adding-foreign-key-constraint
    add constraint orders_currency_fkey foreign key (currency) references core.currencies (code);
-- Low cardinality, but the FK check on a currency row's removal needs it; deduplicated, it is small.
-- squawk-ignore require-concurrent-index-creation
create index orders_currency_idx on core.orders (currency);
comment on index core.orders_currency_idx is 'Serves the currencies FK (a currency row cannot go while an order uses it).';

-- Lint allowlist: yoyo runs a migration in one transaction, where CONCURRENTLY and a separate
-- VALIDATE cannot be used; these tables are scanned once, under the 5 s lock_timeout above.
alter table core.payments
    -- squawk-ignore ban-drop-constraint
    drop constraint payments_amount_positive_check,
    -- squawk-ignore constraint-missing-not-valid
    add constraint payments_amount_range_check check (amount between 1 and core.amount_max()),
    -- squawk-ignore constraint-missing-not-valid, adding-foreign-key-constraint
    add constraint payments_currency_fkey foreign key (currency) references core.currencies (code);
-- squawk-ignore require-concurrent-index-creation
create index payments_currency_idx on core.payments (currency);
comment on index core.payments_currency_idx is 'Serves the currencies FK (a currency row cannot go while a payment uses it).';

-- Lint allowlist: yoyo runs a migration in one transaction, where CONCURRENTLY and a separate
-- VALIDATE cannot be used; these tables are scanned once, under the 5 s lock_timeout above.
alter table core.wallets
    -- squawk-ignore constraint-missing-not-valid, adding-foreign-key-constraint
    add constraint wallets_currency_fkey foreign key (currency) references core.currencies (code);
-- squawk-ignore require-concurrent-index-creation
create index wallets_currency_idx on core.wallets (currency);
comment on index core.wallets_currency_idx is 'Serves the currencies FK (a currency row cannot go while a wallet uses it).';

create or replace function core.validate_money(p_amount bigint, p_currency text)
returns void
language plpgsql
stable
set search_path = ''
as $$
-- Registered errors for bad money input, before any row is touched.
begin
    if p_amount is null or p_amount <= 0 then
        perform ops.raise_error('INVALID_AMOUNT', coalesce(p_amount::text, 'null'));
    end if;
    if p_amount > core.amount_max() then
        perform ops.raise_error('AMOUNT_TOO_LARGE', p_amount::text, core.amount_max()::text);
    end if;
    if p_currency is null or not exists (select 1 from core.currencies c where c.code = p_currency) then
        perform ops.raise_error('INVALID_CURRENCY', coalesce(p_currency, 'null'));
    end if;
end
$$;
comment on function core.validate_money(bigint, text) is 'Raise INVALID_AMOUNT / AMOUNT_TOO_LARGE / INVALID_CURRENCY for bad money input.';

create or replace function core.capture_payment(
    p_payment_id bigint,
    p_provider_ref text,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.payments
language plpgsql
volatile
set search_path = ''
as $$
-- Capture: PENDING -> CAPTURED and one balanced ledger transaction (clearing -amount, seller
-- +amount-fee, platform fees +fee). The same provider_ref again returns the captured row unchanged.
declare
    v_payment core.payments;
    v_seller core.sellers;
    v_fee bigint;
    v_now timestamptz := coalesce(p_now, now());
begin
    if p_provider_ref is null or btrim(p_provider_ref) = '' then
        perform ops.raise_error('INVALID_ARGUMENT', 'provider_ref is required');
    end if;
    v_payment := core.lock_payment(p_payment_id);
    if v_payment.status = 'CAPTURED' then
        if v_payment.provider_ref = p_provider_ref then
            return v_payment;  -- idempotent repeat: nothing moves twice
        end if;
        perform ops.raise_error('PAYMENT_ALREADY_CAPTURED', p_payment_id::text);
    end if;
    if v_payment.status <> 'PENDING' then
        perform ops.log_event('payment_capture_failed', 'warn',
            jsonb_build_object('payment_id', p_payment_id, 'status', v_payment.status),
            'PAYMENT_INVALID_TRANSITION');
        perform ops.raise_error('PAYMENT_INVALID_TRANSITION', p_payment_id::text, v_payment.status, 'CAPTURED');
    end if;
    if exists (select 1 from core.payments p where p.provider_ref = p_provider_ref) then
        perform ops.raise_error('PAYMENT_PROVIDER_REF_IN_USE', p_provider_ref);
    end if;

    select s.* into v_seller
      from core.sellers s join core.orders o on o.seller_id = s.id
     where o.id = v_payment.order_id;
    v_fee := core.fee_for(v_payment.amount, v_seller.fee_bps);

    update core.payments p
       set status = 'CAPTURED', provider_ref = p_provider_ref, fee_amount = v_fee,
           captured_at = v_now, updated_at = v_now
     where p.id = p_payment_id
    returning * into v_payment;

    perform core.post_ledger('CAPTURE', v_payment.currency, v_payment.id, null,
        array[core.wallet_for('PAYMENT_CLEARING', null, v_payment.currency),
              core.wallet_for('SELLER', v_seller.id, v_payment.currency),
              core.wallet_for('PLATFORM_FEES', null, v_payment.currency)],
        array[-v_payment.amount, v_payment.amount - v_fee, v_fee],
        v_now);

    perform ops.log_event('payment_capture_succeeded', 'info',
        jsonb_build_object('payment_id', v_payment.id, 'order_id', v_payment.order_id,
                           'amount', v_payment.amount, 'currency', v_payment.currency,
                           'fee', v_fee, 'actor', coalesce(p_actor, auth.actor())));
    return v_payment;
end
$$;
comment on function core.capture_payment(bigint, text, text, timestamptz) is
    'Capture a PENDING payment (idempotent on provider_ref) and post the balanced capture to the ledger.';

create or replace function core.complete_refund(
    p_refund_id bigint,
    p_actor text default null,
    p_now timestamptz default null
)
returns core.refunds
language plpgsql
volatile
set search_path = ''
as $$
-- INITIATED -> COMPLETED and the reversing ledger transaction: clearing +amount, seller
-- -(amount - fee share), platform fees -fee share (core.refund_fee_share: pro rata, overflow-safe).
declare
    v_refund core.refunds;
    v_payment core.payments;
    v_seller_id bigint;
    v_done bigint;
    v_fee_share bigint;
    v_now timestamptz := coalesce(p_now, now());
begin
    v_refund := core.lock_refund(p_refund_id);
    if v_refund.status <> 'INITIATED' then
        perform ops.raise_error('REFUND_INVALID_TRANSITION', p_refund_id::text, v_refund.status, 'COMPLETED');
    end if;
    select * into v_payment from core.payments p where p.id = v_refund.payment_id;
    select o.seller_id into v_seller_id from core.orders o where o.id = v_payment.order_id;
    select coalesce(sum(r.amount), 0) into v_done
      from core.refunds r where r.payment_id = v_payment.id and r.status = 'COMPLETED';
    v_fee_share := core.refund_fee_share(v_payment.fee_amount, v_payment.amount, v_done, v_refund.amount);

    update core.refunds r
       set status = 'COMPLETED', completed_at = v_now, updated_at = v_now
     where r.id = p_refund_id
    returning * into v_refund;

    perform core.post_ledger('REFUND', v_payment.currency, v_payment.id, v_refund.id,
        array[core.wallet_for('PAYMENT_CLEARING', null, v_payment.currency),
              core.wallet_for('SELLER', v_seller_id, v_payment.currency),
              core.wallet_for('PLATFORM_FEES', null, v_payment.currency)],
        array[v_refund.amount, -(v_refund.amount - v_fee_share), -v_fee_share],
        v_now);
    perform ops.log_event('refund_complete_succeeded', 'info',
        jsonb_build_object('refund_id', v_refund.id, 'payment_id', v_payment.id,
                           'amount', v_refund.amount, 'fee_share', v_fee_share,
                           'actor', coalesce(p_actor, auth.actor())));
    return v_refund;
end
$$;
comment on function core.complete_refund(bigint, text, timestamptz) is
    'Complete an INITIATED refund and post the reversing, balanced ledger transaction.';

-- =================================================================================================
-- The HTTP API (sql/800_api.sql): currencies, and agents answered as if an unreadable assignment
-- did not exist
-- =================================================================================================

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

grant select on core.currencies to admin, platform_admin, service;
create policy staff_read on core.currencies for select to admin, platform_admin, service using (true);
comment on policy staff_read on core.currencies is 'Admins and services read the currency list.';

create view api.currencies with (security_invoker = true) as
select c.code, c.numeric_code, c.minor_unit, c.name
  from core.currencies c;
comment on view api.currencies is $$Currencies
The ISO 4217 currencies orders may use, with the decimal places of their minor unit.$$;
grant select on api.currencies to admin, platform_admin, service;

create or replace function api.accept_assignment(assignment_id bigint)
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

create or replace function api.advance_assignment(assignment_id bigint, status text, reason text default null)
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
