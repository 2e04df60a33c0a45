"""What the media plane needs to know from the server's settings."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCConfiguration

from media.ice import rtc_configuration


@dataclass(frozen=True)
class MediaSettings:
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs for the SFU's peer connections."""
    loopback_only: bool = False
    """Only loopback candidates are reachable (tests, a laptop)."""
    forwarding: str = "passthrough"
    """`passthrough` or `relay` (benchmark baseline)."""
    preferred_video_codec: str = "h264"
    """Room codec chosen at first publish when the publisher offers it."""

    def rtc_configuration(self) -> RTCConfiguration:
        return rtc_configuration(self.ice_servers)
