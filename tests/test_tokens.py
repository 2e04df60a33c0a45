"""The one token verifier."""

from __future__ import annotations

import time

import jwt
import pytest

from server.tokens import TokenError, issue_token, verify_token
from signaling.permissions import Role

SECRET = "s" * 40


def test_issued_token_carries_room_identity_role_and_name() -> None:
    grant = verify_token(
        SECRET, issue_token(SECRET, room="r1", identity="u1", role=Role.MODERATOR, name="Ada")
    )
    assert (grant.room, grant.identity, grant.role, grant.name) == (
        "r1",
        "u1",
        Role.MODERATOR,
        "Ada",
    )
    assert grant.expires_at > time.time() + 3500
    assert grant.token_id


def test_expired_token_is_refused_after_the_leeway() -> None:
    token = issue_token(
        SECRET, room="r", identity="u", role=Role.PUBLISHER, ttl_s=10, now=time.time() - 20
    )
    with pytest.raises(TokenError) as caught:
        verify_token(SECRET, token)
    assert caught.value.code == "token-expired"


def test_token_within_clock_skew_leeway_is_accepted() -> None:
    token = issue_token(
        SECRET, room="r", identity="u", role=Role.PUBLISHER, ttl_s=10, now=time.time() - 12
    )
    assert verify_token(SECRET, token).identity == "u"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        jwt.encode(
            {
                "iss": "parloir",
                "room": "r",
                "sub": "u",
                "role": "publisher",
                "iat": 0,
                "exp": 4102444800,
            },
            "other-secret-" + "x" * 30,
            algorithm="HS256",
        ),
        jwt.encode(
            {
                "iss": "parloir",
                "room": "r",
                "sub": "u",
                "role": "admin",
                "iat": 0,
                "exp": 4102444800,
            },
            SECRET,
            algorithm="HS256",
        ),
        jwt.encode(
            {
                "iss": "someone",
                "room": "r",
                "sub": "u",
                "role": "publisher",
                "iat": 0,
                "exp": 4102444800,
            },
            SECRET,
            algorithm="HS256",
        ),
        jwt.encode(
            {
                "iss": "parloir",
                "room": "../x",
                "sub": "u",
                "role": "publisher",
                "iat": 0,
                "exp": 4102444800,
            },
            SECRET,
            algorithm="HS256",
        ),
        jwt.encode(
            {"iss": "parloir", "room": "r", "sub": "u", "role": "publisher", "iat": 0},
            SECRET,
            algorithm="HS256",
        ),
    ],
    ids=["empty", "garbage", "forged", "unknown-role", "wrong-issuer", "bad-room", "no-expiry"],
)
def test_invalid_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError) as caught:
        verify_token(SECRET, token)
    assert caught.value.code == "token-invalid"


def test_issuing_refuses_bad_room_ids() -> None:
    with pytest.raises(ValueError):
        issue_token(SECRET, room="a/b", identity="u", role=Role.PUBLISHER)


def test_only_subscribers_cannot_publish() -> None:
    assert [r for r in Role if not r.can_publish] == [Role.SUBSCRIBER]
    assert [r for r in Role if not r.can_subscribe] == [Role.PUBLISHER_ONLY]


def test_turn_credentials_follow_the_turn_rest_scheme_coturn_checks() -> None:
    import base64
    import hashlib
    import hmac

    from server.turn import turn_credentials

    creds = turn_credentials("coturn-secret", "student-9", ttl_s=3600, now=1_000_000)
    assert creds["username"] == "1003600:student-9" and creds["expires_at"] == 1_003_600
    expected = hmac.new(b"coturn-secret", b"1003600:student-9", hashlib.sha1).digest()
    assert base64.b64decode(creds["credential"]) == expected
