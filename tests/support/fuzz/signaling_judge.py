"""The judge of one signaling frame: the server's own parser says what the answer must be, and
every answer must be documented."""

from __future__ import annotations

from typing import Any

from signaling.protocol import parse_client_message
from tests.support.fuzz.documented import CLOSING_ERRORS, Expected, reply_problems
from tests.support.fuzz.payloads import Payload
from tests.support.fuzz.signaling_frames import HARD_FRAME_FACTOR


def expect_signaling(payload: Payload, *, joined: bool, max_bytes: int) -> Expected:
    if payload.size > max_bytes * HARD_FRAME_FACTOR:
        return Expected(close=1009)
    try:
        message = parse_client_message(payload.data, max_bytes)
    except Exception as error:
        return Expected.refusal(error)
    if message.type == "ping":
        return Expected(reply="ack", reply_id=message.id)
    if not joined:
        if message.type == "join":
            return Expected()  # `joined`, or a token error and 4401 (judged on the reply)
        return Expected(errors=frozenset({"not-joined"}), request_id=message.id)
    if message.type == "join":
        # A token error (then 4401) is right too if an earlier frame already cost the socket its
        # participant (a refused subscriber answer drops it; the close follows asynchronously).
        return Expected(errors=frozenset({"already-joined"}) | CLOSING_ERRORS)
    if message.type == "leave":
        return Expected(reply="left", close=1000)
    return Expected()


def judge_signaling(
    expected: Expected | None,
    replies: list[dict[str, Any]],
    close_code: int | None,
    *,
    joined: bool,
) -> list[tuple[str, str]]:
    """(kind, detail) of everything wrong with how the server answered one frame (or, with
    `expected` None, a burst of frames)."""
    problems = [p for reply in replies for p in reply_problems(reply)]
    errors = [r for r in replies if r.get("type") == "error"]
    closing_error = any(e.get("code") in CLOSING_ERRORS for e in errors)
    seen = (
        ", ".join(
            f"{r.get('type')}:{r.get('code')}" if r.get("type") == "error" else str(r.get("type"))
            for r in replies
        )
        or "nothing"
    )
    if any(e.get("code") in ("rate-limited", "internal") for e in errors):
        expected = None  # dropped unread (PROTOCOL.md limits), or already reported as a fault
    if expected is not None:
        if expected.errors:
            match = [e for e in errors if e.get("code") in expected.errors]
            if not match:
                problems.append(
                    (
                        f"expected error {'/'.join(sorted(expected.errors))}",
                        f"got {seen}, close {close_code}",
                    )
                )
            elif expected.request_id is not None and not any(
                e.get("id") == expected.request_id for e in match
            ):
                problems.append(("error does not echo the request id", f"got {match[0]!r}"[:300]))
        if expected.reply and not any(
            r.get("type") == expected.reply and r.get("id") == expected.reply_id for r in replies
        ):
            problems.append((f"expected {expected.reply}", f"got {seen}, close {close_code}"))
    allowed = {expected.close} if expected is not None and expected.close else set()
    if expected is None:
        allowed |= {1000, 1009}
    if closing_error:
        allowed.add(4401)
    if not joined:
        allowed.add(4408)  # the join deadline (PROTOCOL.md)
    if close_code is None:
        if expected is not None and expected.close is not None:
            problems.append((f"socket not closed with {expected.close}", f"got {seen}"))
        elif closing_error:
            problems.append(("socket not closed with 4401 after a token error", f"got {seen}"))
    elif close_code not in allowed and close_code != 4410:
        problems.append((f"socket closed with {close_code}", f"got {seen}"))
    return problems
