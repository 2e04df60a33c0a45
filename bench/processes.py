"""The benchmark's child processes: the server under test and JSON-line workers.

No child outlives the benchmark: each is started with PR_SET_PDEATHSIG (SIGTERM when the
benchmark dies, even by SIGKILL), workers exit when their stdin closes, and `ProcessGroup`
terminates, then kills, whatever is still running when its block exits, on success or error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import psutil
from pydantic import BaseModel, TypeAdapter, ValidationError

from bench.messages import EVENT, Event, Failed

REPO_ROOT = Path(__file__).resolve().parents[1]
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

E = TypeVar("E", bound=BaseModel)
T = TypeVar("T")
C = TypeVar("C", bound=BaseModel)


class BenchmarkError(RuntimeError):
    """A process of the benchmark failed; the message carries the tail of its log."""


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when the benchmark process dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        with path.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except OSError:
        return ""


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU time of a process, all threads, children excluded."""
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    """The child's stderr."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def psutil(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def failure(self, what: str) -> BenchmarkError:
        state = "running" if self.alive else f"exited with {self.process.returncode}"
        return BenchmarkError(
            f"{self.name} ({state}): {what}\n--- {self.name} log tail ---\n"
            f"{log_tail(self.log_path)}"
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        """Close stdin (workers exit on EOF), then SIGTERM, then SIGKILL; always reaps."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        if self.alive:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace_s)
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace_s)
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


class Worker(Child):
    """A `python -m bench.<module>` process: config and commands in, events out."""

    async def send(self, message: BaseModel) -> None:
        stdin = self.process.stdin
        if stdin is None or stdin.is_closing():
            raise self.failure("stdin is closed")
        stdin.write(message.model_dump_json().encode() + b"\n")
        try:
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self.failure(f"cannot write to it: {exc}") from exc

    async def receive(self, timeout_s: float) -> Event:
        """The next event line, validated against the forwarding benchmark's `EVENT`."""
        return await self.receive_as(EVENT, timeout_s)

    async def receive_as(self, events: TypeAdapter[T], timeout_s: float) -> T:
        """The next line the worker prints, validated by `events`."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.failure(f"no event within {timeout_s:.0f} s")
            try:
                line = await asyncio.wait_for(stdout.readline(), remaining)
            except TimeoutError:
                raise self.failure(f"no event within {timeout_s:.0f} s") from None
            if not line:
                raise self.failure("its output ended")
            try:
                return events.validate_json(line)
            except ValidationError as exc:
                raise self.failure(f"unexpected output {line[:200]!r}: {exc}") from exc

    async def expect(self, kind: type[E], timeout_s: float) -> E:
        event = await self.receive(timeout_s)
        if isinstance(event, Failed):
            raise self.failure(event.error)
        if not isinstance(event, kind):
            raise self.failure(f"sent {event.event!r} where {kind.__name__} was expected")
        return event


@dataclass
class ServerUnderTest(Child):
    url: str = ""
    """http://127.0.0.1:PORT"""


class ProcessGroup:
    """Starts children and guarantees they are gone when the `async with` block ends."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    async def __aenter__(self) -> ProcessGroup:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop_all()

    async def stop_all(self) -> None:
        # Shielded: a Ctrl-C while stopping must not leave half of them running.
        children, self.children = self.children, []
        await asyncio.shield(asyncio.gather(*(c.stop() for c in children)))

    async def _spawn(
        self, name: str, args: list[str], env: dict[str, str]
    ) -> tuple[asyncio.subprocess.Process, Path]:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("w") as log_file:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env=env,
                cwd=REPO_ROOT,
                preexec_fn=_die_with_parent,
                limit=16 * 1024 * 1024,
            )
        return process, log_path

    async def start_worker(self, name: str, module: str) -> Worker:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process, log_path = await self._spawn(name, [sys.executable, "-m", module], env)
        worker = Worker(name, process, log_path)
        self.children.append(worker)
        return worker

    async def start_server(
        self, name: str, env_overrides: dict[str, str], timeout_s: float = 30.0
    ) -> ServerUnderTest:
        """`parloir serve` on a free loopback port; returns once it printed its URL."""
        env = {**os.environ, **env_overrides}
        args = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
        process, log_path = await self._spawn(name, args, env)
        server = ServerUnderTest(name, process, log_path)
        self.children.append(server)
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                remaining = deadline - time.monotonic()
                line = await asyncio.wait_for(process.stdout.readline(), remaining)
            except TimeoutError:
                break
            if not line:
                raise server.failure("exited before listening")
            text = line.decode(errors="replace")
            if text.startswith("parloir listening on "):
                server.url = text.split()[-1]
                return server
        raise server.failure(f"did not listen within {timeout_s:.0f} s")


def emit(event: BaseModel) -> None:
    """Worker side: one event, one line on stdout."""
    sys.stdout.write(event.model_dump_json() + "\n")
    sys.stdout.flush()


async def open_commands() -> asyncio.StreamReader:
    """Worker side: stdin as an asyncio stream (config line, then commands)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def serve_worker(
    config_type: type[C], serve: Callable[[C, asyncio.StreamReader], Awaitable[None]]
) -> None:
    """Worker side: read the config line, then `serve(config, commands)` until it returns; any
    failure is emitted as a `Failed` event (the benchmark reports it) before it propagates."""
    commands = await open_commands()
    try:
        config = config_type.model_validate_json(await commands.readline())
        await serve(config, commands)
    except Exception as exc:
        emit(Failed(error=describe_error(exc)))
        raise
