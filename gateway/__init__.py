"""gateway/: PostgREST v13's request contract over the `api` schema, for machines without PostgREST.

A stand-in with one job: the same requests give the same statuses, headers and bodies as PostgREST
would (shared/docs/POSTGREST-CONTRACT.md). It knows nothing of Waybill's domain, only the catalog of
the exposed schema, and holds no business logic.
"""

from __future__ import annotations

from gateway.app import Gateway, create_admin_app, create_app

__all__ = ["Gateway", "create_admin_app", "create_app"]
