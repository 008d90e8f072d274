"""Shared settings: environment variables with the WAYBILL_ prefix, plus DATABASE_URL."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from waybill import resources

# The repository root: tests and dev-only commands (errors-doc) write there. Files Waybill reads at
# run time (migrations, sql/, config, seed) go through waybill/resources.py, never through this.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """Where the embedded cluster lives when WAYBILL_DATA_DIR is not set.

    The server must be able to reach this folder. As root the server runs as `postgres`, which often
    cannot enter the checkout (a private home directory), so root's default is under /var/lib; any
    other user runs the server as themselves, under their own state directory. The checkout's (or the
    installed package's) path is hashed in so two copies never share a cluster.
    """
    tag = resources.install_tag()
    if os.geteuid() == 0:
        return Path("/var/lib/waybill") / tag
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "waybill" / tag


class Settings(BaseSettings):
    """Every knob of Waybill. Read once per process with `get_settings()`."""

    model_config = SettingsConfigDict(env_prefix="WAYBILL_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "WAYBILL_DATABASE_URL"),
        description="Use this server instead of the embedded cluster (owner role, runs migrations).",
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    db_name: str = "waybill"
    pg_bin: Path | None = Field(
        default=None, description="Folder of initdb/pg_ctl/postgres; found automatically if unset."
    )
    api_host: str = "127.0.0.1"
    api_port: int = 3000
    api_admin_port: int = 3001
    jwt_secret: str | None = Field(
        default=None,
        description="HS256 secret (>= 32 chars); generated per data directory if unset.",
    )
    authenticator_password: str | None = Field(
        default=None,
        description="authenticator's login password, set on the role by `waybill migrate` and `waybill run`"
        " (with DATABASE_URL, `waybill run` generates one into the data directory when this is unset).",
    )
    log_level: str = "info"
    slow_query_ms: float = 500.0


def get_settings() -> Settings:
    return Settings()
