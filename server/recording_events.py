"""Glue between recordings and the rest: moderators' record messages, rooms that record by
themselves, and the webhooks every status change produces."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from server.recording_store import Recording
from server.recordings import RecordingError, RecordingOptions, RecordingService
from server.session_store import SessionStore
from server.settings import Settings
from server.storage import Database
from server.vonage_archives import archive_json
from server.vonage_events import VonageEvents
from server.webhooks import WebhookOutbox
from signaling.errors import ErrorCode, SignalingError

log = logging.getLogger(__name__)


class RoomRecordingControl:
    """signaling.room.RecordingControl for moderators' `record` messages."""

    def __init__(self, service: RecordingService) -> None:
        self._service = service

    async def start_recording(
        self, room_id: str, output_mode: str, resolution: str, name: str | None
    ) -> dict[str, Any]:
        try:
            row = await self._service.start(
                room_id, RecordingOptions(output_mode=output_mode, resolution=resolution, name=name)
            )
        except RecordingError as exc:
            raise SignalingError(ErrorCode.FORBIDDEN, exc.message) from exc
        return row.describe()

    async def stop_recording(self, room_id: str) -> dict[str, Any]:
        running = self._service.active_for_room(room_id)
        if not running:
            raise SignalingError(ErrorCode.INVALID_MESSAGE, "this room is not being recorded")
        row = await self._service.stop(running[0].row.id, reason="stopped by a moderator")
        return row.describe()


def auto_record_rule(database: Database, sessions: SessionStore):  # type: ignore[no-untyped-def]
    """A room records from its first publish when its platform session says so (defences by
    default) or its Vonage session was created with archiveMode=always."""

    async def records(room_id: str) -> bool:
        session = await sessions.session_for_room(room_id)
        if session is not None:
            return session.auto_record
        async with database.connection.execute(
            "SELECT archive_mode FROM vonage_sessions WHERE id = ?", (room_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return bool(row and row[0] == "always")

    return records


class RecordingWebhooks:
    """Posts each committed status change: to the platform's webhook URL, and for Vonage
    sessions the archive object to the project's callback URL."""

    def __init__(
        self, settings: Settings, outbox: WebhookOutbox, vonage: VonageEvents, base_url: str
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._vonage = vonage
        self._base_url = base_url
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, row: Recording) -> None:
        if self._settings.webhook_url:
            payload = {
                "event": "recording.status",
                "timestamp": int(time.time() * 1000),
                "recording": row.describe(),
            }
            self._spawn(
                self._outbox.enqueue(
                    self._settings.webhook_url, payload, self._settings.webhook_secret or None
                )
            )
        project = self._vonage.project_of(row.room_id)
        if project is not None and project.callback_url:
            payload = archive_json(row, project.api_key, self._base_url, self._settings.secret)
            self._spawn(
                self._outbox.enqueue(project.callback_url, payload, project.signature_secret)
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
