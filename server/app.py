"""The application factory: one aiohttp app built from one Settings object."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from media.aiortc_hooks import verify_hooks
from media.config import MediaSettings
from media.ice import configure_gathering
from server.attendance import AttendanceRecorder
from server.keys import ATTENDANCE, DATABASE, REGISTRY, SETTINGS
from server.pages import add_page_routes, security_headers
from server.rtc_endpoint import rtc_websocket
from server.settings import Settings
from server.storage import Database
from signaling.room import RoomRegistry

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    verify_hooks()
    app = web.Application(middlewares=[security_headers], client_max_size=1024**2)
    app[SETTINGS] = settings
    app.router.add_get("/rtc", rtc_websocket)
    app.router.add_get("/healthz", healthz)
    add_page_routes(app)
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(_rooms)
    return app


async def _storage(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    database = await Database.open(settings.database_path)
    app[DATABASE] = database
    app[ATTENDANCE] = AttendanceRecorder(database)
    yield
    await app[ATTENDANCE].drain()
    await database.close()


async def _rooms(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    configure_gathering(settings.ice_addresses)
    media = MediaSettings(
        ice_servers=settings.ice_servers,
        loopback_only=settings.loopback_only,
        forwarding=settings.forwarding,
        preferred_video_codec=settings.video_codec,
    )
    app[REGISTRY] = RoomRegistry(
        media=media, observer=app[ATTENDANCE], grace_s=settings.room_grace_s
    )
    yield
    await app[REGISTRY].close()


async def healthz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return web.json_response(
        {"status": "ok", "rooms": len(registry.rooms), "participants": registry.participant_count()}
    )
