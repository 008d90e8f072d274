"""The embedded PostgreSQL cluster: initdb + pg_ctl in a data directory, configured as production.

One way to start a cluster for everything: `make run`, `make test` and the pytest fixtures all go
through `Cluster`. As root the server runs as the `postgres` system user (initdb refuses root); any
other user runs it as themselves.

Layout of a data directory:
    <data_dir>/cluster.json   port and superuser password (0600, the invoking user's)
    <data_dir>/jwt-secret     the HS256 secret when WAYBILL_JWT_SECRET is unset (0600; waybill/auth.py)
    <data_dir>/pgdata/        the cluster (the server user's, 0700); its socket and log/ live here
With DATABASE_URL (an existing server) only <data_dir>/jwt-secret and, unless
WAYBILL_AUTHENTICATOR_PASSWORD is set, <data_dir>/authenticator-password (0600; waybill/stack.py) are used.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from waybill import resources

SUPERUSER = "postgres"

# Debian packages the cluster needs, keyed by what proves each is installed.
REQUIRED_PACKAGES = {
    "extension/pg_cron.control": "postgresql-15-cron",
    "extension/pgtap.control": "postgresql-15-pgtap",
    "bin:pg_prove": "libtap-parser-sourcehandler-pgtap-perl",
    # make test checks every PL/pgSQL function with it (tests/test_sql_lint.py)
    "extension/plpgsql_check.control": "postgresql-15-plpgsql-check",
}


class ClusterError(RuntimeError):
    """The cluster cannot be prepared or started; the message says what to do."""


def find_pg_bin(configured: Path | None = None) -> Path:
    """The folder holding initdb, pg_ctl and postgres (PostgreSQL 15 preferred)."""
    candidates = [configured] if configured else []
    candidates += [Path("/usr/lib/postgresql/15/bin")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if c and (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise ClusterError("PostgreSQL server binaries not found: apt-get install postgresql-15")


def sharedir(pg_bin: Path) -> Path:
    out = subprocess.run(
        [str(pg_bin / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False
    )
    if out.returncode == 0:
        return Path(out.stdout.strip())
    return Path("/usr/share/postgresql") / pg_bin.parent.name


def missing_packages(pg_bin: Path) -> list[str]:
    share = sharedir(pg_bin)
    missing = []
    for probe, package in REQUIRED_PACKAGES.items():
        if probe.startswith("bin:"):
            present = shutil.which(probe[4:]) is not None
        else:
            present = (share / probe).exists()
        if not present:
            missing.append(package)
    return missing


def ensure_packages(pg_bin: Path) -> None:
    """Install missing Debian packages as root; otherwise say exactly what to install and fail."""
    missing = missing_packages(pg_bin)
    if not missing:
        return
    if os.geteuid() != 0:
        raise ClusterError(
            "missing Debian packages; run as root:\n"
            f"  apt-get update && apt-get install -y {' '.join(missing)}"
        )
    print(f"waybill: installing {' '.join(missing)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    still = missing_packages(pg_bin)
    if still:
        raise ClusterError(f"packages still missing after apt-get: {' '.join(still)}")


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port() -> int:
    """A port of 127.0.0.1 that nothing is bound to now and that this process never handed out
    before. Callers pick several ports before any server binds one (a gateway's port and admin
    port, then a no-op app's), and the kernel may give bind(0) a port it gave a moment ago once that
    socket is closed: the second server would then fail to bind while its readiness check reached
    the first (CI saw a bench's no-op requests answered by its gateway)."""
    with _HANDED_OUT_LOCK:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise RuntimeError("no free port this process has not handed out already")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class ServerUser:
    """Who the server process runs as."""

    name: str
    uid: int
    gid: int

    @classmethod
    def for_current_process(cls) -> ServerUser:
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ClusterError("running as root needs the 'postgres' system user") from exc
        else:
            pw = pwd.getpwuid(os.geteuid())
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid)

    def run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        """Run a server binary as this user (dropping root when needed)."""
        if os.geteuid() == 0 and self.uid != 0:
            kw.update(user=self.uid, group=self.gid, extra_groups=[])
        return subprocess.run(args, **kw)


class Cluster:
    """An embedded PostgreSQL cluster in `data_dir`."""

    def __init__(
        self, data_dir: Path, db_name: str = "waybill", pg_bin: Path | None = None, extra_conf: str = ""
    ):
        """`extra_conf`: postgresql.conf lines appended after the shared settings (tests use it to
        play a server configured otherwise, e.g. without pg_cron)."""
        self.extra_conf = extra_conf
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.state_file = self.data_dir / "cluster.json"
        self.db_name = db_name
        self.pg_bin = find_pg_bin(pg_bin)
        self.user = ServerUser.for_current_process()

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {}

    def _save_state(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.state_file)

    @property
    def port(self) -> int:
        return int(self.state()["port"])

    def url(self, db: str | None = None, *, tcp: bool = False, user: str = SUPERUSER) -> str:
        """Connection URL: the socket in pgdata (trust), or TCP with the superuser's password.

        `user` picks a login role for the socket (e.g. authenticator for the HTTP front).
        """
        db = db or self.db_name
        st = self.state()
        if tcp:
            pw = quote(st["superuser_password"], safe="")
            return f"postgresql://{SUPERUSER}:{pw}@127.0.0.1:{st['port']}/{db}"
        return f"postgresql://{user}@/{db}?host={quote(str(self.pgdata))}&port={st['port']}"

    # -- lifecycle -----------------------------------------------------------------------------
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists() and self.state_file.exists()

    def init(self) -> None:
        """initdb once; write the server settings. Safe to call again."""
        if self.initialized():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o755)
        reach = self.user.run(["test", "-x", str(self.data_dir)], check=False)
        if reach.returncode != 0:
            raise ClusterError(
                f"the server user '{self.user.name}' cannot enter {self.data_dir}; "
                "set WAYBILL_DATA_DIR to a folder it can reach (e.g. under /var/lib or /tmp)"
            )
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted init
        self.pgdata.mkdir(mode=0o700)
        os.chown(self.pgdata, self.user.uid, self.user.gid)
        password = secrets.token_urlsafe(24)
        pwfile = self.data_dir / ".initdb-pw"
        pwfile.write_text(password + "\n")
        os.chown(pwfile, self.user.uid, self.user.gid)
        pwfile.chmod(0o600)
        try:
            self.user.run(
                [
                    str(self.pg_bin / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    # The socket lives in pgdata (0700): only its owner and root reach it.
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ClusterError(f"initdb failed:\n{exc.stdout}\n{exc.stderr}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\n# Waybill: shared settings, then this cluster's own.\n")
            conf.write("include 'waybill.conf'\ninclude 'local.conf'\n")
        self._save_state({"port": free_port(), "superuser_password": password})

    def _write_config(self) -> None:
        """Copy the shared settings in (the server may not read the checkout) and this cluster's."""
        st = self.state()
        if not port_is_free(st["port"]) and not self.running():
            st["port"] = free_port()
            self._save_state(st)
        files = {
            "waybill.conf": resources.server_config().read_text(),
            "local.conf": (
                "# Written by waybill/cluster.py at each start.\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {st['port']}\n"
                f"unix_socket_directories = '{self.pgdata}'\n"
                f"cron.database_name = '{self.db_name}'\n" + self.extra_conf
            ),
        }
        for name, text in files.items():
            path = self.pgdata / name
            path.write_text(text)
            os.chown(path, self.user.uid, self.user.gid)
            path.chmod(0o600)

    def running(self) -> bool:
        if not self.pgdata.exists():
            return False
        r = self.user.run(
            [str(self.pg_bin / "pg_ctl"), "-D", str(self.pgdata), "status"],
            capture_output=True,
            text=True,
        )
        return r.returncode == 0

    def start(self) -> None:
        """Start the server and make sure the database exists. Idempotent."""
        ensure_packages(self.pg_bin)
        self.init()
        if not self.running():
            self._write_config()
            r = self.user.run(
                [
                    str(self.pg_bin / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.pgdata / "startup.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                log = self.pgdata / "startup.log"
                tail = log.read_text()[-3000:] if log.exists() else ""
                raise ClusterError(f"pg_ctl start failed:\n{r.stdout}{r.stderr}\n{tail}")
        self.create_database(self.db_name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and wait for it to be gone. Idempotent."""
        if self.running():
            self.user.run(
                [str(self.pg_bin / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
                check=True,
                capture_output=True,
            )

    def destroy(self) -> None:
        """Stop and delete the whole data directory (test clusters)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------------
    def connect(self, db: str = "postgres", **kw) -> psycopg.Connection:
        return psycopg.connect(self.url(db), **kw)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect(connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str, template: str | None = None) -> None:
        self.wait_ready()
        with self.connect(autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone()
            if exists:
                return
            sql = f'create database "{name}"'
            if template:
                sql += f' template "{template}"'
            conn.execute(sql)

    def drop_database(self, name: str) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')

    def log_file(self) -> Path:
        """The server's jsonlog file (read by tests looking for structured events)."""
        return self.pgdata / "log" / "postgresql.json"
