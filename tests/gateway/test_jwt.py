"""JWT handling: PostgREST v13's codes, statuses and WWW-Authenticate headers."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from tests.gateway.conftest import Gw, assert_error, raw_token

INVALID = 'Bearer error="invalid_token", error_description='


def _get(gw: Gw, auth: str | None, path: str = "/rpc/t_ctx") -> httpx.Response:
    headers = {"Authorization": auth} if auth is not None else {}
    return httpx.get(gw.base_url + path, headers=headers, timeout=10)


def _invalid(r: httpx.Response, code: str, message: str, details: str | None = None) -> None:
    body = assert_error(r, 401, code)
    assert body["message"] == message
    assert body["details"] == details
    assert r.headers["www-authenticate"] == f'{INVALID}"{message}"'
    assert r.headers["proxy-status"] == f"PostgREST; error={code}"


def test_no_token_is_anon(gw: Gw) -> None:
    r = _get(gw, None)
    assert r.status_code == 200
    assert r.json()["user"] == "anon"
    assert r.json()["claims"] == {"role": "anon"}


def test_other_scheme_is_anon(gw: Gw) -> None:
    r = _get(gw, "Basic dXNlcjpwYXNz")
    assert r.status_code == 200 and r.json()["user"] == "anon"


def test_valid_token_sets_role_and_claims(gw: Gw) -> None:
    r = _get(gw, f"Bearer {gw.token('service', sub='42')}")
    assert r.status_code == 200
    body = r.json()
    assert body["user"] == "service"
    assert body["claims"]["role"] == "service" and body["claims"]["sub"] == "42"


def test_token_without_role_claim_is_anon(gw: Gw) -> None:
    r = _get(gw, f"Bearer {gw.token(None, sub='x')}")
    assert r.status_code == 200
    assert r.json()["user"] == "anon"
    assert r.json()["claims"]["role"] == "anon"


@pytest.mark.parametrize("auth", ["Bearer", "bearer"])
def test_empty_bearer(gw: Gw, auth: str) -> None:
    _invalid(_get(gw, auth), "PGRST301", "Empty JWT is sent in Authorization header")


def test_not_three_parts(gw: Gw) -> None:
    token = gw.token("service").rsplit(".", 1)[0]
    _invalid(_get(gw, f"Bearer {token}"), "PGRST301", "Expected 3 parts in JWT; got 2")


def test_garbage(gw: Gw) -> None:
    r = _get(gw, "Bearer quifquirndsjagnrgniur.fonvoienqhhdj.iuqvnvhojah")
    _invalid(r, "PGRST301", "JWT cryptographic operation failed")


def test_bad_signature(gw: Gw) -> None:
    token = gw.token("service", secret="another secret of at least thirty-two chars")
    _invalid(
        _get(gw, f"Bearer {token}"),
        "PGRST301",
        "No suitable key or wrong key type",
        "None of the keys was able to decode the JWT",
    )


def test_alg_none(gw: Gw) -> None:
    token = jwt.encode({"role": "admin"}, None, algorithm="none")
    _invalid(
        _get(gw, f"Bearer {token}"),
        "PGRST301",
        "Wrong or unsupported encoding algorithm",
        "JWT is unsecured but expected 'alg' was not 'none'",
    )


def test_other_hmac_algorithm_is_refused(gw: Gw) -> None:
    token = jwt.encode({"role": "admin"}, gw.secret, algorithm="HS512")
    _invalid(
        _get(gw, f"Bearer {token}"),
        "PGRST301",
        "No suitable key or wrong key type",
        "None of the keys was able to decode the JWT",
    )


def test_expired_beyond_skew(gw: Gw) -> None:
    now = int(time.time())
    _invalid(_get(gw, f"Bearer {gw.token('service', exp=now - 35)}"), "PGRST303", "JWT expired")


def test_expired_within_skew_is_accepted(gw: Gw) -> None:
    now = int(time.time())
    assert _get(gw, f"Bearer {gw.token('service', exp=now - 10)}").status_code == 200


def test_not_yet_valid(gw: Gw) -> None:
    now = int(time.time())
    _invalid(_get(gw, f"Bearer {gw.token('service', nbf=now + 35)}"), "PGRST303", "JWT not yet valid")
    assert _get(gw, f"Bearer {gw.token('service', nbf=now + 10)}").status_code == 200


def test_issued_in_future(gw: Gw) -> None:
    now = int(time.time())
    _invalid(_get(gw, f"Bearer {gw.token('service', iat=now + 35)}"), "PGRST303", "JWT issued at future")


def test_exp_not_a_number(gw: Gw) -> None:
    token = gw.token("service", exp="tomorrow")
    _invalid(_get(gw, f"Bearer {token}"), "PGRST303", "The JWT 'exp' claim must be a number")


def test_claims_not_an_object(gw: Gw) -> None:
    token = raw_token({"alg": "HS256", "typ": "JWT"}, b"[1, 2]", gw.secret)
    _invalid(_get(gw, f"Bearer {token}"), "PGRST303", "Parsing claims failed")


def test_bad_aud(gw: Gw) -> None:
    token = gw.token("service", aud=5)
    _invalid(
        _get(gw, f"Bearer {token}"), "PGRST303", "The JWT 'aud' claim must be a string or an array of strings"
    )


def test_role_that_does_not_exist(gw: Gw) -> None:
    r = _get(gw, f"Bearer {gw.token('no_such_role_here')}")
    body = assert_error(r, 401, "22023")
    assert body["message"] == 'role "no_such_role_here" does not exist'
    assert r.headers["www-authenticate"] == "Bearer"


def test_role_not_granted_to_authenticator(gw: Gw) -> None:
    # dispatcher exists but authenticator may not become it.
    r = _get(gw, f"Bearer {gw.token('dispatcher')}")
    assert_error(r, 403, "42501")
    assert "www-authenticate" not in r.headers


def test_role_without_privilege(gw: Gw) -> None:
    r = _get(gw, f"Bearer {gw.token('service')}", "/rpc/t_private")
    assert_error(r, 403, "42501")
    assert "www-authenticate" not in r.headers


def test_anon_without_privilege_gets_401(gw: Gw) -> None:
    r = _get(gw, None, "/rpc/t_private")
    assert_error(r, 401, "42501")
    assert r.headers["www-authenticate"] == "Bearer"


def test_jwt_is_checked_before_anything_else(gw: Gw) -> None:
    r = _get(gw, "Bearer a.b", "/no/such/path")
    assert_error(r, 401, "PGRST301")
