"""`parloir loadtest`: rooms of participants against a Parloir server, and what it did to it.

R rooms x P participants (each publishes audio and video and receives everyone else's), or R
rooms x 1 publisher + S viewers, against any Parloir URL: the tokens are minted with the
server's secret (`--secret`, its PARLOIR_SECRET), or `--local` starts a server for the run.

The participants run in several worker processes (bench/loadtest_participants.py), spread
round-robin, so the load uses every core. Publishers send a clip encoded once (packets, no
encoder running: bench/loadtest_media.py); subscribers count encoded frames through a tap
without decoding, except one sampled participant per room, which decodes one of its video
subscriptions and checks that every frame carries its own room's painted marker and the
signalled publisher's slot. So the load test measures the server, not itself; its own CPU is
reported next to the server's all the same.

Reported while running (a live line) and at the end: join success rate, time to first frame
(p50/p95), received bitrate, loss (video frames and audio packets missing from the RTP
timestamp sequence of each received track), frame rate per subscription, and the server's CPU
and memory (bench/server_probe.py: its /metrics, or psutil when the server is on this machine).
`--ramp` adds one room per step and measures a window at each, then charts CPU and loss
against the participant count (PNG). The figures are also written as JSON.
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
from urllib.parse import urlsplit

import aiortc
import psutil

from bench import loadtest_messages as msg
from bench.event_workers import EventWorker, start_event_worker, stop_workers
from bench.loadtest_media import MAX_SLOTS, seat_identity
from bench.processes import BenchmarkError, ProcessGroup, cpu_seconds, describe_error
from bench.server_probe import ServerProbe, ServerSample, is_local_host
from bench.text_table import format_table, note_lines, num, percentile
from server.tokens import issue_token
from signaling.permissions import Role

LIVE_INTERVAL_S = 2.0
JOIN_CONCURRENCY = 4
"""Participants of one worker connecting and publishing at the same time."""
JOIN_TIMEOUT_S = 20.0
MEDIA_TIMEOUT_S = 20.0
ENCODE_ALLOWANCE_S = 3.0
"""Per participant of a worker, for encoding its clip before it publishes."""
REPORT_TIMEOUT_S = 30.0
OTHER_LOAD_CORES = 0.2
"""Load from outside the test above this is worth a note."""
TOKEN_TTL_S = 6 * 3600

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class LoadPlan:
    """What to run: one settings object, from the command line or a test."""

    url: str | None
    """The server under test; None = start a local `parloir serve` for the run."""
    secret: str | None
    """The server's PARLOIR_SECRET, to mint join tokens (not needed with a local server)."""
    rooms: int
    participants: int = 3
    """Per room, each publishing and subscribing; ignored when `viewers` is set."""
    viewers: int | None = None
    """Per room: 1 publisher + this many subscribe-only viewers."""
    seconds: float = 20.0
    """Measured window (per step with `ramp`)."""
    warmup_s: float = 3.0
    ramp: bool = False
    """One more room per step, 1 .. rooms, a window measured at each."""
    codec: str = "h264"
    width: int = 640
    height: int = 480
    fps: int = 30
    video_kbps: int = 500
    processes: int | None = None
    """Worker processes for the participants; None = one per CPU."""
    insecure: bool = False
    server_pid: int | None = None
    """Read this local process's CPU and memory instead of looking for the URL's listener."""
    server_workers: int = 1
    """With a local server (url None): its `--workers`."""
    json_path: Path | None = None
    chart_path: Path | None = None

    @property
    def per_room(self) -> int:
        return 1 + self.viewers if self.viewers is not None else self.participants

    @property
    def publisher_slots(self) -> list[int]:
        return [0] if self.viewers is not None else list(range(self.participants))

    @property
    def scenario(self) -> str:
        if self.viewers is not None:
            return f"{self.rooms} rooms x (1 publisher + {self.viewers} viewers)"
        return f"{self.rooms} rooms x {self.participants} participants (each publishes)"

    def validate(self) -> None:
        if self.rooms < 1 or self.per_room < 1:
            raise ValueError("need at least one room and one participant per room")
        if self.viewers is None and not 2 <= self.participants <= MAX_SLOTS:
            raise ValueError(
                f"with --participants, give 2..{MAX_SLOTS} (or use --viewers for large rooms)"
            )
        if self.viewers is not None and self.viewers < 1:
            raise ValueError("give at least one viewer")
        if self.url is not None and not self.secret:
            raise ValueError("a server URL needs --secret (its PARLOIR_SECRET) to mint tokens")
        if self.seconds <= 0 or self.warmup_s < 0:
            raise ValueError("the window must be positive and the warm-up not negative")
        if self.codec not in ("h264", "vp8"):
            raise ValueError("codec must be h264 or vp8")
        if not 1 <= self.fps <= 60 or 90000 % self.fps:
            raise ValueError("fps must divide 90000 (e.g. 15, 25, 30)")


@dataclass
class StepFigures:
    """One measured window with `rooms` rooms in."""

    rooms: int
    participants: int
    attempted: int
    """Participants that tried to join so far (all steps)."""
    joined: int
    """Of which connected (and published, publishers)."""
    complete: int
    """Of which also got a first video frame from every publication they should receive."""
    join_success_rate: float
    """complete / attempted."""
    first_frame_s_p50: float | None
    """Over the subscriptions of the participants that joined in this step."""
    first_frame_s_p95: float | None
    subscriptions: int
    """Received publications measured (each a video and an audio track)."""
    fps_min: float | None
    """Video frames per second of the slowest subscription over the window."""
    fps_p05: float | None
    fps_median: float | None
    received_kbps_median: float | None
    """Per receiving participant, all its subscriptions (encoded payload, no RTP overhead)."""
    received_kbps_total: float
    loss_pct: float | None
    """Video frames and audio packets missing from the received timestamp sequences."""
    video_loss_pct: float | None
    audio_loss_pct: float | None
    server_cpu_cores: float | None
    """Server CPU seconds per second over the window."""
    server_rss_mb: float | None
    load_tool_cores: float
    """CPU of this tool's worker processes (its own, not the server's)."""
    machine_busy_cores: float
    """Every process on this machine (server included when it is local)."""
    other_processes_cores: float
    """Busy cores spent neither by the load tool nor by a local server: other load."""
    window_s: float


@dataclass
class LoadTestResult:
    url: str
    scenario: str
    rooms: int
    per_room: int
    viewers: int | None
    ramp: bool
    codec: str
    video: str
    video_kbps: int
    processes: int
    server_metrics: str
    """Where the server's CPU and memory came from (or why they are missing)."""
    environment: dict[str, Any]
    steps: list[StepFigures] = field(default_factory=list)
    joins: list[dict[str, Any]] = field(default_factory=list)
    """Every participant's join result."""
    join_success_rate: float | None = None
    first_frame_s_p50: float | None = None
    first_frame_s_p95: float | None = None
    content: list[dict[str, Any]] = field(default_factory=list)
    """The sampled participants' checks, one per room."""
    content_ok: bool | None = None
    """Every room's sampled participant decoded frames and all were its own room's, from the
    signalled publisher. False also when a room could not be checked."""
    chart: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.content_ok) and self.join_success_rate == 1.0 and not self.errors

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class Snapshot:
    at: float
    subscriptions: dict[str, msg.SubscriptionCounts]
    server: ServerSample
    load_tool_cpu_s: float
    machine_busy_s: float


class LoadTest:
    """One run: the workers, the seats joined so far, the snapshots."""

    def __init__(
        self, plan: LoadPlan, url: str, secret: str, probe: ServerProbe, say: Say, live: Say
    ) -> None:
        self.plan = plan
        self.url = url
        self.secret = secret
        self.probe = probe
        self.say = say
        self.live = live
        self.run_id = f"lt{secrets.token_hex(3)}"
        self.workers: list[EventWorker] = []
        self.joins: list[msg.SeatJoin] = []
        self._next_worker = 0
        self._started = time.monotonic()
        self.server_local = is_local_host(urlsplit(url).hostname or "")
        """The server's CPU is part of this machine's (for the other-load figure)."""

    def config(self) -> msg.LoadConfig:
        return msg.LoadConfig(
            url=self.url,
            insecure=self.plan.insecure,
            ice_addresses=["127.0.0.1"] if self.server_local else [],
            codec=self.plan.codec,  # type: ignore[arg-type]
            width=self.plan.width,
            height=self.plan.height,
            fps=self.plan.fps,
            video_bitrate=self.plan.video_kbps * 1000,
            publisher_slots=self.plan.publisher_slots,
            join_concurrency=JOIN_CONCURRENCY,
            join_timeout_s=JOIN_TIMEOUT_S,
            media_timeout_s=MEDIA_TIMEOUT_S,
        )

    async def start_workers(self, group: ProcessGroup) -> None:
        total = self.plan.rooms * self.plan.per_room
        count = max(1, min(self.plan.processes or os.cpu_count() or 1, total))
        config = self.config()
        for k in range(count):
            worker = await start_event_worker(
                group, f"participants-{k}", "bench.loadtest_participants", msg.EVENT
            )
            self.workers.append(worker)
            await worker.send(config)

    def seats(self, room_index: int) -> list[msg.LoadSeat]:
        plan = self.plan
        room = f"{self.run_id}-room{room_index}"
        seats = []
        for slot in range(plan.per_room):
            publishes = slot in plan.publisher_slots
            identity = seat_identity(self.run_id, room_index, slot)
            role = Role.PUBLISHER if publishes else Role.SUBSCRIBER
            token = issue_token(
                self.secret, room=room, identity=identity, role=role, ttl_s=TOKEN_TTL_S
            )
            seats.append(
                msg.LoadSeat(
                    room_index=room_index,
                    room=room,
                    slot=slot,
                    identity=identity,
                    token=token,
                    publishes=publishes,
                    sampled=slot == plan.per_room - 1 and plan.per_room > 1,
                )
            )
        return seats

    async def join_rooms(self, room_indices: Sequence[int]) -> list[msg.SeatJoin]:
        """The rooms' participants, spread round-robin over the workers, all joining at once."""
        assignment: list[list[msg.LoadSeat]] = [[] for _ in self.workers]
        for room_index in room_indices:
            for seat in self.seats(room_index):
                assignment[self._next_worker % len(self.workers)].append(seat)
                self._next_worker += 1

        async def join(worker: EventWorker, seats: list[msg.LoadSeat]) -> list[msg.SeatJoin]:
            await worker.send(msg.Join(seats=seats))
            rounds = math.ceil(len(seats) / JOIN_CONCURRENCY)
            timeout = (
                JOIN_TIMEOUT_S * rounds + MEDIA_TIMEOUT_S + ENCODE_ALLOWANCE_S * len(seats) + 30
            )
            return (await worker.expect(msg.Joined, timeout)).seats

        results = await asyncio.gather(
            *(join(w, s) for w, s in zip(self.workers, assignment, strict=True) if s)
        )
        fresh = [seat for seats in results for seat in seats]
        self.joins += fresh
        return fresh

    async def snapshot(self) -> Snapshot:
        counts = await asyncio.gather(*(self._mark(w) for w in self.workers))
        subscriptions = {f"{s.seat}/{s.publication_id}": s for c in counts for s in c.subscriptions}
        machine = psutil.cpu_times()
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
        tool = 0.0
        for worker in self.workers:
            try:
                tool += cpu_seconds(worker.psutil())
            except psutil.Error:
                pass
        return Snapshot(
            at=time.monotonic(),
            subscriptions=subscriptions,
            server=await self.probe.sample(),
            load_tool_cpu_s=tool,
            machine_busy_s=busy,
        )

    async def _mark(self, worker: EventWorker) -> msg.Counts:
        await worker.send(msg.Mark())
        return await worker.expect(msg.Counts, REPORT_TIMEOUT_S)

    async def observe(self, seconds: float, label: str) -> tuple[Snapshot, Snapshot]:
        """Snapshots at both ends of `seconds`, a live line every LIVE_INTERVAL_S between."""
        first = previous = await self.snapshot()
        end = first.at + seconds
        while previous.at < end:
            await asyncio.sleep(max(0.0, min(LIVE_INTERVAL_S, end - time.monotonic())))
            current = await self.snapshot()
            self.live(self.live_line(label, previous, current))
            previous = current
        return first, previous

    def live_line(self, label: str, before: Snapshot, after: Snapshot) -> str:
        window = window_figures(before, after, self.server_local)
        complete = sum(1 for j in self.joins if j.complete)
        server = "server -"
        if window["server_cpu_cores"] is not None:
            server = f"server {window['server_cpu_cores']:.2f} cores"
        if window["server_rss_mb"] is not None:
            server += f" {window['server_rss_mb']:.0f} MB"
        return (
            f"[{after.at - self._started:6.1f}s] {label} | joined {complete}/{len(self.joins)}"
            f" | recv {num(window['received_kbps_total'], 0)} kbit/s"
            f" | fps min/med {num(window['fps_min'], 1)}/{num(window['fps_median'], 1)}"
            f" | loss {num(window['loss_pct'], 2)}% | {server}"
            f" | load tool {window['load_tool_cores']:.2f} cores"
        )

    async def finish(self) -> list[msg.ContentCheck]:
        async def report(worker: EventWorker) -> list[msg.ContentCheck]:
            await worker.send(msg.Finish())
            return (await worker.expect(msg.Report, REPORT_TIMEOUT_S)).content

        reports = await asyncio.gather(*(report(w) for w in self.workers))
        return [check for checks in reports for check in checks]


def window_figures(before: Snapshot, after: Snapshot, server_local: bool) -> dict[str, Any]:
    """Rates between two snapshots; a subscription counts once it had media at `before`."""
    elapsed = max(1e-6, after.at - before.at)
    fps_values: list[float] = []
    received: dict[str, float] = {}
    lost = {"video": 0, "audio": 0}
    expected = {"video": 0, "audio": 0}
    for key, end in after.subscriptions.items():
        start = before.subscriptions.get(key)
        if start is None or start.video.units == 0:
            continue
        fps_values.append((end.video.units - start.video.units) / elapsed)
        payload = end.video.bytes + end.audio.bytes - start.video.bytes - start.audio.bytes
        received[end.seat] = received.get(end.seat, 0.0) + payload * 8 / 1000 / elapsed
        for kind in ("video", "audio"):
            a, b = getattr(start, kind), getattr(end, kind)
            span = b.expected - a.expected
            expected[kind] += span
            lost[kind] += max(0, span - (b.units - a.units))

    def pct(kinds: Sequence[str]) -> float | None:
        total = sum(expected[k] for k in kinds)
        return round(100 * sum(lost[k] for k in kinds) / total, 3) if total else None

    server_cpu = None
    if after.server.cpu_seconds is not None and before.server.cpu_seconds is not None:
        server_cpu = round((after.server.cpu_seconds - before.server.cpu_seconds) / elapsed, 4)
    rss = after.server.rss_bytes
    tool = (after.load_tool_cpu_s - before.load_tool_cpu_s) / elapsed
    machine = (after.machine_busy_s - before.machine_busy_s) / elapsed
    other = machine - tool - ((server_cpu or 0.0) if server_local else 0.0)
    return {
        "subscriptions": len(fps_values),
        "fps_min": _round(min(fps_values) if fps_values else None, 2),
        "fps_p05": _round(percentile(fps_values, 5), 2),
        "fps_median": _round(statistics.median(fps_values) if fps_values else None, 2),
        "received_kbps_median": _round(
            statistics.median(received.values()) if received else None, 1
        ),
        "received_kbps_total": round(sum(received.values()), 1),
        "loss_pct": pct(("video", "audio")),
        "video_loss_pct": pct(("video",)),
        "audio_loss_pct": pct(("audio",)),
        "server_cpu_cores": server_cpu,
        "server_rss_mb": _round(rss / 2**20 if rss is not None else None, 1),
        "load_tool_cores": round(tool, 3),
        "machine_busy_cores": round(machine, 3),
        "other_processes_cores": round(max(0.0, other), 3),
        "window_s": round(elapsed, 3),
    }


async def run_loadtest(
    plan: LoadPlan,
    *,
    out: TextIO | None = None,
    progress: Say | None = _stderr,
    live: Say | None = _stderr,
) -> dict[str, Any]:
    """Run the plan; print the report to `out` (stdout), write JSON (and the ramp's chart)."""
    plan.validate()
    say = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="parloir-loadtest-") as tmp:
        async with ProcessGroup(Path(tmp)) as group:
            url, secret, pid = plan.url, plan.secret, plan.server_pid
            if url is None:
                secret = secrets.token_urlsafe(48)
                server = await group.start_server(
                    "server",
                    {
                        "PARLOIR_SECRET": secret,
                        "PARLOIR_ICE_ADDRESSES": "127.0.0.1",
                        "PARLOIR_DATA_DIR": str(Path(tmp) / "data"),
                        "PARLOIR_WORKERS": str(plan.server_workers),
                    },
                )
                url, pid = server.url, server.pid
                say(
                    f"loadtest: started a local server {url} (pid {pid},"
                    f" {plan.server_workers} worker(s))"
                )
            assert secret is not None
            probe = await ServerProbe.discover(url, pid, ssl=not plan.insecure)
            say(f"loadtest: {plan.scenario} against {url}; server CPU/memory: {probe.source}")
            test = LoadTest(plan, url, secret, probe, say, live or (lambda message: None))
            result = LoadTestResult(
                url=url,
                scenario=plan.scenario,
                rooms=plan.rooms,
                per_room=plan.per_room,
                viewers=plan.viewers,
                ramp=plan.ramp,
                codec=plan.codec,
                video=f"{plan.width}x{plan.height}@{plan.fps}",
                video_kbps=plan.video_kbps,
                processes=0,
                server_metrics=probe.source,
                environment=_environment(),
            )
            try:
                await test.start_workers(group)
                result.processes = len(test.workers)
                await _run_steps(plan, test, result)
                checks = await test.finish()
                result.content = [c.model_dump() | {"ok": c.ok} for c in checks]
                checked_rooms = {c.room_index for c in checks if c.ok}
                sampled_rooms = plan.rooms if plan.per_room > 1 else 0
                result.content_ok = (
                    None
                    if sampled_rooms == 0
                    else all(c.ok for c in checks) and len(checked_rooms) == sampled_rooms
                )
            except (BenchmarkError, psutil.Error) as exc:
                result.errors.append(describe_error(exc))
                say(f"loadtest: FAILED: {exc}")
            finally:
                await stop_workers(group, test.workers, grace_s=15)
    _summarise(result, test.joins)
    _write_outputs(plan, result)
    print(format_loadtest_report(result), file=out or sys.stdout, flush=True)
    return result.as_json()


async def _run_steps(plan: LoadPlan, test: LoadTest, result: LoadTestResult) -> None:
    steps = list(range(1, plan.rooms + 1)) if plan.ramp else [plan.rooms]
    joined_rooms = 0
    for target in steps:
        label = f"{target} rooms, {target * plan.per_room} participants"
        test.say(f"loadtest: {label}: joining")
        fresh = await test.join_rooms(range(joined_rooms, target))
        joined_rooms = target
        complete = sum(1 for j in fresh if j.complete)
        test.say(f"loadtest: {label}: {complete}/{len(fresh)} joined with all their media")
        if plan.warmup_s > 0:
            await test.observe(plan.warmup_s, f"{label}, warming up")
        before, after = await test.observe(plan.seconds, label)
        window = window_figures(before, after, test.server_local)
        first_frames = [s for j in fresh for s in j.first_frame_s]
        everyone = test.joins
        result.steps.append(
            StepFigures(
                rooms=target,
                participants=target * plan.per_room,
                attempted=len(everyone),
                joined=sum(1 for j in everyone if j.joined),
                complete=sum(1 for j in everyone if j.complete),
                join_success_rate=round(
                    sum(1 for j in everyone if j.complete) / max(1, len(everyone)), 4
                ),
                first_frame_s_p50=_round(percentile(first_frames, 50), 3),
                first_frame_s_p95=_round(percentile(first_frames, 95), 3),
                **window,
            )
        )


def _summarise(result: LoadTestResult, joins: list[msg.SeatJoin]) -> None:
    result.joins = [j.model_dump() | {"complete": j.complete} for j in joins]
    if joins:
        result.join_success_rate = round(sum(1 for j in joins if j.complete) / len(joins), 4)
    first_frames = [s for j in joins for s in j.first_frame_s]
    result.first_frame_s_p50 = _round(percentile(first_frames, 50), 3)
    result.first_frame_s_p95 = _round(percentile(first_frames, 95), 3)


def _environment() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# ---- outputs --------------------------------------------------------------------------------


def _write_outputs(plan: LoadPlan, result: LoadTestResult) -> None:
    import json

    if plan.ramp and plan.chart_path is not None and result.steps:
        try:
            write_chart(result, plan.chart_path)
            result.chart = str(plan.chart_path)
        except ImportError:
            result.errors.append("matplotlib is not installed: no chart")
    if plan.json_path is not None:
        plan.json_path.write_text(json.dumps(result.as_json(), indent=2))


def write_chart(result: LoadTestResult, path: Path) -> None:
    """Server CPU (cores) and loss (%) against participants, one point per ramp step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    participants = [s.participants for s in result.steps]
    # A missing reading (no server figures, no media) is drawn as a gap.
    cpu = [math.nan if s.server_cpu_cores is None else s.server_cpu_cores for s in result.steps]
    loss = [math.nan if s.loss_pct is None else s.loss_pct for s in result.steps]
    figure, cpu_axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    cpu_axis.plot(participants, cpu, "o-", color="tab:blue", label="server CPU")
    cpu_axis.set_xlabel("participants")
    cpu_axis.set_ylabel("server CPU (cores)", color="tab:blue")
    cpu_axis.set_ylim(bottom=0)
    cpu_axis.set_xticks(participants)
    loss_axis = cpu_axis.twinx()
    loss_axis.plot(participants, loss, "s--", color="tab:red", label="loss")
    loss_axis.set_ylabel("loss (% of frames and audio packets)", color="tab:red")
    loss_axis.set_ylim(bottom=0, top=max([1.0, *(v for v in loss if not math.isnan(v))]) * 1.2)
    ramp = "ramp to " if result.ramp else ""
    cpu_axis.set_title(
        f"parloir loadtest: {ramp}{result.scenario}\n{result.video} {result.codec.upper()} "
        f"{result.video_kbps} kbit/s; server CPU from {result.server_metrics.split(';')[0]}",
        fontsize=10,
    )
    cpu_axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


COLUMNS = (
    ("rooms", ">"),
    ("participants", ">"),
    ("joined", ">"),
    ("first frame p50/p95 s", ">"),
    ("fps min/p5/med", ">"),
    ("recv kbit/s per sub", ">"),
    ("recv kbit/s total", ">"),
    ("loss % (video/audio)", ">"),
    ("server CPU cores", ">"),
    ("server RSS MB", ">"),
    ("load tool cores", ">"),
    ("machine cores", ">"),
    ("other procs cores", ">"),
)


def _row(step: StepFigures) -> list[str]:
    return [
        str(step.rooms),
        str(step.participants),
        f"{step.complete}/{step.attempted}",
        f"{num(step.first_frame_s_p50, 2)}/{num(step.first_frame_s_p95, 2)}",
        f"{num(step.fps_min, 1)}/{num(step.fps_p05, 1)}/{num(step.fps_median, 1)}",
        num(step.received_kbps_median, 0),
        num(step.received_kbps_total, 0),
        f"{num(step.loss_pct, 2)} ({num(step.video_loss_pct, 2)}/{num(step.audio_loss_pct, 2)})",
        num(step.server_cpu_cores, 3),
        num(step.server_rss_mb, 0),
        num(step.load_tool_cores, 2),
        num(step.machine_busy_cores, 2),
        num(step.other_processes_cores, 2),
    ]


def format_loadtest_report(result: LoadTestResult) -> str:
    env = result.environment
    lines = [
        f"parloir loadtest: {result.scenario} against {result.url}"
        + (" (ramp: one room more per step)" if result.ramp else ""),
        f"media: {result.codec.upper()} {result.video} at {result.video_kbps} kbit/s + Opus, "
        f"encoded once and sent as packets; {result.processes} load processes on "
        f"{env['cpus']} CPUs, Python {env['python']}, aiortc {env['aiortc']}",
        f"server CPU/memory: {result.server_metrics}",
        "joined = got a first video frame from every publication it should, of all that tried;"
        " first frame = knowing of a publication -> its first frame; loss = frames and audio"
        " packets missing from each received track's timestamps (a stalled track shows in fps)",
        "",
    ]
    lines += format_table(COLUMNS, [_row(step) for step in result.steps])
    lines.append("")
    lines.append(
        f"joins: {num(_pct(result.join_success_rate), 1)}% succeeded; first frame p50/p95 "
        f"{num(result.first_frame_s_p50, 2)}/{num(result.first_frame_s_p95, 2)} s"
    )
    lines.append(f"content: {_content_line(result)}")
    if result.chart:
        lines.append(f"chart: {result.chart}")
    lines += note_lines(_notes(result))
    return "\n".join(lines)


def _pct(rate: float | None) -> float | None:
    return None if rate is None else rate * 100


def _content_line(result: LoadTestResult) -> str:
    if result.content_ok is None and not result.content:
        return "not checked (no room has a subscriber)"
    parts = []
    for check in sorted(result.content, key=lambda c: c["room_index"]):
        room = f"room {check['room_index']}"
        damaged = f", {check['unreadable']} damaged" if check["unreadable"] else ""
        if check["ok"]:
            parts.append(f"{room} ok ({check['frames_decoded']} frames decoded{damaged})")
        else:
            bad = {k: check[k] for k in ("wrong_room", "wrong_publisher") if check[k]}
            seen = f", room markers seen {check['rooms_seen']}" if check["rooms_seen"] else ""
            parts.append(
                f"{room} BAD ({check['frames_decoded']} frames decoded{damaged}, "
                f"{bad or 'none readable'}{seen})"
            )
    checked = {c["room_index"] for c in result.content}
    missing = [i for i in range(result.rooms) if i not in checked]
    if missing and result.per_room > 1:
        parts.append(f"rooms {missing} not checked (their sampled participant got no video)")
    verdict = "OK" if result.content_ok else "WRONG MEDIA OR NOT CHECKED"
    line = f"{verdict}: " + "; ".join(parts)
    if any(c["unreadable"] for c in result.content):
        line += " (damaged = decoded after a loss, unreadable until the next keyframe)"
    return line


def _notes(result: LoadTestResult) -> list[str]:
    notes = []
    cpus = result.environment.get("cpus") or 1
    for step in result.steps:
        where = f"{step.participants} participants"
        if step.other_processes_cores > OTHER_LOAD_CORES:
            notes.append(
                f"{where}: processes outside the test kept {step.other_processes_cores:.2f} "
                "cores busy: fps and loss may suffer from them"
            )
        if step.machine_busy_cores > 0.9 * cpus:
            notes.append(
                f"{where}: the machine was saturated ({step.machine_busy_cores:.2f} of {cpus} "
                "cores busy): fps and loss may reflect the load tool, not the server"
            )
    if result.server_metrics.startswith("unavailable"):
        notes.append("the server's CPU and memory could not be read: " + result.server_metrics)
    failed = [j for j in result.joins if not j["complete"]]
    for join in failed[:10]:
        why = join["error"] or f"video from {join['receiving']}/{join['expected']} publications"
        notes.append(f"{join['identity']} did not join completely: {why}")
    if len(failed) > 10:
        notes.append(f"... and {len(failed) - 10} more participants")
    notes += result.errors
    return notes


def default_output_paths(stamp: str | None = None) -> tuple[Path, Path]:
    """loadtest-YYYYmmdd-HHMMSS.json and .png in the working directory."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    return Path(f"loadtest-{stamp}.json"), Path(f"loadtest-{stamp}.png")
