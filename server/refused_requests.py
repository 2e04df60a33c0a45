"""A request aiohttp refuses before routing (over-long line, bad header) is one warning line.

aiohttp answers such a request with a 4xx itself, but logs it through `aiohttp.server` at ERROR
with a traceback: any client could flood the error log. This filter rewrites those records to a
single WARNING without the traceback or the offending bytes; server errors (5xx) are untouched.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

AIOHTTP_SERVER_LOGGER = "aiohttp.server"


class RefusedRequestFilter(logging.Filter):
    """Turns aiohttp's ERROR-with-traceback for a client's malformed request into a WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            # The remote address is the first argument of aiohttp's "Error handling request
            # from %s"; the exception's own message would repeat up to 8 KiB of the client's
            # bytes, so only its kind is kept.
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "refused a malformed request from %s: %s (%d)"
            record.args = (remote, type(exc).__name__, exc.code)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def install_refused_request_filter() -> None:
    """Adds the filter to aiohttp's server logger once (idempotent)."""
    logger = logging.getLogger(AIOHTTP_SERVER_LOGGER)
    if not any(isinstance(f, RefusedRequestFilter) for f in logger.filters):
        logger.addFilter(RefusedRequestFilter())
