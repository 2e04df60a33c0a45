"""`parloir bench forwarding`: the server's CPU per subscriber, passthrough against relay.

For each forwarding mode a fresh `parloir serve` subprocess runs with PARLOIR_FORWARDING set to
it. A publisher process sends painted 640x480@30 video and Opus; by default the picture carries
noise, so it codes at a camera's bitrate (forwarding cost grows with packets). The server's CPU
(user+system, all threads, from psutil) is measured over a window with the publisher alone,
CPU(0), then, for each N, with N fresh subscribers in worker processes of up to eight each, once
all of them have their first frame and a warm-up has passed. Per subscriber = (CPU(N) - CPU(0))
/ N.

Subscriber 0 decodes every frame and checks the painted content; the others count encoded frames
through a tap without decoding, so N decoders do not starve the server of the machine's cores.
Before CPU(0), one subscriber joins and leaves (see `_prime`: relay mode queues decoded frames
until its first subscriber). Every wait is bounded and every child process is stopped on the
way out, on success or error.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import aiortc
import av
import psutil

from bench.messages import (
    ContentCheck,
    Counts,
    JoinResult,
    Mark,
    Published,
    PublisherConfig,
    Ready,
    Report,
    Stop,
    SubscriberConfig,
    SubscriberSeat,
)
from bench.processes import (
    BenchmarkError,
    ProcessGroup,
    ServerUnderTest,
    Worker,
    cpu_seconds,
    describe_error,
)
from bench.report import format_report
from server.tokens import issue_token
from signaling.permissions import Role

MODES = ("passthrough", "relay")
CODECS = ("vp8", "h264")
ROOM = "bench-forwarding"
WIDTH, HEIGHT, FPS = 640, 480, 30
DEFAULT_VIDEO_NOISE = 4
"""Luma noise (+-) the publisher adds to each frame so the encoder needs its whole bitrate, as
a camera's picture does; the flat painted picture (0) codes at about 35 kbit/s VP8."""
DEFAULT_VIDEO_BITRATE = 1_000_000
"""The publisher's encoder is pinned to this: forwarding cost grows with packets, and unpinned
aiortc lets REMB take VP8 to 1.5 and H.264 to 3 Mbit/s. None = leave it to REMB."""
SUBSCRIBERS_PER_WORKER = 8
JOIN_CONCURRENCY = 4
FIRST_FRAME_TIMEOUT_S = 15.0
WORKER_START_TIMEOUT_S = 30.0
REPORT_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 30.0

TARGET_SUBSCRIBERS = 16
TARGET_PER_SUBSCRIBER_CPU = 0.008
"""CPU-s/s per passthrough subscriber at 16 subscribers, at most."""
TARGET_RATIO = 15.0
"""Passthrough at least this many times cheaper per subscriber than relay."""
HELD_FPS = FPS * 0.95
"""A run whose slowest subscriber got fewer frames per second did not hold the frame rate."""


@dataclass
class RunFigures:
    """One measured window of one mode with N subscribers (N = 0: the publisher alone)."""

    mode: str
    subscribers: int
    server_cpu_s_per_s: float
    """Server process CPU seconds per second over the window (user+system, all threads)."""
    per_subscriber_cpu_s_per_s: float | None
    """(CPU(N) - CPU(0)) / N; None for N = 0."""
    receiving: int
    """Subscribers that got a first video frame."""
    fps_min: float | None
    """Video frames per second of the slowest subscriber over the window."""
    fps_median: float | None
    audio_pps_median: float | None
    """Opus packets per second, median over subscribers (50 expected)."""
    video_kbps_median: float | None
    """Encoded video payload received per subscriber, kbit/s (the publisher's bitrate, which
    aiortc's encoder sets from REMB: per-subscriber forwarding cost scales with packets)."""
    first_frame_s_p50: float | None
    """Subscriber starting to connect -> its first encoded video frame, median."""
    first_frame_s_max: float | None
    content_ok: bool | None
    """Subscriber 0 decoded frames and all were right (size, index, bar, order)."""
    first_frame_age_ms: float | None
    """Subscriber 0's first decoded frame: painted -> decoded. Seconds here mean the server
    sent frames it had queued before the subscriber joined."""
    content: dict[str, int] | None
    """Subscriber 0's frame counts behind `content_ok`."""
    latency_ms_p50: float | None
    """Frame due -> decoded at subscriber 0, over the window: publisher encode, server, decode,
    plus any lag of the publisher behind its 30 fps schedule (see `publisher_fps`)."""
    latency_ms_p95: float | None
    publisher_fps: float
    """Frames the publisher painted per second: below 30 means the machine starved it."""
    server_rss_mb: float
    publisher_cpu_s_per_s: float
    subscriber_processes_cpu_s_per_s: float
    machine_busy_cores: float
    """All processes on the machine, in cores (this machine has `os.cpu_count()`)."""
    other_processes_cores: float
    """Busy cores not spent by the benchmark's own processes: other load skewing the figures."""
    window_s: float
    errors: list[str] = field(default_factory=list)

    @property
    def fps_held(self) -> bool:
        return self.fps_min is not None and self.fps_min >= HELD_FPS

    @property
    def publisher_held(self) -> bool:
        return self.publisher_fps >= HELD_FPS


@dataclass
class Ratio:
    subscribers: int
    passthrough_per_subscriber: float | None
    relay_per_subscriber: float | None
    relay_over_passthrough: float | None
    """How many times cheaper passthrough is per subscriber."""


@dataclass
class Targets:
    subscribers: int
    """N the targets are checked at (16, or the largest N run)."""
    per_subscriber_max: float
    per_subscriber: float | None
    per_subscriber_met: bool | None
    ratio_min: float
    ratio: float | None
    """Relay per subscriber / passthrough per subscriber, both measured at `subscribers`."""
    relay_fps_min: float | None
    """Slowest relay subscriber at `subscribers`: below 28.5 the relay did less work than
    passthrough (fewer frames encoded), so `ratio` understates the difference."""
    relay_held_subscribers: int | None
    """The largest N at which relay held the frame rate."""
    ratio_vs_relay_held: float | None
    """Relay per subscriber at `relay_held_subscribers` / passthrough per subscriber at
    `subscribers`: the comparison at equal work when relay collapsed."""
    ratio_met: bool | None
    ratio_basis: str
    """`measured` (relay held the frame rate at `subscribers`) or `relay-held` (it did not, so
    the verdict uses `ratio_vs_relay_held`) or `missing`."""


@dataclass
class ForwardingBenchmark:
    codec: str
    window_s: float
    warmup_s: float
    video_noise: int
    """+- luma noise in the published picture (0 = flat painted video)."""
    video_bitrate: int | None
    """Publisher's encoder bitrate, pinned (bit/s); None = REMB-driven."""
    subscriber_counts: list[int]
    modes: list[str]
    environment: dict[str, Any]
    runs: list[RunFigures] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    targets: Targets | None = None
    errors: list[str] = field(default_factory=list)
    """Failures that cost a whole mode or run (each run also lists its own)."""

    def run(self, mode: str, subscribers: int) -> RunFigures | None:
        for run in self.runs:
            if run.mode == mode and run.subscribers == subscribers:
                return run
        return None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Window:
    """Raw readings over one window."""

    seconds: float
    server_cpu: float
    publisher_cpu: float
    subscribers_cpu: float
    machine_busy_cores: float
    server_rss_mb: float
    publisher_fps: float
    fps: dict[int, float]
    audio_pps: dict[int, float]
    video_kbps: dict[int, float]


Progress = Callable[[str], None]


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_forwarding_benchmark(
    subscriber_counts: Sequence[int],
    codec: str,
    window_s: float,
    modes: Sequence[str],
    *,
    warmup_s: float = 3.0,
    video_noise: int = DEFAULT_VIDEO_NOISE,
    video_bitrate: int | None = DEFAULT_VIDEO_BITRATE,
    out: TextIO | None = None,
    progress: Progress | None = _stderr_progress,
) -> dict[str, Any]:
    """Run the benchmark, print its table to `out` (stdout) and return the figures."""
    counts = sorted({n for n in subscriber_counts if n > 0})
    if not counts:
        raise ValueError("give at least one subscriber count above 0")
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be among {MODES}, got {list(modes)}")
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}")
    if window_s <= 0:
        raise ValueError("the window must be positive")
    if not 0 <= video_noise <= 64:
        raise ValueError("video noise must be within 0..64")
    if video_bitrate is not None and not 100_000 <= video_bitrate <= 10_000_000:
        raise ValueError("video bitrate must be within 0.1..10 Mbit/s")
    say = progress or (lambda message: None)
    result = ForwardingBenchmark(
        codec=codec,
        window_s=window_s,
        warmup_s=warmup_s,
        video_noise=video_noise,
        video_bitrate=video_bitrate,
        subscriber_counts=counts,
        modes=list(dict.fromkeys(modes)),
        environment=_environment(),
    )
    with tempfile.TemporaryDirectory(prefix="parloir-bench-") as tmp:
        for mode in result.modes:
            try:
                await _run_mode(result, mode, Path(tmp) / mode, say)
            except (BenchmarkError, psutil.Error) as exc:
                result.errors.append(f"{mode}: {describe_error(exc)}")
                say(f"{mode}: FAILED: {exc}")
    result.ratios = _ratios(result)
    result.targets = _targets(result)
    print(format_report(result), file=out or sys.stdout, flush=True)
    return result.as_json()


def _environment() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "av": av.__version__,
        "video": f"{WIDTH}x{HEIGHT}@{FPS}",
        "audio": "opus",
    }


async def _run_mode(result: ForwardingBenchmark, mode: str, log_dir: Path, say: Progress) -> None:
    secret = secrets.token_urlsafe(48)
    async with ProcessGroup(log_dir) as group:
        server = await group.start_server(
            f"server-{mode}",
            {
                "PARLOIR_SECRET": secret,
                "PARLOIR_ICE_ADDRESSES": "127.0.0.1",
                "PARLOIR_DATA_DIR": str(log_dir / "data"),
                "PARLOIR_FORWARDING": mode,
                "PARLOIR_VIDEO_CODEC": result.codec,
            },
        )
        publisher = await group.start_worker(f"publisher-{mode}", "bench.publisher")
        await publisher.send(
            PublisherConfig(
                url=server.url,
                room=ROOM,
                token=issue_token(
                    secret, room=ROOM, identity="bench-publisher", role=Role.PUBLISHER_ONLY
                ),
                codec=result.codec,
                width=WIDTH,
                height=HEIGHT,
                fps=FPS,
                noise=result.video_noise,
                bitrate=result.video_bitrate,
            )
        )
        published = await publisher.expect(Published, WORKER_START_TIMEOUT_S)
        say(f"{mode}: server {server.url} (pid {server.pid}), publisher live; priming")
        await _prime(group, server, published, secret, mode)
        await asyncio.sleep(result.warmup_s)
        say(f"{mode}: N=0 (publisher only), measuring {result.window_s:g} s")
        window = await _measure(server, publisher, [], result.window_s)
        baseline = _figures(mode, 0, window, None, [], None, [])
        result.runs.append(baseline)
        for n in result.subscriber_counts:
            try:
                run = await _run_subscribers(
                    result, group, server, publisher, published, secret, mode, n, baseline, say
                )
            except (BenchmarkError, psutil.Error) as exc:
                result.errors.append(f"{mode} N={n}: {describe_error(exc)}")
                say(f"{mode} N={n}: FAILED: {exc}")
            else:
                result.runs.append(run)
            if not server.alive:
                raise server.failure("the server died")
            await _wait_for_participants(server, 1)


async def _run_subscribers(
    result: ForwardingBenchmark,
    group: ProcessGroup,
    server: ServerUnderTest,
    publisher: Worker,
    published: Published,
    secret: str,
    mode: str,
    n: int,
    baseline: RunFigures,
    say: Progress,
) -> RunFigures:
    workers: list[Worker] = []
    try:
        say(f"{mode} N={n}: starting {n} subscribers")
        workers = await _start_subscribers(
            group, server, published, secret, f"subscribers-{mode}-n{n}", n, check=True
        )
        joins = await _await_ready(workers, n)
        receiving = sum(1 for j in joins if j.first_video_s is not None)
        say(
            f"{mode} N={n}: {receiving}/{n} receiving; warming up {result.warmup_s:g} s, "
            f"measuring {result.window_s:g} s"
        )
        await asyncio.sleep(result.warmup_s)
        window = await _measure(server, publisher, workers, result.window_s)
        reports = await asyncio.gather(*(_final_report(w) for w in workers))
    finally:
        await _stop_workers(group, workers)
    content = next((r.content for r in reports if r.content is not None), None)
    errors = [f"subscriber {j.index}: {j.error}" for j in joins if j.error]
    run = _figures(mode, n, window, baseline, joins, content, errors)
    say(
        f"{mode} N={n}: server {run.server_cpu_s_per_s:.3f} CPU-s/s, "
        f"{_fmt(run.per_subscriber_cpu_s_per_s, 4)} per subscriber, fps min {_fmt(run.fps_min, 1)}"
    )
    return run


async def _prime(
    group: ProcessGroup, server: ServerUnderTest, published: Published, secret: str, mode: str
) -> None:
    """One subscriber joins and leaves before anything is measured.

    In relay mode aiortc's MediaRelay starts reading the publisher's decoded track only at its
    first subscriber, and never stops after that. Until then every decoded frame piles up in
    the server (about 14 MB/s at 640x480@30) and the first subscriber is sent all of them in a
    burst, faster than real time, for tens of seconds. Priming puts CPU(0) and every N in the
    state the later runs are in anyway. It costs passthrough nothing and is done for both.
    """
    workers: list[Worker] = []
    try:
        workers = await _start_subscribers(
            group, server, published, secret, f"primer-{mode}", 1, check=False
        )
        await _await_ready(workers, 1)
    finally:
        await _stop_workers(group, workers)
    await _wait_for_participants(server, 1)


async def _start_subscribers(
    group: ProcessGroup,
    server: ServerUnderTest,
    published: Published,
    secret: str,
    name: str,
    n: int,
    *,
    check: bool,
) -> list[Worker]:
    """N subscribers in processes of up to eight; subscriber 0 checks the content if `check`."""
    seats = [
        SubscriberSeat(
            index=i,
            token=issue_token(secret, room=ROOM, identity=f"{name}-{i}", role=Role.SUBSCRIBER),
        )
        for i in range(n)
    ]
    chunks = [seats[i : i + SUBSCRIBERS_PER_WORKER] for i in range(0, n, SUBSCRIBERS_PER_WORKER)]
    workers: list[Worker] = []
    try:
        for k, chunk in enumerate(chunks):
            worker = await group.start_worker(f"{name}-{k}", "bench.subscribers")
            workers.append(worker)
            await worker.send(
                SubscriberConfig(
                    url=server.url,
                    room=ROOM,
                    publication_id=published.publication_id,
                    seats=chunk,
                    checker_index=0 if k == 0 and check else None,
                    video_started_at=published.video_started_at,
                    fps=FPS,
                    width=WIDTH,
                    height=HEIGHT,
                    join_concurrency=JOIN_CONCURRENCY,
                    first_frame_timeout_s=FIRST_FRAME_TIMEOUT_S,
                )
            )
    except BaseException:
        await _stop_workers(group, workers)
        raise
    return workers


async def _await_ready(workers: list[Worker], n: int) -> list[JoinResult]:
    rounds = math.ceil(min(n, SUBSCRIBERS_PER_WORKER) / JOIN_CONCURRENCY)
    timeout = WORKER_START_TIMEOUT_S + rounds * 2 * FIRST_FRAME_TIMEOUT_S
    ready = await asyncio.gather(*(w.expect(Ready, timeout) for w in workers))
    return [join for r in ready for join in r.joins]


async def _stop_workers(group: ProcessGroup, workers: list[Worker]) -> None:
    """Workers leave the room when their stdin closes; killed if they take too long."""
    await asyncio.gather(*(w.stop(grace_s=15) for w in workers))
    for worker in workers:
        if worker in group.children:
            group.children.remove(worker)


async def _final_report(worker: Worker) -> Report:
    await worker.send(Stop())
    return await worker.expect(Report, REPORT_TIMEOUT_S)


async def _mark(worker: Worker) -> Counts:
    await worker.send(Mark())
    return await worker.expect(Counts, REPORT_TIMEOUT_S)


async def _measure(
    server: ServerUnderTest, publisher: Worker, subscribers: list[Worker], window_s: float
) -> Window:
    server_ps, publisher_ps = server.psutil(), publisher.psutil()
    subscriber_ps = [w.psutil() for w in subscribers]

    def read_cpu() -> tuple[float, float, float, float, float]:
        machine = psutil.cpu_times()
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
        return (
            time.monotonic(),
            cpu_seconds(server_ps),
            cpu_seconds(publisher_ps),
            sum(cpu_seconds(p) for p in subscriber_ps),
            busy,
        )

    before = read_cpu()
    start_counts = await asyncio.gather(*(_mark(w) for w in [publisher, *subscribers]))
    await asyncio.sleep(window_s)
    after = read_cpu()
    end_counts = await asyncio.gather(*(_mark(w) for w in [publisher, *subscribers]))
    if not server.alive:
        raise server.failure("the server died during the window")
    seconds = after[0] - before[0]
    fps: dict[int, float] = {}
    audio_pps: dict[int, float] = {}
    video_kbps: dict[int, float] = {}
    for start, end in zip(start_counts[1:], end_counts[1:], strict=True):
        elapsed = end.at - start.at
        for index, frames in end.video.items():
            fps[index] = (frames - start.video.get(index, 0)) / elapsed
        for index, frames in end.audio.items():
            audio_pps[index] = (frames - start.audio.get(index, 0)) / elapsed
        for index, sent in end.video_bytes.items():
            video_kbps[index] = (sent - start.video_bytes.get(index, 0)) * 8 / 1000 / elapsed
    painted = end_counts[0].video[0] - start_counts[0].video[0]
    return Window(
        seconds=seconds,
        server_cpu=(after[1] - before[1]) / seconds,
        publisher_cpu=(after[2] - before[2]) / seconds,
        subscribers_cpu=(after[3] - before[3]) / seconds,
        machine_busy_cores=(after[4] - before[4]) / seconds,
        server_rss_mb=server_ps.memory_info().rss / 2**20,
        publisher_fps=painted / (end_counts[0].at - start_counts[0].at),
        fps=fps,
        audio_pps=audio_pps,
        video_kbps=video_kbps,
    )


def _figures(
    mode: str,
    n: int,
    window: Window,
    baseline: RunFigures | None,
    joins: list[JoinResult],
    content: ContentCheck | None,
    errors: list[str],
) -> RunFigures:
    per_subscriber = None
    if baseline is not None and n > 0:
        per_subscriber = (window.server_cpu - baseline.server_cpu_s_per_s) / n
    first = [j.first_video_s for j in joins if j.first_video_s is not None]
    fps = list(window.fps.values())
    audio = list(window.audio_pps.values())
    kbps = list(window.video_kbps.values())
    latency = content.latency_ms if content is not None else []
    return RunFigures(
        mode=mode,
        subscribers=n,
        server_cpu_s_per_s=round(window.server_cpu, 5),
        per_subscriber_cpu_s_per_s=_round(per_subscriber, 5),
        receiving=len(first),
        fps_min=_round(min(fps), 2) if fps else None,
        fps_median=_round(statistics.median(fps), 2) if fps else None,
        audio_pps_median=_round(statistics.median(audio), 1) if audio else None,
        video_kbps_median=_round(statistics.median(kbps), 0) if kbps else None,
        first_frame_s_p50=_round(statistics.median(first), 3) if first else None,
        first_frame_s_max=_round(max(first), 3) if first else None,
        content_ok=content.ok if content is not None else None,
        content=(
            content.model_dump(exclude={"latency_ms", "first_frame_age_ms"})
            if content is not None
            else None
        ),
        first_frame_age_ms=content.first_frame_age_ms if content is not None else None,
        latency_ms_p50=_round(_percentile(latency, 50), 1),
        latency_ms_p95=_round(_percentile(latency, 95), 1),
        publisher_fps=round(window.publisher_fps, 2),
        server_rss_mb=round(window.server_rss_mb, 1),
        publisher_cpu_s_per_s=round(window.publisher_cpu, 4),
        subscriber_processes_cpu_s_per_s=round(window.subscribers_cpu, 4),
        machine_busy_cores=round(window.machine_busy_cores, 3),
        other_processes_cores=round(
            max(
                0.0,
                window.machine_busy_cores
                - window.server_cpu
                - window.publisher_cpu
                - window.subscribers_cpu,
            ),
            3,
        ),
        window_s=round(window.seconds, 3),
        errors=errors,
    )


async def _wait_for_participants(server: ServerUnderTest, expected: int) -> None:
    """Until the server has let the last run's subscribers go (bounded: it may never)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{server.url}/healthz") as response:
                    if (await response.json())["participants"] <= expected:
                        return
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
                pass
            await asyncio.sleep(0.25)


def _ratios(result: ForwardingBenchmark) -> list[Ratio]:
    ratios = []
    for n in result.subscriber_counts:
        passthrough = result.run("passthrough", n)
        relay = result.run("relay", n)
        p = passthrough.per_subscriber_cpu_s_per_s if passthrough else None
        r = relay.per_subscriber_cpu_s_per_s if relay else None
        ratio = round(r / p, 2) if p is not None and r is not None and p > 0 else None
        ratios.append(Ratio(n, p, r, ratio))
    return ratios


def _targets(result: ForwardingBenchmark) -> Targets:
    n = (
        TARGET_SUBSCRIBERS
        if TARGET_SUBSCRIBERS in result.subscriber_counts
        else max(result.subscriber_counts)
    )
    run = result.run("passthrough", n)
    per_subscriber = run.per_subscriber_cpu_s_per_s if run else None
    ratio = next((r.relay_over_passthrough for r in result.ratios if r.subscribers == n), None)
    relay = result.run("relay", n)
    held = [
        r
        for r in result.runs
        if r.mode == "relay" and r.subscribers > 0 and r.fps_held and r.per_subscriber_cpu_s_per_s
    ]
    relay_held = max(held, key=lambda r: r.subscribers) if held else None
    ratio_vs_held = None
    if relay_held is not None and per_subscriber is not None and per_subscriber > 0:
        assert relay_held.per_subscriber_cpu_s_per_s is not None
        ratio_vs_held = round(relay_held.per_subscriber_cpu_s_per_s / per_subscriber, 2)
    if ratio is not None and relay is not None and relay.fps_held:
        basis, verdict_ratio = "measured", ratio
    elif ratio_vs_held is not None:
        basis, verdict_ratio = "relay-held", ratio_vs_held
    else:
        basis, verdict_ratio = "missing", None
    return Targets(
        subscribers=n,
        per_subscriber_max=TARGET_PER_SUBSCRIBER_CPU,
        per_subscriber=per_subscriber,
        per_subscriber_met=(
            per_subscriber <= TARGET_PER_SUBSCRIBER_CPU if per_subscriber is not None else None
        ),
        ratio_min=TARGET_RATIO,
        ratio=ratio,
        relay_fps_min=relay.fps_min if relay is not None else None,
        relay_held_subscribers=relay_held.subscribers if relay_held is not None else None,
        ratio_vs_relay_held=ratio_vs_held,
        ratio_met=verdict_ratio >= TARGET_RATIO if verdict_ratio is not None else None,
        ratio_basis=basis,
    )


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
