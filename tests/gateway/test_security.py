"""Security regressions (issue 7): secrets off argv, pool poisoning, deep nesting, size limits, JWT times."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import (
    Gw,
    assert_error,
    dbname_of,
    install_fixtures,
    raw_token,
    start_gateway,
    stop_gateway,
    wait_until,
)
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


@pytest.fixture
def one_conn_gw(cluster: Cluster, db_url: str, tmp_path: Path) -> Iterator[Gw]:
    """A gateway with a pool of one connection: every request meets the same psycopg state."""
    install_fixtures(db_url)
    gw = start_gateway(cluster, dbname_of(db_url), tmp_path / "gateway.log", pool_size=1)
    try:
        yield gw
    finally:
        stop_gateway(gw)


@pytest.mark.parametrize("path", ["/t_items?id=eq.1", "/rpc/t_add?a=1&b=2"])
def test_bad_role_tokens_do_not_poison_the_pool(one_conn_gw: Gw, path: str) -> None:
    """The sequence that poisoned the pool: good requests until psycopg is about to prepare the
    statements (its threshold is 5 runs), then tokens naming roles that cannot be set, then good
    requests of the same shape: every one must succeed (was 400 26000 prepared statement "_pg3_1"
    does not exist)."""
    gw = one_conn_gw
    good = {"Authorization": f"Bearer {gw.token('service')}"}
    bad = [gw.token("no_such_role_x"), gw.token("postgres")]
    with httpx.Client(base_url=gw.base_url, timeout=30) as c:
        for round_ in range(3):
            for _ in range(4 + round_):
                assert c.get(path, headers=good).status_code == 200
            for i in range(7):
                r = c.get(path, headers={"Authorization": f"Bearer {bad[i % 2]}"})
                assert r.status_code in (401, 403), r.text
            for _ in range(10):
                r = c.get(path, headers=good)
                assert r.status_code == 200, r.text


def test_role_revoked_after_the_cache_load_does_not_poison_the_pool(one_conn_gw: Gw) -> None:
    """A role the cache lists as settable is revoked before the next reload: it gets PostgREST's
    403, and later requests on the same (single) connection all succeed. (The gateway closes a
    connection whose pipeline failed before its statement ran; which psycopg states would otherwise
    go out of step could not be reproduced deterministically here, so this guards the outcome.)"""
    gw = one_conn_gw
    role = f"t_gone_{os.getpid()}_{os.urandom(3).hex()}"
    with gw.db() as conn:
        conn.execute(f"create role {role} nologin")
        conn.execute(f"grant {role} to authenticator")
        # A setting of its own makes its set_config batch a statement of its own shape too.
        conn.execute(f"alter role {role} set work_mem = '4MB'")
        conn.execute(f"grant usage on schema api, ops to {role}")
        conn.execute(f"grant execute on function api.t_add(int, int) to {role}")
        gw.notify_reload(conn)
    try:
        path = "/rpc/t_add?a=1&b=2&limit=5"  # a statement shape of its own too
        with httpx.Client(base_url=gw.base_url, timeout=30) as c:
            gone = {"Authorization": f"Bearer {gw.token(role)}"}
            wait_until(lambda: c.get(path, headers=gone).status_code == 200, what="the new role in the cache")
            for _ in range(3):  # 4 runs: the next one of these shapes is the one psycopg prepares
                assert c.get(path, headers=gone).status_code == 200
            with gw.db() as conn:
                conn.execute(f"revoke {role} from authenticator")  # no reload: the cache still lists it
            assert_error(c.get(path, headers=gone), 403, "42501")
            good = {"Authorization": f"Bearer {gw.token('service')}"}
            for _ in range(15):
                r = c.get(path, headers=good)
                assert r.status_code == 200, r.text
    finally:
        with gw.db() as conn:
            conn.execute(f"drop owned by {role}")
            conn.execute(f"drop role {role}")


def test_unknown_role_is_still_postgrest_401_and_403(gw: Gw) -> None:
    with gw.client("no_such_role_y") as c:
        assert_error(c.get("/t_items?id=eq.1"), 401, "22023")
    with gw.client("postgres") as c:  # exists, but authenticator may not become it
        assert_error(c.get("/t_items?id=eq.1"), 403, "42501")


# -- deep nesting --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_deeply_nested_jwt_header_is_401_not_500(gw: Gw) -> None:
    header = _b64(b"[" * 5000 + b"]" * 5000)
    token = f"{header}.{_b64(b'{}')}.{_b64(b'sig')}"
    r = httpx.get(gw.base_url + "/rpc/t_ctx", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert_error(r, 401, "PGRST301")


def test_deeply_nested_signed_claims_are_401_not_500(gw: Gw) -> None:
    token = raw_token({"alg": "HS256", "typ": "JWT"}, b"[" * 5000 + b"]" * 5000, gw.secret)
    r = httpx.get(gw.base_url + "/rpc/t_ctx", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert_error(r, 401, "PGRST303")


def test_or_nested_300_deep_is_400_not_500(anon: httpx.Client) -> None:
    deep = "or(" * 299 + "id.eq.1" + ")" * 299
    assert_error(anon.get("/t_items", params={"or": f"({deep})"}), 400, "PGRST100")
    shallow = "or(" * 10 + "id.eq.1" + ")" * 10  # a reasonable depth still works
    assert anon.get("/t_items", params={"or": f"({shallow})"}).json()[0]["id"] == 1


def test_json_body_nested_2000_deep_is_400_not_500(svc: httpx.Client) -> None:
    body = '{"j": ' + "[" * 2000 + "]" * 2000 + "}"
    r = svc.post("/rpc/t_json", content=body, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "PGRST102")


# -- size limits ---------------------------------------------------------------------------------


def test_body_over_the_limit_is_413(svc: httpx.Client) -> None:
    big = '{"j": "' + "x" * (1024 * 1024) + '"}'
    assert_error(
        svc.post("/rpc/t_json", content=big, headers={"Content-Type": "application/json"}), 413, "PGRSTX13"
    )

    def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(20):
            yield b"x" * 65536

    assert_error(svc.post("/rpc/t_json", content=chunks()), 413, "PGRSTX13")
    # Just under the limit is served.
    ok = '{"j": "' + "x" * 1000 + '"}'
    assert (
        svc.post("/rpc/t_json", content=ok, headers={"Content-Type": "application/json"}).status_code == 200
    )


def test_headers_over_the_limit_are_431(anon: httpx.Client) -> None:
    assert_error(anon.get("/t_items", headers={"X-Big": "y" * 20_000}), 431, "PGRSTX31")
    assert anon.get("/t_items", headers={"X-Big": "y" * 2_000}).status_code == 200


# -- JWT times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "message"), [("nbf", "JWT not yet valid"), ("iat", "JWT issued at future")]
)
def test_fractional_future_nbf_iat_are_refused(gw: Gw, claim: str, message: str) -> None:
    future = time.time() + 3600.5
    token = raw_token({"alg": "HS256"}, json.dumps({"role": "service", claim: future}).encode(), gw.secret)
    r = httpx.get(gw.base_url + "/rpc/t_ctx", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert assert_error(r, 401, "PGRST303")["message"] == message
    # Within the 30 s skew, a fractional time is fine.
    near = time.time() + 10.5
    token = raw_token({"alg": "HS256"}, json.dumps({"role": "service", claim: near}).encode(), gw.secret)
    r = httpx.get(gw.base_url + "/rpc/t_ctx", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text


# -- X-Request-Id ---------------------------------------------------------------------------------


def test_two_request_ids_first_wins_everywhere(gw: Gw) -> None:
    """The first X-Request-Id is the request's id: in the response, the access log and SQL."""
    headers = [("X-Request-Id", "first-id-1"), ("X-Request-Id", "second-id-2")]
    with gw.client("service") as c:
        r = c.get("/rpc/t_ctx", headers=headers)
    assert r.status_code == 200
    assert r.headers.get_list("x-request-id") == ["first-id-1"]
    assert r.json()["request_id"] == "first-id-1"
    assert r.json()["headers"]["x-request-id"] == "first-id-1"
    wait_until(
        lambda: [
            x
            for x in gw.log_lines()
            if x["event"] == "http_request_completed" and x.get("request_id") == "first-id-1"
        ],
        what="the access log line",
    )
    assert not [x for x in gw.log_lines() if x.get("request_id") == "second-id-2"]
