"""`waybill seed`: the demo data is as large as asked, and every row is one the core.* functions could
have written (state machines, versions, histories, fees, ledger, refunds, zip coverage).

Most tests read one seeded database (2,000 orders, 40 agents), shared by the module; the tests that
seed themselves use fresh databases from the `db_url` fixture.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest

from waybill import seed as seeding
from waybill import testing
from waybill.cluster import Cluster

ORDERS = 2000
AGENTS = 40
_names = itertools.count()


def scalar(conn: psycopg.Connection, sql: str, params: list | None = None):
    return conn.execute(sql, params).fetchone()[0]


def fresh_database(cluster: Cluster) -> str:
    name = f"seed_{os.getpid()}_{next(_names)}"
    cluster.create_database(name, template=testing.TEMPLATE_DB)
    return name


@pytest.fixture(scope="module")
def seeded(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """(url, report) of a database seeded once with ORDERS orders and AGENTS agents."""
    name = fresh_database(cluster)
    url = cluster.url(name)
    report = seeding.seed(url, orders=ORDERS, agents=AGENTS, seed=0.42)
    yield url, report
    cluster.drop_database(name)


@pytest.fixture
def db(seeded: tuple[str, str]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(seeded[0], autocommit=True) as c:
        yield c


def status_counts(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        """
        select 'orders', status, count(*) from core.orders group by status
        union all select 'payments', status, count(*) from core.payments group by status
        union all select 'refunds', status, count(*) from core.refunds group by status
        union all select 'assignments', status, count(*) from core.shipping_assignments group by status
        union all select 'agents', status, count(*) from core.delivery_agents group by status
        union all select 'ledger', kind, count(*) from core.ledger_transactions group by kind
        union all select 'order_history', null, count(*) from core.order_status_history
        union all select 'assignment_history', null, count(*) from core.assignment_status_history
        union all select 'refunded', null, coalesce(sum(amount), 0) from core.refunds
        union all select 'captured', null, coalesce(sum(amount), 0) from core.payments
                   where status = 'CAPTURED'
        """
    ).fetchall()
    return {(t, s): n for t, s, n in rows}


# ---- sizes and parties -----------------------------------------------------------------------------


def test_counts_are_as_requested(db: psycopg.Connection, seeded: tuple[str, str]) -> None:
    assert scalar(db, "select count(*) from core.orders") == ORDERS
    assert scalar(db, "select count(*) from core.delivery_agents") == AGENTS
    assert scalar(db, "select count(*) from core.customers") == ORDERS // 5
    assert scalar(db, "select count(*) from core.sellers") == max(5, ORDERS // 100)
    # the report names the sizes and the speed
    report = seeded[1]
    assert f"{ORDERS:,} orders" in report and "orders/s" in report
    assert f"{ORDERS:,}" in next(line for line in report.splitlines() if line.strip().startswith("orders "))


def test_parties_look_real(db: psycopg.Connection) -> None:
    bad_fee = scalar(db, "select count(*) from core.sellers where fee_bps not between 500 and 1500")
    assert bad_fee == 0
    assert scalar(db, "select count(distinct fee_bps) from core.sellers") > 3
    by_currency = dict(db.execute("select currency, count(*) from core.orders group by currency").fetchall())
    assert set(by_currency) == {"EUR", "USD", "GBP"}
    assert by_currency["EUR"] > ORDERS / 2, "mostly EUR"
    # customers: unique e-mails (constraint) and not all orders from one customer
    assert scalar(db, "select count(distinct customer_id) from core.orders") > ORDERS // 10
    assert scalar(db, "select count(distinct seller_id) from core.orders") > 5


def test_agents_and_zip_codes(db: psycopg.Connection) -> None:
    statuses = dict(
        db.execute("select status, count(*) from core.delivery_agents group by status").fetchall()
    )
    assert set(statuses) <= {"ACTIVE", "INACTIVE", "SUSPENDED"}
    assert statuses["ACTIVE"] >= 0.7 * AGENTS, "mostly ACTIVE"
    sizes = db.execute(
        "select min(cardinality(serviceable_zip_codes)), max(cardinality(serviceable_zip_codes))"
        " from core.delivery_agents"
    ).fetchone()
    assert sizes[0] >= 1 and sizes[1] <= 5
    zips = {
        z
        for (z,) in db.execute(
            "select distinct z from core.delivery_agents, unnest(serviceable_zip_codes) z"
            " union select ship_to_zip from core.orders"
        )
    }
    assert 40 <= len(zips) <= 50
    assert all(len(z) == 5 and z.isdigit() for z in zips)
    unserved = scalar(
        db,
        """
        select count(*) from (select distinct z from core.delivery_agents, unnest(serviceable_zip_codes) z
                              union select ship_to_zip from core.orders) zips
         where not exists (select 1 from core.delivery_agents a
                            where a.status = 'ACTIVE' and a.serviceable_zip_codes @> array[zips.z])
        """,
    )
    assert unserved == 0, "every zip code has an ACTIVE agent"
    # popularity is skewed: the busiest zip code has several times the median's orders
    top, median = db.execute(
        """
        select max(n), percentile_disc(0.5) within group (order by n)
          from (select count(*) as n from core.orders group by ship_to_zip) c
        """
    ).fetchone()
    assert top > 3 * median


# ---- money -------------------------------------------------------------------------------------------


def test_every_ledger_transaction_sums_to_zero(db: psycopg.Connection) -> None:
    unbalanced = scalar(
        db,
        """
        select count(*) from (
            select t.id from core.ledger_transactions t
              left join core.ledger_entries e on e.transaction_id = t.id
              left join core.wallets w on w.id = e.wallet_id
             group by t.id
            having coalesce(sum(e.amount), 0) <> 0 or count(e.id) < 2
                or bool_or(w.currency <> t.currency)) b
        """,
    )
    assert unbalanced == 0
    assert scalar(db, "select count(*) from core.ledger_transactions") > ORDERS // 2


def test_captures_follow_the_fee_rule_and_post_once(db: psycopg.Connection) -> None:
    wrong_fee = scalar(
        db,
        """
        select count(*) from core.payments p join core.orders o on o.id = p.order_id
          join core.sellers s on s.id = o.seller_id
         where p.status = 'CAPTURED'
           and (p.fee_amount <> core.fee_for(p.amount, s.fee_bps) or p.provider_ref is null
                or p.captured_at is null or p.amount <> o.amount or p.currency <> o.currency)
        """,
    )
    assert wrong_fee == 0
    # each capture: exactly one CAPTURE transaction: clearing -amount, seller +(amount-fee), fees +fee
    wrong_posting = scalar(
        db,
        """
        with expected as (
            select p.id as payment_id, w.id as wallet_id, x.amount
              from core.payments p join core.orders o on o.id = p.order_id
             cross join lateral (values ('PAYMENT_CLEARING', null::bigint, -p.amount),
                                        ('SELLER', o.seller_id, p.amount - p.fee_amount),
                                        ('PLATFORM_FEES', null, p.fee_amount)) x(kind, seller_id, amount)
              join core.wallets w on w.kind = x.kind and w.seller_id is not distinct from x.seller_id
                                 and w.currency = p.currency
             where p.status = 'CAPTURED' and x.amount <> 0
        ), posted as (
            select t.payment_id, e.wallet_id, e.amount
              from core.ledger_transactions t join core.ledger_entries e on e.transaction_id = t.id
             where t.kind = 'CAPTURE'
        )
        select count(*) from ((select * from expected except all select * from posted)
                              union all (select * from posted except all select * from expected)) d
        """,
    )
    assert wrong_posting == 0
    no_capture_tx = scalar(
        db,
        """
        select count(*) from core.payments p
         where (p.status = 'CAPTURED') <> exists (select 1 from core.ledger_transactions t
                                                   where t.payment_id = p.id and t.kind = 'CAPTURE')
        """,
    )
    assert no_capture_tx == 0


def test_completed_refunds_reverse_their_fee_share(db: psycopg.Connection) -> None:
    wrong = scalar(
        db,
        """
        with done as (
            select r.*, p.amount as captured, p.fee_amount as fee, p.currency, o.seller_id,
                   coalesce(sum(r.amount) over (partition by r.payment_id order by r.completed_at, r.id
                                                rows between unbounded preceding and 1 preceding), 0)::bigint
                       as before
              from core.refunds r join core.payments p on p.id = r.payment_id
              join core.orders o on o.id = p.order_id
             where r.status = 'COMPLETED'
        ), expected as (
            select d.id as refund_id, w.id as wallet_id, x.amount
              from done d
             cross join lateral (select core.refund_fee_share(d.fee, d.captured, d.before, d.amount) as share) s
             cross join lateral (values ('PAYMENT_CLEARING', null::bigint, d.amount),
                                        ('SELLER', d.seller_id, -(d.amount - s.share)),
                                        ('PLATFORM_FEES', null, -s.share)) x(kind, seller_id, amount)
              join core.wallets w on w.kind = x.kind and w.seller_id is not distinct from x.seller_id
                                 and w.currency = d.currency
             where x.amount <> 0
        ), posted as (
            select t.refund_id, e.wallet_id, e.amount
              from core.ledger_transactions t join core.ledger_entries e on e.transaction_id = t.id
             where t.kind = 'REFUND'
        )
        select count(*) from ((select * from expected except all select * from posted)
                              union all (select * from posted except all select * from expected)) d
        """,
    )
    assert wrong == 0
    # only COMPLETED refunds move money, each exactly once
    stray = scalar(
        db,
        """
        select count(*) from core.refunds r
         where (r.status = 'COMPLETED') <> ((select count(*) from core.ledger_transactions t
                                             where t.refund_id = r.id) = 1)
        """,
    )
    assert stray == 0


def test_wallet_balances_equal_their_entries_and_the_money_story(db: psycopg.Connection) -> None:
    mismatched = scalar(
        db,
        """
        select count(*) from core.wallet_balances b
         where b.balance <> (select coalesce(sum(e.amount), 0) from core.ledger_entries e
                              where e.wallet_id = b.wallet_id)
        """,
    )
    assert mismatched == 0
    # clearing holds minus what customers paid net of completed refunds, per currency
    wrong_clearing = scalar(
        db,
        """
        select count(*) from core.wallet_balances b
         where b.kind = 'PAYMENT_CLEARING'
           and b.balance <> -((select coalesce(sum(p.amount), 0) from core.payments p
                                where p.status = 'CAPTURED' and p.currency = b.currency)
                              - (select coalesce(sum(r.amount), 0) from core.refunds r
                                   join core.payments p on p.id = r.payment_id
                                  where r.status = 'COMPLETED' and p.currency = b.currency))
        """,
    )
    assert wrong_clearing == 0
    # a seller's wallet: what it earned (amount - fee) minus what it gave back, at most its takings
    negative_or_too_big = scalar(
        db,
        """
        select count(*) from core.wallet_balances b
         where b.kind = 'SELLER'
           and (b.balance < 0 or b.balance > (select coalesce(sum(p.amount - p.fee_amount), 0)
                                                from core.payments p join core.orders o on o.id = p.order_id
                                               where p.status = 'CAPTURED' and o.seller_id = b.seller_id
                                                 and p.currency = b.currency))
        """,
    )
    assert negative_or_too_big == 0
    fees = "select count(*) from core.wallet_balances where kind = 'PLATFORM_FEES' and balance <= 0"
    assert scalar(db, fees) == 0


def test_no_refund_total_exceeds_its_captured_payment(db: psycopg.Connection) -> None:
    over = scalar(
        db,
        """
        select count(*) from core.payments p
         where (select coalesce(sum(r.amount), 0) from core.refunds r
                 where r.payment_id = p.id and r.status in ('INITIATED', 'COMPLETED')) > p.amount
        """,
    )
    assert over == 0
    assert (
        scalar(
            db,
            "select count(*) from core.refunds r join core.payments p on p.id = r.payment_id"
            " where p.status <> 'CAPTURED' or r.created_at < p.captured_at",
        )
        == 0
    )
    # orders cancelled after capture are refunded in full; delivered ones get partial refunds
    not_full = scalar(
        db,
        """
        select count(*) from core.orders o join core.payments p on p.order_id = o.id and p.status = 'CAPTURED'
         where o.status = 'CANCELLED'
           and (select coalesce(sum(r.amount), 0) from core.refunds r
                 where r.payment_id = p.id and r.status = 'COMPLETED') <> p.amount
        """,
    )
    assert not_full == 0
    partial = dict(
        db.execute(
            """
            select r.status, count(*) from core.refunds r join core.payments p on p.id = r.payment_id
              join core.orders o on o.id = p.order_id
             where o.status = 'DELIVERED' and r.amount < p.amount group by r.status
            """
        ).fetchall()
    )
    assert partial.get("COMPLETED", 0) > 0
    assert partial.get("INITIATED", 0) + partial.get("FAILED", 0) > 0
    assert partial["COMPLETED"] > partial.get("INITIATED", 0) + partial.get("FAILED", 0)


# ---- state machines and histories ------------------------------------------------------------------


def test_order_histories_are_valid_paths(db: psycopg.Connection) -> None:
    broken = db.execute(
        """
        with h as (
            select h.*, row_number() over w as n,
                   lag(h.to_status) over w as prev_to, lag(h.created_at) over w as prev_at,
                   count(*) over (partition by h.order_id) as steps
              from core.order_status_history h
            window w as (partition by h.order_id order by h.version)
        )
        select h.order_id, h.version, h.from_status, h.to_status
          from h join core.orders o on o.id = h.order_id
         where h.version <> h.n
            or h.from_status is distinct from h.prev_to
            or (h.n = 1 and h.to_status <> 'PENDING')
            or (h.n > 1 and not exists (select 1 from core.state_transitions t
                                         where t.machine = 'order' and t.from_status = h.from_status
                                           and t.to_status = h.to_status))
            or h.created_at < h.prev_at
            or (h.n = 1 and h.created_at <> o.created_at)
            or (h.n = h.steps and (h.to_status <> o.status or h.version <> o.version
                                   or h.created_at <> o.updated_at or h.actor <> o.status_changed_by))
         limit 5
        """
    ).fetchall()
    assert broken == []
    without = scalar(
        db,
        "select count(*) from core.orders o where not exists (select 1 from core.order_status_history h"
        " where h.order_id = o.id)",
    )
    assert without == 0
    # the status timestamps of each step are set
    missing_ts = scalar(
        db,
        """
        select count(*) from core.orders o
         where (o.status <> 'PENDING' and o.status <> 'CANCELLED' and o.confirmed_at is null)
            or (o.status in ('SHIPPED', 'DELIVERED') and o.shipped_at is null)
            or (o.status = 'DELIVERED' and not o.delivered_at >= o.shipped_at)
            or (o.status = 'CANCELLED' and o.cancelled_at is null)
            or (o.status = 'PENDING'
                and coalesce(o.confirmed_at, o.shipped_at, o.delivered_at, o.cancelled_at) is not null)
            or o.confirmed_at < o.created_at
        """,
    )
    assert missing_ts == 0


def test_assignment_histories_are_valid_paths(db: psycopg.Connection) -> None:
    broken = db.execute(
        """
        with h as (
            select h.*, row_number() over w as n, lag(h.to_status) over w as prev_to,
                   lag(h.created_at) over w as prev_at, count(*) over (partition by h.assignment_id) as steps
              from core.assignment_status_history h
            window w as (partition by h.assignment_id order by h.id)
        )
        select h.assignment_id, h.from_status, h.to_status
          from h join core.shipping_assignments a on a.id = h.assignment_id
         where h.from_status is distinct from h.prev_to
            or (h.n = 1 and (h.to_status <> 'OFFERED' or h.created_at <> a.created_at
                             or h.agent_id is not null))
            or (h.n > 1 and not exists (select 1 from core.state_transitions t
                                         where t.machine = 'assignment' and t.from_status = h.from_status
                                           and t.to_status = h.to_status))
            or h.created_at <= h.prev_at
            or h.order_id <> a.order_id
            or (h.to_status not in ('OFFERED', 'CANCELLED') and h.agent_id is distinct from a.agent_id)
            or (h.to_status not in ('OFFERED', 'CANCELLED') and h.actor <> 'agent:' || a.agent_id)
            or ((h.to_status = 'FAILED') <> (h.reason is not null))
            or (h.n = h.steps and (h.to_status <> a.status or h.created_at <> a.updated_at
                                   or h.actor <> a.status_changed_by))
         limit 5
        """
    ).fetchall()
    assert broken == []
    without = scalar(
        db,
        "select count(*) from core.shipping_assignments a where not exists"
        " (select 1 from core.assignment_status_history h where h.assignment_id = a.id)",
    )
    assert without == 0


def test_orders_payments_and_assignments_agree(db: psycopg.Connection) -> None:
    problems = db.execute(
        """
        select 'paid status without capture', count(*) from core.orders o
         where o.status in ('CONFIRMED', 'SHIPPED', 'DELIVERED')
           and not exists (select 1 from core.payments p where p.order_id = o.id and p.status = 'CAPTURED')
        union all
        select 'pending order with capture', count(*) from core.orders o
         where o.status = 'PENDING'
           and exists (select 1 from core.payments p where p.order_id = o.id and p.status = 'CAPTURED')
        union all
        select 'cancelled order with pending payment', count(*) from core.orders o
         where o.status = 'CANCELLED'
           and exists (select 1 from core.payments p where p.order_id = o.id and p.status = 'PENDING')
        union all
        select 'order status does not follow its live assignment', count(*)
          from core.shipping_assignments a join core.orders o on o.id = a.order_id
         where a.status not in ('FAILED', 'CANCELLED')
           and o.status <> case a.status when 'OFFERED' then 'CONFIRMED' when 'ACCEPTED' then 'CONFIRMED'
                                         when 'DELIVERED' then 'DELIVERED' else 'SHIPPED' end
        union all
        select 'shipped or delivered without a live assignment', count(*) from core.orders o
         where o.status in ('SHIPPED', 'DELIVERED')
           and not exists (select 1 from core.shipping_assignments a
                            where a.order_id = o.id and a.status not in ('FAILED', 'CANCELLED'))
        union all
        select 'cancelled order with a live assignment', count(*) from core.orders o
         where o.status = 'CANCELLED'
           and exists (select 1 from core.shipping_assignments a
                        where a.order_id = o.id and a.status not in ('FAILED', 'CANCELLED'))
        union all
        select 'delivered_at differs', count(*) from core.orders o join core.shipping_assignments a
            on a.order_id = o.id and a.status = 'DELIVERED' where a.delivered_at <> o.delivered_at
        union all
        select 'assignment does not fit its order or agent', count(*)
          from core.shipping_assignments a join core.orders o on o.id = a.order_id
          left join core.delivery_agents d on d.id = a.agent_id
         where a.zip_code <> o.ship_to_zip or a.sla_due_at <> a.created_at + interval '48 hours'
            or a.created_at < o.confirmed_at
            or (a.agent_id is not null and (d.status <> 'ACTIVE'
                                            or not d.serviceable_zip_codes @> array[a.zip_code]))
        union all
        select 'in the future or older than ~90 days', count(*) from core.orders o
         where o.created_at < now() - interval '91 days' or o.updated_at > now()
        """
    ).fetchall()
    assert [p for p in problems if p[1] != 0] == []


# ---- the mix -----------------------------------------------------------------------------------------


def test_status_mix_is_realistic(db: psycopg.Connection) -> None:
    mix = dict(db.execute("select status, count(*) from core.orders group by status").fetchall())
    share = {k: v / ORDERS for k, v in mix.items()}
    assert 0.60 <= share["DELIVERED"] <= 0.90
    assert 0.02 <= share.get("CONFIRMED", 0) + share.get("SHIPPED", 0) <= 0.12  # in progress
    assert 0.02 <= share["PENDING"] <= 0.10
    assert 0.03 <= share["CANCELLED"] <= 0.12
    redelivered = scalar(
        db,
        """
        select count(*) from core.orders o where o.status = 'DELIVERED'
           and exists (select 1 from core.shipping_assignments a
                        where a.order_id = o.id and a.status = 'FAILED')
        """,
    )
    assert 0.01 <= redelivered / ORDERS <= 0.08
    pending = dict(
        db.execute(
            """
            select p.status, count(distinct o.id) from core.orders o join core.payments p on p.order_id = o.id
             where o.status = 'PENDING' group by p.status
            """
        ).fetchall()
    )
    assert pending.get("PENDING", 0) > 0 and pending.get("FAILED", 0) > 0
    cancelled = dict(
        db.execute(
            """
            select exists (select 1 from core.payments p where p.order_id = o.id and p.status = 'CAPTURED'),
                   count(*)
              from core.orders o where o.status = 'CANCELLED' group by 1
            """
        ).fetchall()
    )
    assert cancelled.get(True, 0) > 0 and cancelled.get(False, 0) > 0
    before_payment = scalar(
        db,
        "select count(*) from core.payments p join core.orders o on o.id = p.order_id"
        " where o.status = 'CANCELLED' and p.failure_reason = 'order cancelled'",
    )
    assert before_payment == cancelled[False]
    live = dict(
        db.execute(
            "select status, count(*) from core.shipping_assignments"
            " where status not in ('DELIVERED', 'FAILED', 'CANCELLED') group by status"
        ).fetchall()
    )
    assert set(live) == {"OFFERED", "ACCEPTED", "PICKED_UP", "IN_TRANSIT"}


def test_timings_are_realistic(db: psycopg.Connection) -> None:
    # payment captured minutes after creation; delivered ~1-3 days after the offer; some SLA breaches
    capture_p90 = scalar(
        db,
        "select percentile_cont(0.9) within group (order by extract(epoch from p.captured_at - p.created_at))"
        " from core.payments p where p.status = 'CAPTURED'",
    )
    assert 20 <= capture_p90 <= 3600
    median_days, breached, delivered = db.execute(
        """
        select percentile_cont(0.5) within group
                   (order by extract(epoch from delivered_at - created_at) / 86400),
               count(*) filter (where delivered_at > sla_due_at), count(*)
          from core.shipping_assignments where status = 'DELIVERED'
        """
    ).fetchone()
    assert 0.75 <= median_days <= 3
    assert 0.02 <= breached / delivered <= 0.30
    days = scalar(db, "select count(distinct date_trunc('day', created_at)) from core.orders")
    assert days >= 60, "orders spread over the last ~90 days"


# ---- reproducibility and repetition ---------------------------------------------------------------


def test_same_seed_gives_the_same_marketplace(cluster: Cluster, db_url: str) -> None:
    seeding.seed(db_url, orders=500, agents=12, seed=-0.3)
    other = fresh_database(cluster)
    third = fresh_database(cluster)
    try:
        seeding.seed(cluster.url(other), orders=500, agents=12, seed=-0.3)
        seeding.seed(cluster.url(third), orders=500, agents=12, seed=0.7)
        with (
            psycopg.connect(db_url) as a,
            psycopg.connect(cluster.url(other)) as b,
            psycopg.connect(cluster.url(third)) as c,
        ):
            first, second, different = status_counts(a), status_counts(b), status_counts(c)
    finally:
        cluster.drop_database(other)
        cluster.drop_database(third)
    assert first[("orders", "DELIVERED")] > 0
    assert first == second
    assert first != different


def test_seeding_twice_into_one_database_adds_up(db_url: str, conn: psycopg.Connection) -> None:
    seeding.seed(db_url, orders=300, agents=8, seed=0.1)
    once = status_counts(conn)
    wallets = scalar(conn, "select count(*) from core.wallets")
    seeding.seed(db_url, orders=300, agents=8, seed=0.1)
    twice = status_counts(conn)
    assert twice == {k: 2 * v for k, v in once.items()}
    # platform wallets are reused (one per kind and currency), seller wallets are new sellers'
    platform = conn.execute(
        "select kind, currency, count(*) from core.wallets where seller_id is null group by 1, 2"
    ).fetchall()
    assert platform and all(n == 1 for _, _, n in platform)
    assert scalar(conn, "select count(*) from core.wallets") == 2 * wallets - len(platform)
    refs = "select count(distinct provider_ref) from core.payments where status = 'CAPTURED'"
    assert scalar(conn, refs) == twice[("payments", "CAPTURED")]


def test_small_marketplaces_still_cover_every_zip_code(db_url: str, conn: psycopg.Connection) -> None:
    seeding.seed(db_url, orders=50, agents=1, seed=0.9)
    assert scalar(conn, "select count(*) from core.delivery_agents where status = 'ACTIVE'") == 1
    assert scalar(conn, "select count(*) from core.sellers") == 5
    assert scalar(conn, "select count(*) from core.orders") == 50
    uncovered = scalar(
        conn,
        "select count(*) from core.orders o where not exists (select 1 from core.delivery_agents a"
        " where a.status = 'ACTIVE' and a.serviceable_zip_codes @> array[o.ship_to_zip])",
    )
    assert uncovered == 0


def test_zero_orders_seeds_only_the_parties(db_url: str, conn: psycopg.Connection) -> None:
    report = seeding.seed(db_url, orders=0, agents=3, seed=0.5)
    assert "0 orders" in report
    assert scalar(conn, "select count(*) from core.delivery_agents") == 3
    assert scalar(conn, "select count(*) from core.orders") == 0
    assert scalar(conn, "select count(*) from core.ledger_entries") == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"orders": -1, "agents": 5}, {"orders": 10, "agents": 0}, {"orders": 10, "agents": 5, "seed": 1.5}],
)
def test_bad_arguments_are_refused(db_url: str, conn: psycopg.Connection, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        seeding.seed(db_url, **kwargs)
    assert scalar(conn, "select count(*) from core.delivery_agents") == 0
