"""`make run`'s webhook half: the dispatcher, the example receiver and a demo subscription to it.

So that a newcomer sees signed webhooks arrive: a subscription to every event type pointing at
`waybill receiver` on 127.0.0.1 is created when there is none (its secret goes to a 0600 file in the
data directory, which the receiver reads — never argv), the dispatcher is started as the
`dispatcher` role with that one loopback address added to WAYBILL_WEBHOOK_ALLOWLIST (and nothing
else), and the banner prints a curl line that produces an event.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from waybill import process
from waybill.auth import DEFAULT_TTL, jwt_secret, mint, role_login
from waybill.cluster import Cluster
from waybill.settings import Settings

DEMO_DESCRIPTION = "make run: the demo receiver (waybill receiver)"
RECEIVER_HOST = "127.0.0.1"


def run_allowlist(configured: str) -> str:
    """The dispatcher's allowlist under `make run`: what the setting holds plus the demo receiver's
    own address, and nothing else."""
    return ",".join(x for x in (configured.strip(), f"{RECEIVER_HOST}/32") if x)


def _as_admin(conn: psycopg.Connection, sql: str, params: list) -> dict:
    with conn.transaction():
        conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps({"role": "admin"})])
        conn.execute("set local role admin")
        return conn.execute(sql, params).fetchone()[0]


class DemoWebhooks:
    def __init__(self, settings: Settings, cluster: Cluster | None) -> None:
        self.settings = settings
        self.cluster = cluster
        self.receiver_port = int(os.environ.get("WAYBILL_RECEIVER_PORT", "3003"))
        self.status_port = int(os.environ.get("WAYBILL_DISPATCHER_STATUS_PORT", "3002"))
        self.secret_file = Path(settings.data_dir) / "webhook-demo-secret"
        self.subscription_id: int | None = None
        self.note = ""

    @property
    def receiver_url(self) -> str:
        return f"http://{RECEIVER_HOST}:{self.receiver_port}/webhooks"

    def ensure_subscription(self, owner_url: str) -> None:
        """The demo subscription (created, re-pointed or re-enabled as needed) and its secret file."""
        with psycopg.connect(owner_url, autocommit=True) as conn:
            row = conn.execute(
                "select id, url, status from webhooks.subscriptions where description = %s order by id limit 1",
                [DEMO_DESCRIPTION],
            ).fetchone()
            secret = None
            if row is None:
                created = _as_admin(
                    conn,
                    "select api.create_webhook_subscription(%s, %s, %s)",
                    [self.receiver_url, ["*"], DEMO_DESCRIPTION],
                )
                self.subscription_id, secret = created["id"], created["secret"]
                self.note = f"demo subscription #{self.subscription_id} created"
            else:
                self.subscription_id = row[0]
                self.note = f"demo subscription #{self.subscription_id} reused"
                if row[1] != self.receiver_url:
                    _as_admin(conn, "select to_jsonb(api.update_webhook_subscription(%s, %s))",
                              [self.subscription_id, self.receiver_url])  # fmt: skip
                if row[2] != "ACTIVE":
                    _as_admin(conn, "select api.enable_webhook_subscription(%s)", [self.subscription_id])
                if not self.secret_file.exists():  # the secret is shown once: a lost file means a new one
                    secret = _as_admin(
                        conn, "select api.rotate_webhook_secret(%s, 0)", [self.subscription_id]
                    )["secret"]
        if secret is not None:
            self.secret_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret + "\n")

    def dispatcher_login(self, owner_url: str) -> tuple[str, dict[str, str]]:
        """How the dispatcher logs in (waybill.auth.role_login; bench/load starts it this way too)."""
        password = os.environ.get("WAYBILL_DISPATCHER_PASSWORD")
        return role_login(self.settings, self.cluster, owner_url, "dispatcher", password)

    def start(self, owner_url: str) -> list[subprocess.Popen]:
        """Start the receiver and the dispatcher; return them for the stack to stop."""
        self.ensure_subscription(owner_url)
        allow = run_allowlist(os.environ.get("WAYBILL_WEBHOOK_ALLOWLIST", ""))
        receiver = process.start(
            [sys.executable, "-m", "waybill", "receiver", "--host", RECEIVER_HOST, "--port", str(self.receiver_port)],
            env=dict(os.environ, WAYBILL_RECEIVER_SECRET_FILE=str(self.secret_file)),
        )  # fmt: skip
        db_url, db_env = self.dispatcher_login(owner_url)
        dispatcher = process.start(
            [sys.executable, "-m", "waybill", "dispatcher", "--name", "make-run", "--status-port", str(self.status_port)],
            env=dict(
                os.environ,
                **db_env,
                WAYBILL_DISPATCHER_DATABASE_URL=db_url,
                WAYBILL_WEBHOOK_ALLOWLIST=allow,
                # the receiver's lines stay readable
                WAYBILL_LOG_LEVEL=os.environ.get("WAYBILL_LOG_LEVEL", "warning"),
            ),
        )  # fmt: skip
        children = [receiver, dispatcher]
        try:
            for child, url in (
                (receiver, f"http://{RECEIVER_HOST}:{self.receiver_port}/healthz"),
                (dispatcher, f"http://127.0.0.1:{self.status_port}/healthz"),  # it reached the database
            ):
                process.wait_until(process.http_ok(url), timeout=60, what=url, child=child, interval=0.1)
        except BaseException:
            process.stop_all(children)
            raise
        return children

    def banner_lines(self, owner_url: str, api: str) -> list[str]:
        with psycopg.connect(owner_url) as conn:
            pending = conn.execute("select min(id) from core.orders where status = 'PENDING'").fetchone()[0]
        service = mint(jwt_secret(self.settings), "service", ttl_seconds=DEFAULT_TTL)
        lines = [
            "",
            "Webhooks:",
            f"  receiver   {self.receiver_url}   verified events are printed below as 'webhook <type> <id> <data>'",
            f"  dispatcher http://127.0.0.1:{self.status_port}/healthz and /metrics   ({self.note})",
        ]
        if pending is not None:
            lines += [
                "  Cancel a pending order and watch order.cancelled arrive, signed and verified:",
                f"  curl -s -X POST '{api}/rpc/cancel_order' -H 'Content-Type: application/json' \\",
                f"       -H 'Authorization: Bearer {service}' -d '{{\"order_id\": {pending}}}'",
            ]
        return lines
