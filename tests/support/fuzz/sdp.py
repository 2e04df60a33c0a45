"""SDP and ICE candidates: real ones written by aiortc, and the same bent in the ways a hostile
client would."""

from __future__ import annotations

import re

from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import strategies as st

from media.synthetic import PaintedVideoTrack, ToneAudioTrack
from tests.support.fuzz.values import weighted


def candidates() -> st.SearchStrategy[str]:
    address = st.sampled_from(
        [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "999.1.1.1",
            "x",
            "",
            "fe80::1%eth0",
        ]
    )
    port = st.integers(-1, 70_000)
    line = st.builds(
        lambda foundation, component, transport, priority, ip, p, typ, extra: (
            f"candidate:{foundation} {component} {transport} {priority} {ip} {p} typ {typ}{extra}"
        ),
        st.sampled_from(["1", "0", "abc", "x" * 40]),
        st.sampled_from(["1", "2", "0", "256", "-1"]),
        st.sampled_from(["udp", "UDP", "tcp", "sctp", "x"]),
        st.sampled_from(["2130706431", "0", "-1", "99999999999999999999"]),
        address,
        port,
        st.sampled_from(["host", "srflx", "relay", "prflx", "x"]),
        st.sampled_from(
            ["", " generation 0", " raddr 127.0.0.1 rport 9", " tcptype passive", " raddr"]
        ),
    )
    realistic = st.builds(
        lambda ip, port, mid: f"candidate:{mid} 1 udp 2130706431 {ip} {port} typ host",
        st.sampled_from(["127.0.0.1", "::1"]),
        st.integers(1, 65535),
        st.sampled_from(["1", "2", "f0"]),
    )
    return weighted(
        (4, realistic),
        (2, line),
        (1, line.map(lambda c: c[len("candidate:") :])),
        (1, st.just("")),
        (1, st.text(max_size=80)),
        (1, st.text(max_size=60).map(lambda t: "candidate:" + t)),
    )


SDP_MUTATIONS = (
    "drop-line",
    "duplicate-line",
    "junk-line",
    "swap-lines",
    "truncate",
    "codec",
    "direction",
    "mid",
    "newlines",
    "fingerprint",
    "port",
    "candidate",
)


class SdpTemplates(tuple[str, ...]):
    """Real SDPs to bend (a short repr: hypothesis prints strategies' arguments)."""

    def __repr__(self) -> str:
        return f"<{len(self)} SDP templates>"


@st.composite
def sdp_texts(draw: st.DrawFn, templates: SdpTemplates) -> str:
    """A real SDP bent in one to three ways, or junk that starts like one."""
    if draw(st.integers(0, 9)) == 0:
        return "v=0\r\n" + draw(st.text(max_size=200))
    lines = templates[draw(st.integers(0, len(templates) - 1))].split("\r\n")
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(SDP_MUTATIONS))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if not lines:
            break
        if how == "drop-line":
            del lines[i]
        elif how == "duplicate-line":
            lines.insert(i, lines[i])
        elif how == "junk-line":
            lines[i] = draw(
                st.text(max_size=60) | st.sampled_from(["a=", "m=", "m=video", "a=mid:"])
            )
        elif how == "swap-lines":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "truncate":
            lines = lines[:i]
        elif how == "codec":
            codec = draw(st.sampled_from(["FOO", "H265", "opus", "", "VP8", "H264", "rtx"]))
            lines = [re.sub(r"(a=rtpmap:\d+ )[A-Za-z0-9]+", rf"\g<1>{codec}", ln) for ln in lines]
        elif how == "direction":
            direction = draw(st.sampled_from(["sendonly", "recvonly", "inactive", "sendrecv", "x"]))
            lines = [
                f"a={direction}" if ln in ("a=sendonly", "a=recvonly", "a=sendrecv") else ln
                for ln in lines
            ]
        elif how == "mid":
            mid = draw(st.sampled_from(["0", "1", "2", "", "x" * 40, "0 1", "video"]))
            lines = [f"a=mid:{mid}" if ln.startswith("a=mid:") else ln for ln in lines]
        elif how == "newlines":
            return draw(st.sampled_from(["\n", "\r", "\r\r\n", "\n\r"])).join(lines)
        elif how == "fingerprint":
            lines = [
                "a=fingerprint:sha-256 " + draw(st.text(max_size=20))
                if ln.startswith("a=fingerprint")
                else ln
                for ln in lines
            ]
        elif how == "port":
            port = draw(st.sampled_from(["0", "-1", "99999", "x"]))
            lines = [re.sub(r"^(m=\w+ )\d+", rf"\g<1>{port}", ln) for ln in lines]
        elif how == "candidate":
            lines.insert(i, "a=" + draw(candidates()))
    return "\r\n".join(lines)


async def real_sdps() -> list[str]:
    """An offer (audio + video, sendonly) and an answer, as aiortc writes them on loopback."""
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        offerer.addTransceiver(ToneAudioTrack(), direction="sendonly")
        offerer.addTransceiver(PaintedVideoTrack(160, 120, 5), direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        return [offerer.localDescription.sdp, answerer.localDescription.sdp]
    finally:
        await offerer.close()
        await answerer.close()
