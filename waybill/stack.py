"""`waybill run` (make run): the whole local stack in one foreground process.

Starts the embedded cluster (or uses DATABASE_URL), applies migrations, loads demo data into an
empty database, starts the HTTP front (a `postgrest` binary when one is on PATH, else gateway/),
prints the URL, an admin token and a curl line, and waits. Ctrl-C (or SIGTERM) stops what it
started — child processes first, then the cluster — and leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import psycopg

from waybill import migrate, process, seed
from waybill.auth import DEFAULT_TTL, jwt_secret, mint, role_login
from waybill.cluster import Cluster
from waybill.settings import Settings
from waybill.stack_webhooks import DemoWebhooks

DEMO_ORDERS = 2_000
DEMO_AGENTS = 60


class Stack:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.cluster: Cluster | None = None
        self.children: list[subprocess.Popen] = []
        self.stopping = threading.Event()

    def owner_url(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        self.cluster = Cluster(self.settings.data_dir, self.settings.db_name, self.settings.pg_bin)
        self.cluster.start()
        return self.cluster.url()

    def seed_if_empty(self, url: str) -> str:
        with psycopg.connect(url) as conn:
            orders = conn.execute("select count(*) from core.orders").fetchone()[0]
        if orders:
            return f"demo data present ({orders} orders): not seeded again"
        return seed.seed(url, orders=DEMO_ORDERS, agents=DEMO_AGENTS)

    def start_http(self, owner_url: str) -> str:
        """Start PostgREST if its binary is on PATH, else gateway/; wait until it is ready."""
        s = self.settings
        db_url, db_env = role_login(s, self.cluster, owner_url, "authenticator", s.authenticator_password)
        secret = jwt_secret(s)
        if shutil.which("postgrest"):
            env = dict(
                os.environ,
                **db_env,
                PGRST_DB_URI=db_url,
                PGRST_DB_SCHEMAS="api",
                PGRST_DB_ANON_ROLE="anon",
                PGRST_JWT_SECRET=secret,
                PGRST_SERVER_HOST=s.api_host,
                PGRST_SERVER_PORT=str(s.api_port),
                PGRST_ADMIN_SERVER_PORT=str(s.api_admin_port),
                PGRST_OPENAPI_MODE="follow-privileges",
            )
            self.children.append(process.start(["postgrest"], env=env))
            front = "PostgREST (postgrest binary on PATH)"
        else:
            cmd = [
                sys.executable, "-m", "gateway",
                "--host", s.api_host, "--port", str(s.api_port), "--admin-port", str(s.api_admin_port),
            ]  # fmt: skip
            # The URL (authenticator's password) and the secret by environment: argv is public.
            env = dict(os.environ, **db_env, PGRST_DB_URI=db_url, PGRST_JWT_SECRET=secret)
            self.children.append(process.start(cmd, env=env))
            front = "gateway/ (PostgREST's contract; no postgrest binary on PATH)"
        ready = f"http://{s.api_host}:{s.api_admin_port}/ready"
        process.wait_until(
            process.http_ok(ready),
            timeout=60,
            what=f"the HTTP front at {ready}",
            child=self.children[-1],
            interval=0.1,
            cancel=self.stopping,
        )
        return front

    def start_metrics_cache(self, owner_url: str) -> subprocess.Popen:
        """The answer cache worker (waybill/metrics_cache.py), as the metrics_cache role."""
        db_url, db_env = role_login(
            self.settings,
            self.cluster,
            owner_url,
            "metrics_cache",
            os.environ.get("WAYBILL_METRICS_CACHE_PASSWORD"),
        )
        return process.start(
            [sys.executable, "-m", "waybill", "metrics-cache"],
            env=dict(
                os.environ,
                **db_env,
                WAYBILL_METRICS_CACHE_DATABASE_URL=db_url,
                WAYBILL_LOG_LEVEL=os.environ.get(
                    "WAYBILL_LOG_LEVEL", "warning"
                ),  # one line per fill otherwise
            ),
        )

    def stop(self) -> None:
        process.stop_all(self.children)
        if self.cluster is not None:
            self.cluster.stop()

    def banner(self, url: str, seeded: str, front: str) -> str:
        s = self.settings
        api = f"http://{s.api_host}:{s.api_port}"
        token = mint(jwt_secret(s), "admin", ttl_seconds=DEFAULT_TTL)
        expires = time.strftime("%H:%M UTC", time.gmtime(time.time() + DEFAULT_TTL))
        lines = [
            "",
            "Waybill is running.",
            f"  API        {api}   served by {front}",
            f"  OpenAPI    {api}/   health {api}/rpc/health_db",
            f"  admin port http://{s.api_host}:{s.api_admin_port}/live and /ready",
            f"  database   {url}",
        ]
        if self.cluster is not None:
            lines.append(f"  data dir   {self.cluster.data_dir}")
            lines.append(f"  server log {self.cluster.log_file()}")
        elif not s.authenticator_password:
            lines.append(f"  authenticator password in {Path(s.data_dir) / 'authenticator-password'} (0600)")
        lines += [
            f"  demo data  {seeded}",
            "",
            f"An admin token, valid {DEFAULT_TTL // 3600} h (until {expires}); mint another with",
            "  .venv/bin/waybill token --role admin",
            f"  {token}",
            "",
            "Try:",
            f"  curl -s '{api}/orders?select=id,status,amount,currency&order=id.desc&limit=5' \\",
            f"       -H 'Authorization: Bearer {token}'",
            "  .venv/bin/waybill token --role agent --sub 1     # other roles: service, platform_admin",
            "  .venv/bin/waybill db psql                         # psql on the same database",
            "",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)

    def run(self) -> int:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stopping.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            url = self.owner_url()
            if self.cluster is None:  # an existing server: say exactly what it lacks, before changing it
                migrate.check_server(url)
            applied = migrate.apply(url)
            print(f"migrations: {applied} applied", flush=True)
            seeded = self.seed_if_empty(url)
            front = self.start_http(url)
            self.children.append(self.start_metrics_cache(url))
            # Webhooks (waybill/stack_webhooks.py): receiver, dispatcher, demo subscription.
            hooks = DemoWebhooks(self.settings, self.cluster)
            self.children += hooks.start(url)
            api = f"http://{self.settings.api_host}:{self.settings.api_port}"
            print(self.banner(url, seeded, front), flush=True)
            print("\n".join(hooks.banner_lines(url, api)), flush=True)
            while not self.stopping.wait(timeout=1.0):
                for child in self.children:
                    if child.poll() is not None:
                        print(f"waybill: {child.args[0]} exited ({child.returncode})", file=sys.stderr)
                        return 1
            return 0
        finally:
            print("\nstopping…", flush=True)
            self.stop()
            print("stopped.", flush=True)
