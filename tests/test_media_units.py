"""Pure media logic: keyframe detection, PLI coalescing, codec choice, ICE filtering, painting."""

from __future__ import annotations

import asyncio

import numpy as np

from media.codecs import choose_room_codec, offered_video_codecs, preferences
from media.forwarding import h264_nal_types, is_keyframe
from media.ice import filter_sdp_candidates, keep_remote_candidate
from media.keyframes import KeyframeRequester
from media.synthetic import paint_index, read_index


def test_vp8_keyframe_bit() -> None:
    assert is_keyframe("video/VP8", bytes([0x10, 0, 0]))  # P bit 0: keyframe
    assert not is_keyframe("video/VP8", bytes([0x11, 0, 0]))


def test_h264_keyframe_needs_idr_or_sps() -> None:
    idr = b"\x00\x00\x00\x01\x67aa\x00\x00\x00\x01\x68bb\x00\x00\x01\x65cc"
    delta = b"\x00\x00\x00\x01\x41dd"
    assert h264_nal_types(idr) == [7, 8, 5]
    assert is_keyframe("video/H264", idr)
    assert not is_keyframe("video/H264", delta)
    assert is_keyframe("audio/opus", b"\x01")


async def test_keyframe_requests_coalesce_to_one_per_interval() -> None:
    clock = [0.0]
    sent: list[float] = []
    requester = KeyframeRequester(lambda: sent.append(clock[0]), 0.5, clock=lambda: clock[0])
    requester.request()
    for _ in range(5):
        requester.request()
    assert sent == [0.0]
    await asyncio.sleep(0.6)
    clock[0] = 0.6
    assert len(sent) == 2, "the merged request was lost"
    clock[0] = 2.0
    requester.request()
    assert len(sent) == 3
    requester.close()


def test_room_codec_prefers_the_setting_then_falls_back() -> None:
    assert offered_video_codecs(["VP8", "rtx", "H264", "AV1"]) == {"vp8", "h264"}
    assert choose_room_codec("h264", {"vp8", "h264"}) == "h264"
    assert choose_room_codec("h264", {"vp8"}) == "vp8"
    assert choose_room_codec("vp8", set()) is None


def test_preferences_list_only_the_room_codec_and_rtx() -> None:
    mimes = {c.mimeType for c in preferences("video", "h264")}
    assert mimes == {"video/H264", "video/rtx"}
    assert {c.mimeType for c in preferences("audio", "h264")} == {"audio/opus"}


def test_loopback_only_keeps_loopback_udp_candidates() -> None:
    loop = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0"
    lan = "candidate:2 1 udp 2122260223 192.0.2.2 50001 typ host generation 0"
    tcp = "candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active"
    assert keep_remote_candidate(loop, True)
    assert not keep_remote_candidate(lan, True)
    assert not keep_remote_candidate(tcp, True)
    assert keep_remote_candidate(lan, False)
    sdp = f"v=0\r\na={loop}\r\na={lan}\r\n"
    assert filter_sdp_candidates(sdp, True) == f"v=0\r\na={loop}\r\n"


def test_painted_index_reads_back_and_plain_frames_carry_none() -> None:
    luma = np.full((240, 320), 128, dtype=np.uint8)
    assert read_index(luma) is None
    paint_index(luma, 51234)
    assert read_index(luma) == 51234


async def test_a_reused_subscriber_m_line_keeps_timestamps_rising_when_the_source_jumps() -> None:
    """A publisher restarting its timestamps on a reused m-line reaches the forwarder as a jump
    of 2**32 (aiortc's receiver takes the step back for a wrap-around); subscribers must still
    see each frame one frame interval after the previous one, never a step back."""
    from fractions import Fraction

    import av
    from aiortc import MediaStreamTrack

    from media.slot_track import SlotTrack

    class Packets(MediaStreamTrack):
        kind = "video"

        def __init__(self, pts: list[int]) -> None:
            super().__init__()
            self._pts = list(pts)

        async def recv(self) -> av.Packet:  # type: ignore[override]
            packet = av.Packet(b"\x00")
            packet.pts = packet.dts = self._pts.pop(0)
            packet.time_base = Fraction(1, 90000)
            return packet

    slot = SlotTrack("video")
    slot.carry(Packets([0, 3000, 6000, (1 << 32) + 0, (1 << 32) + 3000]))
    sent = [(await slot.recv()).pts for _ in range(5)]
    steps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert steps[:2] == [3000, 3000]
    assert all(0 < step < 90000 for step in steps), sent
    assert steps[-1] == 3000
