"""Chat over the data channel, relayed by the server: addressing, order, limits, history."""

from __future__ import annotations

import asyncio
from pathlib import Path

from media.synthetic import PaintedVideoTrack, read_frame_index
from signaling.client import ParloirClient
from signaling.permissions import Role
from tests.conftest import InProcessServer
from tests.support.server_process import running_server


async def connect(
    server: InProcessServer, room: str, identity: str, role: Role = Role.PUBLISHER
) -> ParloirClient:
    client = ParloirClient(
        server.url, token=server.token(room, identity, role), room=room, name=identity.title()
    )
    await client.connect()
    await client.wait_for_chat_channel()
    return client


async def chats(client: ParloirClient, count: int, timeout: float = 5.0) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(client.chat_messages()) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{len(client.chat_messages())} of {count} chat messages")
        await asyncio.sleep(0.02)
    return client.chat_messages()


async def test_chat_to_everyone_is_stamped_and_echoed(inprocess_server: InProcessServer) -> None:
    a, b, c = [await connect(inprocess_server, "chat", n) for n in ("ada", "bob", "cy")]
    try:
        await a.send_chat("hello all", request_id="m1")
        for client in (a, b, c):
            (message,) = await chats(client, 1)
            assert message["text"] == "hello all" and message["topic"] == "chat"
            assert message["from"] == {"id": a.participant_id, "identity": "ada", "name": "Ada"}
            assert message["to"] is None and message["seq"] == 1
            assert abs(message["sent_at"] / 1000 - asyncio.get_running_loop().time()) >= 0
        assert (await chats(a, 1))[0]["request_id"] == "m1"
    finally:
        await asyncio.gather(a.leave(), b.leave(), c.leave())


async def test_chat_to_one_participant_reaches_only_them(inprocess_server: InProcessServer) -> None:
    a, b, c = [await connect(inprocess_server, "dm", n) for n in ("ada", "bob", "cy")]
    try:
        await a.send_chat("just for bob", to=b.participant_id)
        await a.send_chat("for everyone")
        (private, public) = await chats(b, 2)
        assert private["text"] == "just for bob" and private["to"] == b.participant_id
        assert public["text"] == "for everyone"
        assert [m["text"] for m in await chats(c, 1)] == ["for everyone"]
        assert [m["text"] for m in await chats(a, 2)] == ["just for bob", "for everyone"]
    finally:
        await asyncio.gather(a.leave(), b.leave(), c.leave())


async def test_messages_arrive_in_order(inprocess_server: InProcessServer) -> None:
    a, b = [await connect(inprocess_server, "order", n) for n in ("ada", "bob")]
    try:
        for n in range(15):
            await a.send_chat(f"line {n}")
        received = await chats(b, 15)
        assert [m["text"] for m in received] == [f"line {n}" for n in range(15)]
        assert [m["seq"] for m in received] == list(range(1, 16))
    finally:
        await asyncio.gather(a.leave(), b.leave())


async def test_invalid_chat_gets_an_error_to_its_sender_only(
    inprocess_server: InProcessServer,
) -> None:
    a, b = [await connect(inprocess_server, "limits", n) for n in ("ada", "bob")]
    try:
        await a.send_chat("x" * (8 * 1024 + 1), request_id="big")
        await a.send_chat("bad topic", topic="no spaces allowed", request_id="topic")
        await a.send_chat("to nobody", to="ghost", request_id="ghost")
        channel = await a.wait_for_chat_channel()
        channel.send("{broken json")
        errors = [
            await a.wait_for(lambda m, i=i: m["type"] == "chat-error" and m.get("id") == i)
            for i in ("big", "topic", "ghost")
        ]
        assert [e["code"] for e in errors] == [
            "message-too-large",
            "invalid-message",
            "unknown-participant",
        ]
        malformed = await a.wait_for(
            lambda m: m["type"] == "chat-error" and m["code"] == "malformed"
        )
        assert "JSON" in malformed["reason"]
        await a.send_chat("é" * 4096)  # 8 KiB exactly in UTF-8: accepted
        (accepted,) = await chats(b, 1)
        assert len(accepted["text"]) == 4096
        assert not [m for m in b.events.messages if m["type"] == "chat-error"]
    finally:
        await asyncio.gather(a.leave(), b.leave())


async def test_flood_is_throttled_and_media_keeps_flowing(
    inprocess_server: InProcessServer,
) -> None:
    flooder = await connect(inprocess_server, "flood", "flooder")
    viewer = await connect(inprocess_server, "flood", "viewer", Role.SUBSCRIBER)
    try:
        publication = await flooder.publish(video=PaintedVideoTrack(320, 240, 30))
        video = await viewer.wait_for_track(publication["id"], "video")
        first = read_frame_index(await asyncio.wait_for(video.track.recv(), 5))
        started = asyncio.get_running_loop().time()
        channel = await flooder.wait_for_chat_channel()
        for n in range(200):
            channel.send(f'{{"type": "chat", "text": "spam {n}"}}')
        await asyncio.sleep(1.0)
        throttled = [m for m in flooder.events.messages if m["type"] == "chat-error"]
        delivered = [m for m in viewer.chat_messages()]
        assert throttled and all(m["code"] == "rate-limited" for m in throttled)
        assert 20 <= len(delivered) <= 45, len(delivered)
        assert len(delivered) + len(throttled) == 200
        # Drain what was decoded meanwhile: the newest frame shows video kept its pace.
        latest = read_frame_index(await asyncio.wait_for(video.track.recv(), 2))
        while video.track.frames_waiting > 0:  # decoded frames waiting: take the newest
            latest = read_frame_index(await video.track.recv())
        elapsed = asyncio.get_running_loop().time() - started
        assert first is not None and latest is not None
        assert latest - first >= 0.7 * 30 * elapsed, (first, latest, elapsed)
    finally:
        await asyncio.gather(flooder.leave(), viewer.leave())


async def test_late_joiner_receives_the_history_it_may_see(
    inprocess_server: InProcessServer,
) -> None:
    a, b = [await connect(inprocess_server, "late", n) for n in ("ada", "bob")]
    late: ParloirClient | None = None
    try:
        await a.send_chat("first")
        await a.send_chat("private", to=b.participant_id)
        await chats(b, 2)  # relayed before b speaks: order across senders is arrival order
        await b.send_chat("second")
        await chats(a, 3)
        late = await connect(inprocess_server, "late", "cy")
        history = await late.wait_for_type("chat-history")
        assert [m["text"] for m in history["messages"]] == ["first", "second"]
        assert [m["from"]["identity"] for m in history["messages"]] == ["ada", "bob"]
    finally:
        await asyncio.gather(a.leave(), b.leave(), *(c.leave() for c in [late] if c))


async def test_history_survives_a_rejoin_within_the_grace_period(
    inprocess_server: InProcessServer,
) -> None:
    inprocess_server.registry.grace_s = 5.0
    a = await connect(inprocess_server, "grace", "ada")
    await a.send_chat("still here?")
    await chats(a, 1)
    await a.leave()
    back = await connect(inprocess_server, "grace", "ada")
    try:
        history = await back.wait_for_type("chat-history")
        assert [m["text"] for m in history["messages"]] == ["still here?"]
    finally:
        await back.leave()


async def test_history_is_gone_when_the_room_closes_and_never_written_to_disk(
    tmp_path: Path,
) -> None:
    """The seed: « l'historique des conversations n'est pas enregistré à la fin de la session »."""
    phrase = "confidential-remark-7f3a9c"
    with running_server(tmp_path, PARLOIR_ROOM_GRACE_S="0.5") as server:
        clients = []
        for identity in ("mentor", "student"):
            client = ParloirClient(
                server.url, token=server.token("session-42", identity), room="session-42"
            )
            await client.connect()
            clients.append(client)
        await clients[0].send_chat(phrase)
        assert (await chats(clients[1], 1))[0]["text"] == phrase
        await asyncio.gather(*(c.leave() for c in clients))
        await asyncio.sleep(1.5)  # past the grace period: the room has closed
        newcomer = ParloirClient(
            server.url, token=server.token("session-42", "mentor"), room="session-42"
        )
        await newcomer.connect()
        history = await newcomer.wait_for_type("chat-history")
        assert history["messages"] == []
        await newcomer.leave()
        files = [p for p in server.data_dir.rglob("*") if p.is_file()]
        assert any(p.name.startswith("parloir.sqlite3") for p in files)
        for path in files:
            assert phrase.encode() not in path.read_bytes(), f"chat text found in {path}"
        assert phrase not in server.log()
