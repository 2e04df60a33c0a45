"""Hostile input on /rtc and on the chat data channel, against the real server process.

Two generated runs (hypothesis; small counts here, the full count is `python -m bench.fuzz`):
every frame gets a documented answer, the socket stays usable outside the documented closing
cases, the server logs no traceback, and afterwards a well-behaved client still gets media and
chat through the fuzzed room while a bystander room never noticed.

Below them, each server bug the fuzz found is pinned by its smallest input, so it fails loudly
until fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import strategies as st

from media.synthetic import PaintedVideoTrack, ToneAudioTrack
from signaling.client import ParloirClient, ServerError
from tests.support import fuzz
from tests.support.server_process import ServerProcess, running_server

SCALE = float(os.environ.get("PARLOIR_FUZZ_SCALE", "1"))
"""Multiplies the example counts (the full run is bench/fuzz.py)."""
SEED = int(os.environ["PARLOIR_FUZZ_SEED"]) if "PARLOIR_FUZZ_SEED" in os.environ else None


@pytest.fixture
def loop_thread() -> Iterator[fuzz.LoopThread]:
    with fuzz.LoopThread() as loop:
        yield loop


def test_generated_frames_get_documented_answers_and_the_room_still_carries_media(
    server: ServerProcess, loop_thread: fuzz.LoopThread
) -> None:
    report = fuzz.FuzzReport("signaling")
    fuzzer = fuzz.SignalingFuzzer(server.url, server.token, fuzz.LogWatch(server.log_path), report)
    world = loop_thread.run(fuzzer.start())
    started = time.monotonic()
    try:
        fuzz.explore(
            fuzz.signaling_examples(world),
            lambda example: loop_thread.run(fuzzer.run(example), timeout=120),
            examples=int(45 * SCALE),
            seed=SEED,
        )
        report.seconds = time.monotonic() - started
        after = loop_thread.run(fuzzer.final_problems(), timeout=120)
    finally:
        loop_thread.run(fuzzer.stop(), timeout=60)
    assert server.alive(), "the server died under fuzzing"
    assert not report.findings and not after, (
        report.describe() + "\nafterwards:\n  " + "\n  ".join(after)
    )


def test_generated_chat_frames_get_chat_errors_and_the_channel_stays_usable(
    server: ServerProcess, loop_thread: fuzz.LoopThread
) -> None:
    report = fuzz.FuzzReport("chat")
    fuzzer = fuzz.ChatFuzzer(server.url, server.token, fuzz.LogWatch(server.log_path), report)
    participant_ids = loop_thread.run(fuzzer.start())
    started = time.monotonic()
    try:
        fuzz.explore(
            st.lists(fuzz.chat_payloads(participant_ids), min_size=1, max_size=3).map(tuple),
            lambda frames: loop_thread.run(fuzzer.run(frames), timeout=120),
            examples=int(40 * SCALE),
            seed=SEED,
        )
        report.seconds = time.monotonic() - started
        after = loop_thread.run(
            fuzz.room_problems(server.url, server.token, fuzzer.room), timeout=120
        )
        after += [f"server log: {line}" for _, line in fuzzer.log.new_problems()]
    finally:
        loop_thread.run(fuzzer.stop(), timeout=60)
    assert server.alive(), "the server died under fuzzing"
    assert not report.findings and not after, (
        report.describe() + "\nafterwards:\n  " + "\n  ".join(after)
    )


# ---- the bugs the fuzz found, each pinned by its smallest input ---------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the pinned bugs (each uses rooms of its own): started once."""
    with running_server(tmp_path_factory.mktemp("pinned")) as process:
        yield process
        assert process.alive(), "the server died"


@pytest.fixture
def server_log(shared: ServerProcess) -> fuzz.LogWatch:
    """Tracebacks and ERROR lines the server logs from now on."""
    watch = fuzz.LogWatch(shared.log_path)
    watch.new_problems()
    return watch


@pytest.fixture
async def joined(shared: ServerProcess) -> AsyncIterator[fuzz.FuzzSocket]:
    room = fuzz.random_room_id()
    socket = await fuzz.FuzzSocket.open(shared.url)
    await socket.join(shared.token(room, "mallory"), room)
    yield socket
    await socket.close()


async def exchange(socket: fuzz.FuzzSocket, data: str | bytes) -> list[dict]:
    start = len(socket.messages)
    await socket.send(fuzz.Payload(data, "pinned"))
    return [m for m in await socket.wait_probe(start) if m.get("type") != "offer"]


@pytest.mark.parametrize(
    ("frame", "codes"),
    [
        pytest.param("[" * 5000 + "]" * 5000, {"malformed"}, id="array-nested-5000-deep"),
        pytest.param('{"a":' * 2000 + "1" + "}" * 2000, {"unknown-type"}, id="object-2000-deep"),
        pytest.param(
            '{"type":"ping","id":' + "9" * 4301 + "}",
            {"malformed", "invalid-message"},
            id="number-of-4301-digits",
        ),
        pytest.param('{"type":["ping"]}', {"unknown-type"}, id="type-is-a-list"),
        pytest.param('{"type":{"ping":1}}', {"unknown-type"}, id="type-is-an-object"),
    ],
)
async def test_frame_the_parser_chokes_on_is_refused_not_an_internal_error(
    joined: fuzz.FuzzSocket, server_log: fuzz.LogWatch, frame: str, codes: set[str]
) -> None:
    # Found by the fuzz: parse_client_message lets RecursionError, ValueError (int digits
    # limit) and TypeError (unhashable `type`) escape, so the server answers `internal` and logs
    # an ERROR traceback for a frame that is simply malformed.
    replies = await exchange(joined, frame)
    assert [r.get("code") for r in replies if r.get("type") == "error"] != ["internal"], replies
    assert any(r.get("code") in codes for r in replies), replies
    assert server_log.new_problems() == []


async def test_ice_candidate_without_mid_or_line_index_is_refused_not_an_internal_error(
    joined: fuzz.FuzzSocket, server_log: fuzz.LogWatch
) -> None:
    # Found by the fuzz: aiortc's addIceCandidate raises ValueError when neither sdp_mid nor
    # sdp_mline_index is given; media/peers.py only maps SdpError, so this is `internal`.
    deadline = time.monotonic() + 10
    while (
        joined.pc is None or joined.pc.signalingState != "stable" or not joined.pc.localDescription
    ):
        assert time.monotonic() < deadline, "the subscriber negotiation never finished"
        await asyncio.sleep(0.05)
    frame = json.dumps(
        {
            "type": "ice",
            "pc": "subscriber",
            "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
            "id": "c",
        }
    )
    replies = await exchange(joined, frame)
    assert replies and replies[0].get("code") in ("bad-sdp", "invalid-message"), replies
    assert server_log.new_problems() == []


async def test_frame_of_exactly_sixteen_times_the_limit_gets_message_too_large(
    joined: fuzz.FuzzSocket,
) -> None:
    # Found by the fuzz: rtc_endpoint.py says frames *up to* 16x the limit are refused with an
    # error and the socket kept, but aiohttp refuses a frame of exactly max_msg_size, so a
    # 1 048 576-byte frame closes the socket.
    size = 64 * 1024 * 16
    head = '{"type":"ping","id":"big","pad":"'
    replies = await exchange(joined, head + "x" * (size - len(head) - 2) + '"}')
    assert joined.close_code is None, f"closed with {joined.close_code}"
    assert any(r.get("code") == "message-too-large" for r in replies), replies


async def test_frame_beyond_the_hard_limit_closes_with_1009_every_time(
    shared: ServerProcess,
) -> None:
    # Found by the fuzz: on a joined socket the client often sees 1006 instead of the documented
    # 1009: the server closes the TCP connection while the rest of the oversized frame is still
    # arriving, and the reset discards the close frame before the client reads it.
    codes = []
    room = fuzz.random_room_id()
    for attempt in range(10):
        socket = await fuzz.FuzzSocket.open(shared.url)
        await socket.join(shared.token(room, f"big-{attempt}"), room)
        await socket.send_text("x" * (64 * 1024 * 16 + 1))
        await socket.wait_probe(len(socket.messages))
        codes.append(socket.close_code)
        await socket.close()
    assert codes == [1009] * 10, codes


async def test_a_second_offer_before_the_first_connects_does_not_stall_the_room(
    shared: ServerProcess,
) -> None:
    # Found by the fuzz: PublisherPeer.handle_offer waits up to 10 s (settle_before_renegotiation)
    # for a transport that will never connect, holding the room lock: the offerer's socket stops
    # answering, and nobody can join or publish in the room meanwhile.
    room = fuzz.random_room_id()
    offer, _ = await fuzz.real_sdps()  # its ICE ports are closed: it never connects
    mallory = await fuzz.FuzzSocket.open(shared.url)
    await mallory.join(shared.token(room, "mallory"), room)
    publish = {"type": "publish", "video_mid": "1", "audio_mid": "0"}
    for request in (publish, {"type": "offer", "pc": "publisher", "sdp": offer}):
        await mallory.send_text(json.dumps(request))
    await mallory.wait_probe(len(mallory.messages))
    await mallory.send_text(json.dumps({"type": "offer", "pc": "publisher", "sdp": offer}))
    await asyncio.sleep(0.2)
    visitor = ParloirClient(shared.url, token=shared.token(room, "visitor"), room=room)
    started = time.monotonic()
    try:
        await visitor.connect(timeout=3)
    except TimeoutError:
        pass
    finally:
        joined_after = time.monotonic() - started
        with contextlib.suppress(TimeoutError):  # its socket waits on the stalled room too
            await asyncio.wait_for(visitor.close(), 1)
        await mallory.close()
    assert joined_after < 2.0, f"joining the room took {joined_after:.1f} s (or never finished)"


async def test_republishing_many_times_does_not_drop_anyone(shared: ServerProcess) -> None:
    # Found by the fuzz: aiortc never removes an m-line, so every publication ever made in a
    # room stays in every peer connection's SDP. After ~20 publish/unpublish cycles (a screen
    # share toggled on and off) the sharer's own offer, and every viewer's answer, exceed
    # MAX_SDP_CHARS (60 000): the server refuses them as invalid-message, and drops a viewer
    # whose answer it refused for never answering (4410).
    room = fuzz.random_room_id()
    viewer = ParloirClient(shared.url, token=shared.token(room, "viewer"), room=room)
    sharer = ParloirClient(shared.url, token=shared.token(room, "sharer"), room=room)
    await viewer.connect()
    await sharer.connect()
    refused: list[str] = []
    try:
        for cycle in range(30):
            try:
                publication = await sharer.publish(
                    audio=ToneAudioTrack(),
                    video=PaintedVideoTrack(320, 240, 5),
                    video_type="screen",
                )
            except ServerError as exc:
                refused.append(f"the sharer's publish #{cycle + 1} was refused: {exc}")
                break
            await viewer.wait_for_track(publication["id"], "video", timeout=15)
            await sharer.unpublish(publication["id"])
        await asyncio.sleep(1.0)
    finally:
        refused += [
            f"the viewer got {m}"[:200]
            for m in viewer.events.messages
            if m["type"] in ("error", "socket-closed")
        ]
        await sharer.leave()
        await viewer.leave()
    assert refused == []


async def test_chat_frame_the_parser_chokes_on_gets_a_chat_error_and_the_channel_lives(
    shared: ServerProcess, server_log: fuzz.LogWatch
) -> None:
    # Found by the fuzz: parse_chat_message lets RecursionError / ValueError escape from the
    # data channel callback into aiortc's DTLS transport, which logs a traceback and dies: the
    # sender loses its chat channel and every track it receives.
    room = fuzz.random_room_id()
    sender = ParloirClient(shared.url, token=shared.token(room, "sender"), room=room)
    await sender.connect()
    channel = await sender.wait_for_chat_channel()
    try:
        start = len(sender.events.messages)
        channel.send("[" * 5000 + "]" * 5000)
        refusal = await sender.wait_for(lambda m: m["type"] == "chat-error", start=start, timeout=3)
        assert refusal["code"] == "malformed"
        await sender.send_chat("still here", request_id="after")
        await sender.wait_for(lambda m: m.get("request_id") == "after", timeout=3)
    finally:
        await sender.leave()
    assert server_log.new_problems() == []


async def test_a_long_chat_history_does_not_break_late_joiners(
    shared: ServerProcess, server_log: fuzz.LogWatch
) -> None:
    # Found by the fuzz: the history sent when a chat channel opens is one message; past
    # 256 KiB (about 32 messages of 8 KiB) aiortc refuses to send it, the ValueError escapes the
    # channel's open callback and kills the joiner's DTLS transport: no chat and no media for
    # anyone who joins the room after that.
    room = fuzz.random_room_id()
    early = ParloirClient(shared.url, token=shared.token(room, "early"), room=room)
    await early.connect()
    await early.wait_for_chat_channel()
    for index in range(34):
        await early.send_chat("x" * 8192, request_id=f"m{index}")
        if index >= 18:
            await asyncio.sleep(1 / 15)  # past the burst, under the 20/s chat rate
    await early.wait_for(lambda m: m.get("request_id") == "m33", timeout=10)
    problems = await fuzz.room_problems(shared.url, shared.token, room)
    await early.leave()
    assert problems == []
    assert server_log.new_problems() == []


async def test_a_rate_limited_chat_error_echoes_the_request_id(shared: ServerProcess) -> None:
    # Found by the fuzz: ChatLog.admit raises before the request id is attached, so a client
    # cannot tell which of its messages was dropped (every other chat-error echoes it).
    room = fuzz.random_room_id()
    sender = ParloirClient(shared.url, token=shared.token(room, "sender"), room=room)
    await sender.connect()
    channel = await sender.wait_for_chat_channel()
    try:
        for index in range(30):
            channel.send(json.dumps({"type": "chat", "text": "hi", "id": f"b{index}"}))
        limited = await sender.wait_for(
            lambda m: m["type"] == "chat-error" and m["code"] == "rate-limited", timeout=5
        )
    finally:
        await sender.leave()
    assert str(limited.get("id", "")).startswith("b"), limited
