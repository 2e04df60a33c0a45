"""`parloir bench blur`: what server-side background blur costs, against passthrough.

Each stream is a `BlurredSource` fed by a `ClipFeed`: a camera-like clip (skimage's astronaut,
panning slowly, with sensor noise, painted frame index on the suit) encoded beforehand with
PyAV the way a browser would send it (H.264 constrained baseline or VP8, ~1.5 Mbit/s at
640x480), replayed at 30 fps on the event loop. No network is involved: the figures are the
blur pipeline's own cost (decode, segmentation, compositing, encode, thread hops) plus the
event loop's pacing, which is what blur adds to an SFU process; the forwarding benchmark covers
the network side. The same scenarios run with blur off (the source forwards the encoded frames
untouched, as passthrough does) for comparison.

* CPU: user+system of this whole process (all threads, psutil) over the measuring window,
  after a warm-up; per stream = total / streams.
* Added latency: from the moment the feed hands an encoded frame to the source to the moment
  the frame (blurred and encoded, or forwarded) reaches the consumer, on the event loop.
* fps: frames delivered per second per stream (the slowest stream is shown).
* Profile: the worker's wall time per blurred frame in each stage.
* Content: after the run, the last delivered frames of stream 0 are decoded and the
  background's high-frequency energy compared with the source's (blurred < 0.2, raw ~1).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import av
import cv2
import numpy as np
import psutil

from media.blur import BlurredSource, BlurStrength
from media.forwarding import ForwardedTrack, FrameConsumer, is_keyframe
from media.synthetic import paint_index

FPS = 30
VIDEO_CLOCK = 90000
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
CLIP_FRAMES = 90
"""A 3 s loop; the publisher's encoder makes a keyframe at its start only (browsers send
keyframes on request), so a keyframe arrives every 3 s when the clip loops."""
PUBLISHER_BITRATE = 1_500_000
"""For 640x480; scaled by pixel count (a browser camera's order of magnitude)."""
TARGET_CPU_PER_STREAM = 0.5
TARGET_LATENCY_MS = 40.0
BLURRED_ENERGY_RATIO = 0.2
"""Background high-frequency energy of a blurred frame relative to the source, at most."""
INDEX_ORIGIN = (0.64, 0.10)
"""Where the frame index is painted, as fractions of (height, width): on the suit, which
the person mask keeps sharp, so subscribers can read it on blurred frames too."""


@dataclass(frozen=True)
class Scenario:
    width: int
    height: int
    streams: int

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height} x{self.streams}"


DEFAULT_SCENARIOS = (Scenario(640, 480, 1), Scenario(640, 480, 4), Scenario(1280, 720, 1))


# --- camera-like content ----------------------------------------------------------------


def astronaut_frame(width: int, height: int) -> np.ndarray:
    """skimage's astronaut (a person in front of a busy background) resized to width x height,
    RGB uint8."""
    try:
        from skimage import data
    except ImportError as exc:
        raise RuntimeError(
            "the blur benchmark films skimage's astronaut: install scikit-image "
            "(pip install -e '.[test]')"
        ) from exc

    return cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)


def index_origin(width: int, height: int) -> tuple[int, int]:
    """Top-left (row, column) of the painted frame index."""
    return int(INDEX_ORIGIN[0] * height), int(INDEX_ORIGIN[1] * width)


def camera_frames(
    width: int,
    height: int,
    count: int,
    *,
    noise: float = 3.0,
    painted: bool = True,
    seed: int = 1,
) -> list[av.VideoFrame]:
    """`count` yuv420p frames: the astronaut panning a few pixels back and forth, with noise
    and (if `painted`) the frame index painted on the suit at index_origin(), readable with
    media.synthetic.read_index."""
    rng = np.random.default_rng(seed)
    rgb = astronaut_frame(width, height)
    base = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    planes = base.to_ndarray()
    row, column = index_origin(width, height)
    frames = []
    for index in range(count):
        shift = round(6 * math.sin(2 * math.pi * index / count))
        frame_planes = planes.copy()
        luma = frame_planes[:height]
        luma[:] = np.roll(luma, shift, axis=1)
        if noise:
            jitter = rng.normal(0.0, noise, luma.shape)
            luma[:] = np.clip(luma + jitter, 0, 255).astype(np.uint8)
        if painted:
            paint_index(luma[row:, column:], index & 0xFFFF)
        frames.append(av.VideoFrame.from_ndarray(frame_planes, format="yuv420p"))
    return frames


@dataclass
class EncodedClip:
    """A camera clip encoded as a browser would send it, ready to replay."""

    mime_type: str
    width: int
    height: int
    packets: list[bytes]
    keyframes: list[bool]
    source: list[av.VideoFrame] = field(repr=False)
    """The frames before encoding (for content checks)."""


def encode_clip(
    mime_type: str,
    width: int = 640,
    height: int = 480,
    frames: int = CLIP_FRAMES,
    *,
    keyframe_every: int | None = None,
    noise: float = 3.0,
) -> EncodedClip:
    """Encode `frames` camera frames: H.264 (constrained baseline, Annex-B, zerolatency) or
    VP8, keyframe at frame 0 and every `keyframe_every` frames."""
    source = camera_frames(width, height, frames, noise=noise)
    bitrate = PUBLISHER_BITRATE * width * height // (640 * 480)
    codec = "libx264" if mime_type.lower() == "video/h264" else "libvpx"
    context = av.CodecContext.create(codec, "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.time_base = TIME_BASE
    context.framerate = fractions.Fraction(FPS, 1)
    context.bit_rate = bitrate
    context.gop_size = 100000
    if codec == "libx264":
        context.profile = "Baseline"
        context.options = {"preset": "veryfast", "tune": "zerolatency", "forced-idr": "1"}
    else:
        context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[bytes] = []
    keyframes: list[bool] = []
    for index, frame in enumerate(source):
        frame.pts = index * VIDEO_CLOCK // FPS
        frame.time_base = TIME_BASE
        force = index == 0 or (keyframe_every is not None and index % keyframe_every == 0)
        frame.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
        encoded = b"".join(bytes(p) for p in context.encode(frame))
        packets.append(encoded)
        keyframes.append(is_keyframe(mime_type, encoded))
    return EncodedClip(mime_type, width, height, packets, keyframes, source)


class ClipFeed:
    """Stands in for a publisher's TrackForwarder: replays an EncodedClip as av.Packets.

    Keyframe requests are counted and, when `honour_keyframe_requests`, answered by jumping to
    the clip's next keyframe (its start, if it has only one).
    """

    kind = "video"

    def __init__(
        self, clip: EncodedClip, *, fps: int = FPS, honour_keyframe_requests: bool = True
    ) -> None:
        self.clip = clip
        self.mime_type: str | None = clip.mime_type
        self.fps = fps
        self.honour_keyframe_requests = honour_keyframe_requests
        self.keyframe_requests = 0
        self.sent = 0
        """Packets pushed so far (also the next packet's timestamp index)."""
        self.sent_at: dict[int, float] = {}
        """pts -> time.monotonic() when it was pushed (latency measurements)."""
        self.clip_index: dict[int, int] = {}
        """pts -> the clip frame it carries."""
        self._position = 0
        self._jump = False
        self._consumers: list[FrameConsumer] = []
        self.stopped = False

    def add_consumer(self, consumer: FrameConsumer) -> None:
        self._consumers.append(consumer)

    def unsubscribe(self, consumer: FrameConsumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        if self.honour_keyframe_requests:
            self._jump = True

    def push_next(self) -> int:
        """Hand the next frame to every consumer; returns the clip frame index sent."""
        clip = self.clip
        if self._jump:
            self._jump = False
            if not clip.keyframes[self._position]:
                following = [
                    i for i in range(self._position, len(clip.packets)) if clip.keyframes[i]
                ]
                self._position = following[0] if following else 0
        index = self._position
        self._position = (self._position + 1) % len(clip.packets)
        packet = av.Packet(clip.packets[index])
        pts = self.sent * VIDEO_CLOCK // self.fps
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        self.sent += 1
        self.sent_at[pts] = time.monotonic()
        self.clip_index[pts] = index
        for consumer in tuple(self._consumers):
            consumer.push(packet, clip.keyframes[index])
        return index

    async def play(self, duration_s: float, *, offset_s: float = 0.0) -> None:
        """Push frames at `fps` on the event loop for `duration_s`."""
        loop = asyncio.get_running_loop()
        start = loop.time() + offset_s
        frame = 0
        while not self.stopped:
            due = start + frame / self.fps
            if due - start > duration_s:
                return
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.push_next()
            frame += 1

    def end(self) -> None:
        """The publisher's track ended: stop track consumers, as a TrackForwarder does."""
        self.stopped = True
        for consumer in tuple(self._consumers):
            if isinstance(consumer, ForwardedTrack):
                consumer.stop()
        self._consumers.clear()

    async def stop(self) -> None:
        self.end()


class PacketLog:
    """A consumer that records what a source delivers: packets, keyframes, latencies."""

    def __init__(self, feed: ClipFeed, *, keep: int = 0) -> None:
        self._feed = feed
        self._keep = keep
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.latencies_s: list[float] = []
        self.packets: list[tuple[av.Packet, bool]] = []
        """The most recent packets, from a keyframe on (at most `keep`)."""

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        self.frames += 1
        self.keyframes += int(keyframe)
        self.bytes += packet.size
        sent = self._feed.sent_at.get(packet.pts or 0)
        if sent is not None:
            self.latencies_s.append(time.monotonic() - sent)
        if self._keep:
            if keyframe:
                self.packets = []
            if self.packets or keyframe:
                self.packets.append((packet, keyframe))
                del self.packets[: -self._keep]


# --- content check ------------------------------------------------------------------------


def background_mask(width: int, height: int) -> np.ndarray:
    """Pixels certainly outside the astronaut (flag, wall, rocket) in astronaut_frame(), by
    eye from skimage's 512x512 original: the top band beside the head, the left edge below it
    (flag), the right side above the helmet (rocket)."""
    region = np.zeros((512, 512), bool)
    region[0:130, 0:140] = True  # flag, top left
    region[0:130, 330:512] = True  # wall and rocket, top right
    region[130:300, 0:20] = True  # flag, left edge
    region[130:280, 380:512] = True  # rocket and its stand, right
    return cv2.resize(
        region.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
    ).astype(bool)


def person_mask(width: int, height: int) -> np.ndarray:
    """Pixels certainly on the astronaut in astronaut_frame(): face, neck ring and suit, drawn
    by eye on skimage's 512x512 original with a margin from the outline."""
    region = np.zeros((512, 512), bool)
    region[40:140, 175:280] = True  # face and hair
    region[160:260, 130:290] = True  # neck ring
    region[270:500, 60:270] = True  # suit, left and centre
    return cv2.resize(
        region.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
    ).astype(bool)


def high_frequency_energy(luma: np.ndarray, where: np.ndarray) -> float:
    """Mean squared Laplacian of the luma over `where` (fine detail: edges, texture, noise)."""
    laplacian = cv2.Laplacian(luma.astype(np.float32), cv2.CV_32F, ksize=3)
    return float(np.mean(laplacian[where] ** 2))


def background_energy_ratio(frame: av.VideoFrame, reference_luma: np.ndarray) -> float:
    """Background detail of `frame` relative to the unblurred reference (raw ~1, blurred << 1)."""
    luma = frame.to_ndarray(format="gray")
    where = background_mask(frame.width, frame.height)
    return high_frequency_energy(luma, where) / high_frequency_energy(reference_luma, where)


def decode_packets(mime_type: str, packets: Sequence[tuple[av.Packet, bool]]) -> list[Any]:
    name = "h264" if mime_type.lower() == "video/h264" else "vp8"
    decoder = av.CodecContext.create(name, "r")
    frames: list[Any] = []
    for packet, _ in packets:
        frames.extend(decoder.decode(av.Packet(bytes(packet))))  # type: ignore[attr-defined]
    return frames


# --- the benchmark ------------------------------------------------------------------------


@dataclass
class RunFigures:
    scenario: str
    mode: str
    streams: int
    fps_min: float
    cpu_s_per_s: float
    cpu_per_stream: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None
    stale_pct: float | None
    """Share of decoded frames superseded before blurring."""
    profile_ms: dict[str, float] | None
    """Worker wall milliseconds per blurred frame, by stage."""
    background_ratio: float | None
    """Delivered background detail / source background detail (stream 0, last frame)."""
    out_kbit_s: float | None
    other_load_cores: float
    """CPU used by other processes on the machine during the window (noise in the figures)."""
    loop_lag_p99_ms: float
    """How late a 5 ms timer on the event loop fires (99th percentile): what the blur threads
    cost everything else the SFU's loop does (GIL and cores)."""


async def _run(
    scenario: Scenario,
    blur: bool,
    clip: EncodedClip,
    strength: BlurStrength,
    warmup_s: float,
    duration_s: float,
) -> RunFigures:
    feeds = [ClipFeed(clip) for _ in range(scenario.streams)]
    sources = [BlurredSource(feed, strength=strength) for feed in feeds]
    logs = [PacketLog(feed, keep=CLIP_FRAMES if i == 0 else 0) for i, feed in enumerate(feeds)]
    for source, log in zip(sources, logs, strict=True):
        source.add_consumer(log)
    try:
        if blur:
            for source in sources:
                await source.set_blur(True, strength)
        total_s = warmup_s + duration_s + 0.5
        players = [
            asyncio.create_task(feed.play(total_s, offset_s=i / (FPS * scenario.streams)))
            for i, feed in enumerate(feeds)
        ]
        await asyncio.sleep(warmup_s)
        process = psutil.Process()
        cpu_start = sum(process.cpu_times()[:2])
        machine_start = _busy_seconds()
        clock_start = time.monotonic()
        frames_start = [log.frames for log in logs]
        bytes_start = [log.bytes for log in logs]
        latency_start = [len(log.latencies_s) for log in logs]
        profile_start = [source.worker_profile for source in sources]
        blurred_start = [source.blur_stats.frames_blurred for source in sources]
        decoded_start = [source.blur_stats.frames_decoded for source in sources]
        stale_start = [source.blur_stats.frames_stale for source in sources]
        lags: list[float] = []
        probe = asyncio.create_task(_probe_loop_lag(lags))
        await asyncio.sleep(duration_s)
        probe.cancel()
        elapsed = time.monotonic() - clock_start
        own_s = sum(process.cpu_times()[:2]) - cpu_start
        cpu = own_s / elapsed
        other_load = max(0.0, (_busy_seconds() - machine_start - own_s) / elapsed)
        fps = [(log.frames - f0) / elapsed for log, f0 in zip(logs, frames_start, strict=True)]
        kbit = sum(log.bytes - b0 for log, b0 in zip(logs, bytes_start, strict=True)) * 8 / 1000
        latencies = sorted(
            x
            for log, start in zip(logs, latency_start, strict=True)
            for x in log.latencies_s[start:]
        )
        profile: dict[str, float] | None = None
        stale: float | None = None
        if blur:
            blurred = sum(s.blur_stats.frames_blurred for s in sources) - sum(blurred_start)
            decoded = sum(s.blur_stats.frames_decoded for s in sources) - sum(decoded_start)
            stale_frames = sum(s.blur_stats.frames_stale for s in sources) - sum(stale_start)
            stale = 100 * stale_frames / decoded if decoded else None
            profile = {}
            for stage in ("decode", "segment", "composite", "encode"):
                spent = sum(
                    s.worker_profile[stage] - p0[stage]
                    for s, p0 in zip(sources, profile_start, strict=True)
                )
                profile[stage] = 1000 * spent / blurred if blurred else math.nan
        for player in players:
            player.cancel()
        await asyncio.gather(*players, return_exceptions=True)
    finally:
        for source in sources:
            await source.stop()
    ratio = None
    if logs[0].packets:
        decoded_frames = decode_packets(clip.mime_type, logs[0].packets)
        if decoded_frames:
            last_packet = logs[0].packets[-1][0]
            clip_frame = feeds[0].clip_index.get(last_packet.pts or 0, 0)
            reference = clip.source[clip_frame].to_ndarray(format="gray")
            ratio = background_energy_ratio(decoded_frames[-1], reference)

    def quantile(q: float) -> float | None:
        if not latencies:
            return None
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return RunFigures(
        scenario=scenario.label,
        mode="blur" if blur else "passthrough",
        streams=scenario.streams,
        fps_min=min(fps),
        cpu_s_per_s=cpu,
        cpu_per_stream=cpu / scenario.streams,
        latency_p50_ms=quantile(0.5),
        latency_p95_ms=quantile(0.95),
        latency_max_ms=quantile(1.0),
        stale_pct=stale,
        profile_ms=profile,
        background_ratio=ratio,
        out_kbit_s=kbit / elapsed / scenario.streams,
        other_load_cores=other_load,
        loop_lag_p99_ms=1000 * sorted(lags)[int(0.99 * (len(lags) - 1))] if lags else math.nan,
    )


async def _probe_loop_lag(lags: list[float], interval_s: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval_s)
        lags.append(loop.time() - start - interval_s)


def _busy_seconds() -> float:
    """Machine-wide busy CPU seconds (every core, every process)."""
    times = psutil.cpu_times()
    return float(
        times.user
        + times.nice
        + times.system
        + getattr(times, "irq", 0.0)
        + getattr(times, "softirq", 0.0)
        + getattr(times, "steal", 0.0)
    )


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_blur_report(result: dict[str, Any]) -> str:
    runs = [RunFigures(**run) for run in result["runs"]]
    header = (
        "scenario",
        "mode",
        "fps min",
        "CPU-s/s",
        "per stream",
        "latency p50/p95/max ms",
        "stale %",
        "kbit/s/stream",
        "background detail",
        "loop lag p99 ms",
        "other load",
    )
    rows = [
        (
            run.scenario,
            run.mode,
            _fmt(run.fps_min, 1),
            _fmt(run.cpu_s_per_s, 3),
            _fmt(run.cpu_per_stream, 3),
            "/".join(
                _fmt(x, 1) for x in (run.latency_p50_ms, run.latency_p95_ms, run.latency_max_ms)
            ),
            _fmt(run.stale_pct, 1),
            _fmt(run.out_kbit_s, 0),
            _fmt(run.background_ratio, 3),
            _fmt(run.loop_lag_p99_ms, 1),
            _fmt(run.other_load_cores, 2),
        )
        for run in runs
    ]
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        f"background blur, {result['codec']}, strength {result['strength']}, "
        f"{result['duration_s']:.0f} s windows after {result['warmup_s']:.0f} s warm-up; "
        f"{result['machine']}",
        _table_line(header, widths),
        *(_table_line(row, widths) for row in rows),
    ]
    lines.append("")
    lines.append("worker wall ms per blurred frame: decode / segment / composite / encode")
    for run in runs:
        if run.profile_ms:
            stages = " / ".join(_fmt(run.profile_ms[s], 2) for s in run.profile_ms)
            total = sum(run.profile_ms.values())
            lines.append(f"  {run.scenario}: {stages}  (total {total:.2f})")
    lines.append("")
    for verdict in result["verdicts"]:
        lines.append(verdict)
    return "\n".join(lines)


def _table_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """Two left-aligned label columns, then right-aligned figures."""
    return "  ".join(
        cell.ljust(width) if i < 2 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def _machine_description() -> str:
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu_model = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                "",
            )
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores {cpu_model}, Python {platform.python_version()}, "
        f"av {av.__version__}"
    )


def _verdicts(runs: list[RunFigures]) -> list[str]:
    verdicts = []
    for run in runs:
        if run.mode != "blur" or not run.scenario.startswith("640x480"):
            continue
        cpu_ok = run.cpu_per_stream <= TARGET_CPU_PER_STREAM
        latency = run.latency_p95_ms
        latency_ok = latency is not None and latency <= TARGET_LATENCY_MS
        fps_ok = run.fps_min >= FPS * 0.95
        cpu_note = (
            "met"
            if cpu_ok
            else f"MISSED by {run.cpu_per_stream - TARGET_CPU_PER_STREAM:.3f} CPU-s/s"
        )
        latency_note = (
            "met" if latency_ok else f"MISSED by {(latency or math.inf) - TARGET_LATENCY_MS:.1f} ms"
        )
        verdicts.append(
            f"target {run.scenario}: <= {TARGET_CPU_PER_STREAM} core/stream: "
            f"{run.cpu_per_stream:.3f} {cpu_note}; p95 added latency <= {TARGET_LATENCY_MS:.0f}"
            f" ms: {_fmt(latency, 1)} {latency_note}; 30 fps: {run.fps_min:.1f} "
            f"{'met' if fps_ok else 'MISSED'}"
        )
    return verdicts


async def run_blur_benchmark(
    *,
    codec: str = "h264",
    strength: str = "low",
    duration_s: float = 10.0,
    warmup_s: float = 3.0,
    scenarios: Sequence[Scenario] = DEFAULT_SCENARIOS,
    out: TextIO | None = sys.stdout,
) -> dict[str, Any]:
    """Run every scenario with blur off (passthrough) and on; print the table to `out`.

    Returns a JSON-able dict: settings, machine, `runs` (one dict per scenario and mode, see
    RunFigures) and `verdicts` (the 640x480 targets, met or missed by how much).
    """
    mime_type = {"h264": "video/H264", "vp8": "video/VP8"}[codec.lower()]
    blur_strength = BlurStrength(strength)
    # Loads mediapipe and the model before anything is measured.
    from media.blur_segmentation import ensure_blur_available

    await asyncio.to_thread(ensure_blur_available)
    clips: dict[tuple[int, int], EncodedClip] = {}
    runs: list[RunFigures] = []
    for scenario in scenarios:
        size = (scenario.width, scenario.height)
        if size not in clips:
            clips[size] = await asyncio.to_thread(encode_clip, mime_type, *size)
        for blur in (False, True):
            runs.append(
                await _run(scenario, blur, clips[size], blur_strength, warmup_s, duration_s)
            )
    result: dict[str, Any] = {
        "codec": codec,
        "strength": blur_strength.value,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "machine": _machine_description(),
        "runs": [asdict(run) for run in runs],
        "verdicts": _verdicts(runs),
    }
    if out is not None:
        print(format_blur_report(result), file=out, flush=True)
    return result


if __name__ == "__main__":
    asyncio.run(run_blur_benchmark())
