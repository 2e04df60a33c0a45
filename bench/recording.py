"""`parloir bench recording`: what recording a room costs, per mode, in one run.

Two publications (640x480@30 H.264 at a camera's bitrate + Opus) are pre-encoded once and
replayed in real time on the event loop exactly as a `TrackForwarder` hands frames to its
consumers (an `av.Packet` per encoded frame, RTP-clock pts). The process's CPU (user+system,
all threads, psutil) is measured over the same window three times:

* **no recording**: the replay alone (what the SFU spends anyway to hand frames out);
* **individual**: an `IndividualRecorder` stream-copying all four tracks;
* **composed**: a `CompositeRecorder` decoding them and encoding 1280x720 H.264 + AAC.

Cost of a mode = CPU(mode) - CPU(no recording); individual is also given per track. The
event-loop thread's own CPU is reported separately (`time.thread_time`), since the rule is that
recording adds next to nothing there. Other processes' load on the machine during each window
is reported so a noisy run can be recognised.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import av
import psutil

from media.recording import CompositeRecorder, IndividualRecorder, Recorder, TrackInfo
from media.recording.muxing import probe_file
from media.recording.replay import ClipReplay, EncodedClip, encode_audio_clip, encode_video_clip

Progress = Callable[[str], None]

INDIVIDUAL_TARGET_PER_TRACK = 0.01
"""CPU-s/s per copied track."""
COMPOSED_TARGET = 0.8
"""Cores for one composed recording of two 640x480 cameras into 1280x720."""
CLIP_S = 10.0
"""Length of the replayed clips (they loop)."""


@dataclass
class ModeFigures:
    """One measured window."""

    mode: str
    """`none`, `individual` or `composed`."""
    label: str
    """What the row shows."""
    cpu_s_per_s: float
    """Process CPU (all threads) per wall second."""
    loop_cpu_s_per_s: float
    """Event-loop thread CPU per wall second."""
    other_load_cores: float
    """CPU used by other processes on the machine during the window."""
    over_baseline: float | None = None
    """cpu_s_per_s minus the no-recording run's."""
    per_track: float | None = None
    """over_baseline / tracks (individual)."""
    tracks: int = 0
    """Tracks recorded."""
    output: str = "-"
    """What was written."""
    health: str = "-"
    """Frames written/encoded and dropped."""
    details: dict[str, Any] = field(default_factory=dict)
    """Raw counters."""


@dataclass
class RecordingBenchmark:
    window_s: float
    warmup_s: float
    publishers: int
    source: str
    composed: str
    environment: dict[str, Any]
    runs: list[ModeFigures] = field(default_factory=list)
    targets: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_recording_benchmark(
    window_s: float = 15.0,
    *,
    warmup_s: float = 2.0,
    publishers: int = 2,
    source_size: tuple[int, int] = (640, 480),
    source_fps: int = 30,
    video_bitrate: int = 1_000_000,
    composed_resolution: tuple[int, int] = (1280, 720),
    composed_fps: int = 25,
    preset: str = "veryfast",
    out: TextIO | None = None,
    progress: Progress | None = _stderr_progress,
) -> dict[str, Any]:
    """Run the three windows, print the table to `out` (stdout) and return the figures."""
    if window_s <= 0 or warmup_s < 0:
        raise ValueError("the window must be positive and the warm-up not negative")
    if not 1 <= publishers <= 8:
        raise ValueError("publishers must be within 1..8")
    say = progress or (lambda message: None)
    width, height = source_size
    result = RecordingBenchmark(
        window_s=window_s,
        warmup_s=warmup_s,
        publishers=publishers,
        source=f"{publishers} x {width}x{height}@{source_fps} H.264 "
        f"~{video_bitrate / 1e6:.1f} Mbit/s + Opus",
        composed=f"{composed_resolution[0]}x{composed_resolution[1]}@{composed_fps} "
        f"libx264 {preset} + AAC",
        environment=_environment(),
    )
    say(f"encoding {publishers} x {CLIP_S:.0f} s clips ...")
    clips = await asyncio.to_thread(
        _encode_clips, publishers, width, height, source_fps, video_bitrate
    )
    with tempfile.TemporaryDirectory(prefix="parloir-bench-recording-") as tmp:
        modes: list[tuple[str, Callable[[Path], Recorder | None]]] = [
            ("none", lambda d: None),
            ("individual", lambda d: IndividualRecorder(d)),
            (
                "composed",
                lambda d: CompositeRecorder(
                    d, resolution=composed_resolution, fps=composed_fps, preset=preset
                ),
            ),
        ]
        for mode, make in modes:
            say(f"{mode}: warm-up {warmup_s:.0f} s, window {window_s:.0f} s ...")
            try:
                figures = await _measure(mode, make(Path(tmp) / mode), clips, window_s, warmup_s)
                result.runs.append(figures)
            except Exception as error:  # one broken mode must not hide the others' figures
                result.errors.append(f"{mode}: {error!r}")
                say(f"{mode}: FAILED: {error!r}")
    _derive(result)
    print(format_report(result), file=out or sys.stdout, flush=True)
    return result.as_json()


def _encode_clips(
    publishers: int, width: int, height: int, fps: int, bitrate: int
) -> list[EncodedClip]:
    clips = []
    for index in range(publishers):
        clips.append(
            encode_video_clip(CLIP_S, width, height, fps, bitrate, luma=96 + 32 * index, seed=index)
        )
        clips.append(encode_audio_clip(CLIP_S, 440.0 + 110 * index))
    return clips


class _Discard:
    """A consumer that keeps nothing: the replay's cost of handing frames out, as a baseline."""

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        return None


async def _measure(
    mode: str,
    recorder: Recorder | None,
    clips: list[EncodedClip],
    window_s: float,
    warmup_s: float,
) -> ModeFigures:
    replays = [ClipReplay(clip) for clip in clips]
    for replay in replays:
        replay.add_consumer(_Discard())
        replay.start()
    if recorder is not None:
        recorder.start()
        for index, replay in enumerate(replays):
            publication = f"pub{index // 2}"
            name = f"Participant {index // 2 + 1}"
            clock = 90000 if replay.kind == "video" else 48000
            recorder.attach(
                replay, TrackInfo(publication, name, replay.kind, replay.mime_type, clock)
            )
    process = psutil.Process()
    try:
        await asyncio.sleep(warmup_s)
        cpu_before = _cpu(process)
        loop_before = time.thread_time()
        machine_before = _machine_cpu()
        wall_before = time.monotonic()
        await asyncio.sleep(window_s)
        wall = time.monotonic() - wall_before
        cpu = (_cpu(process) - cpu_before) / wall
        loop_cpu = (time.thread_time() - loop_before) / wall
        other = max(0.0, (_machine_cpu() - machine_before) / wall - cpu)
    finally:
        stopped = await recorder.stop() if recorder is not None else None
        for replay in replays:
            await replay.stop()
    figures = ModeFigures(mode, _label(mode, recorder, len(replays)), cpu, loop_cpu, other)
    if stopped is not None:
        figures.tracks = len(stopped.tracks)
        seconds = max(stopped.duration_s, 1e-6)
        kbit = stopped.size_bytes * 8 / seconds / 1000
        figures.details = {**stopped.stats, "dropped": stopped.dropped}
        if mode == "individual":
            written = sum(entry.packets for entry in stopped.tracks)
            figures.output = f"{len(stopped.files)} files, {kbit:.0f} kbit/s"
            figures.health = f"{written} frames copied, {stopped.dropped} dropped"
            figures.details["frames_copied"] = written
        else:
            probe = probe_file(stopped.files[0])
            expected = round(stopped.duration_s * (recorder.fps if recorder else 0))  # type: ignore[attr-defined]
            encoded = stopped.stats.get("frames_encoded", 0)
            figures.output = f"MP4 {probe.duration_s:.1f} s, {kbit:.0f} kbit/s"
            figures.health = (
                f"{encoded}/{expected} frames, {stopped.stats.get('ticks_skipped', 0)} skipped, "
                f"{stopped.dropped} dropped"
            )
            figures.details["playable_s"] = probe.duration_s
    return figures


def _label(mode: str, recorder: Recorder | None, tracks: int) -> str:
    if mode == "none":
        return "no recording"
    if isinstance(recorder, CompositeRecorder):
        return f"composed {recorder.width}x{recorder.height}@{recorder.fps}"
    return f"individual copy, {tracks} tracks"


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _machine_cpu() -> float:
    times = psutil.cpu_times()
    return float(times.user + times.system + getattr(times, "nice", 0.0))


def _derive(result: RecordingBenchmark) -> None:
    baseline = next((r for r in result.runs if r.mode == "none"), None)
    for run in result.runs:
        if baseline is not None and run is not baseline:
            run.over_baseline = run.cpu_s_per_s - baseline.cpu_s_per_s
            if run.mode == "individual" and run.tracks:
                run.per_track = run.over_baseline / run.tracks
    individual = next((r for r in result.runs if r.mode == "individual"), None)
    composed = next((r for r in result.runs if r.mode == "composed"), None)
    result.targets = {
        "individual_per_track": {
            "target": INDIVIDUAL_TARGET_PER_TRACK,
            "measured": individual.per_track if individual else None,
            "met": None
            if individual is None or individual.per_track is None
            else individual.per_track <= INDIVIDUAL_TARGET_PER_TRACK,
        },
        "composed_cores": {
            "target": COMPOSED_TARGET,
            "measured": composed.over_baseline if composed else None,
            "met": None
            if composed is None or composed.over_baseline is None
            else composed.over_baseline <= COMPOSED_TARGET,
        },
    }


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(result: RecordingBenchmark) -> str:
    header = (
        "mode",
        "CPU-s/s",
        "over no-rec",
        "per track",
        "event loop CPU-s/s",
        "other procs cores",
        "output",
        "health",
    )
    rows = [list(header)]
    for run in result.runs:
        rows.append(
            [
                run.label,
                _num(run.cpu_s_per_s, 3),
                _num(run.over_baseline, 3),
                _num(run.per_track, 4),
                _num(run.loop_cpu_s_per_s, 3),
                _num(run.other_load_cores, 2),
                run.output,
                run.health,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {1, 2, 3, 4, 5}

    def line(row: list[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "| " + " | ".join(cells) + " |"

    env = result.environment
    lines = [
        f"Recording benchmark: {result.source}, replayed on the event loop; "
        f"composed to {result.composed}",
        f"window {result.window_s:.0f} s after {result.warmup_s:.0f} s warm-up; "
        f"{env['cpus']} CPUs, Python {env['python']}, av {env['av']}",
        "",
        line(rows[0]),
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
        *[line(row) for row in rows[1:]],
        "",
    ]
    per_track = result.targets.get("individual_per_track", {})
    cores = result.targets.get("composed_cores", {})
    lines.append(
        f"individual: {_num(per_track.get('measured'), 4)} CPU-s/s per track "
        f"(target <= {INDIVIDUAL_TARGET_PER_TRACK}): {_verdict(per_track.get('met'))}"
    )
    lines.append(
        f"composed:   {_num(cores.get('measured'), 3)} cores over no recording "
        f"(target <= {COMPOSED_TARGET}): {_verdict(cores.get('met'))}"
    )
    busy = [r for r in result.runs if r.other_load_cores > 0.2]
    if busy:
        lines.append(
            "note: other processes used "
            + ", ".join(f"{r.other_load_cores:.2f} cores during '{r.label}'" for r in busy)
            + " - figures may be inflated"
        )
    lines += [f"ERROR {error}" for error in result.errors]
    return "\n".join(lines)


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("MET" if met else "MISSED")


def _environment() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "av": av.__version__,
        "platform": platform.platform(),
    }


if __name__ == "__main__":
    asyncio.run(run_recording_benchmark(float(sys.argv[1]) if len(sys.argv) > 1 else 15.0))
