"""Well-behaved clients: a publisher (and maybe a viewer) whose media must keep flowing while the
fuzz runs, joined with tokens the server under fuzz mints."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import av

from media.synthetic import PaintedVideoTrack, ToneAudioTrack, read_frame_index
from signaling.client import ParloirClient
from signaling.permissions import Role

TokenFor = Callable[[str, str, Role], str]
"""Mints a join token for (room, identity, role), as `ServerProcess.token` does."""


def fixed_token(token: str) -> TokenFor:
    """A `TokenFor` that always gives this one token (a platform or Vonage client token)."""

    def token_for(room: str, identity: str, role: Role) -> str:
        return token

    return token_for


@dataclass
class MediaParty:
    """A well-behaved publisher, and maybe a viewer watching it: media that must keep flowing."""

    publisher: ParloirClient
    viewer: ParloirClient | None
    publication_id: str
    first_index: int | None = None
    last_index: int | None = None
    last_at: float = 0.0
    longest_gap_s: float = 0.0
    _watch: asyncio.Task[None] | None = None

    async def watch(self) -> None:
        """Read the viewer's video the whole time (nothing queues up), noting gaps."""
        assert self.viewer is not None
        received = await self.viewer.wait_for_track(self.publication_id, "video")
        while True:
            frame = await received.track.recv()
            assert isinstance(frame, av.VideoFrame)
            index = read_frame_index(frame)
            now = time.monotonic()
            if index is not None:
                if self.last_at:
                    self.longest_gap_s = max(self.longest_gap_s, now - self.last_at)
                if self.first_index is None:
                    self.first_index = index
                self.last_index, self.last_at = index, now

    async def leave(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        clients = [self.publisher] + ([self.viewer] if self.viewer else [])
        await asyncio.gather(*(c.leave() for c in clients), return_exceptions=True)


async def start_media_party(
    url: str,
    token_for: TokenFor,
    room: str,
    *,
    with_viewer: bool,
    first_frame_s: float = 15.0,
) -> MediaParty:
    def fresh(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:6]}"

    publisher = ParloirClient(url, token=token_for(room, fresh("pub"), Role.PUBLISHER), room=room)
    await publisher.connect()
    publication = await publisher.publish(
        audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 10)
    )
    party = MediaParty(publisher, None, publication["id"])
    if with_viewer:
        party.viewer = ParloirClient(
            url, token=token_for(room, fresh("view"), Role.SUBSCRIBER), room=room
        )
        await party.viewer.connect()
        party._watch = asyncio.ensure_future(party.watch())
        deadline = time.monotonic() + first_frame_s
        while party.first_index is None:
            if time.monotonic() > deadline or party._watch.done():
                raise TimeoutError(f"no painted frame of {party.publication_id} arrived")
            await asyncio.sleep(0.05)
    return party


async def media_party_problems(party: MediaParty) -> list[str]:
    """The viewer still receives newer frames, and nobody muted or ended the publication."""
    assert party.viewer is not None
    problems = []
    for message in party.viewer.events.messages:
        if message.get("publication_id") == party.publication_id and message["type"] in (
            "mute-changed",
            "track-unpublished",
        ):
            problems.append(f"the bystander's publication got {message!r}"[:300])
    seen_before = party.last_index
    await asyncio.sleep(1.0)
    if party._watch is not None and party._watch.done():
        problems.append(f"bystander video ended: {party._watch!r}"[:300])
    elif party.last_index is None or party.last_index == seen_before:
        problems.append(f"bystander video stalled at frame {party.last_index}")
    elif time.monotonic() - party.last_at > 2.0:
        problems.append(
            f"bystander video late: last frame {time.monotonic() - party.last_at:.1f} s ago"
        )
    return problems


def random_room_id() -> str:
    """A room nobody else uses."""
    return f"fuzz-{secrets.token_hex(4)}"
