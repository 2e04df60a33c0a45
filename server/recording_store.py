"""Recording rows in SQLite: one per recording (Vonage: archive), whatever produced it."""

from __future__ import annotations

import builtins
import json
import time
from dataclasses import dataclass, field
from typing import Any

from server.storage import Database

STATUSES = ("started", "stopped", "available", "failed", "deleted")


@dataclass
class Recording:
    id: str
    room_id: str
    name: str | None
    output_mode: str
    """`composed` or `individual`."""
    resolution: str
    status: str
    """started → stopped → available | failed (deleted once removed)."""
    directory: str
    """Directory under the data dir holding its files."""
    created_at: float
    updated_at: float
    has_audio: bool = True
    has_video: bool = True
    stream_mode: str = "auto"
    """`auto`: every publication is recorded; `manual`: only streams added explicitly."""
    layout: dict[str, Any] = field(default_factory=dict)
    streams: list[dict[str, Any]] = field(default_factory=list)
    """Manual stream mode: [{streamId, hasAudio, hasVideo}]."""
    multi_archive_tag: str | None = None
    project: str | None = None
    origin: str = "room"
    """`room` (recorded by Parloir) or `upload` (attached by a participant)."""
    uploaded_by: str | None = None
    reason: str = ""
    file: str | None = None
    """The downloadable file, relative to `directory`."""
    size_bytes: int = 0
    duration_s: float = 0.0
    tracks: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "room_id": self.room_id,
            "name": self.name,
            "output_mode": self.output_mode,
            "resolution": self.resolution,
            "status": self.status,
            "reason": self.reason,
            "origin": self.origin,
            "uploaded_by": self.uploaded_by,
            "has_audio": self.has_audio,
            "has_video": self.has_video,
            "stream_mode": self.stream_mode,
            "size_bytes": self.size_bytes,
            "duration_s": round(self.duration_s, 2),
            "tracks": self.tracks,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "download": f"/api/recordings/{self.id}/download"
            if self.status == "available"
            else None,
        }


_JSON_COLUMNS = ("layout", "streams", "tracks")
_BOOL_COLUMNS = ("has_audio", "has_video")


def _row(row: Any) -> Recording:
    values = {key: row[key] for key in row.keys()}  # noqa: SIM118 - sqlite Row
    for key in _JSON_COLUMNS:
        values[key] = json.loads(values[key])
    for key in _BOOL_COLUMNS:
        values[key] = bool(values[key])
    return Recording(**values)


@dataclass
class RecordingStore:
    database: Database

    @property
    def _db(self) -> Any:
        return self.database.connection

    async def insert(self, recording: Recording) -> None:
        values = dict(recording.__dict__)
        for key in _JSON_COLUMNS:
            values[key] = json.dumps(values[key])
        for key in _BOOL_COLUMNS:
            values[key] = int(values[key])
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        await self._db.execute(
            f"INSERT INTO recordings ({columns}) VALUES ({marks})", tuple(values.values())
        )
        await self._db.commit()

    async def update(self, recording_id: str, **changes: Any) -> Recording | None:
        for key in _JSON_COLUMNS:
            if key in changes:
                changes[key] = json.dumps(changes[key])
        changes["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in changes)
        await self._db.execute(
            f"UPDATE recordings SET {assignments} WHERE id = ?", (*changes.values(), recording_id)
        )
        await self._db.commit()
        return await self.get(recording_id)

    async def get(self, recording_id: str) -> Recording | None:
        async with self._db.execute("SELECT * FROM recordings WHERE id = ?", (recording_id,)) as c:
            row = await c.fetchone()
        return _row(row) if row else None

    async def list_recordings(
        self,
        *,
        room_id: str | None = None,
        project: str | None = None,
        statuses: tuple[str, ...] = (),
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[Recording], int]:
        clauses, params = ["status != 'deleted'"], []
        if room_id:
            clauses.append("room_id = ?")
            params.append(room_id)
        if project:
            clauses.append("project = ?")
            params.append(project)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        where = " AND ".join(clauses)
        async with self._db.execute(f"SELECT COUNT(*) FROM recordings WHERE {where}", params) as c:
            total = (await c.fetchone())[0]
        async with self._db.execute(
            f"SELECT * FROM recordings WHERE {where} ORDER BY created_at DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ) as c:
            rows = await c.fetchall()
        return [_row(r) for r in rows], int(total)

    async def interrupted(self) -> builtins.list[Recording]:
        """Rows a crash left `started` or `stopped`: their recorder never finished."""
        async with self._db.execute(
            "SELECT * FROM recordings WHERE status IN ('started', 'stopped') AND origin = 'room'"
        ) as c:
            return [_row(r) for r in await c.fetchall()]
