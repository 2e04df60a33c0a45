"""Request schemas of the platform, participant and staff JSON APIs (validated at the edge)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from server.report_validation import VideoUnusedReason

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _within_range(value: datetime) -> datetime:
    # Aware on both sides, so the comparison is exact whatever the offset; inside the range,
    # `.timestamp()` and `datetime.fromtimestamp(..., UTC)` both succeed.
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be from {EARLIEST.isoformat()} to before {LATEST.isoformat()}")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_within_range)]
"""A date-time with its UTC offset (ISO 8601 with `Z` or `±hh:mm`, or Unix seconds) between
1970 and 2200: a naive one would be read in the server's time zone."""
Identity = Annotated[str, Field(min_length=1, max_length=128)]
DisplayName = Annotated[str, Field(min_length=1, max_length=64)]
Offset = Annotated[int, Field(ge=0, le=1_000_000)]
Limit = Annotated[int, Field(ge=1, le=200)]
Details = Annotated[str, Field(max_length=2000)]
SessionType = Literal["mentoring", "defence"]
SessionStatus = Literal["planned", "completed", "cancelled", "student_absent"]
ReportSource = Literal["waiting_room", "call", "after_call"]

DEFAULT_BUG_CATEGORIES: dict[str, str] = {
    "cannot_join": "Cannot join",
    "no_video": "No video",
    "no_sound": "No sound",
    "echo": "Echo",
    "screen_share_fails": "Screen share fails",
    "repeated_disconnections": "Repeated disconnections",
    "poor_quality": "Poor quality",
    "other": "Other",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Party(_Strict):
    identity: Identity
    name: DisplayName


class SessionCreate(_Strict):
    type: SessionType
    scheduled_start: Instant
    """ISO 8601 or Unix seconds."""
    scheduled_end: Instant
    mentor: Party
    student: Party
    auto_record: bool | None = None
    """Record from the first publish; defaults to true for defences."""

    @model_validator(mode="after")
    def _ordered(self) -> SessionCreate:
        if self.scheduled_end <= self.scheduled_start:
            raise ValueError("scheduled_end must be after scheduled_start")
        if self.mentor.identity == self.student.identity:
            raise ValueError("mentor and student must be different people")
        return self


class RecordingStart(_Strict):
    output_mode: Literal["composed", "individual"] = "composed"
    resolution: Literal["640x480", "480x640", "1280x720", "720x1280", "1920x1080", "1080x1920"] = (
        "1280x720"
    )
    name: Annotated[str, Field(min_length=1, max_length=80)] | None = None


class RecordingQuery(_Strict):
    room_id: Annotated[str, Field(max_length=255)] | None = None
    session_id: Annotated[str, Field(max_length=64)] | None = None
    offset: Offset = 0
    limit: Limit = 50


class SessionUpdate(_Strict):
    status: SessionStatus | None = None
    scheduled_start: Instant | None = None
    scheduled_end: Instant | None = None


class SessionQuery(_Strict):
    status: SessionStatus | None = None
    type: SessionType | None = None
    tag: Annotated[str, Field(max_length=64)] | None = None
    start_from: Instant | None = None
    start_to: Instant | None = None
    offset: Offset = 0
    limit: Limit = 50


class TokenRequest(_Strict):
    party: Literal["mentor", "student"]
    ttl_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 4 * 3600


class ProfileUpdate(_Strict):
    accommodation_need: bool
    """The student has an accommodation (RQTH) that can rule out video."""


class BugReportCreate(_Strict):
    source: ReportSource
    category: Annotated[str, Field(min_length=1, max_length=64)]
    details: Details = ""


class FeedbackCreate(_Strict):
    source: ReportSource
    category: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    rating: Annotated[int, Field(ge=1, le=5)] | None = None
    details: Details = ""


class ConnectionTestResult(_Strict):
    """Figures measured by the waiting room's connection test through the real media path."""

    rtt_ms: Annotated[float, Field(ge=0, le=60_000)] | None = None
    jitter_ms: Annotated[float, Field(ge=0, le=60_000)] | None = None
    packet_loss: Annotated[float, Field(ge=0, le=1)] | None = None
    received_kbps: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    available_outgoing_kbps: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    frames_decoded: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = None
    mos: Annotated[float, Field(ge=1, le=5)] | None = None
    recommended_resolution: Annotated[str, Field(max_length=16)] | None = None
    duration_s: Annotated[float, Field(ge=0, le=120)] | None = None
    skipped: bool = False


class ReportSave(_Strict):
    status: Literal["completed", "cancelled", "student_absent"]
    notes: Annotated[str, Field(max_length=10_000)] = ""


class ReportValidate(_Strict):
    reason: VideoUnusedReason | None = None
    details: Details | None = None


class BugReportQuery(_Strict):
    category: Annotated[str, Field(max_length=64)] | None = None
    session_type: SessionType | None = None
    created_from: Instant | None = None
    created_to: Instant | None = None
    blocking: bool | None = None
    offset: Offset = 0
    limit: Limit = 50


class BillingQuery(_Strict):
    start_from: Instant | None = None
    start_to: Instant | None = None
    type: SessionType | None = None
    offset: Offset = 0
    limit: Annotated[int, Field(ge=1, le=5000)] = 500


class StaffLogin(_Strict):
    token: Annotated[str, Field(min_length=1, max_length=512)]
