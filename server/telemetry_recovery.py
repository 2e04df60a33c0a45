"""Closing the telemetry a dead process left open.

A server killed mid-call (kill -9, power loss, a crashed worker) never writes its participants'
`call_left` nor their tracks' `media_stopped`. Left open, those intervals count "up to now" in
every derivation, so a crashed session's time in call and effective duration would grow forever
and bill hours nobody spent. At start (and when a worker dies) the server closes them at the
participant's last recorded sign of life — quality samples come every 10 s — with the reason
`serverStopped`, so the gap is visible and bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from server.session_metrics import open_intervals
from server.session_store import SessionStore

log = logging.getLogger(__name__)

REASON = "serverStopped"


async def close_interrupted_telemetry(
    store: SessionStore, rooms: Collection[str] | None = None
) -> int:
    """Close every interval left open in `rooms` (default: all rooms); returns how many.

    Only call it for rooms no live process is serving: it ends their calls in the record.
    """
    candidates = await store.rooms_with_open_telemetry()
    closed = 0
    for room_id in candidates:
        if rooms is not None and room_id not in rooms:
            continue
        for interval in open_intervals(await store.events_for_room(room_id)):
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
