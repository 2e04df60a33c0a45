"""The worker processes of `parloir serve --workers N`, and the duties that run once per server.

The supervisor starts N `python -m server.worker` processes (one per core is the intent: one
Python process uses about one core), watches them and replaces any that dies. A dead worker takes
its rooms with it, and only them: the supervisor logs it at ERROR, counts it (metrics), releases
the rooms' placements, closes the telemetry their calls left open and marks their interrupted
recordings failed (playable up to the crash) — never another worker's, which are still live.

What must happen once per server, not once per worker, runs here: recording and telemetry
recovery at start (before any worker runs, so nothing live is touched) and webhook delivery
(workers only enqueue into the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import psutil

from server.placement import RoomPlacements
from server.settings import Settings
from server.worker import LISTENING, encode_settings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
HEALTH_INTERVAL_S = 1.0
STOP_TIMEOUT_S = 15.0
RESTART_DELAYS_S = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Wait before replacing a worker that died again and again within STABLE_S of its start."""
STABLE_S = 30.0
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class WorkerProcess:
    """One worker slot and the process currently serving it."""

    index: int
    process: asyncio.subprocess.Process | None = None
    port: int | None = None
    up: bool = False
    started_at: float = 0.0
    rooms: int = 0
    """Live rooms, from its last /healthz."""
    participants: int = 0
    placed_since_poll: int = 0
    """Rooms placed on it since that /healthz answered (the count does not include them yet)."""
    exits: int = 0
    """Processes of this slot that died while the server was running."""
    quick_exits: int = 0
    last_exit: str = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> dict[str, object]:
        return {
            "worker": self.index,
            "pid": self.pid,
            "up": self.up,
            "rooms": self.rooms,
            "participants": self.participants,
            "exits": self.exits,
            "last_exit": self.last_exit or None,
        }


WorkerLost = Callable[[WorkerProcess, list[str]], Awaitable[None]]


@dataclass
class Supervisor:
    settings: Settings
    placements: RoomPlacements
    on_worker_lost: WorkerLost
    """Told, with the rooms it held, once a dead worker's placements are released."""
    workers: list[WorkerProcess] = field(default_factory=list)
    _stopping: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None
    _round_robin: int = 0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        self.workers = [WorkerProcess(index) for index in range(self.settings.workers)]
        await asyncio.gather(*(self._spawn(worker) for worker in self.workers))
        self._keep(self._poll_health())

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("worker %d (pid %s) ignored SIGTERM: killed", worker.index, worker.pid)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # ---- placement -------------------------------------------------------------------------

    def choose(self) -> tuple[int, int]:
        """The live worker with the fewest rooms (ties: the next in turn) -> (index, pid)."""
        live = [w for w in self.workers if w.up and w.pid is not None]
        if not live:
            raise NoWorker("no worker process is serving")
        self._round_robin += 1
        n = len(self.workers)
        worker = min(
            live,
            key=lambda w: (w.rooms + w.placed_since_poll, (w.index - self._round_robin) % n),
        )
        worker.placed_since_poll += 1
        assert worker.pid is not None
        return worker.index, worker.pid

    def any_worker(self) -> WorkerProcess:
        """For requests bound to no room: the least busy live worker."""
        live = [w for w in self.workers if w.up]
        if not live:
            raise NoWorker("no worker process is serving")
        self._round_robin += 1
        n = len(self.workers)
        return min(live, key=lambda w: (w.participants, (w.index - self._round_robin) % n))

    def worker(self, index: int) -> WorkerProcess | None:
        worker = self.workers[index] if 0 <= index < len(self.workers) else None
        return worker if worker is not None and worker.up else None

    # ---- processes -------------------------------------------------------------------------

    async def _spawn(self, worker: WorkerProcess) -> None:
        # The worker keeps the edge's host, port and public_url: links it hands out name the edge
        # (Settings.link_base), never its own private loopback port.
        settings = replace(self.settings, worker_index=worker.index, workers=1)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        worker.process, worker.started_at, worker.up = process, time.monotonic(), False
        worker.rooms = worker.participants = worker.placed_since_poll = 0
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(encode_settings(settings))
        await process.stdin.drain()
        process.stdin.close()
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith(LISTENING):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise WorkerStartError(
                f"worker {worker.index} did not start (exit {process.returncode}): {text!r}"
            )
        worker.port = int(text.rsplit(":", 1)[1])
        worker.up = True
        log.info("worker %d started: pid %d on port %d", worker.index, process.pid, worker.port)
        self._keep(self._watch(worker, process))

    async def _watch(self, worker: WorkerProcess, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self._stopping:
            return
        worker.up = False
        worker.exits += 1
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        worker.last_exit = how
        rooms = await self.placements.release_worker(worker.index)
        log.error(
            "worker %d (pid %d) died (%s): its %d room(s) ended: %s",
            worker.index,
            process.pid,
            how,
            len(rooms),
            ", ".join(rooms) or "none",
        )
        try:
            await self.on_worker_lost(worker, rooms)
        except Exception:
            log.exception("closing the rooms of worker %d failed", worker.index)
        quick = time.monotonic() - worker.started_at < STABLE_S
        worker.quick_exits = worker.quick_exits + 1 if quick else 0
        delay = RESTART_DELAYS_S[min(worker.quick_exits, len(RESTART_DELAYS_S) - 1)]
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._spawn(worker)
                return
            except (WorkerStartError, OSError) as exc:
                log.error("replacing worker %d failed: %s", worker.index, exc)
                delay = RESTART_DELAYS_S[-1]

    async def _poll_health(self) -> None:
        assert self._session is not None
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_S)
            for worker in self.workers:
                if not worker.up:
                    continue
                try:
                    async with self._session.get(worker.url + "/healthz") as response:
                        health = await response.json()
                    worker.rooms = int(health.get("rooms", 0))
                    worker.participants = int(health.get("participants", 0))
                    worker.placed_since_poll = 0
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    log.warning("worker %d did not answer /healthz: %s", worker.index, exc)

    def _keep(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def wait_for_previous_workers(pids: set[int], timeout_s: float = STOP_TIMEOUT_S) -> list[int]:
    """Blocking: let a previous run's workers finish stopping (a supervisor killed with -9 has
    its workers sent SIGTERM; they close their recordings properly). Returns those that did not
    stop in time (their recordings are then recovered as interrupted, as after any crash)."""
    processes = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if "server.worker" in " ".join(process.cmdline()):
                processes.append(process)
        except psutil.Error:
            continue
    if processes:
        log.warning("waiting for %d worker(s) of the previous run to stop", len(processes))
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    return [p.pid for p in alive]


class NoWorker(Exception):
    """No worker process can take the request (all are down or restarting)."""


class WorkerStartError(Exception):
    """A worker process exited or said nothing before listening."""
