"""Vonage session-monitoring webhooks: connection and stream events of Vonage sessions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from server.projects import Project, ProjectRegistry
from server.vonage_ids import decode_session_id
from server.webhooks import WebhookOutbox
from signaling.participant import Participant
from signaling.publication import Publication
from signaling.room import NullObserver, Room

log = logging.getLogger(__name__)

# Parloir's reasons -> the reasons Vonage reports for streamDestroyed / connectionDestroyed.
STREAM_REASONS = {
    "unpublished": "clientDisconnected",
    "participantLeft": "clientDisconnected",
    "mediaStopped": "mediaStopped",
    "negotiationFailed": "networkDisconnected",
    "forceUnpublished": "forceUnpublished",
}


def connection_shape(connection_id: str, created_at: float, data: str) -> dict[str, Any]:
    """A connection as Vonage describes it in its events (live or rebuilt from telemetry)."""
    return {"id": connection_id, "createdAt": int(created_at * 1000), "data": data}


def stream_shape(
    stream_id: str, connection: dict[str, Any], created_at: float, name: str, video_type: str
) -> dict[str, Any]:
    """A stream as Vonage describes it in its events (live or rebuilt from telemetry)."""
    return {
        "id": stream_id,
        "connection": connection,
        "createdAt": int(created_at * 1000),
        "name": name,
        "videoType": video_type,
    }


def connection_json(participant: Participant) -> dict[str, Any]:
    return connection_shape(
        participant.id, participant.joined_at, participant.grant.connection_data
    )


def stream_json(room: Room, publication: Publication) -> dict[str, Any]:
    owner = room.participants.get(publication.participant_id)
    return stream_shape(
        publication.id,
        connection_json(owner) if owner else {"id": publication.participant_id},
        publication.created_at,
        publication.name,
        publication.video_type,
    )


class VonageEvents(NullObserver):
    """A RoomObserver posting Vonage-shaped events for rooms that are Vonage sessions (joins,
    leaves, streams; the other room events have no Vonage counterpart and are ignored)."""

    def __init__(self, projects: ProjectRegistry, outbox: WebhookOutbox) -> None:
        self._projects = projects
        self._outbox = outbox
        self._order = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def project_of(self, room_id: str) -> Project | None:
        parts = decode_session_id(room_id)
        if parts is None:
            return None
        for part in parts:
            project = self._projects.by_path_id(part)
            if project is not None:
                return project
        return None

    def post(self, room_id: str, event: str, body: dict[str, Any]) -> None:
        project = self.project_of(room_id)
        if project is None or not project.callback_url:
            return
        payload = {
            "sessionId": room_id,
            "projectId": project.api_key,
            "event": event,
            "timestamp": int(time.time() * 1000),
            **body,
        }
        self._spawn(self._outbox.enqueue(project.callback_url, payload, project.signature_secret))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def in_order() -> None:
            async with self._order:
                await coro

        task = asyncio.ensure_future(in_order())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def participant_joined(self, room: Room, participant: Participant) -> None:
        self.post(room.id, "connectionCreated", {"connection": connection_json(participant)})

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        self.post(
            room.id,
            "connectionDestroyed",
            {"reason": reason, "connection": connection_json(participant)},
        )

    def publication_changed(
        self, room: Room, publication: Publication, live: bool, reason: str
    ) -> None:
        if live:
            self.post(room.id, "streamCreated", {"stream": stream_json(room, publication)})
        else:
            self.post(
                room.id,
                "streamDestroyed",
                {
                    "reason": STREAM_REASONS.get(reason, reason),
                    "stream": stream_json(room, publication),
                },
            )

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
