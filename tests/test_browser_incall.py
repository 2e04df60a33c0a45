"""In-call features in real headless Chromium: chat, screen sharing, settings (devices, stats).

Two participants, each its own Chromium process with its own fake devices, through the web
client and a real `parloir serve`. Where content matters one side's camera is the astronaut clip
(generated here) and the other's is Chromium's default pattern, so a page can be checked for
showing the *other* participant. Recipe: /work/shared/BROWSER.md (§7 for screen capture).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.browser import (
    CHROMIUM,
    CallParticipant,
    best_match_rmse,
    launched_chromium,
    open_call_page,
    remote_video_handle_js,
    run_with_timeout,
    thumbnail_of,
    video_progress_of,
    wait_for_remote_video,
    wait_until,
    write_astronaut_y4m,
)
from tests.support.server_process import ServerProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium"),
]

MATCH_RMSE = 30.0
"""BROWSER.md §5: a remote astronaut scores 5-11 against the clip, Chromium's pattern ~53."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
STAGE_VIDEO = "window.parloir.stage.video"


@pytest.fixture
def astronaut(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """The astronaut clip (320x240 at 15 fps) and the 16x12 thumbnails of its frames."""
    clip = tmp_path / "astronaut.y4m"
    return clip, write_astronaut_y4m(clip, 320, 240, fps=15, frames=45)


async def screenshot(call: CallParticipant, path: Path) -> None:
    image = await call.page.screenshot(path=str(path))
    assert image[:8] == PNG_SIGNATURE, path


async def assert_keeps_playing(
    viewer: CallParticipant, video_expression: str, seconds: float = 2.0, min_fps: float = 3.0
) -> dict[str, float]:
    """The <video> advances and its inbound-rtp decodes frames over `seconds`."""
    before = await video_progress_of(viewer.page, video_expression)
    await asyncio.sleep(seconds)
    after = await video_progress_of(viewer.page, video_expression)
    assert before and after, (viewer.name, video_expression, before, after)
    assert after["time"] - before["time"] > 0.3 * seconds, (viewer.name, before, after)
    assert after["framesDecoded"] - before["framesDecoded"] > min_fps * seconds, (
        viewer.name,
        before,
        after,
    )
    return after


async def wait_for_frames(
    viewer: CallParticipant, video_expression: str, frames: int, timeout_s: float = 15
) -> dict[str, float]:
    """The <video> decodes `frames` more frames and advances (a screen runs at 1-5 fps)."""
    first = await video_progress_of(viewer.page, video_expression)
    assert first, (viewer.name, video_expression)
    deadline = time.monotonic() + timeout_s
    latest = first
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        latest = await video_progress_of(viewer.page, video_expression) or latest
        if latest["framesDecoded"] - first["framesDecoded"] >= frames:
            assert latest["time"] > first["time"], (viewer.name, first, latest)
            return latest
    raise AssertionError(
        f"{viewer.name}: {frames} frames not decoded in {timeout_s}s: {first} {latest}"
    )


async def rmse_samples(
    viewer: CallParticipant, video_expression: str, reference: np.ndarray
) -> list[float]:
    scores = []
    for _ in range(3):
        thumb = await thumbnail_of(viewer.page, video_expression)
        scores.append(best_match_rmse(thumb, reference))
        await asyncio.sleep(0.2)
    return scores


async def chat_texts(call: CallParticipant) -> list[dict[str, str]]:
    """The chat list as a user reads it: sender, time and text of each message."""
    result: list[dict[str, str]] = await call.page.evaluate(
        """() => [...document.querySelectorAll('#chat-messages .chat-message')].map(li => ({
          sender: li.querySelector('.chat-sender').textContent,
          time: li.querySelector('.chat-time').textContent,
          text: li.querySelector('.chat-text').textContent,
        }))"""
    )
    return result


async def unread_badge(call: CallParticipant) -> str | None:
    """The unread count on the Chat button as shown, or None when the badge is hidden."""
    badge = call.page.locator("#chat-unread")
    if not await badge.is_visible():
        return None
    return (await badge.locator(".unread-count").inner_text()).strip()


async def wait_for_chat_text(call: CallParticipant, text: str, timeout_s: float = 10) -> None:
    await wait_until(
        call.page,
        """(text) => [...document.querySelectorAll('#chat-messages .chat-text')]
                      .some(p => p.textContent === text)""",
        text,
        timeout_s=timeout_s,
        what=f"{call.name}'s chat to show {text!r}",
    )


async def send_chat(call: CallParticipant, text: str) -> None:
    """Type into the open chat panel and press Enter, as a user does."""
    box = call.page.get_by_label("Message to everyone")
    await box.fill(text)
    await box.press("Enter")


def test_chat_both_ways_with_history_unread_counts_and_markup_shown_as_text(
    server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    room = "incall-chat"

    async def scenario() -> None:
        started = time.monotonic()
        async with (
            async_playwright() as pw,
            launched_chromium(pw) as alice_browser,
            launched_chromium(pw) as bob_browser,
        ):
            alice = await open_call_page(alice_browser, server, room, "alice", "Alice Mentor")
            await wait_until(alice.page, "() => window.parloir.chat.connected", what="chat")
            await alice.page.get_by_role("button", name="Chat").click()
            focused = await alice.page.evaluate("document.activeElement.id")
            assert focused == "chat-input", focused
            await send_chat(alice, "Welcome! Slides: https://example.org/deck?a=1&b=2")
            await wait_for_chat_text(alice, "Welcome! Slides: https://example.org/deck?a=1&b=2")
            assert await alice.page.get_by_label("Message to everyone").input_value() == ""

            # Bob joins later: the history brings Alice's message, counted as unread.
            bob = await open_call_page(bob_browser, server, room, "bob", "Bob Student")
            await wait_until(
                bob.page, "() => window.parloir.chat.unread === 1", what="history on Bob's page"
            )
            assert await unread_badge(bob) == "1"
            assert not await bob.page.locator("#chat-panel").is_visible()

            await send_chat(alice, "Can you hear me?")
            await wait_until(bob.page, "() => window.parloir.chat.unread === 2", what="unread 2")
            assert await unread_badge(bob) == "2"
            chat_button = bob.page.get_by_role("button", name=re.compile(r"^Chat"))
            assert await chat_button.get_attribute("aria-expanded") == "false"

            # Opening the panel shows both, with Alice's name and a time, and resets the count.
            await chat_button.click()
            await bob.page.locator("#chat-panel").wait_for(state="visible", timeout=5000)
            assert await unread_badge(bob) is None
            assert await chat_button.get_attribute("aria-expanded") == "true"
            shown = await chat_texts(bob)
            assert [(m["sender"], m["text"]) for m in shown] == [
                ("Alice Mentor", "Welcome! Slides: https://example.org/deck?a=1&b=2"),
                ("Alice Mentor", "Can you hear me?"),
            ], shown
            assert all(re.fullmatch(r"\d{1,2}:\d{2}( ?[AP]M)?", m["time"]) for m in shown), shown
            # The link is text, not a link.
            assert await bob.page.locator("#chat-messages a").count() == 0

            # Bob replies on two lines (Shift+Enter), Enter sends; Alice's panel is open, so
            # nothing is unread there.
            box = bob.page.get_by_label("Message to everyone")
            await box.type("Yes, loud and clear")
            await box.press("Shift+Enter")
            await box.type("ready when you are")
            await box.press("Enter")
            reply = "Yes, loud and clear\nready when you are"
            await wait_for_chat_text(alice, reply)
            on_alices_page = await chat_texts(alice)
            assert on_alices_page[-1]["sender"] == "Bob Student", on_alices_page
            assert [m["sender"] for m in on_alices_page[:2]] == ["You", "You"]
            assert await unread_badge(alice) is None
            # Shown on two lines, as typed.
            rendered = await alice.page.locator("#chat-messages .chat-text").last.inner_text()
            assert rendered == reply, rendered

            # Markup is shown as the characters typed: nothing runs, no element is created.
            await alice.page.get_by_role("button", name="Close chat").click()
            await send_chat(bob, XSS)
            await wait_until(alice.page, "() => window.parloir.chat.unread === 1", what="unread")
            assert await unread_badge(alice) == "1"
            await alice.page.get_by_role("button", name=re.compile(r"^Chat")).click()
            assert await unread_badge(alice) is None
            for call in (alice, bob):
                await wait_for_chat_text(call, XSS)
                last = await call.page.locator("#chat-messages .chat-text").last.inner_text()
                assert last == XSS
                injected = await call.page.evaluate(
                    """() => ({
                      pwned: typeof window.__pwned,
                      elements: document.querySelectorAll(
                        '#chat-messages img, #chat-messages script').length,
                    })"""
                )
                assert injected == {"pwned": "undefined", "elements": 0}, (call.name, injected)
            await screenshot(alice, tmp_path / "chat-alice.png")
            await screenshot(bob, tmp_path / "chat-bob.png")

            # Refusals reach the sender, in the panel: too long (the text comes back to the
            # input), then too fast.
            too_long = "x" * (8 * 1024 + 1)
            await send_chat(alice, too_long)
            alert = alice.page.locator("#chat-error")
            await alert.wait_for(state="visible", timeout=5000)
            assert "too long" in await alert.inner_text()
            assert await alice.page.get_by_label("Message to everyone").input_value() == too_long
            await alice.page.get_by_label("Message to everyone").fill("")
            await alice.page.evaluate(
                """() => {
                  const input = document.getElementById('chat-input');
                  const form = document.getElementById('chat-form');
                  for (let n = 0; n < 30; n++) { input.value = `burst ${n}`; form.requestSubmit(); }
                }"""
            )
            await wait_until(
                alice.page,
                "() => window.parloir.chat.errors.some(e => e.code === 'rate-limited')",
                what="a rate-limited refusal",
            )
            assert "too fast" in await alert.inner_text()
            codes = {e["code"] for e in await alice.page.evaluate("window.parloir.chat.errors")}
            assert codes == {"message-too-large", "rate-limited"}, codes
            assert not await bob.page.evaluate("window.parloir.chat.errors")

            await screenshot(alice, tmp_path / "chat-alice-refused.png")
            for call in (alice, bob):
                await call.assert_no_errors()
            print(f"chat test done at {time.monotonic() - started:.1f}s; screenshots in {tmp_path}")

    run_with_timeout(scenario)


async def screen_on_stage(viewer: CallParticipant, presenter_id: str) -> dict[str, Any] | None:
    """What the viewer's stage shows, if it is the presenter's screen publication."""
    result: dict[str, Any] | None = await viewer.page.evaluate(
        """(presenter) => {
          const stage = window.parloir.stage;
          if (!stage.showing || stage.participantId !== presenter) return null;
          const publication = window.parloir.publications.find(p => p.id === stage.publicationId);
          return { publicationId: stage.publicationId, videoType: publication?.video_type,
                   videoWidth: stage.video.videoWidth, videoHeight: stage.video.videoHeight,
                   time: stage.video.currentTime };
        }""",
        presenter_id,
    )
    return result


async def box_of(call: CallParticipant, selector: str) -> dict[str, float]:
    box = await call.page.locator(selector).bounding_box()
    assert box is not None, (call.name, selector)
    return dict(box)


def area(box: dict[str, float]) -> float:
    return box["width"] * box["height"]


async def assert_stage_layout(viewer: CallParticipant, *, presenting: bool = False) -> None:
    """The screen is on a large stage, the camera tiles are a filmstrip beside it (for the
    presenter the others' cameras stay big, still smaller than the stage)."""
    stage = await box_of(viewer, "#stage")
    viewport = viewer.page.viewport_size
    assert stage["width"] > 0.5 * viewport["width"], stage
    controls = await box_of(viewer, "#controls")
    assert controls["height"] < 90, ("controls on one row", controls)
    for tile in await viewer.page.locator("#tiles figure.tile").all():
        box = await tile.bounding_box()
        assert box is not None and await tile.is_visible()
        local = "tile-local" in (await tile.get_attribute("class") or "")
        limit = area(stage) / (4 if not presenting or local else 2)
        assert area(box) < limit, (viewer.name, box, stage)
        assert box["x"] >= stage["x"] + stage["width"] - 1, ("filmstrip beside the stage", box)
        assert box["y"] >= stage["y"] - 1 and box["y"] + box["height"] <= controls["y"], (
            "tile inside the call area",
            box,
        )


async def stop_screen_share_and_check(
    alice: CallParticipant, bob: CallParticipant, publication_id: str, how: str
) -> None:
    """After `how` ended the share: Bob's stage is gone with reason mediaStopped, grid is back."""
    await wait_until(
        bob.page,
        "() => !window.parloir.stage.showing",
        timeout_s=10,
        what=f"Bob's stage to close after {how}",
    )
    unpublished = await bob.page.evaluate("window.parloir.unpublished")
    assert {
        "publication_id": publication_id,
        "participant_id": await alice.participant_id(),
        "reason": "mediaStopped",
        "video_type": "screen",
    } in unpublished, unpublished
    assert await bob.page.locator("#stage").is_hidden()
    assert not await bob.page.evaluate(
        "document.getElementById('call').classList.contains('has-stage')"
    )
    assert await alice.page.evaluate("window.parloir.screenShare.active") is False
    assert await alice.page.get_by_role("button", name="Share screen").is_visible()


def test_screen_share_goes_on_the_stage_and_the_presenter_still_sees_the_other(
    server: ServerProcess, astronaut: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    clip, reference = astronaut
    room = "incall-screen"

    async def scenario() -> None:
        started = time.monotonic()
        async with (
            async_playwright() as pw,
            launched_chromium(pw) as alice_browser,
            launched_chromium(pw, video_file=clip) as bob_browser,
        ):
            alice = await open_call_page(alice_browser, server, room, "alice", "Alice Mentor")
            bob = await open_call_page(bob_browser, server, room, "bob", "Bob Student")
            alice_id, bob_id = await alice.participant_id(), await bob.participant_id()
            await wait_for_remote_video(bob, alice_id)
            await wait_for_remote_video(alice, bob_id)
            camera_width = await bob.page.evaluate(f"{remote_video_handle_js(alice_id)}.videoWidth")

            # Alice shares her screen (Chromium's fake 1280x720 display capture).
            await alice.page.get_by_role("button", name="Share screen").click()
            await alice.page.get_by_role("button", name="Stop sharing").wait_for(timeout=15000)
            share = await alice.page.evaluate(
                """() => { const t = window.parloir.screenShare.track;
                           return { hint: t.contentHint, state: t.readyState,
                                    settings: t.getSettings() }; }"""
            )
            assert share["hint"] == "detail" and share["state"] == "live", share
            on_stage = await wait_until(
                bob.page,
                f"""() => {{
                  const stage = window.parloir.stage;
                  return stage.showing && stage.participantId === {alice_id!r}
                    && stage.video.videoWidth > 0 && stage.video.currentTime > 0;
                }}""",
                timeout_s=20,
                what="Alice's screen on Bob's stage",
            )
            assert on_stage
            print(f"screen on Bob's stage at {time.monotonic() - started:.1f}s")
            seen = await screen_on_stage(bob, alice_id)
            assert seen and seen["videoType"] == "screen", seen
            screen_id = seen["publicationId"]
            assert screen_id == await alice.page.evaluate(
                "window.parloir.screenShare.publicationId"
            )
            # Two publications of Alice's on Bob's page: her camera and her screen.
            kinds = sorted(
                p["video_type"]
                for p in await bob.page.evaluate("window.parloir.publications")
                if p["participant_id"] == alice_id
            )
            assert kinds == ["camera", "screen"], kinds

            # The screen decodes at full size on Bob's page, and his camera tile of Alice too.
            progress = await wait_for_frames(bob, STAGE_VIDEO, 4)
            assert progress["videoWidth"] >= 1280 and progress["videoWidth"] > camera_width, (
                progress,
                camera_width,
            )
            await assert_keeps_playing(bob, remote_video_handle_js(alice_id), seconds=1.0)
            await screenshot(bob, tmp_path / "screen-bob-viewer.png")
            await assert_stage_layout(bob)

            # Alice presents her own screen preview and still sees Bob: his tile is visible,
            # playing, and shows his camera (the astronaut), next to her screen.
            assert await alice.page.evaluate("window.parloir.stage.local") is True
            bob_tile = alice.tile(bob_id)
            assert await bob_tile.is_visible()
            tile_box = await bob_tile.bounding_box()
            assert tile_box and tile_box["width"] >= 200, tile_box
            await screenshot(alice, tmp_path / "screen-alice-presenter.png")
            await assert_stage_layout(alice, presenting=True)
            await assert_keeps_playing(alice, remote_video_handle_js(bob_id), seconds=1.0)
            scores = await rmse_samples(alice, remote_video_handle_js(bob_id), reference)
            assert float(np.median(scores)) < MATCH_RMSE, scores
            # The pop-out (browser picture-in-picture) is offered while presenting.
            assert await alice.page.evaluate("document.pictureInPictureEnabled")
            await alice.page.get_by_role("button", name="Pop out video").click()
            await alice.page.get_by_role("button", name="Pop in video").wait_for(timeout=5000)
            floating = await alice.page.evaluate(
                f"document.pictureInPictureElement === {remote_video_handle_js(bob_id)}"
            )
            assert floating, "Bob's camera is the picture-in-picture video"
            await alice.page.get_by_role("button", name="Pop in video").click()
            await alice.page.get_by_role("button", name="Pop out video").wait_for(timeout=5000)

            # Stop sharing: Bob's stage goes away with reason mediaStopped; grid again.
            await alice.page.get_by_role("button", name="Stop sharing").click()
            assert await alice.page.evaluate("() => window.parloir.stage.showing") is False
            await stop_screen_share_and_check(alice, bob, screen_id, "Stop sharing")
            await wait_for_remote_video(bob, alice_id)
            await screenshot(bob, tmp_path / "screen-bob-after.png")

            # Sharing again works (fresh transceiver); the browser's own stop (the capture
            # track ends) unpublishes it the same way.
            await alice.page.get_by_role("button", name="Share screen").click()
            await alice.page.get_by_role("button", name="Stop sharing").wait_for(timeout=15000)
            await wait_until(
                bob.page,
                f"""() => window.parloir.stage.showing
                      && window.parloir.stage.participantId === {alice_id!r}
                      && window.parloir.stage.publicationId !== {screen_id!r}
                      && window.parloir.stage.video.currentTime > 0""",
                timeout_s=20,
                what="Alice's second screen share on Bob's stage",
            )
            second_id = await alice.page.evaluate("window.parloir.screenShare.publicationId")
            await wait_for_frames(bob, STAGE_VIDEO, 3)
            await alice.page.evaluate(
                "() => window.parloir.screenShare.track.dispatchEvent(new Event('ended'))"
            )
            await stop_screen_share_and_check(alice, bob, second_id, "the capture ending")
            # Cameras still flow both ways after two shares.
            await assert_keeps_playing(bob, remote_video_handle_js(alice_id), seconds=1.0)
            await assert_keeps_playing(alice, remote_video_handle_js(bob_id), seconds=1.0)

            for call in (alice, bob):
                await call.assert_no_errors()
            print(f"screen test done at {time.monotonic() - started:.1f}s; in {tmp_path}")

    run_with_timeout(scenario)


NUMBER_WITH_UNIT = {
    "stat-outgoing": r"(\d+ kbit/s|\d+\.\d\d Mbit/s)",
    "stat-incoming": r"(\d+ kbit/s|\d+\.\d\d Mbit/s)",
    "stat-receive-loss": r"\d+\.\d %",
    "stat-send-loss": r"\d+\.\d %",
    "stat-rtt": r"\d+ ms",
}


def test_switching_camera_in_settings_keeps_video_flowing_and_settings_show_live_stats(
    server: ServerProcess, astronaut: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    clip, reference = astronaut
    room = "incall-settings"

    async def scenario() -> None:
        started = time.monotonic()
        async with (
            async_playwright() as pw,
            launched_chromium(pw, video_file=clip) as alice_browser,
            launched_chromium(pw) as bob_browser,
        ):
            alice = await open_call_page(alice_browser, server, room, "alice", "Alice Astronaut")
            bob = await open_call_page(bob_browser, server, room, "bob", "Bob Pattern")
            alice_id, bob_id = await alice.participant_id(), await bob.participant_id()
            await wait_for_remote_video(bob, alice_id)
            await wait_for_remote_video(alice, bob_id)
            alice_on_bobs_page = remote_video_handle_js(alice_id)

            # The settings dialog opens from the keyboard (Tab to the gear button, Enter).
            settings_button = alice.page.get_by_role("button", name="Settings")
            await settings_button.focus()
            await alice.page.keyboard.press("Enter")
            dialog = alice.page.get_by_role("dialog", name="Settings")
            await dialog.wait_for(timeout=5000)
            camera = dialog.get_by_label("Camera")
            microphone = dialog.get_by_label("Microphone")
            speaker = dialog.get_by_label("Speaker")
            await wait_until(
                alice.page,
                "() => document.getElementById('camera-select').options.length > 0"
                " && document.getElementById('camera-select').value !== ''",
                what="the camera picker to list the camera in use",
            )
            cameras = await camera.locator("option").all_inner_texts()
            print(f"cameras offered: {cameras}")
            assert cameras and all(cameras), cameras  # labelled (permission was granted)
            # Background blur is offered here too (its behaviour: test_browser_waiting_room).
            assert "blur" in (await dialog.inner_text()).lower()

            # Switch the camera (Chromium's file-backed fake exposes one camera, so this opens
            # it afresh): the publisher sends the new track without renegotiating.
            before = await alice.page.evaluate(
                """() => ({ track: window.parloir.localStream.getVideoTracks()[0].id,
                            pubs: window.parloir.publicationId,
                            sdp: window.parloir.pcs.publisher.localDescription.sdp })"""
            )
            playing_before = await video_progress_of(bob.page, alice_on_bobs_page)
            assert playing_before, "Bob's page plays Alice's camera"
            await camera.select_option(await camera.input_value())
            await wait_until(
                alice.page, "() => window.parloir.deviceSwitches === 1", what="camera switch"
            )
            after = await alice.page.evaluate(
                """() => {
                  const stream = window.parloir.localStream;
                  const track = stream.getVideoTracks()[0];
                  const sender = window.parloir.pcs.publisher.getSenders()
                    .find(s => s.track && s.track.kind === 'video');
                  const preview = document.querySelector('.tile-local video').srcObject;
                  return { track: track.id, live: track.readyState,
                           videoTracks: stream.getVideoTracks().length,
                           senderTrack: sender.track.id,
                           previewTrack: preview.getVideoTracks()[0].id,
                           pubs: window.parloir.publicationId,
                           sdp: window.parloir.pcs.publisher.localDescription.sdp };
                }"""
            )
            assert after["track"] != before["track"], (before, after)
            assert after["live"] == "live" and after["videoTracks"] == 1, after
            assert after["senderTrack"] == after["track"] == after["previewTrack"], after
            assert after["pubs"] == before["pubs"], "same publication: no rejoin"
            assert after["sdp"] == before["sdp"], "replaceTrack: no renegotiation"
            # Bob's video of Alice keeps flowing and still shows the astronaut.
            await wait_until(
                bob.page,
                f"() => {alice_on_bobs_page}.currentTime > {playing_before['time'] + 0.5}",
                what="Bob's video of Alice to keep playing after the switch",
            )
            progress = await assert_keeps_playing(bob, alice_on_bobs_page, seconds=2.0)
            assert progress["framesDecoded"] > playing_before["framesDecoded"] + 6
            scores = await rmse_samples(bob, alice_on_bobs_page, reference)
            assert float(np.median(scores)) < MATCH_RMSE, scores
            print(f"camera switched at {time.monotonic() - started:.1f}s; RMSE {scores}")

            # The microphone too: another fake input, sent in place of the first.
            inputs = await microphone.locator("option").evaluate_all(
                "options => options.map(o => o.value)"
            )
            current_mic = await microphone.input_value()
            other_mic = next(value for value in inputs if value != current_mic)
            audio_before = await bob.page.evaluate(
                """async () => { let n = 0;
                  (await window.parloir.pcs.subscriber.getStats()).forEach(r => {
                    if (r.type === 'inbound-rtp' && r.kind === 'audio') n += r.packetsReceived; });
                  return n; }"""
            )
            await microphone.select_option(other_mic)
            await wait_until(
                alice.page, "() => window.parloir.deviceSwitches === 2", what="microphone switch"
            )
            assert await microphone.input_value() == other_mic
            mic_track = await alice.page.evaluate(
                """() => { const t = window.parloir.localStream.getAudioTracks()[0];
                           const s = window.parloir.pcs.publisher.getSenders()
                             .find(x => x.track && x.track.kind === 'audio');
                           return { device: t.getSettings().deviceId, sent: s.track === t }; }"""
            )
            assert mic_track == {"device": other_mic, "sent": True}, mic_track
            await wait_until(
                bob.page,
                f"""async () => {{ let n = 0;
                  (await window.parloir.pcs.subscriber.getStats()).forEach(r => {{
                    if (r.type === 'inbound-rtp' && r.kind === 'audio') n += r.packetsReceived; }});
                  return n > {audio_before} + 50; }}""",
                what="Alice's audio to keep arriving after the mic switch",
            )

            # The speaker picker routes the others' sound (setSinkId is supported here).
            outputs = await speaker.locator("option").evaluate_all(
                "options => options.map(o => o.value)"
            )
            assert len(outputs) >= 2 and await speaker.is_enabled(), outputs
            await speaker.select_option(outputs[1])
            await wait_until(
                alice.page,
                """(id) => window.parloir.speaker === id
                      && window.parloir.remoteTiles.every(t => t.audio.sinkId === id)""",
                outputs[1],
                what="the others' sound to play on the chosen speaker",
            )
            assert await dialog.locator("#device-error").is_hidden()

            # Connection: live numbers, refreshed every second.
            for _ in range(2):
                await wait_until(
                    alice.page,
                    """(patterns) => Object.entries(patterns).every(([id, pattern]) =>
                        new RegExp(`^${pattern}$`).test(
                          document.getElementById(id).textContent))""",
                    NUMBER_WITH_UNIT,
                    timeout_s=10,
                    what="every connection number to show",
                )
                stats = await alice.page.evaluate("window.parloir.connectionStats")
                print(f"connection stats: {stats}")
                assert stats["outgoingKbps"] > 10 and stats["incomingKbps"] > 10, stats
                assert 0 <= stats["receiveLossPercent"] <= 100, stats
                assert 0 <= stats["rttMs"] < 1000, stats
                first_at = stats["at"]
                await wait_until(
                    alice.page,
                    f"() => window.parloir.connectionStats.at > {first_at}",
                    timeout_s=3,
                    what="the stats to refresh",
                )
            shown = {key: await dialog.locator(f"#{key}").inner_text() for key in NUMBER_WITH_UNIT}
            print(f"shown in the dialog: {shown}")
            await screenshot(alice, tmp_path / "settings-alice.png")

            # Escape closes it and gives the focus back to the gear button.
            await alice.page.keyboard.press("Escape")
            await dialog.wait_for(state="hidden", timeout=5000)
            assert await alice.page.evaluate("document.activeElement.id") == "settings-button"

            for call in (alice, bob):
                await call.assert_no_errors()
            print(f"settings test done at {time.monotonic() - started:.1f}s; in {tmp_path}")

    run_with_timeout(scenario)
