"""Two real Chromium participants in a Vonage session, joined with tokens the opentok SDK made,
recorded through the SDK's archive API: the MP4 decodes and shows both of them."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from urllib.parse import quote

import av
import numpy as np
import opentok
import pytest
import requests

from tests.support.browser import (
    CHROMIUM,
    join_from_waiting_room,
    launched_chromium,
    wait_until,
    write_astronaut_y4m,
    write_tone_wav,
)
from tests.support.server_process import running_server
from tests.support.vonage_fixtures import API_KEY, API_SECRET

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium"),
]

RECORD_S = 10.0


def green_fraction(rgb: np.ndarray) -> float:
    """Chromium's default fake camera is a bright green test pattern."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return float(np.mean((g > 120) & (g > r + 40) & (g > b + 40)))


def orange_fraction(rgb: np.ndarray) -> float:
    """The astronaut's suit is orange."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return float(np.mean((r > 150) & (g > 50) & (g < 150) & (b < 110) & (r > g + 50)))


async def open_page(browser, url: str, session_id: str, token: str):  # type: ignore[no-untyped-def]
    page = await browser.new_page(viewport={"width": 1024, "height": 576})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{url}/room/{session_id}?token={quote(token)}&audio_processing=off")
    await join_from_waiting_room(page)
    await wait_until(
        page,
        "() => window.parloir && window.parloir.phase === 'joined' && window.parloir.publicationId",
        what="join and publish",
    )
    return page, errors


async def run(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    y4m, wav = tmp_path / "astronaut.y4m", tmp_path / "tone.wav"
    write_astronaut_y4m(y4m)
    write_tone_wav(wav)
    env = {"PARLOIR_VONAGE_API_KEY": API_KEY, "PARLOIR_VONAGE_API_SECRET": API_SECRET}
    with running_server(tmp_path, **env) as server:
        ot = opentok.Client(API_KEY, API_SECRET, api_url=server.url)
        session = await asyncio.to_thread(ot.create_session, media_mode=opentok.MediaModes.routed)
        sid = session.session_id
        alice_token = await asyncio.to_thread(ot.generate_token, sid, data="name=Alice")
        bob_token = await asyncio.to_thread(ot.generate_token, sid, data="name=Bob")
        async with (
            async_playwright() as pw,
            launched_chromium(pw, video_file=y4m, audio_file=wav) as alice_browser,
            launched_chromium(pw) as bob_browser,
        ):
            alice, alice_errors = await open_page(alice_browser, server.url, sid, alice_token)
            bob, bob_errors = await open_page(bob_browser, server.url, sid, bob_token)
            for page in (alice, bob):
                await wait_until(
                    page,
                    "() => window.parloir.remoteTiles.length >= 1",
                    what="the other participant's tile",
                )
            # A signal the platform sends through the SDK shows in both pages' chat.
            await asyncio.to_thread(ot.send_signal, sid, {"type": "chat", "data": "jury is ready"})
            for page in (alice, bob):
                await page.locator("text=jury is ready").first.wait_for(
                    state="attached", timeout=10_000
                )
            archive = await asyncio.to_thread(
                ot.start_archive, sid, name="defence", resolution="640x480"
            )
            started = time.monotonic()
            await asyncio.sleep(RECORD_S)
            stopped = await asyncio.to_thread(ot.stop_archive, archive.id)
            wall = time.monotonic() - started
            await alice.screenshot(path=str(tmp_path / "alice.png"))
            await bob.screenshot(path=str(tmp_path / "bob.png"))
            assert alice_errors == [] and bob_errors == []
        assert stopped.status == "available"
        fetched = await asyncio.to_thread(ot.get_archive, archive.id)
        data = await asyncio.to_thread(lambda: requests.get(fetched.url, timeout=10).content)
    (tmp_path / "defence.mp4").write_bytes(data)
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        duration = (container.duration or 0) / 1e6
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert abs(duration - wall) < 1.5, (duration, wall)
    assert len(frames) >= 20 * duration
    late = frames[len(frames) * 2 // 3]  # both were on camera by then
    assert green_fraction(late) > 0.03, "Bob's test pattern is not in the recording"
    assert orange_fraction(late) > 0.005, "Alice (the astronaut) is not in the recording"


def test_two_browsers_recorded_through_the_vonage_archive_api(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(run(tmp_path), 120))
