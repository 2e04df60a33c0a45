"""The three private aiortc hooks passthrough forwarding relies on, in one place.

aiortc is pinned (==1.16.0) because of these. `verify_hooks()` runs at server start and in a test,
so an upgrade that moves them fails loudly instead of silently decoding every track again.

Also here: quieting the one aiortc task whose failure is an expected race (`quiet_connect_task`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender

log = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16.0"
DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"


class AiortcHooksMissing(RuntimeError):
    """The installed aiortc no longer has a private hook Parloir's SFU needs."""


def verify_hooks() -> None:
    """Raise AiortcHooksMissing unless every hook exists in the installed aiortc."""
    problems = []
    if aiortc.__version__ != SUPPORTED_AIORTC:
        problems.append(f"aiortc {aiortc.__version__} installed, {SUPPORTED_AIORTC} required")
    init_source = inspect.getsource(RTCRtpReceiver.__init__)
    if "self.__decoder_queue" not in init_source:
        problems.append("RTCRtpReceiver.__decoder_queue is gone")
    if "self.__decoder_queue.put((codec, encoded_frame))" not in inspect.getsource(
        RTCRtpReceiver._handle_rtp_packet
    ):
        problems.append("RTCRtpReceiver._handle_rtp_packet no longer feeds the decoder queue")
    if not inspect.iscoroutinefunction(getattr(RTCRtpReceiver, "_send_rtcp_pli", None)):
        problems.append("RTCRtpReceiver._send_rtcp_pli is gone")
    if not callable(getattr(RTCRtpSender, "_send_keyframe", None)):
        problems.append("RTCRtpSender._send_keyframe is gone")
    if problems:
        raise AiortcHooksMissing("; ".join(problems))


def get_decoder_queue(receiver: RTCRtpReceiver) -> Any:
    """The queue where the receiver hands complete encoded frames to its decoder thread."""
    original = getattr(receiver, DECODER_QUEUE_ATTR, None)
    if original is None:
        raise AiortcHooksMissing(f"{DECODER_QUEUE_ATTR} missing on {receiver!r}")
    return original


def swap_decoder_queue(receiver: RTCRtpReceiver, replacement: Any) -> None:
    """Put `replacement` where the receiver hands complete encoded frames."""
    get_decoder_queue(receiver)
    setattr(receiver, DECODER_QUEUE_ATTR, replacement)


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> Coroutine[Any, Any, None]:
    """RTCP picture loss indication to the publisher of `media_ssrc`."""
    return receiver._send_rtcp_pli(media_ssrc)


def route_keyframe_requests(sender: RTCRtpSender, on_request: Callable[[], None]) -> None:
    """A subscriber's PLI/FIR reaches `sender._send_keyframe`; on the pack() path aiortc ignores
    it, so send it to the publisher instead."""
    if not callable(getattr(sender, "_send_keyframe", None)):
        raise AiortcHooksMissing("RTCRtpSender._send_keyframe is gone")
    sender._send_keyframe = on_request  # type: ignore[method-assign]


CONNECT_TASK = "RTCPeerConnection.__connect"
"""aiortc's coroutine that starts a peer connection's transports, run in a task nobody awaits."""
_quiet_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def quiet_connect_task(loop: asyncio.AbstractEventLoop) -> None:
    """Log a failed `RTCPeerConnection.__connect` task at INFO, without a traceback.

    aiortc starts ICE, DTLS and the senders of each negotiation in a task it never awaits; when
    the peer connection closes or fails while that runs (the client left mid-negotiation), the
    task fails and asyncio logs "Task exception was never retrieved" at ERROR. The connection
    state change already tells the SFU (`Participant._peer_state_changed`): it is an expected
    race, not a fault. Every other unhandled exception goes to the loop's previous handler.
    Idempotent per loop.
    """
    if loop in _quiet_loops:
        return
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        task = context.get("future")
        code = getattr(task.get_coro(), "cr_code", None) if isinstance(task, asyncio.Task) else None
        if code is not None and code.co_qualname == CONNECT_TASK:
            log.info("peer connection ended while connecting: %r", context.get("exception"))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
    _quiet_loops.add(loop)
