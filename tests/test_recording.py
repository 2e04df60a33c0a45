"""Recording a room: composed MP4 and per-track files, checked by decoding them with PyAV.

The room tests run real aiortc publishers through the in-process SFU and attach the recorders
to the forwarders the way the integrator will (`RoomRecording` below). Tests that need exact
codecs or many sizes feed the recorders replayed encoded clips (`media.recording.replay`).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE

from media.recording import (
    RESOLUTIONS,
    CompositeRecorder,
    IndividualRecorder,
    Recorder,
    RecordingTrack,
    TrackInfo,
    find_interrupted,
    muxing,
    recover_recording,
    scan_recording,
)
from media.recording.individual import OPEN_WAIT_S
from media.recording.layout import LayoutOptions, TileSpec, compose_layout
from media.recording.replay import ClipReplay, encode_audio_clip, encode_video_clip
from media.synthetic import PaintedVideoTrack, ToneAudioTrack, read_index
from signaling.client import ParloirClient
from signaling.room import Room
from tests.conftest import InProcessServer

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREEN_YUV = (150, 60, 200)
"""The shared screen's colour: unmistakable against grey cameras and black background."""


# ---- test media ----------------------------------------------------------------------------


class ColourVideoTrack(MediaStreamTrack):
    """A flat-coloured picture (a 'screen') at `fps`, with the frame index painted."""

    kind = "video"

    def __init__(self, yuv: tuple[int, int, int], width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, 15
        self.index = 0
        self._start: float | None = None
        self._planes = np.empty((height * 3 // 2, width), dtype=np.uint8)
        self._planes[:height] = yuv[0]
        self._planes[height : height + height // 4] = yuv[1]
        self._planes[height + height // 4 :] = yuv[2]

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.index / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame.from_ndarray(self._planes.copy(), format="yuv420p")
        frame.pts = int(self.index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self.index += 1
        return frame


class Flashes:
    """A shared wall clock: 'on' for the first `length_s` of every `period_s`."""

    def __init__(self, period_s: float = 1.0, length_s: float = 0.12) -> None:
        self.epoch = time.monotonic() + 0.5
        self.period_s, self.length_s = period_s, length_s

    def on(self, at: float) -> bool:
        return at >= self.epoch and (at - self.epoch) % self.period_s < self.length_s


class FlashVideoTrack(MediaStreamTrack):
    """Black frames, white while the shared clock is on."""

    kind = "video"

    def __init__(self, flashes: Flashes, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.flashes, self.width, self.height, self.fps = flashes, width, height, 30
        self.index = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.index / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        planes = np.full((self.height * 3 // 2, self.width), 128, dtype=np.uint8)
        planes[: self.height] = 235 if self.flashes.on(due) else 16
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = int(self.index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self.index += 1
        return frame


class BeepAudioTrack(MediaStreamTrack):
    """Silence, a 1 kHz beep while the shared clock is on; 20 ms frames paced in real time."""

    kind = "audio"

    def __init__(self, flashes: Flashes) -> None:
        super().__init__()
        self.flashes = flashes
        self.rate, self.samples = 48000, 960
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._pts / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        times = due + np.arange(self.samples) / self.rate
        on = np.array([self.flashes.on(t) for t in times])
        wave = np.where(on, 0.5 * 32767 * np.sin(2 * math.pi * 1000 * times), 0).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        self._pts += self.samples
        return frame


# ---- the integrator's part, as a test helper -----------------------------------------------


class RoomRecording:
    """Attaches every live publication's tracks to the recorders; detaches the ones that end."""

    def __init__(self, room: Room, recorders: Sequence[Recorder]) -> None:
        self.room = room
        self.recorders = recorders
        self.attached: dict[tuple[str, str], list[RecordingTrack]] = {}
        self._task: asyncio.Task[None] | None = None

    def sync(self) -> None:
        live = set()
        for publication in self.room.live_publications():
            for kind, source in publication.sources.items():
                key = (publication.id, kind)
                live.add(key)
                if key in self.attached or source.mime_type is None:  # type: ignore[attr-defined]
                    continue
                info = TrackInfo(
                    publication_id=publication.id,
                    participant_name=publication.name,
                    kind=kind,
                    mime_type=source.mime_type,  # type: ignore[attr-defined]
                    clock_rate=90000 if kind == "video" else 48000,
                    video_type=publication.video_type,
                    participant_id=publication.participant_id,
                )
                self.attached[key] = [r.attach(source, info) for r in self.recorders]  # type: ignore[arg-type]
        for key in [k for k in self.attached if k not in live]:
            for recorder, track in zip(self.recorders, self.attached.pop(key), strict=True):
                recorder.remove_track(track)

    def start(self) -> None:
        async def poll() -> None:
            while True:
                self.sync()
                await asyncio.sleep(0.05)

        self._task = asyncio.ensure_future(poll())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


async def join(server: InProcessServer, room: str, name: str) -> ParloirClient:
    client = ParloirClient(server.url, token=server.token(room, name), room=room, name=name)
    await client.connect()
    return client


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


# ---- checks on files -----------------------------------------------------------------------


def decode_all(path: Path, kind: str) -> list[Any]:
    """Every frame of the file's `kind` stream; fails on any decoding error."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        return list(container.decode(stream))


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order (ftyp, moov, mdat, ...)."""
    boxes = []
    with path.open("rb") as handle:
        while header := handle.read(8):
            size, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(handle.read(8), "big") - 8
            boxes.append(kind)
            handle.seek(size - 8, 1)
    return boxes


def painted_indices(frames: list[av.VideoFrame]) -> list[int]:
    """The frame index painted in each frame; fails if any frame has none."""
    indices = [read_index(f.to_ndarray(format="gray")) for f in frames]
    readable = [i for i in indices if i is not None]
    assert len(readable) == len(indices), f"unreadable painted frames: {indices}"
    return readable


def audio_signal(frames: list[av.AudioFrame]) -> tuple[np.ndarray, int]:
    samples = np.concatenate(
        [f.to_ndarray().reshape(len(f.layout.channels), -1)[0] for f in frames]
    )
    return samples.astype(np.float64), frames[0].sample_rate


def spectrum_peaks(samples: np.ndarray, rate: int, count: int) -> list[float]:
    """The `count` strongest frequencies (at least 50 Hz apart)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    peaks: list[float] = []
    for index in np.argsort(spectrum)[::-1]:
        if all(abs(freqs[index] - p) > 50 for p in peaks):
            peaks.append(float(freqs[index]))
        if len(peaks) == count:
            break
    return peaks


def mean_yuv(frame: av.VideoFrame, x: int, y: int, size: int = 16) -> tuple[float, float, float]:
    """Mean Y, U, V of a size x size block centred at (x, y)."""
    planes = frame.to_ndarray()  # yuv420p: (h * 3 / 2, w)
    h, w = frame.height, frame.width
    luma = planes[:h]
    u = planes[h : h + h // 4].reshape(h // 2, w // 2)
    v = planes[h + h // 4 :].reshape(h // 2, w // 2)
    half = size // 2
    ys, xs = slice(y - half, y + half), slice(x - half, x + half)
    cs_y, cs_x = slice((y - half) // 2, (y + half) // 2), slice((x - half) // 2, (x + half) // 2)
    return float(luma[ys, xs].mean()), float(u[cs_y, cs_x].mean()), float(v[cs_y, cs_x].mean())


def is_screen_colour(yuv: tuple[float, float, float]) -> bool:
    return all(abs(a - b) < 20 for a, b in zip(yuv, SCREEN_YUV, strict=True))


def frame_at(frames: list[av.VideoFrame], t: float) -> av.VideoFrame:
    return min(frames, key=lambda f: abs(float(f.time) - t))


# ---- layout (pure) -------------------------------------------------------------------------


def overlaps(a: Any, b: Any) -> bool:
    return not (
        a.x + a.width <= b.x
        or b.x + b.width <= a.x
        or a.y + a.height <= b.y
        or b.y + b.height <= a.y
    )


@pytest.mark.parametrize("size", list(RESOLUTIONS))
@pytest.mark.parametrize(
    "cameras,screen", [(1, False), (2, False), (3, False), (5, False), (2, True)]
)
def test_layout_tiles_fit_the_canvas_without_overlap(size: str, cameras: int, screen: bool) -> None:
    width, height = RESOLUTIONS[size]
    specs = [TileSpec(f"cam{i}", f"Person {i}") for i in range(cameras)]
    if screen:
        specs.append(TileSpec("screen", "Person 0", screen=True))
    tiles = compose_layout(width, height, specs)
    assert [t.key for t in tiles if not t.large] == [f"cam{i}" for i in range(cameras)]
    for tile in tiles:
        cell = tile.cell
        assert 0 <= cell.x and cell.x + cell.width <= width
        assert 0 <= cell.y and cell.y + cell.height <= height
        assert tile.video.height + tile.label.height == cell.height
        assert tile.label.y == tile.video.y + tile.video.height  # the name is under the picture
        assert all(v % 2 == 0 for v in (cell.x, cell.y, cell.width, cell.height))
    for i, a in enumerate(tiles):
        for b in tiles[i + 1 :]:
            assert not overlaps(a.cell, b.cell), (a, b)
    if screen:
        large = [t for t in tiles if t.large]
        assert [t.key for t in large] == ["screen"]
        assert all(large[0].cell.area > 4 * t.cell.area for t in tiles if not t.large)
        # Cameras go beside a landscape screen and below a portrait one.
        camera = next(t for t in tiles if not t.large)
        if width > height:
            assert camera.cell.x >= large[0].cell.x + large[0].cell.width
        else:
            assert camera.cell.y >= large[0].cell.y + large[0].cell.height
    else:
        areas = {t.cell.area for t in tiles}
        assert max(areas) - min(areas) <= 0.02 * max(areas)  # a grid of equal tiles


def test_layout_strip_width_is_an_option() -> None:
    specs = [TileSpec("cam", "A"), TileSpec("scr", "A", screen=True)]
    narrow = compose_layout(1280, 720, specs, LayoutOptions(strip_fraction=0.15))
    wide = compose_layout(1280, 720, specs, LayoutOptions(strip_fraction=0.3))
    assert narrow[0].cell.width > wide[0].cell.width


# ---- the room, through the SFU -------------------------------------------------------------


async def test_room_recorded_composed_and_per_track_with_a_screen_share_midway(
    inprocess_server: InProcessServer, tmp_path: Path
) -> None:
    alice = await join(inprocess_server, "defence", "Alice")
    bob = await join(inprocess_server, "defence", "Bob")
    composed = CompositeRecorder(tmp_path / "composed", resolution=(640, 480), fps=25)
    individual = IndividualRecorder(tmp_path / "individual")
    recording = None
    try:
        await alice.publish(audio=ToneAudioTrack(440), video=PaintedVideoTrack(320, 240, 30))
        await bob.publish(audio=ToneAudioTrack(660), video=PaintedVideoTrack(320, 240, 30))
        room = inprocess_server.registry.rooms["defence"]
        await wait_until(
            lambda: (
                len(room.live_publications()) == 2
                and all(
                    getattr(s, "mime_type", None)
                    for p in room.live_publications()
                    for s in p.sources.values()
                )
            )
        )
        composed.start()
        individual.start()
        started = time.monotonic()
        recording = RoomRecording(room, [composed, individual])
        recording.start()
        await asyncio.sleep(3.0 - (time.monotonic() - started))
        screen = await bob.publish(video=ColourVideoTrack(SCREEN_YUV), video_type="screen")
        share_started = time.monotonic() - started
        await asyncio.sleep(6.0 - (time.monotonic() - started))
        await bob.unpublish(screen["id"])
        share_stopped = time.monotonic() - started
        await asyncio.sleep(8.5 - (time.monotonic() - started))
        await recording.stop()
        composed_result = await composed.stop()
        wall_s = time.monotonic() - started
        individual_result = await individual.stop()
    finally:
        if recording is not None and recording._task is not None and not recording._task.done():
            await recording.stop()
        await asyncio.gather(alice.leave(), bob.leave())

    # -- composed: one fast-start MP4, H.264 640x480 + AAC, as long as the recording --------
    assert [p.name for p in composed_result.files] == ["composed.mp4"]
    path = composed_result.files[0]
    assert not (tmp_path / "composed" / "composed.part.mp4").exists()
    boxes = top_level_boxes(path)
    assert "moof" not in boxes, "still fragmented"
    assert boxes.index("moov") < boxes.index("mdat"), f"not fast-start: {boxes}"
    with av.open(str(path)) as container:
        video_stream = container.streams.video[0]
        audio_stream = container.streams.audio[0]
        assert video_stream.codec_context.name == "h264"
        assert (video_stream.codec_context.width, video_stream.codec_context.height) == (640, 480)
        assert audio_stream.codec_context.name == "aac"
    video = decode_all(path, "video")
    audio = decode_all(path, "audio")
    video_s = float(video[-1].time) + 1 / 25
    assert abs(video_s - wall_s) < 1.0, (video_s, wall_s)
    assert abs(composed_result.duration_s - wall_s) < 1.0
    assert len(video) == pytest.approx(video_s * 25, abs=2)  # constant frame rate, all decoded
    gaps = np.diff([float(f.time) for f in video])
    # The first frame also covers the AAC encoder's 1024-sample priming (21 ms) that the MP4
    # muxer shifts both streams by; every later frame is exactly one tick.
    assert gaps[0] < 0.065 and np.allclose(gaps[1:], 0.04, atol=0.002), "composed video not CFR"
    samples, rate = audio_signal(audio)
    assert abs(len(samples) / rate - video_s) < 0.2
    # Both participants are heard.
    late = samples[int(1.5 * rate) :]
    assert sorted(round(p / 10) * 10 for p in spectrum_peaks(late, rate, 2)) == [440, 660]
    # Before and after the share: a grid (the centre of the left area is a grey camera);
    # while sharing: the screen's colour fills the large left area, cameras in the strip.
    probe_x, probe_y = 240, 220
    before = mean_yuv(frame_at(video, 2.0), probe_x, probe_y)
    during = mean_yuv(frame_at(video, share_started + 1.5), probe_x, probe_y)
    after = mean_yuv(frame_at(video, share_stopped + 1.5), probe_x, probe_y)
    assert not is_screen_colour(before), before
    assert is_screen_colour(during), during
    assert not is_screen_colour(after), after
    strip = mean_yuv(frame_at(video, share_started + 1.5), 600, 240, 8)
    assert not is_screen_colour(strip) and abs(strip[1] - 128) < 20  # a camera, small

    # -- individual: one file per stream (audio + video muxed), the screen share its own -------
    tracks = individual_result.tracks
    by_kind = {(t.participant_name, t.kind, t.video_type): t for t in tracks}
    assert len(tracks) == 5, tracks
    assert set(by_kind) == {
        ("Alice", "video", "camera"),
        ("Alice", "audio", "camera"),
        ("Bob", "video", "camera"),
        ("Bob", "audio", "camera"),
        ("Bob", "video", "screen"),
    }
    streams = individual_result.streams
    assert [s.file for s in streams] == [p.name for p in individual_result.files]
    assert len(streams) == 3 and len({s.publication_id for s in streams}) == 3
    manifest = json.loads((tmp_path / "individual" / "manifest.json").read_text())
    assert manifest["status"] == "stopped"
    assert [s["file"] for s in manifest["streams"]] == [p.name for p in individual_result.files]
    for stream_entry in streams:
        file = tmp_path / "individual" / stream_entry.file
        in_file = [t for t in tracks if t.publication_id == stream_entry.publication_id]
        assert {t.file for t in in_file} == {stream_entry.file}
        video_codec = next(t.codec for t in in_file if t.kind == "video")
        # Named by the stream id; Matroska for H.264, WebM for VP8, as Vonage's.
        assert (
            file.name
            == f"{stream_entry.publication_id}.{'mkv' if video_codec == 'h264' else 'webm'}"
        )
        with av.open(str(file)) as container:
            kinds = sorted(s.type for s in container.streams)
        assert kinds == sorted(t.kind for t in in_file) == sorted(stream_entry.kinds)
        assert stream_entry.start_offset_s is not None and stream_entry.stop_offset_s is not None
        for entry in in_file:
            assert entry.start_offset_s is not None and entry.stop_offset_s is not None
            assert stream_entry.start_offset_s <= entry.start_offset_s
            assert entry.stop_offset_s <= stream_entry.stop_offset_s
            frames = decode_all(file, entry.kind)
            with av.open(str(file)) as container:
                stream = next(s for s in container.streams if s.type == entry.kind)
                assert stream.codec_context.name == entry.codec
            length = entry.stop_offset_s - entry.start_offset_s
            # The file's time 0 is the stream's start offset: each kind sits where it was.
            first_s = float(frames[0].time)
            assert abs(stream_entry.start_offset_s + first_s - entry.start_offset_s) < 0.05
            if entry.kind == "video":
                assert (frames[0].width, frames[0].height) == (320, 240)
                assert frames[0].key_frame  # the copy starts at a keyframe
                assert len(frames) == entry.packets
                if entry.video_type == "camera":
                    indices = painted_indices(frames)
                    assert indices == sorted(indices) and len(set(indices)) == len(indices)
                    assert abs(length - wall_s) < 1.0
                else:
                    assert abs(entry.start_offset_s - share_started) < 1.0
                    assert abs(entry.stop_offset_s - share_stopped) < 1.0
                    assert is_screen_colour(mean_yuv(frames[-1], 160, 120))
            else:
                samples, rate = audio_signal(frames)
                tone = 440 if entry.participant_name == "Alice" else 660
                assert abs(spectrum_peaks(samples, rate, 1)[0] - tone) < 10
                assert abs(len(samples) / rate - wall_s) < 1.0


def onsets(times: np.ndarray, on: np.ndarray) -> list[float]:
    """Times where `on` turns true after having been false."""
    rising = np.flatnonzero(on[1:] & ~on[:-1]) + 1
    return [float(times[i]) for i in rising]


def av_offsets(
    video_onsets: list[float], audio_onsets: list[float], audio_end_s: float
) -> list[float]:
    """For each flash, (beep time - flash time) of the nearest beep. The stop cuts audio and
    video at slightly different instants, so a flash in the audio's last 0.3 s may have lost
    its beep to the cut: it is not judged (the first one is dropped by the caller likewise)."""
    judged = [v for v in video_onsets if v < audio_end_s - 0.3]
    return [min((a - v for a in audio_onsets), key=abs) for v in judged]


async def test_audio_and_video_stay_in_sync_within_100ms(
    inprocess_server: InProcessServer, tmp_path: Path
) -> None:
    client = await join(inprocess_server, "sync", "Clara")
    composed = CompositeRecorder(tmp_path / "composed", resolution=(640, 480), fps=25)
    individual = IndividualRecorder(tmp_path / "individual")
    try:
        flashes = Flashes(period_s=1.0, length_s=0.12)
        await client.publish(audio=BeepAudioTrack(flashes), video=FlashVideoTrack(flashes))
        room = inprocess_server.registry.rooms["sync"]
        composed.start()
        individual.start()
        recording = RoomRecording(room, [composed, individual])
        recording.start()
        await asyncio.sleep(6.0)
        await recording.stop()
        composed_result = await composed.stop()
        individual_result = await individual.stop()
    finally:
        await client.leave()

    path = composed_result.files[0]
    video = decode_all(path, "video")
    times = np.array([float(f.time) for f in video])
    # The picture fills the centre of the single tile.
    lit = np.array([mean_yuv(f, 320, 220, 32)[0] > 128 for f in video])
    samples, rate = audio_signal(decode_all(path, "audio"))
    window = rate // 200  # 5 ms
    envelope = np.sqrt(
        np.mean(samples[: len(samples) // window * window].reshape(-1, window) ** 2, 1)
    )
    loud = envelope > 0.05
    flash_times = onsets(times, lit)
    beep_times = onsets(np.arange(len(envelope)) * window / rate, loud)
    assert len(flash_times) >= 3 and len(beep_times) >= 3, (flash_times, beep_times)
    audio_end_s = len(samples) / rate
    offsets = av_offsets(flash_times[1:], beep_times, audio_end_s)  # the first may be cut
    print(f"composed A/V offsets (audio - video) s: {np.round(offsets, 3).tolist()}")
    assert len(offsets) >= 3 and all(abs(o) <= 0.1 for o in offsets), f"composed {offsets}"

    # The stream's file: its audio and video in one file, in sync just as well.
    (stream_file,) = individual_result.files
    frames = decode_all(stream_file, "video")
    lit = np.array([float(f.to_ndarray(format="gray").mean()) > 128 for f in frames])
    flash_times = onsets(np.array([float(f.time) for f in frames]), lit)
    samples, rate = audio_signal(decode_all(stream_file, "audio"))
    envelope = np.sqrt(
        np.mean(samples[: len(samples) // window * window].reshape(-1, window) ** 2, 1)
    )
    # Opus decodes to int16 in some builds and float in others: compare against its own peak.
    loud = envelope > 0.2 * envelope.max()
    first_audio_s = float(decode_all(stream_file, "audio")[0].time)
    beep_times = onsets(np.arange(len(envelope)) * window / rate + first_audio_s, loud)
    offsets = av_offsets(flash_times[1:], beep_times, first_audio_s + len(samples) / rate)
    print(f"individual A/V offsets (audio - video) s: {np.round(offsets, 3).tolist()}")
    assert len(offsets) >= 3 and all(abs(o) <= 0.1 for o in offsets), f"individual {offsets}"


# ---- replayed clips: codecs, sizes, overload -----------------------------------------------


async def record_clips(
    recorder: Recorder, clips: list[tuple[ClipReplay, TrackInfo]], seconds: float
) -> Any:
    for replay, _ in clips:
        replay.start()
    recorder.start()
    for replay, info in clips:
        recorder.attach(replay, info)
    await asyncio.sleep(seconds)
    try:
        return await recorder.stop()
    finally:
        for replay, _ in clips:
            await replay.stop()


VIDEO = TrackInfo("pubV", "Vera", "video", "video/H264", 90000)
AUDIO = TrackInfo("pubV", "Vera", "audio", "audio/opus", 48000)


@pytest.mark.parametrize("size", list(RESOLUTIONS))
async def test_composed_recording_at_every_offered_resolution(size: str, tmp_path: Path) -> None:
    width, height = RESOLUTIONS[size]
    clip = encode_video_clip(1.0, 320, 240, noise=False)
    recorder = CompositeRecorder(tmp_path, resolution=(width, height), fps=25)
    result = await record_clips(recorder, [(ClipReplay(clip), VIDEO)], 1.2)
    frames = decode_all(result.files[0], "video")
    assert (frames[0].width, frames[0].height) == (width, height)
    assert len(frames) == pytest.approx(result.duration_s * 25, abs=2)
    # The camera is drawn (its grey, not the black background) in the middle of the canvas.
    assert abs(mean_yuv(frames[-1], width // 2, height // 2)[0] - 128) < 20


async def test_vp8_tracks_are_copied_to_webm_and_decoded_for_the_composition(
    tmp_path: Path,
) -> None:
    clip = encode_video_clip(2.0, 320, 240, codec="vp8", noise=False)
    info = TrackInfo("pubV", "Vera", "video", "video/VP8", 90000)
    individual = await record_clips(
        IndividualRecorder(tmp_path / "i"), [(ClipReplay(clip), info)], 1.5
    )
    (entry,) = individual.tracks
    assert entry.file.endswith(".webm") and entry.codec == "vp8"
    frames = decode_all(individual.files[0], "video")
    assert (frames[0].width, frames[0].height) == (320, 240) and len(frames) == entry.packets
    composed = await record_clips(
        CompositeRecorder(tmp_path / "c", resolution=(640, 480)), [(ClipReplay(clip), info)], 1.5
    )
    frames = decode_all(composed.files[0], "video")
    assert abs(mean_yuv(frames[-1], 320, 220)[0] - 128) < 20


async def test_a_stream_whose_video_never_comes_is_recorded_audio_only_after_the_wait(
    tmp_path: Path,
) -> None:
    """Its file cannot wait for the video for ever (Matroska takes no stream after its
    header): OPEN_WAIT_S after the first audio it opens with the audio, none of it lost."""
    audio = ClipReplay(encode_audio_clip(4.0, 440.0))
    silent_camera = ClipReplay(encode_video_clip(1.0, 320, 240, noise=False))  # never started
    audio.start()
    recorder = IndividualRecorder(tmp_path)
    recorder.start()
    recorder.attach(audio, AUDIO)
    recorder.attach(silent_camera, VIDEO)
    await asyncio.sleep(OPEN_WAIT_S + 1.5)
    result = await recorder.stop()
    await audio.stop()
    (stream,) = result.streams
    assert stream.file == "pubV.webm" and stream.kinds == ["audio"]
    video = next(t for t in result.tracks if t.kind == "video")
    assert video.file == "" and video.packets == 0
    frames = decode_all(result.files[0], "audio")
    samples, rate = audio_signal(frames)
    assert abs(len(samples) / rate - result.duration_s) < 0.3  # from the start, none lost
    assert abs(spectrum_peaks(samples, rate, 1)[0] - 440) < 10


async def test_a_writer_that_falls_behind_drops_oldest_and_restarts_at_a_keyframe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = IndividualRecorder(tmp_path)
    recorder.queue_capacity = 20
    recorder._queue.capacity = 20
    real_copy = muxing.copy_packet
    stalled = {"until": 0.0}

    def slow_copy(*args: Any, **kwargs: Any) -> Any:
        while time.monotonic() < stalled["until"]:
            time.sleep(0.01)
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(muxing, "copy_packet", slow_copy)
    replay = ClipReplay(encode_video_clip(8.0, 320, 240, noise=False))  # no loop in the test
    replay.start()
    recorder.start()
    track = recorder.attach(replay, VIDEO)
    await asyncio.sleep(1.0)
    stalled["until"] = time.monotonic() + 1.5  # the disk hangs for 1.5 s
    slowest_push = 0.0
    pushes_before = replay.frames
    real_push = track.push

    def timed_push(packet: av.Packet, keyframe: bool) -> None:
        nonlocal slowest_push
        begun = time.perf_counter()
        real_push(packet, keyframe)
        slowest_push = max(slowest_push, time.perf_counter() - begun)

    track.push = timed_push  # type: ignore[method-assign]
    await asyncio.sleep(3.0)
    result = await recorder.stop()
    await replay.stop()
    assert replay.frames - pushes_before > 80
    assert slowest_push < 0.005, "push() blocked the event loop"
    assert result.dropped > 0 and result.tracks[0].dropped > 0
    frames = decode_all(result.files[0], "video")  # no frame across the gap: all decode
    indices = painted_indices(frames)
    assert indices == sorted(indices)
    assert any(b - a > 1 for a, b in zip(indices, indices[1:], strict=False))  # the gap
    assert len(frames) == result.tracks[0].packets


# ---- kill -9 ------------------------------------------------------------------------------


def test_kill_9_mid_recording_loses_under_a_second_and_recovery_reports_it(
    tmp_path: Path,
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.recording_child", str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        started_at = json.loads(child.stdout.readline())["started_at"]
        time.sleep(4.0)
    finally:
        child.send_signal(signal.SIGKILL)
        killed_at = time.time()
        child.wait()
    recorded_s = killed_at - started_at

    print(f"recorded {recorded_s:.2f} s before kill -9")
    assert sorted(p.name for p in find_interrupted(tmp_path)) == ["composed", "individual"]
    composed = scan_recording(tmp_path / "composed")
    individual = scan_recording(tmp_path / "individual")
    print(
        f"playable after the kill: composed {composed.duration_s:.2f} s, "
        f"individual {individual.duration_s:.2f} s"
    )
    assert composed.interrupted
    assert recorded_s - 1.0 < composed.duration_s <= recorded_s, (composed, recorded_s)
    assert recorded_s - 1.0 < individual.duration_s <= recorded_s + 0.1, (individual, recorded_s)
    assert len(individual.servable) == 1  # one stream: its audio and video in one file
    (stream_file,) = individual.servable
    assert stream_file.name == "pub1.mkv"
    assert sorted(s.kind for s in individual.files[0].streams) == ["audio", "video"]

    # Every packet the partial files hold decodes.
    part = tmp_path / "composed" / "composed.part.mp4"
    assert len(decode_all(part, "video")) >= (recorded_s - 1.0) * 25
    for kind in ("audio", "video"):
        assert len(decode_all(stream_file, kind)) >= (recorded_s - 1.0) * 25

    # Recovery makes the composed file a plain MP4 and records the duration.
    recovered = recover_recording(tmp_path / "composed")
    assert [p.name for p in recovered.servable] == ["composed.mp4"]
    assert not part.exists()
    assert abs(recovered.duration_s - composed.duration_s) < 0.1
    manifest = json.loads((tmp_path / "composed" / "manifest.json").read_text())
    assert manifest["status"] == "recovered"
    assert manifest["duration_s"] == pytest.approx(recovered.duration_s, abs=0.01)
    recovered = recover_recording(tmp_path / "individual")
    # Remuxed in place: the duration (and seek index) the killed recorder never wrote.
    with av.open(str(stream_file)) as container:
        assert abs((container.duration or 0) / 1e6 - individual.files[0].duration_s) < 0.1
    for kind in ("audio", "video"):
        assert len(decode_all(stream_file, kind)) >= (recorded_s - 1.0) * 25
    manifest = json.loads((tmp_path / "individual" / "manifest.json").read_text())
    assert manifest["status"] == "recovered" and manifest["files"] == ["pub1.mkv"]
    (stream,) = manifest["streams"]
    assert stream["stop_offset_s"] == pytest.approx(recovered.duration_s, abs=0.01)
    assert all(t["stop_offset_s"] and t["packets"] > 0 for t in manifest["tracks"])
    assert find_interrupted(tmp_path) == []


# ---- benchmark -----------------------------------------------------------------------------


async def test_recording_benchmark_prints_one_row_per_mode_and_the_targets() -> None:
    from io import StringIO

    from bench.recording import run_recording_benchmark

    out = StringIO()
    figures = await run_recording_benchmark(
        1.0,
        warmup_s=0.5,
        publishers=1,
        source_size=(320, 240),
        composed_resolution=(640, 480),
        out=out,
        progress=None,
    )
    text = out.getvalue()
    assert figures["errors"] == []
    assert [run["mode"] for run in figures["runs"]] == ["none", "individual", "composed"]
    individual, composed = figures["runs"][1], figures["runs"][2]
    assert individual["tracks"] == 2 and individual["details"]["frames_copied"] > 50
    assert composed["details"]["frames_encoded"] >= 25
    assert "no recording" in text and "individual copy" in text and "composed 640x480@25" in text
    assert "CPU-s/s per track" in text and "cores over no recording" in text
