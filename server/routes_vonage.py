"""The Vonage Video (OpenTok) server REST API, mapped onto Parloir's rooms.

Shapes, status codes and traps follow what the official opentok and vonage-video SDKs send and
accept (shared/VONAGE_API.md): 403 for auth failures, exact `application/json` on
/session/create, 204 vs 200 per route, `{"count", "items"}` lists.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs

import jwt
from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.json_body import JsonBodyError, read_body, read_json_object
from server.keys import DATABASE, PROJECTS, REGISTRY
from server.projects import Project, ProjectRegistry
from server.vonage_ids import new_session_id, session_belongs_to
from signaling.errors import SignalingError
from signaling.publication import Publication
from signaling.room import Room

LEEWAY_S = 30
SIGNAL_TYPE = re.compile(r"^[A-Za-z0-9\-_~]{0,128}$")
SIGNAL_DATA_MAX = 8 * 1024
RESOLUTIONS = ("640x480", "480x640", "1280x720", "720x1280", "1920x1080", "1080x1920")

Handler = Callable[[web.Request, Project], Awaitable[web.StreamResponse]]
Model = TypeVar("Model", bound=BaseModel)


class VonageError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_body(data: Any, status: int = 200) -> web.Response:
    # Exactly `application/json`: opentok compares the header with == (no charset).
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json"
    )


def error(status: int, message: str) -> web.Response:
    return json_body({"code": status, "message": message}, status)


def authenticate(request: web.Request, projects: ProjectRegistry) -> Project:
    token = request.headers.get("X-OPENTOK-AUTH")
    authorization = request.headers.get("Authorization", "")
    if not token and authorization[:7].lower() == "bearer ":
        token = authorization[7:].strip()
    if not token:
        raise VonageError(403, "Authentication failed: no X-OPENTOK-AUTH or Bearer token")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
        if header.get("alg") == "HS256":
            project = projects.by_api_key(str(unverified.get("iss")))
            if project is None:
                raise VonageError(403, "Authentication failed: unknown project")
            claims = jwt.decode(
                token,
                project.api_secret,
                algorithms=["HS256"],
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat"]},
            )
            if claims.get("ist") != "project":
                raise VonageError(403, "Authentication failed: not a project token")
            return project
        if header.get("alg") == "RS256":
            project = projects.by_application(str(unverified.get("application_id")))
            if project is None or not project.public_key_pem:
                raise VonageError(403, "Authentication failed: unknown application")
            jwt.decode(
                token,
                project.public_key_pem,
                algorithms=["RS256"],
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat"]},
            )
            return project
    except jwt.ExpiredSignatureError as exc:
        raise VonageError(403, "Authentication failed: token expired") from exc
    except jwt.PyJWTError as exc:
        raise VonageError(403, f"Authentication failed: {exc}") from exc
    raise VonageError(403, "Authentication failed: unsupported token algorithm")


def vonage_route(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        projects = request.app[PROJECTS]
        try:
            project = authenticate(request, projects)
            path_project = request.match_info.get("project")
            if path_project is not None and path_project not in projects.ids_of(project):
                raise VonageError(403, "Authentication failed: the token is for another project")
            session_id = request.match_info.get("session")
            if session_id is not None and not session_belongs_to(
                session_id, projects.ids_of(project)
            ):
                raise VonageError(404, "Session not found")
            return await handler(request, project)
        except (VonageError, JsonBodyError) as exc:
            return error(exc.status, exc.message)
        except SignalingError as exc:
            return error(404 if "no publication" in exc.reason else 400, exc.reason)

    return wrapped


def validated(model: type[Model], data: Mapping[str, Any]) -> Model:
    """A body or query checked against its schema; a mismatch is a 400 naming the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()[:5]
        ]
        raise VonageError(400, "; ".join(problems)) from exc


def form_bool(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def live_room(request: web.Request) -> Room | None:
    return request.app[REGISTRY].rooms.get(request.match_info["session"])


def stream_json(publication: Publication) -> dict[str, Any]:
    return {
        "id": publication.id,
        "videoType": publication.video_type,
        "name": publication.name,
        "layoutClassList": list(publication.layout_classes),
    }


# ---- sessions -----------------------------------------------------------------------------


@vonage_route
async def create_session(request: web.Request, project: Project) -> web.Response:
    # Form-encoded whatever Content-Type says (vonage-http-client's header is sticky JSON).
    raw = await read_body(request, 16 * 1024)
    fields = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    media_mode = "relayed" if fields.get("p2p.preference") == "enabled" else "routed"
    if fields.get("media_mode") in ("routed", "relayed"):
        media_mode = fields["media_mode"]
    archive_mode = fields.get("archiveMode", "manual")
    if archive_mode not in ("manual", "always"):
        raise VonageError(400, "archiveMode must be manual or always")
    resolution = fields.get("archiveResolution") or None
    if resolution is not None and resolution not in RESOLUTIONS:
        raise VonageError(400, f"archiveResolution must be one of {', '.join(RESOLUTIONS)}")
    name = fields.get("archiveName") or None
    if name is not None and not 1 <= len(name) <= 80:
        raise VonageError(400, "archiveName must be 1 to 80 characters")
    e2ee = form_bool(fields.get("e2ee"))
    if e2ee and archive_mode == "always":
        raise VonageError(400, "end-to-end encrypted sessions cannot be archived")
    location = fields.get("location") or ""
    session_id = new_session_id(project.api_key, location)
    db = request.app[DATABASE].connection
    await db.execute(
        "INSERT INTO vonage_sessions (id, project, media_mode, archive_mode, archive_name,"
        " archive_resolution, e2ee, location, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            session_id,
            project.api_key,
            media_mode,
            archive_mode,
            name,
            resolution,
            int(e2ee),
            location,
            time.time(),
        ),
    )
    await db.commit()
    return json_body(
        [
            {
                "session_id": session_id,
                "project_id": project.api_key,
                "partner_id": project.api_key,
                "create_dt": time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()),
                "media_server_url": "",
            }
        ]
    )


# ---- streams ------------------------------------------------------------------------------


@vonage_route
async def list_streams(request: web.Request, project: Project) -> web.Response:
    room = live_room(request)
    items = [stream_json(p) for p in room.live_publications()] if room else []
    return json_body({"count": len(items), "items": items})


@vonage_route
async def get_stream(request: web.Request, project: Project) -> web.Response:
    room = live_room(request)
    if room is None:
        raise VonageError(404, "Stream not found")
    _, publication = room.find_publication(request.match_info["stream"])
    return json_body(stream_json(publication))


@vonage_route
async def set_stream_classes(request: web.Request, project: Project) -> web.Response:
    body = await read_json_object(request, required=False)
    items = body.get("items")
    if not isinstance(items, list):
        raise VonageError(400, "items must be a list of {id, layoutClassList}")
    room = live_room(request)
    if room is None:
        raise VonageError(404, "Session not found or no clients connected")
    changed = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("layoutClassList"), list):
            raise VonageError(400, "each item needs id and layoutClassList")
        classes = [str(c) for c in item["layoutClassList"]]
        changed.append(stream_json(room.set_layout_classes(str(item.get("id")), classes)))
    return json_body({"count": len(changed), "items": changed})


# ---- signals, moderation ------------------------------------------------------------------


def _signal_fields(body: dict[str, Any]) -> tuple[str, str]:
    kind = body.get("type", "")
    data = body.get("data")
    if not isinstance(kind, str) or not SIGNAL_TYPE.match(kind):
        raise VonageError(400, "type must be at most 128 characters of [A-Za-z0-9-_~]")
    if not isinstance(data, str) or len(data.encode()) > SIGNAL_DATA_MAX:
        raise VonageError(400, "data must be a string of at most 8 kB")
    return kind or "signal", data


@vonage_route
async def signal_session(request: web.Request, project: Project) -> web.Response:
    kind, data = _signal_fields(await read_json_object(request, required=False))
    room = live_room(request)
    if room is None or not room.participants:
        raise VonageError(404, "No clients are actively connected to the session")
    room.post_chat(sender=None, text=data, topic=kind)
    return web.Response(status=204)


@vonage_route
async def signal_connection(request: web.Request, project: Project) -> web.Response:
    kind, data = _signal_fields(await read_json_object(request, required=False))
    room = live_room(request)
    participant = room.participants.get(request.match_info["connection"]) if room else None
    if room is None or participant is None:
        raise VonageError(404, "Connection not found")
    room.post_chat(sender=None, text=data, topic=kind, recipient=participant)
    return web.Response(status=204)


@vonage_route
async def force_disconnect(request: web.Request, project: Project) -> web.Response:
    room = live_room(request)
    participant = room.participants.get(request.match_info["connection"]) if room else None
    if participant is None or participant.kick is None:
        raise VonageError(404, "Connection not found")
    await participant.kick("forceDisconnected")
    return web.Response(status=204)


@vonage_route
async def mute_stream(request: web.Request, project: Project) -> web.Response:
    room = live_room(request)
    if room is None:
        raise VonageError(404, "Stream not found")
    await room.force_mute(request.match_info["stream"])
    return json_body({})


@vonage_route
async def mute_session(request: web.Request, project: Project) -> web.Response:
    body = await read_json_object(request, required=False)
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise VonageError(400, "active must be a boolean")
    # Both spellings: opentok 3.15 sends excludedStreams, vonage-video excludedStreamIds.
    excluded = body.get("excludedStreamIds") or body.get("excludedStreams") or []
    if not isinstance(excluded, list):
        raise VonageError(400, "excludedStreamIds must be a list")
    room = live_room(request)
    if room is None:
        raise VonageError(404, "No clients are actively connected to the session")
    await room.mute_all(active, {str(s) for s in excluded})
    return json_body({})


def not_supported(what: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @vonage_route
    async def refuse(request: web.Request, project: Project) -> web.Response:
        raise VonageError(400, f"{what} is not supported by Parloir")

    return refuse


def add_vonage_routes(app: web.Application) -> None:
    project = "/v2/project/{project}"
    session = project + "/session/{session}"
    routes = [
        ("POST", "/session/create", create_session),
        ("GET", session + "/stream", list_streams),
        ("PUT", session + "/stream", set_stream_classes),
        ("GET", session + "/stream/{stream}", get_stream),
        ("POST", session + "/stream/{stream}/mute", mute_stream),
        ("POST", session + "/mute", mute_session),
        ("POST", session + "/signal", signal_session),
        ("POST", session + "/connection/{connection}/signal", signal_connection),
        ("DELETE", session + "/connection/{connection}", force_disconnect),
        ("POST", session + "/play-dtmf", not_supported("DTMF")),
        ("POST", session + "/connection/{connection}/play-dtmf", not_supported("DTMF")),
    ]
    for unsupported, paths in (
        (
            "Live streaming broadcast",
            [
                "/broadcast",
                "/broadcast/{id}",
                "/broadcast/{id}/stop",
                "/broadcast/{id}/layout",
                "/broadcast/{id}/streams",
            ],
        ),
        ("SIP dial", ["/dial"]),
        ("Experience Composer", ["/render", "/render/{id}"]),
        ("Audio Connector", ["/connect"]),
        ("Live Captions", ["/captions", "/captions/{id}/stop"]),
    ):
        for path in paths:
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                routes.append((method, project + path, not_supported(unsupported)))
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
