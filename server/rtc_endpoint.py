"""GET /rtc: one WebSocket per participant, speaking signaling/PROTOCOL.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from server.keys import REGISTRY, SETTINGS, TOKENS
from server.tokens import TokenError
from server.turn import turn_credentials
from signaling.connection import CLOSE_JOIN_TIMEOUT, Connection
from signaling.errors import ErrorCode, SignalingError
from signaling.permissions import Grant

log = logging.getLogger(__name__)

# Frames up to this size are read and refused with an error (socket kept); beyond it aiohttp
# closes with 1009, so a client cannot make the server buffer unbounded data.
HARD_FRAME_LIMIT_FACTOR = 16


async def rtc_websocket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(
        heartbeat=20.0, max_msg_size=settings.max_message_bytes * HARD_FRAME_LIMIT_FACTOR
    )
    await ws.prepare(request)

    def verify(token: str) -> Grant:
        try:
            return request.app[TOKENS].verify(token)
        except TokenError as exc:
            raise SignalingError(ErrorCode(exc.code), exc.reason) from exc

    async def send_json(message: dict[str, Any]) -> None:
        if not ws.closed:
            await ws.send_str(json.dumps(message, separators=(",", ":")))

    async def close_socket(code: int, reason: str) -> None:
        await ws.close(code=code, message=reason.encode()[:120])

    connection = Connection(
        request.app[REGISTRY],
        verify_token=verify,
        send_json=send_json,
        close_socket=close_socket,
        max_message_bytes=settings.max_message_bytes,
        ice_servers=list(settings.ice_servers),
        ice_credentials=lambda identity: (
            turn_credentials(settings.turn_secret, identity, settings.turn_ttl_s)
            if settings.turn_secret
            else None
        ),
    )
    join_deadline = asyncio.get_running_loop().call_later(
        settings.join_timeout_s,
        lambda: (
            None
            if connection.joined
            else asyncio.ensure_future(close_socket(CLOSE_JOIN_TIMEOUT, "join timeout"))
        ),
    )
    try:
        async for frame in ws:
            if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await connection.handle_raw(frame.data)
            elif frame.type == WSMsgType.ERROR:
                log.info("websocket error: %s", ws.exception())
                break
    finally:
        join_deadline.cancel()
        with contextlib.suppress(Exception):
            await connection.closed()
    return ws
