"""The HTTP suite runs against gateway/ (started here) or a real PostgREST (WAYBILL_API_URL).

With WAYBILL_API_URL set, also set WAYBILL_API_DATABASE_URL (the owner's URL of the database that
PostgREST serves, for fixtures) and WAYBILL_JWT_SECRET (PostgREST's secret).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from waybill import process, testing
from waybill.auth import mint
from waybill.cluster import Cluster, free_port


@dataclass
class Api:
    base_url: str
    db_url: str
    secret: str
    admin_url: str | None = None

    def token(self, role: str, sub: str | int | None = None, ttl: int = 600) -> str:
        return mint(self.secret, role, None if sub is None else str(sub), ttl)

    def client(self, role: str | None = None, sub: str | int | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(role, sub)}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.db_url, autocommit=True)


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[Api]:
    external = os.environ.get("WAYBILL_API_URL")
    if external:
        yield Api(external, os.environ["WAYBILL_API_DATABASE_URL"], os.environ["WAYBILL_JWT_SECRET"])
        return
    name = "http_suite"
    cluster.drop_database(name)
    cluster.create_database(name, template=testing.TEMPLATE_DB)
    secret = secrets.token_urlsafe(40)
    port, admin_port = free_port(), free_port()
    proc = process.start(
        [sys.executable, "-m", "gateway", "--db-url", cluster.url(name, user="authenticator"),
         "--jwt-secret", secret, "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port)],
    )  # fmt: skip
    try:
        ready = f"http://127.0.0.1:{admin_port}/ready"
        process.wait_until(process.http_ok(ready), timeout=30, what=f"gateway {ready}", child=proc)
        yield Api(f"http://127.0.0.1:{port}", cluster.url(name), secret, f"http://127.0.0.1:{admin_port}")
    finally:
        process.stop(proc)
        cluster.drop_database(name)


_n = iter(range(1, 1_000_000))


@pytest.fixture
def world(api: Api) -> dict:
    """A customer, a seller and three agents (two serving a fresh zip code, one elsewhere)."""
    n = next(_n) + os.getpid() % 1000 * 1000
    zip_code = f"{70000 + n % 29999:05d}"
    other_zip = f"{40000 + n % 29999:05d}"
    with api.db() as conn:
        customer = conn.execute(
            "insert into core.customers (name, email) values (%s, %s) returning id",
            [f"C{n}", f"h{n}@example.test"],
        ).fetchone()[0]
        seller = conn.execute(
            "insert into core.sellers (name) values (%s) returning id", [f"S{n}"]
        ).fetchone()[0]
        agents = [
            conn.execute(
                "insert into core.delivery_agents (name, serviceable_zip_codes) values (%s, %s) returning id",
                [f"A{n}.{i}", [z]],
            ).fetchone()[0]
            for i, z in enumerate([zip_code, zip_code, other_zip])
        ]
    return {"customer": customer, "seller": seller, "agents": agents, "zip": zip_code}
