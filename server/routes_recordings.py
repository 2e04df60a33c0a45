"""Recordings API: start/stop/list/get/delete (platform), download with range requests, a
playback page (staff), and uploads of external recordings by participants."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import time
import uuid
from pathlib import Path
from typing import Any

import av
from aiohttp import web

from server.api import ApiError, ApiRoutes, Auth, RequestContext, authenticate, page
from server.api_models import RecordingQuery, RecordingStart
from server.keys import RECORDINGS, SETTINGS, STORE
from server.recording_store import Recording
from server.recordings import RecordingError, RecordingOptions, RecordingService
from server.routes_sessions import load_session

routes = ApiRoutes()

UPLOAD_SUFFIXES = {
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/webm": ".webm",
    "audio/mp4": ".m4a",
}
SIGNED_URL_TTL_S = 600


def service(ctx: RequestContext) -> RecordingService:
    return ctx.app[RECORDINGS]


async def load(ctx: RequestContext, recording_id: str) -> Recording:
    row = await service(ctx).store.get(recording_id)
    if row is None or row.status == "deleted":
        raise ApiError(404, "unknown-recording", f"no recording {recording_id!r}")
    return row


def refusal(exc: RecordingError) -> ApiError:
    return ApiError(exc.status, "recording-refused", exc.message)


def signed_download_path(secret: str, recording_id: str, now: float | None = None) -> str:
    """A download link that works without credentials for 10 minutes (Vonage's archive `url`)."""
    expires = int((now or time.time()) + SIGNED_URL_TTL_S)
    signature = _signature(secret, recording_id, str(expires))
    return f"/recordings/{recording_id}/file?expires={expires}&sig={signature}"


def _signature(secret: str, recording_id: str, expires: str) -> str:
    return hmac.new(
        secret.encode(), f"{recording_id}:{expires}".encode(), hashlib.sha256
    ).hexdigest()


def _signature_ok(secret: str, recording_id: str, expires: str, signature: str) -> bool:
    try:
        if int(expires) < time.time():
            return False
    except ValueError:
        return False
    return hmac.compare_digest(_signature(secret, recording_id, expires), signature)


@routes.route(
    "POST",
    "/api/rooms/{room}/recordings",
    summary="Start recording a room",
    auth=Auth.PLATFORM,
    body=RecordingStart,
    status=201,
    tag="recordings",
)
async def start_recording(ctx: RequestContext) -> dict[str, Any]:
    body: RecordingStart = ctx.body
    try:
        row = await service(ctx).start(
            ctx.path("room"),
            RecordingOptions(
                output_mode=body.output_mode, resolution=body.resolution, name=body.name
            ),
        )
    except RecordingError as exc:
        raise refusal(exc) from exc
    return row.describe()


@routes.route(
    "POST",
    "/api/recordings/{recording_id}/stop",
    summary="Stop a recording",
    auth=Auth.PLATFORM,
    tag="recordings",
)
async def stop_recording(ctx: RequestContext) -> dict[str, Any]:
    try:
        row = await service(ctx).stop(ctx.path("recording_id"), reason="stopped by the platform")
    except RecordingError as exc:
        raise refusal(exc) from exc
    return row.describe()


@routes.route(
    "GET",
    "/api/recordings",
    summary="List recordings (newest first)",
    auth=Auth.PLATFORM,
    query=RecordingQuery,
    tag="recordings",
)
async def list_recordings(ctx: RequestContext) -> dict[str, Any]:
    query: RecordingQuery = ctx.query
    room_id = query.room_id
    if query.session_id:
        room_id = (await load_session(ctx.app[STORE], query.session_id)).room_id
    rows, total = await service(ctx).store.list_recordings(
        room_id=room_id, offset=query.offset, limit=query.limit
    )
    return page([r.describe() for r in rows], total, query.offset)


@routes.route(
    "GET",
    "/api/recordings/{recording_id}",
    summary="A recording",
    auth=Auth.PLATFORM,
    tag="recordings",
)
async def get_recording(ctx: RequestContext) -> dict[str, Any]:
    return (await load(ctx, ctx.path("recording_id"))).describe()


@routes.route(
    "DELETE",
    "/api/recordings/{recording_id}",
    summary="Delete a recording's files",
    auth=Auth.PLATFORM,
    tag="recordings",
)
async def delete_recording(ctx: RequestContext) -> None:
    try:
        await service(ctx).delete(ctx.path("recording_id"))
    except RecordingError as exc:
        raise refusal(exc) from exc


async def _serve(request: web.Request, row: Recording, svc: RecordingService) -> web.StreamResponse:
    path = svc.file_of(row)
    if path is None:
        raise ApiError(409, "not-available", f"the recording is {row.status}")
    # FileResponse answers Range requests (206) itself.
    response = web.FileResponse(path)
    response.headers["Content-Disposition"] = f'attachment; filename="{row.id}{path.suffix}"'
    return response


@routes.route(
    "GET",
    "/api/recordings/{recording_id}/download",
    summary="Download the recording (MP4, or a ZIP for individual); Range supported",
    auth=Auth.NONE,
    tag="recordings",
)
async def download(ctx: RequestContext) -> web.StreamResponse:
    # The platform's key or a staff session (the playback page) may download.
    try:
        await authenticate(ctx.request, Auth.PLATFORM)
    except ApiError:
        await authenticate(ctx.request, Auth.STAFF)
    row = await load(ctx, ctx.path("recording_id"))
    return await _serve(ctx.request, row, service(ctx))


async def signed_file(request: web.Request) -> web.StreamResponse:
    recording_id = request.match_info["recording_id"]
    secret = request.app[SETTINGS].secret
    if not _signature_ok(
        secret, recording_id, request.query.get("expires", ""), request.query.get("sig", "")
    ):
        raise web.HTTPForbidden(text="link expired or invalid")
    svc = request.app[RECORDINGS]
    row = await svc.store.get(recording_id)
    if row is None or svc.file_of(row) is None:
        raise web.HTTPNotFound(text="no such recording file")
    try:
        return await _serve(request, row, svc)
    except ApiError as exc:
        raise web.HTTPNotFound(text=exc.message) from exc


async def playback_page(request: web.Request) -> web.Response:
    """A plain page to watch a recording; staff only (the cookie also authorises the file)."""
    try:
        await authenticate(request, Auth.STAFF)
    except ApiError as exc:
        raise web.HTTPUnauthorized(text="staff sign-in required (POST /api/staff/login)") from exc
    row = await request.app[RECORDINGS].store.get(request.match_info["recording_id"])
    if row is None or row.status not in ("available", "failed"):
        raise web.HTTPNotFound(text="no playable recording")
    title = html.escape(row.name or f"Recording {row.id}")
    source = f"/api/recordings/{html.escape(row.id)}/download"
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/static/css/app.css"></head>
<body class="playback"><main><h1>{title}</h1>
<p>{row.output_mode}, {row.resolution}, {row.duration_s:.0f} s, status {html.escape(row.status)}</p>
<video controls preload="metadata" src="{source}"></video>
<p><a href="{source}">Download</a></p></main></body></html>"""
    return web.Response(text=body, content_type="text/html")


@routes.route(
    "POST",
    "/api/rooms/{room}/recordings/upload",
    summary="Attach an external recording to the session (raw body, video/* or audio/*)",
    auth=Auth.PARTICIPANT,
    status=201,
    tag="participant",
)
async def upload(ctx: RequestContext) -> dict[str, Any]:
    request = ctx.request
    limit = ctx.app[SETTINGS].max_upload_bytes
    content_type = request.content_type
    suffix = UPLOAD_SUFFIXES.get(content_type)
    if suffix is None:
        raise ApiError(
            415,
            "unsupported-media-type",
            f"upload a video or audio file ({', '.join(sorted(UPLOAD_SUFFIXES))})",
        )
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "upload-too-large", f"uploads are limited to {limit} bytes")
    svc = service(ctx)
    recording_id = str(uuid.uuid4())
    directory = Path("recordings") / recording_id
    target_dir = svc.root / directory
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"upload{suffix}"
    size = 0
    try:
        with target.open("wb") as handle:
            async for chunk in request.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "upload-too-large", f"uploads are limited to {limit} bytes")
                await asyncio.to_thread(handle.write, chunk)
        probe = await asyncio.to_thread(_probe_media, target)
    except BaseException:
        await asyncio.to_thread(_remove_tree, target_dir)
        raise
    grant = ctx.caller.grant
    assert grant is not None
    now = time.time()
    row = Recording(
        id=recording_id,
        room_id=grant.room,
        name=request.query.get("name") or "uploaded",
        output_mode="composed",
        resolution=probe["resolution"],
        status="available",
        directory=str(directory),
        created_at=now,
        updated_at=now,
        origin="upload",
        uploaded_by=grant.identity,
        file=target.name,
        size_bytes=size,
        duration_s=probe["duration_s"],
        has_audio=probe["has_audio"],
        has_video=probe["has_video"],
    )
    await svc.store.insert(row)
    return row.describe()


def _probe_media(path: Path) -> dict[str, Any]:
    """Open with PyAV and decode a little of each stream: a non-media file is refused."""
    try:
        with av.open(str(path)) as container:
            video = next(iter(container.streams.video), None)
            audio = next(iter(container.streams.audio), None)
            if video is None and audio is None:
                raise ApiError(422, "not-media", "the file has no audio or video stream")
            decoded = 0
            for _frame in container.decode(*(s for s in (video, audio) if s is not None)):
                decoded += 1
                if decoded >= 3:
                    break
            if decoded == 0:
                raise ApiError(422, "not-media", "no frame of the file could be decoded")
            duration = (container.duration or 0) / 1_000_000
            resolution = f"{video.width}x{video.height}" if video is not None else "audio"
            return {
                "duration_s": float(duration),
                "resolution": resolution,
                "has_video": video is not None,
                "has_audio": audio is not None,
            }
    except ApiError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise ApiError(422, "not-media", f"not a readable media file: {exc}") from exc


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def add_recording_pages(app: web.Application) -> None:
    app.router.add_get("/recordings/{recording_id}", playback_page)
    app.router.add_get("/recordings/{recording_id}/file", signed_file)
