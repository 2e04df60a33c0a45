"""Error codes of the wire protocol and the exception that carries one to the client."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    MALFORMED = "malformed"
    """Not JSON, or not a JSON object."""
    UNKNOWN_TYPE = "unknown-type"
    """`type` is not a message the server knows."""
    INVALID_MESSAGE = "invalid-message"
    """Known type, but fields are missing, extra or out of range."""
    MESSAGE_TOO_LARGE = "message-too-large"
    """Larger than the server's message size limit."""
    NOT_JOINED = "not-joined"
    """Only `join` is accepted before joining."""
    ALREADY_JOINED = "already-joined"
    TOKEN_INVALID = "token-invalid"
    TOKEN_EXPIRED = "token-expired"
    WRONG_ROOM = "wrong-room"
    """The token was issued for another room than the one asked for."""
    FORBIDDEN = "forbidden"
    """The participant's role does not allow this action."""
    BAD_SDP = "bad-sdp"
    """The SDP could not be parsed or applied."""
    CODEC_UNSUPPORTED = "codec-unsupported"
    """The peer does not offer the room's codec."""
    UNKNOWN_PUBLICATION = "unknown-publication"
    NEGOTIATION_FAILED = "negotiation-failed"
    RATE_LIMITED = "rate-limited"
    """Too many messages per second; the message was dropped."""
    ROOM_FULL = "room-full"
    """The room has as many participants as it may hold."""
    SERVER_FULL = "server-full"
    """This server holds as many rooms as it may; try later or another server."""
    TOKEN_SPENT = "token-spent"
    """The token was used by a participant who then left: ask the platform for a new one."""
    RESUME_FAILED = "resume-failed"
    """Nothing to resume (grace period over, wrong key): join again as a new participant."""
    BLUR_UNAVAILABLE = "blur-unavailable"
    """Background blur cannot run on this server (model missing, overloaded)."""
    UNKNOWN_PARTICIPANT = "unknown-participant"
    """A message addressed to someone not in the room."""
    INTERNAL = "internal"
    """A server fault; the message was not applied."""


class SignalingError(Exception):
    """A refusal that is reported to the client as an `error` message; the socket stays open."""

    def __init__(
        self, code: ErrorCode, reason: str, *, request_id: str | int | None = None
    ) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason
        self.request_id = request_id

    def for_request(self, request_id: str | int | None) -> SignalingError:
        if self.request_id is None:
            self.request_id = request_id
        return self
