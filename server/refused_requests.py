"""A request aiohttp's parser refuses (over-long line, bad header) gets a JSON 400, one warning.

aiohttp answers such a request itself, before any route or middleware sees it: with a text body
that echoes up to 8 KiB of the client's bytes, and an ERROR log line with a traceback, so any
client could flood the error log, and API clients expecting a JSON error (the Vonage SDKs read
`message`) got text. `RefusingRequestHandler` answers JSON in both API families' shapes and logs
a single WARNING; the log filter does the same for any other such record aiohttp logs.
Server errors (5xx) keep aiohttp's handling.
"""

from __future__ import annotations

import logging

from aiohttp import web, web_server
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

AIOHTTP_SERVER_LOGGER = "aiohttp.server"

log = logging.getLogger(__name__)


def _refused(exc: BaseException | None) -> HttpProcessingError | None:
    """The parser's complaint about a client's request, if that is what `exc` is."""
    if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
        return exc
    return None


class RefusingRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering a request its parser refuses with JSON."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        refused = _refused(exc)
        if refused is None or status >= 500:
            return super().handle_error(request, status, exc, message)
        kind = type(refused).__name__
        log.warning("refused a malformed request from %s: %s (%d)", request.remote, kind, status)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started, cannot send the refusal")
        # Both error shapes: the platform API's `error`, Vonage's `code`; `message` for both.
        body = {"code": status, "error": "malformed-request", "message": f"request refused: {kind}"}
        response = web.json_response(body, status=status)
        response.force_close()
        return response


class RefusedRequestFilter(logging.Filter):
    """Turns aiohttp's ERROR-with-traceback for a client's malformed request into a WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        refused = _refused(record.exc_info[1] if record.exc_info else None)
        if refused is not None:
            # The exception's own message would repeat up to 8 KiB of the client's bytes.
            record.msg = "refused a malformed request: %s (%d)"
            record.args = (type(refused).__name__, refused.code)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def install_refused_request_filter() -> None:
    """Refused requests in this process: JSON answers and one warning line (idempotent).

    aiohttp has no setting for its connection handler's class; `web.Server` creates one per
    connection by the module-level name, which is what this replaces. Called where logging is
    configured, so the single-process server and every worker get it.
    """
    setattr(web_server, "RequestHandler", RefusingRequestHandler)  # noqa: B010
    logger = logging.getLogger(AIOHTTP_SERVER_LOGGER)
    if not any(isinstance(f, RefusedRequestFilter) for f in logger.filters):
        logger.addFilter(RefusedRequestFilter())
