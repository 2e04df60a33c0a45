"""After a fuzz run: the server still answers /healthz, and a well-behaved pair can still use a
room."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from tests.support.fuzz.media_party import MediaParty, TokenFor, start_media_party


async def room_problems(
    url: str, token_for: TokenFor, room: str, *, must_see: Sequence[str] = ()
) -> list[str]:
    """A well-behaved pair joins `room`, publishes, receives video and chats; the publications
    in `must_see` are still live and unmuted."""
    problems: list[str] = []
    party: MediaParty | None = None
    try:
        party = await asyncio.wait_for(
            start_media_party(url, token_for, room, with_viewer=True, first_frame_s=8), 30
        )
        assert party.viewer is not None and party.viewer.joined is not None
        live = {p["id"]: p for p in party.viewer.joined["publications"]}
        for publication_id in must_see:
            if publication_id not in live:
                problems.append(f"publication {publication_id} is gone from room {room}")
            elif any(live[publication_id]["muted"].values()):
                problems.append(f"publication {publication_id} was muted: {live[publication_id]}")
        await party.viewer.send_chat("still here", request_id="health")
        await party.publisher.wait_for(
            lambda m: m.get("type") == "chat" and m.get("text") == "still here", timeout=10
        )
    except Exception as exc:
        problems.append(f"a well-behaved client cannot use room {room}: {exc!r}"[:400])
    finally:
        if party is not None:
            await party.leave()
    return problems


async def server_health_problems(url: str) -> list[str]:
    """/healthz answers 200 with status `ok`."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=10)) as response,
        ):
            body = await response.json()
            if response.status != 200 or body.get("status") != "ok":
                return [f"/healthz answered {response.status} {body!r}"]
    except Exception as exc:
        return [f"/healthz does not answer: {exc!r}"]
    return []
