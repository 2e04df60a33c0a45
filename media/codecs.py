"""Codec choice for a room: one video codec for everyone, so frames forward unchanged."""

from __future__ import annotations

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

VIDEO_MIME = {"h264": "video/H264", "vp8": "video/VP8"}
AUDIO_MIME = "audio/opus"


def codec_name_for_mime(mime_type: str) -> str:
    for name, mime in VIDEO_MIME.items():
        if mime.lower() == mime_type.lower():
            return name
    raise ValueError(f"no room codec for {mime_type}")


def preferences(kind: str, video_codec: str) -> list[RTCRtpCodecCapability]:
    """Capabilities to pass to setCodecPreferences: only the room codec (plus RTX for video)."""
    wanted = AUDIO_MIME if kind == "audio" else VIDEO_MIME[video_codec]
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in capabilities if c.mimeType.lower() == wanted.lower()]
    if kind == "video":
        chosen += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    return chosen


def offered_video_codecs(sdp_video_codec_names: list[str]) -> set[str]:
    """Room codec names among the codec names an SDP offers (e.g. ['VP8', 'H264', 'rtx'])."""
    names = {name.lower() for name in sdp_video_codec_names}
    return {codec for codec in VIDEO_MIME if codec in names}


def choose_room_codec(preferred: str, offered: set[str]) -> str | None:
    """The preferred codec when offered, else any other room codec the publisher offers."""
    if preferred in offered:
        return preferred
    for codec in VIDEO_MIME:
        if codec in offered:
            return codec
    return None
