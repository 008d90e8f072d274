-- =================================================================================================
-- 105 Money: currencies, the amount limit and the fee formulas
-- Amounts are bigint minor units of an ISO 4217 currency. One home for each money rule: the
-- currencies table (FK from orders, payments, wallets), core.amount_max() (CHECKs and validation),
-- core.fee_for() and core.refund_fee_share() (capture, refund completion and the demo seed).
-- =================================================================================================

create table core.currencies (
    code          text not null,
    numeric_code  text not null,
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
language plpgsql
immutable
parallel safe
set search_path = ''
as $$
-- 10^12 minor units (10 billion EUR). Below 2^53, so JSON clients that read numbers as doubles
-- (JavaScript) get every amount exactly; and a wallet's bigint balance has room for 9.2 million
-- payments of this size. Changing it does not re-check existing rows (CHECKs read it).
-- PL/pgSQL, not SQL (0017): the CHECKs of orders and payments evaluate it once per INSERT or
-- UPDATE statement, and a SQL function's body was parsed and planned again at each evaluation
-- (21.9 us per call with track_functions, six calls per lifecycle; PL/pgSQL: a few us).
begin
    return 1000000000000;
end
$$;
comment on function core.amount_max() is 'The largest amount accepted, in minor units (10^12); AMOUNT_TOO_LARGE above it.';

create function core.fee_for(p_amount bigint, p_fee_bps integer)
returns bigint
language sql
immutable
parallel safe
as $$
    -- fee_bps basis points of the amount, rounded half up; numeric, so the product never overflows.
    -- No SET clause (0017), like auth.*: it names no object, only pg_catalog operators and div(),
    -- so the planner inlines it into capture_payment instead of planning this body at each call.
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
