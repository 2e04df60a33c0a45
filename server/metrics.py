"""/metrics (Prometheus text format), /healthz (liveness) and /readyz (database, data dir).

Gauges are read from the live state at scrape time, so they cannot drift from it; counters are
kept by the parts that count (forwarders, keyframe requesters, the API, the signaling
connections) and summed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from media.blur import BlurredSource
from media.peers import PEER_CONNECTIONS
from server.api import API_ERRORS
from server.keys import DATABASE, RECORDINGS, REGISTRY, SETTINGS, WEBHOOKS
from server.storage import Database

log = logging.getLogger(__name__)

LAG_PROBE_S = 0.5


class LoopLag:
    """How late the event loop wakes up: the latency every signaling message and packet sees."""

    def __init__(self) -> None:
        self.last_s = 0.0
        self.max_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._probe())

    async def _probe(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            self.last_s = max(0.0, time.monotonic() - started - LAG_PROBE_S)
            self.max_s = max(self.max_s, self.last_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


LOOP_LAG = web.AppKey("loop_lag", LoopLag)
WEBHOOK_DEPTH = web.AppKey("webhook_depth", list)


class ParloirCollector:
    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Any]:
        app = self._app
        registry = app[REGISTRY]
        rooms = list(registry.rooms.values())
        participants = [p for room in rooms for p in room.participants.values()]
        publications = [pub for room in rooms for pub in room.live_publications()]
        sources = [s for pub in publications for s in pub.sources.values()]
        subscriptions = sum(
            len(p.subscriber.subscriptions) for p in participants if p.subscriber is not None
        )

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("parloir_rooms", "Live rooms", len(rooms))
        yield gauge("parloir_participants", "Connected participants", len(participants))
        yield gauge("parloir_publications", "Live publications", len(publications))
        yield gauge("parloir_subscriptions", "Tracks sent to subscribers", subscriptions)
        yield gauge("parloir_peer_connections", "Open SFU peer connections", PEER_CONNECTIONS.open)
        frames = CounterMetricFamily(
            "parloir_received_frames",
            "Encoded frames received from publishers (live tracks)",
            labels=["kind"],
        )
        received_bytes = CounterMetricFamily(
            "parloir_received_bytes",
            "Encoded bytes received from publishers (live tracks)",
            labels=["kind"],
        )
        for kind in ("audio", "video"):
            stats = [getattr(s, "stats", None) for s in sources if s.kind == kind]
            frames.add_metric([kind], sum(st.frames for st in stats if st is not None))
            received_bytes.add_metric([kind], sum(st.bytes for st in stats if st is not None))
        yield frames
        yield received_bytes
        forwarded = sum(
            getattr(s.track, "delivered", 0)
            for p in participants
            if p.subscriber is not None
            for s in p.subscriber.subscriptions.values()
        )
        yield CounterMetricFamily(
            "parloir_forwarded_frames",
            "Frames handed to subscribers' senders (live)",
            value=forwarded,
        )
        keyframes = sum(
            s.keyframe_requests.sent for s in sources if hasattr(s, "keyframe_requests")
        )
        yield CounterMetricFamily(
            "parloir_keyframe_requests", "PLIs sent to publishers (live tracks)", value=keyframes
        )
        yield CounterMetricFamily(
            "parloir_fallback_transcodes",
            "Subscribers served by decode/re-encode because they lack the room codec",
            value=0,
        )
        blurred = [s for s in sources if isinstance(s, BlurredSource) and s.status.requested]
        yield gauge("parloir_blur_streams", "Camera streams being blurred", len(blurred))
        latencies = [s.blur_stats.mean_latency_ms() for s in blurred]
        measured = [ms for ms in latencies if ms is not None]
        yield gauge(
            "parloir_blur_latency_ms",
            "Mean added latency of blurred streams",
            sum(measured) / len(measured) if measured else 0.0,
        )
        recordings = app.get(RECORDINGS)
        yield gauge(
            "parloir_recordings_active",
            "Recordings in progress",
            len(recordings.active) if recordings is not None else 0,
        )
        yield gauge(
            "parloir_event_loop_lag_seconds",
            "Event loop wake-up delay (last probe)",
            app[LOOP_LAG].last_s,
        )
        yield gauge(
            "parloir_event_loop_lag_max_seconds",
            "Worst event loop delay since start",
            app[LOOP_LAG].max_s,
        )
        yield gauge(
            "parloir_webhook_queue_depth", "Webhooks waiting for delivery", app[WEBHOOK_DEPTH][0]
        )
        errors = CounterMetricFamily(
            "parloir_errors", "Errors answered to clients, by code", labels=["origin", "code"]
        )
        for code, count in sorted(registry.error_counts.items()):
            errors.add_metric(["signaling", code], count)
        for code, count in sorted(API_ERRORS.items()):
            errors.add_metric(["api", code], count)
        yield errors


async def metrics(request: web.Request) -> web.Response:
    # The outbox depth needs the database: read it before the synchronous collection.
    with contextlib.suppress(Exception):
        request.app[WEBHOOK_DEPTH][0] = await request.app[WEBHOOKS].pending_count()
    registry = CollectorRegistry()
    registry.register(ParloirCollector(request.app))  # type: ignore[arg-type]
    registry.register(ProcessCollector(registry=None))  # type: ignore[arg-type]
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return web.json_response(
        {"status": "ok", "rooms": len(registry.rooms), "participants": registry.participant_count()}
    )


async def storage_problems(database: Database, data_dir: Path) -> list[str]:
    """What keeps a server from being ready on its own side: the database does not answer, or
    the data directory cannot be written."""
    problems = []
    try:
        async with database.connection.execute("SELECT 1") as cursor:
            await cursor.fetchone()
    except Exception as exc:
        problems.append(f"database: {exc}")
    try:
        await asyncio.to_thread(_probe_writable, data_dir)
    except OSError as exc:
        problems.append(f"data dir {data_dir}: {exc}")
    return problems


async def readyz(request: web.Request) -> web.Response:
    problems = await storage_problems(request.app[DATABASE], request.app[SETTINGS].data_dir)
    status = 200 if not problems else 503
    return web.json_response({"ready": not problems, "problems": problems}, status=status)


def _probe_writable(directory: os.PathLike[str]) -> None:
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".ready-", delete=True) as handle:
        handle.write(b"ok")
        handle.flush()


async def loop_lag_context(app: web.Application) -> AsyncIterator[None]:
    app[LOOP_LAG] = LoopLag()
    app[WEBHOOK_DEPTH] = [0]
    app[LOOP_LAG].start()
    yield
    await app[LOOP_LAG].stop()


def add_metrics_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.cleanup_ctx.append(loop_lag_context)
