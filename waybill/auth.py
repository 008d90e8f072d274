"""JWTs for the HTTP API: the HS256 secret and `waybill token`.

The secret is WAYBILL_JWT_SECRET when set (>= 32 characters); otherwise one is generated once per
data directory and kept there (0600), never in the repository.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from waybill.settings import Settings

if TYPE_CHECKING:
    from waybill.cluster import Cluster

# The request roles a token may carry; sql/000_roles.sql creates them and grants them to authenticator
# (tests/test_roles.py proves this tuple equals that set).
ROLES = ("admin", "platform_admin", "service", "agent", "anon")
MIN_SECRET = 32
DEFAULT_TTL = 3600  # seconds: `waybill token` and the `make run` banner
MAX_TTL = 24 * 3600  # no token of any role lives longer: a leaked one expires within a day


def generated_secret(path: Path, nbytes: int) -> str:
    """The secret kept in `path` (0600, the invoking user's), generated once on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()


def jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret:
        if len(settings.jwt_secret) < MIN_SECRET:
            raise ValueError(f"WAYBILL_JWT_SECRET must have at least {MIN_SECRET} characters")
        return settings.jwt_secret
    return generated_secret(Path(settings.data_dir) / "jwt-secret", 48)


def login_password(settings: Settings, role: str, given: str | None) -> str:
    """A login role's password on an existing server (authenticator, dispatcher): `given` (from the
    environment) when set, else one generated once into `<data dir>/<role>-password` (0600)."""
    return given or generated_secret(Path(settings.data_dir) / f"{role}-password", 32)


def role_login(
    settings: Settings, cluster: Cluster | None, owner_url: str, role: str, given: str | None
) -> tuple[str, dict[str, str]]:
    """How a login role of `waybill run`'s children (authenticator, dispatcher, metrics_cache) reaches
    the database: its URL and the environment it needs.

    Embedded: the socket (trust). An existing server: `given` (from the environment), else a password
    generated once into the data directory (0600); set on the role at each start and passed to the
    child as PGPASSWORD, never in its argv."""
    if cluster is not None:
        return cluster.url(user=role), {}
    from waybill import migrate

    password = login_password(settings, role, given)
    migrate.set_login_password(owner_url, role, password)
    params = conninfo_to_dict(owner_url) | {"user": role}
    params.pop("password", None)
    return make_conninfo(**params), {"PGPASSWORD": password}


def daemon_url(
    role: str, own_url: str | None, password: str | None, owner_url: str | None, socket_url: str | None
) -> str:
    """A daemon's login URL (dispatcher, metrics_cache), first found of: `own_url`
    (WAYBILL_<ROLE>_DATABASE_URL); the owner's server (DATABASE_URL) as `role`, which then needs
    `password` (WAYBILL_<ROLE>_PASSWORD); the embedded cluster's socket. A `password` given is added
    to a URL without one."""
    variable = f"WAYBILL_{role.upper()}"
    if own_url:
        params = conninfo_to_dict(own_url)
    elif owner_url:
        if not password:
            raise ValueError(f"with DATABASE_URL, set {variable}_PASSWORD (the {role} role's password)")
        params = conninfo_to_dict(owner_url) | {"user": role}
    elif socket_url:
        params = conninfo_to_dict(socket_url)
    else:
        raise ValueError(f"no database: set {variable}_DATABASE_URL or DATABASE_URL")
    if password and "password" not in params:
        params["password"] = password
    return make_conninfo(**params)


def check_ttl(ttl_seconds: int) -> int:
    """A token lifetime `waybill token` accepts: 1 s to MAX_TTL."""
    if not 0 < ttl_seconds <= MAX_TTL:
        raise ValueError(f"--ttl must be 1 to {MAX_TTL} seconds (24 h), got {ttl_seconds}")
    return ttl_seconds


def mint(secret: str, role: str, sub: str | None = None, ttl_seconds: int = DEFAULT_TTL) -> str:
    """An HS256 token with the claims PostgREST reads: role (+ sub, iat, exp). Never beyond MAX_TTL;
    a negative ttl (an already expired token) is for tests."""
    if ttl_seconds > MAX_TTL:
        raise ValueError(f"a token lives at most {MAX_TTL} seconds (24 h), not {ttl_seconds}")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role == "agent" and not sub:
        raise ValueError("an agent token needs --sub (the delivery agent id)")
    now = int(time.time())
    claims: dict = {"role": role, "iat": now, "exp": now + ttl_seconds}
    if sub:
        claims["sub"] = str(sub)
    return jwt.encode(claims, secret, algorithm="HS256")
