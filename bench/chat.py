"""`parloir bench chat`: chat over the data channel, latency and relay throughput of the server.

A fresh `parloir serve` subprocess; for each N a fresh room with one sender and N receivers,
all `ParloirClient`s in worker processes (bench/chat_clients.py) of up to eight seats, the
sender alone in its own.

* Steady: the sender sends 20 messages a second (the server's sustained per-participant limit)
  for the window; every receiver takes arrival minus the send time stamped in the text
  (`time.monotonic()`, one clock for all processes on the machine): p50/p95/max. The server's
  CPU (user+system, all threads, psutil) is read over the sending.
* Burst: the server lets one participant send 20 messages a second (burst 20,
  signaling/chat.py), so one sender cannot load it: `burst_senders` senders join (the steady
  sender among them) and send `burst_messages` in all, each as fast as a token bucket a little
  under the server's lets it, so none is refused. Every message goes to everyone in the room,
  its sender included: deliveries = messages x (N + senders). Deliveries per second run from the
  first send to the last arrival; deliveries per CPU-second are the deliveries divided by the
  server's CPU seconds over the burst: what one fully busy core would carry.

Every seat checks that each sender's messages came complete and in order (and the room-wide
`seq` increasing). Every wait is bounded; every child process is stopped on the way out.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiortc
import psutil

from bench import chat_messages as msg
from bench.event_workers import EventWorker, start_event_worker, stop_workers
from bench.processes import (
    BenchmarkError,
    ProcessGroup,
    ServerUnderTest,
    cpu_seconds,
    describe_error,
)
from bench.text_table import format_table, note_lines, num, percentile, verdict
from server.tokens import issue_token
from signaling import chat as server_chat
from signaling.permissions import Role

STEADY_RATE_PER_S = server_chat.RATE_PER_S
"""The steady sender's rate: the server's sustained limit for one participant (20 msg/s)."""
SENDER_RATE_PER_S = server_chat.RATE_PER_S * 0.9
SENDER_BURST = server_chat.BURST // 2
"""Burst senders pace themselves a little under the server's token bucket (rate RATE_PER_S,
capacity BURST), which refills by arrival times at the server: a message that arrived sooner
after the previous one than it was sent would otherwise be refused."""
DEFAULT_RECEIVERS = (1, 4, 16)
DEFAULT_BURST_MESSAGES = 3000
DEFAULT_BURST_SENDERS = 16
SEATS_PER_WORKER = 8
JOIN_TIMEOUT_S = 20.0
SETTLE_S = 1.0
"""After the previous room's clients left, before anything is measured."""
POLL_S = 0.1
STALL_S = 5.0
"""A phase whose deliveries stop growing for this long is over, complete or not."""

OTHER_LOAD_CORES = 0.2
"""Load from outside the benchmark above this is worth a note."""

TARGET_RECEIVERS = 16
TARGET_DELIVERIES_PER_CORE = 10_000.0
TARGET_P95_MS = 5.0

Progress = Callable[[str], None]


@dataclass
class ChatRun:
    """One room: 1 sender and `receivers` receivers, then a burst from `burst_senders`."""

    receivers: int
    steady_messages: int
    """Messages the steady sender sent at STEADY_RATE_PER_S."""
    latency_ms_p50: float | None
    """Send (stamped in the text) to arrival at a receiver, over all receivers' messages."""
    latency_ms_p95: float | None
    latency_ms_max: float | None
    steady_server_cpu_s_per_s: float | None
    """Server CPU over the steady sending."""
    burst_senders: int
    burst_messages: int
    """Messages sent in the burst, all senders together."""
    burst_deliveries: int
    """Messages of the burst received, all participants together (senders get theirs too)."""
    burst_seconds: float | None
    """First burst send to last burst arrival."""
    deliveries_per_s: float | None
    receiver_msgs_per_s: float | None
    """Burst messages per second one receiver got (median receiver)."""
    offered_deliveries_per_s: float
    """What the senders' pacing asks of the server: senders x rate x participants. Below it,
    the server (or the clients, sharing the machine) could not keep up."""
    burst_server_cpu_s_per_s: float | None
    deliveries_per_cpu_s: float | None
    """Burst deliveries / server CPU seconds over the burst: deliveries per second per core."""
    lost: int
    """Messages some participant should have had and never got (both phases)."""
    out_of_order: int
    """Messages that arrived out of order (per sender number or room-wide seq)."""
    refused: dict[str, int]
    """chat-error answers to the senders, by code (rate-limited: the pacing was too fast)."""
    relayed_frame_bytes: int | None
    """Size of one relayed chat frame (JSON) as a receiver got it."""
    server_rss_mb: float
    steady_other_processes_cores: float
    """Busy cores during the steady sending not spent by the server or the benchmark's
    clients: other load on the machine, which delays deliveries (latency)."""
    burst_other_processes_cores: float
    """The same during the burst (deliveries/s suffer; the per-CPU-second figure holds up)."""

    @property
    def complete_and_in_order(self) -> bool:
        return self.lost == 0 and self.out_of_order == 0


@dataclass
class ChatTargets:
    receivers: int
    """N the targets are checked at (16, or the largest N run)."""
    p95_ms_max: float
    p95_ms: float | None
    p95_met: bool | None
    deliveries_per_core_min: float
    deliveries_per_cpu_s: float | None
    deliveries_met: bool | None


@dataclass
class ChatBenchmark:
    receiver_counts: list[int]
    steady_seconds: float
    steady_rate_per_s: float
    burst_messages: int
    burst_senders: int
    sender_rate_per_s: float
    sender_burst: int
    server_rate_limit: dict[str, float]
    environment: dict[str, Any]
    runs: list[ChatRun] = field(default_factory=list)
    targets: ChatTargets | None = None
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        figures = asdict(self)
        for figure, run in zip(figures["runs"], self.runs, strict=True):
            figure["complete_and_in_order"] = run.complete_and_in_order
        return figures


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_chat_benchmark(
    receiver_counts: Sequence[int] = DEFAULT_RECEIVERS,
    seconds: float = 10.0,
    *,
    burst_messages: int = DEFAULT_BURST_MESSAGES,
    burst_senders: int = DEFAULT_BURST_SENDERS,
    out: TextIO | None = None,
    progress: Progress | None = _stderr_progress,
) -> dict[str, Any]:
    """Run the benchmark, print its table to `out` (stdout) and return the figures."""
    counts = sorted({n for n in receiver_counts if n > 0})
    if not counts:
        raise ValueError("give at least one receiver count above 0")
    if seconds <= 0:
        raise ValueError("the steady window must be positive")
    if burst_senders < 1 or burst_messages < burst_senders:
        raise ValueError("the burst needs at least one sender and one message per sender")
    say = progress or (lambda message: None)
    result = ChatBenchmark(
        receiver_counts=counts,
        steady_seconds=seconds,
        steady_rate_per_s=STEADY_RATE_PER_S,
        burst_messages=math.ceil(burst_messages / burst_senders) * burst_senders,
        burst_senders=burst_senders,
        sender_rate_per_s=SENDER_RATE_PER_S,
        sender_burst=SENDER_BURST,
        server_rate_limit={"rate_per_s": server_chat.RATE_PER_S, "burst": server_chat.BURST},
        environment={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aiortc": aiortc.__version__,
        },
    )
    secret = secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory(prefix="parloir-bench-chat-") as tmp:
        try:
            async with ProcessGroup(Path(tmp)) as group:
                server = await group.start_server(
                    "server",
                    {
                        "PARLOIR_SECRET": secret,
                        "PARLOIR_ICE_ADDRESSES": "127.0.0.1",
                        "PARLOIR_DATA_DIR": str(Path(tmp) / "data"),
                    },
                )
                say(f"chat: server {server.url} (pid {server.pid})")
                for n in counts:
                    try:
                        result.runs.append(await _run_room(result, group, server, secret, n, say))
                    except (BenchmarkError, psutil.Error) as exc:
                        result.errors.append(f"N={n}: {describe_error(exc)}")
                        say(f"N={n}: FAILED: {exc}")
                    if not server.alive:
                        raise server.failure("the server died")
        except (BenchmarkError, psutil.Error) as exc:
            result.errors.append(describe_error(exc))
            say(f"chat: FAILED: {exc}")
    result.targets = _targets(result)
    print(format_chat_report(result), file=out or sys.stdout, flush=True)
    return result.as_json()


async def _run_room(
    result: ChatBenchmark,
    group: ProcessGroup,
    server: ServerUnderTest,
    secret: str,
    n: int,
    say: Progress,
) -> ChatRun:
    room = f"bench-chat-{secrets.token_hex(4)}-n{n}"
    config = msg.ChatClientsConfig(url=server.url, room=room, join_timeout_s=JOIN_TIMEOUT_S)

    def seat(role: str, index: int) -> msg.ChatSeat:
        token = issue_token(secret, room=room, identity=f"chat-{role}-{index}", role=Role.PUBLISHER)
        return msg.ChatSeat(index=index, role=role, token=token)  # type: ignore[arg-type]

    receivers = [seat("receiver", i) for i in range(n)]
    burst_seats = [seat("sender", i) for i in range(1, result.burst_senders)]
    workers: list[EventWorker] = []

    async def start(name: str) -> EventWorker:
        worker = await start_event_worker(group, name, "bench.chat_clients", msg.EVENT)
        workers.append(worker)
        await worker.send(config)
        return worker

    try:
        sender = await start(f"n{n}-sender")
        receiver_workers = [
            await start(f"n{n}-receivers-{k}") for k in range(_chunks(n, SEATS_PER_WORKER))
        ]
        burst_workers = [
            await start(f"n{n}-senders-{k}")
            for k in range(_chunks(len(burst_seats), SEATS_PER_WORKER))
        ]
        await _join([(sender, [seat("sender", 0)]), *_spread(receiver_workers, receivers)])
        say(f"N={n}: 1 sender + {n} receivers joined; steady {result.steady_seconds:g} s")
        await asyncio.sleep(SETTLE_S)
        steady = await _steady(result, server, sender, workers, n)
        await _join(_spread(burst_workers, burst_seats))
        say(f"N={n}: burst of {result.burst_messages} from {result.burst_senders} senders")
        await asyncio.sleep(SETTLE_S)
        burst = await _burst(result, server, [sender, *burst_workers], workers, n)
        reports = await asyncio.gather(*(_finish(w) for w in workers))
    finally:
        await stop_workers(group, workers, grace_s=15)
    run = _figures(result, n, steady, burst, [s for r in reports for s in r.seats])
    run.server_rss_mb = round(server.psutil().memory_info().rss / 2**20, 1)
    say(
        f"N={n}: latency p50/p95/max {num(run.latency_ms_p50, 2)}/{num(run.latency_ms_p95, 2)}/"
        f"{num(run.latency_ms_max, 2)} ms, {num(run.deliveries_per_s, 0)} deliveries/s, "
        f"{num(run.deliveries_per_cpu_s, 0)} per CPU-s"
    )
    return run


def _chunks(count: int, size: int) -> int:
    return math.ceil(count / size)


Assignment = list[tuple[EventWorker, list[msg.ChatSeat]]]


def _spread(workers: list[EventWorker], seats: list[msg.ChatSeat]) -> Assignment:
    return [
        (worker, seats[k * SEATS_PER_WORKER : (k + 1) * SEATS_PER_WORKER])
        for k, worker in enumerate(workers)
    ]


async def _join(assignment: Assignment) -> None:
    """Every seat joins with its chat channel open, or the run fails: a missing participant
    would make every figure of the room wrong."""

    async def join(worker: EventWorker, seats: list[msg.ChatSeat]) -> None:
        await worker.send(msg.Join(seats=seats))
        joined = await worker.expect(msg.Joined, JOIN_TIMEOUT_S * (1 + len(seats)))
        if joined.errors:
            raise worker.failure("; ".join(joined.errors))

    await asyncio.gather(*(join(w, s) for w, s in assignment if s))


async def _steady(
    result: ChatBenchmark,
    server: ServerUnderTest,
    sender: EventWorker,
    workers: list[EventWorker],
    n: int,
) -> dict[str, Any]:
    count = max(1, round(result.steady_seconds * STEADY_RATE_PER_S))
    meter = CpuMeter(server, workers)
    await sender.send(
        msg.SendSteady(phase="steady", sender=0, count=count, rate_per_s=STEADY_RATE_PER_S)
    )
    sent = await sender.expect(msg.Sent, result.steady_seconds * 2 + 30)
    usage = meter.read()
    received, _ = await _await_deliveries(workers, "steady", sent.messages * (n + 1))
    return {
        "sent": sent.messages,
        "expected": sent.messages * (n + 1),
        "received": received,
        "cpu_s_per_s": usage.server_s / usage.seconds,
        "other_cores": usage.other_s / usage.seconds,
    }


async def _burst(
    result: ChatBenchmark,
    server: ServerUnderTest,
    senders: list[EventWorker],
    workers: list[EventWorker],
    n: int,
) -> dict[str, Any]:
    per_sender = result.burst_messages // result.burst_senders
    participants = n + result.burst_senders
    meter = CpuMeter(server, workers)
    command = msg.SendBurst(
        phase="burst", count=per_sender, rate_per_s=SENDER_RATE_PER_S, burst=SENDER_BURST
    )
    await asyncio.gather(*(w.send(command) for w in senders))
    pacing_s = per_sender / SENDER_RATE_PER_S
    sent = await asyncio.gather(*(w.expect(msg.Sent, pacing_s * 3 + 30) for w in senders))
    messages = sum(s.messages for s in sent)
    received, last_at = await _await_deliveries(workers, "burst", messages * participants)
    usage = meter.read()
    first_at = min((s.first_at for s in sent if s.first_at is not None), default=None)
    return {
        "sent": messages,
        "expected": messages * participants,
        "received": received,
        "seconds": (last_at - first_at) if last_at is not None and first_at is not None else None,
        "cpu_s": usage.server_s,
        "cpu_s_per_s": usage.server_s / usage.seconds,
        "other_cores": usage.other_s / usage.seconds,
    }


@dataclass
class CpuUsage:
    seconds: float
    server_s: float
    """Server CPU seconds (user+system, all threads)."""
    other_s: float
    """Machine busy CPU seconds not spent by the server or the clients."""


class CpuMeter:
    """CPU seconds from now to `read()`: the server's, and the machine's beyond ours."""

    def __init__(self, server: ServerUnderTest, clients: list[EventWorker]) -> None:
        self._server = server.psutil()
        self._clients = [c.psutil() for c in clients]
        self._start = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        machine = psutil.cpu_times()
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
        clients = sum(cpu_seconds(c) for c in self._clients)
        return time.monotonic(), cpu_seconds(self._server), clients, busy

    def read(self) -> CpuUsage:
        end = self._now()
        seconds, server, clients, busy = (b - a for a, b in zip(self._start, end, strict=True))
        return CpuUsage(seconds, server, max(0.0, busy - server - clients))


async def _await_deliveries(
    workers: list[EventWorker], phase: str, expected: int
) -> tuple[int, float | None]:
    """Poll every worker's tally until `expected` arrived or nothing more came for STALL_S."""
    received, last_at = -1, None
    progressed = time.monotonic()
    while True:
        tallies = await asyncio.gather(*(_tally(w, phase) for w in workers))
        total = sum(t.received for t in tallies)
        lasts = [t.last_at for t in tallies if t.last_at is not None]
        last_at = max(lasts) if lasts else None
        if total != received:
            received, progressed = total, time.monotonic()
        if received >= expected or time.monotonic() - progressed > STALL_S:
            return received, last_at
        await asyncio.sleep(POLL_S)


async def _tally(worker: EventWorker, phase: str) -> msg.Tallied:
    await worker.send(msg.Tally(phase=phase))
    return await worker.expect(msg.Tallied, 30)


async def _finish(worker: EventWorker) -> msg.Report:
    await worker.send(msg.Finish())
    return await worker.expect(msg.Report, 30)


def _figures(
    result: ChatBenchmark,
    n: int,
    steady: dict[str, Any],
    burst: dict[str, Any],
    seats: list[msg.SeatReport],
) -> ChatRun:
    latencies = [
        latency
        for seat in seats
        if seat.role == "receiver" and "steady" in seat.phases
        for latency in seat.phases["steady"].latency_ms
    ]
    per_receiver = sorted(
        seat.phases["burst"].received
        for seat in seats
        if seat.role == "receiver"
        if "burst" in seat.phases
    )
    seconds = burst["seconds"]
    refused: dict[str, int] = {}
    for seat in seats:
        for code, count in seat.refused.items():
            refused[code] = refused.get(code, 0) + count
    lost = max(0, steady["expected"] - steady["received"]) + max(
        0, burst["expected"] - burst["received"]
    )
    deliveries = burst["received"]
    participants = n + result.burst_senders
    return ChatRun(
        receivers=n,
        steady_messages=steady["sent"],
        latency_ms_p50=_round(percentile(latencies, 50), 3),
        latency_ms_p95=_round(percentile(latencies, 95), 3),
        latency_ms_max=_round(max(latencies) if latencies else None, 3),
        steady_server_cpu_s_per_s=round(steady["cpu_s_per_s"], 4),
        burst_senders=result.burst_senders,
        burst_messages=burst["sent"],
        burst_deliveries=deliveries,
        burst_seconds=_round(seconds, 3),
        deliveries_per_s=_round(deliveries / seconds if seconds else None, 1),
        receiver_msgs_per_s=_round(
            per_receiver[len(per_receiver) // 2] / seconds if seconds and per_receiver else None,
            1,
        ),
        offered_deliveries_per_s=round(
            result.burst_senders * result.sender_rate_per_s * participants, 1
        ),
        burst_server_cpu_s_per_s=round(burst["cpu_s_per_s"], 4),
        deliveries_per_cpu_s=_round(deliveries / burst["cpu_s"] if burst["cpu_s"] > 0 else None, 0),
        lost=lost,
        out_of_order=sum(phase.out_of_order for seat in seats for phase in seat.phases.values()),
        refused=refused,
        relayed_frame_bytes=next((s.relayed_bytes for s in seats if s.relayed_bytes), None),
        server_rss_mb=0.0,
        steady_other_processes_cores=round(steady["other_cores"], 3),
        burst_other_processes_cores=round(burst["other_cores"], 3),
    )


def _targets(result: ChatBenchmark) -> ChatTargets | None:
    if not result.runs:
        return None
    by_n = {run.receivers: run for run in result.runs}
    n = TARGET_RECEIVERS if TARGET_RECEIVERS in by_n else max(by_n)
    run = by_n[n]
    return ChatTargets(
        receivers=n,
        p95_ms_max=TARGET_P95_MS,
        p95_ms=run.latency_ms_p95,
        p95_met=None if run.latency_ms_p95 is None else run.latency_ms_p95 <= TARGET_P95_MS,
        deliveries_per_core_min=TARGET_DELIVERIES_PER_CORE,
        deliveries_per_cpu_s=run.deliveries_per_cpu_s,
        deliveries_met=(
            None
            if run.deliveries_per_cpu_s is None
            else run.deliveries_per_cpu_s >= TARGET_DELIVERIES_PER_CORE
        ),
    )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# ---- the printed report ---------------------------------------------------------------------

COLUMNS = (
    ("N", ">"),
    ("latency p50/p95/max ms", ">"),
    ("steady CPU-s/s", ">"),
    ("burst msgs", ">"),
    ("deliveries", ">"),
    ("burst s", ">"),
    ("deliveries/s", ">"),
    ("offered/s", ">"),
    ("per receiver msg/s", ">"),
    ("burst CPU-s/s", ">"),
    ("deliveries per CPU-s", ">"),
    ("lost", ">"),
    ("order", "<"),
    ("server RSS MB", ">"),
    ("other procs cores steady/burst", ">"),
)


def _row(run: ChatRun) -> list[str]:
    latency = "/".join(
        num(v, 2) for v in (run.latency_ms_p50, run.latency_ms_p95, run.latency_ms_max)
    )
    return [
        str(run.receivers),
        latency,
        num(run.steady_server_cpu_s_per_s, 3),
        str(run.burst_messages),
        str(run.burst_deliveries),
        num(run.burst_seconds, 2),
        num(run.deliveries_per_s, 0),
        num(run.offered_deliveries_per_s, 0),
        num(run.receiver_msgs_per_s, 0),
        num(run.burst_server_cpu_s_per_s, 3),
        num(run.deliveries_per_cpu_s, 0),
        str(run.lost),
        "ok" if run.out_of_order == 0 else f"BAD ({run.out_of_order})",
        num(run.server_rss_mb, 0),
        f"{num(run.steady_other_processes_cores, 2)}/{num(run.burst_other_processes_cores, 2)}",
    ]


def format_chat_report(result: ChatBenchmark) -> str:
    env = result.environment
    lines = [
        "parloir bench chat: 1 sender + N receivers in one room, chat over the data channel; "
        f"{env['cpus']} CPUs, Python {env['python']}, aiortc {env['aiortc']}",
        f"steady: {result.steady_rate_per_s:g} msg/s for {result.steady_seconds:g} s, latency "
        "= send (stamped in the text) -> arrival at each receiver",
        f"burst: {result.burst_messages} messages from {result.burst_senders} senders (the "
        f"server allows {result.server_rate_limit['rate_per_s']:g} msg/s, burst "
        f"{result.server_rate_limit['burst']:g}, per participant; each sender paces at "
        f"{result.sender_rate_per_s:g}/s, burst {result.sender_burst}); every participant, "
        "senders included, gets every message: deliveries = messages x (N + senders)",
        "server CPU = user+system of the server process (psutil); deliveries per CPU-s = "
        "burst deliveries / server CPU seconds over the burst",
        "",
    ]
    lines += format_table(COLUMNS, [_row(run) for run in result.runs])
    lines.append("")
    targets = result.targets
    if targets is not None:
        at = f"N={targets.receivers}"
        if targets.receivers != TARGET_RECEIVERS:
            at += f" (the targets are stated at N={TARGET_RECEIVERS})"
        p95_ratio = (
            f", {targets.p95_ms / targets.p95_ms_max:.2f}x the limit"
            if targets.p95_ms is not None
            else ""
        )
        lines.append(
            f"target: latency p95 <= {targets.p95_ms_max:g} ms at {at}: "
            f"{verdict(targets.p95_met)} ({num(targets.p95_ms, 2)} ms{p95_ratio})"
        )
        per_core_ratio = (
            f", {targets.deliveries_per_cpu_s / targets.deliveries_per_core_min:.2f}x the target"
            if targets.deliveries_per_cpu_s is not None
            else ""
        )
        lines.append(
            f"target: >= {targets.deliveries_per_core_min:,.0f} deliveries/s per core at {at}: "
            f"{verdict(targets.deliveries_met)} ({num(targets.deliveries_per_cpu_s, 0)} "
            f"deliveries per server CPU-second{per_core_ratio})"
        )
    lines += note_lines(_notes(result))
    return "\n".join(lines)


def _notes(result: ChatBenchmark) -> list[str]:
    notes = []
    frame = next((run.relayed_frame_bytes for run in result.runs if run.relayed_frame_bytes), None)
    if frame is not None:
        notes.append(f"a relayed chat frame is {frame} bytes of JSON")
    for run in result.runs:
        where = f"N={run.receivers}"
        if run.lost:
            notes.append(f"{where}: {run.lost} deliveries never arrived")
        if run.out_of_order:
            notes.append(f"{where}: {run.out_of_order} messages arrived out of order")
        if run.refused:
            notes.append(f"{where}: the server refused messages: {run.refused}")
        if run.deliveries_per_s is not None and (
            run.deliveries_per_s < 0.9 * run.offered_deliveries_per_s
        ):
            notes.append(
                f"{where}: deliveries/s stayed under what the senders offered: the server or "
                "the client processes on the same cores were saturated"
            )
        for phase, cores, suffers in (
            ("steady sending", run.steady_other_processes_cores, "latency"),
            ("burst", run.burst_other_processes_cores, "deliveries/s"),
        ):
            if cores > OTHER_LOAD_CORES:
                notes.append(
                    f"{where}: processes outside the benchmark kept {cores:.2f} cores busy "
                    f"during the {phase}: {suffers} may suffer"
                )
    notes += result.errors
    return notes
