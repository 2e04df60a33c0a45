"""Vonage credentials: project JWTs and client tokens, right or forged in every way we could think
of."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
from hypothesis import strategies as st

from tests.support.fuzz.values import json_values, weighted


def vonage_jwt(api_key: str, secret: str, **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": api_key, "ist": "project", "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


def client_token(api_key: str, secret: str, session_id: str, role: str = "publisher") -> str:
    """An opentok client token (HS256 JWT) that joins `session_id` over /rtc."""
    return vonage_jwt(api_key, secret, scope="session.connect", session_id=session_id, role=role)


def b64url(data: bytes) -> str:
    """Unpadded base64url, as in a JWT."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def vonage_auth(api_key: str, secret: str) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """The X-OPENTOK-AUTH header, right or wrong in every way we could think of."""
    now = int(time.time())
    forged = [
        ("expired", lambda: vonage_jwt(api_key, secret, iat=now - 7200, exp=now - 3600)),
        ("not yet valid", lambda: vonage_jwt(api_key, secret, iat=now + 3600, exp=now + 7200)),
        ("wrong secret", lambda: vonage_jwt(api_key, "wrong-" + secret)),
        ("unknown project", lambda: vonage_jwt("999999", secret)),
        ("not a project token", lambda: vonage_jwt(api_key, secret, ist="account")),
        (
            "alg none",
            lambda: jwt.encode(
                {"iss": api_key, "ist": "project", "iat": now, "exp": now + 60},
                "",
                algorithm="none",
            ),
        ),
        (
            "RS256 garbage",
            lambda: ".".join(
                (
                    b64url(b'{"alg":"RS256","typ":"JWT"}'),
                    b64url(
                        json.dumps({"application_id": "x", "iat": now, "exp": now + 60}).encode()
                    ),
                    b64url(b"sig"),
                )
            ),
        ),
        ("header not JSON", lambda: ".".join((b64url(b"{not json"), b64url(b"{}"), b64url(b"x")))),
        (
            "payload a list",
            lambda: ".".join((b64url(b'{"alg":"HS256"}'), b64url(b"[1,2]"), b64url(b"x"))),
        ),
        ("not a JWT", lambda: "definitely-not-a-jwt"),
        ("empty", lambda: ""),
    ]
    junk = json_values(4, long=False)
    junk_claims = st.fixed_dictionaries(
        {},
        optional={
            "iss": st.just(api_key) | junk,
            "ist": st.just("project") | junk,
            "iat": st.just(now) | junk,
            "exp": st.just(now + 60) | junk,
        },
    ).map(lambda claims: ("junk claims", lambda: _signed(claims, secret)))
    valid = st.just(("valid", lambda: vonage_jwt(api_key, secret)))
    chosen = weighted((10, valid), (2, st.sampled_from(forged)), (1, junk_claims))
    placement = st.sampled_from(["x-opentok-auth"] * 6 + ["bearer", "none"])

    def header(pair: tuple[tuple[str, Callable[[], str]], str]) -> tuple[tuple[str, str], ...]:
        (_, make), where = pair
        token = make()
        if where == "none":
            return ()
        if where == "bearer":
            return (("Authorization", f"Bearer {token}"),)
        return (("X-OPENTOK-AUTH", token),)

    return st.tuples(chosen, placement).map(header)


def _signed(claims: dict[str, Any], secret: str) -> str:
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    try:
        payload = b64url(json.dumps(claims).encode())
    except ValueError:
        payload = b64url(b"{}")
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"
