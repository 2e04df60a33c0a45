"""ICE settings of the SFU: which addresses it gathers on, which remote candidates it accepts."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

log = logging.getLogger(__name__)

_original_get_host_addresses = aioice.ice.get_host_addresses
_original_request_received = aioice.ice.Connection.request_received


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def configure_gathering(addresses: Iterable[str]) -> None:
    """Gather host candidates only on `addresses` (all interfaces when empty).

    aioice never gathers on loopback by itself; a server bound to 127.0.0.1 (tests, a laptop)
    needs this. When every address is loopback, STUN checks from other sources are ignored too:
    otherwise a browser's LAN socket reaching 127.0.0.1 can win nomination and aiortc would then
    send media to a LAN address.
    """
    chosen = tuple(addresses)
    if not chosen:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        aioice.ice.Connection.request_received = _original_request_received  # type: ignore[method-assign]
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses
    if all(is_loopback(a) for a in chosen):

        def request_received(self: Any, message: Any, addr: tuple[str, int], protocol: Any) -> None:
            if not is_loopback(addr[0]):
                return
            _original_request_received(self, message, addr, protocol)

        aioice.ice.Connection.request_received = request_received  # type: ignore[method-assign]
    else:
        aioice.ice.Connection.request_received = _original_request_received  # type: ignore[method-assign]
    log.info("ice gathering on %s", ",".join(chosen))


def rtc_configuration(ice_servers: Iterable[str]) -> RTCConfiguration:
    # iceServers=[] matters: aiortc's default (None) sends STUN to a public Google server.
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=url) for url in ice_servers],
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


def candidate_address(candidate_line: str) -> str | None:
    """Connection address of an SDP candidate (`candidate:…` with or without `a=`)."""
    parts = candidate_line.split()
    return parts[4] if len(parts) > 7 else None


def keep_remote_candidate(candidate_line: str, loopback_only: bool) -> bool:
    if not loopback_only:
        return True
    address = candidate_address(candidate_line)
    return address is not None and is_loopback(address) and " tcp " not in candidate_line.lower()


def filter_sdp_candidates(sdp: str, loopback_only: bool) -> str:
    """Drop remote candidates the SFU cannot reach when it only listens on loopback."""
    if not loopback_only:
        return sdp
    lines = sdp.splitlines()
    kept = [
        line
        for line in lines
        if not line.startswith("a=candidate:") or keep_remote_candidate(line[2:], True)
    ]
    return "\r\n".join(kept) + "\r\n"
