"""Hostile input for a running Parloir server: what to send, how to judge each answer, and how to
tell that the server is still healthy afterwards.

Shared by tests/test_fuzz_signaling.py and tests/test_fuzz_api.py (small counts, in `make test`)
and bench/fuzz.py (the full count). Everything talks to a real `parloir serve` subprocess over
loopback; nothing is mocked.

Inputs come from hypothesis strategies, derived where possible from the one inbound schema
(signaling/protocol.py) and the server's own /openapi.json. A run never stops at the first
failure: every input is judged, and each kind of failure is kept with the smallest input that
showed it, so one run reports every bug it met, each with a reproducer.

The judge of a signaling frame is the server's own parser (`parse_client_message`): whatever it
refuses must come back as an `error` with that code and the socket must stay usable; whatever it
accepts may be answered with any documented message. `internal`, an undocumented message or
code, a socket closed outside the documented cases, a reply that never comes, or a traceback in
the server log is a failure.

The modules, one job each:
- running a fuzz: `exploration` (hypothesis as a fuzzer), `report` (findings), `hang` (timeouts),
  `loop_thread` (the sockets' event loop), `server_log` (tracebacks in the server's log);
- generating: `values` (primitive hostile values), `payloads` (frames and bodies),
  `schema_values` (values from a JSON schema), `sdp` (SDP and ICE candidates);
- well-behaved clients: `media_party` (media that must keep flowing), `health` (the checks after
  a run);
- signaling: `documented` (what PROTOCOL.md allows), `signaling_frames`, `signaling_judge`,
  `send_budget`, `rtc_socket`, `signaling_fuzzer`; the chat data channel: `chat`;
- REST: `http_calls` (requests and their judge), `platform_world`, `openapi_fuzzer`
  (schemathesis), `platform_calls` (edges and hostile bodies), `vonage_tokens`, `vonage_requests`,
  `vonage_session`, `traversal`.

The names callers use are importable from the package itself.
"""

from tests.support.fuzz.chat import ChatFuzzer, chat_payloads
from tests.support.fuzz.exploration import explore
from tests.support.fuzz.health import room_problems, server_health_problems
from tests.support.fuzz.http_calls import ApiCall, HttpReply, http_request
from tests.support.fuzz.loop_thread import LoopThread
from tests.support.fuzz.media_party import random_room_id
from tests.support.fuzz.openapi_fuzzer import OpenApiFuzzer
from tests.support.fuzz.payloads import Payload
from tests.support.fuzz.platform_calls import PlatformFuzzer, edge_calls, hostile_body_calls
from tests.support.fuzz.platform_world import PlatformWorld
from tests.support.fuzz.report import Finding, FuzzReport
from tests.support.fuzz.rtc_socket import FuzzSocket
from tests.support.fuzz.sdp import real_sdps
from tests.support.fuzz.server_log import LogWatch
from tests.support.fuzz.signaling_frames import signaling_examples
from tests.support.fuzz.signaling_fuzzer import SignalingFuzzer
from tests.support.fuzz.traversal import (
    TraversalFuzzer,
    judge_traversal,
    traversal_ids,
    traversal_targets,
)
from tests.support.fuzz.vonage_requests import vonage_calls
from tests.support.fuzz.vonage_session import LiveVonageSession, VonageFuzzer
from tests.support.fuzz.vonage_tokens import vonage_jwt

__all__ = [
    "ApiCall",
    "ChatFuzzer",
    "Finding",
    "FuzzReport",
    "FuzzSocket",
    "HttpReply",
    "LiveVonageSession",
    "LogWatch",
    "LoopThread",
    "OpenApiFuzzer",
    "Payload",
    "PlatformFuzzer",
    "PlatformWorld",
    "SignalingFuzzer",
    "TraversalFuzzer",
    "VonageFuzzer",
    "chat_payloads",
    "edge_calls",
    "explore",
    "hostile_body_calls",
    "http_request",
    "judge_traversal",
    "random_room_id",
    "real_sdps",
    "room_problems",
    "server_health_problems",
    "signaling_examples",
    "traversal_ids",
    "traversal_targets",
    "vonage_calls",
    "vonage_jwt",
]
