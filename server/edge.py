"""The public side of `parloir serve --workers N`: one port, each room's traffic to its worker.

The edge holds no room. It proxies every HTTP request and every signaling WebSocket (message by
message) to a worker process: to the room's owner when the request acts on a live room, to the
least busy worker otherwise. Media never crosses it: each worker's ICE candidates are its own
UDP sockets, announced in the SDP its signaling sends. The edge serves three things itself:
/metrics (the workers' own, each labelled `worker`, plus the edge's), /healthz and /readyz
(which say when a worker is down).

Which requests act on a live room (everything else is stateless over the shared database):
- GET /rtc: the room named by the first (`join`) message; a connection test gets any worker;
- /v2/project/{p}/session/{room}/...: streams, mute, signals, force-disconnect;
- POST /v2/project/{p}/archive (room = body sessionId), /archive/{id}/stop|layout|streams;
- /api/rooms/{room}/...; POST /api/recordings/{id}/stop.
A room gets its worker when a participant first joins it (stored: server/placement.py); a REST
call for a room nobody joined goes to any worker, which answers as it would for an empty room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from media.config import MediaSettings
from server.edge_metrics import EDGE_DATABASE, PLACEMENTS, SUPERVISOR, add_edge_health_routes
from server.json_body import JsonBodyError, parse_json_object
from server.keys import SETTINGS
from server.placement import RoomPlacements
from server.projects import load_projects
from server.recording_events import RecordingWebhooks
from server.recording_store import RecordingStore
from server.recordings import RecordingService
from server.rtc_endpoint import HARD_FRAME_LIMIT_FACTOR
from server.session_store import SessionStore
from server.settings import Settings
from server.storage import Database
from server.supervisor import NoWorker, Supervisor, WorkerProcess, wait_for_previous_workers
from server.telemetry_recovery import close_interrupted_telemetry
from server.tokens import TokenError, TokenVerifier
from server.vonage_events import VonageEvents
from server.webhooks import WebhookOutbox
from signaling.connection import CLOSE_JOIN_TIMEOUT
from signaling.room import RoomRegistry

log = logging.getLogger(__name__)

UPSTREAM = web.AppKey("upstream", aiohttp.ClientSession)
EDGE_TOKENS = web.AppKey("edge_tokens", TokenVerifier)


class RoomSockets:
    """Signaling sockets open per placed room. A room none has used for longer than the worker
    keeps an empty room (reconnect grace + room grace) has closed there: its placement is
    dropped, and its next join is placed afresh (on the least busy worker)."""

    def __init__(self, placements: RoomPlacements, linger_s: float) -> None:
        self._placements = placements
        self._linger_s = linger_s
        self._open: dict[str, int] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def opened(self, room_id: str) -> None:
        self._open[room_id] = self._open.get(room_id, 0) + 1
        if (timer := self._expiry.pop(room_id, None)) is not None:
            timer.cancel()

    def closed(self, room_id: str) -> None:
        self._open[room_id] -= 1
        if self._open[room_id] > 0:
            return
        del self._open[room_id]
        self._expiry[room_id] = asyncio.get_running_loop().call_later(
            self._linger_s, self._expire, room_id
        )

    def _expire(self, room_id: str) -> None:
        self._expiry.pop(room_id, None)
        if room_id not in self._open:
            task = asyncio.ensure_future(self._placements.forget(room_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for timer in self._expiry.values():
            timer.cancel()


ROOM_SOCKETS = web.AppKey("room_sockets", RoomSockets)

PLACEMENT_MARGIN_S = 30.0
"""Beyond the worker's own graces, before a room without sockets loses its placement."""
CLOSE_WORKER_LOST = 1011
"""The worker holding the room died: the same as a single server crashing, said in a frame."""

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_SESSION_PATH = re.compile(r"^/v2/project/[^/]+/session/(?P<room>[^/]+)/")
_ARCHIVE_ACTION = re.compile(r"^/v2/project/[^/]+/archive/(?P<id>[^/]+)/(stop|layout|streams)$")
_ARCHIVE_START = re.compile(r"^/v2/project/[^/]+/archive/?$")
_ROOM_API = re.compile(r"^/api/rooms/(?P<room>[^/]+)/")
_RECORDING_STOP = re.compile(r"^/api/recordings/(?P<id>[^/]+)/stop$")


def create_edge_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=1024**2)
    app[SETTINGS] = settings
    add_edge_health_routes(app)
    app.router.add_get("/rtc", rtc_proxy)
    # Every path, a decoded %0A included (`.*` stops at it and left the edge's own text 404).
    app.router.add_route("*", r"/{tail:[\s\S]*}", http_proxy)
    app.cleanup_ctx.append(_server_duties)
    return app


async def _server_duties(app: web.Application) -> AsyncIterator[None]:
    """Storage, recovery and webhook delivery once for the server; then the workers."""
    settings = app[SETTINGS]
    database = await Database.open(settings.database_path)  # migrates before any worker runs
    store = SessionStore(database)
    outbox = WebhookOutbox(database)
    outbox.start()
    vonage = VonageEvents(load_projects(settings), outbox)
    recordings = RecordingService(
        RecordingStore(database), settings.data_dir.resolve(), RoomRegistry(MediaSettings())
    )
    recordings.listeners.append(RecordingWebhooks(settings, outbox, vonage, settings.link_base()))
    placements = RoomPlacements(database)
    await asyncio.to_thread(wait_for_previous_workers, await placements.previous_worker_pids())
    await placements.load()
    await close_interrupted_telemetry(store, vonage=vonage)
    await recordings.recover_interrupted()

    async def worker_lost(worker: WorkerProcess, rooms: list[str]) -> None:
        if not rooms:
            return
        closed = await close_interrupted_telemetry(store, rooms, vonage)
        failed = await recordings.recover_interrupted(rooms)
        log.error(
            "worker %d's rooms closed: %d call/media interval(s) ended, %d recording(s) failed",
            worker.index,
            closed,
            len(failed),
        )

    supervisor = Supervisor(settings, placements, worker_lost)
    app[EDGE_TOKENS] = TokenVerifier(settings.secret, load_projects(settings))
    app[ROOM_SOCKETS] = RoomSockets(
        placements, settings.reconnect_grace_s + settings.room_grace_s + PLACEMENT_MARGIN_S
    )
    app[EDGE_DATABASE] = database
    app[PLACEMENTS] = placements
    app[SUPERVISOR] = supervisor
    app[UPSTREAM] = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
        connector=aiohttp.TCPConnector(limit=0),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    try:
        await supervisor.start()
        yield
    finally:
        app[ROOM_SOCKETS].close()
        await supervisor.stop()
        await app[UPSTREAM].close()
        await vonage.drain()
        await outbox.close()
        await database.close()


# ---- routing -----------------------------------------------------------------------------


def _owner(app: web.Application, room_id: str | None) -> WorkerProcess:
    supervisor = app[SUPERVISOR]
    if room_id is not None:
        placement = app[PLACEMENTS].owner(room_id)
        if placement is not None:
            worker = supervisor.worker(placement.worker)
            if worker is not None:
                return worker
    return supervisor.any_worker()


async def _recording_room(app: web.Application, recording_id: str) -> str | None:
    async with app[EDGE_DATABASE].connection.execute(
        "SELECT room_id FROM recordings WHERE id = ?", (recording_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return str(row[0]) if row is not None else None


async def room_of_request(request: web.Request, body: bytes | None) -> str | None:
    """The live room a REST request acts on, if any (see the module docstring)."""
    path = request.path
    for pattern in (_SESSION_PATH, _ROOM_API):
        if match := pattern.match(path):
            return match["room"]
    if match := _ARCHIVE_ACTION.match(path) or _RECORDING_STOP.match(path):
        return await _recording_room(request.app, match["id"])
    if body is not None:
        with contextlib.suppress(JsonBodyError):  # the worker answers it
            data = parse_json_object(body)
            room = data.get("sessionId") or data.get("session_id")
            return room if isinstance(room, str) else None
    return None


def _needs_body(request: web.Request) -> bool:
    return request.method == "POST" and bool(_ARCHIVE_START.match(request.path))


def _forwarded_headers(request: web.Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


def _unavailable(reason: str, status: int = 503) -> web.Response:
    return web.json_response({"error": "unavailable", "message": reason}, status=status)


# ---- HTTP --------------------------------------------------------------------------------


async def http_proxy(request: web.Request) -> web.StreamResponse:
    body = await request.read() if _needs_body(request) else None
    try:
        worker = _owner(request.app, await room_of_request(request, body))
    except NoWorker as exc:
        return _unavailable(str(exc))
    headers = _forwarded_headers(request)
    data: Any = None
    if body is not None:
        headers.pop("Content-Length", None)
        data = body
    elif request.body_exists:
        data = request.content
    url = worker.url + request.raw_path
    try:
        async with request.app[UPSTREAM].request(
            request.method, url, headers=headers, data=data, allow_redirects=False
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        if request.transport is None or request.transport.is_closing():
            raise  # the client went away
        log.warning(
            "worker %d did not answer %s %s: %s", worker.index, request.method, request.path, exc
        )
        return _unavailable(f"worker {worker.index} did not answer", status=502)


# ---- WebSocket ---------------------------------------------------------------------------


class MisroutedJoin(Exception):
    """A join on a socket connected to another worker than the room's."""


def room_of_join(raw: str | bytes, tokens: TokenVerifier) -> str | None:
    """The room a first signaling message joins with a token valid for it; None for a
    connection test or anything else (the worker it reaches answers it as a single server
    would). Only a valid token places a room: nobody fills the placements with made-up rooms."""
    with contextlib.suppress(ValueError, UnicodeDecodeError, TokenError):
        message = json.loads(raw)
        if (
            isinstance(message, dict)
            and message.get("type") == "join"
            and message.get("purpose", "call") == "call"
            and isinstance(message.get("room"), str)
            and isinstance(message.get("token"), str)
            and tokens.verify(message["token"]).room == message["room"]
        ):
            return str(message["room"])
    return None


async def rtc_proxy(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(
        heartbeat=20.0, max_msg_size=settings.max_message_bytes * HARD_FRAME_LIMIT_FACTOR + 1
    )
    await ws.prepare(request)
    try:
        first = await asyncio.wait_for(ws.receive(), settings.join_timeout_s)
    except TimeoutError:
        await ws.close(code=CLOSE_JOIN_TIMEOUT, message=b"join timeout")
        return ws
    if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return ws
    room = room_of_join(first.data, request.app[EDGE_TOKENS])
    supervisor = request.app[SUPERVISOR]
    try:
        if room is not None:
            placement = await request.app[PLACEMENTS].place(room, supervisor.choose)
            worker = supervisor.worker(placement.worker)
            if worker is None:  # placed on a worker that died meanwhile
                raise NoWorker(f"worker {placement.worker} is restarting")
        else:
            worker = supervisor.any_worker()
    except NoWorker as exc:
        await ws.close(code=1013, message=str(exc).encode()[:120])  # 1013: try again later
        return ws
    headers = {
        k: v
        for k, v in _forwarded_headers(request).items()
        if k.lower()
        not in ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions")
    }
    try:
        upstream = await request.app[UPSTREAM].ws_connect(
            worker.url + "/rtc", headers=headers, max_msg_size=0, autoping=True
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("worker %d refused a signaling socket: %s", worker.index, exc)
        await ws.close(code=1013, message=b"worker unavailable")
        return ws
    joins = JoinWatch(request.app, worker, room)
    try:
        async with upstream:
            await _send(upstream, first)
            await _pump(ws, upstream, joins)
    finally:
        joins.release()
    return ws


class JoinWatch:
    """Keeps a socket's room on the worker it reached. The first message placed the room; a
    socket whose first message did not join (a refused join that kept the socket open) may join
    later: that room is then placed on this socket's worker, or, if another worker already holds
    it, the socket is closed with 1013 (try again) so that the client reconnects to the right one.
    Counts the room's open sockets (RoomSockets) meanwhile."""

    def __init__(self, app: web.Application, worker: WorkerProcess, room: str | None) -> None:
        self._app, self._worker, self.room = app, worker, room
        if room is not None:
            app[ROOM_SOCKETS].opened(room)

    async def admit(self, message: aiohttp.WSMessage) -> bool:
        if self.room is not None or message.type != WSMsgType.TEXT:
            return True
        room = room_of_join(message.data, self._app[EDGE_TOKENS])
        if room is None:
            return True
        index, pid = self._worker.index, self._worker.pid
        assert pid is not None
        placement = await self._app[PLACEMENTS].place(room, lambda: (index, pid))
        if placement.worker != index:
            return False
        self.room = room
        self._app[ROOM_SOCKETS].opened(room)
        return True

    def release(self) -> None:
        if self.room is not None:
            self._app[ROOM_SOCKETS].closed(self.room)


async def _send(target: Any, message: aiohttp.WSMessage) -> None:
    if message.type == WSMsgType.TEXT:
        await target.send_str(message.data)
    else:
        await target.send_bytes(message.data)


async def _pump(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, joins: JoinWatch
) -> None:
    """Both directions, message by message, until either side closes; the close code and reason
    of one side are given to the other. The side that closed first is closed with no read
    pending on it (aiohttp closes a socket whose close() races another task's receive() without
    waiting for the peer's reply, and the peer then sees 1006 instead of the code)."""

    async def to_worker() -> None:
        async for message in client:
            if not await joins.admit(message):
                raise MisroutedJoin("that room is served by another worker: reconnect")
            await _send(upstream, message)

    async def to_client() -> tuple[int, bytes]:
        while True:
            message = await upstream.receive()
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await _send(client, message)
                continue
            code = upstream.close_code
            if message.type != WSMsgType.CLOSE or code is None or code == 1006:
                return CLOSE_WORKER_LOST, b"worker lost"
            return code, str(message.extra or "").encode()[:120]

    forward, backward = asyncio.ensure_future(to_worker()), asyncio.ensure_future(to_client())
    try:
        await asyncio.wait((forward, backward), return_when=asyncio.FIRST_COMPLETED)
        if backward.done():
            forward.cancel()
            await asyncio.gather(forward, return_exceptions=True)
            try:
                code, reason = backward.result()
            except Exception as exc:  # could not write to the client: it is gone
                log.info("signaling proxy: %s", exc)
                code, reason = CLOSE_WORKER_LOST, b"worker lost"
            await client.close(code=code, message=reason)
        else:
            backward.cancel()
            await asyncio.gather(backward, return_exceptions=True)
            if isinstance(error := forward.exception(), MisroutedJoin):
                await client.close(code=1013, message=str(error).encode()[:120])  # try again
            elif error is not None:
                log.info("signaling proxy: %s", error)
            sent = client.close_code
            # 1005/1006/1015 say "no close frame came": never sent in one; 1001 = going away.
            await upstream.close(code=sent if sent and sent not in (1005, 1006, 1015) else 1001)
    finally:
        for task in (forward, backward):
            task.cancel()
        await asyncio.gather(forward, backward, return_exceptions=True)
