"""The browser client's pages and static files, served with strict security headers."""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from server.keys import BUG_CATEGORIES
from server.tokens import ROOM_ID_PATTERN

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    # On every response: a FileResponse's content type is only known once it is sent.
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


async def index_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def room_page(request: web.Request) -> web.StreamResponse:
    if not ROOM_ID_PATTERN.match(request.match_info["room"]):
        raise web.HTTPNotFound(text="no such room id")
    response = web.FileResponse(WEB_DIR / "room.html")
    # The token travels in the query string: keep the page out of caches.
    response.headers["Cache-Control"] = "no-store"
    return response


def _no_store(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Cache-Control"] = "no-store"
    return response


async def report_page(request: web.Request) -> web.StreamResponse:
    """The mentor's session report (/room/<room>/report?token=<the mentor's join token>)."""
    if not ROOM_ID_PATTERN.match(request.match_info["room"]):
        raise web.HTTPNotFound(text="no such room id")
    # The token travels in the query string, as on the call page.
    return _no_store(web.FileResponse(WEB_DIR / "report.html"))


async def staff_login_page(request: web.Request) -> web.StreamResponse:
    return _no_store(web.FileResponse(WEB_DIR / "staff.html"))


async def staff_billing_page(request: web.Request) -> web.StreamResponse:
    return _no_store(web.FileResponse(WEB_DIR / "staff-billing.html"))


async def staff_bugs_page(request: web.Request) -> web.StreamResponse:
    """The bug-report table; the category filter lists the server's configured categories."""
    template = await asyncio.to_thread((WEB_DIR / "staff-bugs.html").read_text, "utf-8")
    categories = [{"id": k, "label": v} for k, v in request.app[BUG_CATEGORIES].items()]
    attribute = html.escape(json.dumps(categories), quote=True)
    body = template.replace('data-categories="[]"', f'data-categories="{attribute}"', 1)
    return _no_store(web.Response(text=body, content_type="text/html", charset="utf-8"))


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/", index_page)
    app.router.add_get("/room/{room}", room_page)
    app.router.add_get("/room/{room}/report", report_page)
    app.router.add_get("/staff", staff_login_page)
    app.router.add_get("/staff/bugs", staff_bugs_page)
    app.router.add_get("/staff/billing", staff_billing_page)
    app.router.add_static("/static/", WEB_DIR, follow_symlinks=False)
