"""/metrics, /healthz and /readyz of a multi-worker server, answered by its edge.

/metrics: every worker's own metrics (scraped from its private port at request time), each
sample labelled `worker="<index>"`, plus the edge's process metrics (`worker="edge"`) and the
supervisor's view: parloir_worker_up, parloir_worker_exits_total, parloir_workers. Summing a
metric over `worker` gives the server's figure (process_cpu_seconds_total: all its processes).
/readyz: database and data dir as on a single server, plus the workers: `degraded` (still 200,
the other workers serve) while one is down, 503 when none serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector

from server.keys import SETTINGS
from server.metrics import storage_problems
from server.placement import RoomPlacements
from server.storage import Database

if TYPE_CHECKING:
    from server.supervisor import Supervisor, WorkerProcess

SCRAPE_TIMEOUT_S = 3.0

SUPERVISOR: web.AppKey[Supervisor] = web.AppKey("supervisor")
PLACEMENTS = web.AppKey("placements", RoomPlacements)
EDGE_DATABASE = web.AppKey("edge_database", Database)


class MergedMetrics:
    """Collector yielding already-built families (the scrape's result)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def merge_worker_metrics(texts: dict[str, str]) -> list[Metric]:
    """Families of several processes' Prometheus text, each sample labelled with its worker."""
    merged: dict[str, Metric] = {}
    for worker, text in texts.items():
        for family in text_string_to_metric_families(text):
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                target.add_sample(
                    sample.name, {**sample.labels, "worker": worker}, sample.value, sample.timestamp
                )
    return list(merged.values())


def _supervisor(app: web.Application) -> Supervisor:
    return app[SUPERVISOR]


async def _scrape(session: aiohttp.ClientSession, worker: WorkerProcess) -> str | None:
    try:
        async with session.get(worker.url + "/metrics") as response:
            return await response.text() if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def metrics(request: web.Request) -> web.Response:
    supervisor = _supervisor(request.app)
    live = [w for w in supervisor.workers if w.up]
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        texts = await asyncio.gather(*(_scrape(session, w) for w in live))
    by_worker = {str(w.index): t for w, t in zip(live, texts, strict=True) if t is not None}
    edge_registry = CollectorRegistry()
    ProcessCollector(registry=edge_registry)
    by_worker["edge"] = generate_latest(edge_registry).decode()
    families = merge_worker_metrics(by_worker)
    up = GaugeMetricFamily(
        "parloir_worker_up", "1 while the worker process serves its rooms", labels=["worker"]
    )
    exits = CounterMetricFamily(
        "parloir_worker_exits",
        "Worker processes that died while the server ran (their rooms ended)",
        labels=["worker"],
    )
    scraped = GaugeMetricFamily(
        "parloir_worker_scraped",
        "1 if the worker's /metrics answered this scrape",
        labels=["worker"],
    )
    for worker in supervisor.workers:
        up.add_metric([str(worker.index)], 1.0 if worker.up else 0.0)
        exits.add_metric([str(worker.index)], worker.exits)
        scraped.add_metric([str(worker.index)], 1.0 if str(worker.index) in by_worker else 0.0)
    families += [
        GaugeMetricFamily(
            "parloir_workers", "Worker processes configured", value=len(supervisor.workers)
        ),
        up,
        exits,
        scraped,
    ]
    registry = CollectorRegistry()
    registry.register(MergedMetrics(families))  # type: ignore[arg-type]
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def _workers(app: web.Application) -> list[dict[str, Any]]:
    return [w.describe() for w in _supervisor(app).workers]


async def healthz(request: web.Request) -> web.Response:
    workers = _workers(request.app)
    return web.json_response(
        {
            "status": "ok",
            "rooms": sum(int(str(w["rooms"])) for w in workers if w["up"]),
            "participants": sum(int(str(w["participants"])) for w in workers if w["up"]),
            "workers": workers,
        }
    )


async def readyz(request: web.Request) -> web.Response:
    problems = await storage_problems(request.app[EDGE_DATABASE], request.app[SETTINGS].data_dir)
    workers = _supervisor(request.app).workers
    down = [w for w in workers if not w.up]
    for worker in down:
        problems.append(
            f"worker {worker.index} is down ({worker.last_exit or 'starting'}); restarting"
        )
    serving = len(workers) - len(down)
    ready = serving > 0 and not problems[: len(problems) - len(down)]
    status = "ok" if ready and not down else "degraded" if ready else "unavailable"
    return web.json_response(
        {"ready": ready, "status": status, "problems": problems, "workers": _workers(request.app)},
        status=200 if ready else 503,
    )


def add_edge_health_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
