"""The one place join tokens are issued and verified."""

from __future__ import annotations

import re
import secrets
import time

import jwt

from signaling.permissions import Grant, Role

ISSUER = "parloir"
ALGORITHM = "HS256"
LEEWAY_S = 5
ROOM_ID_PATTERN = re.compile(r"^[A-Za-z0-9_~.\-]{1,255}$")
IDENTITY_MAX = 128
NAME_MAX = 64


class TokenError(Exception):
    """The token does not admit anyone: the reason is safe to show to the client."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def issue_token(
    secret: str,
    *,
    room: str,
    identity: str,
    role: Role,
    name: str | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    if not ROOM_ID_PATTERN.match(room):
        raise ValueError(f"room id {room!r} must match {ROOM_ID_PATTERN.pattern}")
    if not identity or len(identity) > IDENTITY_MAX:
        raise ValueError(f"identity must be 1..{IDENTITY_MAX} characters")
    if ttl_s <= 0:
        raise ValueError("ttl must be positive")
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "room": room,
        "sub": identity,
        "role": role.value,
        "name": (name or identity)[:NAME_MAX],
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, now: float | None = None) -> Grant:
    """Return the grant a token carries, or raise TokenError saying why it admits nobody."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise TokenError("token-invalid", "token is missing or malformed")
    options = {"require": ["exp", "iat", "sub", "iss"]}
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            leeway=LEEWAY_S,
            options=options,
        )
        if now is not None and claims["exp"] + LEEWAY_S < now:
            raise jwt.ExpiredSignatureError
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token-expired", "token has expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenError("token-invalid", "token signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("token-invalid", f"token is not valid: {exc}") from exc
    try:
        role = Role(claims.get("role", ""))
    except ValueError as exc:
        raise TokenError("token-invalid", "token names an unknown role") from exc
    room = claims.get("room")
    identity = claims["sub"]
    if not isinstance(room, str) or not ROOM_ID_PATTERN.match(room):
        raise TokenError("token-invalid", "token names no valid room")
    if not isinstance(identity, str) or not identity or len(identity) > IDENTITY_MAX:
        raise TokenError("token-invalid", "token names no valid identity")
    name = claims.get("name")
    return Grant(
        room=room,
        identity=identity,
        role=role,
        name=str(name)[:NAME_MAX] if name else identity,
        expires_at=float(claims["exp"]),
        token_id=str(claims.get("jti", "")),
    )
