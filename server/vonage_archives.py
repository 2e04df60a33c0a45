"""Vonage archives mapped onto Parloir recordings (VONAGE_API.md §4.3)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.keys import DATABASE, RECORDINGS, SETTINGS
from server.projects import Project
from server.recording_store import Recording
from server.recordings import RecordingError, RecordingOptions, RecordingService
from server.routes_recordings import signed_download_path
from server.routes_vonage import RESOLUTIONS, VonageError, json_body, read_json, vonage_route
from server.vonage_ids import session_belongs_to

LAYOUT_TYPES = ("bestFit", "custom", "horizontalPresentation", "pip", "verticalPresentation")


def archive_json(row: Recording, project_id: str, base_url: str, secret: str) -> dict[str, Any]:
    """The archive object both SDKs accept: integer ms `createdAt`, strict status enum."""
    url = None
    if row.status == "available" and row.file:
        url = base_url.rstrip("/") + signed_download_path(secret, row.id)
    return {
        "id": row.id,
        "status": row.status,
        "name": row.name,
        "reason": row.reason,
        "sessionId": row.room_id,
        "applicationId": project_id,
        "partnerId": project_id,
        "projectId": project_id,
        "createdAt": int(row.created_at * 1000),
        "updatedAt": int(row.updated_at * 1000),
        "size": int(row.size_bytes),
        "duration": int(round(row.duration_s)),
        "outputMode": row.output_mode,
        "streamMode": row.stream_mode,
        "hasAudio": row.has_audio,
        "hasVideo": row.has_video,
        "hasTranscription": False,
        "resolution": row.resolution if row.resolution in RESOLUTIONS else "640x480",
        "streams": row.streams,
        "url": url,
        "sha256sum": "",
        "password": "",
        "event": "archive",
        "maxBitrate": None,
        "quantizationParameter": None,
        "multiArchiveTag": row.multi_archive_tag,
    }


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _service(request: web.Request) -> RecordingService:
    return request.app[RECORDINGS]


def _nullable(body: dict[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value  # opentok sends unset options as null


async def _owned(request: web.Request, project: Project) -> Recording:
    row = await _service(request).store.get(request.match_info["archive"])
    if row is None or row.status == "deleted" or row.project != project.api_key:
        raise VonageError(404, "Archive not found")
    return row


def _json(request: web.Request, row: Recording, project: Project) -> web.Response:
    return json_body(
        archive_json(
            row, request.match_info["project"], base_url(request), request.app[SETTINGS].secret
        )
    )


@vonage_route
async def start_archive(request: web.Request, project: Project) -> web.Response:
    body = await read_json(request)
    session_id = body.get("sessionId")
    if not isinstance(session_id, str) or not session_belongs_to(
        session_id,
        {project.api_key} | ({project.application_id} if project.application_id else set()),
    ):
        raise VonageError(404, "Session not found")
    output_mode = _nullable(body, "outputMode", "composed")
    resolution = _nullable(body, "resolution", "640x480")
    if output_mode == "individual" and body.get("resolution") is not None:
        raise VonageError(400, "resolution is not allowed with individual output mode")
    layout = _nullable(body, "layout", {})
    if layout and layout.get("type") not in LAYOUT_TYPES:
        raise VonageError(400, f"layout type must be one of {', '.join(LAYOUT_TYPES)}")
    db = request.app[DATABASE].connection
    async with db.execute("SELECT e2ee FROM vonage_sessions WHERE id = ?", (session_id,)) as c:
        session_row = await c.fetchone()
    if session_row is not None and session_row[0] and output_mode == "composed":
        raise VonageError(400, "end-to-end encrypted sessions cannot be archived composed")
    options = RecordingOptions(
        output_mode=str(output_mode),
        resolution=str(resolution),
        name=body.get("name"),
        has_audio=bool(_nullable(body, "hasAudio", True)),
        has_video=bool(_nullable(body, "hasVideo", True)),
        stream_mode=str(_nullable(body, "streamMode", "auto")),
        layout=dict(layout),
        multi_archive_tag=body.get("multiArchiveTag"),
        project=project.api_key,
    )
    if options.stream_mode not in ("auto", "manual"):
        raise VonageError(400, "streamMode must be auto or manual")
    try:
        row = await _service(request).start(session_id, options)
    except RecordingError as exc:
        raise VonageError(exc.status, exc.message) from exc
    return _json(request, row, project)


@vonage_route
async def get_archive(request: web.Request, project: Project) -> web.Response:
    return _json(request, await _owned(request, project), project)


@vonage_route
async def list_archives(request: web.Request, project: Project) -> web.Response:
    try:
        offset = int(request.query.get("offset", 0))
        count = min(1000, int(request.query.get("count", 50)))
    except ValueError as exc:
        raise VonageError(400, "offset and count must be integers") from exc
    session_id = request.query.get("sessionId") or request.query.get("session_id")
    rows, total = await _service(request).store.list_recordings(
        room_id=session_id, project=project.api_key, offset=max(0, offset), limit=max(1, count)
    )
    items = [
        archive_json(
            r, request.match_info["project"], base_url(request), request.app[SETTINGS].secret
        )
        for r in rows
    ]
    return json_body({"count": total, "items": items})


@vonage_route
async def stop_archive(request: web.Request, project: Project) -> web.Response:
    row = await _owned(request, project)
    if row.status != "started":
        raise VonageError(409, "Archive is not in started state")
    try:
        row = await _service(request).stop(row.id, reason="user initiated")
    except RecordingError as exc:
        raise VonageError(exc.status, exc.message) from exc
    return _json(request, row, project)


@vonage_route
async def delete_archive(request: web.Request, project: Project) -> web.Response:
    row = await _owned(request, project)
    try:
        await _service(request).delete(row.id)
    except RecordingError as exc:
        raise VonageError(exc.status, exc.message) from exc
    return web.Response(status=204)


@vonage_route
async def set_layout(request: web.Request, project: Project) -> web.Response:
    row = await _owned(request, project)
    body = await read_json(request)
    if body.get("type") not in LAYOUT_TYPES:
        raise VonageError(400, f"type must be one of {', '.join(LAYOUT_TYPES)}")
    if body.get("stylesheet") and body["type"] != "custom":
        raise VonageError(400, "stylesheet is only for the custom layout")
    updated = await _service(request).store.update(row.id, layout=body)
    assert updated is not None
    return _json(request, updated, project)


@vonage_route
async def change_streams(request: web.Request, project: Project) -> web.Response:
    row = await _owned(request, project)
    body = await read_json(request)
    service = _service(request)
    try:
        if isinstance(body.get("addStream"), str):
            await service.set_stream(
                row.id,
                body["addStream"],
                add=True,
                has_audio=bool(_nullable(body, "hasAudio", True)),
                has_video=bool(_nullable(body, "hasVideo", True)),
            )
        elif isinstance(body.get("removeStream"), str):
            await service.set_stream(row.id, body["removeStream"], add=False)
        else:
            raise VonageError(400, "give addStream or removeStream")
    except RecordingError as exc:
        raise VonageError(exc.status, exc.message) from exc
    return web.Response(status=204)


def add_archive_routes(app: web.Application) -> None:
    base = "/v2/project/{project}/archive"
    for method, path, handler in (
        ("POST", base, start_archive),
        ("GET", base, list_archives),
        ("GET", base + "/{archive}", get_archive),
        ("DELETE", base + "/{archive}", delete_archive),
        ("POST", base + "/{archive}/stop", stop_archive),
        ("PUT", base + "/{archive}/layout", set_layout),
        ("PATCH", base + "/{archive}/streams", change_streams),
    ):
        app.router.add_route(method, path, handler)
