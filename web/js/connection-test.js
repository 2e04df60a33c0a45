// The waiting room's connection test, through the real media path: a second signaling socket
// joins a private loopback room (loopback-session.js), publishes audio+video, and receives its
// own stream back through the SFU. getStats is sampled every
// second until the figures settle (quality-formulas.js isStable) or the time is up. The time
// limit is a hard one, counted from start(): it resolves the test with what it has whatever is
// going on (signaling or ICE hung, a getStats pending), and skip() ends it at once. Either way
// the test's peer connections, socket and tracks are released.

import { selectedPair } from "./connection-stats.js";
import { LoopbackSession } from "./loopback-session.js";
import { isStable, summarize, verdict } from "./quality-formulas.js";

export const SAMPLE_INTERVAL_MS = 1000;
/** The whole test, connecting included, never takes longer. */
export const MAX_DURATION_MS = 30000;

export const TestState = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  MEASURING: "measuring",
  DONE: "done",
});

/** How a test ended. */
export const Outcome = Object.freeze({
  STABLE: "stable", // five samples in a row agreed
  TIME_LIMIT: "time-limit", // measured until MAX_DURATION_MS without the figures settling
  TIMEOUT: "timeout", // MAX_DURATION_MS passed before anything came back through the server
  SKIPPED: "skipped",
  FAILED: "failed",
});

function ofType(report, type) {
  const out = [];
  if (report) report.forEach((entry) => entry.type === type && out.push(entry));
  return out;
}

function sumOf(entries, key) {
  return entries.reduce((total, entry) => total + (entry[key] || 0), 0);
}

async function statsOf(pc) {
  if (!pc || pc.connectionState === "closed") return null;
  return pc.getStats();
}

/**
 * One test run. `tracks` {audio, video} belong to the test: it sends them and stops them when it
 * ends (give it clones of the preview's tracks). `onSample(sample, test)` sees every sample.
 */
export class ConnectionTest {
  constructor({
    room,
    token,
    name,
    tracks,
    onSample = () => {},
    onReturnedTrack = () => {},
    maxDurationMs = MAX_DURATION_MS,
    intervalMs = SAMPLE_INTERVAL_MS,
  }) {
    this.room = room;
    this.token = token;
    this.name = name;
    this.tracks = { audio: tracks.audio || null, video: tracks.video || null };
    this.onSample = onSample;
    this.onReturnedTrack = onReturnedTrack;
    this.maxDurationMs = maxDurationMs;
    this.intervalMs = intervalMs;

    this.state = TestState.IDLE;
    this.samples = []; // every sample, {at, counted, rttMs, jitterMs, loss, ...}
    this.result = null;
    this.session = new LoopbackSession({
      room,
      token,
      name,
      onReturnedTrack: (track, stream) => {
        if (!this.finished) this.onReturnedTrack(track, stream);
      },
    });
    this._startedAt = null;
    this._previous = null;
    this._timers = [];
    this._sampling = false;
    this._resolve = null;
    this._done = null;
  }

  /** Start; resolves with the result, always (never rejects). */
  start() {
    if (this._done) return this._done;
    this._startedAt = performance.now();
    this.state = TestState.CONNECTING;
    this._done = new Promise((resolve) => {
      this._resolve = resolve;
    });
    this._timers.push(setTimeout(() => this._timeUp(), this.maxDurationMs));
    this._run().catch((error) => this._finish(Outcome.FAILED, error));
    return this._done;
  }

  /** Stop now; the result (skipped, with whatever was measured) resolves at once. */
  skip() {
    if (!this._done) this.start();
    this._finish(Outcome.SKIPPED);
    return this._done;
  }

  get finished() {
    return this.state === TestState.DONE;
  }

  get elapsedMs() {
    return this._startedAt === null ? 0 : performance.now() - this._startedAt;
  }

  async _run() {
    await this.session.open(this.tracks);
    if (this.finished) return;
    this.state = TestState.MEASURING;
    const tick = () => this._tick();
    this._timers.push(setInterval(tick, this.intervalMs));
    tick();
  }

  async _tick() {
    if (this.finished || this._sampling) return;
    this._sampling = true;
    try {
      const sample = await this._sample();
      if (this.finished) return;
      this.samples.push(sample);
      this.onSample(sample, this);
      if (isStable(this.samples.filter((s) => s.counted))) this._finish(Outcome.STABLE);
    } catch (error) {
      // A peer connection closing between two samples: the next tick (or the end) decides.
    } finally {
      this._sampling = false;
    }
  }

  /** One second's figures. Rates are deltas since the previous sample; loss is cumulative. */
  async _sample() {
    const { publisher, subscriber } = this.session.pcs;
    const [sent, received] = await Promise.all([statsOf(publisher), statsOf(subscriber)]);
    const now = performance.now();
    const inbound = ofType(received, "inbound-rtp");
    const outbound = ofType(sent, "outbound-rtp");
    const remoteInbound = ofType(sent, "remote-inbound-rtp");
    const counters = {
      at: now,
      bytesReceived: sumOf(inbound, "bytesReceived"),
      framesDecoded: sumOf(inbound.filter((r) => r.kind === "video"), "framesDecoded"),
    };
    const previous = this._previous;
    this._previous = counters;

    // Round trip: RTCP (refreshed every report) or the ICE pair's consent checks.
    const rtcpRtts = remoteInbound.map((r) => r.roundTripTime).filter((t) => typeof t === "number");
    const pair = sent ? selectedPair(sent) : null;
    let rttMs = null;
    if (rtcpRtts.length) rttMs = (1000 * rtcpRtts.reduce((a, b) => a + b, 0)) / rtcpRtts.length;
    else if (pair && typeof pair.currentRoundTripTime === "number") {
      rttMs = 1000 * pair.currentRoundTripTime;
    }

    // Jitter a listener suffers: the audio's on the way up (RTCP) plus on the way down.
    const downAudio = inbound.find((r) => r.kind === "audio");
    const upAudio = remoteInbound.find((r) => r.kind === "audio");
    let jitterMs = null;
    for (const entry of [downAudio, upAudio]) {
      if (entry && typeof entry.jitter === "number") jitterMs = (jitterMs || 0) + 1000 * entry.jitter;
    }

    // Loss since the start, each way; the forwarded stream crosses both.
    const downLost = sumOf(inbound, "packetsLost");
    const downReceived = sumOf(inbound, "packetsReceived");
    const upLost = sumOf(remoteInbound, "packetsLost");
    const upSent = sumOf(outbound, "packetsSent");
    const down = downLost + downReceived > 0 ? Math.max(0, downLost) / (downLost + downReceived) : null;
    const up = upSent > 0 && remoteInbound.length ? Math.min(1, Math.max(0, upLost) / upSent) : null;
    let loss = null;
    if (down !== null || up !== null) loss = 1 - (1 - (down || 0)) * (1 - (up || 0));

    let receivedKbps = null;
    if (previous && now > previous.at && received) {
      receivedKbps = ((counters.bytesReceived - previous.bytesReceived) * 8) / (now - previous.at);
    }
    const available = pair && typeof pair.availableOutgoingBitrate === "number"
      ? pair.availableOutgoingBitrate / 1000
      : null;
    return {
      at: Date.now(),
      elapsedS: this.elapsedMs / 1000,
      // Only once our video comes back decoded do the figures describe a working path.
      counted: counters.framesDecoded > 0 && receivedKbps !== null,
      rttMs,
      jitterMs,
      loss,
      receivedKbps,
      availableKbps: available,
      framesDecoded: counters.framesDecoded,
    };
  }

  _timeUp() {
    const measured = this.samples.some((s) => s.counted);
    this._finish(measured ? Outcome.TIME_LIMIT : Outcome.TIMEOUT);
  }

  _finish(outcome, error = null) {
    if (this.finished) return;
    this.state = TestState.DONE;
    for (const timer of this._timers) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    this._timers = [];
    const counted = this.samples.filter((s) => s.counted);
    const figures = summarize(counted.length ? counted : this.samples);
    this.result = {
      outcome,
      skipped: outcome === Outcome.SKIPPED,
      error: error ? (error.message || String(error)) : null,
      durationS: this.elapsedMs / 1000,
      samples: this.samples.length,
      countedSamples: counted.length,
      figures,
      verdict: verdict(figures),
    };
    this._release();
    this._resolve(this.result);
  }

  /** Close the test's peer connections and socket, stop its tracks. Synchronous. */
  _release() {
    this.session.close();
    for (const track of Object.values(this.tracks)) if (track) track.stop();
  }

  /** Read-only state for tests and debugging. */
  view() {
    return {
      state: this.state,
      elapsedS: this.elapsedMs / 1000,
      samples: this.samples.map((s) => ({ ...s })),
      result: this.result ? { ...this.result } : null,
      pcs: this.session.pcs,
      tracks: Object.values(this.tracks).filter(Boolean),
      signalingOpen: this.session.signalingOpen,
    };
  }
}

/** The body of POST /api/rooms/{room}/connection-test for a result (server ranges respected). */
export function resultPayload(result) {
  const f = result.figures;
  const v = result.verdict;
  const payload = { skipped: result.skipped, duration_s: Math.min(120, round(result.durationS, 1)) };
  const put = (key, value, digits = 2) => {
    if (typeof value === "number" && Number.isFinite(value)) payload[key] = round(value, digits);
  };
  put("rtt_ms", f.rttMs, 1);
  put("jitter_ms", f.jitterMs, 1);
  put("packet_loss", f.loss === null ? null : Math.min(1, Math.max(0, f.loss)), 4);
  put("received_kbps", f.receivedKbps, 1);
  put("available_outgoing_kbps", f.availableKbps, 1);
  if (typeof f.framesDecoded === "number") payload.frames_decoded = Math.max(0, Math.round(f.framesDecoded));
  put("mos", v.mos, 2);
  if (v.resolution) payload.recommended_resolution = v.resolution;
  return payload;
}

function round(value, digits) {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
