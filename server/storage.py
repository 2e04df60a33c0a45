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
    (
        2,
        """
        DROP TABLE attendance;
        DROP TABLE rooms;
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            type TEXT NOT NULL CHECK (type IN ('mentoring', 'defence')),
            room_id TEXT NOT NULL UNIQUE,
            scheduled_start REAL NOT NULL,
            scheduled_end REAL NOT NULL,
            mentor_identity TEXT NOT NULL,
            mentor_name TEXT NOT NULL,
            student_identity TEXT NOT NULL,
            student_name TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'planned'
                CHECK (status IN ('planned', 'completed', 'cancelled', 'student_absent')),
            tags TEXT NOT NULL DEFAULT '[]',
            fallback_evidence TEXT NOT NULL DEFAULT '[]',
            fallback_dismissed INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX sessions_start ON sessions(scheduled_start);
        CREATE TABLE student_profiles (
            identity TEXT PRIMARY KEY,
            accommodation_need INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL
        );
        CREATE TABLE telemetry_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            room_id TEXT NOT NULL,
            identity TEXT,
            participant_id TEXT,
            kind TEXT NOT NULL,
            at REAL NOT NULL,
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX telemetry_room ON telemetry_events(room_id, at);
        CREATE TABLE bug_reports (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id),
            reporter_identity TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('waiting_room', 'call', 'after_call')),
            category TEXT NOT NULL,
            details TEXT NOT NULL,
            blocking INTEGER NOT NULL,
            diagnostics TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        );
        CREATE INDEX bug_reports_created ON bug_reports(created_at);
        CREATE TABLE session_reports (
            session_id TEXT PRIMARY KEY REFERENCES sessions(id),
            author_identity TEXT NOT NULL,
            status TEXT NOT NULL,
            notes TEXT NOT NULL,
            video_unused_reason TEXT,
            video_unused_details TEXT,
            validated_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        """,
    ),
    (
        3,
        """
        CREATE TABLE webhook_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            url TEXT NOT NULL,
            body TEXT NOT NULL,
            signing_secret TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            delivered_at REAL,
            last_error TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX webhook_outbox_due ON webhook_outbox(delivered_at, next_attempt_at);
        CREATE TABLE vonage_sessions (
            id TEXT PRIMARY KEY,
            project TEXT NOT NULL,
            media_mode TEXT NOT NULL,
            archive_mode TEXT NOT NULL,
            archive_name TEXT,
            archive_resolution TEXT,
            e2ee INTEGER NOT NULL DEFAULT 0,
            location TEXT,
            created_at REAL NOT NULL
        );
        """,
    ),
    (
        4,
        """
        CREATE TABLE recordings (
            id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL,
            name TEXT,
            output_mode TEXT NOT NULL CHECK (output_mode IN ('composed', 'individual')),
            resolution TEXT NOT NULL,
            has_audio INTEGER NOT NULL DEFAULT 1,
            has_video INTEGER NOT NULL DEFAULT 1,
            stream_mode TEXT NOT NULL DEFAULT 'auto',
            layout TEXT NOT NULL DEFAULT '{}',
            streams TEXT NOT NULL DEFAULT '[]',
            multi_archive_tag TEXT,
            project TEXT,
            origin TEXT NOT NULL DEFAULT 'room' CHECK (origin IN ('room', 'upload')),
            uploaded_by TEXT,
            status TEXT NOT NULL
                CHECK (status IN ('started', 'stopped', 'available', 'failed', 'deleted')),
            reason TEXT NOT NULL DEFAULT '',
            directory TEXT NOT NULL,
            file TEXT,
            size_bytes INTEGER NOT NULL DEFAULT 0,
            duration_s REAL NOT NULL DEFAULT 0,
            tracks TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX recordings_room ON recordings(room_id, created_at);
        ALTER TABLE sessions ADD COLUMN auto_record INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        5,
        """
        CREATE TABLE room_placements (
            room_id TEXT PRIMARY KEY,
            worker INTEGER NOT NULL,
            worker_pid INTEGER NOT NULL,
            placed_at REAL NOT NULL
        );
        CREATE INDEX room_placements_worker ON room_placements(worker);
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
        # FULL: what was acknowledged (a bug report) survives a crash, not only a process kill.
        await connection.execute("PRAGMA synchronous=FULL")
        database = cls(connection)
        await database.migrate()
        return database

    async def migrate(self) -> None:
        await self.connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
        )
        async with self.connection.execute("SELECT MAX(version) FROM schema_version") as cursor:
            row = await cursor.fetchone()
        current = row[0] if row is not None and row[0] else 0
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
        return int(row[0]) if row is not None and row[0] else 0

    async def close(self) -> None:
        await self.connection.close()
