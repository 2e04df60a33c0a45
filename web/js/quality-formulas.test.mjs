// Unit tests of the connection test's formulas: `node --test web/js/quality-formulas.test.mjs`
// (also run by tests/test_quality_formulas.py, so `make test` covers them). Expected values are
// worked out by hand in the comments, step by step, from the formulas in the brief.

import { test } from "node:test";
import assert from "node:assert/strict";

import {
  AUDIO_ONLY,
  audioSupported,
  delayImpairment,
  isStable,
  jitterBufferMs,
  lossImpairment,
  mos,
  mosFromR,
  oneWayDelayMs,
  recommendedResolution,
  rFactor,
  summarize,
  verdict,
} from "./quality-formulas.js";

function close(actual, expected, tolerance = 1e-4, what = "") {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what} expected ${expected} ± ${tolerance}, got ${actual}`,
  );
}

test("one-way delay is half the round trip plus a jitter buffer of twice the jitter", () => {
  assert.equal(jitterBufferMs(10), 20);
  assert.equal(oneWayDelayMs(100, 10), 70); // 100/2 + 2·10
  assert.equal(oneWayDelayMs(0, 0), 0);
  assert.equal(oneWayDelayMs(null, undefined), 0);
});

test("delay impairment has a knee at 177.3 ms", () => {
  close(delayImpairment(70), 1.68); // 0.024·70, below the knee
  close(delayImpairment(177.3), 4.2552); // 0.024·177.3, the step not yet on
  close(delayImpairment(200), 7.297); // 0.024·200 + 0.11·(200 − 177.3) = 4.8 + 2.497
});

test("loss impairment is 19.8·ln(1 + 29.7·loss)", () => {
  close(lossImpairment(0), 0);
  close(lossImpairment(0.01), 5.14907, 1e-4); // 19.8·ln(1.297) = 19.8·0.2600533
  close(lossImpairment(0.1), 27.29957, 1e-4); // 19.8·ln(3.97) = 19.8·1.3787661
  close(lossImpairment(2), lossImpairment(1)); // a fraction: clamped to 1
});

test("a perfect path scores MOS 4.41 (R = 93.2)", () => {
  close(rFactor({ rttMs: 0, jitterMs: 0, loss: 0 }), 93.2);
  // 1 + 0.035·93.2 + 7e-6·93.2·33.2·6.8 = 1 + 3.262 + 0.1472858
  close(mos({ rttMs: 0, jitterMs: 0, loss: 0 }), 4.409286);
});

test("100 ms RTT, 10 ms jitter, 1 % loss gives MOS 4.24", () => {
  // d = 70 → Id = 1.68; Ie = 5.14907; R = 93.2 − 1.68 − 5.14907 = 86.37093
  close(rFactor({ rttMs: 100, jitterMs: 10, loss: 0.01 }), 86.37093);
  // 1 + 0.035·86.37093 + 7e-6·86.37093·26.37093·13.62907 = 1 + 3.022983 + 0.217299
  close(mos({ rttMs: 100, jitterMs: 10, loss: 0.01 }), 4.240281);
});

test("400 ms RTT crosses the delay knee: MOS 4.23", () => {
  // d = 200 → Id = 7.297; R = 85.903
  close(rFactor({ rttMs: 400 }), 85.903);
  // 1 + 3.006605 + 7e-6·85.903·25.903·14.097 = 1 + 3.006605 + 0.219575
  close(mos({ rttMs: 400 }), 4.226180);
});

test("10 % loss on a fast path: MOS 3.40", () => {
  // R = 93.2 − 27.29957 = 65.90043; 1 + 2.306515 + 7e-6·65.90043·5.90043·34.09957 = 3.399330
  close(mos({ rttMs: 0, loss: 0.1 }), 3.399330);
});

test("total loss: MOS 1.43, audio not supported", () => {
  // Ie = 19.8·ln(30.7) = 67.80040; R = 25.39960; 1 + 0.888986 − 0.458931 = 1.430055
  const score = mos({ rttMs: 0, loss: 1 });
  close(score, 1.430055);
  assert.equal(audioSupported(score), false);
});

test("MOS is clamped to [1, 4.5]", () => {
  assert.equal(mosFromR(-21.297), 1); // rtt 2 s: d = 1000, Id = 114.497, R < 0
  assert.equal(mos({ rttMs: 2000 }), 1);
  assert.equal(mosFromR(0), 1);
  assert.equal(mosFromR(100), 4.5);
  assert.equal(mosFromR(120), 4.5);
  // The polynomial dips below 1 for small R: 1 + 0.175 + 7e-6·5·(−55)·95 = 0.992125 → 1
  assert.equal(mosFromR(5), 1);
  assert.equal(mosFromR(NaN), 1);
});

test("audio is supported from MOS 2.4", () => {
  assert.equal(audioSupported(2.4), true);
  assert.equal(audioSupported(2.3999), false);
  assert.equal(audioSupported(null), false);
  // 20 % loss and 400 ms: R = 93.2 − 7.297 − 19.8·ln(6.94) = 93.2 − 7.297 − 38.35858 = 47.54442
  // MOS = 1 + 1.664055 + 7e-6·47.54442·(−12.45558)·52.45558 = 2.664055 − 0.217447 = 2.446608
  close(mos({ rttMs: 400, loss: 0.2 }), 2.446608);
  assert.equal(audioSupported(mos({ rttMs: 400, loss: 0.2 })), true);
  // 25 % loss instead: R = 93.2 − 7.297 − 19.8·ln(8.425) = 93.2 − 7.297 − 42.19783 = 43.70517
  // MOS = 1 + 1.529681 − 7e-6·43.70517·16.29483·56.29483 = 2.529681 − 0.280640 = 2.249041
  close(mos({ rttMs: 400, loss: 0.25 }), 2.249041);
  assert.equal(audioSupported(mos({ rttMs: 400, loss: 0.25 })), false);
});

test("the recommended resolution needs 0.75 × its target bitrate", () => {
  assert.equal(recommendedResolution(5000), "720p");
  assert.equal(recommendedResolution(1875), "720p"); // 0.75 · 2500
  assert.equal(recommendedResolution(1874.9), "540p");
  assert.equal(recommendedResolution(900), "540p"); // 0.75 · 1200
  assert.equal(recommendedResolution(899), "360p");
  assert.equal(recommendedResolution(375), "360p"); // 0.75 · 500
  assert.equal(recommendedResolution(374), "270p");
  assert.equal(recommendedResolution(225), "270p"); // 0.75 · 300
  assert.equal(recommendedResolution(224), "180p");
  assert.equal(recommendedResolution(112.5), "180p"); // 0.75 · 150
  assert.equal(recommendedResolution(112.4), AUDIO_ONLY);
  assert.equal(recommendedResolution(0), AUDIO_ONLY);
  assert.equal(recommendedResolution(null), null);
  assert.equal(recommendedResolution(NaN), null);
});

function samplesOf(values, base = {}) {
  return values.map((availableKbps) => ({
    rttMs: 1,
    jitterMs: 2,
    loss: 0,
    receivedKbps: 300,
    ...base,
    availableKbps,
  }));
}

test("stable means the last five samples within ±5 % of their mean", () => {
  assert.equal(isStable(samplesOf([1000, 1000, 1000, 1000])), false); // only four
  assert.equal(isStable(samplesOf([1000, 1020, 990, 1010, 1000])), true);
  // mean 1010, 5 % = 50.5: 1070 is 60 away
  assert.equal(isStable(samplesOf([990, 990, 1000, 1000, 1070])), false);
  // Only the last five count: an early outlier does not matter.
  assert.equal(isStable(samplesOf([100, 1000, 1020, 990, 1010, 1000])), true);
  // A ramp of +8 % per sample is not stable.
  assert.equal(isStable(samplesOf([800, 864, 933, 1008, 1088])), false);
});

test("stability uses absolute floors for tiny figures and ignores unreported ones", () => {
  // RTT 0.5..4.4 ms on loopback: relative spread huge, absolute spread under the 5 ms floor.
  const rtts = [0.5, 4.4, 1, 1.5, 0.8].map((rttMs) => ({ rttMs, availableKbps: 500 }));
  assert.equal(isStable(rtts), true);
  // Jitter 0.3..4.7 ms: mean 2.0, the 3 ms floor holds every value.
  const jitters = [0.3, 4.7, 1.6, 1.9, 1.5].map((jitterMs) => ({ jitterMs, availableKbps: 500 }));
  assert.equal(isStable(jitters), true);
  // ... but 9 ms among 1-2 ms (mean 3) is 6 ms away: not stable.
  const spike = [1, 2, 9, 1.5, 1.5].map((jitterMs) => ({ jitterMs, availableKbps: 500 }));
  assert.equal(isStable(spike), false);
  // A figure missing from every sample (browser does not report it) is ignored ...
  const noBitrate = [1, 1, 1, 1, 1].map((rttMs) => ({ rttMs, availableKbps: null }));
  assert.equal(isStable(noBitrate), true);
  // ... but missing from only some samples means not yet settled.
  const partial = samplesOf([500, 500, null, 500, 500]);
  assert.equal(isStable(partial), false);
  // The received bitrate is reported, not judged: a video encoder's rate swings ±10 %.
  const swinging = samplesOf([500, 500, 500, 500, 500]).map((s, i) => ({
    ...s,
    receivedKbps: [380, 460, 400, 440, 370][i],
  }));
  assert.equal(isStable(swinging), true);
});

test("a bandwidth estimate still ramping counts as settled above the best resolution's need", () => {
  // +8 %/s from 1900 kbit/s: never within ±5 %, but always ≥ 0.75 · 2500 = 1875.
  assert.equal(isStable(samplesOf([1900, 2052, 2216, 2393, 2585])), true);
  // The same ramp crossing the ceiling inside the window is not settled yet.
  assert.equal(isStable(samplesOf([1700, 1836, 1983, 2142, 2313])), false);
});

test("summarize averages the last window and keeps the latest counters", () => {
  const samples = [
    { rttMs: 100, jitterMs: 50, loss: 0.5, receivedKbps: 1, availableKbps: 1, framesDecoded: 1 },
    ...[2, 4, 6, 8, 10].map((v, i) => ({
      rttMs: v,
      jitterMs: v / 2,
      loss: 0.01 * (i + 1),
      receivedKbps: 100 * v,
      availableKbps: 200 * v,
      framesDecoded: 15 * (i + 2),
    })),
  ];
  const figures = summarize(samples);
  assert.equal(figures.rttMs, 6); // (2+4+6+8+10)/5: the first sample is out of the window
  assert.equal(figures.jitterMs, 3);
  assert.equal(figures.loss, 0.05); // cumulative: the latest
  assert.equal(figures.receivedKbps, 600);
  assert.equal(figures.availableKbps, 1200);
  assert.equal(figures.framesDecoded, 90);
  const empty = summarize([]);
  assert.equal(empty.rttMs, null);
  assert.equal(empty.framesDecoded, null);
});

test("verdict: MOS, audio and resolution from the figures", () => {
  const good = verdict({ rttMs: 100, jitterMs: 10, loss: 0.01, availableKbps: 1000 });
  close(good.mos, 4.240281);
  assert.equal(good.audioSupported, true);
  assert.equal(good.resolution, "540p");
  assert.equal(good.bitrateSource, "available");
  // Without the available bitrate, the received bitrate (a lower bound) decides.
  const fallback = verdict({ rttMs: 1, jitterMs: 0, loss: 0, availableKbps: null, receivedKbps: 250 });
  assert.equal(fallback.resolution, "270p");
  assert.equal(fallback.bitrateSource, "received");
  // No round trip measured: no MOS, no audio verdict.
  const unknown = verdict({ rttMs: null, availableKbps: null, receivedKbps: null });
  assert.equal(unknown.mos, null);
  assert.equal(unknown.audioSupported, false);
  assert.equal(unknown.resolution, null);
});
