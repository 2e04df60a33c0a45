"""Participant API, authenticated by the join token of the room in the path: bug reports,
feedback, connection-test results and the mentor's session report."""

from __future__ import annotations

import time
from typing import Any

from server.api import ApiError, ApiRoutes, Auth, RequestContext
from server.api_models import (
    BugReportCreate,
    ConnectionTestResult,
    FeedbackCreate,
    ReportSave,
    ReportValidate,
)
from server.keys import BUG_CATEGORIES, STORE
from server.report_validation import ReportRuleError, check_validation
from server.session_metrics import DROP_REASONS, SessionMetrics, session_metrics
from server.session_store import EXCEPTION_TAG, SUSPECTED_FALLBACK_TAG, Session, SessionStore

routes = ApiRoutes()


async def session_of(ctx: RequestContext) -> Session:
    grant = ctx.caller.grant
    assert grant is not None
    session = await ctx.app[STORE].session_for_room(grant.room)
    if session is None:
        raise ApiError(404, "no-session", "this room belongs to no scheduled session")
    return session


async def diagnostics_for(store: SessionStore, session: Session, identity: str) -> dict[str, Any]:
    """What support needs next to a bug report: the reporter's latest measured figures."""
    test = await store.latest_event(session.room_id, identity, "connection_test")
    sample = await store.latest_event(session.room_id, identity, "quality_sample")
    events = await store.events_for_room(session.room_id, ("call_left", "ice_failed"))
    mine = [e for e in events if e.identity == identity]
    return {
        "connection_test": test.data if test else None,
        "connection_test_at": test.at if test else None,
        "quality": sample.data if sample else None,
        "drops": sum(1 for e in mine if e.data.get("reason") in DROP_REASONS),
        "ice_failures": sum(1 for e in mine if e.kind == "ice_failed"),
        "fallback_evidence": session.fallback_evidence,
    }


@routes.route(
    "GET",
    "/api/rooms/{room}/bug-categories",
    summary="Bug report categories",
    auth=Auth.PARTICIPANT,
    tag="participant",
)
async def bug_categories(ctx: RequestContext) -> dict[str, Any]:
    categories = ctx.app[BUG_CATEGORIES]
    items = [{"id": k, "label": v} for k, v in categories.items()]
    grant = ctx.caller.grant
    assert grant is not None
    session = await ctx.app[STORE].session_for_room(grant.room)
    suggestion = None
    if (
        session is not None
        and grant.identity == session.mentor_identity
        and SUSPECTED_FALLBACK_TAG in session.tags
        and EXCEPTION_TAG not in session.tags
    ):
        # Telemetry suspects the call moved elsewhere: offer the mentor the report pre-filled
        # with that evidence; filing it (not this suggestion) is what tags the session.
        dropped = any("dropped" in e or "failure" in e for e in session.fallback_evidence)
        category = "repeated_disconnections" if dropped else "other"
        suggestion = {
            "category": category if category in categories else None,
            "details": "The call could not go on with the built-in video. Measured: "
            + "; ".join(session.fallback_evidence)
            + ".",
        }
    return {"items": items, "suggestion": suggestion}


@routes.route(
    "POST",
    "/api/rooms/{room}/bug-reports",
    summary="File a blocking bug report: tags the session Exception",
    auth=Auth.PARTICIPANT,
    body=BugReportCreate,
    status=201,
    tag="participant",
)
async def file_bug_report(ctx: RequestContext) -> dict[str, Any]:
    body: BugReportCreate = ctx.body
    return await _store_report(ctx, body.source, body.category, body.details, blocking=True)


@routes.route(
    "POST",
    "/api/rooms/{room}/feedback",
    summary="Send non-blocking feedback (never tags the session)",
    auth=Auth.PARTICIPANT,
    body=FeedbackCreate,
    status=201,
    tag="participant",
)
async def send_feedback(ctx: RequestContext) -> dict[str, Any]:
    body: FeedbackCreate = ctx.body
    details = body.details if body.rating is None else f"[rating {body.rating}/5] {body.details}"
    return await _store_report(
        ctx,
        body.source,
        body.category or "feedback",
        details,
        blocking=False,
        allow_any_category=True,
    )


async def _store_report(
    ctx: RequestContext,
    source: str,
    category: str,
    details: str,
    *,
    blocking: bool,
    allow_any_category: bool = False,
) -> dict[str, Any]:
    categories = ctx.app[BUG_CATEGORIES]
    if not allow_any_category and category not in categories:
        raise ApiError(422, "unknown-category", f"category must be one of {sorted(categories)}")
    store = ctx.app[STORE]
    session = await session_of(ctx)
    grant = ctx.caller.grant
    assert grant is not None
    report, updated = await store.add_bug_report(
        session,
        reporter_identity=grant.identity,
        source=source,
        category=category,
        details=details,
        blocking=blocking,
        diagnostics=await diagnostics_for(store, session, grant.identity),
    )
    # Committed above: the acknowledgement below means it survives a crash.
    return {
        "report": report.describe(),
        "session": {"id": updated.id, "tags": updated.tags},
        "exception_tagged": EXCEPTION_TAG in updated.tags,
    }


@routes.route(
    "POST",
    "/api/rooms/{room}/connection-test",
    summary="Store the waiting room's connection-test result",
    auth=Auth.PARTICIPANT,
    body=ConnectionTestResult,
    status=201,
    tag="participant",
)
async def connection_test(ctx: RequestContext) -> dict[str, Any]:
    body: ConnectionTestResult = ctx.body
    grant = ctx.caller.grant
    assert grant is not None
    data = body.model_dump(exclude_none=True)
    await ctx.app[STORE].record_event(
        room_id=grant.room, kind="connection_test", identity=grant.identity, data=data
    )
    return {"stored": True, "result": data}


async def _mentor_session(ctx: RequestContext) -> Session:
    session = await session_of(ctx)
    grant = ctx.caller.grant
    assert grant is not None
    if grant.identity != session.mentor_identity:
        raise ApiError(403, "forbidden", "only the session's mentor writes its report")
    return session


async def _metrics_now(store: SessionStore, session: Session) -> SessionMetrics:
    """What the session's telemetry says so far (whether video was used, among others)."""
    events = await store.events_for_room(session.room_id)
    return session_metrics(events, session.mentor_identity, session.student_identity, time.time())


async def _report_view(store: SessionStore, session: Session) -> dict[str, Any]:
    metrics = await _metrics_now(store, session)
    report = await store.get_report(session.id)
    return {
        "session": session.describe(),
        "metrics": metrics.describe(),
        "report": report.describe() if report else None,
        "reason_required": not metrics.video_used,
        "reasons": ["accommodation_need", "other"],
        "student_has_accommodation": await store.has_accommodation(session.student_identity),
    }


@routes.route(
    "GET",
    "/api/rooms/{room}/report",
    summary="The mentor's session report",
    auth=Auth.PARTICIPANT,
    tag="participant",
)
async def get_report(ctx: RequestContext) -> dict[str, Any]:
    return await _report_view(ctx.app[STORE], await _mentor_session(ctx))


@routes.route(
    "PUT",
    "/api/rooms/{room}/report",
    summary="Write the session report (draft)",
    auth=Auth.PARTICIPANT,
    body=ReportSave,
    tag="participant",
)
async def save_report(ctx: RequestContext) -> dict[str, Any]:
    body: ReportSave = ctx.body
    store = ctx.app[STORE]
    session = await _mentor_session(ctx)
    existing = await store.get_report(session.id)
    if existing is not None and existing.validated_at is not None:
        raise ApiError(409, "already-validated", "the report was validated and is final")
    grant = ctx.caller.grant
    assert grant is not None
    await store.save_report(
        session.id, author_identity=grant.identity, status=body.status, notes=body.notes
    )
    return await _report_view(store, session)


@routes.route(
    "POST",
    "/api/rooms/{room}/report/validate",
    summary="Validate the report (a reason is required when video was never used)",
    auth=Auth.PARTICIPANT,
    body=ReportValidate,
    tag="participant",
)
async def validate_report(ctx: RequestContext) -> dict[str, Any]:
    body: ReportValidate = ctx.body
    store = ctx.app[STORE]
    session = await _mentor_session(ctx)
    report = await store.get_report(session.id)
    if report is None:
        raise ApiError(409, "no-report", "write the report before validating it")
    if report.validated_at is not None:
        raise ApiError(409, "already-validated", "the report was already validated")
    metrics = await _metrics_now(store, session)
    try:
        check_validation(
            video_used=metrics.video_used,
            reason=body.reason,
            details=body.details,
            student_has_accommodation=await store.has_accommodation(session.student_identity),
        )
    except ReportRuleError as exc:
        raise ApiError(422, exc.code, exc.message) from exc
    await store.validate_report(
        session.id,
        reason=body.reason.value if body.reason and not metrics.video_used else None,
        details=body.details if not metrics.video_used else None,
        session_status=report.status,
    )
    refreshed = await store.get_session(session.id)
    assert refreshed is not None
    return await _report_view(store, refreshed)
