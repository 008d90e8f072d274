"""The one accessor for the files Waybill ships beside its code, read with `importlib.resources`.

migrations/, sql/ and config/ live at the top of the repository; `waybill/data/` holds links to
them, and pyproject.toml's package-data puts their files into the wheel under `waybill/data/`. So the
same paths work in a checkout (editable install) and in a `pip install .` outside it. Every module
that reads one of these files goes through here; nothing else computes paths from the checkout.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

PACKAGE = "waybill"
# yoyo reads a package's migrations itself (its `package:<name>:<dir>` source, importlib.resources).
YOYO_MIGRATIONS = f"package:{PACKAGE}:data/migrations"


def _data(*parts: str) -> Traversable:
    return files(PACKAGE).joinpath("data", *parts)


def migrations_dir() -> Traversable:
    """migrations/: the yoyo files, their rollbacks, the post-apply*.sql hooks and landed.sha256."""
    return _data("migrations")


def migration_files() -> list[Traversable]:
    """Every forward migration file (NNNN.name.sql), in order; rollbacks and post-apply excluded."""
    return sorted(
        (
            f
            for f in migrations_dir().iterdir()
            if f.name.endswith(".sql")
            and not f.name.endswith(".rollback.sql")
            and not f.name.startswith("post-apply")
        ),
        key=lambda f: f.name,
    )


def post_apply() -> list[Traversable]:
    """The post-apply*.sql hooks, in the order yoyo runs them after every apply (name order)."""
    return sorted(
        (
            f
            for f in migrations_dir().iterdir()
            if f.name.startswith("post-apply") and f.name.endswith(".sql")
        ),
        key=lambda f: f.name,
    )


def schema_files() -> list[Traversable]:
    """sql/*.sql, the canonical schema, in name order (the order they are applied)."""
    return sorted((f for f in _data("sql").iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


def server_config() -> Traversable:
    """config/postgresql.waybill.conf, the server settings of every Waybill cluster."""
    return _data("config", "postgresql.waybill.conf")


def seed_sql() -> Traversable:
    """waybill/seed.sql, the set-based demo data generator."""
    return files(PACKAGE).joinpath("seed.sql")


def install_tag() -> str:
    """A short stable tag for this copy of Waybill (a checkout or an installed package), so two
    copies on one machine never share a default data directory."""
    # The folder holding the package: the checkout (as before packaging) or site-packages.
    return hashlib.sha1(str(Path(str(files(PACKAGE))).parent).encode()).hexdigest()[:8]


def checkout() -> Path | None:
    """The repository root when running from a checkout (tests, docs, pgTAP live only there), else None."""
    root = Path(str(files(PACKAGE))).resolve().parent
    return root if (root / "pyproject.toml").exists() and (root / "pgtap").is_dir() else None


def require_checkout(what: str) -> Path:
    root = checkout()
    if root is None:
        raise RuntimeError(f"{what} needs a checkout of the Waybill repository (not an installed package)")
    return root
