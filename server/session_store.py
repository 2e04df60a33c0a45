"""Platform data in SQLite: sessions, student profiles, telemetry, bug reports, session reports.

Every write that is acknowledged to a caller is committed before the call returns.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from server.session_metrics import TelemetryEvent
from server.storage import Database

EXCEPTION_TAG = "Exception"
"""A blocking bug report forced the call elsewhere: the session is paid in full."""
SUSPECTED_FALLBACK_TAG = "suspected_fallback"
"""Telemetry suggests the call left the built-in video; awaiting the mentor's bug report."""
SESSION_STATUSES = ("planned", "completed", "cancelled", "student_absent")


@dataclass
class Session:
    id: str
    type: str
    """`mentoring` or `defence`."""
    room_id: str
    """The live room this session owns."""
    scheduled_start: float
    scheduled_end: float
    mentor_identity: str
    mentor_name: str
    student_identity: str
    student_name: str
    status: str
    tags: list[str]
    fallback_evidence: list[str]
    fallback_dismissed: bool
    created_at: float
    updated_at: float
    auto_record: bool = False
    """Record the room from its first publish (defences)."""

    def party_of(self, identity: str) -> str | None:
        if identity == self.mentor_identity:
            return "mentor"
        if identity == self.student_identity:
            return "student"
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "room_id": self.room_id,
            "scheduled_start": self.scheduled_start,
            "scheduled_end": self.scheduled_end,
            "mentor": {"identity": self.mentor_identity, "name": self.mentor_name},
            "student": {"identity": self.student_identity, "name": self.student_name},
            "status": self.status,
            "tags": list(self.tags),
            "fallback_evidence": list(self.fallback_evidence),
            "fallback_dismissed": self.fallback_dismissed,
            "auto_record": self.auto_record,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass
class BugReport:
    id: str
    session_id: str
    reporter_identity: str
    source: str
    category: str
    details: str
    blocking: bool
    diagnostics: dict[str, Any]
    created_at: float

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "reporter_identity": self.reporter_identity,
            "source": self.source,
            "category": self.category,
            "details": self.details,
            "blocking": self.blocking,
            "diagnostics": self.diagnostics,
            "created_at": self.created_at,
        }


@dataclass
class SessionReport:
    session_id: str
    author_identity: str
    status: str
    notes: str
    video_unused_reason: str | None
    video_unused_details: str | None
    validated_at: float | None
    created_at: float
    updated_at: float

    def describe(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "author_identity": self.author_identity,
            "status": self.status,
            "notes": self.notes,
            "video_unused_reason": self.video_unused_reason,
            "video_unused_details": self.video_unused_details,
            "validated": self.validated_at is not None,
            "validated_at": self.validated_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _session(row: Any) -> Session:
    return Session(
        id=row["id"],
        type=row["type"],
        room_id=row["room_id"],
        scheduled_start=row["scheduled_start"],
        scheduled_end=row["scheduled_end"],
        mentor_identity=row["mentor_identity"],
        mentor_name=row["mentor_name"],
        student_identity=row["student_identity"],
        student_name=row["student_name"],
        status=row["status"],
        tags=json.loads(row["tags"]),
        fallback_evidence=json.loads(row["fallback_evidence"]),
        fallback_dismissed=bool(row["fallback_dismissed"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        auto_record=bool(row["auto_record"]),
    )


def _bug_report(row: Any) -> BugReport:
    return BugReport(
        id=row["id"],
        session_id=row["session_id"],
        reporter_identity=row["reporter_identity"],
        source=row["source"],
        category=row["category"],
        details=row["details"],
        blocking=bool(row["blocking"]),
        diagnostics=json.loads(row["diagnostics"]),
        created_at=row["created_at"],
    )


def _report(row: Any) -> SessionReport:
    return SessionReport(**{k: row[k] for k in row.keys()})  # noqa: SIM118 - sqlite Row


@dataclass
class SessionFilter:
    status: str | None = None
    type: str | None = None
    start_from: float | None = None
    start_to: float | None = None
    tag: str | None = None


@dataclass
class BugReportFilter:
    category: str | None = None
    session_type: str | None = None
    created_from: float | None = None
    created_to: float | None = None
    blocking: bool | None = None


@dataclass
class SessionStore:
    database: Database
    _writes: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def _db(self) -> Any:
        return self.database.connection

    async def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        async with self._db.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    # ---- sessions ------------------------------------------------------------------------

    async def create_session(
        self,
        *,
        type: str,
        scheduled_start: float,
        scheduled_end: float,
        mentor_identity: str,
        mentor_name: str,
        student_identity: str,
        student_name: str,
        room_id: str | None = None,
        auto_record: bool = False,
    ) -> Session:
        now = time.time()
        session_id = uuid.uuid4().hex
        room = room_id or f"session-{session_id}"
        async with self._writes:
            await self._db.execute(
                "INSERT INTO sessions (id, type, room_id, scheduled_start, scheduled_end,"
                " mentor_identity, mentor_name, student_identity, student_name, created_at,"
                " updated_at, auto_record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    type,
                    room,
                    scheduled_start,
                    scheduled_end,
                    mentor_identity,
                    mentor_name,
                    student_identity,
                    student_name,
                    now,
                    now,
                    int(auto_record),
                ),
            )
            await self._db.commit()
        session = await self.get_session(session_id)
        assert session is not None
        return session

    async def get_session(self, session_id: str) -> Session | None:
        row = await self._one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return _session(row) if row else None

    async def session_for_room(self, room_id: str) -> Session | None:
        row = await self._one("SELECT * FROM sessions WHERE room_id = ?", (room_id,))
        return _session(row) if row else None

    async def list_sessions(
        self, where: SessionFilter, offset: int, limit: int
    ) -> tuple[list[Session], int]:
        sql_where, params = _where(
            {
                "status = ?": where.status,
                "type = ?": where.type,
                "scheduled_start >= ?": where.start_from,
                "scheduled_start < ?": where.start_to,
                "EXISTS (SELECT 1 FROM json_each(sessions.tags) WHERE value = ?)": where.tag,
            }
        )
        total = (await self._one(f"SELECT COUNT(*) FROM sessions{sql_where}", params))[0]
        rows = await self._all(
            f"SELECT * FROM sessions{sql_where} ORDER BY scheduled_start DESC, id LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_session(r) for r in rows], int(total)

    async def update_session(self, session_id: str, **fields: Any) -> Session | None:
        allowed = {"status", "scheduled_start", "scheduled_end", "mentor_name", "student_name"}
        changes = {k: v for k, v in fields.items() if k in allowed and v is not None}
        if changes:
            assignments = ", ".join(f"{k} = ?" for k in changes)
            async with self._writes:
                await self._db.execute(
                    f"UPDATE sessions SET {assignments}, updated_at = ? WHERE id = ?",
                    (*changes.values(), time.time(), session_id),
                )
                await self._db.commit()
        return await self.get_session(session_id)

    async def _set_tags(self, session: Session, tags: list[str], **extra: Any) -> None:
        columns = ", ".join(f"{k} = ?" for k in extra)
        await self._db.execute(
            f"UPDATE sessions SET tags = ?, updated_at = ?{', ' + columns if columns else ''}"
            " WHERE id = ?",
            (json.dumps(tags), time.time(), *extra.values(), session.id),
        )

    async def mark_suspected_fallback(self, session_id: str, evidence: list[str]) -> Session | None:
        async with self._writes:
            session = await self.get_session(session_id)
            if session is None or session.fallback_dismissed or not evidence:
                return session
            tags = session.tags + (
                [] if SUSPECTED_FALLBACK_TAG in session.tags else [SUSPECTED_FALLBACK_TAG]
            )
            await self._set_tags(session, tags, fallback_evidence=json.dumps(evidence))
            await self._db.commit()
        return await self.get_session(session_id)

    async def dismiss_fallback(self, session_id: str) -> Session | None:
        async with self._writes:
            session = await self.get_session(session_id)
            if session is None:
                return None
            tags = [t for t in session.tags if t != SUSPECTED_FALLBACK_TAG]
            await self._set_tags(session, tags, fallback_dismissed=1)
            await self._db.commit()
        return await self.get_session(session_id)

    # ---- student profiles ----------------------------------------------------------------

    async def set_accommodation(self, identity: str, accommodation_need: bool) -> None:
        async with self._writes:
            await self._db.execute(
                "INSERT INTO student_profiles (identity, accommodation_need, updated_at)"
                " VALUES (?, ?, ?) ON CONFLICT(identity) DO UPDATE SET"
                " accommodation_need = excluded.accommodation_need,"
                " updated_at = excluded.updated_at",
                (identity, int(accommodation_need), time.time()),
            )
            await self._db.commit()

    async def has_accommodation(self, identity: str) -> bool:
        row = await self._one(
            "SELECT accommodation_need FROM student_profiles WHERE identity = ?", (identity,)
        )
        return bool(row and row[0])

    # ---- telemetry -----------------------------------------------------------------------

    async def record_event(
        self,
        *,
        room_id: str,
        kind: str,
        identity: str | None = None,
        participant_id: str | None = None,
        at: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        async with self._writes:
            await self._db.execute(
                "INSERT INTO telemetry_events (room_id, identity, participant_id, kind, at, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    room_id,
                    identity,
                    participant_id,
                    kind,
                    at if at is not None else time.time(),
                    json.dumps(data or {}),
                ),
            )
            await self._db.commit()

    async def events_for_room(
        self, room_id: str, kinds: tuple[str, ...] = ()
    ) -> list[TelemetryEvent]:
        sql = (
            "SELECT kind, at, identity, participant_id, data FROM telemetry_events"
            " WHERE room_id = ?"
        )
        params: tuple[Any, ...] = (room_id,)
        if kinds:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            params += kinds
        rows = await self._all(sql + " ORDER BY at, id", params)
        return [
            TelemetryEvent(
                kind=r["kind"],
                at=r["at"],
                identity=r["identity"],
                participant_id=r["participant_id"],
                data=json.loads(r["data"]),
            )
            for r in rows
        ]

    async def rooms_with_open_telemetry(self) -> list[str]:
        """Rooms where a participant's or track's latest start has no later stop (ids are the
        recorder's write order): live calls, or calls a dead process never closed."""
        rows = await self._all(
            """
            SELECT room_id FROM (
                SELECT room_id,
                       MAX(CASE WHEN kind = 'call_joined' THEN id END) AS started,
                       MAX(CASE WHEN kind = 'call_left' THEN id END) AS stopped
                FROM telemetry_events WHERE kind IN ('call_joined', 'call_left')
                GROUP BY room_id, participant_id
                UNION ALL
                SELECT room_id,
                       MAX(CASE WHEN kind = 'media_started' THEN id END),
                       MAX(CASE WHEN kind = 'media_stopped' THEN id END)
                FROM telemetry_events WHERE kind IN ('media_started', 'media_stopped')
                GROUP BY room_id, json_extract(data, '$.track')
            )
            WHERE started IS NOT NULL AND (stopped IS NULL OR started > stopped)
            GROUP BY room_id
            """,
            (),
        )
        return [row[0] for row in rows]

    async def latest_event(self, room_id: str, identity: str, kind: str) -> TelemetryEvent | None:
        row = await self._one(
            "SELECT kind, at, identity, participant_id, data FROM telemetry_events"
            " WHERE room_id = ? AND identity = ? AND kind = ? ORDER BY at DESC, id DESC LIMIT 1",
            (room_id, identity, kind),
        )
        if row is None:
            return None
        return TelemetryEvent(
            kind=row["kind"],
            at=row["at"],
            identity=row["identity"],
            participant_id=row["participant_id"],
            data=json.loads(row["data"]),
        )

    # ---- bug reports ---------------------------------------------------------------------

    async def add_bug_report(
        self,
        session: Session,
        *,
        reporter_identity: str,
        source: str,
        category: str,
        details: str,
        blocking: bool,
        diagnostics: dict[str, Any],
    ) -> tuple[BugReport, Session]:
        """Store the report and, when blocking, tag the session Exception — one transaction."""
        report_id = uuid.uuid4().hex
        now = time.time()
        async with self._writes:
            await self._db.execute(
                "INSERT INTO bug_reports (id, session_id, reporter_identity, source, category,"
                " details, blocking, diagnostics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report_id,
                    session.id,
                    reporter_identity,
                    source,
                    category,
                    details,
                    int(blocking),
                    json.dumps(diagnostics),
                    now,
                ),
            )
            current = await self.get_session(session.id)
            assert current is not None
            if blocking and EXCEPTION_TAG not in current.tags:
                tags = [t for t in current.tags if t != SUSPECTED_FALLBACK_TAG] + [EXCEPTION_TAG]
                await self._set_tags(current, tags)
            await self._db.commit()
        row = await self._one("SELECT * FROM bug_reports WHERE id = ?", (report_id,))
        updated = await self.get_session(session.id)
        assert updated is not None
        return _bug_report(row), updated

    async def bug_reports_for_session(self, session_id: str) -> list[BugReport]:
        rows = await self._all(
            "SELECT * FROM bug_reports WHERE session_id = ? ORDER BY created_at", (session_id,)
        )
        return [_bug_report(r) for r in rows]

    async def list_bug_reports(
        self, where: BugReportFilter, offset: int, limit: int
    ) -> tuple[list[tuple[BugReport, Session]], int]:
        sql_where, params = _where(
            {
                "b.category = ?": where.category,
                "s.type = ?": where.session_type,
                "b.created_at >= ?": where.created_from,
                "b.created_at < ?": where.created_to,
                "b.blocking = ?": None if where.blocking is None else int(where.blocking),
            }
        )
        base = f"FROM bug_reports b JOIN sessions s ON s.id = b.session_id{sql_where}"
        total = (await self._one(f"SELECT COUNT(*) {base}", params))[0]
        rows = await self._all(
            f"SELECT b.*, s.id AS sid {base} ORDER BY b.created_at DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        out = []
        for row in rows:
            session = await self.get_session(row["sid"])
            assert session is not None
            out.append((_bug_report(row), session))
        return out, int(total)

    # ---- session reports -----------------------------------------------------------------

    async def get_report(self, session_id: str) -> SessionReport | None:
        row = await self._one("SELECT * FROM session_reports WHERE session_id = ?", (session_id,))
        return _report(row) if row else None

    async def save_report(
        self, session_id: str, *, author_identity: str, status: str, notes: str
    ) -> SessionReport:
        now = time.time()
        async with self._writes:
            await self._db.execute(
                "INSERT INTO session_reports (session_id, author_identity, status, notes,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(session_id) DO UPDATE SET author_identity = excluded.author_identity,"
                " status = excluded.status, notes = excluded.notes,"
                " updated_at = excluded.updated_at",
                (session_id, author_identity, status, notes, now, now),
            )
            await self._db.commit()
        report = await self.get_report(session_id)
        assert report is not None
        return report

    async def validate_report(
        self, session_id: str, *, reason: str | None, details: str | None, session_status: str
    ) -> SessionReport:
        now = time.time()
        async with self._writes:
            await self._db.execute(
                "UPDATE session_reports SET video_unused_reason = ?, video_unused_details = ?,"
                " validated_at = ?, updated_at = ? WHERE session_id = ?",
                (reason, details, now, now, session_id),
            )
            await self._db.execute(
                "UPDATE sessions SET status = ?, updated_at = ? WHERE id = ?",
                (session_status, now, session_id),
            )
            await self._db.commit()
        report = await self.get_report(session_id)
        assert report is not None
        return report


def _where(conditions: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """` WHERE a AND b` of the conditions (SQL with one `?` each) whose value is given (neither
    None nor empty), and their parameters in order; "" when none is."""
    given = {sql: value for sql, value in conditions.items() if value is not None and value != ""}
    return (f" WHERE {' AND '.join(given)}" if given else ""), tuple(given.values())
