"""Platform API: sessions, join links, student profiles, telemetry, bug reports of a session."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from server.api import ApiError, ApiRoutes, Auth, RequestContext, page
from server.api_models import (
    ProfileUpdate,
    SessionCreate,
    SessionQuery,
    SessionUpdate,
    TokenRequest,
)
from server.keys import SETTINGS, STORE
from server.session_metrics import fallback_evidence, session_metrics
from server.session_store import Session, SessionFilter, SessionStore
from server.tokens import issue_token
from signaling.permissions import Role

routes = ApiRoutes()


def epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


async def load_session(store: SessionStore, session_id: str) -> Session:
    session = await store.get_session(session_id)
    if session is None:
        raise ApiError(404, "unknown-session", f"no session {session_id!r}")
    return session


async def describe_session(store: SessionStore, session: Session) -> dict[str, Any]:
    """The session with what telemetry says about it and its report."""
    now = time.time()
    events = await store.events_for_room(session.room_id)
    metrics = session_metrics(events, session.mentor_identity, session.student_identity, now)
    report = await store.get_report(session.id)
    live_evidence = fallback_evidence(
        events, session.mentor_identity, session.student_identity, session.scheduled_end, now
    )
    return {
        **session.describe(),
        "metrics": metrics.describe(),
        "fallback_signals": live_evidence,
        "report": report.describe() if report else None,
    }


@routes.route(
    "POST",
    "/api/sessions",
    summary="Schedule a session (creates its room)",
    auth=Auth.PLATFORM,
    body=SessionCreate,
    status=201,
)
async def create_session(ctx: RequestContext) -> dict[str, Any]:
    body: SessionCreate = ctx.body
    store = ctx.app[STORE]
    session = await store.create_session(
        type=body.type,
        scheduled_start=body.scheduled_start.timestamp(),
        scheduled_end=body.scheduled_end.timestamp(),
        mentor_identity=body.mentor.identity,
        mentor_name=body.mentor.name,
        student_identity=body.student.identity,
        student_name=body.student.name,
        auto_record=body.type == "defence" if body.auto_record is None else body.auto_record,
    )
    return await describe_session(store, session)


@routes.route(
    "GET",
    "/api/sessions",
    summary="List sessions (newest first, paginated)",
    auth=Auth.PLATFORM,
    query=SessionQuery,
)
async def list_sessions(ctx: RequestContext) -> dict[str, Any]:
    query: SessionQuery = ctx.query
    store = ctx.app[STORE]
    sessions, total = await store.list_sessions(
        SessionFilter(
            status=query.status,
            type=query.type,
            tag=query.tag,
            start_from=epoch(query.start_from),
            start_to=epoch(query.start_to),
        ),
        query.offset,
        query.limit,
    )
    return page([await describe_session(store, s) for s in sessions], total, query.offset)


@routes.route(
    "GET", "/api/sessions/{session_id}", summary="A session with its metrics", auth=Auth.PLATFORM
)
async def get_session(ctx: RequestContext) -> dict[str, Any]:
    store = ctx.app[STORE]
    return await describe_session(store, await load_session(store, ctx.path("session_id")))


@routes.route(
    "PATCH",
    "/api/sessions/{session_id}",
    summary="Reschedule or change status",
    auth=Auth.PLATFORM,
    body=SessionUpdate,
)
async def update_session(ctx: RequestContext) -> dict[str, Any]:
    body: SessionUpdate = ctx.body
    store = ctx.app[STORE]
    session = await load_session(store, ctx.path("session_id"))
    start, end = epoch(body.scheduled_start), epoch(body.scheduled_end)  # None: unchanged
    if (session.scheduled_end if end is None else end) <= (
        session.scheduled_start if start is None else start
    ):
        raise ApiError(422, "invalid", "scheduled_end must be after scheduled_start")
    updated = await store.update_session(
        session.id,
        status=body.status,
        scheduled_start=start,
        scheduled_end=end,
    )
    assert updated is not None
    return await describe_session(store, updated)


@routes.route(
    "POST",
    "/api/sessions/{session_id}/tokens",
    summary="Issue a join token and call link for the mentor or the student",
    auth=Auth.PLATFORM,
    body=TokenRequest,
    status=201,
)
async def issue_join_token(ctx: RequestContext) -> dict[str, Any]:
    body: TokenRequest = ctx.body
    store = ctx.app[STORE]
    session = await load_session(store, ctx.path("session_id"))
    if session.status == "cancelled":
        raise ApiError(409, "session-cancelled", "the session was cancelled")
    identity, name = (
        (session.mentor_identity, session.mentor_name)
        if body.party == "mentor"
        else (session.student_identity, session.student_name)
    )
    # A defence jury member and the mentor moderate; the student publishes.
    role = Role.MODERATOR if body.party == "mentor" else Role.PUBLISHER
    token = issue_token(
        ctx.app[SETTINGS].secret,
        room=session.room_id,
        identity=identity,
        role=role,
        name=name,
        ttl_s=body.ttl_s,
    )
    base = ctx.app[SETTINGS].link_base(f"{ctx.request.scheme}://{ctx.request.host}")
    return {
        "token": token,
        "room_id": session.room_id,
        "identity": identity,
        "role": role.value,
        "url": f"{base}/room/{session.room_id}?token={token}",
        "expires_in_s": body.ttl_s,
    }


@routes.route(
    "GET",
    "/api/sessions/{session_id}/telemetry",
    summary="Telemetry events of the session's room",
    auth=Auth.PLATFORM,
)
async def session_telemetry(ctx: RequestContext) -> dict[str, Any]:
    store = ctx.app[STORE]
    session = await load_session(store, ctx.path("session_id"))
    events = await store.events_for_room(session.room_id)
    items = [
        {
            "kind": e.kind,
            "at": e.at,
            "identity": e.identity,
            "participant_id": e.participant_id,
            "data": e.data,
        }
        for e in events
    ]
    return {"items": items, "count": len(items)}


@routes.route(
    "GET",
    "/api/sessions/{session_id}/bug-reports",
    summary="Bug reports and feedback filed for the session",
    auth=Auth.PLATFORM,
)
async def session_bug_reports(ctx: RequestContext) -> dict[str, Any]:
    store = ctx.app[STORE]
    session = await load_session(store, ctx.path("session_id"))
    reports = await store.bug_reports_for_session(session.id)
    return {"items": [r.describe() for r in reports], "count": len(reports)}


@routes.route(
    "POST",
    "/api/sessions/{session_id}/fallback/dismiss",
    summary="Dismiss a suspected fallback (false alarm)",
    auth=Auth.PLATFORM,
)
async def dismiss_fallback(ctx: RequestContext) -> dict[str, Any]:
    store = ctx.app[STORE]
    session = await load_session(store, ctx.path("session_id"))
    updated = await store.dismiss_fallback(session.id)
    assert updated is not None
    return await describe_session(store, updated)


@routes.route(
    "PUT",
    "/api/students/{identity}/profile",
    summary="Record whether a student has an accommodation need (RQTH)",
    auth=Auth.PLATFORM,
    body=ProfileUpdate,
)
async def put_profile(ctx: RequestContext) -> dict[str, Any]:
    body: ProfileUpdate = ctx.body
    identity = ctx.path("identity")
    if not 0 < len(identity) <= 128:
        raise ApiError(422, "invalid", "identity must be 1..128 characters")
    await ctx.app[STORE].set_accommodation(identity, body.accommodation_need)
    return {"identity": identity, "accommodation_need": body.accommodation_need}
