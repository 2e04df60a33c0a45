"""Telemetry written by the server from what it observes in rooms.

Joins and leaves come from the rooms themselves; media flow (first packet, stalls, last packet)
from the forwarders' frame counters, sampled once a second; connection failures from the peer
connections. Nothing here trusts the browser for what the server can see itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from media.stats import Counters, quality_sample, read_counters
from server.session_metrics import fallback_evidence
from server.session_store import SessionStore
from signaling.participant import Participant
from signaling.publication import Publication
from signaling.room import Room, RoomRegistry

log = logging.getLogger(__name__)

STALL_S = 3.0
"""A track with no frame for this long has stopped flowing."""
SAMPLE_INTERVAL_S = 1.0
QUALITY_INTERVAL_S = 10.0
"""How often each participant's bitrate, loss, jitter and RTT are sampled."""


@dataclass
class _Flow:
    room_id: str
    identity: str
    participant_id: str
    flowing: bool = False


class TelemetryRecorder:
    """A RoomObserver that writes telemetry events in the order they happened."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._order = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flows: dict[tuple[str, str], _Flow] = {}
        """(publication id, kind) -> whether its media is flowing."""
        self._monitor: asyncio.Task[None] | None = None
        self._quality: dict[str, tuple[float, Counters, Counters]] = {}
        """participant id -> (time, publisher counters, subscriber counters) at the last sample."""

    # ---- RoomObserver --------------------------------------------------------------------

    def participant_joined(self, room: Room, participant: Participant) -> None:
        self._write(
            room.id,
            "call_joined",
            participant,
            at=participant.joined_at,
            data={
                "role": participant.role.value,
                "name": participant.name,
                "connection_data": participant.grant.connection_data,
            },
        )

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        self._write(room.id, "call_left", participant, data={"reason": reason})

    def publication_changed(
        self, room: Room, publication: Publication, live: bool, reason: str
    ) -> None:
        participant = room.participants.get(publication.participant_id)
        if live:
            if participant is not None:
                self._write(
                    room.id,
                    "published",
                    participant,
                    data={
                        "publication_id": publication.id,
                        "name": publication.name,
                        "created_at": publication.created_at,
                        "video_type": publication.video_type,
                        "kinds": sorted(publication.mids),
                        "codec": room.codec,
                    },
                )
            return
        self._write_raw(
            room.id,
            "unpublished",
            participant.identity if participant is not None else None,
            publication.participant_id,
            at=None,
            data={"publication_id": publication.id, "reason": reason},
        )
        for kind, source in publication.sources.items():
            flow = self._flows.pop((publication.id, kind), None)
            if flow is not None and flow.flowing:
                stats = getattr(source, "stats", None)
                last = getattr(stats, "last_frame_at", None) or time.time()
                self._write_raw(
                    flow.room_id,
                    "media_stopped",
                    flow.identity,
                    flow.participant_id,
                    at=last,
                    data={
                        "track": f"{publication.id}:{kind}",
                        "kind": kind,
                        "reason": "unpublished",
                    },
                )

    def connection_failed(self, room: Room, participant: Participant, state: str) -> None:
        self._write(room.id, "ice_failed", participant, data={"state": state})

    def participant_suspended(self, room: Room, participant: Participant) -> None:
        # A gap: the call stops counting for this party until it is back.
        self._write(room.id, "call_left", participant, data={"reason": "reconnecting"})

    def participant_resumed(self, room: Room, participant: Participant) -> None:
        self._write(room.id, "call_joined", participant, data={"resumed": True})

    def room_closed(self, room: Room) -> None:
        self._spawn(self._check_fallback(room.id))

    # ---- media flow ----------------------------------------------------------------------

    def start(self, registry: RoomRegistry) -> None:
        self._monitor = asyncio.ensure_future(self._watch_media(registry))

    async def _watch_media(self, registry: RoomRegistry) -> None:
        last_quality = time.monotonic()
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            try:
                self.sample_media(registry, time.time())
                if time.monotonic() - last_quality >= QUALITY_INTERVAL_S:
                    last_quality = time.monotonic()
                    await self.sample_quality(registry)
            except Exception:
                log.exception("media sampling failed")

    async def sample_quality(self, registry: RoomRegistry) -> None:
        seen = set()
        for room in list(registry.rooms.values()):
            for participant in list(room.participants.values()):
                seen.add(participant.id)
                up = await read_counters(
                    participant.publisher.pc if participant.publisher else None
                )
                down = await read_counters(
                    participant.subscriber.pc if participant.subscriber else None
                )
                now = time.monotonic()
                previous = self._quality.get(participant.id)
                self._quality[participant.id] = (now, up, down)
                if previous is None:
                    continue
                sample = quality_sample(previous[1], up, previous[2], down, now - previous[0])
                self._write(room.id, "quality_sample", participant, data=sample)
        for gone in set(self._quality) - seen:
            del self._quality[gone]

    def sample_media(self, registry: RoomRegistry, now: float) -> None:
        for room in list(registry.rooms.values()):
            for participant in list(room.participants.values()):
                for publication in list(participant.publications.values()):
                    for kind, source in publication.sources.items():
                        self._sample_track(room, participant, publication, kind, source, now)

    def _sample_track(
        self,
        room: Room,
        participant: Participant,
        publication: Publication,
        kind: str,
        source: Any,
        now: float,
    ) -> None:
        stats = getattr(source, "stats", None)
        first, last = getattr(stats, "first_frame_at", None), getattr(stats, "last_frame_at", None)
        if first is None or last is None:
            return
        key = (publication.id, kind)
        flow = self._flows.setdefault(key, _Flow(room.id, participant.identity, participant.id))
        track = {"track": f"{publication.id}:{kind}", "kind": kind}
        if not flow.flowing and now - last < STALL_S:
            flow.flowing = True
            self._write(
                room.id,
                "media_started",
                participant,
                at=first if last - first < STALL_S * 2 else last,
                data=track,
            )
        elif flow.flowing and now - last >= STALL_S:
            flow.flowing = False
            self._write(
                room.id, "media_stopped", participant, at=last, data={**track, "reason": "stalled"}
            )

    # ---- writing -------------------------------------------------------------------------

    def _write(
        self,
        room_id: str,
        kind: str,
        participant: Participant,
        *,
        at: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._write_raw(room_id, kind, participant.identity, participant.id, at=at, data=data)

    def _write_raw(
        self,
        room_id: str,
        kind: str,
        identity: str | None,
        participant_id: str | None,
        *,
        at: float | None,
        data: dict[str, Any] | None,
    ) -> None:
        self._spawn(
            self._store.record_event(
                room_id=room_id,
                kind=kind,
                identity=identity,
                participant_id=participant_id,
                at=at if at is not None else time.time(),
                data=data,
            )
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        async def in_order() -> None:
            async with self._order:
                await coro

        task = asyncio.ensure_future(in_order())
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("telemetry write failed", exc_info=task.exception())

    async def _check_fallback(self, room_id: str) -> None:
        session = await self._store.session_for_room(room_id)
        if session is None:
            return
        events = await self._store.events_for_room(room_id)
        evidence = fallback_evidence(
            events,
            session.mentor_identity,
            session.student_identity,
            session.scheduled_end,
            time.time(),
        )
        if evidence:
            await self._store.mark_suspected_fallback(session.id, evidence)
            log.info("session %s suspected of fallback: %s", session.id, "; ".join(evidence))

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
