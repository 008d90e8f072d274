"""Security regressions (issue 7): secrets off argv, pool poisoning, deep nesting, size limits, JWT times."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import Gw
from waybill.cluster import Cluster, free_port
from waybill.settings import get_settings


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_make_run_launch_keeps_secret_and_password_off_argv(cluster: Cluster, gw: Gw, tmp_path: Path) -> None:
    """The gateway as `make run` starts it (waybill/stack.py), with DATABASE_URL and an authenticator
    password: neither the JWT secret nor the password may appear in /proc/<pid>/cmdline."""
    from waybill.stack import Stack

    password = "pw-" + os.urandom(12).hex()
    secret = "js-" + os.urandom(24).hex()
    owner_url = gw.owner_url  # a socket URL (trust): the password is carried but not needed
    settings = get_settings().model_copy(
        update={
            "database_url": owner_url,
            "authenticator_password": password,
            "jwt_secret": secret,
            "api_port": free_port(),
            "api_admin_port": free_port(),
            "data_dir": tmp_path,
        }
    )
    stack = Stack(settings)
    try:
        stack.start_http(owner_url)
        (child,) = stack.children
        argv = _cmdline(child.pid)
        assert "gateway" in argv
        assert secret not in argv and password not in argv, argv
        # ... and the gateway really uses them: a token signed with that secret is accepted.
        token = gw.token("service", secret=secret)
        r = httpx.get(
            f"http://127.0.0.1:{settings.api_port}/rpc/t_ctx",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert r.status_code == 200 and r.json()["user"] == "service", r.text
    finally:
        stack.stop()


def test_test_gateway_has_no_secret_on_argv(gw: Gw) -> None:
    argv = _cmdline(gw.proc.pid)
    assert gw.secret not in argv and "authenticator" not in argv, argv


def test_secret_on_the_command_line_is_refused() -> None:
    from gateway.__main__ import parse_args

    for option in ("--jwt-secret", "--db-url"):
        with pytest.raises(SystemExit):
            parse_args([option, "x" * 40])
        with pytest.raises(SystemExit):
            parse_args([f"{option}=" + "x" * 40])


def test_secret_file_must_be_private(tmp_path: Path) -> None:
    from gateway.__main__ import read_secret_file

    path = tmp_path / "secret"
    path.write_text("s" * 40 + "\n")
    path.chmod(0o644)
    with pytest.raises(SystemExit, match="chmod 600"):
        read_secret_file(path)
    path.chmod(0o600)
    assert read_secret_file(path) == "s" * 40


# -- pool poisoning ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/t_items?id=eq.1", "/rpc/t_add?a=1&b=2"])
def test_bad_role_tokens_do_not_poison_the_pool(gw: Gw, path: str) -> None:
    """Tokens naming roles that cannot be set, many times (past psycopg's prepare threshold on every
    pooled connection), then good requests of the same shape: every one must succeed."""
    bad = [gw.token("no_such_role_x"), gw.token("authenticator_is_not_me"), gw.token("postgres")]
    with httpx.Client(base_url=gw.base_url, timeout=30) as c:
        for i in range(60):
            r = c.get(path, headers={"Authorization": f"Bearer {bad[i % len(bad)]}"})
            assert r.status_code in (401, 403), r.text
        good = {"Authorization": f"Bearer {gw.token('service')}"}
        for _ in range(80):
            r = c.get(path, headers=good)
            assert r.status_code == 200, r.text
