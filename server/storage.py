"""SQLite storage (aiosqlite, WAL) with versioned migrations."""

from __future__ import annotations

import logging
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

# Append only: a migration that shipped is never edited, a new one is added.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE rooms (
            id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            codec TEXT
        );
        CREATE TABLE attendance (
            participant_id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL REFERENCES rooms(id),
            identity TEXT NOT NULL,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            joined_at REAL NOT NULL,
            left_at REAL,
            leave_reason TEXT
        );
        CREATE INDEX attendance_room ON attendance(room_id, joined_at);
        """,
    ),
]


class Database:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path)
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA synchronous=NORMAL")
        database = cls(connection)
        await database.migrate()
        return database

    async def migrate(self) -> None:
        await self.connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
        )
        async with self.connection.execute("SELECT MAX(version) FROM schema_version") as cursor:
            row = await cursor.fetchone()
        current = row[0] or 0
        for version, script in MIGRATIONS:
            if version <= current:
                continue
            await self.connection.executescript(
                f"BEGIN;\n{script}\nINSERT INTO schema_version VALUES ({version});\nCOMMIT;"
            )
            log.info("database migrated to version %d", version)

    async def schema_version(self) -> int:
        async with self.connection.execute("SELECT MAX(version) FROM schema_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0] or 0)

    async def close(self) -> None:
        await self.connection.close()
