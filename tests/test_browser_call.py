"""Real headless Chromium participants in one call, through the web client and the SFU.

Each browser is its own process with its own fake camera: Alice's is the astronaut clip and a
440 Hz tone (generated here), Bob's are Chromium's default test pattern and beep, so each page
can be checked for showing the *other* participant. Recipe: /work/shared/BROWSER.md.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.browser import (
    CHROMIUM,
    INBOUND_RTP_JS,
    SELECTED_PAIR_JS,
    CallParticipant,
    best_match_rmse,
    inbound_rtp,
    launched_chromium,
    open_call_page,
    remote_video_handle_js,
    run_with_timeout,
    video_thumbnail,
    wait_for_remote_video,
    wait_until,
    write_astronaut_y4m,
    write_tone_wav,
)
from tests.support.server_process import ServerProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium"),
]

ROOM = "browser-call"
MATCH_RMSE = 30.0
"""BROWSER.md §5: a remote astronaut scores 5-11 against the clip, Chromium's pattern ~53."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class FakeDevices:
    clip: Path
    """Alice's camera: the astronaut Y4M, 320x240 at 15 fps."""
    tone: Path
    """Alice's microphone: a 440 Hz WAV."""
    reference: np.ndarray
    """16x12 grey thumbnails of every frame of the clip."""


@pytest.fixture
def fake_devices(tmp_path: Path) -> FakeDevices:
    clip, tone = tmp_path / "astronaut.y4m", tmp_path / "tone.wav"
    reference = write_astronaut_y4m(clip, 320, 240, fps=15, frames=45)
    write_tone_wav(tone, 440.0)
    return FakeDevices(clip, tone, reference)


async def open_call(
    browser: Any,
    server: ServerProcess,
    identity: str,
    name: str,
    query: str = "",
    *,
    publishes: bool = True,
) -> CallParticipant:
    """Open the call page of ROOM with a fresh token; wait until joined (and published)."""
    return await open_call_page(
        browser, server, ROOM, identity, name, query=query, publishes=publishes, viewport=(960, 540)
    )


async def video_progress(viewer: CallParticipant, publisher_id: str) -> tuple[float, float]:
    """(currentTime of the remote <video>, inbound-rtp video framesDecoded)."""
    played = await viewer.page.evaluate(f"() => {remote_video_handle_js(publisher_id)}.currentTime")
    stats = await inbound_rtp(viewer.page, "video")
    assert stats is not None, f"{viewer.name} has no inbound video"
    return float(played), float(stats["framesDecoded"])


async def astronaut_rmse(
    viewer: CallParticipant, publisher_id: str, reference: np.ndarray
) -> list[float]:
    """Best-frame RMSE of three samples, 0.2 s apart, of what the viewer shows for publisher."""
    scores = []
    for _ in range(3):
        scores.append(best_match_rmse(await video_thumbnail(viewer.page, publisher_id), reference))
        await asyncio.sleep(0.2)
    return scores


def test_two_browsers_see_and_hear_each_other(
    server: ServerProcess, fake_devices: FakeDevices, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    async def scenario() -> None:
        started = time.monotonic()
        async with (
            async_playwright() as pw,
            launched_chromium(
                pw, video_file=fake_devices.clip, audio_file=fake_devices.tone
            ) as alice_browser,
            launched_chromium(pw) as bob_browser,
        ):
            # Alice's tone must reach Bob unprocessed: no noise suppression on her mic.
            alice = await open_call(
                alice_browser, server, "alice", "Alice Astronaut", "&audio_processing=off"
            )
            bob = await open_call(bob_browser, server, "bob", "Bob Pattern")
            alice_id, bob_id = await alice.participant_id(), await bob.participant_id()
            await wait_for_remote_video(bob, alice_id)
            await wait_for_remote_video(alice, bob_id)
            print(f"media flowing both ways at {time.monotonic() - started:.1f}s")

            # The remote videos keep playing: currentTime and framesDecoded grow over 2 s.
            pairs = ((alice, bob_id), (bob, alice_id))
            before = [await video_progress(viewer, other) for viewer, other in pairs]
            await asyncio.sleep(2.0)
            after = [await video_progress(viewer, other) for viewer, other in pairs]
            for (viewer, _), (played0, decoded0), (played1, decoded1) in zip(
                pairs, before, after, strict=True
            ):
                assert played1 - played0 > 0.6, (viewer.name, played0, played1)
                assert decoded1 - decoded0 > 6, (viewer.name, decoded0, decoded1)

            # Each page shows the *other* camera: Bob sees the astronaut, Alice does not.
            on_bobs_page = await astronaut_rmse(bob, alice_id, fake_devices.reference)
            on_alices_page = await astronaut_rmse(alice, bob_id, fake_devices.reference)
            print(f"astronaut RMSE on Bob's page {on_bobs_page}, on Alice's {on_alices_page}")
            assert float(np.median(on_bobs_page)) < MATCH_RMSE, on_bobs_page
            assert min(on_alices_page) > MATCH_RMSE, on_alices_page

            # Each hears the other: audio RTP arrives and an unmuted <audio> plays it; Alice's
            # tone reaches Bob's speakers with energy.
            for viewer, other in pairs:
                audio = await inbound_rtp(viewer.page, "audio")
                assert audio and audio["packetsReceived"] > 0, (viewer.name, audio)
                playing = await viewer.page.evaluate(
                    """(id) => {
                      const tile = window.parloir.remoteTiles.find(t => t.participantId === id);
                      return !!tile && tile.hasAudio && !tile.audio.muted && !tile.audio.paused;
                    }""",
                    other,
                )
                assert playing, f"{viewer.name}'s page does not play the other's audio"
            await wait_until(
                bob.page,
                f"async (kind) => ((await ({INBOUND_RTP_JS})(kind)) || {{}}).totalAudioEnergy > 0",
                "audio",
                timeout_s=10,
                what="Alice's tone to be heard on Bob's page",
            )

            # Names on the tiles, as a user reads them.
            assert await bob.tile(alice_id).locator(".tile-name").inner_text() == "Alice Astronaut"
            assert await alice.tile(bob_id).locator(".tile-name").inner_text() == "Bob Pattern"

            # Media runs over loopback only, on both peer connections of both pages.
            for viewer in (alice, bob):
                for which in ("publisher", "subscriber"):
                    pair = await viewer.page.evaluate(SELECTED_PAIR_JS, which)
                    assert pair == ["127.0.0.1", "127.0.0.1"], (viewer.name, which, pair)

            for viewer in (alice, bob):
                await viewer.assert_no_errors()
                path = tmp_path / f"{viewer.name.split()[0].lower()}.png"
                await viewer.page.screenshot(path=str(path))
                assert path.read_bytes()[:8] == PNG_SIGNATURE, path
            print(f"screenshots in {tmp_path}; done at {time.monotonic() - started:.1f}s")

    run_with_timeout(scenario)


def test_muted_mic_shows_on_the_other_page_and_leaving_removes_the_tile(
    server: ServerProcess, fake_devices: FakeDevices, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    async def scenario() -> None:
        started = time.monotonic()
        async with (
            async_playwright() as pw,
            launched_chromium(pw, video_file=fake_devices.clip) as alice_browser,
            launched_chromium(pw) as bob_browser,
        ):
            alice = await open_call(alice_browser, server, "alice", "Alice Astronaut")
            bob = await open_call(bob_browser, server, "bob", "Bob Pattern")
            alice_id = await alice.participant_id()
            await wait_for_remote_video(bob, alice_id)
            alice_tile = bob.tile(alice_id)
            mic_badge = alice_tile.locator(".badge-mic")
            assert not await mic_badge.is_visible()

            await alice.page.get_by_role("button", name="Mute mic").click()
            await alice.page.get_by_role("button", name="Unmute mic").wait_for(timeout=5000)
            assert (
                await alice.page.evaluate("window.parloir.localStream.getAudioTracks()[0].enabled")
                is False
            )
            await mic_badge.wait_for(state="visible", timeout=5000)
            assert await mic_badge.inner_text() == "Mic muted"
            assert (
                await bob.page.evaluate(
                    "(id) => window.parloir.remoteTiles.find(t => t.participantId === id).micMuted",
                    alice_id,
                )
                is True
            )

            await alice.page.get_by_role("button", name="Unmute mic").click()
            await mic_badge.wait_for(state="hidden", timeout=5000)

            left_at = time.monotonic()
            await alice.page.get_by_role("button", name="Leave").click()
            await alice.page.get_by_role("heading", name="You left").wait_for(timeout=5000)
            await alice_tile.wait_for(state="detached", timeout=5000)
            gone_after = time.monotonic() - left_at
            print(f"Alice's tile gone from Bob's page {gone_after:.2f}s after Leave")
            assert await bob.page.evaluate("window.parloir.remoteTiles.length") == 0
            # Alice's page really let go: peer connections closed, camera and mic stopped.
            released = await alice.page.evaluate(
                """() => ({
                  pcs: [window.parloir.pcs.publisher.connectionState,
                        window.parloir.pcs.subscriber.connectionState],
                  tracks: window.parloir.localStream.getTracks().map(t => t.readyState),
                })"""
            )
            assert released == {"pcs": ["closed", "closed"], "tracks": ["ended", "ended"]}

            for viewer in (alice, bob):
                await viewer.assert_no_errors()
            for viewer, filename in ((alice, "alice-left.png"), (bob, "bob-alone.png")):
                await viewer.page.screenshot(path=str(tmp_path / filename))
                assert (tmp_path / filename).read_bytes()[:8] == PNG_SIGNATURE
            print(f"done at {time.monotonic() - started:.1f}s")

    run_with_timeout(scenario)


def test_denied_camera_joins_as_viewer_and_still_sees_the_others(
    server: ServerProcess, fake_devices: FakeDevices
) -> None:
    from playwright.async_api import async_playwright

    async def scenario() -> None:
        async with (
            async_playwright() as pw,
            launched_chromium(pw, video_file=fake_devices.clip) as alice_browser,
            launched_chromium(pw, deny_camera_and_mic=True) as carol_browser,
        ):
            alice = await open_call(alice_browser, server, "alice", "Alice Astronaut")
            carol = await open_call(
                carol_browser, server, "carol", "Carol Blocked", publishes=False
            )
            alice_id = await alice.participant_id()
            carol_id = await carol.participant_id()
            await wait_for_remote_video(carol, alice_id)
            notice = carol.page.get_by_role("alert")
            await notice.get_by_text("access was denied").wait_for(timeout=5000)
            assert "You joined as a viewer" in await notice.inner_text()
            assert await carol.page.evaluate("window.parloir.publicationId") is None
            assert await carol.page.get_by_role("button", name="Mute mic").is_disabled()
            assert await carol.page.get_by_role("button", name="Stop camera").is_disabled()
            # Alice sees Carol in the room, by name, without video.
            carol_tile = alice.tile(carol_id)
            await carol_tile.wait_for(timeout=5000)
            assert await carol_tile.locator(".tile-name").inner_text() == "Carol Blocked"
            assert await carol_tile.locator("video").is_hidden()
            await alice.assert_no_errors()
            await carol.assert_no_errors()

    run_with_timeout(scenario)
