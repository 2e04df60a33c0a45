"""Which worker process owns which room: chosen when the room is first needed, stored in SQLite.

Every request that acts on a room's live state (its signaling WebSockets, the REST calls that
signal, mute, disconnect or record it) must reach the one process holding that state. The edge
asks `owner()`; a join to a room nobody owns yet gets one through `place()`. Rows are removed when
their worker dies (its rooms ended with it) and all of them at start (no room survives a restart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from server.storage import Database


@dataclass(frozen=True)
class Placement:
    """One room on one worker."""

    room_id: str
    worker: int
    """Index of the worker slot (0 .. N-1): the same across replacements of its process."""
    worker_pid: int
    """The process that was serving the slot when the room was placed."""
    placed_at: float


class RoomPlacements:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._cache: dict[str, Placement] = {}
        self._lock = asyncio.Lock()

    async def previous_worker_pids(self) -> set[int]:
        """Worker processes of a previous run that held rooms (they may still be stopping)."""
        async with self._database.connection.execute(
            "SELECT DISTINCT worker_pid FROM room_placements"
        ) as cursor:
            return {int(row[0]) for row in await cursor.fetchall()}

    async def load(self) -> None:
        """At start: placements of a previous run are void (their processes are gone)."""
        db = self._database.connection
        await db.execute("DELETE FROM room_placements")
        await db.commit()
        self._cache.clear()

    def owner(self, room_id: str) -> Placement | None:
        return self._cache.get(room_id)

    async def place(self, room_id: str, choose: Callable[[], tuple[int, int]]) -> Placement:
        """The room's placement, creating it with `choose()` -> (worker, pid) if it has none.

        Committed before the first request is forwarded, so a placement seen is a placement kept.
        """
        placement = self._cache.get(room_id)
        if placement is not None:
            return placement
        async with self._lock:
            placement = self._cache.get(room_id)
            if placement is not None:
                return placement
            worker, pid = choose()
            placement = Placement(room_id, worker, pid, time.time())
            db = self._database.connection
            await db.execute(
                "INSERT OR REPLACE INTO room_placements (room_id, worker, worker_pid, placed_at)"
                " VALUES (?, ?, ?, ?)",
                (room_id, worker, pid, placement.placed_at),
            )
            await db.commit()
            self._cache[room_id] = placement
            return placement

    async def forget(self, room_id: str) -> None:
        """The room has closed on its worker: its next join may be placed anywhere."""
        async with self._lock:
            if self._cache.pop(room_id, None) is not None:
                db = self._database.connection
                await db.execute("DELETE FROM room_placements WHERE room_id = ?", (room_id,))
                await db.commit()

    def rooms_of(self, worker: int) -> list[str]:
        return [p.room_id for p in self._cache.values() if p.worker == worker]

    async def release_worker(self, worker: int) -> list[str]:
        """The worker died: its rooms are no longer anywhere. Returns their ids."""
        async with self._lock:
            rooms = self.rooms_of(worker)
            db = self._database.connection
            await db.execute("DELETE FROM room_placements WHERE worker = ?", (worker,))
            await db.commit()
            for room_id in rooms:
                self._cache.pop(room_id, None)
            return rooms
