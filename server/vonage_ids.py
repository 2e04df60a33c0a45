"""Vonage-shaped session ids: `1_` + base64url("1~{api_key}~{location}~{created}~{random}~").

The SDKs decode the id and require the project's API key (or application id) among its `~`
parts before they will generate a client token for it.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time


def new_session_id(project_id: str, location: str = "") -> str:
    # A random part made of letters only can never equal a numeric API key, and the `r` prefix
    # keeps it from equalling any other key.
    random_part = "r" + secrets.token_hex(12)
    created = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())
    raw = f"1~{project_id}~{location}~{created}~{random_part}~"
    encoded = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    return f"1_{encoded}"


def decode_session_id(session_id: str) -> list[str] | None:
    """The `~` parts of a session id, or None if it is not one."""
    if len(session_id) > 255 or session_id[:2] not in ("1_", "2_"):
        return None
    body = session_id[2:]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = raw.split("~")
    return parts if len(parts) >= 3 else None


def session_belongs_to(session_id: str, project_ids: set[str]) -> bool:
    parts = decode_session_id(session_id)
    return parts is not None and any(p in project_ids for p in parts)
