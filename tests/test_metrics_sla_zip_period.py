"""sla_summary for one zip code over a non-standard period (migration 0023): the percentiles found from
the view's cumulative band counts and band postings equal percentile_cont over the period's delivery
times in whole minutes, recomputed from the raw rows — over periods of every length and position, at
every rank (band boundaries, ties across days), and for zip codes with 0, 1 or 2 deliveries."""

from __future__ import annotations

import datetime as dt
import random

import psycopg
import pytest

from tests import metrics_oracle as o
from tests.factories import one

BUSY, ONE, TWO, NONE = "31101", "31102", "31103", "31104"
DAYS = 24  # deliveries on the days [today - 24, today)


def _insert(conn: psycopg.Connection, customer: int, seller: int, agent: int, rows: list[tuple]) -> None:
    """Delivered assignments (zip code, accepted_at, delivered_at), inserted as fixtures are (one
    order each: a delivered assignment is its order's live one)."""
    orders = conn.execute(
        "insert into core.orders (customer_id, seller_id, ship_to_zip, amount, currency)"
        " select %s, %s, z, 100, 'EUR' from unnest(%s::text[]) z returning id",
        [customer, seller, [r[0] for r in rows]],
    ).fetchall()
    conn.cursor().executemany(
        "insert into core.shipping_assignments (order_id, agent_id, zip_code, status, sla_due_at, created_at,"
        " updated_at, accepted_at, delivered_at) values (%s, %s, %s, 'DELIVERED', %s, %s, %s, %s, %s)",
        [
            (o_[0], agent, z, dl, acc - dt.timedelta(minutes=3), dl, acc, dl)
            for o_, (z, acc, dl) in zip(orders, rows, strict=True)
        ],
    )


@pytest.fixture
def zips(conn: psycopg.Connection) -> dict:
    customer = one(
        conn, "insert into core.customers (name, email) values ('C', 'zipperiod@example.test') returning id"
    )[0]
    seller = one(conn, "insert into core.sellers (name) values ('S') returning id")[0]
    agent = one(
        conn,
        "insert into core.delivery_agents (name, serviceable_zip_codes, status) values ('Z', %s, 'ACTIVE') returning id",
        [[BUSY, ONE, TWO]],
    )[0]
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rnd = random.Random(23)
    rows = []
    for d in range(DAYS):
        start = today - dt.timedelta(days=DAYS - d)
        for i in range(rnd.randint(30, 70)):
            # spread over ~500 whole minutes (bands end every 64 minutes or 384 postings), with ties:
            # minute 120 on every day, and seconds so that only the whole minute counts
            took = 120 if i % 9 == 0 else rnd.randint(5, 500)
            acc = start + dt.timedelta(minutes=rnd.randint(0, 600))
            rows.append((BUSY, acc, acc + dt.timedelta(minutes=took, seconds=rnd.randint(0, 59))))
    day = today - dt.timedelta(days=5)
    rows.append((ONE, day + dt.timedelta(hours=1), day + dt.timedelta(hours=3, seconds=30)))
    rows += [(TWO, day + dt.timedelta(hours=1), day + dt.timedelta(hours=2)),
             (TWO, day - dt.timedelta(hours=9), day + dt.timedelta(hours=9, seconds=59))]  # fmt: skip
    _insert(conn, customer, seller, agent, rows)
    conn.execute("select metrics.refresh('sla_summary')")
    return {"today": today.date(), "raw": o.rows(conn)}


def _times(raw: list[dict], zip_code: str, d_from: dt.date, d_to: dt.date) -> list[dt.timedelta]:
    return [o.delivery_time(r) for r in raw if r["zip_code"] == zip_code and r["status"] == "DELIVERED"
            and o.in_period(r["delivered_at"], d_from, d_to)]  # fmt: skip


def test_every_rank_of_every_period_is_exact(conn: psycopg.Connection, zips: dict) -> None:
    """metrics.zip_period_percentiles at 21 fractions (0, 0.05 … 1: every band boundary the ranks
    cross) for every period inside and around the data, against percentile_cont in Python."""
    bands = one(
        conn, "select count(*) from metrics.sla_summary where grain = 'zip_band' and zip_code = %s", [BUSY]
    )[0]
    assert bands >= 6, "the busy zip code spans several bands"
    fractions = [i / 20 for i in range(21)]
    first = zips["today"] - dt.timedelta(days=DAYS + 2)
    checked = 0
    for start in range(0, DAYS + 4, 2):
        for length in (1, 2, 3, 7, 10, 19, 30):
            d_from = first + dt.timedelta(days=start)
            d_to = d_from + dt.timedelta(days=length)
            got = one(
                conn, "select metrics.zip_period_percentiles(%s, %s, %s, %s)", [BUSY, d_from, d_to, fractions]
            )[0]
            times = _times(zips["raw"], BUSY, d_from, d_to)
            if not times:
                assert got is None, (d_from, d_to)
                continue
            expected = [o.hist_pct(times, f) for f in fractions]
            assert got == pytest.approx(expected, abs=1e-9), (d_from, d_to)
            checked += 1
    assert checked > 50


@pytest.mark.parametrize("zip_code", [BUSY, ONE, TWO, NONE])
def test_sla_summary_over_periods(conn: psycopg.Connection, zips: dict, zip_code: str) -> None:
    """The endpoint: counts and p50/p90/p99 of one zip code over non-standard periods of several
    lengths, one reaching today (the view's days only: as of its refresh)."""
    today = zips["today"]
    for back, length in ((DAYS, DAYS), (13, 7), (6, 1), (5, 1), (9, 5), (3, 4), (40, 25)):
        d_from = today - dt.timedelta(days=back)
        d_to = d_from + dt.timedelta(days=length)
        body, headers = o.call(
            conn, "sla_summary", zip_code=zip_code, **{"from": str(d_from), "to": str(d_to)}
        )
        times = _times(zips["raw"], zip_code, d_from, d_to)
        where = (zip_code, d_from, d_to)
        assert body["percentiles"] == "minute_histogram", where
        assert body["delivered"] == len(times), where
        for p, k in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
            assert o.close(body["deliveryMinutes"][k], o.hist_pct(times, p)), (where, k)
        assert headers[0]["Cache-Control"].startswith("max-age=")


def test_one_and_two_deliveries(conn: psycopg.Connection, zips: dict) -> None:
    """By hand: one delivery of 120 minutes (and 30 s); two of 60 and 1,080 minutes (and 59 s),
    interpolated: p50 = 60 + 0.5 * 1,020, p90 = 60 + 0.9 * 1,020."""
    today = zips["today"]
    period = {"from": str(today - dt.timedelta(days=8)), "to": str(today - dt.timedelta(days=2))}
    one_ = o.call(conn, "sla_summary", zip_code=ONE, **period)[0]["deliveryMinutes"]
    assert (one_["p50"], one_["p90"], one_["p99"]) == (120, 120, 120)
    two = o.call(conn, "sla_summary", zip_code=TWO, **period)[0]["deliveryMinutes"]
    assert (two["p50"], two["p90"], two["p99"]) == (570, 978, 1069.8)
    none = o.call(conn, "sla_summary", zip_code=NONE, **period)[0]
    assert (none["delivered"], none["deliveryMinutes"]["p50"]) == (0, None)
