// The connection test's verdict, as pure functions: audio quality by the ITU-T G.107 E-model
// (simplified), the video resolution a measured bitrate can carry, and when the measured figures
// have settled. No DOM, no WebRTC: unit-tested with node (quality-formulas.test.mjs).

/** The E-model's rating with no impairment at all (G.107's default R0 − Is). */
export const R_BASE = 93.2;

/** Audio is usable for a conversation from this MOS up ("many users dissatisfied" below). */
export const MIN_AUDIO_MOS = 2.4;

/**
 * Video targets, best first: the bitrate (kbit/s) each resolution needs. One is recommended
 * when the available bitrate reaches RESOLUTION_MARGIN × its target.
 */
export const VIDEO_TARGETS = Object.freeze([
  Object.freeze({ resolution: "720p", kbps: 2500 }),
  Object.freeze({ resolution: "540p", kbps: 1200 }),
  Object.freeze({ resolution: "360p", kbps: 500 }),
  Object.freeze({ resolution: "270p", kbps: 300 }),
  Object.freeze({ resolution: "180p", kbps: 150 }),
]);
export const RESOLUTION_MARGIN = 0.75;
export const AUDIO_ONLY = "audio-only";

/**
 * The receiver's jitter buffer (ms) for a measured interarrival jitter: it holds twice the
 * jitter, the usual sizing of an adaptive buffer.
 */
export function jitterBufferMs(jitterMs) {
  return 2 * Math.max(0, jitterMs || 0);
}

/** One-way mouth-to-ear delay d (ms): half the round trip plus the jitter buffer. */
export function oneWayDelayMs(rttMs, jitterMs) {
  return Math.max(0, rttMs || 0) / 2 + jitterBufferMs(jitterMs);
}

/** Delay impairment Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3), H the unit step. */
export function delayImpairment(delayMs) {
  const d = Math.max(0, delayMs);
  return 0.024 * d + (d > 177.3 ? 0.11 * (d - 177.3) : 0);
}

/** Equipment impairment from packet loss (a fraction, 0..1): 19.8·ln(1 + 29.7·loss). */
export function lossImpairment(loss) {
  const fraction = Math.min(1, Math.max(0, loss || 0));
  return 19.8 * Math.log(1 + 29.7 * fraction);
}

/** The transmission rating R = 93.2 − Id − Ie. */
export function rFactor({ rttMs = 0, jitterMs = 0, loss = 0 } = {}) {
  return R_BASE - delayImpairment(oneWayDelayMs(rttMs, jitterMs)) - lossImpairment(loss);
}

/**
 * Mean opinion score of R: 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R), 1 for R ≤ 0, 4.5 for
 * R ≥ 100, and never outside [1, 4.5] (the polynomial dips just below 1 for small R).
 */
export function mosFromR(r) {
  if (!(r > 0)) return 1;
  if (r >= 100) return 4.5;
  const mos = 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r);
  return Math.min(4.5, Math.max(1, mos));
}

/** MOS of a call with this round trip (ms), jitter (ms) and packet loss (fraction). */
export function mos(figures) {
  return mosFromR(rFactor(figures));
}

export function audioSupported(score) {
  return typeof score === "number" && score >= MIN_AUDIO_MOS;
}

/**
 * The best resolution `availableKbps` carries with the margin, or AUDIO_ONLY below the lowest;
 * null when the bitrate is unknown.
 */
export function recommendedResolution(availableKbps) {
  if (typeof availableKbps !== "number" || !Number.isFinite(availableKbps)) return null;
  for (const target of VIDEO_TARGETS) {
    if (availableKbps >= RESOLUTION_MARGIN * target.kbps) return target.resolution;
  }
  return AUDIO_ONLY;
}

/**
 * The figures the verdict is made of, with the absolute spread below which values count as equal
 * whatever their ratio: ±5 % of a 1 ms loopback round trip is noise, not instability, and a few
 * milliseconds of round trip or jitter move the MOS by less than 0.01.
 */
export const STABILITY_FLOORS = Object.freeze({
  rttMs: 5,
  jitterMs: 3,
  loss: 0.005,
  availableKbps: 25,
});

/**
 * Above these a figure counts as settled even while it still grows: a loss-based bandwidth
 * estimate ramps up (+8 %/s in Chromium) for as long as nothing is lost, and once it carries the
 * best resolution with the margin, more measuring cannot change the recommendation.
 */
export const STABILITY_CEILINGS = Object.freeze({
  availableKbps: RESOLUTION_MARGIN * VIDEO_TARGETS[0].kbps,
});
export const STABLE_SAMPLES = 5;
export const STABLE_TOLERANCE = 0.05;

/**
 * True when the last `count` samples agree: for every figure in `floors` that they report,
 * each value lies within ±tolerance of their mean (or within the figure's absolute floor), or
 * every value is at or above the figure's ceiling. A figure missing from every sample of the
 * window is ignored; missing from some, unstable.
 */
export function isStable(
  samples,
  {
    count = STABLE_SAMPLES,
    tolerance = STABLE_TOLERANCE,
    floors = STABILITY_FLOORS,
    ceilings = STABILITY_CEILINGS,
  } = {},
) {
  if (!Array.isArray(samples) || samples.length < count) return false;
  const window = samples.slice(-count);
  for (const [key, floor] of Object.entries(floors)) {
    const values = window.map((sample) => sample[key]);
    const known = values.filter((v) => typeof v === "number" && Number.isFinite(v));
    if (known.length === 0) continue;
    if (known.length < values.length) return false;
    if (typeof ceilings[key] === "number" && known.every((v) => v >= ceilings[key])) continue;
    const mean = known.reduce((a, b) => a + b, 0) / known.length;
    const allowed = Math.max(Math.abs(mean) * tolerance, floor);
    if (known.some((v) => Math.abs(v - mean) > allowed)) return false;
  }
  return true;
}

function meanOf(values) {
  const known = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  return known.length ? known.reduce((a, b) => a + b, 0) / known.length : null;
}

/**
 * The figures of a test from its samples: the mean of the last `count` samples for rates and
 * delays, the latest value of cumulative counters (loss since the start, frames decoded).
 */
export function summarize(samples, { count = STABLE_SAMPLES } = {}) {
  const window = (samples || []).slice(-count);
  const last = window.length ? window[window.length - 1] : {};
  const latest = (key) => {
    for (let i = window.length - 1; i >= 0; i -= 1) {
      if (typeof window[i][key] === "number") return window[i][key];
    }
    return null;
  };
  return {
    rttMs: meanOf(window.map((s) => s.rttMs)),
    jitterMs: meanOf(window.map((s) => s.jitterMs)),
    loss: latest("loss"),
    receivedKbps: meanOf(window.map((s) => s.receivedKbps)),
    availableKbps: meanOf(window.map((s) => s.availableKbps)),
    framesDecoded: typeof last.framesDecoded === "number" ? last.framesDecoded : latest("framesDecoded"),
  };
}

/**
 * The verdict on summarized figures: MOS (null without a round trip), audio supported, and the
 * recommended resolution from the available outgoing bitrate (the received bitrate, a lower
 * bound, when the browser does not report it).
 */
export function verdict(figures) {
  const score =
    typeof figures.rttMs === "number"
      ? mos({ rttMs: figures.rttMs, jitterMs: figures.jitterMs || 0, loss: figures.loss || 0 })
      : null;
  const bitrate =
    typeof figures.availableKbps === "number" ? figures.availableKbps : figures.receivedKbps;
  const resolution = recommendedResolution(bitrate);
  const audioOk = audioSupported(score);
  return {
    mos: score,
    audioSupported: audioOk,
    resolution,
    bitrateSource: typeof figures.availableKbps === "number" ? "available" : "received",
  };
}
