"""Closing the telemetry a dead process left open.

A server killed mid-call (kill -9, power loss, a crashed worker) never writes its participants'
`call_left` nor their tracks' `media_stopped`. Left open, those intervals count "up to now" in
every derivation, so a crashed session's time in call and effective duration would grow forever
and bill hours nobody spent. At start (and when a worker dies) the server closes them at the
participant's last recorded sign of life — quality samples come every 10 s — with the reason
`serverStopped`, so the gap is visible and bounded.

In a Vonage session the platform tracks who is connected from the session-monitoring webhooks;
the dead process never sent its participants' `streamDestroyed` / `connectionDestroyed`, so the
recovery sends them, rebuilt from the telemetry (same ids and shape as the `connectionCreated` /
`streamCreated` the platform got), with the reason Vonage gives for a lost connection. They are
sent before the intervals are closed: closing them is what marks them as announced.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from server.session_metrics import (
    OpenInterval,
    TelemetryEvent,
    live_publications,
    open_intervals,
)
from server.session_store import SessionStore
from server.vonage_events import VonageEvents, connection_shape, stream_shape

log = logging.getLogger(__name__)

REASON = "serverStopped"
VONAGE_REASON = "networkDisconnected"
"""What Vonage reports for a stream or connection whose client it lost."""


async def close_interrupted_telemetry(
    store: SessionStore,
    rooms: Collection[str] | None = None,
    vonage: VonageEvents | None = None,
) -> int:
    """Close every interval left open in `rooms` (default: all rooms); returns how many.

    Only call it for rooms no live process is serving: it ends their calls in the record (and,
    given `vonage`, their connections and streams for a Vonage session's callback).
    """
    candidates = await store.rooms_with_open_telemetry()
    closed = 0
    for room_id in candidates:
        if rooms is not None and room_id not in rooms:
            continue
        events = await store.events_for_room(room_id)
        intervals = open_intervals(events)
        if vonage is not None:
            _announce_lost(vonage, room_id, events, intervals)
            await vonage.drain()  # in the outbox before the record says they are closed
        for interval in intervals:
            start = interval.start
            data: dict[str, object] = {"reason": REASON}
            if interval.stop_kind == "media_stopped":
                data |= {"track": start.data.get("track"), "kind": start.data.get("kind")}
            await store.record_event(
                room_id=room_id,
                kind=interval.stop_kind,
                identity=start.identity,
                participant_id=start.participant_id,
                at=interval.last_seen,
                data=data,
            )
            closed += 1
    if closed:
        log.warning("closed %d call/media interval(s) left open by a stopped server", closed)
    return closed


def _announce_lost(
    vonage: VonageEvents,
    room_id: str,
    events: list[TelemetryEvent],
    intervals: list[OpenInterval],
) -> None:
    """`streamDestroyed` for each stream left live, then `connectionDestroyed` for each
    participant left connected (a no-op unless the room is a Vonage session with a callback)."""
    joined: dict[str | None, TelemetryEvent] = {}
    for event in sorted(events, key=lambda e: e.at):
        if event.kind == "call_joined" and not event.data.get("resumed"):
            joined.setdefault(event.participant_id, event)

    def connection(participant_id: str | None) -> dict[str, Any]:
        first = joined.get(participant_id)
        if first is None:
            return {"id": participant_id}
        return connection_shape(
            str(participant_id), first.at, str(first.data.get("connection_data") or "")
        )

    for published in live_publications(events):
        stream = stream_shape(
            str(published.data.get("publication_id")),
            connection(published.participant_id),
            float(published.data.get("created_at") or published.at),
            str(published.data.get("name") or ""),
            str(published.data.get("video_type") or "camera"),
        )
        vonage.post(room_id, "streamDestroyed", {"reason": VONAGE_REASON, "stream": stream})
    for interval in intervals:
        if interval.stop_kind == "call_left":
            vonage.post(
                room_id,
                "connectionDestroyed",
                {"reason": VONAGE_REASON, "connection": connection(interval.start.participant_id)},
            )
