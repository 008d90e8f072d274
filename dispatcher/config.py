"""`waybill dispatcher`'s settings: environment variables (WAYBILL_ prefix), never secrets on argv.

The database login is the `dispatcher` role (sql/000_roles.sql), which can only call the
webhooks.* functions granted to it:
- WAYBILL_DISPATCHER_DATABASE_URL, a full URL as `dispatcher` (its password inside, or in
  WAYBILL_DISPATCHER_PASSWORD / PGPASSWORD); otherwise
- with DATABASE_URL: that server with user `dispatcher` and WAYBILL_DISPATCHER_PASSWORD (which
  `waybill migrate` sets as the role's password, like the authenticator's); otherwise
- the embedded cluster's socket as `dispatcher`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.daemon import Config
from dispatcher.guard import parse_allowlist
from waybill.auth import daemon_url


class DispatcherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYBILL_", extra="ignore")

    dispatcher_database_url: str | None = None
    dispatcher_password: str | None = None
    dispatcher_name: str | None = None
    webhook_allowlist: str = Field(
        default="", description="CIDRs the SSRF guard lets through, comma-separated."
    )
    dispatcher_status_host: str = "127.0.0.1"
    dispatcher_status_port: int | None = 3002
    dispatcher_lease_seconds: float = 20.0
    dispatcher_http_timeout: float = 10.0
    dispatcher_batch_size: int = 50
    dispatcher_per_subscription: int = 10
    dispatcher_max_in_flight: int = 200
    dispatcher_sweep_seconds: float = 30.0
    dispatcher_reconnect_seconds: float = 1.0
    dispatcher_pool_timeout: float = 5.0
    webhook_ca_file: str | None = Field(
        default=None,
        description="PEM file of CA certificates trusted for https receivers besides the system's.",
    )


def dispatcher_url(owner_url: str | None, s: DispatcherSettings, socket_url: str | None) -> str:
    """The dispatcher role's connection string (see the module docstring for the order)."""
    return daemon_url("dispatcher", s.dispatcher_database_url, s.dispatcher_password, owner_url, socket_url)


def build_config(db_url: str, s: DispatcherSettings, **overrides: object) -> Config:
    kw: dict[str, object] = dict(
        db_url=db_url,
        allowlist=parse_allowlist(s.webhook_allowlist),
        batch_size=s.dispatcher_batch_size,
        lease_seconds=s.dispatcher_lease_seconds,
        http_timeout=s.dispatcher_http_timeout,
        per_subscription=s.dispatcher_per_subscription,
        max_in_flight=s.dispatcher_max_in_flight,
        sweep_seconds=s.dispatcher_sweep_seconds,
        reconnect_seconds=s.dispatcher_reconnect_seconds,
        pool_timeout=s.dispatcher_pool_timeout,
        ca_file=s.webhook_ca_file or None,
        status_host=s.dispatcher_status_host,
        status_port=s.dispatcher_status_port,
    )
    if s.dispatcher_name:
        kw["name"] = s.dispatcher_name
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**kw)  # type: ignore[arg-type]
