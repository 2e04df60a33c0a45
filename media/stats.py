"""Connection quality read from aiortc's statistics, as the SFU sees a participant."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)

CLOCK_RATES = {"audio": 48000, "video": 90000}


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of one peer connection at one moment."""

    bytes_received: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    """RTP packets the SFU received (publisher connection)."""
    packets_lost: int = 0
    """RTP packets the SFU saw lost (publisher connection)."""
    remote_loss: float | None = None
    """Fraction lost reported back by the participant (subscriber connection), 0..1."""
    jitter_ms: float | None = None
    rtt_ms: float | None = None


async def read_counters(pc: RTCPeerConnection | None) -> Counters:
    if pc is None or pc.connectionState != "connected":
        return Counters()
    report = await pc.getStats()
    bytes_in = bytes_out = received = lost = 0
    jitters: list[float] = []
    rtts: list[float] = []
    fractions: list[float] = []
    for stat in report.values():
        if isinstance(stat, RTCTransportStats):
            bytes_in += stat.bytesReceived
            bytes_out += stat.bytesSent
        elif isinstance(stat, RTCInboundRtpStreamStats):
            received += stat.packetsReceived
            lost += max(0, stat.packetsLost)
            jitters.append(1000 * stat.jitter / CLOCK_RATES.get(stat.kind, 90000))
        elif isinstance(stat, RTCRemoteInboundRtpStreamStats):
            # aiortc leaves roundTripTime None until a receiver report echoes a sender report.
            if stat.roundTripTime is not None:
                rtts.append(stat.roundTripTime * 1000)
            if stat.fractionLost is not None:
                fractions.append(stat.fractionLost)
    return Counters(
        bytes_received=bytes_in,
        bytes_sent=bytes_out,
        packets_received=received,
        packets_lost=lost,
        remote_loss=max(fractions) if fractions else None,
        jitter_ms=max(jitters) if jitters else None,
        rtt_ms=sum(rtts) / len(rtts) if rtts else None,
    )


def quality_sample(
    up_before: Counters, up_now: Counters, down_before: Counters, down_now: Counters, seconds: float
) -> dict[str, float | None]:
    """One participant's quality over an interval: upstream (what it sends the SFU) and
    downstream (what the SFU sends it)."""
    seconds = max(seconds, 1e-3)
    received = up_now.packets_received - up_before.packets_received
    lost = up_now.packets_lost - up_before.packets_lost

    def kbps(delta_bytes: int) -> float:
        return round(8 * max(0, delta_bytes) / seconds / 1000, 1)

    return {
        "up_kbps": kbps(up_now.bytes_received - up_before.bytes_received),
        "down_kbps": kbps(down_now.bytes_sent - down_before.bytes_sent),
        "up_loss": round(lost / (received + lost), 4) if received + lost > 0 else None,
        "down_loss": down_now.remote_loss,
        "jitter_ms": None if up_now.jitter_ms is None else round(up_now.jitter_ms, 1),
        "rtt_ms": None if down_now.rtt_ms is None else round(down_now.rtt_ms, 1),
    }
