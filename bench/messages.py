"""What the benchmark and its worker processes say to each other: one JSON object per line.

The benchmark writes a config line, then commands, to a worker's stdin; the worker answers with
events on its stdout. Both directions are validated here, so a worker that prints anything else
fails loudly instead of skewing a figure.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

# ---- configs (first line on a worker's stdin) -----------------------------------------------


class PublisherConfig(BaseModel):
    url: str
    """Server base URL, http://127.0.0.1:PORT."""
    room: str
    token: str
    """Join token with a publishing role."""
    codec: str
    """Video codec to offer (`vp8` or `h264`)."""
    width: int = 640
    height: int = 480
    fps: int = 30
    noise: int = 0
    """Amplitude of the per-frame luma noise below the index rows (0 = flat painted video)."""
    bitrate: int | None = None
    """Video encoder bitrate pinned to this (bit/s); None = aiortc's REMB-driven default."""


class SubscriberSeat(BaseModel):
    index: int
    """Subscriber number within the run (0 is the one that decodes and checks)."""
    token: str


class SubscriberConfig(BaseModel):
    url: str
    room: str
    publication_id: str
    """The publisher's publication, whose video and audio each subscriber receives."""
    seats: list[SubscriberSeat]
    checker_index: int | None
    """The seat that decodes video and checks the painted content; None = only count."""
    video_started_at: float
    """time.monotonic() at which the publisher painted frame 0 (same clock in every process)."""
    fps: int
    width: int
    height: int
    join_concurrency: int = 4
    """Subscribers of this worker joining (connect .. first frame) at the same time."""
    first_frame_timeout_s: float = 15.0


# ---- commands (later lines on a worker's stdin) --------------------------------------------


class Mark(BaseModel):
    """Report frame counters now (the benchmark sends it at both ends of a window)."""

    command: Literal["mark"] = "mark"


class Stop(BaseModel):
    """Send the final report, leave the room and exit."""

    command: Literal["stop"] = "stop"


Command = Annotated[Mark | Stop, Field(discriminator="command")]
COMMAND = TypeAdapter(Command)

# ---- events (lines on a worker's stdout) ---------------------------------------------------


class Published(BaseModel):
    event: Literal["published"] = "published"
    publication_id: str
    video_started_at: float
    """time.monotonic() of frame 0 of the painted video."""


class JoinResult(BaseModel):
    index: int
    first_video_s: float | None
    """Seconds from starting to connect to the first encoded video frame; None = never."""
    first_audio_s: float | None
    error: str | None = None


class Ready(BaseModel):
    """Every subscriber of the worker has its first frame, or gave up waiting for it."""

    event: Literal["ready"] = "ready"
    joins: list[JoinResult]


class Counts(BaseModel):
    event: Literal["counts"] = "counts"
    at: float
    """time.monotonic() when the counters were read."""
    video: dict[int, int]
    """Encoded video frames so far, by subscriber index (publisher: frames painted, index 0)."""
    audio: dict[int, int]
    video_bytes: dict[int, int] = Field(default_factory=dict)
    """Encoded video payload bytes so far, by subscriber index (not sent by the publisher)."""


class ContentCheck(BaseModel):
    """What the checking subscriber saw after decoding every video frame it received."""

    frames_decoded: int = 0
    wrong_size: int = 0
    """Frames not of the published width x height."""
    unindexed: int = 0
    """Frames without a readable painted index."""
    bar_misplaced: int = 0
    """Frames whose moving bar is not where their index puts it."""
    out_of_order: int = 0
    """Frames whose index is not after the previous one."""
    skipped: int = 0
    """Indices never seen between two decoded frames (frames dropped somewhere)."""
    first_frame_age_ms: float | None = None
    """How long before it was decoded the first decoded frame was due to be painted: far above
    the usual latency means frames were queued somewhere (the server, or a lagging publisher)."""
    latency_ms: list[float] = Field(default_factory=list)
    """Due-to-decoded latency of each frame decoded during the measured window (a frame is due
    at video_started_at + index / fps; a publisher behind schedule adds its lag)."""

    @property
    def ok(self) -> bool:
        bad = self.wrong_size + self.unindexed + self.bar_misplaced + self.out_of_order
        return self.frames_decoded > 0 and bad == 0


class Report(BaseModel):
    event: Literal["report"] = "report"
    content: ContentCheck | None
    """From the checking subscriber, if this worker has it."""


class Failed(BaseModel):
    event: Literal["failed"] = "failed"
    error: str


Event = Annotated[Published | Ready | Counts | Report | Failed, Field(discriminator="event")]
EVENT = TypeAdapter(Event)
