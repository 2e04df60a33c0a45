"""What `parloir bench chat` and its chat-client workers say to each other, one JSON per line.

The benchmark writes a config line, then commands, to a worker's stdin; the worker answers with
events on stdout. Both directions are validated here (see bench/messages.py for the pattern).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from bench.messages import Failed

# ---- config ---------------------------------------------------------------------------------


class ChatClientsConfig(BaseModel):
    url: str
    """Server base URL, http://127.0.0.1:PORT."""
    room: str
    join_timeout_s: float = 20.0
    join_concurrency: int = 4


class ChatSeat(BaseModel):
    index: int
    """Receivers are 0..N-1; senders are numbered on their own, from 0."""
    role: Literal["sender", "receiver"]
    token: str


# ---- commands -------------------------------------------------------------------------------


class Join(BaseModel):
    """Join these seats and wait until each one's chat channel is open and its history came."""

    command: Literal["join"] = "join"
    seats: list[ChatSeat]


class SendSteady(BaseModel):
    """Sender seat `sender` sends `count` messages, one every 1/rate_per_s seconds."""

    command: Literal["send-steady"] = "send-steady"
    phase: str
    sender: int
    count: int
    rate_per_s: float


class SendBurst(BaseModel):
    """Every sender seat of the worker sends `count` messages as fast as a token bucket of
    `rate_per_s` and `burst` lets it (kept under the server's limit, so none is refused)."""

    command: Literal["send-burst"] = "send-burst"
    phase: str
    count: int
    rate_per_s: float
    burst: int


class Tally(BaseModel):
    """Report how many messages of `phase` each seat has received so far."""

    command: Literal["tally"] = "tally"
    phase: str


class Finish(BaseModel):
    """Send the final report, leave the room and exit."""

    command: Literal["finish"] = "finish"


Command = Annotated[Join | SendSteady | SendBurst | Tally | Finish, Field(discriminator="command")]
COMMAND = TypeAdapter(Command)

# ---- events ---------------------------------------------------------------------------------


class Joined(BaseModel):
    event: Literal["joined"] = "joined"
    seats: list[int]
    """Indices of the seats that joined with their chat channel open."""
    errors: list[str] = Field(default_factory=list)


class Sent(BaseModel):
    """A send command is done: every message of it was handed to the data channel."""

    event: Literal["sent"] = "sent"
    phase: str
    messages: int
    first_at: float | None
    """time.monotonic() of the first send (same clock in every process on the machine)."""
    last_at: float | None


class Tallied(BaseModel):
    event: Literal["tallied"] = "tallied"
    phase: str
    received: int
    """Messages of the phase received by all seats of this worker together."""
    last_at: float | None
    """time.monotonic() of the latest arrival among them."""


class SeatPhase(BaseModel):
    """What one seat saw of one phase."""

    received: int = 0
    from_senders: dict[int, int] = Field(default_factory=dict)
    """Messages received, by sender seat."""
    out_of_order: int = 0
    """Messages whose per-sender number was not the previous one plus one (gaps, duplicates
    and reordering all count), or whose room-wide `seq` did not increase."""
    first_at: float | None = None
    last_at: float | None = None
    latency_ms: list[float] = Field(default_factory=list)
    """Arrival minus the send time stamped in the text, for every message (receivers only)."""


class SeatReport(BaseModel):
    index: int
    role: Literal["sender", "receiver"]
    phases: dict[str, SeatPhase]
    refused: dict[str, int] = Field(default_factory=dict)
    """chat-error codes the server answered this seat with (e.g. rate-limited), by code."""
    relayed_bytes: int | None = None
    """Size of one relayed chat frame as received (JSON, UTF-8)."""


class Report(BaseModel):
    event: Literal["report"] = "report"
    seats: list[SeatReport]


Event = Annotated[Joined | Sent | Tallied | Report | Failed, Field(discriminator="event")]
EVENT = TypeAdapter(Event)
