"""Reaching past one's own grant: another room's tracks, a role one does not hold, another
Vonage project's sessions. Each attempt is refused with a clear code and changes nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import opentok
import pytest

from media.synthetic import PaintedVideoTrack, ToneAudioTrack, read_frame_index
from signaling.client import ParloirClient, ServerError
from signaling.permissions import Role
from tests.support.server_process import ServerProcess, running_server


@pytest.fixture
async def target(server: ServerProcess) -> AsyncIterator[tuple[ParloirClient, dict[str, Any]]]:
    """Ada publishing in room `target`, watched by a viewer that must notice nothing."""
    ada = ParloirClient(server.url, token=server.token("target", "ada"), room="target")
    viewer = ParloirClient(
        server.url, token=server.token("target", "viewer", Role.SUBSCRIBER), room="target"
    )
    await ada.connect()
    publication = await ada.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
    await viewer.connect()
    received = await viewer.wait_for_track(publication["id"], "video")
    first = await asyncio.wait_for(received.track.recv(), 5)
    yield viewer, publication
    for _ in range(10):
        last = await asyncio.wait_for(received.track.recv(), 5)
    assert read_frame_index(last) > read_frame_index(first)  # type: ignore[operator]
    untouched = [
        m["type"]
        for m in viewer.events.messages
        if m["type"] in ("mute-changed", "track-unpublished")
        or (
            m["type"] == "participant-left" and m["participant_id"] == publication["participant_id"]
        )
    ]
    assert untouched == [], untouched
    await asyncio.gather(viewer.leave(), ada.leave())


async def refused(client: ParloirClient, message: dict[str, Any]) -> str:
    with pytest.raises(ServerError) as error:
        await client.request(message, expect="ack")
    return str(error.value.code)


def attempts(publication_id: str) -> list[dict[str, Any]]:
    return [
        {"type": "mute", "publication_id": publication_id, "kind": "audio", "muted": True},
        {"type": "mute", "publication_id": publication_id, "kind": "video", "muted": True},
        {"type": "unpublish", "publication_id": publication_id},
        {"type": "blur", "publication_id": publication_id, "enabled": True},
    ]


async def test_a_moderator_of_another_room_cannot_touch_this_rooms_tracks(
    server: ServerProcess, target: tuple[ParloirClient, dict[str, Any]]
) -> None:
    _, publication = target
    intruder = ParloirClient(
        server.url, token=server.token("elsewhere", "eve", Role.MODERATOR), room="elsewhere"
    )
    await intruder.connect()
    for message in attempts(publication["id"]):
        assert await refused(intruder, message) == "unknown-publication", message
    # The publication id is not a key to the other room's chat either.
    await intruder.send_chat("psst", to=publication["participant_id"], request_id="c1")
    error = await intruder.wait_for_type("chat-error")
    assert error["code"] == "unknown-participant" and error["id"] == "c1"
    await intruder.leave()


async def test_publishers_and_subscribers_cannot_act_as_moderators(
    server: ServerProcess, target: tuple[ParloirClient, dict[str, Any]]
) -> None:
    _, publication = target
    for identity, role in (("bob", Role.PUBLISHER), ("sue", Role.SUBSCRIBER)):
        peer = ParloirClient(
            server.url, token=server.token("target", identity, role), room="target"
        )
        await peer.connect()
        for message in attempts(publication["id"]):
            assert await refused(peer, message) == "forbidden", (identity, message)
        assert await refused(peer, {"type": "record", "action": "start"}) == "forbidden"
        await peer.leave()


async def test_the_same_attempt_by_this_rooms_moderator_is_obeyed(server: ServerProcess) -> None:
    """The control for the two tests above: the refusals come from the grant, not a bug."""
    ada = ParloirClient(server.url, token=server.token("obeyed", "ada"), room="obeyed")
    moderator = ParloirClient(
        server.url, token=server.token("obeyed", "mod", Role.MODERATOR), room="obeyed"
    )
    await ada.connect()
    publication = await ada.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(160, 120, 15))
    await moderator.connect()
    await moderator.request(attempts(publication["id"])[0], expect="ack")
    muted = await ada.wait_for(lambda m: m["type"] == "mute-changed")
    assert muted["publication_id"] == publication["id"] and muted["muted"] is True
    await asyncio.gather(ada.leave(), moderator.leave())


# ---- Vonage projects ---------------------------------------------------------------------

PROJECTS = [
    {"api_key": "100001", "api_secret": "a" * 40},
    {"api_key": "200002", "api_secret": "b" * 40},
]


def project_jwt(api_key: str, secret: str) -> str:
    now = int(time.time())
    claims = {"iss": api_key, "ist": "project", "iat": now, "exp": now + 60, "jti": str(now)}
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_one_vonage_project_cannot_reach_anothers_session(tmp_path: Path) -> None:
    projects_file = tmp_path / "projects.json"
    projects_file.write_text(json.dumps(PROJECTS))
    with running_server(tmp_path, PARLOIR_VONAGE_PROJECTS_FILE=str(projects_file)) as server:
        owner = opentok.Client(PROJECTS[0]["api_key"], PROJECTS[0]["api_secret"], server.url)
        other = opentok.Client(PROJECTS[1]["api_key"], PROJECTS[1]["api_secret"], server.url)
        sid = (await asyncio.to_thread(owner.create_session)).session_id
        # Through its own project path: the SDK raises on what the server refused.
        for call, args in (
            (other.send_signal, (sid, {"type": "x", "data": "y"})),
            (other.mute_all, (sid, [])),
            (other.start_archive, (sid,)),
            (other.force_disconnect, (sid, "someone")),
        ):
            with pytest.raises(opentok.exceptions.OpenTokException):
                await asyncio.to_thread(call, *args)
        # (The SDK maps a 404 on list_streams to an empty list, so ask the server directly.)
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{server.url}/v2/project/{PROJECTS[1]['api_key']}/session/{sid}/stream",
                headers=other.get_json_headers(),
            ) as response:
                assert response.status == 404, response.status
        # Through the owner's path with its own credentials: 403, not the owner's data.
        forged = project_jwt(PROJECTS[1]["api_key"], PROJECTS[1]["api_secret"])
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{server.url}/v2/project/{PROJECTS[0]['api_key']}/session/{sid}/stream",
                headers={"X-OPENTOK-AUTH": forged},
            ) as response:
                assert response.status in (401, 403), response.status
                assert "message" in await response.json()
        # A client token minted with the other project's secret does not open the session (the
        # SDK refuses to mint one for a foreign session id, so it is made by hand).
        token = jwt.encode(
            {
                "iss": PROJECTS[1]["api_key"],
                "ist": "project",
                "iat": int(time.time()),
                "exp": int(time.time()) + 60,
                "session_id": sid,
                "scope": "session.connect",
                "role": "moderator",
                "nonce": "n",
            },
            PROJECTS[1]["api_secret"],
            algorithm="HS256",
        )
        intruder = ParloirClient(server.url, token=token, room=sid)
        with pytest.raises(ServerError) as error:
            await intruder.connect()
        assert error.value.code in ("token-invalid", "wrong-room"), error.value.code
        await intruder.close()
        # And the owner still drives its session.
        await asyncio.to_thread(owner.list_streams, sid)
