"""Vonage archives mapped onto Parloir recordings (VONAGE_API.md §4.3)."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.json_body import read_json_object
from server.keys import DATABASE, RECORDINGS, SETTINGS
from server.projects import Project
from server.recording_store import Recording
from server.recordings import RecordingError, RecordingOptions, RecordingService
from server.routes_recordings import signed_download_path
from server.routes_vonage import RESOLUTIONS, VonageError, json_body, validated, vonage_route
from server.vonage_ids import session_belongs_to

LayoutType = Literal["bestFit", "custom", "horizontalPresentation", "pip", "verticalPresentation"]
MAX_LIST_OFFSET = 1_000_000


class _VonageBody(BaseModel):
    # The SDKs send options Parloir does not act on (maxBitrate, quantizationParameter, ...).
    model_config = ConfigDict(extra="ignore")


class ArchiveLayout(_VonageBody):
    """A composed archive's layout: `layout` on start, the whole body of PUT …/layout."""

    type: LayoutType
    stylesheet: str | None = None
    """CSS for the custom layout (only with it)."""
    screenshareType: LayoutType | None = None
    """The layout while someone shares a screen."""

    @model_validator(mode="after")
    def _stylesheet_is_for_custom(self) -> ArchiveLayout:
        if self.stylesheet and self.type != "custom":
            raise ValueError("stylesheet is only for the custom layout")
        return self


class ArchiveStart(_VonageBody):
    """POST …/archive. opentok sends every option, unset ones as null; vonage-video drops them."""

    sessionId: str | None = None
    name: str | None = None
    outputMode: Literal["composed", "individual"] | None = None
    resolution: str | None = None
    """One of RESOLUTIONS, composed archives only."""
    hasAudio: bool | None = None
    hasVideo: bool | None = None
    streamMode: Literal["auto", "manual"] | None = None
    layout: ArchiveLayout | None = None
    multiArchiveTag: str | None = None

    @field_validator("layout", mode="before")
    @classmethod
    def _empty_layout_is_none(cls, value: Any) -> Any:
        return None if value == {} else value


class ArchiveStreamChange(_VonageBody):
    """PATCH …/archive/{id}/streams in manual stream mode: add one stream or remove one."""

    addStream: str | None = None
    removeStream: str | None = None
    hasAudio: bool | None = None
    """For an added stream; unset is true."""
    hasVideo: bool | None = None


class ArchiveListQuery(_VonageBody):
    """GET …/archive: opentok says sessionId, vonage-video session_id."""

    offset: int = Field(0, ge=0, le=MAX_LIST_OFFSET)
    count: int = Field(50, ge=1)
    """More than 1000 is read as 1000."""
    sessionId: str | None = None
    session_id: str | None = None


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
    return request.app[SETTINGS].link_base(f"{request.scheme}://{request.host}")


def _service(request: web.Request) -> RecordingService:
    return request.app[RECORDINGS]


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
    # Everything is checked before the recording service creates anything.
    body = validated(ArchiveStart, await read_json_object(request, required=False))
    session_id = body.sessionId
    if session_id is None or not session_belongs_to(
        session_id,
        {project.api_key} | ({project.application_id} if project.application_id else set()),
    ):
        raise VonageError(404, "Session not found")
    output_mode = body.outputMode or "composed"
    if output_mode == "individual" and body.resolution is not None:
        raise VonageError(400, "resolution is not allowed with individual output mode")
    resolution = body.resolution or "640x480"
    if resolution not in RESOLUTIONS:
        raise VonageError(400, f"resolution must be one of {', '.join(RESOLUTIONS)}")
    db = request.app[DATABASE].connection
    async with db.execute("SELECT e2ee FROM vonage_sessions WHERE id = ?", (session_id,)) as c:
        session_row = await c.fetchone()
    if session_row is not None and session_row[0] and output_mode == "composed":
        raise VonageError(400, "end-to-end encrypted sessions cannot be archived composed")
    options = RecordingOptions(
        output_mode=output_mode,
        resolution=resolution,
        name=body.name,
        has_audio=body.hasAudio is not False,
        has_video=body.hasVideo is not False,
        stream_mode=body.streamMode or "auto",
        layout=body.layout.model_dump(exclude_none=True) if body.layout else {},
        multi_archive_tag=body.multiArchiveTag,
        project=project.api_key,
    )
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
    query = validated(ArchiveListQuery, dict(request.query))
    rows, total = await _service(request).store.list_recordings(
        room_id=query.sessionId or query.session_id,
        project=project.api_key,
        offset=query.offset,
        limit=min(1000, query.count),
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
    layout = validated(ArchiveLayout, await read_json_object(request, required=False))
    updated = await _service(request).store.update(
        row.id, layout=layout.model_dump(exclude_none=True)
    )
    assert updated is not None
    return _json(request, updated, project)


@vonage_route
async def change_streams(request: web.Request, project: Project) -> web.Response:
    row = await _owned(request, project)
    body = validated(ArchiveStreamChange, await read_json_object(request, required=False))
    service = _service(request)
    try:
        if body.addStream is not None:
            await service.set_stream(
                row.id,
                body.addStream,
                add=True,
                has_audio=body.hasAudio is not False,
                has_video=body.hasVideo is not False,
            )
        elif body.removeStream is not None:
            await service.set_stream(row.id, body.removeStream, add=False)
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
