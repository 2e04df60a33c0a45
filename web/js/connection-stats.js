// This page's own connection quality, from getStats on its two peer connections: what it sends
// (publisher), what it receives (subscriber), loss and round-trip time. Rates are deltas between
// two samples, so the first sample has none.

function sum(values) {
  return values.reduce((total, value) => total + (value || 0), 0);
}

/** The selected ICE candidate pair of a stats report (via transport.selectedCandidatePairId). */
export function selectedPair(report) {
  let pairId = null;
  report.forEach((entry) => {
    if (entry.type === "transport" && entry.selectedCandidatePairId) {
      pairId = entry.selectedCandidatePairId;
    }
  });
  return pairId ? report.get(pairId) || null : null;
}

async function statsOf(pc) {
  if (!pc || pc.connectionState === "closed") return null;
  return pc.getStats();
}

function ofType(report, type) {
  const out = [];
  if (report) report.forEach((entry) => entry.type === type && out.push(entry));
  return out;
}

/**
 * Sample with `sample()` about once a second. `peerConnections()` returns the current
 * {publisher, subscriber} RTCPeerConnections (either may be null).
 */
export class ConnectionStats {
  constructor(peerConnections) {
    this.peerConnections = peerConnections;
    this._previous = null;
    this.latest = null;
  }

  /**
   * Resolves with {outgoingKbps, incomingKbps, receiveLossPercent, sendLossPercent, rttMs,
   * at}; a value is null when it cannot be known yet (no previous sample, nothing sent).
   */
  async sample() {
    const { publisher, subscriber } = this.peerConnections();
    const [sent, received] = await Promise.all([statsOf(publisher), statsOf(subscriber)]);
    const outbound = ofType(sent, "outbound-rtp");
    const inbound = ofType(received, "inbound-rtp");
    const now = {
      at: performance.now(),
      bytesSent: sum(outbound.map((r) => r.bytesSent)),
      bytesReceived: sum(inbound.map((r) => r.bytesReceived)),
      packetsReceived: sum(inbound.map((r) => r.packetsReceived)),
      packetsLost: sum(inbound.map((r) => r.packetsLost)),
    };
    const previous = this._previous;
    this._previous = now;

    const result = {
      at: Date.now(),
      outgoingKbps: null,
      incomingKbps: null,
      receiveLossPercent: null,
      sendLossPercent: null,
      rttMs: null,
    };
    if (previous) {
      const seconds = (now.at - previous.at) / 1000;
      if (seconds > 0) {
        const kbps = (bytes) => (bytes * 8) / 1000 / seconds;
        if (sent) result.outgoingKbps = kbps(now.bytesSent - previous.bytesSent);
        if (received) result.incomingKbps = kbps(now.bytesReceived - previous.bytesReceived);
      }
      const lost = Math.max(0, now.packetsLost - previous.packetsLost);
      const arrived = Math.max(0, now.packetsReceived - previous.packetsReceived);
      if (lost + arrived > 0) result.receiveLossPercent = (100 * lost) / (lost + arrived);
    }
    if (result.receiveLossPercent === null && now.packetsReceived > 0) {
      // Too few packets in this interval: the loss since the start of the call.
      result.receiveLossPercent =
        (100 * now.packetsLost) / (now.packetsLost + now.packetsReceived);
    }

    // What the server reports back about what we send (RTCP receiver reports).
    const remoteInbound = ofType(sent, "remote-inbound-rtp");
    const fractions = remoteInbound.map((r) => r.fractionLost).filter((f) => typeof f === "number");
    if (fractions.length) result.sendLossPercent = 100 * Math.max(...fractions);

    // Round-trip time: ICE consent checks on the selected pair, else RTCP.
    for (const report of [received, sent]) {
      const pair = report ? selectedPair(report) : null;
      if (pair && typeof pair.currentRoundTripTime === "number") {
        result.rttMs = pair.currentRoundTripTime * 1000;
        break;
      }
    }
    if (result.rttMs === null) {
      const rtts = remoteInbound.map((r) => r.roundTripTime).filter((t) => typeof t === "number");
      if (rtts.length) result.rttMs = Math.max(...rtts) * 1000;
    }
    this.latest = result;
    return result;
  }

  /** Forget the previous sample (e.g. after a long pause between samples). */
  reset() {
    this._previous = null;
  }
}
