"""Real headless Chromium for the browser tests: launch flags, fake camera/mic files, checks.

Follows /work/shared/BROWSER.md: Debian's /usr/bin/chromium driven by Playwright over CDP,
loopback-only networking, Y4M/WAV files generated at test time and fed as the fake devices.
"""

from __future__ import annotations

import asyncio
import math
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--password-store=basic",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Without it Chromium gathers no 127.0.0.1 candidate and ICE with a loopback SFU fails.
    "--allow-loopback-in-peer-connection",
    # mDNS (*.local) candidates would make aioice try multicast resolution.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # The --disable-* flags do not stop every background DNS lookup; this does.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

THUMB_WIDTH, THUMB_HEIGHT = 16, 12
TEST_TIMEOUT_S = 90.0
"""The hard cap of one browser test (run_with_timeout)."""


def chromium_args(
    *,
    video_file: Path | None = None,
    audio_file: Path | None = None,
    deny_camera_and_mic: bool = False,
) -> list[str]:
    args = list(CHROMIUM_ARGS)
    if deny_camera_and_mic:
        # The permission prompt is refused instead of auto-accepted: getUserMedia rejects with
        # NotAllowedError, as when a user clicks "Block".
        args.remove("--use-fake-ui-for-media-stream")
        args.append("--deny-permission-prompts")
    if video_file is not None:
        args.append(f"--use-file-for-fake-video-capture={video_file.resolve()}")
    if audio_file is not None:
        args.append(f"--use-file-for-fake-audio-capture={audio_file.resolve()}")
    return args


def run_with_timeout(
    scenario: Callable[[], Awaitable[None]], timeout_s: float = TEST_TIMEOUT_S
) -> None:
    """Hard cap per test: a hung browser or ICE must fail the test, not hang the suite."""
    asyncio.run(asyncio.wait_for(scenario(), timeout_s))


@asynccontextmanager
async def launched_chromium(
    playwright: Any,
    *,
    video_file: Path | None = None,
    audio_file: Path | None = None,
    deny_camera_and_mic: bool = False,
) -> AsyncIterator[Any]:
    """One Chromium process with its own fresh profile and its own fake camera and mic."""
    browser = await playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=chromium_args(
            video_file=video_file,
            audio_file=audio_file,
            deny_camera_and_mic=deny_camera_and_mic,
        ),
        timeout=60_000,
    )
    try:
        yield browser
    finally:
        await browser.close()


# ---- fake devices ---------------------------------------------------------------------------


def _grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (BT.601 weights) of an RGB image in 0..255, the same formula THUMBNAIL_JS uses."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def thumbnail(grey: np.ndarray) -> np.ndarray:
    """Block-average a grey image whose size is a multiple of 16x12 down to 16x12."""
    height, width = grey.shape
    by, bx = height // THUMB_HEIGHT, width // THUMB_WIDTH
    cropped = grey[: by * THUMB_HEIGHT, : bx * THUMB_WIDTH]
    return cropped.reshape(THUMB_HEIGHT, by, THUMB_WIDTH, bx).mean(axis=(1, 3))


def astronaut_frames(width: int = 320, height: int = 240, frames: int = 45) -> list[np.ndarray]:
    """RGB uint8 frames of a crop window panning over skimage's astronaut photo.

    The photo is scaled to 1.25x the frame width; the window follows a Lissajous path with one
    full period per clip, so Chromium's looping of the file is seamless.
    """
    from skimage import data
    from skimage.transform import resize

    side = int(round(width * 1.25))
    photo = resize(data.astronaut(), (side, side), anti_aliasing=True, preserve_range=True)
    photo = photo.astype(np.uint8)
    slack_x, slack_y = side - width, min(side - height, width // 4)
    out = []
    for index in range(frames):
        phase = 2 * math.pi * index / frames
        x = int(round(slack_x / 2 * (1 + math.sin(phase))))
        y = int(round(slack_y / 2 * (1 + math.sin(2 * phase))))
        out.append(np.ascontiguousarray(photo[y : y + height, x : x + width]))
    return out


def _rgb_to_i420(rgb: np.ndarray) -> bytes:
    """BT.601 limited-range Y'CbCr 4:2:0 with 2x2-averaged chroma."""
    r, g, b = (rgb[..., i].astype(np.float64) / 255.0 for i in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b

    def down(plane: np.ndarray) -> np.ndarray:
        h, w = plane.shape
        return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = (y, down(cb), down(cr))
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 15) -> None:
    """Write RGB frames as a Y4M clip Chromium accepts as a fake camera (BROWSER.md §6)."""
    height, width = frames[0].shape[:2]
    header = f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode()
    assert len(header) <= 200 and width % 2 == 0 and height % 2 == 0
    with open(path, "wb") as out:
        out.write(header)
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(_rgb_to_i420(frame))


def write_astronaut_y4m(
    path: Path, width: int = 320, height: int = 240, fps: int = 15, frames: int = 45
) -> np.ndarray:
    """Write the astronaut clip; return the 16x12 grey thumbnails of its frames (N, 12, 16)."""
    rgb = astronaut_frames(width, height, frames)
    write_y4m(path, rgb, fps)
    return np.stack([thumbnail(_grey(frame.astype(np.float64))) for frame in rgb])


def write_tone_wav(
    path: Path, frequency: float = 440.0, seconds: float = 2.0, rate: int = 48_000
) -> None:
    """A mono 16-bit sine WAV (Chromium loops it as the fake microphone)."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.5 * 32767 * np.sin(2 * math.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


# ---- checks in the page ---------------------------------------------------------------------

# Draws a <video> at 160x120 and block-averages it to a 16x12 grey thumbnail (row-major).
THUMBNAIL_JS = """
(video) => {
  const w = 160, h = 120, tw = 16, th = 12;
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, w, h);
  const pixels = ctx.getImageData(0, 0, w, h).data;
  const out = new Array(tw * th).fill(0);
  const bx = w / tw, by = h / th;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      const grey = 0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2];
      out[Math.floor(y / by) * tw + Math.floor(x / bx)] += grey / (bx * by);
    }
  }
  return out;
}
"""

# Inbound RTP stats of the subscriber peer connection, by kind.
INBOUND_RTP_JS = """
async (kind) => {
  const pc = window.parloir.pcs.subscriber;
  if (!pc) return null;
  const stats = await pc.getStats();
  let found = null;
  stats.forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === kind) {
      if (!found || (report.packetsReceived || 0) > (found.packetsReceived || 0)) {
        found = {
          packetsReceived: report.packetsReceived || 0,
          framesDecoded: report.framesDecoded || 0,
          totalAudioEnergy: report.totalAudioEnergy || 0,
          bytesReceived: report.bytesReceived || 0,
        };
      }
    }
  });
  return found;
}
"""

# The selected ICE pair's two addresses for a peer connection ("subscriber" or "publisher").
SELECTED_PAIR_JS = """
async (which) => {
  const pc = window.parloir.pcs[which];
  if (!pc) return null;
  const stats = await pc.getStats();
  let pairId = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
  });
  if (!pairId) return null;
  const pair = stats.get(pairId);
  return [stats.get(pair.localCandidateId).address, stats.get(pair.remoteCandidateId).address];
}
"""


def remote_video_handle_js(participant_id: str) -> str:
    """JS expression: the <video> of `participant_id`'s tile, or null."""
    return (
        "(window.parloir.remoteTiles.find(t => t.participantId === "
        f"{participant_id!r})?.video ?? null)"
    )


async def video_thumbnail(page: Any, participant_id: str) -> np.ndarray:
    """16x12 grey thumbnail of what the page shows for `participant_id`'s camera."""
    handle = await page.evaluate_handle(remote_video_handle_js(participant_id))
    values = await page.evaluate(THUMBNAIL_JS, handle)
    return np.asarray(values, dtype=np.float64).reshape(THUMB_HEIGHT, THUMB_WIDTH)


def best_match_rmse(thumb: np.ndarray, reference: np.ndarray) -> float:
    """RMSE between a thumbnail and its best-matching reference frame thumbnail."""
    errors = np.sqrt(((reference - thumb[None, :, :]) ** 2).mean(axis=(1, 2)))
    return float(errors.min())


async def inbound_rtp(page: Any, kind: str) -> dict[str, float] | None:
    result: dict[str, float] | None = await page.evaluate(INBOUND_RTP_JS, kind)
    return result


async def wait_until(
    page: Any, expression: str, arg: Any = None, *, timeout_s: float = 20.0, what: str = ""
) -> Any:
    """Poll a JS function `(arg) => value` every 0.2 s until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await page.evaluate(expression, arg)
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or expression}: {last!r}")


# ---- a participant's call page ---------------------------------------------------------------


@dataclass
class CallParticipant:
    """One browser page in a call, and what it reported along the way."""

    name: str
    page: Any
    page_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def participant_id(self) -> str:
        return str(await self.page.evaluate("window.parloir.participantId"))

    def tile(self, participant_id: str) -> Any:
        """The camera tile this page shows for a participant (a Playwright locator)."""
        return self.page.locator(f'figure[data-participant-id="{participant_id}"]')

    async def assert_no_errors(self) -> None:
        """No page errors, no refusals from the server, no CSP violations."""
        errors = await self.page.evaluate("window.parloir.errors")
        server_errors = await self.page.evaluate("window.parloir.serverErrors")
        csp = [line for line in self.console if "Content Security Policy" in line]
        details = f"{self.name}: console tail {self.console[-15:]}"
        assert errors == [], f"{errors}; {details}"
        assert self.page_errors == [], f"{self.page_errors}; {details}"
        assert server_errors == [], f"{server_errors}; {details}"
        assert csp == [], f"{csp}; {details}"


async def wait_for_remote_video(viewer: CallParticipant, publisher_id: str) -> None:
    """The viewer's tile for `publisher_id` plays decoded frames."""
    await wait_until(
        viewer.page,
        f"""() => {{
          const video = {remote_video_handle_js(publisher_id)};
          return video && video.videoWidth > 0 && video.currentTime > 0;
        }}""",
        what=f"{viewer.name}'s page to show {publisher_id}'s camera",
    )


async def open_call_page(
    browser: Any,
    server: Any,
    room: str,
    identity: str,
    name: str,
    *,
    query: str = "",
    publishes: bool = True,
    viewport: tuple[int, int] = (1024, 576),
) -> CallParticipant:
    """Open /room/<room> with a fresh publisher token; wait until joined (and published)."""
    from urllib.parse import quote

    token = server.token(room, identity, "publisher", name=name)
    page = await browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    call = CallParticipant(name=name, page=page)
    page.on("pageerror", lambda error: call.page_errors.append(str(error)))
    page.on("console", lambda message: call.console.append(f"{message.type}: {message.text}"))
    await page.goto(f"{server.url}/room/{room}?token={quote(token)}{query}")
    # The link opens the waiting room first: join from there, as a user does.
    await join_from_waiting_room(page)
    ready = "window.parloir.publicationId" if publishes else "true"
    await wait_until(
        page,
        f"() => window.parloir && window.parloir.phase === 'joined' && {ready}",
        what=f"{name} to join" + (" and publish" if publishes else ""),
    )
    return call


async def join_from_waiting_room(page: Any, timeout_s: float = 20.0) -> None:
    """Press the waiting room's join button once it is enabled (devices opened)."""
    await page.locator("#waiting-room").wait_for(state="visible", timeout=timeout_s * 1000)
    await page.locator("#join-button:enabled").click(timeout=timeout_s * 1000)


# (currentTime, framesDecoded) of a <video> showing a remote track: framesDecoded is read from
# the inbound-rtp of the subscriber receiver whose track the element plays.
VIDEO_PROGRESS_JS = """
async (video) => {
  const track = video && video.srcObject ? video.srcObject.getVideoTracks()[0] : null;
  const pc = window.parloir.pcs.subscriber;
  const receiver = track && pc ? pc.getReceivers().find((r) => r.track === track) : null;
  if (!receiver) return null;
  let frames = 0, width = 0;
  (await receiver.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") {
      frames = r.framesDecoded || 0;
      width = r.frameWidth || 0;
    }
  });
  return { time: video.currentTime, framesDecoded: frames, frameWidth: width,
           videoWidth: video.videoWidth, videoHeight: video.videoHeight };
}
"""


async def video_progress_of(page: Any, video_expression: str) -> dict[str, float] | None:
    """VIDEO_PROGRESS_JS for the <video> that the JS expression `video_expression` names."""
    handle = await page.evaluate_handle(f"() => {video_expression}")
    result: dict[str, float] | None = await page.evaluate(VIDEO_PROGRESS_JS, handle)
    return result


async def thumbnail_of(page: Any, video_expression: str) -> np.ndarray:
    """16x12 grey thumbnail of the <video> that the JS expression `video_expression` names."""
    handle = await page.evaluate_handle(f"() => {video_expression}")
    values = await page.evaluate(THUMBNAIL_JS, handle)
    return np.asarray(values, dtype=np.float64).reshape(THUMB_HEIGHT, THUMB_WIDTH)


# ---- the platform API (sessions, join links, telemetry), as the education platform uses it ----


class PlatformApi:
    """The platform's REST API (`Authorization: Bearer <api key>`) against a running server."""

    def __init__(self, server: Any) -> None:
        self.server = server

    async def call(
        self, method: str, path: str, body: Any = None, expect: int | None = None
    ) -> Any:
        import aiohttp

        headers = {"Authorization": f"Bearer {self.server.api_key}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.server.url + path, json=body, headers=headers) as response,
        ):
            data = await response.json(content_type=None)
            if expect is not None:
                assert response.status == expect, (method, path, response.status, data)
            return data

    async def create_session(
        self,
        *,
        mentor: tuple[str, str] = ("mentor-1", "Maya Mentor"),
        student: tuple[str, str] = ("student-1", "Sam Student"),
        type: str = "mentoring",
        starts_in_s: float = -60.0,
        duration_s: float = 3600.0,
        auto_record: bool = False,
    ) -> dict[str, Any]:
        start = time.time() + starts_in_s
        body = {
            "type": type,
            "scheduled_start": start,
            "scheduled_end": start + duration_s,
            "mentor": {"identity": mentor[0], "name": mentor[1]},
            "student": {"identity": student[0], "name": student[1]},
            "auto_record": auto_record,
        }
        session: dict[str, Any] = await self.call("POST", "/api/sessions", body, expect=201)
        return session

    async def join_link(self, session_id: str, party: str) -> dict[str, Any]:
        """{token, url, room_id, identity, role} for the mentor or the student."""
        link: dict[str, Any] = await self.call(
            "POST", f"/api/sessions/{session_id}/tokens", {"party": party}, expect=201
        )
        return link

    async def telemetry(self, session_id: str) -> list[dict[str, Any]]:
        data = await self.call("GET", f"/api/sessions/{session_id}/telemetry", expect=200)
        items: list[dict[str, Any]] = data["items"]
        return items

    async def session(self, session_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.call("GET", f"/api/sessions/{session_id}", expect=200)
        return data

    async def bug_reports(self, session_id: str) -> list[dict[str, Any]]:
        data = await self.call("GET", f"/api/sessions/{session_id}/bug-reports", expect=200)
        items: list[dict[str, Any]] = data["items"]
        return items

    async def set_accommodation(self, identity: str, need: bool) -> None:
        await self.call(
            "PUT", f"/api/students/{identity}/profile", {"accommodation_need": need}, expect=200
        )


@dataclass
class WatchedPage:
    """A page with its console and page errors collected (for pages other than the call)."""

    page: Any
    page_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def assert_no_errors(self, allow_console: tuple[str, ...] = ()) -> None:
        """No page errors and no CSP violations in the console."""
        csp = [line for line in self.console if "Content Security Policy" in line]
        assert self.page_errors == [], f"{self.page_errors}; console {self.console[-15:]}"
        assert csp == [], csp


async def watched_page(
    browser_or_context: Any, viewport: tuple[int, int] = (1100, 720)
) -> WatchedPage:
    """A new page (in a new context when given a browser) with errors and console collected."""
    size = {"width": viewport[0], "height": viewport[1]}
    if hasattr(browser_or_context, "new_context"):
        page = await browser_or_context.new_page(viewport=size)
    else:
        page = await browser_or_context.new_page()
        await page.set_viewport_size(size)
    watched = WatchedPage(page)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on("console", lambda message: watched.console.append(f"{message.type}: {message.text}"))
    return watched


# Mean absolute Laplacian of a <video>'s current frame in its outer quarters (left and right:
# the astronaut clip's background, shuttle and flag) and in its middle half (the person).
SHARPNESS_JS = """
(video) => {
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) return null;
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, w, h);
  const d = ctx.getImageData(0, 0, w, h).data;
  const grey = (x, y) => {
    const i = (y * w + x) * 4;
    return 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
  };
  const sums = { background: 0, person: 0 }, counts = { background: 0, person: 0 };
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const region = x > w * 0.25 && x < w * 0.75 ? "person" : "background";
      sums[region] += Math.abs(4 * grey(x, y) - grey(x - 1, y) - grey(x + 1, y)
                               - grey(x, y - 1) - grey(x, y + 1));
      counts[region]++;
    }
  }
  return { background: sums.background / counts.background, person: sums.person / counts.person };
}
"""


async def background_detail(page: Any, video_expression: str, samples: int = 16) -> float:
    """How much detail the background keeps relative to the person: background blur lowers it,
    while a blurrier encoding (a low bitrate) lowers both regions alike. The median over 3.2 s,
    a whole period of the astronaut clip's pan (at some points of it the person reaches into the
    outer quarters)."""
    await wait_until(
        page,
        f"() => {{ const v = {video_expression}; return v && v.videoWidth > 0 && !v.paused; }}",
        what=f"{video_expression} to show frames",
    )
    ratios: list[float] = []
    for _ in range(samples * 2):
        handle = await page.evaluate_handle(f"() => {video_expression}")
        value = await page.evaluate(SHARPNESS_JS, handle)
        if value is not None:  # between two sources of the element: no frame for a moment
            ratios.append(float(value["background"]) / max(float(value["person"]), 1e-6))
        if len(ratios) == samples:
            break
        await asyncio.sleep(0.2)
    assert len(ratios) >= samples // 2, f"{video_expression} showed too few frames: {ratios}"
    return float(np.median(ratios))


def write_unimportable_mediapipe(directory: Path) -> Path:
    """A `mediapipe` package whose model files exist but whose import fails: put it first on the
    server's PYTHONPATH and blur is announced available, then fails when asked (unavailable)."""
    package = directory / "mediapipe"
    models = package / "modules" / "selfie_segmentation"
    models.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(
        'raise ImportError("mediapipe is disabled for this test")\n'
    )
    for name in ("selfie_segmentation.tflite", "selfie_segmentation_landscape.tflite"):
        (models / name).write_bytes(b"")
    return directory
