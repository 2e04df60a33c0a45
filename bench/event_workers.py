"""Worker processes that speak their own events, started and stopped by `ProcessGroup`.

`Worker.receive` validates every line against `bench.messages.EVENT`, the forwarding
benchmark's events. The chat benchmark and the load test have events of their own: an
`EventWorker` is the same child process, with the adapter it validates against given at start.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from bench.processes import ProcessGroup, Worker


@dataclass
class EventWorker(Worker):
    events: TypeAdapter[Any] | None = None
    """Validates each line the worker prints; its union must include `bench.messages.Failed`
    for `expect` to turn a worker's failure into a `BenchmarkError`."""

    async def receive(self, timeout_s: float) -> Any:
        assert self.events is not None
        return await self.receive_as(self.events, timeout_s)


async def start_event_worker(
    group: ProcessGroup, name: str, module: str, events: TypeAdapter[Any]
) -> EventWorker:
    """`python -m <module>` in `group`, its events validated by `events`."""
    plain = await group.start_worker(name, module)
    worker = EventWorker(plain.name, plain.process, plain.log_path, events)
    group.children[group.children.index(plain)] = worker
    return worker


async def stop_workers(group: ProcessGroup, workers: list[EventWorker], grace_s: float) -> None:
    """Workers leave their room when stdin closes; killed if they take longer than `grace_s`."""
    await asyncio.gather(*(w.stop(grace_s=grace_s) for w in workers))
    for worker in workers:
        if worker in group.children:
            group.children.remove(worker)
