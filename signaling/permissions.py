"""Roles and what each may do in a room; checked by the server for every action."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    PUBLISHER = "publisher"
    SUBSCRIBER = "subscriber"
    MODERATOR = "moderator"
    PUBLISHER_ONLY = "publisheronly"

    @property
    def can_publish(self) -> bool:
        return self is not Role.SUBSCRIBER

    @property
    def can_subscribe(self) -> bool:
        return self is not Role.PUBLISHER_ONLY

    @property
    def can_moderate(self) -> bool:
        return self is Role.MODERATOR


@dataclass(frozen=True)
class Grant:
    """What a verified join token allows: who joins which room with which role."""

    room: str
    """Room id the token is valid for."""
    identity: str
    """Stable identity of the person (platform user id)."""
    role: Role
    """What the participant may do."""
    name: str
    """Display name shown to the others."""
    expires_at: float
    """Unix time after which the token no longer admits anyone."""
    token_id: str
    """Unique id of the token (jti), for audit and replay checks."""
    connection_data: str = ""
    """Free data the token carries (Vonage `connection_data`), shown to the others."""
    layout_classes: tuple[str, ...] = ()
    """Initial layout classes of the participant's streams (Vonage)."""
    project: str | None = None
    """The Vonage-compatible project the token belongs to, if any."""
