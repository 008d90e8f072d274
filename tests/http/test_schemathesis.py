"""schemathesis against the gateway's own OpenAPI document, as an admin: no 500s, 4-key error bodies."""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.http.conftest import Api

ERROR_KEYS = {"code", "message", "details", "hint"}


@pytest.mark.skipif(bool(os.environ.get("WAYBILL_API_URL")), reason="fuzzes the local gateway's own document")
def test_openapi_fuzz_admin(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.token('admin')}"}
    document = httpx.get(api.base_url + "/", headers=headers, timeout=30)
    assert document.status_code == 200
    assert document.headers["content-type"].startswith("application/openapi+json")
    schema = schemathesis.openapi.from_dict(document.json())
    failures: list[str] = []
    checked = 0

    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def run(case) -> None:
            response = case.call(base_url=api.base_url, headers=headers)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                )
            elif response.status_code >= 400:
                body = response.json()
                if set(body) != ERROR_KEYS:
                    failures.append(f"{case.method} {case.formatted_path}: error body keys {sorted(body)}")

        run()
        checked += 1
    assert checked >= 10, f"only {checked} operations in the document"
    print(
        f"\nschemathesis: {checked} operations x up to 15 examples, admin token, no 500s, 4-key error bodies"
    )
    assert not failures, "\n".join(failures[:20])
