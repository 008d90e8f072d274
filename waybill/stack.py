"""`waybill run` (make run): the whole local stack in one foreground process.

Starts the embedded cluster (or uses DATABASE_URL), applies migrations, loads demo data into an
empty database, prints how to reach everything, and waits. Ctrl-C (or SIGTERM) stops what it
started — child processes first, then the cluster — and leaves no process behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from types import FrameType

import psycopg

from waybill import migrate, seed
from waybill.cluster import Cluster
from waybill.settings import Settings

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

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self.cluster is not None:
            self.cluster.stop()

    def banner(self, url: str, seeded: str) -> str:
        lines = ["", "Waybill is running.", f"  database   {url}"]
        if self.cluster is not None:
            lines.append(f"  data dir   {self.cluster.data_dir}")
            lines.append(f"  server log {self.cluster.log_file()}")
        lines += [
            f"  demo data  {seeded}",
            "",
            "Try:",
            f"  psql '{url}' -c 'select status, count(*) from core.orders group by 1'",
            "  .venv/bin/waybill db psql      # a psql shell on the same database",
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
            applied = migrate.apply(url)
            print(f"migrations: {applied} applied", flush=True)
            seeded = self.seed_if_empty(url)
            print(self.banner(url, seeded), flush=True)
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
