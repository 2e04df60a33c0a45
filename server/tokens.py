"""The one place join tokens are issued and verified: Parloir's own HS256 JWT and, for Vonage
compatibility, opentok HS256 JWTs, legacy `T1==` tokens and vonage-video RS256 JWTs."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt

from server.projects import Project, ProjectRegistry
from server.vonage_ids import session_belongs_to
from signaling.permissions import Grant, Role

ISSUER = "parloir"
ALGORITHM = "HS256"
LEEWAY_S = 5
VONAGE_LEEWAY_S = 30
ROOM_ID_PATTERN = re.compile(r"^[A-Za-z0-9_~.\-]{1,255}$")
IDENTITY_MAX = 128
NAME_MAX = 64
CONNECTION_DATA_MAX = 1000


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
    """Parloir's own join token only (see TokenVerifier for every format)."""
    return TokenVerifier(secret).verify(token, now=now)


@dataclass
class TokenVerifier:
    secret: str
    projects: ProjectRegistry = field(default_factory=ProjectRegistry)

    def verify(self, token: str, *, now: float | None = None) -> Grant:
        """Return the grant a token carries, or raise TokenError saying why it admits nobody."""
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise TokenError("token-invalid", "token is missing or malformed")
        if token.startswith("T1=="):
            return self._legacy_t1(token, now)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenError("token-invalid", f"token is not valid: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm == "HS256" and unverified.get("ist") == "project":
            project = self.projects.by_api_key(str(unverified.get("iss")))
            if project is None:
                raise TokenError("token-invalid", "token names an unknown project")
            claims = self._decode(token, project.api_secret, "HS256", now, VONAGE_LEEWAY_S)
            return self._vonage_grant(claims, project)
        if algorithm == "RS256":
            project = self.projects.by_application(str(unverified.get("application_id")))
            if project is None or not project.public_key_pem:
                raise TokenError("token-invalid", "token names an unknown application")
            claims = self._decode(token, project.public_key_pem, "RS256", now, VONAGE_LEEWAY_S)
            return self._vonage_grant(claims, project)
        if algorithm == "HS256":
            claims = self._decode(
                token,
                self.secret,
                "HS256",
                now,
                LEEWAY_S,
                issuer=ISSUER,
                require=["exp", "iat", "sub", "iss"],
            )
            return self._parloir_grant(claims)
        raise TokenError("token-invalid", f"tokens signed with {algorithm!r} are not accepted")

    @staticmethod
    def _decode(
        token: str,
        key: str,
        algorithm: str,
        now: float | None,
        leeway: int,
        issuer: str | None = None,
        require: list[str] | None = None,
    ) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=issuer,
                leeway=leeway,
                options={"require": require or ["exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token-expired", "token has expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("token-invalid", "token signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("token-invalid", f"token is not valid: {exc}") from exc
        if now is not None and claims["exp"] + leeway < now:
            raise TokenError("token-expired", "token has expired")
        return claims

    @staticmethod
    def _role(value: Any) -> Role:
        try:
            return Role(str(value))
        except ValueError as exc:
            raise TokenError("token-invalid", "token names an unknown role") from exc

    def _parloir_grant(self, claims: dict[str, Any]) -> Grant:
        role = self._role(claims.get("role", ""))
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

    def _vonage_grant(self, claims: dict[str, Any], project: Project) -> Grant:
        scope = claims.get("scope")
        if scope is not None and scope != "session.connect":
            raise TokenError("token-invalid", "token scope is not session.connect")
        session_id = str(claims.get("session_id") or "")
        if not ROOM_ID_PATTERN.match(session_id) or not session_belongs_to(
            session_id, self.projects.ids_of(project)
        ):
            raise TokenError("token-invalid", "token names no session of its project")
        nonce = claims.get("jti") or claims.get("nonce") or secrets.token_hex(6)
        return _connection_grant(
            session_id=session_id,
            role=self._role(claims.get("role", "publisher")),
            expires_at=float(claims["exp"]),
            token_id=str(nonce),
            connection_data=str(claims.get("connection_data") or ""),
            layout=claims.get("initial_layout_class_list"),
            project=project.api_key,
        )

    def _legacy_t1(self, token: str, now: float | None) -> Grant:
        try:
            decoded = base64.b64decode(token[4:], validate=True).decode()
            signed_part, data_string = decoded.split(":", 1)
            header = {k: v[0] for k, v in parse_qs(signed_part).items()}
            data = {k: v[0] for k, v in parse_qs(data_string, keep_blank_values=True).items()}
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise TokenError("token-invalid", "T1 token is malformed") from exc
        project = self.projects.by_api_key(header.get("partner_id", ""))
        if project is None:
            raise TokenError("token-invalid", "token names an unknown project")
        expected = hmac.new(project.api_secret.encode(), data_string.encode(), hashlib.sha1)
        if not hmac.compare_digest(expected.hexdigest(), header.get("sig", "")):
            raise TokenError("token-invalid", "token signature does not verify")
        try:
            expires_at = float(data["expire_time"])
        except (KeyError, ValueError) as exc:
            raise TokenError("token-invalid", "T1 token has no expiry") from exc
        if expires_at + VONAGE_LEEWAY_S < (now if now is not None else time.time()):
            raise TokenError("token-expired", "token has expired")
        session_id = data.get("session_id", "")
        if not ROOM_ID_PATTERN.match(session_id) or not session_belongs_to(
            session_id, self.projects.ids_of(project)
        ):
            raise TokenError("token-invalid", "token names no session of its project")
        return _connection_grant(
            session_id=session_id,
            role=self._role(data.get("role", "publisher")),
            expires_at=expires_at,
            token_id=data.get("nonce", ""),
            connection_data=data.get("connection_data", ""),
            layout=data.get("initial_layout_class_list", ""),
            project=project.api_key,
        )


def _connection_grant(
    *,
    session_id: str,
    role: Role,
    expires_at: float,
    token_id: str,
    connection_data: str,
    layout: Any,
    project: str,
) -> Grant:
    if len(connection_data) > CONNECTION_DATA_MAX:
        raise TokenError("token-invalid", "connection_data exceeds 1000 characters")
    if isinstance(layout, str):
        classes = tuple(c for c in layout.split() if c)
    elif isinstance(layout, list):
        classes = tuple(str(c) for c in layout if c)
    else:
        classes = ()
    # Vonage tokens carry no identity: each token is its own connection identity.
    name_match = re.search(r"(?:^|[&,;\s])name=([^&,;]+)", connection_data)
    name = name_match.group(1).strip() if name_match else "Guest"
    return Grant(
        room=session_id,
        identity=f"token-{token_id}"[:IDENTITY_MAX],
        role=role,
        name=name[:NAME_MAX],
        expires_at=expires_at,
        token_id=token_id,
        connection_data=connection_data,
        layout_classes=classes,
        project=project,
    )
