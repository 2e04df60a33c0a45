// The waiting room, shown before joining: camera, microphone and speaker pickers, a live
// preview, a microphone level meter, a speaker test chime, the connection test, and the way in.
// The stream opened here is the one the call publishes: joining asks for no permission again.

import { openCameraAndMic, openDevice, stopStream, DEFAULT_VIDEO } from "./local-media.js";
import { SPEAKER_SELECTION_SUPPORTED, fillDevicePicker, listDevices } from "./device-pickers.js";
import { MicLevelMeter, SpeakerTest } from "./audio-check.js";
import { ConnectionTest, Outcome, resultPayload } from "./connection-test.js";
import { LoopbackSession } from "./loopback-session.js";
import { BlurControl } from "./blur-control.js";
import { AUDIO_ONLY, MIN_AUDIO_MOS } from "./quality-formulas.js";

/** Set once this browser has run (or skipped) a connection test, or joined a call. */
export const TEST_SEEN_KEY = "parloir.connectionTestSeen";
/** Rooms this browser was in a call of: {room: last left, Unix ms}. */
export const ATTENDED_KEY = "parloir.attendedRooms";

function storageGet(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null; // storage disabled: behave as a first visit
  }
}

function storageSet(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch {
    // storage disabled or full: nothing to remember
  }
}

/** Remember that this browser took part in a call of `room` (for "after the session"). */
export function rememberAttended(room) {
  let rooms = {};
  try {
    rooms = JSON.parse(storageGet(ATTENDED_KEY) || "{}") || {};
  } catch {
    rooms = {};
  }
  rooms[room] = Date.now();
  // Keep the 50 most recent rooms.
  const recent = Object.entries(rooms).sort((a, b) => b[1] - a[1]).slice(0, 50);
  storageSet(ATTENDED_KEY, JSON.stringify(Object.fromEntries(recent)));
}

export function attendedAt(room) {
  try {
    const rooms = JSON.parse(storageGet(ATTENDED_KEY) || "{}") || {};
    return typeof rooms[room] === "number" ? rooms[room] : null;
  } catch {
    return null;
  }
}

/**
 * The role a Parloir join token (a JWT) grants, read without verifying it — only to shape the
 * page (a viewer's camera never turns on); the server decides. null when it cannot be read.
 */
export function roleOfToken(token) {
  const parts = (token || "").split(".");
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(json);
    return typeof claims.role === "string" ? claims.role : null;
  } catch {
    return null;
  }
}

/** What the waiting room says when a device is missing (null when both work). */
function waitingRoomProblem({ audio, video, cause }) {
  const why = cause ? ` (${cause.replace(/\.$/, "")})` : "";
  if (!audio && !video) {
    return `${cause || "No camera or microphone."} You can still join: you will see and hear ` +
      "the others, they will not see or hear you. To use them, allow the camera and microphone " +
      "for this site in the browser, then press “Try again”.";
  }
  if (!video) return `No camera: you can join with audio only${why}.`;
  if (!audio) return `No microphone: the others will not hear you${why}.`;
  return null;
}

/** A MOS in words (ITU-T P.800 bands: 4 good, 3.6 fair, below 2.4 unusable). */
const GOOD_MOS = 4.0;
function audioVerdictText(mos) {
  const score = `MOS ${mos.toFixed(1)} of 4.5`;
  if (mos >= GOOD_MOS) return `Audio: good (${score}).`;
  if (mos >= 3.6) return `Audio: fine for a conversation (${score}).`;
  if (mos >= MIN_AUDIO_MOS) return `Audio: usable, with noticeable degradation (${score}).`;
  return `Audio: likely to break up (${score}; a conversation needs ${MIN_AUDIO_MOS}).`;
}

function formatNumber(value, digits, unit) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  return `${value.toFixed(digits)}${unit}`;
}

const RESOLUTION_WORDS = {
  "720p": "HD video (720p)",
  "540p": "good video (540p)",
  "360p": "standard video (360p)",
  "270p": "reduced video (270p)",
  "180p": "low video (180p)",
};

/**
 * `ui`: the elements (see room.html); `room`, `token`, `name` from the link; `api` a
 * ParticipantApi; `onReport(source, opener)` opens the bug panel. run() resolves with the
 * choice to join with: {stream, audio, video, muted: {audio, video}, speaker}.
 */
export class WaitingRoom {
  constructor({ ui, room, token, name, api, audioProcessing = true, onReport = () => {} }) {
    this.ui = ui;
    this.room = room;
    this.token = token;
    this.name = name;
    this.api = api;
    this.audioProcessing = audioProcessing;
    this.onReport = onReport;
    this.viewer = roleOfToken(token) === "subscriber";
    this.local = { stream: null, audio: null, video: null };
    this.muted = { audio: false, video: false };
    this.speaker = null;
    this.problem = null;
    this.callProblem = null;
    this.firstVisit = storageGet(TEST_SEEN_KEY) === null;
    this.test = null; // the ConnectionTest running or last run
    this.testResults = []; // {result, payload, stored, error}
    this.meter = new MicLevelMeter(ui.meter);
    this.speakerTest = new SpeakerTest();
    this.getUserMediaCalls = 0;
    this.blurPreview = null; // LoopbackSession sending the camera to be blurred, while blur is on
    this.blur = new BlurControl({
      ui: {
        toggle: ui.blurToggle,
        strength: ui.blurStrength,
        state: ui.blurState,
        unavailable: ui.blurUnavailable,
        unavailableText: ui.blurUnavailableText,
        continueButton: ui.blurContinue,
        cameraOffButton: ui.blurCameraOff,
      },
      apply: (enabled, strength) => this._applyBlur(enabled, strength),
      onCameraOff: () => {
        if (!this.muted.video) this._toggle("video");
      },
      unavailableHint: "Join without blur, or turn your camera off.",
    });
    this._opening = false;
    this._resolveJoin = null;
    this._wire();
  }

  _wire() {
    const ui = this.ui;
    ui.camera.addEventListener("change", () => this._switch("video", ui.camera));
    ui.microphone.addEventListener("change", () => this._switch("audio", ui.microphone));
    ui.speaker.addEventListener("change", () => {
      this.speaker = ui.speaker.value || null;
    });
    ui.speakerTestButton.addEventListener("click", () => this.playTestSound());
    ui.previewCamera.addEventListener("click", () => this._toggle("video"));
    ui.previewMic.addEventListener("click", () => this._toggle("audio"));
    ui.retry.addEventListener("click", () => this.openDevices());
    ui.testStart.addEventListener("click", () => this.runTest());
    ui.testSkip.addEventListener("click", () => this.skipTest());
    ui.join.addEventListener("click", () => this._join());
    ui.report.addEventListener("click", () => this.onReport("waiting_room", ui.report));
    ui.pastReport.addEventListener("click", () => this.onReport("after_call", ui.pastReport));
    if (!SPEAKER_SELECTION_SUPPORTED) {
      ui.speaker.disabled = true;
      ui.speakerNote.textContent =
        "This browser cannot choose the speaker: sound plays on the system's default output.";
      ui.speakerNote.hidden = false;
    }
  }

  /** Show the waiting room; resolves when the user joins. */
  run() {
    this.ui.root.hidden = false;
    this._renderTestCard();
    this.ui.join.disabled = true;
    const joined = new Promise((resolve) => {
      this._resolveJoin = resolve;
    });
    if (this.viewer) {
      this._showViewer();
    } else {
      this.openDevices();
    }
    return joined;
  }

  /** After the session: offer to declare a problem with it (source after_call). */
  offerAfterSession(text) {
    this.ui.pastText.textContent = text;
    this.ui.past.hidden = false;
  }

  _showViewer() {
    this.ui.lead.textContent =
      "You will join as a viewer: you see and hear the others, they do not see or hear you.";
    this.ui.placeholderText.textContent = "Viewers do not use a camera";
    this.ui.previewCamera.hidden = true;
    this.ui.previewMic.hidden = true;
    this.ui.meterRow.hidden = true;
    this.ui.camera.closest(".field").hidden = true;
    this.ui.blurField.hidden = true;
    this.ui.microphone.closest(".field").hidden = true;
    this.ui.testCard.hidden = true;
    this.ui.join.textContent = "Join as a viewer";
    this.ui.join.disabled = false;
    this.refreshDevices();
  }

  /** Ask for camera and microphone (again, after a refusal); fill the pickers. */
  async openDevices() {
    const ui = this.ui;
    this._opening = true;
    ui.retry.disabled = true;
    this.problem = null;
    this._setLocal({ stream: null, audio: null, video: null });
    this.getUserMediaCalls += 1;
    const local = await openCameraAndMic({
      video: DEFAULT_VIDEO,
      audioProcessing: this.audioProcessing,
    });
    this._opening = false;
    this.callProblem = local.problem;
    this.problem = waitingRoomProblem(local);
    this._setLocal(local);
    ui.retry.disabled = false;
    await this.refreshDevices();
    this._render();
  }

  _setLocal({ stream, audio, video }) {
    if (this.local.stream && this.local.stream !== stream) stopStream(this.local.stream);
    this.local = { stream, audio, video };
    this._previewTrack = null;
    this.meter.attach(audio);
    this._render();
  }

  /**
   * The preview shows the camera, or, while blur is on, the camera as it comes back blurred from
   * the server (what the others will see).
   */
  _renderPreviewSource() {
    const session = this.blurPreview;
    if (session && this.blur.state === "on") session.blurredOnce = true;
    // Once blurred frames came back, a restart (new strength) keeps showing them, not raw ones.
    const showBlurred = Boolean(session && session.blurredOnce && this.blur.enabled) &&
      (this.blur.state === "on" || this.blur.state === "starting");
    const blurred = showBlurred ? session.returned.getVideoTracks()[0] || null : null;
    const track = blurred || this.local.video;
    this.ui.previewBadge.hidden = !blurred || this.muted.video;
    if (track === this._previewTrack) return;
    this._previewTrack = track || null;
    this.ui.preview.srcObject = track ? new MediaStream([track]) : null;
    if (track) this.ui.preview.play().catch(() => {});
  }

  /** BlurControl's target in the waiting room: a loopback session blurring a camera copy. */
  async _applyBlur(enabled, strength) {
    if (!enabled) {
      if (this.blurPreview && this.blur.state !== "unavailable") {
        await this.blurPreview.setBlur(false, strength).catch(() => null);
      }
      this._closeBlurPreview();
      return { state: "off", strength, reason: null };
    }
    if (!this.local.video) {
      throw Object.assign(new Error("no camera"), { reason: "no camera is in use" });
    }
    if (!this.blurPreview) {
      const video = this.local.video.clone();
      video.enabled = true;
      const session = new LoopbackSession({
        room: this.room,
        token: this.token,
        name: this.name,
        onReturnedTrack: () => this._renderPreviewSource(),
        onBlurStatus: (status) => {
          this.blur.update(status);
          this._renderPreviewSource();
        },
      });
      session.camera = video;
      this.blurPreview = session;
      try {
        await session.open({ audio: null, video });
      } catch (error) {
        if (this.blurPreview === session) this._closeBlurPreview();
        throw error;
      }
      if (!session.blurAvailable) {
        this._closeBlurPreview();
        this.blur.setAvailable(false);
        return { state: "off", strength, reason: null };
      }
    }
    const session = this.blurPreview;
    const status = await session.setBlur(true, strength);
    this._renderPreviewSource();
    return status;
  }

  _closeBlurPreview() {
    const session = this.blurPreview;
    if (!session) return;
    this.blurPreview = null;
    session.close();
    if (session.camera) session.camera.stop();
    this._renderPreviewSource();
  }

  async refreshDevices() {
    const devices = await listDevices();
    const id = (track) => (track ? track.getSettings().deviceId || null : null);
    fillDevicePicker(this.ui.camera, devices, "videoinput", id(this.local.video), true);
    fillDevicePicker(this.ui.microphone, devices, "audioinput", id(this.local.audio), true);
    if (SPEAKER_SELECTION_SUPPORTED) {
      fillDevicePicker(this.ui.speaker, devices, "audiooutput", this.speaker || "default", false);
      this.speaker = this.ui.speaker.value || null;
    }
    this.devices = devices.map((d) => ({ kind: d.kind, label: d.label, deviceId: d.deviceId }));
  }

  /** The user picked another camera or microphone: open it, replace the preview's track. */
  async _switch(kind, select) {
    const deviceId = select.value;
    if (!deviceId) return;
    const ui = this.ui;
    ui.deviceError.hidden = true;
    select.disabled = true;
    try {
      this.getUserMediaCalls += 1;
      const track = await openDevice(kind, deviceId, {
        video: DEFAULT_VIDEO,
        audioProcessing: this.audioProcessing,
      });
      const old = this.local[kind];
      const stream = this.local.stream || new MediaStream();
      if (old) {
        stream.removeTrack(old);
        old.stop();
      }
      stream.addTrack(track);
      track.enabled = !this.muted[kind];
      const next = { ...this.local, stream, [kind]: track };
      this.local = next;
      if (kind === "video") {
        this._previewTrack = null;
        this._renderPreviewSource();
        if (this.blurPreview) {
          // The blurred preview was sending the old camera: start it again with the new one.
          this._closeBlurPreview();
          this.blur.sync();
        }
      } else {
        this.meter.attach(track);
      }
    } catch (error) {
      ui.deviceError.textContent = error.message;
      ui.deviceError.hidden = false;
    } finally {
      select.disabled = false;
      await this.refreshDevices();
      this._render();
    }
  }

  _toggle(kind) {
    this.muted[kind] = !this.muted[kind];
    const track = this.local[kind];
    if (track) track.enabled = !this.muted[kind];
    this._render();
  }

  async playTestSound() {
    const ui = this.ui;
    ui.deviceError.hidden = true;
    try {
      await this.speakerTest.play(this.speaker);
    } catch (error) {
      ui.deviceError.textContent = `The test sound could not be played (${error.name || error}).`;
      ui.deviceError.hidden = false;
    }
  }

  /** The page's state of camera, microphone and problem message. */
  _render() {
    const ui = this.ui;
    if (this.viewer) return;
    const { audio, video } = this.local;
    const showVideo = Boolean(video) && !this.muted.video;
    ui.blurField.hidden = !video;
    this._renderPreviewSource();
    ui.preview.hidden = !showVideo;
    ui.placeholder.hidden = showVideo;
    if (!video) ui.placeholderText.textContent = this.problem ? "No camera" : "Starting your camera…";
    else if (this.muted.video) ui.placeholderText.textContent = "Your camera is off";
    ui.previewCamera.disabled = !video;
    ui.previewMic.disabled = !audio;
    ui.previewCamera.hidden = !video;
    ui.previewMic.hidden = !audio;
    ui.previewCamera.textContent = this.muted.video ? "Turn camera on" : "Turn camera off";
    ui.previewMic.textContent = this.muted.audio ? "Unmute microphone" : "Mute microphone";
    ui.previewCamera.classList.toggle("off", this.muted.video);
    ui.previewMic.classList.toggle("off", this.muted.audio);
    ui.meter.classList.toggle("meter-muted", this.muted.audio || !audio);

    ui.problem.hidden = !this.problem;
    ui.problemText.textContent = this.problem || "";
    // Permission refused or no device: say what joining now means.
    if (!audio && !video) ui.join.textContent = "Join without camera or microphone";
    else if (!video || this.muted.video) ui.join.textContent = "Join with audio only";
    else if (!audio) ui.join.textContent = "Join without microphone";
    else ui.join.textContent = "Join the call";
    ui.join.disabled = this._opening;
    ui.testStart.disabled = (!audio && !video) || Boolean(this.test && !this.test.finished);
    ui.testNeedsMedia.hidden = this._opening || Boolean(audio || video);
  }

  // ---- connection test --------------------------------------------------------------------

  _renderTestCard() {
    const ui = this.ui;
    ui.testCard.classList.toggle("test-proposed", this.firstVisit && !this.testResults.length);
    if (this.firstVisit && !this.testResults.length) {
      ui.testTitle.textContent = "First time here? Test your connection";
      ui.testStart.className = "button";
    } else {
      ui.testTitle.textContent = "Connection test";
      ui.testStart.className = "button-secondary";
    }
    ui.testStart.textContent = this.testResults.length ? "Test again" : "Test my connection";
  }

  /** Run the connection test with clones of the preview's tracks; resolves with its result. */
  async runTest() {
    if (this.test && !this.test.finished) return this.test.start();
    const ui = this.ui;
    const tracks = {
      audio: this.local.audio ? this.local.audio.clone() : null,
      video: this.local.video ? this.local.video.clone() : null,
    };
    // The test measures the path: it sends even what is muted in the preview.
    for (const track of Object.values(tracks)) if (track) track.enabled = true;
    const test = new ConnectionTest({
      room: this.room,
      token: this.token,
      name: this.name,
      tracks,
      onSample: (sample) => this._renderProgress(sample, test),
      onReturnedTrack: (track, stream) => {
        if (track.kind === "video") {
          ui.testReturned.srcObject = stream;
          ui.testReturned.play().catch(() => {});
        }
      },
    });
    this.test = test;
    storageSet(TEST_SEEN_KEY, String(Date.now()));
    ui.testRunning.hidden = false;
    ui.testResult.hidden = true;
    ui.testStart.hidden = true;
    ui.testSkip.hidden = false;
    ui.testProgress.textContent = "Connecting to the server…";
    this._render();
    ui.testSkip.focus();
    const result = await test.start();
    this._showResult(result);
    return result;
  }

  /** Stop the running test now; resolves once it is released. */
  skipTest() {
    if (!this.test || this.test.finished) return Promise.resolve(null);
    return this.test.skip();
  }

  _renderProgress(sample, test) {
    const seconds = Math.round(sample.elapsedS);
    const parts = [`Measuring… ${seconds} s`];
    if (typeof sample.rttMs === "number") parts.push(`round trip ${sample.rttMs.toFixed(0)} ms`);
    if (typeof sample.receivedKbps === "number") {
      parts.push(`receiving ${Math.round(sample.receivedKbps)} kbit/s`);
    }
    if (test.state === "measuring") this.ui.testProgress.textContent = parts.join(" · ");
  }

  async _showResult(result) {
    const ui = this.ui;
    ui.testReturned.srcObject = null;
    ui.testRunning.hidden = true;
    ui.testSkip.hidden = true;
    ui.testStart.hidden = false;
    const payload = resultPayload(result);
    const entry = { result, payload, stored: false, error: null };
    this.testResults.push(entry);
    this._renderTestCard();
    this._render();

    const { verdict, figures } = result;
    const lines = [];
    if (verdict.mos === null) {
      lines.push(
        result.skipped
          ? "Test skipped before anything was measured."
          : "The test could not measure your connection.",
      );
    } else {
      lines.push(audioVerdictText(verdict.mos));
      if (verdict.resolution === AUDIO_ONLY) {
        lines.push("Video: not enough bandwidth; join with audio only.");
      } else if (verdict.resolution) {
        lines.push(`Video: your connection carries ${RESOLUTION_WORDS[verdict.resolution]}.`);
      }
    }
    ui.testVerdict.replaceChildren(
      ...lines.map((line) => {
        const p = document.createElement("p");
        p.textContent = line;
        return p;
      }),
    );
    const reduced = verdict.mos !== null && (verdict.mos < GOOD_MOS ||
      ["270p", "180p", AUDIO_ONLY].includes(verdict.resolution));
    ui.testVerdict.classList.toggle("verdict-bad", verdict.mos !== null && !verdict.audioSupported);
    ui.testVerdict.classList.toggle("verdict-warn", verdict.audioSupported && reduced);
    ui.testVerdict.classList.toggle("verdict-good", verdict.audioSupported && !reduced);
    const rows = [
      ["Round-trip time", formatNumber(figures.rttMs, 0, " ms")],
      ["Jitter", formatNumber(figures.jitterMs, 1, " ms")],
      ["Packet loss", formatNumber(figures.loss === null ? null : figures.loss * 100, 1, " %")],
      ["Received", formatNumber(figures.receivedKbps, 0, " kbit/s")],
      ["Available to send", formatNumber(figures.availableKbps, 0, " kbit/s")],
      ["Frames decoded", typeof figures.framesDecoded === "number" ? String(figures.framesDecoded) : "—"],
      ["Audio MOS", formatNumber(verdict.mos, 2, "")],
      ["Recommended video", verdict.resolution || "—"],
    ];
    ui.testFigures.replaceChildren();
    for (const [term, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      ui.testFigures.append(dt, dd);
    }
    const endings = {
      [Outcome.STABLE]: `The figures settled after ${result.durationS.toFixed(0)} s.`,
      [Outcome.TIME_LIMIT]: `Measured for ${result.durationS.toFixed(0)} s (the figures kept moving).`,
      [Outcome.TIMEOUT]: `Stopped after ${result.durationS.toFixed(0)} s: the server did not answer in time.`,
      [Outcome.SKIPPED]: `Skipped after ${result.durationS.toFixed(1)} s.`,
      [Outcome.FAILED]: `The test failed: ${result.error}.`,
    };
    ui.testEnding.textContent = endings[result.outcome] || "";
    ui.testResult.hidden = false;

    try {
      await this.api.postConnectionTest(payload);
      entry.stored = true;
    } catch (error) {
      entry.error = error.message;
      ui.testEnding.textContent += " The result could not be saved.";
    }
  }

  // ---- joining -------------------------------------------------------------------------------

  async _join() {
    if (!this._resolveJoin) return;
    if (this.test && !this.test.finished) await this.test.skip();
    storageSet(TEST_SEEN_KEY, storageGet(TEST_SEEN_KEY) || String(Date.now()));
    this.meter.close();
    this.speakerTest.close();
    this._closeBlurPreview();
    this.ui.preview.srcObject = null;
    const resolve = this._resolveJoin;
    this._resolveJoin = null;
    this.ui.root.hidden = true;
    const { stream, audio, video } = this.local;
    resolve({
      stream,
      audio,
      video,
      problem: this.callProblem || null,
      blur: { enabled: this.blur.enabled && Boolean(video), strength: this.blur.strength },
      muted: { ...this.muted },
      speaker: this.speaker,
      viewer: this.viewer,
    });
  }

  /** Read-only state for tests and debugging. */
  view() {
    return {
      open: !this.ui.root.hidden,
      viewer: this.viewer,
      firstVisit: this.firstVisit,
      problem: this.problem,
      muted: { ...this.muted },
      speaker: this.speaker,
      localStream: this.local.stream,
      micLevel: this.meter.level,
      micPeak: this.meter.peak,
      speakerTestPlays: this.speakerTest.plays,
      getUserMediaCalls: this.getUserMediaCalls,
      blur: this.blur.view(),
      blurPreview: this.blurPreview
        ? { pcs: this.blurPreview.pcs, publicationId: this.blurPreview.publication?.id ?? null }
        : null,
      devices: (this.devices || []).map((d) => ({ ...d })),
      test: this.test ? this.test.view() : null,
      testResults: this.testResults.map((e) => ({
        outcome: e.result.outcome,
        payload: { ...e.payload },
        stored: e.stored,
        error: e.error,
      })),
    };
  }
}
