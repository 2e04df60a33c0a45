"""The wire protocol's one schema: every inbound message is validated here (see PROTOCOL.md).

Outbound messages are built by the `event_*` functions below, so their shape also lives in one
place next to the inbound schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from signaling.errors import ErrorCode, SignalingError

PROTOCOL_VERSION = 1
MAX_SDP_CHARS = 60_000
Mid = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")]
PublicationId = Annotated[str, Field(min_length=1, max_length=64)]
RequestId = Annotated[str, Field(max_length=64)] | int | None


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: RequestId = None
    """Optional request id chosen by the client; echoed in the reply or error."""


class Resume(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    participant_id: Annotated[str, Field(min_length=1, max_length=64)]
    key: Annotated[str, Field(min_length=1, max_length=64)]


class Join(_Message):
    type: Literal["join"]
    token: Annotated[str, Field(min_length=1, max_length=8192)]
    room: Annotated[str, Field(min_length=1, max_length=255)]
    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    purpose: Literal["call", "connection-test"] = "call"
    resume: Resume | None = None
    """After a drop: take the same participant back (same ids) within the grace period."""
    """`connection-test`: a private loopback room where the participant receives its own
    publications through the SFU, so the waiting room measures the real media path."""


class Offer(_Message):
    """An SDP offer for the participant's publisher peer connection (the client is its offerer)."""

    type: Literal["offer"]
    pc: Literal["publisher"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]


class Answer(_Message):
    """The answer to an offer the server sent for the subscriber peer connection."""

    type: Literal["answer"]
    pc: Literal["subscriber"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]


class IceCandidate(_Message):
    type: Literal["ice"]
    pc: Literal["publisher", "subscriber"]
    candidate: Annotated[str, Field(max_length=1024)]
    """The `candidate:` attribute value; empty means end of candidates."""
    sdp_mid: Annotated[str, Field(max_length=32)] | None = None
    sdp_mline_index: Annotated[int, Field(ge=0, le=255)] | None = None


class Publish(_Message):
    """Announces a publication whose tracks the next publisher offer carries on these mids."""

    type: Literal["publish"]
    video_type: Literal["camera", "screen"] = "camera"
    name: Annotated[str, Field(max_length=64)] | None = None
    audio_mid: Mid | None = None
    video_mid: Mid | None = None
    audio_muted: bool = False
    video_muted: bool = False
    publication_id: PublicationId | None = None
    """Resume a publication suspended by a connection drop (same id for everyone)."""


class Unpublish(_Message):
    type: Literal["unpublish"]
    publication_id: PublicationId
    reason: Literal["unpublished", "mediaStopped"] = "unpublished"


class Mute(_Message):
    type: Literal["mute"]
    publication_id: PublicationId
    kind: Literal["audio", "video"]
    muted: bool


class Record(_Message):
    """A moderator starts or stops recording the room."""

    type: Literal["record"]
    action: Literal["start", "stop"]
    output_mode: Literal["composed", "individual"] = "composed"
    resolution: Literal["640x480", "480x640", "1280x720", "720x1280", "1920x1080", "1080x1920"] = (
        "1280x720"
    )
    name: Annotated[str, Field(max_length=80)] | None = None


class Blur(_Message):
    """The publisher turns background blur on or off for its camera (processed on the SFU)."""

    type: Literal["blur"]
    publication_id: PublicationId
    enabled: bool
    strength: Literal["low", "high"] = "low"


class Leave(_Message):
    type: Literal["leave"]


class Ping(_Message):
    type: Literal["ping"]


ClientMessage = Annotated[
    Join
    | Offer
    | Answer
    | IceCandidate
    | Publish
    | Unpublish
    | Mute
    | Record
    | Blur
    | Leave
    | Ping,
    Field(discriminator="type"),
]
_CLIENT_MESSAGE = TypeAdapter(ClientMessage)
CLIENT_MESSAGE_TYPES = frozenset(
    (
        "join",
        "offer",
        "answer",
        "ice",
        "publish",
        "unpublish",
        "mute",
        "record",
        "blur",
        "leave",
        "ping",
    )
)


MAX_NESTING = 32
"""Deepest JSON nesting a frame may have (no message nests deeper than 3). Deeper containers are
cut before decoding, so that json.loads never meets Python's recursion limit."""
_NESTING_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def _cut_deep_nesting(text: str) -> tuple[str, bool]:
    """`text` with every container nested deeper than MAX_NESTING replaced by `null`, and
    whether anything was cut. Valid JSON stays valid JSON; brackets inside strings are text."""
    pieces: list[str] = []
    depth = 0
    kept_from = 0
    cutting = False
    in_string = False
    for token in _NESTING_TOKENS.finditer(text):
        char = token.group()
        if char == '"':
            in_string = not in_string
        elif in_string or len(char) > 1:
            continue  # a bracket inside a string, or an escape
        elif char in "[{":
            depth += 1
            if depth == MAX_NESTING + 1 and not cutting:
                pieces += [text[kept_from : token.start()], "null"]
                cutting = True
        else:
            if depth == MAX_NESTING + 1 and cutting:
                kept_from, cutting = token.end(), False
            depth -= 1
    if not cutting:
        pieces.append(text[kept_from:])
    return "".join(pieces), len(pieces) > 1


def _described(value: Any) -> str:
    """A short repr of a client-chosen value, for an error reason."""
    text = (
        repr(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    )
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class _Frame:
    """One inbound frame decoded to a JSON object, before its schema is checked."""

    data: dict[str, Any]
    request_id: str | int | None
    """The `id` to echo in an error about this frame."""
    type: str | None
    """`type` if it is a string."""
    too_deep: bool
    """Something in it was nested deeper than MAX_NESTING (and was cut)."""


def _decode_frame(raw: str | bytes, max_bytes: int, what: str) -> _Frame:
    """The one JSON decoding of inbound frames (signaling and chat): whatever the bytes, it
    returns an object or raises SignalingError (malformed / message-too-large), never anything
    else (no RecursionError, no ValueError from the integer digits limit)."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise SignalingError(
            ErrorCode.MESSAGE_TOO_LARGE, f"{what} of {size} bytes exceeds {max_bytes} bytes"
        )
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        too_deep = False
        if text.count("[") + text.count("{") > MAX_NESTING:
            text, too_deep = _cut_deep_nesting(text)
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and an integer of more than
        # sys.get_int_max_str_digits() digits.
        reason = str(exc).split("; use sys.set_int_max_str_digits")[0][:120]
        raise SignalingError(ErrorCode.MALFORMED, f"{what} is not valid JSON: {reason}") from exc
    if not isinstance(data, dict):
        raise SignalingError(ErrorCode.MALFORMED, f"{what} must be a JSON object")
    request_id = data.get("id")
    kind = data.get("type")
    return _Frame(
        data=data,
        request_id=request_id if isinstance(request_id, str | int) else None,
        type=kind if isinstance(kind, str) else None,
        too_deep=too_deep,
    )


def _validated(adapter: TypeAdapter[Any], frame: _Frame, what: str, loc_from: int) -> Any:
    """`frame` checked against its schema; invalid-message (echoing its id) if it does not fit."""
    if frame.too_deep:
        raise SignalingError(
            ErrorCode.INVALID_MESSAGE,
            f"invalid {what}: nested deeper than {MAX_NESTING} levels",
            request_id=frame.request_id,
        )
    try:
        return adapter.validate_python(frame.data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][loc_from:]) or 'message'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise SignalingError(
            ErrorCode.INVALID_MESSAGE, f"invalid {what}: {problems}", request_id=frame.request_id
        ) from exc


def parse_client_message(raw: str | bytes, max_bytes: int) -> ClientMessage:
    """Decode and validate one inbound message, or raise SignalingError saying what is wrong."""
    frame = _decode_frame(raw, max_bytes, "message")
    if frame.type not in CLIENT_MESSAGE_TYPES:
        raise SignalingError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {_described(frame.data.get('type'))}",
            request_id=frame.request_id,
        )
    message: ClientMessage = _validated(_CLIENT_MESSAGE, frame, f"{frame.type} message", 1)
    return message


# ---- chat data channel ------------------------------------------------------------------------

CHAT_TEXT_MAX_BYTES = 8 * 1024
CHAT_FRAME_MAX_BYTES = 64 * 1024
"""Room for an 8 KiB text even when JSON escapes every character (a \\u escape is 6 bytes)."""
ChatTopic = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9\-_~]+$")]


class ChatSend(_Message):
    """Sent on the `chat` data channel; relayed to the room or to one participant."""

    type: Literal["chat"]
    text: Annotated[str, Field(min_length=1)]
    topic: ChatTopic = "chat"
    """The Vonage signal `type`."""
    to: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """Participant id of the only recipient; everyone when absent."""


_CHAT_SEND = TypeAdapter(ChatSend)


def parse_chat_message(raw: str | bytes) -> ChatSend:
    """Decode and validate one chat frame, or raise SignalingError (sent as `chat-error`)."""
    frame = _decode_frame(raw, CHAT_FRAME_MAX_BYTES, "chat message")
    if frame.type != "chat":
        raise SignalingError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown chat message type {_described(frame.data.get('type'))}",
            request_id=frame.request_id,
        )
    message: ChatSend = _validated(_CHAT_SEND, frame, "chat message", 0)
    text_bytes = len(message.text.encode())
    if text_bytes > CHAT_TEXT_MAX_BYTES:
        raise SignalingError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"chat text of {text_bytes} bytes exceeds {CHAT_TEXT_MAX_BYTES} bytes",
            request_id=frame.request_id,
        )
    return message


def event_chat_error(error: SignalingError) -> dict[str, Any]:
    return {**event_error(error), "type": "chat-error"}


CHAT_HISTORY_FRAME_BYTES = 60 * 1024
"""A `chat-history` frame stays under this: below the 64 KiB every SCTP peer accepts (the
default a=max-message-size), while one history may be 1000 messages of 8 KiB."""


def event_chat_history(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "chat-history", "messages": messages}


def chat_history_frames(messages: list[dict[str, Any]]) -> list[str]:
    """The history as JSON `chat-history` frames, in order, each under CHAT_HISTORY_FRAME_BYTES
    (a single message always fits: its text is at most 8 KiB). At least one frame, so an empty
    history is still announced."""
    envelope = len(json.dumps(event_chat_history([])))
    frames: list[str] = []
    batch: list[dict[str, Any]] = []
    size = envelope
    for message in messages:
        length = len(json.dumps(message)) + 2  # ", " separator
        if batch and size + length > CHAT_HISTORY_FRAME_BYTES:
            frames.append(json.dumps(event_chat_history(batch)))
            batch, size = [], envelope
        batch.append(message)
        size += length
    frames.append(json.dumps(event_chat_history(batch)))
    return frames


# ---- outbound ---------------------------------------------------------------------------------
# Plain dicts, JSON-encoded by the transport. Each function is the one definition of that event.


def event_error(error: SignalingError) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "error", "code": error.code.value, "reason": error.reason}
    if error.request_id is not None:
        message["id"] = error.request_id
    return message


def event_joined(
    *,
    request_id: RequestId,
    participant: dict[str, Any],
    room: dict[str, Any],
    participants: list[dict[str, Any]],
    publications: list[dict[str, Any]],
    ice_servers: list[str],
    blur_available: bool,
) -> dict[str, Any]:
    return {
        "type": "joined",
        "blur_available": blur_available,
        "id": request_id,
        "protocol": PROTOCOL_VERSION,
        "participant": participant,
        "room": room,
        "participants": participants,
        "publications": publications,
        "ice_servers": ice_servers,
    }


def event_answer(request_id: RequestId, sdp: str) -> dict[str, Any]:
    return {"type": "answer", "id": request_id, "pc": "publisher", "sdp": sdp}


def event_offer(sdp: str, subscriptions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "offer", "pc": "subscriber", "sdp": sdp, "subscriptions": subscriptions}


def event_published(request_id: RequestId, publication: dict[str, Any]) -> dict[str, Any]:
    return {"type": "published", "id": request_id, "publication": publication}


def event_track_published(publication: dict[str, Any]) -> dict[str, Any]:
    return {"type": "track-published", "publication": publication}


def event_track_unpublished(
    publication_id: str, participant_id: str, reason: str
) -> dict[str, Any]:
    return {
        "type": "track-unpublished",
        "publication_id": publication_id,
        "participant_id": participant_id,
        "reason": reason,
    }


def event_participant_joined(participant: dict[str, Any]) -> dict[str, Any]:
    return {"type": "participant-joined", "participant": participant}


def event_participant_reconnecting(participant_id: str) -> dict[str, Any]:
    return {"type": "participant-reconnecting", "participant_id": participant_id}


def event_participant_reconnected(participant_id: str) -> dict[str, Any]:
    return {"type": "participant-reconnected", "participant_id": participant_id}


def event_participant_left(participant_id: str, reason: str) -> dict[str, Any]:
    return {"type": "participant-left", "participant_id": participant_id, "reason": reason}


def event_mute_changed(
    publication_id: str, participant_id: str, kind: str, muted: bool
) -> dict[str, Any]:
    return {
        "type": "mute-changed",
        "publication_id": publication_id,
        "participant_id": participant_id,
        "kind": kind,
        "muted": muted,
    }


def describe_blur(status: Any) -> dict[str, Any]:
    return {"state": str(status.state), "strength": str(status.strength), "reason": status.reason}


def event_blur_status(publication_id: str, status: Any) -> dict[str, Any]:
    return {"type": "blur-status", "publication_id": publication_id, **describe_blur(status)}


def event_ack(request_id: RequestId, of: str) -> dict[str, Any]:
    return {"type": "ack", "id": request_id, "of": of}


def event_left(reason: str) -> dict[str, Any]:
    return {"type": "left", "reason": reason}
