"""GET /rtc: one WebSocket per participant, speaking signaling/PROTOCOL.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from server.keys import REGISTRY, SETTINGS, TOKENS
from server.tokens import TokenError
from server.turn import turn_credentials
from signaling.connection import CLOSE_JOIN_TIMEOUT, Connection
from signaling.errors import ErrorCode, SignalingError
from signaling.permissions import Grant

log = logging.getLogger(__name__)

HARD_FRAME_LIMIT_FACTOR = 16
"""Frames up to (and including) this many times the message limit are read and refused with
`message-too-large` (socket kept); beyond it the socket is closed with 1009, so a client cannot
make the server buffer unbounded data."""
OVERSIZED_LINGER_S = 2.0
"""After that 1009 close, how long the client may take to stop sending and close."""


class SignalingWebSocket(web.WebSocketResponse):
    """The /rtc WebSocket: a frame beyond the hard limit closes it with 1009, reliably.

    aiohttp refuses such a frame as soon as its header arrives: it sends the close frame and
    closes the TCP connection at once, while the client is still sending the rest of the frame.
    The kernel answers those bytes with a reset, which often destroys the close frame before the
    client reads it: the client saw 1006. Here the connection stays open after the close frame
    (aiohttp drops what still arrives, unparsed) until the client closes it or
    OVERSIZED_LINGER_S passes (`linger_after_oversized_frame`).
    """

    def __init__(self, max_message_bytes: int) -> None:
        # aiohttp refuses a frame of exactly max_msg_size: one byte more lets the limit itself in.
        super().__init__(
            heartbeat=20.0, max_msg_size=max_message_bytes * HARD_FRAME_LIMIT_FACTOR + 1
        )

    @property
    def refused_oversized_frame(self) -> bool:
        error = self.exception()
        return isinstance(error, WebSocketError) and error.code == WSCloseCode.MESSAGE_TOO_BIG

    def _close_transport(self) -> None:  # aiohttp's private hook for its own closes
        if self.refused_oversized_frame:
            return  # closed by linger_after_oversized_frame, once the client is done
        super()._close_transport()

    async def linger_after_oversized_frame(self, request: web.Request) -> None:
        if not self.refused_oversized_frame:
            return
        deadline = asyncio.get_running_loop().time() + OVERSIZED_LINGER_S
        while request.transport is not None and not request.transport.is_closing():
            if asyncio.get_running_loop().time() > deadline:
                request.transport.close()
                return
            await asyncio.sleep(0.02)


async def rtc_websocket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    ws = SignalingWebSocket(settings.max_message_bytes)
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
    await ws.linger_after_oversized_frame(request)
    return ws
