"""What PROTOCOL.md documents: the messages and error codes a client may receive, and what a
correct server does with one frame (`Expected`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import signaling
from signaling.errors import ErrorCode, SignalingError

PROTOCOL_MD = Path(signaling.__file__).resolve().parent / "PROTOCOL.md"
ERROR_CODES = frozenset(code.value for code in ErrorCode)
CLOSING_ERRORS = frozenset({"token-invalid", "token-expired", "wrong-room"})
"""Errors on `join` after which the server closes the socket with 4401 (PROTOCOL.md)."""


def documented_server_messages() -> frozenset[str]:
    """Types of the `## Server → client` table of PROTOCOL.md: the only messages a client may
    ever receive on the socket."""
    text = PROTOCOL_MD.read_text()
    section = text.split("## Server → client", 1)[1].split("\n## ", 1)[0]
    types = frozenset(re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE))
    assert {"error", "ack", "joined"} <= types, f"cannot read the server messages of {PROTOCOL_MD}"
    return types


SERVER_MESSAGES = documented_server_messages()
CHAT_MESSAGES = frozenset({"chat-history", "chat", "chat-error"})


def reply_problems(message: Any) -> list[tuple[str, str]]:
    """(kind, detail) for a server message that is not what the protocol documents."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return [("reply is not a JSON object with a type", repr(message)[:200])]
    kind = message["type"]
    if kind == "<not json>":
        return [("reply is not JSON", repr(message.get("raw"))[:200])]
    if kind not in SERVER_MESSAGES:
        return [(f"undocumented server message {kind!r}", repr(message)[:200])]
    if kind == "error":
        code = message.get("code")
        if code == ErrorCode.INTERNAL.value:
            return [("internal error (server fault)", repr(message)[:300])]
        if code not in ERROR_CODES:
            return [(f"undocumented error code {code!r}", repr(message)[:200])]
        if not isinstance(message.get("reason"), str):
            return [("error without a reason", repr(message)[:200])]
    return []


@dataclass(frozen=True)
class Expected:
    """What a correct server does with one frame."""

    errors: frozenset[str] = frozenset()
    """An `error` with one of these codes must come back (empty: none required)."""
    request_id: Any = None
    """...echoing this id."""
    reply: str | None = None
    """A message of this type must come back (`ack` for ping, `left` for leave)."""
    reply_id: Any = None
    close: int | None = None
    """The server must close the socket with this code."""

    @classmethod
    def refusal(cls, error: Exception) -> Expected:
        """What must come back for a frame the server's parser raised `error` on."""
        if isinstance(error, SignalingError):
            return cls(errors=frozenset({error.code.value}), request_id=error.request_id)
        return cls(errors=UNDECODABLE)


UNDECODABLE = frozenset({"malformed", "invalid-message", "message-too-large", "unknown-type"})
"""What a frame the parser itself chokes on (too deep, a number too long, a `type` that is a
list) must be refused with: the parser raising anything but SignalingError is the bug."""
