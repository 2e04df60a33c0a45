"""Time-limited TURN credentials (the TURN REST API scheme coturn's use-auth-secret checks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any


def turn_credentials(
    secret: str, identity: str, ttl_s: int, now: float | None = None
) -> dict[str, Any]:
    """username = "<expiry>:<identity>", credential = base64(HMAC-SHA1(secret, username))."""
    expires = int((now if now is not None else time.time()) + ttl_s)
    username = f"{expires}:{identity}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {
        "username": username,
        "credential": base64.b64encode(digest).decode(),
        "expires_at": expires,
    }
