"""Records who was in which room and when, as rooms report it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from server.storage import Database
from signaling.participant import Participant
from signaling.publication import Publication
from signaling.room import Room

log = logging.getLogger(__name__)


class AttendanceRecorder:
    """A RoomObserver writing attendance rows; writes run as tasks so signaling never waits."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._tasks: set[asyncio.Task[None]] = set()
        # Writes run in the order events happened (a quick leave must not overtake its join).
        self._order = asyncio.Lock()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(self._in_order(coro))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _in_order(self, coro: Any) -> None:
        async with self._order:
            await coro

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("attendance write failed", exc_info=task.exception())

    def participant_joined(self, room: Room, participant: Participant) -> None:
        self._spawn(self._joined(room, participant))

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        self._spawn(self._left(room, participant, reason, time.time()))

    def publication_changed(self, room: Room, publication: Publication, live: bool) -> None:
        if live and room.codec:
            self._spawn(self._codec(room.id, room.codec))

    async def _joined(self, room: Room, participant: Participant) -> None:
        db = self._database.connection
        await db.execute(
            "INSERT OR IGNORE INTO rooms (id, created_at, codec) VALUES (?, ?, ?)",
            (room.id, room.created_at, room.codec),
        )
        await db.execute(
            "INSERT INTO attendance (participant_id, room_id, identity, name, role, joined_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                participant.id,
                room.id,
                participant.identity,
                participant.name,
                participant.role.value,
                participant.joined_at,
            ),
        )
        await db.commit()

    async def _left(self, room: Room, participant: Participant, reason: str, at: float) -> None:
        db = self._database.connection
        await db.execute(
            "UPDATE attendance SET left_at = ?, leave_reason = ? WHERE participant_id = ?",
            (at, reason, participant.id),
        )
        await db.commit()

    async def _codec(self, room_id: str, codec: str) -> None:
        db = self._database.connection
        await db.execute("UPDATE rooms SET codec = ? WHERE id = ?", (codec, room_id))
        await db.commit()

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
