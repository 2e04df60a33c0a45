"""Runs the app on uvloop and announces the bound address (tests read it from stdout)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import sys

from aiohttp import web

from server.app import create_app
from server.refused_requests import install_refused_request_filter
from server.settings import Settings


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "t": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    install_refused_request_filter()
    # aiortc/aioice log every packet decision at DEBUG and ICE chatter at INFO.
    for noisy in () if os.environ.get("PARLOIR_DEBUG_MEDIA") else ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def run_until_stopped(settings: Settings) -> None:
    if settings.workers > 1:  # a supervisor + edge in front of worker processes
        from server.edge import create_edge_app

        app = create_edge_app(settings)
    else:
        app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    ssl_context = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    scheme = "https" if ssl_context else "http"
    print(f"parloir listening on {scheme}://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(settings: Settings) -> None:
    configure_logging(settings)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(run_until_stopped(settings))
    else:
        uvloop.run(run_until_stopped(settings))
