"""Hostile and broken input against the running server: clear errors, nothing else disturbed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest

from media.synthetic import PaintedVideoTrack, read_frame_index
from server.tokens import issue_token
from signaling.client import ParloirClient, ServerError
from signaling.permissions import Role
from tests.support.server_process import ServerProcess


class RawSocket:
    """A bare WebSocket to /rtc, for sending what no well-behaved client would."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, payload: Any) -> None:
        await self.ws.send_str(payload if isinstance(payload, str) else json.dumps(payload))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.receive(), timeout)
        assert frame.type == aiohttp.WSMsgType.TEXT, f"expected a message, got {frame.type}"
        return json.loads(frame.data)

    async def exchange(self, payload: Any) -> dict[str, Any]:
        await self.send(payload)
        return await self.receive()

    async def assert_still_usable(self) -> None:
        assert await self.exchange({"type": "ping", "id": "alive"}) == {
            "type": "ack",
            "id": "alive",
            "of": "ping",
        }

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        frame = await asyncio.wait_for(self.ws.receive(), timeout)
        assert frame.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        )
        return self.ws.close_code


@pytest.fixture
async def healthy_room(server: ServerProcess) -> AsyncIterator[tuple[ParloirClient, Any]]:
    """Another room with media flowing the whole time; it must not notice the abuse."""
    publisher = ParloirClient(server.url, token=server.token("healthy", "pub"), room="healthy")
    viewer = ParloirClient(
        server.url, token=server.token("healthy", "view", Role.SUBSCRIBER), room="healthy"
    )
    await publisher.connect()
    publication = await publisher.publish(video=PaintedVideoTrack(320, 240, 15))
    await viewer.connect()
    received = await viewer.wait_for_track(publication["id"], "video")
    first = await asyncio.wait_for(received.track.recv(), 5)
    assert read_frame_index(first) is not None
    yield viewer, received.track
    # After everything the abusive tests did, frames are still arriving, newer ones.
    last = first
    for _ in range(10):
        last = await asyncio.wait_for(received.track.recv(), 5)
    assert read_frame_index(last) is not None and read_frame_index(last) > read_frame_index(first)
    await asyncio.gather(viewer.leave(), publisher.leave())


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[RawSocket]:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{server.url}/rtc") as ws:
        yield RawSocket(ws)


async def joined_raw(
    server: ServerProcess, session: aiohttp.ClientSession, role: Role
) -> RawSocket:
    ws = await session.ws_connect(f"{server.url}/rtc")
    sock = RawSocket(ws)
    reply = await sock.exchange(
        {"type": "join", "room": "abuse", "token": server.token("abuse", "x", role)}
    )
    assert reply["type"] == "joined"
    # The subscriber offer follows `joined`; take it so replies line up with requests.
    assert (await sock.receive())["type"] == "offer"
    return sock


async def test_join_without_token_is_refused_and_socket_stays_usable(
    server, healthy_room, raw
) -> None:
    reply = await raw.exchange({"type": "join", "room": "abuse", "id": 1})
    assert reply["type"] == "error" and reply["code"] == "invalid-message" and reply["id"] == 1
    assert "token" in reply["reason"]
    await raw.assert_still_usable()


async def test_forged_token_is_refused_and_socket_closed(server, healthy_room, raw) -> None:
    forged = issue_token(
        "another-secret-" + "x" * 30, room="abuse", identity="mallory", role=Role.MODERATOR
    )
    reply = await raw.exchange({"type": "join", "room": "abuse", "token": forged})
    assert reply == {
        "type": "error",
        "code": "token-invalid",
        "reason": "token signature does not verify",
    }
    assert await raw.closed_with() == 4401


async def test_unsigned_token_is_refused(server, healthy_room, raw) -> None:
    none_alg = jwt.encode(
        {
            "iss": "parloir",
            "room": "abuse",
            "sub": "m",
            "role": "moderator",
            "iat": 0,
            "exp": 4102444800,
        },
        key="",
        algorithm="none",
    )
    reply = await raw.exchange({"type": "join", "room": "abuse", "token": none_alg})
    assert reply["code"] == "token-invalid"


async def test_expired_token_is_refused(server, healthy_room, raw) -> None:
    expired = issue_token(
        server.secret, room="abuse", identity="late", role=Role.PUBLISHER, ttl_s=60, now=1_000_000
    )
    reply = await raw.exchange({"type": "join", "room": "abuse", "token": expired})
    assert reply == {"type": "error", "code": "token-expired", "reason": "token has expired"}
    assert await raw.closed_with() == 4401


async def test_token_for_another_room_is_refused(server, healthy_room, raw) -> None:
    reply = await raw.exchange(
        {"type": "join", "room": "healthy", "token": server.token("abuse", "eve")}
    )
    assert reply["code"] == "wrong-room"
    assert await raw.closed_with() == 4401


async def test_subscriber_cannot_publish(server, healthy_room) -> None:
    async with aiohttp.ClientSession() as session:
        sock = await joined_raw(server, session, Role.SUBSCRIBER)
        reply = await sock.exchange({"type": "publish", "video_mid": "0", "id": "p"})
        assert reply["code"] == "forbidden" and reply["id"] == "p"
        reply = await sock.exchange({"type": "offer", "pc": "publisher", "sdp": "v=0\r\n"})
        assert reply["code"] in ("forbidden", "bad-sdp")
        await sock.assert_still_usable()
    # And the same through a real peer: the publish fails, nothing reaches the room.
    client = ParloirClient(
        server.url, token=server.token("abuse", "sub", Role.SUBSCRIBER), room="abuse"
    )
    await client.connect()
    with pytest.raises(ServerError) as refused:
        await client.publish(video=PaintedVideoTrack(160, 120, 15))
    assert refused.value.code == "forbidden"
    await client.leave()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("{not json", "malformed"),
        ("[1, 2, 3]", "malformed"),
        ('"join"', "malformed"),
        ({"type": "teleport"}, "unknown-type"),
        ({"no": "type"}, "unknown-type"),
        ({"type": "join", "room": "abuse", "token": "t", "extra": 1}, "invalid-message"),
        (
            {"type": "mute", "publication_id": "x", "kind": "smell", "muted": True},
            "invalid-message",
        ),
        ({"type": "offer", "pc": "publisher", "sdp": "v=0"}, "not-joined"),
    ],
)
async def test_malformed_messages_get_an_error_and_the_socket_stays_usable(
    server, healthy_room, raw, payload: Any, code: str
) -> None:
    reply = await raw.exchange(payload)
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert reply["reason"]
    await raw.assert_still_usable()


async def test_oversized_message_is_refused_and_socket_stays_usable(
    server, healthy_room, raw
) -> None:
    huge = json.dumps({"type": "ping", "pad": "x" * (70 * 1024)})
    reply = await raw.exchange(huge)
    assert reply["code"] == "message-too-large"
    await raw.assert_still_usable()


@pytest.mark.parametrize(
    "sdp",
    [
        "garbage",
        "v=0\r\nthis is not sdp\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
        "a=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n",
    ],
)
async def test_garbage_sdp_is_refused_and_the_participant_can_still_publish(
    server, healthy_room, sdp: str
) -> None:
    client = ParloirClient(server.url, token=server.token("abuse", "sdp"), room="abuse")
    await client.connect()
    try:
        await client.send({"type": "publish", "video_mid": "0", "id": "p1"})
        await client.send({"type": "offer", "pc": "publisher", "sdp": sdp, "id": "bad"})
        error = await client.wait_for(lambda m: m.get("id") == "bad")
        assert error["type"] == "error" and error["code"] in ("bad-sdp", "codec-unsupported"), error
        publication = await client.publish(video=PaintedVideoTrack(160, 120, 15))
        assert publication["kinds"] == ["video"]
    finally:
        await client.leave()


async def test_socket_that_never_joins_is_closed(tmp_path) -> None:
    from tests.support.server_process import running_server

    with running_server(tmp_path, PARLOIR_JOIN_TIMEOUT_S="1") as srv:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{srv.url}/rtc") as ws:
            frame = await asyncio.wait_for(ws.receive(), 5)
            assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 4408


async def test_call_page_refuses_invalid_room_ids_and_sets_security_headers(server) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/room/..%2F..%2Fetc") as response:
            assert response.status == 404
        async with session.get(f"{server.url}/static/../server/settings.py") as response:
            assert response.status in (403, 404)
        async with session.get(f"{server.url}/room/ok-room") as response:
            assert response.status == 200
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Cache-Control"] == "no-store"


async def test_limits_room_size_rooms_message_rate_and_token_replay(tmp_path) -> None:
    from tests.support.server_process import running_server

    env = {"PARLOIR_MAX_PARTICIPANTS_PER_ROOM": "2", "PARLOIR_MAX_ROOMS": "2"}
    with running_server(tmp_path, **env) as srv:
        async with aiohttp.ClientSession() as session:
            sockets = []

            async def join(room: str, identity: str, token: str | None = None) -> dict[str, Any]:
                ws = await session.ws_connect(f"{srv.url}/rtc")
                sockets.append(ws)
                sock = RawSocket(ws)
                return await sock.exchange(
                    {"type": "join", "room": room, "token": token or srv.token(room, identity)}
                )

            assert (await join("one", "a"))["type"] == "joined"
            assert (await join("one", "b"))["type"] == "joined"
            assert (await join("one", "c"))["code"] == "room-full"
            assert (await join("two", "d"))["type"] == "joined"
            assert (await join("three", "e"))["code"] == "server-full"

            # A token whose holder said goodbye admits nobody again.
            token = srv.token("two", "f")
            ws = await session.ws_connect(f"{srv.url}/rtc")
            leaver = RawSocket(ws)
            assert (await leaver.exchange({"type": "join", "room": "two", "token": token}))[
                "type"
            ] == "joined"
            await leaver.send({"type": "leave"})
            kinds = []
            while "left" not in kinds:  # the subscriber offer may come first
                frame = await asyncio.wait_for(ws.receive(), 5)
                assert frame.type == aiohttp.WSMsgType.TEXT, kinds
                kinds.append(json.loads(frame.data)["type"])
            replay = await join("two", "f", token)
            assert replay["code"] == "token-spent"

            # Flooding one socket: beyond the burst, messages are dropped with an error.
            flood = RawSocket(await session.ws_connect(f"{srv.url}/rtc"))  # ping needs no join
            for n in range(150):
                await flood.send({"type": "ping", "id": n})
            replies = [await flood.receive() for _ in range(150)]
            limited = [r for r in replies if r.get("code") == "rate-limited"]
            assert 20 <= len(limited) <= 60, len(limited)
            await asyncio.sleep(1.0)
            await flood.assert_still_usable()
            for ws in sockets:
                await ws.close()
        async with aiohttp.ClientSession() as session, session.get(f"{srv.url}/metrics") as r:
            text = await r.text()
        assert 'parloir_errors_total{code="rate-limited",origin="signaling"}' in text
        assert 'parloir_errors_total{code="room-full",origin="signaling"}' in text


async def test_joined_carries_turn_credentials_when_a_turn_secret_is_set(tmp_path) -> None:
    from tests.support.server_process import running_server

    env = {"PARLOIR_TURN_SECRET": "coturn-secret", "PARLOIR_ICE_SERVERS": "turn:127.0.0.1:3478"}
    with running_server(tmp_path, **env) as srv:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{srv.url}/rtc") as ws:
            joined = await RawSocket(ws).exchange(
                {"type": "join", "room": "r", "token": srv.token("r", "student-9")}
            )
    assert joined["ice_servers"] == ["turn:127.0.0.1:3478"]
    assert joined["ice_credentials"]["username"].endswith(":student-9")
