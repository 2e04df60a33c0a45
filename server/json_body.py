"""The one reader of JSON request bodies, for the platform API and the Vonage API alike (and
the whole-body read under it, which Vonage's form-encoded session create uses too).

It refuses what `json.loads` would choke on or hand on as a trap (bodies over 64 KiB, nesting
past the recursion limit, integers past Python's 4300-digit limit, `NaN`/`Infinity`, strings
with lone surrogates that SQLite cannot store) with a `JsonBodyError`; each API family answers
that in its own error shape, in the one place it maps errors.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from aiohttp import web

MAX_BYTES = 64 * 1024
MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a body may have; no route reads more than three."""


class JsonBodyError(Exception):
    """A request body that is not an acceptable JSON object."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        """413 for a body too large, else 400."""
        self.code = code
        """`body-too-large` or `malformed` (the platform API's error codes)."""
        self.message = message
        """What is wrong, for a person reading the response."""


async def read_json_object(request: web.Request, *, required: bool) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}` unless `required`."""
    raw = await read_body(request)
    if not raw:
        if required:
            raise JsonBodyError(400, "malformed", "a JSON body is required")
        return {}
    return parse_json_object(raw)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A body already read, as a JSON object (the checks of `read_json_object`)."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise JsonBodyError(400, "malformed", "body is nested too deeply") from exc
    except ValueError as exc:  # also JSONDecodeError, UnicodeDecodeError, over-long integers
        raise JsonBodyError(400, "malformed", f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise JsonBodyError(400, "malformed", "body must be a JSON object")
    _check_values(data)
    return data


async def read_body(request: web.Request, max_bytes: int = MAX_BYTES) -> bytes:
    """The whole body, JSON or not; a 413 `JsonBodyError` past `max_bytes`."""
    too_large = JsonBodyError(413, "body-too-large", f"body exceeds {max_bytes} bytes")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    # `content.read(n)` returns what has arrived so far; a body in several TCP segments needs
    # reading to its end.
    raw = bytearray()
    while chunk := await request.content.read(max_bytes + 1 - len(raw)):
        raw += chunk
        if len(raw) > max_bytes:
            raise too_large
    return bytes(raw)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _check_values(data: Any) -> None:
    """Nesting depth and string encodability, without recursion."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise JsonBodyError(400, "malformed", f"body is nested deeper than {MAX_DEPTH}")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key)
                pending.append((item, depth + 1))


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JsonBodyError(
            400, "malformed", "body has a string with an unpaired surrogate (\\ud800-\\udfff)"
        ) from exc
