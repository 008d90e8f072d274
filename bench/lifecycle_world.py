"""The lifecycle bench's world: the customers, sellers (fees 5-15 %), zip codes and delivery agents
its orders draw from, added to the database once per run and shared by all clients.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class World:
    """Parties the clients draw from: shared by all clients, as on a real marketplace."""

    tag: str
    customers: list[int]
    sellers: list[int]
    zips: list[str]
    agents_by_zip: dict[str, list[int]]
    description: str


def build_world(
    url: str,
    *,
    zips: int = 50,
    agents: int = 100,
    zips_per_agent: int = 3,
    customers: int = 2000,
    sellers: int = 20,
) -> World:
    """Customers, sellers (fees 5-15 %) and agents, each agent serving `zips_per_agent` neighbouring
    zip codes, so every zip code has agents * zips_per_agent / zips of them."""
    if agents < zips:
        raise ValueError("need at least one agent per zip code")
    tag = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
    with psycopg.connect(url) as conn:  # one transaction
        seller_ids = [
            r[0]
            for r in conn.execute(
                "insert into core.sellers (name, fee_bps) "
                "select 'Bench seller ' || %s || '-' || g, 500 + mod(g, 11) * 100 "
                "from generate_series(1, %s) g returning id",
                [tag, sellers],
            )
        ]
        customer_ids = [
            r[0]
            for r in conn.execute(
                "insert into core.customers (name, email) "
                "select 'Bench customer ' || g, 'bench-' || %s || '-' || g || '@example.test' "
                "from generate_series(1, %s) g returning id",
                [tag, customers],
            )
        ]
        rows = conn.execute(
            "insert into core.delivery_agents (name, serviceable_zip_codes) "
            "select 'Bench agent ' || %(tag)s || '-' || g, "
            "       array(select (40000 + mod(g + k, %(zips)s))::text "
            "             from generate_series(0, %(per)s - 1) k) "
            "from generate_series(0, %(agents)s - 1) g returning id, serviceable_zip_codes",
            {"tag": tag, "zips": zips, "per": zips_per_agent, "agents": agents},
        ).fetchall()
    zip_codes = [str(40000 + i) for i in range(zips)]
    by_zip: dict[str, list[int]] = {z: [] for z in zip_codes}
    for agent_id, served in rows:
        for z in served:
            by_zip[z].append(agent_id)
    description = (
        f"{zips} zip codes; {agents} agents, each serving {zips_per_agent} neighbouring zip codes "
        f"({agents * zips_per_agent // zips} agents per zip); {customers} customers; {sellers} sellers; "
        "every client draws each order's customer, seller and zip uniformly, and a random agent of "
        "that zip accepts it (all clients share the same parties)"
    )
    return World(tag, customer_ids, seller_ids, zip_codes, by_zip, description)
