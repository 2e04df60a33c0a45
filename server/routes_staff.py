"""Staff API (support, product, billing): bug reports with filters and the billing view."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from server.api import STAFF_COOKIE, ApiError, ApiRoutes, Auth, RequestContext, page, same_secret
from server.api_models import BillingQuery, BugReportQuery, StaffLogin
from server.keys import SETTINGS, STORE
from server.routes_sessions import epoch
from server.session_metrics import session_metrics
from server.session_store import BugReportFilter, SessionFilter

routes = ApiRoutes()

BILLING_COLUMNS = (
    "session_id",
    "type",
    "scheduled_start",
    "mentor",
    "student",
    "status",
    "effective_duration_min",
    "video_used",
    "tags",
    "report_validated",
)


@routes.route(
    "POST",
    "/api/staff/login",
    summary="Exchange the staff credential for a cookie",
    auth=Auth.NONE,
    body=StaffLogin,
    tag="staff",
)
async def login(ctx: RequestContext) -> web.Response:
    body: StaffLogin = ctx.body
    if not same_secret(body.token, ctx.app[SETTINGS].staff_token):
        raise ApiError(401, "unauthorized", "wrong staff credential")
    response = web.json_response({"ok": True})
    response.set_cookie(
        STAFF_COOKIE,
        body.token,
        httponly=True,
        secure=True,
        samesite="Strict",
        path="/",
        max_age=8 * 3600,
    )
    return response


@routes.route(
    "POST", "/api/staff/logout", summary="Forget the staff cookie", auth=Auth.NONE, tag="staff"
)
async def logout(ctx: RequestContext) -> web.Response:
    response = web.json_response({"ok": True})
    response.del_cookie(STAFF_COOKIE, path="/")
    return response


@routes.route(
    "GET",
    "/api/staff/bug-reports",
    summary="Bug reports and feedback, filtered",
    auth=Auth.STAFF,
    query=BugReportQuery,
    tag="staff",
)
async def bug_reports(ctx: RequestContext) -> dict[str, Any]:
    query: BugReportQuery = ctx.query
    rows, total = await ctx.app[STORE].list_bug_reports(
        BugReportFilter(
            category=query.category,
            session_type=query.session_type,
            created_from=epoch(query.created_from),
            created_to=epoch(query.created_to),
            blocking=query.blocking,
        ),
        query.offset,
        query.limit,
    )
    items = [
        {
            **report.describe(),
            "session": {
                "id": s.id,
                "type": s.type,
                "tags": s.tags,
                "mentor": s.mentor_name,
                "student": s.student_name,
                "scheduled_start": s.scheduled_start,
            },
        }
        for report, s in rows
    ]
    return page(items, total, query.offset)


def iso_utc(unix_s: float) -> str | None:
    """The instant in ISO 8601 UTC, or None where no calendar date holds it: a session stored
    before dates were range-checked must not take the billing view down."""
    try:
        return datetime.fromtimestamp(unix_s, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


async def billing_rows(
    ctx: RequestContext, query: BillingQuery
) -> tuple[list[dict[str, Any]], int]:
    store = ctx.app[STORE]
    sessions, total = await store.list_sessions(
        SessionFilter(
            type=query.type, start_from=epoch(query.start_from), start_to=epoch(query.start_to)
        ),
        query.offset,
        query.limit,
    )
    now = time.time()
    rows = []
    for session in sessions:
        events = await store.events_for_room(session.room_id)
        metrics = session_metrics(events, session.mentor_identity, session.student_identity, now)
        report = await store.get_report(session.id)
        rows.append(
            {
                "session_id": session.id,
                "type": session.type,
                "scheduled_start": iso_utc(session.scheduled_start),
                "mentor": session.mentor_name,
                "student": session.student_name,
                "status": session.status,
                "effective_duration_min": round(metrics.effective_duration_s / 60, 1),
                "video_used": metrics.video_used,
                "tags": session.tags,
                "report_validated": bool(report and report.validated_at),
            }
        )
    return rows, total


@routes.route(
    "GET",
    "/api/staff/billing",
    summary="Sessions with status, duration and tags",
    auth=Auth.STAFF,
    query=BillingQuery,
    tag="staff",
)
async def billing(ctx: RequestContext) -> dict[str, Any]:
    rows, total = await billing_rows(ctx, ctx.query)
    return page(rows, total, ctx.query.offset)


@routes.route(
    "GET",
    "/api/staff/billing.csv",
    summary="The billing view as CSV",
    auth=Auth.STAFF,
    query=BillingQuery,
    tag="staff",
)
async def billing_csv(ctx: RequestContext) -> web.Response:
    rows, _ = await billing_rows(ctx, ctx.query)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=BILLING_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "tags": ";".join(row["tags"])})
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="parloir-billing.csv"'},
    )
