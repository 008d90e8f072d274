"""A real gateway (`python -m gateway`, a subprocess) over a database cloned from the template.

`gw` is shared by the module's tests (its database holds tests/gateway/fixtures.sql); tests that
change the schema start their own with `start_gateway` on the per-test `db_url`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from waybill import process, testing
from waybill.cluster import Cluster, free_port

FIXTURES = Path(__file__).with_name("fixtures.sql")
ERROR_KEYS = {"code", "details", "hint", "message"}


@dataclass
class Gw:
    base_url: str
    admin_url: str
    owner_url: str
    secret: str
    log_path: Path
    proc: subprocess.Popen
    workers: int = 1

    def token(self, role: str | None = "service", secret: str | None = None, **claims) -> str:
        now = int(time.time())
        body = {"iat": now, "exp": now + 600, **claims}
        if role is not None:
            body["role"] = role
        return jwt.encode(body, secret or self.secret, algorithm="HS256")

    def client(self, role: str | None = None, **claims) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(role, **claims)}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.owner_url, autocommit=True)

    def cache_loads(self) -> Counter:
        """Schema cache loads so far, by worker (None when the gateway runs one process)."""
        return Counter(
            x.get("worker") for x in self.log_lines() if x["event"] == "schema_cache_load_succeeded"
        )

    def notify_reload(self, conn: psycopg.Connection, payload: str = "reload schema") -> None:
        """NOTIFY pgrst and wait until every worker has loaded its cache again."""
        before = self.cache_loads()
        conn.execute("select pg_notify('pgrst', %s)", [payload])
        keys = [None] if self.workers == 1 else list(range(self.workers))
        wait_until(
            lambda: all(self.cache_loads()[k] > before[k] for k in keys),
            what=f"{self.workers} worker(s) reloaded",
        )

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def raw_token(header: dict, payload: bytes, secret: str) -> str:
    """A signed HS256 token with an arbitrary payload (for claims that are not an object)."""

    return jwt.api_jws.encode(payload, secret, algorithm="HS256", headers=header)


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` with a deadline (waybill.process.wait_until), as an assertion for tests."""
    try:
        return process.wait_until(predicate, timeout=timeout, interval=interval, what=what)
    except process.NotReady as exc:
        raise AssertionError(str(exc)) from None


def start_gateway(
    cluster: Cluster, dbname: str, log_path: Path, *, wait_ready: bool = True, workers: int = 2, **extra
) -> Gw:
    """`python -m gateway` with `workers` processes (2 by default: every test runs against several)."""
    secret = secrets.token_urlsafe(40)
    port, admin_port = free_port(), free_port()
    args = [
        sys.executable, "-m", "gateway", "--host", "127.0.0.1",
        "--port", str(port), "--admin-port", str(admin_port), "--log-level", "debug",
        "--workers", str(workers),
    ]  # fmt: skip
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    # Secrets by environment, never argv (tests included): see gateway/__main__.py.
    env = dict(os.environ, PGRST_DB_URI=cluster.url(dbname, user="authenticator"), PGRST_JWT_SECRET=secret)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        proc = process.start(args, env=env, output=log)
    gw = Gw(
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{admin_port}",
        cluster.url(dbname),
        secret,
        log_path,
        proc,
        workers,
    )
    target = "/ready" if wait_ready else "/live"
    try:
        process.wait_until(
            process.http_ok(gw.admin_url + target),
            timeout=30,
            what=f"gateway {target}",
            child=proc,
            describe_exit=lambda: log_path.read_text()[-2000:],
        )
    except process.ChildExited as exc:
        raise RuntimeError(str(exc)) from None
    return gw


def stop_gateway(gw: Gw) -> int:
    return process.stop(gw.proc)


def install_fixtures(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FIXTURES.read_text())


def dbname_of(url: str) -> str:
    return conninfo_to_dict(url)["dbname"]


@pytest.fixture(scope="module")
def gw(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    name = f"gw_{os.getpid()}_{secrets.token_hex(3)}"
    cluster.create_database(name, template=testing.TEMPLATE_DB)
    try:
        install_fixtures(cluster.url(name))
        gateway = start_gateway(cluster, name, tmp_path_factory.mktemp("gw") / "gateway.log")
        try:
            yield gateway
        finally:
            stop_gateway(gateway)
    finally:
        cluster.drop_database(name)


@pytest.fixture
def anon(gw: Gw) -> Iterator[httpx.Client]:
    with gw.client() as c:
        yield c


@pytest.fixture
def svc(gw: Gw) -> Iterator[httpx.Client]:
    with gw.client("service") as c:
        yield c


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    return body
