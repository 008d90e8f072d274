"""The stack a load run drives: `make run`'s own starters on a throw-away data directory.

`waybill.stack.Stack` starts the embedded cluster and the HTTP front (gateway/ here), exactly as
`make run`; `waybill.stack_webhooks.DemoWebhooks` creates the loopback subscription (its secret in a
0600 file) and starts the dispatcher as the `dispatcher` role. The one difference: the receiver is
bench/load/receiver.py (the example consumer's verification + a durable arrival log) so that the run
can count deliveries, duplicates and commit -> POST latency. The fault scenarios use the handles
here: restart PostgreSQL, kill -9 / restart the dispatcher, stop / start the receiver.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from waybill import migrate, process, seed
from waybill.auth import jwt_secret, mint
from waybill.cluster import free_port
from waybill.settings import PROJECT_ROOT, Settings
from waybill.stack import Stack
from waybill.stack_webhooks import RECEIVER_HOST, DemoWebhooks

SEED_ORDERS = 300
SEED_AGENTS = 60


class LoadWebhooks(DemoWebhooks):
    """DemoWebhooks with the recording receiver and the dispatcher as separately restartable children."""

    def __init__(
        self, settings: Settings, stack: Stack, arrivals: Path, dispatcher_env: dict[str, str]
    ) -> None:
        super().__init__(settings, stack.cluster)
        self.receiver_port = free_port()
        self.status_port = free_port()
        self.arrivals = arrivals
        self.dispatcher_env = dispatcher_env
        self.receiver: subprocess.Popen | None = None
        self.dispatcher: subprocess.Popen | None = None
        self.owner_url = ""
        self.logs = Path(settings.data_dir)

    def start(self, owner_url: str) -> list[subprocess.Popen]:
        self.owner_url = owner_url
        self.ensure_subscription(owner_url)
        self.start_receiver()
        self.start_dispatcher()
        return []

    def start_receiver(self) -> None:
        env = dict(
            os.environ,
            WAYBILL_RECEIVER_SECRET_FILE=str(self.secret_file),
            WAYBILL_LOAD_ARRIVALS=str(self.arrivals),
        )
        out = open(self.logs / "receiver.log", "ab")  # noqa: SIM115 - handed to the child
        self.receiver = process.start(
            [sys.executable, "-m", "bench.load.receiver", "--host", RECEIVER_HOST, "--port", str(self.receiver_port)],
            env=env, cwd=PROJECT_ROOT, output=out,
        )  # fmt: skip
        process.wait_until(process.http_ok(f"http://{RECEIVER_HOST}:{self.receiver_port}/healthz"),
                           timeout=60, what="the load receiver", child=self.receiver, interval=0.1)  # fmt: skip

    def stop_receiver(self) -> None:
        if self.receiver is not None:
            process.stop(self.receiver)

    def start_dispatcher(self) -> None:
        db_url, db_env = self.dispatcher_login(self.owner_url)
        out = open(self.logs / "dispatcher.log", "ab")  # noqa: SIM115 - handed to the child
        self.dispatcher = process.start(
            [sys.executable, "-m", "waybill", "dispatcher", "--name", "load", "--status-port", str(self.status_port)],
            env=dict(os.environ, **db_env, **self.dispatcher_env, WAYBILL_DISPATCHER_DATABASE_URL=db_url,
                     WAYBILL_WEBHOOK_ALLOWLIST=f"{RECEIVER_HOST}/32"),
            cwd=PROJECT_ROOT, output=out,
        )  # fmt: skip
        process.wait_until(process.http_ok(f"http://127.0.0.1:{self.status_port}/healthz"),
                           timeout=60, what="the dispatcher", child=self.dispatcher, interval=0.1)  # fmt: skip

    def kill_dispatcher(self) -> None:
        if self.dispatcher is not None and self.dispatcher.poll() is None:
            self.dispatcher.send_signal(signal.SIGKILL)
            self.dispatcher.wait()

    def stop(self) -> None:
        process.stop_all([c for c in (self.dispatcher, self.receiver) if c is not None])


class LoadStack:
    """Cluster + gateway + dispatcher + recording receiver, on a temporary data directory."""

    def __init__(self, *, retry_factor: float = 1.0) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="waybill-load-"))
        os.chmod(self.data_dir, 0o755)  # the server user must enter it when run as root
        os.environ["WAYBILL_DATA_DIR"] = str(self.data_dir)
        os.environ.setdefault("WAYBILL_LOG_LEVEL", "warning")  # no access log per request on our stdout
        self.settings = Settings(data_dir=self.data_dir, api_port=free_port(), api_admin_port=free_port())
        self.stack = Stack(self.settings)
        self.arrivals = self.data_dir / "arrivals.jsonl"
        self.retry_factor = retry_factor
        # The dispatcher's own timings (docs/webhooks.md "settings"): a shorter lease and sweep so a
        # killed dispatcher's rows come back within seconds instead of 20-30 s.
        self.webhooks = LoadWebhooks(self.settings, self.stack, self.arrivals, {
            "WAYBILL_DISPATCHER_LEASE_SECONDS": "5", "WAYBILL_DISPATCHER_SWEEP_SECONDS": "2",
            "WAYBILL_DISPATCHER_HTTP_TIMEOUT": "3",
        })  # fmt: skip
        self.owner_url = ""
        self.api = f"http://{self.settings.api_host}:{self.settings.api_port}"

    def start(self) -> LoadStack:
        self.owner_url = self.stack.owner_url()
        migrate.apply(self.owner_url)
        seed.seed(self.owner_url, orders=SEED_ORDERS, agents=SEED_AGENTS)
        if self.retry_factor != 1.0:  # compress the retry schedule (data): see docs/performance.md
            with psycopg.connect(self.owner_url, autocommit=True) as conn:
                conn.execute("update webhooks.retry_schedule set delay = delay / %s", [self.retry_factor])
        self.stack.start_http(self.owner_url)
        self.webhooks.start(self.owner_url)
        return self

    def token(self, role: str, sub: str | None = None, ttl: int = 24 * 3600) -> str:
        return mint(jwt_secret(self.settings), role, sub=sub, ttl_seconds=ttl)

    def restart_postgres(self) -> None:
        assert self.stack.cluster is not None
        self.stack.cluster.stop()
        self.stack.cluster.start()

    def connect(self, **kw: object) -> psycopg.Connection:
        return psycopg.connect(self.owner_url, autocommit=True, **kw)  # type: ignore[arg-type]

    def close(self) -> None:
        try:
            self.webhooks.stop()
            self.stack.stop()
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)
