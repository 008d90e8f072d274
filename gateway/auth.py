"""JWT verification as PostgREST v13 does it: HS256, exp/nbf/iat with 30 s of skew, claim `role`.

No Authorization header (or not a Bearer one) -> the anonymous role. Every failure is a 401 with
`WWW-Authenticate: Bearer error="invalid_token", ...`: PGRST301 when the token cannot be decoded or
verified, PGRST303 when its claims are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt

from gateway.errors import ApiError, jwt_claims_error, jwt_decode_error

MIN_SECRET = 32
SKEW_SECONDS = 30
VERIFIED_CACHE_SIZE = 1024  # tokens whose signature and claims JSON were checked (per process)


@dataclass(frozen=True)
class AuthResult:
    role: str
    claims: dict[str, Any]  # the payload with `role` set: becomes request.jwt.claims
    authed: bool  # not the anonymous role (decides 401 vs 403 on 42501)

    @cached_property
    def claims_json(self) -> str:
        """request.jwt.claims as sent to SQL (rendered once per verified token, see Verifier)."""
        return json.dumps(self.claims, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for no or another scheme."""
    if authorization is None:
        return None
    scheme, _, rest = authorization.strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return rest.strip()


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Verifier:
    def __init__(self, secret: str, anon_role: str = "anon", audience: str | None = None) -> None:
        if len(secret) < MIN_SECRET:
            raise ValueError(f"The JWT secret must be at least {MIN_SECRET} characters long.")
        self.key = secret.encode()
        self.anon_role = anon_role
        self.audience = audience
        self._anon = self._result({})
        # token -> (its claims, its AuthResult): a token seen again skips the signature check and
        # the JSON parsing (the costly part); its time claims are checked on every request.
        self._verified: dict[str, tuple[dict[str, Any], AuthResult]] = {}

    def authenticate(self, authorization: str | None, now: float | None = None) -> AuthResult:
        token = bearer_token(authorization)
        if token is None:
            return self._anon
        now = time.time() if now is None else now
        known = self._verified.get(token)
        if known is not None:
            self._check_claims(known[0], int(now))
            return known[1]
        claims = self._verify(token, now)
        result = self._result(claims)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = (claims, result)
        return result

    def _result(self, claims: dict[str, Any]) -> AuthResult:
        if "role" in claims:
            raw = claims["role"]
            role = raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":"))
        else:
            role = self.anon_role
        return AuthResult(role=role, claims={**claims, "role": role}, authed=role != self.anon_role)

    def _verify(self, token: str, now: float) -> dict[str, Any]:
        if token == "":
            raise jwt_decode_error("Empty JWT is sent in Authorization header")
        parts = token.split(".")
        if len(parts) != 3:
            raise jwt_decode_error(f"Expected 3 parts in JWT; got {len(parts)}")
        try:
            header = json.loads(_b64(parts[0]))
            if not isinstance(header, dict):
                raise ValueError
        except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: a header of thousands of nested arrays, read before any signature check.
            raise jwt_decode_error("JWT cryptographic operation failed") from exc
        alg = header.get("alg")
        if alg == "none":
            raise jwt_decode_error(
                "Wrong or unsupported encoding algorithm",
                "JWT is unsecured but expected 'alg' was not 'none'",
            )
        if alg != "HS256":
            raise jwt_decode_error(
                "No suitable key or wrong key type", "None of the keys was able to decode the JWT"
            )
        try:
            payload = jwt.api_jws.decode_complete(token, self.key, algorithms=["HS256"])["payload"]
        except jwt.InvalidSignatureError as exc:
            raise jwt_decode_error(
                "No suitable key or wrong key type", "None of the keys was able to decode the JWT"
            ) from exc
        except jwt.PyJWTError as exc:
            raise jwt_decode_error("JWT cryptographic operation failed") from exc
        try:
            claims = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            claims = None
        if not isinstance(claims, dict):
            raise jwt_claims_error("Parsing claims failed")
        self._check_claims(claims, int(now))  # whole seconds now, claims as given (fractions too)
        return claims

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        """exp/nbf/iat compared as numbers, fractions included: a fractional time in the future is
        in the future (truncating it to 0 would accept any such token)."""

        def number(name: str) -> float | None:
            if name not in claims:
                return None
            if not _is_number(claims[name]):
                raise jwt_claims_error(f"The JWT '{name}' claim must be a number")
            value = claims[name]
            try:
                return float(value)
            except OverflowError:  # an integer beyond a double: past or future without end
                return math.inf if value > 0 else -math.inf

        exp = number("exp")
        if exp is not None and not now <= exp + SKEW_SECONDS:
            raise jwt_claims_error("JWT expired")
        nbf = number("nbf")
        if nbf is not None and not now >= nbf - SKEW_SECONDS:
            raise jwt_claims_error("JWT not yet valid")
        iat = number("iat")
        if iat is not None and not now >= iat - SKEW_SECONDS:
            raise jwt_claims_error("JWT issued at future")
        if "aud" in claims:
            aud = claims["aud"]
            if aud is None:
                ok = True
            elif isinstance(aud, str):
                ok = self.audience is None or aud == self.audience
            elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
                ok = not aud or self.audience is None or self.audience in aud
            else:
                raise jwt_claims_error("The JWT 'aud' claim must be a string or an array of strings")
            if not ok:
                raise jwt_claims_error("JWT not in audience")


__all__ = ["ApiError", "AuthResult", "Verifier", "bearer_token"]
