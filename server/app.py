"""The application factory: one aiohttp app built from one Settings object."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from media.aiortc_hooks import verify_hooks
from media.config import MediaSettings
from media.ice import configure_gathering
from server import routes_participant, routes_recordings, routes_sessions, routes_staff
from server.api import ApiRoutes, json_errors
from server.api_models import DEFAULT_BUG_CATEGORIES
from server.keys import (
    BUG_CATEGORIES,
    DATABASE,
    PROJECTS,
    RECORDINGS,
    REGISTRY,
    SETTINGS,
    STORE,
    TELEMETRY,
    TOKENS,
    VONAGE_EVENTS,
    WEBHOOKS,
)
from server.metrics import add_metrics_routes
from server.observers import RoomObservers
from server.pages import add_page_routes, security_headers
from server.projects import load_projects
from server.recording_events import RecordingWebhooks, RoomRecordingControl, auto_record_rule
from server.recording_store import RecordingStore
from server.recordings import RecordingService
from server.routes_recordings import add_recording_pages
from server.routes_vonage import add_vonage_routes
from server.rtc_endpoint import rtc_websocket
from server.session_store import SessionStore
from server.settings import Settings, SettingsError
from server.storage import Database
from server.telemetry import TelemetryRecorder
from server.telemetry_recovery import close_interrupted_telemetry
from server.tokens import TokenVerifier
from server.vonage_archives import add_archive_routes
from server.vonage_events import VonageEvents
from server.webhooks import WebhookOutbox
from signaling.room import RoomRegistry

log = logging.getLogger(__name__)

API_VERSION = "0.1.0"
API = ApiRoutes(
    routes_sessions.routes.endpoints
    + routes_participant.routes.endpoints
    + routes_staff.routes.endpoints
    + routes_recordings.routes.endpoints
)


def create_app(settings: Settings) -> web.Application:
    verify_hooks()
    if not (settings.secret and settings.api_key and settings.staff_token):
        raise SettingsError("secret, API key and staff token must be set (resolve_credentials)")
    app = web.Application(middlewares=[json_errors, security_headers], client_max_size=1024**2)
    app[SETTINGS] = settings
    app[PROJECTS] = load_projects(settings)
    app[TOKENS] = TokenVerifier(settings.secret, app[PROJECTS])
    app[BUG_CATEGORIES] = (
        {c: c.replace("_", " ").capitalize() for c in settings.bug_categories}
        if settings.bug_categories
        else dict(DEFAULT_BUG_CATEGORIES)
    )
    app.router.add_get("/rtc", rtc_websocket)
    add_metrics_routes(app)
    app.router.add_get("/openapi.json", openapi)
    API.install(app)
    add_vonage_routes(app)
    add_archive_routes(app)
    add_recording_pages(app)
    add_page_routes(app)
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(_rooms)
    return app


async def _storage(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    database = await Database.open(settings.database_path)
    app[DATABASE] = database
    app[STORE] = SessionStore(database)
    app[TELEMETRY] = TelemetryRecorder(app[STORE])
    app[WEBHOOKS] = WebhookOutbox(database)
    app[WEBHOOKS].start(deliver=settings.worker_index is None)
    app[VONAGE_EVENTS] = VonageEvents(app[PROJECTS], app[WEBHOOKS])
    yield
    await app[TELEMETRY].close()
    await app[VONAGE_EVENTS].drain()
    await app[WEBHOOKS].close()
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
    observers = RoomObservers([app[TELEMETRY], app[VONAGE_EVENTS]])
    registry = RoomRegistry(
        media=media,
        observer=observers,
        grace_s=settings.room_grace_s,
        reconnect_grace_s=settings.reconnect_grace_s,
        max_participants_per_room=settings.max_participants_per_room,
        max_rooms=settings.max_rooms,
        chat_rate_per_s=settings.chat_rate_per_s,
        chat_burst=settings.chat_burst,
    )
    app[REGISTRY] = registry
    recordings = RecordingService(
        RecordingStore(app[DATABASE]), settings.data_dir.resolve(), registry
    )
    recordings.auto_record = auto_record_rule(app[DATABASE], app[STORE])
    recordings.listeners.append(
        RecordingWebhooks(settings, app[WEBHOOKS], app[VONAGE_EVENTS], settings.link_base())
    )
    observers.observers.append(recordings)
    registry.recording_control = RoomRecordingControl(recordings)
    app[RECORDINGS] = recordings
    if settings.worker_index is None:  # a worker's supervisor recovers once, for all workers
        await close_interrupted_telemetry(app[STORE], vonage=app[VONAGE_EVENTS])
        await recordings.recover_interrupted()
    app[TELEMETRY].start(registry)
    yield
    await recordings.close()
    await registry.close()


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(API.openapi("Parloir API", API_VERSION))
