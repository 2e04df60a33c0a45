"""Room chat relayed over data channels: limits, ordering, history that dies with the room.

History is kept in memory only, on the room: the platform promises chat is not kept after the
call, so nothing here ever touches storage.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from signaling.errors import ErrorCode, SignalingError

MAX_HISTORY = 1000
"""Messages kept per room for late joiners; older ones fall off."""
RATE_PER_S = 20.0
"""Sustained messages per second per participant."""
BURST = 20
"""Messages a participant may send at once before throttling starts."""


@dataclass
class TokenBucket:
    rate_per_s: float
    capacity: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = -1.0
    updated: float = 0.0

    def take(self) -> bool:
        now = self.clock()
        if self.tokens < 0:
            self.tokens, self.updated = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(frozen=True)
class ChatMessage:
    seq: int
    """Room-wide order."""
    sender_id: str | None
    """None: sent by the platform (a REST signal)."""
    sender_identity: str | None
    sender_name: str
    text: str
    topic: str
    """The Vonage signal `type` (default `chat`)."""
    to_id: str | None
    """Recipient participant id, or None for everyone."""
    to_identity: str | None
    sent_at: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def visible_to(self, participant_id: str, identity: str) -> bool:
        if self.to_id is None:
            return True
        return identity in (self.to_identity, self.sender_identity) or participant_id in (
            self.to_id,
            self.sender_id,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "type": "chat",
            "id": self.id,
            "seq": self.seq,
            "from": {
                "id": self.sender_id,
                "identity": self.sender_identity,
                "name": self.sender_name,
            },
            "to": self.to_id,
            "topic": self.topic,
            "text": self.text,
            "sent_at": int(self.sent_at * 1000),
        }


@dataclass
class ChatLog:
    """One room's chat: sequence numbers and the in-memory history."""

    messages: list[ChatMessage] = field(default_factory=list)
    next_seq: int = 1
    rate_per_s: float = RATE_PER_S
    burst: int = BURST
    limiters: dict[str, TokenBucket] = field(default_factory=dict)

    def admit(self, sender_id: str, *, request_id: str | int | None = None) -> None:
        """Take one frame from the sender's budget, or raise `rate-limited` echoing its id."""
        bucket = self.limiters.setdefault(sender_id, TokenBucket(self.rate_per_s, self.burst))
        if not bucket.take():
            raise SignalingError(
                ErrorCode.RATE_LIMITED,
                f"more than {self.rate_per_s:.0f} chat messages per second",
                request_id=request_id,
            )

    def append(
        self,
        *,
        sender_id: str | None,
        sender_identity: str | None,
        sender_name: str,
        text: str,
        topic: str,
        to_id: str | None,
        to_identity: str | None,
    ) -> ChatMessage:
        message = ChatMessage(
            seq=self.next_seq,
            sender_id=sender_id,
            sender_identity=sender_identity,
            sender_name=sender_name,
            text=text,
            topic=topic,
            to_id=to_id,
            to_identity=to_identity,
            sent_at=time.time(),
        )
        self.next_seq += 1
        self.messages.append(message)
        del self.messages[:-MAX_HISTORY]
        return message

    def history_for(self, participant_id: str, identity: str) -> list[ChatMessage]:
        return [m for m in self.messages if m.visible_to(participant_id, identity)]

    def forget_sender(self, participant_id: str) -> None:
        self.limiters.pop(participant_id, None)

    def clear(self) -> None:
        self.messages.clear()
        self.limiters.clear()
