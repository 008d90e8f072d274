"""`waybill token`: lifetimes are capped at 24 h for every role, with a clear CLI error (issue 7)."""

from __future__ import annotations

import secrets

import jwt
import pytest

from waybill import cli
from waybill.auth import MAX_TTL, mint

SECRET_ENV = "WAYBILL_JWT_SECRET"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    value = secrets.token_urlsafe(40)
    monkeypatch.setenv(SECRET_ENV, value)  # by environment, never argv
    return value


def _claims(token: str, secret: str) -> dict:
    return jwt.decode(token, secret, algorithms=["HS256"])


def test_default_lifetime_is_one_hour(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["token", "--role", "admin"]) == 0
    claims = _claims(capsys.readouterr().out.strip(), secret)
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize("role", ["admin", "platform_admin", "service", "anon"])
def test_twenty_four_hours_is_the_most_any_role_gets(
    secret: str, capsys: pytest.CaptureFixture[str], role: str
) -> None:
    assert cli.main(["token", "--role", role, "--ttl", "86400"]) == 0
    claims = _claims(capsys.readouterr().out.strip(), secret)
    assert claims["exp"] - claims["iat"] == 24 * 3600 == MAX_TTL
    with pytest.raises(SystemExit) as exited:
        cli.main(["token", "--role", role, "--ttl", "86401"])
    assert exited.value.code == 2
    err = capsys.readouterr()
    assert err.out == ""  # no token printed
    assert "--ttl" in err.err and "86400 seconds (24 h)" in err.err and "86401" in err.err


@pytest.mark.parametrize("ttl", ["0", "-5", "ten"])
def test_nonsense_lifetimes_are_refused(secret: str, capsys: pytest.CaptureFixture[str], ttl: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["token", "--role", "agent", "--sub", "1", "--ttl", ttl])
    assert exited.value.code == 2
    assert "--ttl" in capsys.readouterr().err


def test_the_library_refuses_longer_tokens_too(secret: str) -> None:
    with pytest.raises(ValueError, match="24 h"):
        mint(secret, "admin", ttl_seconds=MAX_TTL + 1)
