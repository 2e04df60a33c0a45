"""One media worker process of `parloir serve --workers N` (started by server/supervisor.py).

It runs the ordinary app on a private loopback port, for the rooms the edge places on it. It
reads its Settings (pickled, base64, one line) from stdin, so flags, environment and generated
credentials are exactly the supervisor's, and prints its address on stdout. The duties that must
run once per server (crash recovery at start, webhook delivery) are left to the supervisor:
`Settings.worker_index` tells the app so. If the supervisor dies, the kernel sends this process
SIGTERM (PR_SET_PDEATHSIG): no orphaned worker keeps ports and rooms.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import logging
import os
import pickle
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.app import create_app
from server.runner import configure_logging
from server.settings import Settings

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
LISTENING = "parloir worker listening on "

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def encode_settings(settings: Settings) -> bytes:
    return base64.b64encode(pickle.dumps(settings)) + b"\n"


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGTERM still stops us
        pass


@web.middleware
async def forwarded_client(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only the edge talks to a worker (its port is on loopback): X-Forwarded-Proto is the
    scheme the client used (links built from request.scheme, e.g. archive download URLs, stay
    https) and the last X-Forwarded-For entry the client's address as the edge saw it (what
    logs and the audit trail name, instead of 127.0.0.1)."""
    changes: dict[str, str] = {}
    scheme = request.headers.get("X-Forwarded-Proto")
    if scheme in ("http", "https") and scheme != request.scheme:
        changes["scheme"] = scheme
    if forwarded_for := request.headers.get("X-Forwarded-For"):
        changes["remote"] = forwarded_for.rsplit(",", 1)[-1].strip()
    if changes:
        request = request.clone(**changes)  # type: ignore[arg-type]
    return await handler(request)


async def run_worker(settings: Settings) -> None:
    app = create_app(settings)
    app.middlewares.insert(0, forwarded_client)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"{LISTENING}http://127.0.0.1:{port}", flush=True)
    log.info("serving rooms on 127.0.0.1:%d (pid %d)", port, os.getpid())
    stop = asyncio.Event()
    # SIGTERM comes from the supervisor (or the kernel, if the supervisor died). Ctrl-C reaches
    # the whole process group: the supervisor stops the workers itself, in order, and must not
    # see them exit on their own first (it would report them dead and replace them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class WorkerTag(logging.Filter):
    """Says which worker a log line comes from (all workers share the server's stderr)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.prefix = f"[worker {index}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and not record.msg.startswith(self.prefix):
            record.msg = self.prefix + record.msg
        return True


def main() -> None:
    _die_with_parent()
    settings = pickle.loads(base64.b64decode(sys.stdin.buffer.readline()))
    assert isinstance(settings, Settings) and settings.worker_index is not None
    configure_logging(settings)
    for handler in logging.getLogger().handlers:
        handler.addFilter(WorkerTag(settings.worker_index))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(run_worker(settings))
    else:
        uvloop.run(run_worker(settings))


if __name__ == "__main__":
    main()
