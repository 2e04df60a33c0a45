"""Requests to the Vonage REST API (not in /openapi.json): every route, with plausible or junk
parameters, bodies and credentials; placeholders stand for the live session's ids."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from typing import Any

from hypothesis import strategies as st

from tests.support.fuzz.http_calls import ApiCall, path_parameters
from tests.support.fuzz.payloads import Payload, hostile_json_texts
from tests.support.fuzz.values import (
    NASTY_STRINGS,
    any_text,
    json_values,
    recursion_safe_dumps,
    repeated,
    weighted,
)
from tests.support.fuzz.vonage_tokens import b64url, vonage_auth

LIVE_SESSION = "$live-session"
IDLE_SESSION = "$idle-session"
LIVE_STREAM = "$live-stream"
LIVE_CONNECTION = "$live-connection"
KNOWN_ARCHIVE = "$archive"
PLACEHOLDERS = (LIVE_SESSION, IDLE_SESSION, LIVE_STREAM, LIVE_CONNECTION, KNOWN_ARCHIVE)
"""Stand for the live session's ids in generated paths and bodies (`LiveVonageSession.resolve`)."""


PROJECT = "/v2/project/{project}"
SESSION = PROJECT + "/session/{session}"
ARCHIVE = PROJECT + "/archive"

VONAGE_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/session/create", "form"),
    ("GET", SESSION + "/stream", ""),
    ("PUT", SESSION + "/stream", "stream-classes"),
    ("GET", SESSION + "/stream/{stream}", ""),
    ("POST", SESSION + "/stream/{stream}/mute", "junk"),
    ("POST", SESSION + "/mute", "mute"),
    ("POST", SESSION + "/signal", "signal"),
    ("POST", SESSION + "/connection/{connection}/signal", "signal"),
    ("DELETE", SESSION + "/connection/{connection}", ""),
    ("POST", SESSION + "/play-dtmf", "junk"),
    ("POST", SESSION + "/connection/{connection}/play-dtmf", "junk"),
    ("POST", PROJECT + "/broadcast", "junk"),
    ("GET", PROJECT + "/broadcast/{id}", ""),
    ("PUT", PROJECT + "/broadcast/{id}/layout", "junk"),
    ("POST", PROJECT + "/dial", "junk"),
    ("POST", PROJECT + "/render", "junk"),
    ("DELETE", PROJECT + "/captions/{id}/stop", ""),
    ("POST", ARCHIVE, "archive"),
    ("GET", ARCHIVE, "list"),
    ("GET", ARCHIVE + "/{archive}", ""),
    ("DELETE", ARCHIVE + "/{archive}", ""),
    ("POST", ARCHIVE + "/{archive}/stop", ""),
    ("PUT", ARCHIVE + "/{archive}/layout", "layout"),
    ("PATCH", ARCHIVE + "/{archive}/streams", "streams"),
)

_RESOLUTIONS = ["640x480", "1280x720", "1920x1080", "480x640", "720x1280", "1080x1920", "1x1", ""]
_LAYOUTS = ["bestFit", "custom", "pip", "horizontalPresentation", "verticalPresentation", "x"]


def _fields(
    required: tuple[str, ...] = (), /, **plausible: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """A body with these fields (each plausible, or sometimes junk); only `required` ones are
    always there."""
    values = {k: weighted((4, v), (1, json_values())) for k, v in plausible.items()}
    return st.fixed_dictionaries(
        {k: v for k, v in values.items() if k in required},
        optional={k: v for k, v in values.items() if k not in required},
    )


def vonage_bodies(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    ids = weighted((4, st.sampled_from([LIVE_STREAM, str(uuid.uuid4()), ""])), (1, any_text(20)))
    sessions = weighted(
        (4, st.sampled_from([LIVE_SESSION, LIVE_SESSION, IDLE_SESSION, "1_abc", ""])),
        (1, any_text(20)),
    )
    if kind == "form":
        return _fields(
            **{
                "p2p.preference": st.sampled_from(["enabled", "disabled"]),
                "media_mode": st.sampled_from(["routed", "relayed", "x"]),
                "archiveMode": st.sampled_from(["manual", "always", "x"]),
                "archiveResolution": st.sampled_from(_RESOLUTIONS),
                "archiveName": any_text(90),
                "e2ee": st.sampled_from(["true", "false", "TRUE", ""]),
                "location": st.sampled_from(["127.0.0.1", "~", "1~2~3", ""]) | any_text(),
            }
        )
    if kind == "stream-classes":
        item = _fields(id=ids, layoutClassList=st.lists(any_text(10), max_size=3))
        return _fields(items=st.lists(item, max_size=3))
    if kind == "mute":
        return _fields(
            active=st.booleans(),
            excludedStreamIds=st.lists(ids, max_size=2),
            excludedStreams=st.lists(ids, max_size=2),
        )
    if kind == "signal":
        return _fields(
            type=st.sampled_from(["chat", "", "bad type!"]) | repeated(("a", 128), ("a", 129)),
            data=st.sampled_from(["hi", ""])
            | repeated(("x", 8192), ("x", 8193), ("é", 4097))
            | any_text(),
        )
    if kind == "archive":
        return _fields(
            ("sessionId",),
            sessionId=sessions,
            name=any_text(90),
            outputMode=st.sampled_from(["composed", "individual", "x"]),
            resolution=st.sampled_from(_RESOLUTIONS),
            hasAudio=st.booleans(),
            hasVideo=st.booleans(),
            streamMode=st.sampled_from(["auto", "manual", "x"]),
            layout=_fields(type=st.sampled_from(_LAYOUTS), stylesheet=any_text()),
            multiArchiveTag=any_text(20),
        )
    if kind == "layout":
        return _fields(
            type=st.sampled_from(_LAYOUTS), stylesheet=any_text(), screenshareType=any_text()
        )
    if kind == "streams":
        return _fields(
            addStream=ids, removeStream=ids, hasAudio=st.booleans(), hasVideo=st.booleans()
        )
    return json_values().map(lambda v: v if isinstance(v, dict) else {"value": v})


def _encode_body(pair: tuple[dict[str, Any] | Payload, str]) -> tuple[bytes | None, str]:
    value, encoding = pair
    if isinstance(value, Payload):
        data = value.data
        return (
            data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        ), "application/json"
    if encoding == "form":
        flat = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        return urllib.parse.urlencode(
            flat, encoding="utf-8", errors="surrogatepass"
        ).encode(), "application/x-www-form-urlencoded"
    if encoding == "none":
        return None, ""
    return recursion_safe_dumps(value).encode(), "application/json"


def vonage_calls(api_key: str, secret: str) -> st.SearchStrategy[ApiCall]:
    def param(name: str) -> st.SearchStrategy[str]:
        junk = st.one_of(
            st.text(min_size=1, max_size=30),
            st.text(min_size=1, max_size=30),
            st.sampled_from(NASTY_STRINGS).filter(bool),
            repeated(("a", 65), ("a", 256)),
        )
        junk = weighted((19, junk), (1, repeated(("a", 9000))))
        meaningful = {
            "project": [api_key] * 6 + ["999999", "0"],
            "session": [LIVE_SESSION] * 4
            + [IDLE_SESSION] * 2
            + ["1_" + b64url(b"1~999~~x~r~"), "2_x"],
            "stream": [LIVE_STREAM] * 3 + [str(uuid.uuid4())],
            "connection": [LIVE_CONNECTION] * 3 + [str(uuid.uuid4())],
            "archive": [KNOWN_ARCHIVE] * 3 + [str(uuid.uuid4())],
        }
        if name not in meaningful:
            return junk
        return weighted((4, st.sampled_from(meaningful[name])), (1, junk))

    queries = st.one_of(
        st.just(""),
        st.builds(
            lambda o, c, s: urllib.parse.urlencode(
                {k: v for k, v in (("offset", o), ("count", c), ("sessionId", s)) if v is not None}
            ),
            st.none()
            | st.sampled_from(["0", "-1", "1e3", "99999999999999999999", "x"])
            | st.integers().map(str),
            st.none() | st.sampled_from(["0", "-5", "1000000", "x"]) | st.integers().map(str),
            st.none() | st.sampled_from([LIVE_SESSION, "x"]),
        ),
    )

    def for_route(route: tuple[str, str, str]) -> st.SearchStrategy[ApiCall]:
        method, template, kind = route
        names = path_parameters(template)
        params = st.tuples(*(param(n) for n in names)).map(
            lambda values: tuple(zip(names, values, strict=True))
        )
        natural = "form" if kind == "form" else "json"
        body = weighted(
            (6, st.tuples(vonage_bodies(kind or "junk"), st.just(natural))),
            (
                1,
                st.tuples(vonage_bodies(kind or "junk"), st.sampled_from(["json", "form", "none"])),
            ),
            (1, st.tuples(hostile_json_texts().filter(lambda p: p.size < 100_000), st.just("raw"))),
        ).map(_encode_body)
        others = [
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "application/json; charset=utf-16",
            "",
            "multipart/form-data; boundary=x",
        ]
        content_types = weighted((3, st.none()), (1, st.sampled_from(others)))

        def build(
            p: tuple[tuple[str, str], ...],
            q: str,
            auth: tuple[tuple[str, str], ...],
            encoded: tuple[bytes | None, str],
            content_type: str | None,
        ) -> ApiCall:
            data, natural = encoded
            chosen = natural if content_type is None else content_type
            headers = auth + ((("Content-Type", chosen),) if chosen and data is not None else ())
            return ApiCall(method, template, p, q if kind == "list" else "", headers, data)

        return st.builds(build, params, queries, vonage_auth(api_key, secret), body, content_types)

    def weight(route: tuple[str, str, str]) -> int:
        method, template, kind = route
        if kind == "junk" and "/session/" not in template:
            return 1  # the unsupported products: one refusal each
        return 6 if (method, template) == ("POST", ARCHIVE) else 3

    return weighted(*((weight(r), for_route(r)) for r in VONAGE_ROUTES))
