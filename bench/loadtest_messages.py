"""What `parloir loadtest` and its participant workers say to each other, one JSON per line.

The load test writes a config line, then commands, to a worker's stdin; the worker answers with
events on stdout, validated here on both sides (the pattern of bench/messages.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from bench.messages import Failed

# ---- config ---------------------------------------------------------------------------------


class LoadConfig(BaseModel):
    url: str
    """Base URL of the server under test (http(s)://host:port)."""
    insecure: bool = False
    """Do not verify the server's TLS certificate (self-signed test deployments)."""
    ice_addresses: list[str] = Field(default_factory=list)
    """Where the participants gather ICE candidates: 127.0.0.1 for a server on loopback (aioice
    leaves loopback out by itself), empty = every interface."""
    codec: Literal["h264", "vp8"] = "h264"
    width: int = 640
    height: int = 480
    fps: int = 30
    video_bitrate: int = 500_000
    """What the clip is encoded at (bit/s); the picture carries noise so it needs all of it."""
    publisher_slots: list[int]
    """Slots that publish in every room; each participant expects media from all of them
    except itself."""
    join_concurrency: int = 4
    """Participants of this worker connecting and publishing at the same time."""
    join_timeout_s: float = 20.0
    """For connecting and publishing."""
    media_timeout_s: float = 20.0
    """For the first video frame of every expected publication, after joining."""


class LoadSeat(BaseModel):
    room_index: int
    room: str
    slot: int
    """The participant's number in its room (0 ... per room - 1)."""
    identity: str
    token: str
    publishes: bool
    sampled: bool
    """Decodes its first video subscription and checks the painted room and publisher."""


# ---- commands -------------------------------------------------------------------------------


class Join(BaseModel):
    command: Literal["join"] = "join"
    seats: list[LoadSeat]


class Mark(BaseModel):
    """Report every subscription's counters now."""

    command: Literal["mark"] = "mark"


class Finish(BaseModel):
    """Send the content checks, leave and exit."""

    command: Literal["finish"] = "finish"


Command = Annotated[Join | Mark | Finish, Field(discriminator="command")]
COMMAND = TypeAdapter(Command)

# ---- events ---------------------------------------------------------------------------------


class SeatJoin(BaseModel):
    identity: str
    room_index: int
    joined: bool
    """Connected, and published if it publishes."""
    join_s: float | None
    """Connecting (and publishing) took this long."""
    expected: int
    """Publications it should receive video from."""
    receiving: int
    """Of which it got a first video frame within the media timeout."""
    first_frame_s: list[float]
    """Per received publication: from when the participant could first know of it (joining,
    for one already live; its arrival in a subscriber offer, for a later one) to its first
    encoded video frame."""
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.joined and self.receiving >= self.expected


class Joined(BaseModel):
    event: Literal["joined"] = "joined"
    seats: list[SeatJoin]


class TrackCounts(BaseModel):
    """Counters of one received track since its first frame."""

    units: int = 0
    """Video frames or audio packets received."""
    expected: int = 0
    """Units the RTP timestamps span from the first to the latest: received + missing."""
    bytes: int = 0
    """Encoded payload."""


class SubscriptionCounts(BaseModel):
    seat: str
    """Identity of the receiving participant."""
    room_index: int
    publication_id: str
    video: TrackCounts
    audio: TrackCounts


class Counts(BaseModel):
    event: Literal["counts"] = "counts"
    at: float
    """time.monotonic() when the counters were read (one clock on the machine)."""
    subscriptions: list[SubscriptionCounts]


class ContentCheck(BaseModel):
    """What a sampled participant saw after decoding one of its video subscriptions."""

    seat: str
    room_index: int
    publisher: str | None = None
    """Identity of the publication's participant as signalled."""
    frames_decoded: int = 0
    unreadable: int = 0
    """Frames without both painted fields: decoded after a loss, damaged until the next
    keyframe (what a user would see too), not wrong media."""
    wrong_room: int = 0
    """Frames painted with another room's marker: the server sent another room's media."""
    wrong_publisher: int = 0
    """Frames painted by another publisher than the one signalled."""
    rooms_seen: list[int] = Field(default_factory=list)
    """Room markers read, first few distinct ones."""

    @property
    def ok(self) -> bool:
        """Right media: frames were read, and every one was this room's, from the publisher
        signalled."""
        readable = self.frames_decoded - self.unreadable
        return readable > 0 and self.wrong_room == 0 and self.wrong_publisher == 0


class Report(BaseModel):
    event: Literal["report"] = "report"
    content: list[ContentCheck]


Event = Annotated[Joined | Counts | Report | Failed, Field(discriminator="event")]
EVENT = TypeAdapter(Event)
