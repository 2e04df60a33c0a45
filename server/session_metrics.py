"""What a session's telemetry says: video used, effective duration, suspected fallback.

Pure functions over telemetry events, so every rule is unit-tested without a server. Durations
are computed from what the server observed, never typed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

DROP_REASONS = frozenset({"networkDisconnected", "reconnecting"})
"""Leave reasons that mean the connection broke rather than someone hanging up."""
REPEATED_DROPS = 3
"""This many dropped connections in one session is evidence of a failing call."""


@dataclass(frozen=True)
class TelemetryEvent:
    kind: str
    """call_joined, call_left, published, unpublished, media_started, media_stopped, ice_failed,
    quality_sample, …"""
    at: float
    """Unix time, seconds."""
    identity: str | None = None
    participant_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Interval:
    start: float
    end: float

    @property
    def length(self) -> float:
        return max(0.0, self.end - self.start)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for current in sorted((i for i in intervals if i.length > 0), key=lambda i: i.start):
        if merged and current.start <= merged[-1].end:
            merged[-1] = Interval(merged[-1].start, max(merged[-1].end, current.end))
        else:
            merged.append(current)
    return merged


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out = []
    for x in a:
        for y in b:
            start, end = max(x.start, y.start), min(x.end, y.end)
            if end > start:
                out.append(Interval(start, end))
    return merge(out)


def total(intervals: Iterable[Interval]) -> float:
    return sum(i.length for i in intervals)


def _paired(
    events: Sequence[TelemetryEvent],
    identity: str,
    start_kind: str,
    stop_kind: str,
    key: str,
    now: float,
) -> list[Interval]:
    """Intervals between a start event and its stop, matched on `key` (participant or track)."""
    open_at: dict[str, float] = {}
    intervals = []
    for event in sorted(events, key=lambda e: e.at):
        if event.identity != identity:
            continue
        ident = str(event.data.get(key) or event.participant_id or "")
        if event.kind == start_kind:
            open_at.setdefault(ident, event.at)
        elif event.kind == stop_kind and ident in open_at:
            intervals.append(Interval(open_at.pop(ident), event.at))
    # Still open (the call is going on, or the server died): count up to `now`.
    intervals += [Interval(start, now) for start in open_at.values()]
    return merge(intervals)


@dataclass(frozen=True)
class OpenInterval:
    """A start event (`call_joined` / `media_started`) its stop never followed."""

    start: TelemetryEvent
    stop_kind: str
    last_seen: float
    """The latest event of that participant: the best evidence of when it really ended."""


def open_intervals(events: Sequence[TelemetryEvent]) -> list[OpenInterval]:
    """Presences and media flows a dead process left open, in the order they started."""
    pairs = {
        "call_joined": ("call_left", "participant_id"),
        "media_started": ("media_stopped", "track"),
    }
    stops = {stop: start for start, (stop, _) in pairs.items()}
    open_at: dict[tuple[str, str], TelemetryEvent] = {}
    last_seen: dict[str | None, float] = {}
    for event in sorted(events, key=lambda e: e.at):
        last_seen[event.participant_id] = event.at
        start_kind = event.kind if event.kind in pairs else stops.get(event.kind)
        if start_kind is None:
            continue
        key = (start_kind, str(event.data.get(pairs[start_kind][1]) or event.participant_id or ""))
        if event.kind == start_kind:
            open_at.setdefault(key, event)
        else:
            open_at.pop(key, None)
    return [
        OpenInterval(start, pairs[kind][0], last_seen.get(start.participant_id, start.at))
        for (kind, _), start in open_at.items()
    ]


def live_publications(events: Sequence[TelemetryEvent]) -> list[TelemetryEvent]:
    """`published` events neither an `unpublished` of theirs nor their owner's `call_left`
    followed: the streams a dead process left live, in the order they started."""
    live: dict[str, TelemetryEvent] = {}
    for event in sorted(events, key=lambda e: e.at):
        if event.kind == "published":
            live.setdefault(str(event.data.get("publication_id")), event)
        elif event.kind == "unpublished":
            live.pop(str(event.data.get("publication_id")), None)
        elif event.kind == "call_left":
            live = {k: e for k, e in live.items() if e.participant_id != event.participant_id}
    return list(live.values())


def presence(events: Sequence[TelemetryEvent], identity: str, now: float) -> list[Interval]:
    return _paired(events, identity, "call_joined", "call_left", "participant_id", now)


def media_flow(events: Sequence[TelemetryEvent], identity: str, now: float) -> list[Interval]:
    return _paired(events, identity, "media_started", "media_stopped", "track", now)


@dataclass(frozen=True)
class SessionMetrics:
    video_used: bool
    """Media flowed at some moment while both parties were in the call."""
    effective_duration_s: float
    """Time both parties were in the call with media flowing from at least one of them."""
    time_in_call_s: dict[str, float]
    """identity -> seconds in the call (reconnect gaps excluded)."""
    first_join: float | None
    last_leave: float | None
    drops: int
    """Connections that broke (not hung up)."""
    suggested_status: str | None
    """`student_absent` when the student never came, `completed` when the call happened."""

    def describe(self) -> dict[str, Any]:
        return {
            "video_used": self.video_used,
            "effective_duration_s": round(self.effective_duration_s, 1),
            "time_in_call_s": {k: round(v, 1) for k, v in self.time_in_call_s.items()},
            "first_join": self.first_join,
            "last_leave": self.last_leave,
            "drops": self.drops,
            "suggested_status": self.suggested_status,
        }


def session_metrics(
    events: Sequence[TelemetryEvent], mentor: str, student: str, now: float
) -> SessionMetrics:
    mentor_in, student_in = presence(events, mentor, now), presence(events, student, now)
    together = intersect(mentor_in, student_in)
    media = merge(media_flow(events, mentor, now) + media_flow(events, student, now))
    effective = intersect(together, media)
    joins = [e.at for e in events if e.kind == "call_joined" and e.identity in (mentor, student)]
    leaves = [e.at for e in events if e.kind == "call_left" and e.identity in (mentor, student)]
    drops = sum(1 for e in events if e.kind == "call_left" and e.data.get("reason") in DROP_REASONS)
    suggested = None
    if not student_in and mentor_in:
        suggested = "student_absent"
    elif together:
        suggested = "completed"
    return SessionMetrics(
        video_used=total(effective) > 0,
        effective_duration_s=total(effective),
        time_in_call_s={mentor: total(mentor_in), student: total(student_in)},
        first_join=min(joins) if joins else None,
        last_leave=max(leaves) if leaves else None,
        drops=drops,
        suggested_status=suggested,
    )


def fallback_evidence(
    events: Sequence[TelemetryEvent], mentor: str, student: str, scheduled_end: float, now: float
) -> list[str]:
    """Why the server suspects the call moved to another tool; empty when it does not.

    Evidence: ICE/connection failures, repeated drops, or media that stopped before the
    scheduled end and never resumed while neither party hung up normally.
    """
    evidence = []
    parties = (mentor, student)
    failures = [e for e in events if e.kind == "ice_failed" and e.identity in parties]
    if failures:
        evidence.append(f"{len(failures)} media connection failure(s)")
    drops = [e for e in events if e.kind == "call_left" and e.data.get("reason") in DROP_REASONS]
    if len(drops) >= REPEATED_DROPS:
        evidence.append(f"{len(drops)} dropped connections")
    media = merge(media_flow(events, mentor, now) + media_flow(events, student, now))
    hung_up = any(
        e.kind == "call_left"
        and e.identity in parties
        and e.data.get("reason") == "clientDisconnected"
        for e in events
    )
    if media and not hung_up:
        stopped_at = media[-1].end
        if stopped_at < min(scheduled_end, now) - 1.0:
            evidence.append(
                f"media stopped {max(0.0, scheduled_end - stopped_at) / 60:.0f} min before the "
                "scheduled end and never resumed, and nobody hung up"
            )
    return evidence
