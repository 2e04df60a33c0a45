// The call page (/room/<room>?token=...): the waiting room first (devices, connection test),
// then joins, publishes the camera and mic chosen there, shows the others; in the call: chat,
// screen sharing (shown on a main stage), the settings dialog, the recording indicator and the
// "Report a problem" panel, which stays available after leaving.

import { SignalingClient, ServerError } from "./signaling-client.js";
import { PublisherConnection, SubscriberConnection, iceServersOf } from "./peer-connections.js";
import { ScreenStage, TileGrid } from "./media-tiles.js";
import { openDevice, openScreen, stopStream, DEFAULT_VIDEO } from "./local-media.js";
import { ChatPanel } from "./chat.js";
import { ConnectionStats } from "./connection-stats.js";
import { SettingsMenu } from "./settings-menu.js";
import { ParticipantApi, SessionAccess } from "./participant-api.js";
import { BugReportPanel } from "./bug-report.js";
import { WaitingRoom, attendedAt, rememberAttended } from "./waiting-room.js";
import { BlurControl } from "./blur-control.js";

const LEAVE_WAIT_MS = 2000;

// Reconnecting after a drop (PROTOCOL.md "Reconnecting"): the connection is judged lost when the
// server has been silent this long despite pings, or a peer connection failed or stayed
// `disconnected` this long; then resumes are tried after these delays (the last repeats, each
// jittered by ±25 %), each attempt capped, until back, refused or given up.
const KEEPALIVE_MS = 1000;
const SERVER_SILENCE_MS = 3500;
const PC_DISCONNECTED_MS = 2000;
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000];
const RECONNECT_CONNECT_TIMEOUT_MS = 5000;
const RECONNECT_JOIN_TIMEOUT_MS = 10000;
const RECONNECT_GIVE_UP_MS = 120000;
const OWN_SCREEN = "own-screen"; // the stage's key for this page's own share

// Why the server closed the socket, by close code (PROTOCOL.md), and whether rejoining can help.
const CLOSE_REASONS = {
  4401: {
    text: "Your call link is not valid for this room, or it has expired. Ask for a new link.",
    canRejoin: false,
  },
  4408: { text: "The server did not receive the join request in time.", canRejoin: true },
  4410: { text: "The media connection to the server was lost.", canRejoin: true },
};

// Close codes after which coming back on our own is wrong: an invalid link, removed from the call.
const FINAL_CLOSE_CODES = new Set([4401, 4403]);

// Join refusals that a new attempt with the same link cannot fix.
const JOIN_REFUSALS = {
  "token-invalid": "Your call link is not valid. Ask for a new link.",
  "token-expired": "Your call link has expired. Ask for a new link.",
  "wrong-room": "Your call link is for another room.",
  forbidden: "You are not allowed to join this room.",
};

const state = {
  // starting | waiting | joining | joined | reconnecting | leaving | left | failed
  phase: "starting",
  room: null,
  token: null,
  nameOverride: null, // the name asked for in the link, sent again when resuming
  resumeKey: null, // participant.resume_key from our own `joined`: proves a resume is us
  reconnect: null, // while reconnecting: {since, attempt, timer}
  reconnects: 0, // drops come back from
  // Our own connection: {state: connected | reconnecting | disconnected, why, at} in order.
  connectionHistory: [],
  leftReason: null, // the server's `left` reason (we left, or were removed): no resuming then
  reconnectingParticipants: new Map(), // participant id -> fallback timer (or null)
  // participant-reconnecting / -reconnected / -left as they came: {type, participant_id, reason, at}
  presence: [],
  recording: null, // the recording in progress ({id, ...}), or null
  sessionAccess: null, // SessionAccess of this token for the room's session, once known
  session: null, // the session (mentor only: from the report view)
  participantId: null,
  name: null,
  role: null,
  roomCodec: null,
  participants: new Map(), // id -> participant object (others only)
  publications: new Map(), // id -> publication object (everyone's live ones)
  publication: null, // this page's own live camera publication
  cameraTransceivers: {}, // kind -> RTCRtpTransceiver of the camera publication
  cameraPublished: null, // promise of the camera publication, while and after it is set up
  local: { stream: null, audio: null, video: null },
  audioProcessing: true,
  // This page's own share: {track, stream, published (promise), publicationId, ending}.
  screen: null,
  screenStarting: false,
  // Publication id -> [{track, subscription}]: tracks that arrived before their publication.
  pendingTracks: new Map(),
  // Every track-unpublished seen: {publication_id, participant_id, reason, video_type}.
  unpublished: [],
  speaker: null, // chosen speaker deviceId (null: the default)
  deviceSwitches: 0,
  muted: { audio: false, video: false },
  iceServers: [],
  publisher: null,
  subscriber: null,
  signaling: null,
  errors: [], // page errors (window.onerror, unhandled rejections, failed handlers)
  serverErrors: [], // {code, reason} from the server's `error` messages
  soundBlocked: false,
};

const ui = {
  roomLabel: document.getElementById("room-label"),
  status: document.getElementById("status"),
  notices: document.getElementById("notices"),
  tiles: document.getElementById("tiles"),
  call: document.getElementById("call"),
  controls: document.getElementById("controls"),
  callBody: document.getElementById("call-body"),
  stage: document.getElementById("stage"),
  mic: document.getElementById("mic-button"),
  camera: document.getElementById("camera-button"),
  share: document.getElementById("share-button"),
  popout: document.getElementById("popout-button"),
  chat: document.getElementById("chat-button"),
  settings: document.getElementById("settings-button"),
  sound: document.getElementById("sound-button"),
  leave: document.getElementById("leave-button"),
  leftScreen: document.getElementById("left-screen"),
  leftTitle: document.getElementById("left-title"),
  leftReason: document.getElementById("left-reason"),
  rejoin: document.getElementById("rejoin-link"),
  afterReport: document.getElementById("after-report"),
  reportLink: document.getElementById("report-link"),
  report: document.getElementById("report-button"),
  recordingBadge: document.getElementById("recording-badge"),
  connectionBanner: document.getElementById("connection-banner"),
};
const byId = (id) => document.getElementById(id);
let api = null; // ParticipantApi, once the link's room and token are known
let waitingRoom = null;
const bugPanel = new BugReportPanel({
  ui: {
    panel: byId("bug-panel"),
    title: byId("bug-title"),
    close: byId("bug-close"),
    unavailable: byId("bug-unavailable"),
    form: byId("bug-form"),
    intro: byId("bug-intro"),
    category: byId("bug-category"),
    details: byId("bug-details"),
    counter: byId("bug-counter"),
    error: byId("bug-error"),
    submit: byId("bug-submit"),
    sent: byId("bug-sent"),
    sentText: byId("bug-sent-text"),
    again: byId("bug-again"),
    feedbackSection: byId("feedback-section"),
    feedbackForm: byId("feedback-form"),
    feedbackDetails: byId("feedback-details"),
    feedbackError: byId("feedback-error"),
    feedbackSent: byId("feedback-sent"),
  },
  api: {
    // Bound once the link is read (start()); the panel is only opened after that.
    bugCategories: () => api.bugCategories(),
    fileBugReport: (body) => api.fileBugReport(body),
    sendFeedback: (body) => api.sendFeedback(body),
    // A pre-filled report the server suggests (suspected fallback), set by bugCategories().
    get suggestion() {
      return api ? api.suggestion || null : null;
    },
  },
  onToggle: (open) => {
    if (open) chat.close(); // one side panel at a time
    ui.report.setAttribute("aria-expanded", String(open));
    ui.report.classList.toggle("active", open);
  },
});
const grid = new TileGrid(ui.tiles);
const stage = new ScreenStage(ui.stage, () => {
  ui.call.classList.toggle("has-stage", stage.showing);
  ui.call.classList.toggle("presenting", Boolean(stage.current && stage.current.local));
  renderControls();
});
const chat = new ChatPanel({
  panel: document.getElementById("chat-panel"),
  list: document.getElementById("chat-messages"),
  form: document.getElementById("chat-form"),
  input: document.getElementById("chat-input"),
  errorBox: document.getElementById("chat-error"),
  toggle: ui.chat,
  unread: document.getElementById("chat-unread"),
  closeButton: document.getElementById("chat-close"),
  selfId: () => state.participantId,
  nameOf: (id) => nameOf(id),
});
const connectionStats = new ConnectionStats(() => ({
  publisher: state.publisher ? state.publisher.pc : null,
  subscriber: state.subscriber ? state.subscriber.pc : null,
}));
const settings = new SettingsMenu({
  ui: {
    dialog: document.getElementById("settings-dialog"),
    openButton: ui.settings,
    closeButton: document.getElementById("settings-close"),
    camera: document.getElementById("camera-select"),
    microphone: document.getElementById("microphone-select"),
    speaker: document.getElementById("speaker-select"),
    speakerNote: document.getElementById("speaker-note"),
    deviceError: document.getElementById("device-error"),
    stats: {
      outgoing: document.getElementById("stat-outgoing"),
      incoming: document.getElementById("stat-incoming"),
      receiveLoss: document.getElementById("stat-receive-loss"),
      sendLoss: document.getElementById("stat-send-loss"),
      rtt: document.getElementById("stat-rtt"),
    },
  },
  current: () => ({
    camera: deviceIdOf(state.local.video),
    microphone: deviceIdOf(state.local.audio),
    speaker: state.speaker,
  }),
  onChange: (kind, deviceId) => switchDevice(kind, deviceId),
  stats: connectionStats,
});

// Background blur of our camera, computed on the SFU; in the settings dialog.
const blur = new BlurControl({
  ui: {
    toggle: byId("blur-toggle"),
    strength: byId("blur-strength"),
    state: byId("blur-state"),
    unavailable: byId("blur-unavailable"),
    unavailableText: byId("blur-unavailable-text"),
    continueButton: byId("blur-continue"),
    cameraOffButton: byId("blur-camera-off"),
  },
  apply: (enabled, strength) => requestBlur(enabled, strength),
  onCameraOff: async () => {
    if (!state.muted.video) await toggleMute("video");
  },
  onState: (blurState) => {
    if (grid.local) grid.local.setBlurred(blurState === "on");
  },
  unavailableHint:
    "Your camera is not shown to anyone until you choose: continue without blur, or turn " +
    "your camera off.",
});

// ---- page errors and messages -------------------------------------------------------------

window.addEventListener("error", (event) => {
  state.errors.push(String(event.message || event.error || "error"));
});
window.addEventListener("unhandledrejection", (event) => {
  const reason = event.reason;
  state.errors.push(`unhandled rejection: ${reason && reason.message ? reason.message : reason}`);
});

function setStatus(text) {
  ui.status.textContent = text;
}

/** Show a message in the notice list; `kind` is "error" or "info". */
function notify(text, kind = "error") {
  const item = document.createElement("li");
  item.className = `notice notice-${kind}`;
  item.textContent = text;
  ui.notices.append(item);
  ui.notices.hidden = false;
  while (ui.notices.children.length > 5) ui.notices.firstElementChild.remove();
}

function describeError(error) {
  if (error instanceof ServerError) return `Server refused: ${error.reason} (${error.code})`;
  return error && error.message ? error.message : String(error);
}

// ---- the read-only view for tests and debugging -------------------------------------------

function remoteTileView(tile) {
  return Object.freeze({
    participantId: tile.participantId,
    name: tile.name,
    publicationId: tile.publicationId || null,
    micMuted: tile.muted.audio,
    cameraMuted: tile.muted.video,
    hasVideo: tile.videoTrack !== null,
    hasAudio: tile.audioTrack !== null,
    reconnecting: tile.reconnecting,
    video: tile.video,
    audio: tile.audio,
    element: tile.root,
  });
}

Object.defineProperty(window, "parloir", {
  value: Object.freeze({
    get phase() { return state.phase; },
    get room() { return state.room; },
    get participantId() { return state.participantId; },
    get name() { return state.name; },
    get publicationId() { return state.publication ? state.publication.id : null; },
    get muted() { return { ...state.muted }; },
    get localStream() { return state.local.stream; },
    get pcs() {
      return Object.freeze({
        publisher: state.publisher ? state.publisher.pc : null,
        subscriber: state.subscriber ? state.subscriber.pc : null,
      });
    },
    get remoteTiles() { return [...grid.remote.values()].map(remoteTileView); },
    get publications() { return [...state.publications.values()].map((p) => ({ ...p })); },
    get unpublished() { return state.unpublished.map((u) => ({ ...u })); },
    get stage() {
      const current = stage.current;
      return Object.freeze({
        showing: current !== null,
        publicationId: current ? current.publicationId : null,
        participantId: current ? current.participantId : null,
        local: current ? current.local : false,
        video: stage.video,
        element: ui.stage,
      });
    },
    get screenShare() {
      const share = state.screen;
      return share
        ? { active: true, track: share.track, publicationId: share.publicationId }
        : { active: false, track: null, publicationId: null };
    },
    get chat() { return chat.view(); },
    get connectionStats() { return settings.latest ? { ...settings.latest } : null; },
    get speaker() { return state.speaker; },
    get deviceSwitches() { return state.deviceSwitches; },
    get participants() {
      return [...state.participants.values()].map((p) => ({
        ...p,
        reconnecting: state.reconnectingParticipants.has(p.id),
      }));
    },
    get presence() { return state.presence.map((event) => ({ ...event })); },
    get connection() {
      const last = state.connectionHistory[state.connectionHistory.length - 1];
      return {
        state: last ? last.state : null,
        reconnects: state.reconnects,
        attempt: state.reconnect ? state.reconnect.attempt : 0,
        history: state.connectionHistory.map((entry) => ({ ...entry })),
      };
    },
    get errors() { return [...state.errors]; },
    get serverErrors() { return state.serverErrors.map((e) => ({ ...e })); },
    get soundBlocked() { return state.soundBlocked; },
    get recording() { return state.recording ? { ...state.recording } : null; },
    get waitingRoom() { return waitingRoom ? waitingRoom.view() : null; },
    get bugPanel() { return bugPanel.view(); },
    get sessionAccess() { return state.sessionAccess; },
    get blur() { return blur.view(); },
  }),
  writable: false,
  configurable: false,
});

// ---- controls -------------------------------------------------------------------------------

function renderControls() {
  const joined = state.phase === "joined";
  // While reconnecting: mute and unmute apply locally (the server learns it when we are back),
  // the chat stays readable, and leaving is possible.
  const inCall = joined || state.phase === "reconnecting";
  ui.mic.disabled = !inCall || !state.local.audio;
  ui.camera.disabled = !inCall || !state.local.video;
  ui.mic.textContent = state.muted.audio ? "Unmute mic" : "Mute mic";
  ui.camera.textContent = state.muted.video ? "Start camera" : "Stop camera";
  ui.mic.classList.toggle("off", state.muted.audio);
  ui.camera.classList.toggle("off", state.muted.video);
  ui.leave.disabled = !(inCall || state.phase === "joining");
  ui.sound.hidden = !state.soundBlocked;

  const canShare =
    joined &&
    state.role !== "subscriber" &&
    Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  ui.share.disabled = !canShare || state.screenStarting;
  ui.share.textContent = state.screen ? "Stop sharing" : "Share screen";
  ui.share.classList.toggle("active", Boolean(state.screen));
  ui.chat.disabled = !inCall;
  ui.settings.disabled = !joined;
  ui.report.hidden = !joined;

  // While presenting, the others' camera can float over whatever window is being shown.
  const pipTile = popOutCandidate();
  ui.popout.hidden = !(state.screen && document.pictureInPictureEnabled && pipTile);
  ui.popout.textContent = document.pictureInPictureElement ? "Pop in video" : "Pop out video";
}

function deviceIdOf(track) {
  return track && track.readyState === "live" ? track.getSettings().deviceId || null : null;
}

/** Mute or unmute our own track: disable it locally and tell the room. */
function applyLocalMute(kind, muted) {
  state.muted[kind] = muted;
  const track = state.local[kind];
  if (track) track.enabled = !muted;
  if (grid.local) grid.local.setMuted(kind, muted);
  renderControls();
}

async function toggleMute(kind) {
  const muted = !state.muted[kind];
  applyLocalMute(kind, muted);
  // Not live yet, or reconnecting: reconciled when the publication goes live again.
  if (!state.publication || state.phase !== "joined") return;
  try {
    await state.signaling.request(
      { type: "mute", publication_id: state.publication.id, kind, muted },
      ["ack"],
    );
  } catch (error) {
    notify(describeError(error));
  }
}

ui.share.addEventListener("click", () => (state.screen ? stopScreenShare() : startScreenShare()));
ui.popout.addEventListener("click", () => togglePopOut());
// Picture-in-picture also ends from the floating window's own close button.
for (const type of ["enterpictureinpicture", "leavepictureinpicture"]) {
  document.addEventListener(type, () => renderControls(), true);
}
ui.mic.addEventListener("click", () => toggleMute("audio"));
ui.chat.addEventListener("click", () => bugPanel.close());
ui.report.addEventListener("click", () =>
  bugPanel.isOpen ? bugPanel.close() : bugPanel.open("call", ui.report),
);
ui.afterReport.addEventListener("click", () => bugPanel.open("after_call", ui.afterReport));
ui.camera.addEventListener("click", () => toggleMute("video"));
ui.leave.addEventListener("click", () => leave());
ui.sound.addEventListener("click", async () => {
  state.soundBlocked = false;
  for (const tile of grid.remote.values()) {
    if (tile.audio && tile.audio.srcObject) {
      await tile.audio.play().catch(() => { state.soundBlocked = true; });
    }
  }
  renderControls();
});

// ---- remote participants -------------------------------------------------------------------

function nameOf(participantId) {
  const participant = state.participants.get(participantId);
  return participant ? participant.name : null;
}

function addParticipant(participant) {
  if (participant.id === state.participantId) return;
  state.participants.set(participant.id, participant);
  grid.remoteTile(participant.id, participant.name);
}

const RECONNECTED_FALLBACK_MS = 15000;

/**
 * Someone's connection dropped (`participant-reconnecting`): their tile stays, marked
 * "Reconnecting…", until their publications come back (or, if they have none, until they are).
 */
function markReconnecting(participantId, reconnecting) {
  const timer = state.reconnectingParticipants.get(participantId);
  if (timer) clearTimeout(timer);
  if (reconnecting) state.reconnectingParticipants.set(participantId, null);
  else state.reconnectingParticipants.delete(participantId);
  const tile = grid.remote.get(participantId);
  if (tile) tile.setReconnecting(reconnecting);
}

function participantReconnected(participantId) {
  if (!state.reconnectingParticipants.has(participantId)) return;
  const publishes = [...state.publications.values()].some(
    (publication) => publication.participant_id === participantId,
  );
  if (!publishes) {
    markReconnecting(participantId, false);
    return;
  }
  // Back: the mark goes when a publication is live again (addPublication); in case none ever
  // comes back (their camera ended meanwhile), it goes anyway after a while.
  const timer = setTimeout(() => markReconnecting(participantId, false), RECONNECTED_FALLBACK_MS);
  state.reconnectingParticipants.set(participantId, timer);
}

function notePresence(message) {
  state.presence.push({
    type: message.type,
    participant_id: message.participant_id,
    reason: message.reason || null,
    at: Date.now(),
  });
}

function removeParticipant(participantId) {
  markReconnecting(participantId, false);
  state.participants.delete(participantId);
  for (const [id, publication] of state.publications) {
    if (publication.participant_id === participantId) {
      state.publications.delete(id);
      state.pendingTracks.delete(id);
    }
  }
  stage.removeParticipant(participantId);
  grid.removeRemote(participantId);
  renderControls();
}

function addPublication(publication) {
  state.publications.set(publication.id, publication);
  if (publication.participant_id === state.participantId) return;
  // Its publications coming back (same ids) is what ends someone's "Reconnecting…".
  if (state.reconnectingParticipants.has(publication.participant_id)) {
    markReconnecting(publication.participant_id, false);
  }
  const tile = grid.remoteTile(publication.participant_id, nameOf(publication.participant_id));
  if (publication.video_type === "camera") {
    tile.setMuted("audio", publication.muted.audio);
    tile.setMuted("video", publication.muted.video);
  }
  // Tracks whose subscriber offer overtook the announcement.
  const early = state.pendingTracks.get(publication.id) || [];
  state.pendingTracks.delete(publication.id);
  for (const { track, subscription } of early) remoteTrackArrived(track, subscription);
}

function removePublication(publicationId, participantId) {
  state.publications.delete(publicationId);
  state.pendingTracks.delete(publicationId);
  stage.remove(publicationId);
  const tile = grid.remote.get(participantId);
  if (tile && tile.publicationId === publicationId) {
    tile.publicationId = null;
    tile.setVideoTrack(null);
    tile.setAudioTrack(null);
    tile.setMuted("audio", false);
    tile.setMuted("video", false);
  }
}

function remoteTrackArrived(track, subscription) {
  const publication = state.publications.get(subscription.publication_id);
  if (!publication) {
    // Its track-published (or joined) has not arrived yet: shown once we know what it is.
    const early = state.pendingTracks.get(subscription.publication_id) || [];
    early.push({ track, subscription });
    state.pendingTracks.set(subscription.publication_id, early);
    return;
  }
  if (publication.video_type === "screen") {
    if (subscription.kind === "video") {
      stage.show({
        publicationId: publication.id,
        participantId: publication.participant_id,
        name: nameOf(publication.participant_id) || publication.name || "Someone",
        track,
      });
    }
    return;
  }
  const tile = grid.remoteTile(subscription.participant_id, nameOf(subscription.participant_id));
  tile.publicationId = subscription.publication_id;
  if (subscription.kind === "video") {
    tile.setVideoTrack(track);
    renderControls();
  } else {
    tile.setAudioTrack(track).then((played) => {
      if (!played) {
        state.soundBlocked = true;
        renderControls();
        notify("Your browser blocked the sound: press “Enable sound”.", "info");
      }
    });
  }
}

function muteChanged(message) {
  const publication = state.publications.get(message.publication_id);
  if (publication) publication.muted[message.kind] = message.muted;
  if (message.participant_id === state.participantId) {
    // Our own mute echoed back, or a moderator muted us.
    if (state.muted[message.kind] !== message.muted) {
      applyLocalMute(message.kind, message.muted);
      if (message.muted) notify(`A moderator turned off your ${message.kind === "audio" ? "microphone" : "camera"}.`, "info");
    }
    return;
  }
  const tile = grid.remote.get(message.participant_id);
  if (tile && (!tile.publicationId || tile.publicationId === message.publication_id)) {
    tile.setMuted(message.kind, message.muted);
  }
}

// ---- screen sharing -------------------------------------------------------------------------

/** Share a screen, window or tab as a second publication (`video_type: screen`). */
async function startScreenShare() {
  if (state.screen || state.screenStarting || state.phase !== "joined") return;
  state.screenStarting = true;
  renderControls();
  let track;
  try {
    track = await openScreen();
  } catch (error) {
    notify(describeError(error));
    return;
  } finally {
    state.screenStarting = false;
    renderControls();
  }
  if (!track) {
    setStatus("Screen sharing cancelled");
    return;
  }
  if (state.phase !== "joined") {
    track.stop();
    return;
  }
  const stream = new MediaStream([track]);
  const share = { track, stream, published: null, publicationId: null, ending: false };
  state.screen = share;
  // The browser's own "Stop sharing" (or the shared window closing) ends the track.
  track.addEventListener("ended", () => stopScreenShare());
  stage.show({
    publicationId: OWN_SCREEN,
    participantId: state.participantId,
    name: state.name,
    track,
    local: true,
  });
  setStatus("Presenting your screen");
  await publishScreen(share);
}

/**
 * Publish our share (again, under `publicationId`, after a reconnect). A drop meanwhile is not a
 * failure: the share is published again once the connection is back.
 */
async function publishScreen(share, publicationId = null) {
  share.published = ensurePublisher().publish(
    share.stream,
    { video: share.track },
    { videoType: "screen", publicationId },
  );
  try {
    const { publication } = await share.published;
    share.publicationId = publication.id;
    if (!share.ending) state.publications.set(publication.id, publication);
  } catch (error) {
    if (state.phase === "joined" && !share.ending) {
      notify(`Could not share your screen: ${describeError(error)}`);
      stopScreenShare();
    }
  }
  renderControls();
}

/** Stop sharing (button, or the browser ended the capture): unpublish, stop the capture. */
async function stopScreenShare(reason = "mediaStopped") {
  const share = state.screen;
  if (!share || share.ending) return;
  share.ending = true;
  state.screen = null;
  share.track.stop();
  stage.remove(OWN_SCREEN);
  renderControls();
  if (state.phase === "joined") setStatus(`In the call as ${state.name}`);
  const published = await share.published.catch(() => null);
  if (!published || state.phase !== "joined") return;
  state.publications.delete(published.publication.id);
  try {
    await state.publisher.unpublish(published.publication.id, published.transceivers, reason);
  } catch (error) {
    const gone = error instanceof ServerError && error.code === "unknown-publication";
    if (state.phase === "joined" && !gone) {
      notify(`Stopping the screen share failed: ${describeError(error)}`);
    }
  }
}

/** The remote camera tile the pop-out shows: the first one with live video. */
function popOutCandidate() {
  for (const tile of grid.remote.values()) {
    if (tile.videoTrack && tile.videoTrack.readyState === "live") return tile;
  }
  return null;
}

async function togglePopOut() {
  try {
    if (document.pictureInPictureElement) {
      await document.exitPictureInPicture();
    } else {
      const tile = popOutCandidate();
      if (tile) await tile.video.requestPictureInPicture();
    }
  } catch (error) {
    notify(`The video could not be popped out: ${describeError(error)}`, "info");
  }
  renderControls();
}

// ---- devices --------------------------------------------------------------------------------

/**
 * Switch camera or microphone without rejoining: open the new device, replace the track the
 * publisher sends (no renegotiation), update the preview, stop the old track. `speaker`: play
 * the others' sound on another output. Rejects with an Error whose message is for the user.
 */
async function switchDevice(kind, deviceId) {
  if (kind === "speaker") {
    state.speaker = deviceId;
    if (!(await grid.setAudioOutput(deviceId))) throw new Error("That speaker could not be used.");
    return;
  }
  const trackKind = kind === "camera" ? "video" : "audio";
  if (!state.local[trackKind]) throw new Error(`No ${kind} is in use in this call.`);
  // A publish still under way sends the old track: let it finish first.
  if (state.cameraPublished) await state.cameraPublished.catch(() => null);
  const track = await openDevice(trackKind, deviceId, {
    video: DEFAULT_VIDEO,
    audioProcessing: state.audioProcessing,
  });
  const old = state.local[trackKind];
  if (state.phase !== "joined" || !old) {
    track.stop();
    return;
  }
  track.enabled = !state.muted[trackKind];
  const transceiver = state.cameraTransceivers[trackKind];
  try {
    if (transceiver) await transceiver.sender.replaceTrack(track);
  } catch (error) {
    track.stop();
    throw new Error(`The new ${kind} could not be sent: ${describeError(error)}`);
  }
  state.local.stream.removeTrack(old);
  state.local.stream.addTrack(track);
  state.local[trackKind] = track;
  if (trackKind === "video") grid.local.setVideoTrack(track);
  old.stop();
  state.deviceSwitches += 1;
  setStatus(`Switched ${kind} to ${track.label || "the chosen device"}`);
}

// ---- joining, publishing, leaving ----------------------------------------------------------

function wireSignaling(signaling) {
  signaling.on("joined", (message) => {
    // Synchronous: the subscriber offer that follows must find its peer connection.
    state.participantId = message.participant.id;
    state.name = message.participant.name;
    state.role = message.participant.role;
    state.roomCodec = message.room.codec;
    state.resumeKey = message.participant.resume_key || null;
    state.iceServers = iceServersOf(message);
    state.subscriber = new SubscriberConnection(
      signaling,
      state.iceServers,
      remoteTrackArrived,
      (channel) => chat.attach(channel),
    );
    watchConnection(state.subscriber.pc, "subscriber");
    if (message.resumed) forgetWhatEndedMeanwhile(message);
    for (const participant of message.participants) addParticipant(participant);
    for (const publication of message.publications) addPublication(publication);
    showRecording(message.room.recording ? { id: message.room.recording } : null);
    blur.setAvailable(Boolean(message.blur_available));
  });
  signaling.on("blur-status", (message) => {
    if (!state.publication || message.publication_id !== state.publication.id) return;
    blur.update(message);
    if (message.state === "unavailable" && blur.enabled) settings.open();
  });
  signaling.on("recording-started", (message) => showRecording(message.recording));
  signaling.on("recording-stopped", (message) => {
    if (!state.recording || !message.recording || message.recording.id === state.recording.id) {
      showRecording(null);
    }
  });
  signaling.on("offer", (message) => {
    if (!state.subscriber) return;
    return state.subscriber.handleOffer(message).catch((error) => {
      notify(`Could not receive the others' media: ${describeError(error)}`);
    });
  });
  signaling.on("participant-joined", (message) => {
    addParticipant(message.participant);
    setStatus(`${message.participant.name} joined`);
  });
  signaling.on("participant-reconnecting", (message) => {
    notePresence(message);
    if (!state.participants.has(message.participant_id)) return;
    markReconnecting(message.participant_id, true);
    setStatus(`${nameOf(message.participant_id)} is reconnecting…`);
  });
  signaling.on("participant-reconnected", (message) => {
    notePresence(message);
    participantReconnected(message.participant_id);
    const name = nameOf(message.participant_id);
    if (name) setStatus(`${name} is back`);
  });
  signaling.on("participant-left", (message) => {
    notePresence(message);
    const name = nameOf(message.participant_id);
    removeParticipant(message.participant_id);
    if (name) setStatus(`${name} left`);
  });
  signaling.on("track-published", (message) => addPublication(message.publication));
  signaling.on("track-unpublished", (message) => {
    const publication = state.publications.get(message.publication_id);
    state.unpublished.push({
      publication_id: message.publication_id,
      participant_id: message.participant_id,
      reason: message.reason,
      video_type: publication ? publication.video_type : null,
    });
    removePublication(message.publication_id, message.participant_id);
  });
  signaling.on("mute-changed", muteChanged);
  signaling.on("error", (message) => {
    // Blur refused: the blur control shows why and what to do (not a fault of the page).
    if (message.code === "blur-unavailable") return;
    // Too late to resume: the end screen says so.
    if (message.code === "resume-failed") return;
    state.serverErrors.push({ code: message.code, reason: message.reason });
    notify(`Server error: ${message.reason} (${message.code})`);
  });
  signaling.on("client-error", (message) => {
    state.errors.push(message.reason);
    notify(message.reason);
  });
  signaling.on("left", (message) => {
    state.leftReason = message.reason;
  });
  signaling.on("socket-closed", (message) => {
    if (state.phase === "joined" && !state.leftReason && !FINAL_CLOSE_CODES.has(message.code)) {
      connectionLost(`the connection to the server closed (code ${message.code})`);
      return;
    }
    if (state.phase !== "joining" && state.phase !== "joined") return;
    const known = CLOSE_REASONS[message.code] || {
      text: `The connection to the server closed (code ${message.code}).`,
      canRejoin: true,
    };
    const title = state.phase === "joining" ? "Could not join" : "Disconnected";
    endCall({ phase: "failed", title, text: known.text, canRejoin: known.canRejoin });
  });
}

/** BlurControl's target in the call: our camera publication. */
async function requestBlur(enabled, strength) {
  if (!state.publication || !state.local.video) {
    // Not published yet: the choice is applied once the camera is live (publishLocalMedia).
    if (!enabled) return { state: "off", strength, reason: null };
    throw new Error("no target");
  }
  const reply = await state.signaling.request(
    { type: "blur", publication_id: state.publication.id, enabled, strength },
    ["ack"],
    20000,
  );
  return reply.blur;
}

/** The header's red "● Recording" badge while the room is recorded. */
function showRecording(recording) {
  const was = state.recording;
  state.recording = recording;
  ui.recordingBadge.hidden = !recording;
  if (recording && !was && state.phase === "joined") notify("This call is being recorded.", "info");
}

/**
 * A peer connection that fails, or stays `disconnected` for PC_DISCONNECTED_MS, means the
 * connection is lost: reconnect (aiortc has no ICE restart: new connections, PROTOCOL.md).
 */
function watchConnection(pc, label) {
  let timer = null;
  const current = () =>
    state.phase === "joined" &&
    ((state.publisher && state.publisher.pc === pc) ||
      (state.subscriber && state.subscriber.pc === pc));
  pc.addEventListener("connectionstatechange", () => {
    clearTimeout(timer);
    if (!current()) return;
    if (pc.connectionState === "failed") {
      connectionLost(`the ${label} media connection failed`);
    } else if (pc.connectionState === "disconnected") {
      timer = setTimeout(() => {
        if (current() && pc.connectionState === "disconnected") {
          connectionLost(`the ${label} media connection was interrupted`);
        }
      }, PC_DISCONNECTED_MS);
    }
  });
}

/** The publisher peer connection, opened on first use (camera publish or screen share). */
function ensurePublisher() {
  if (!state.publisher) {
    state.publisher = new PublisherConnection(state.signaling, state.iceServers);
    watchConnection(state.publisher.pc, "publisher");
  }
  return state.publisher;
}

/** Publish the camera and mic; `publicationId`: again, under that id, after a reconnect. */
async function publishLocalMedia(publicationId = null) {
  const { stream, audio, video } = state.local;
  if (!audio && !video) return;
  if (!publicationId) setStatus("Publishing your camera and microphone…");
  // Blur chosen in the waiting room: send black frames until the server blurs, so that no raw
  // frame of the camera ever reaches the others.
  const blurFirst = blur.enabled && video && !state.muted.video;
  if (blurFirst) video.enabled = false;
  state.cameraPublished = ensurePublisher().publish(
    stream,
    { audio, video },
    { muted: state.muted, publicationId },
  );
  state.cameraPublished.catch(() => {}); // reported by the await below
  let published;
  try {
    published = await state.cameraPublished;
  } catch (error) {
    if (blurFirst) video.enabled = !state.muted.video;
    throw error;
  }
  const { publication, transceivers } = published;
  state.publication = publication;
  state.cameraTransceivers = transceivers;
  state.publications.set(publication.id, publication);
  if (blurFirst) {
    await blur.sync(); // on, starting (raw frames already cut off) or unavailable (frozen)
    if (state.local.video === video) video.enabled = !state.muted.video;
    if (blur.state === "unavailable") settings.open();
  }
  // Mute clicks that happened while the publication was being set up.
  for (const kind of Object.keys(state.muted)) {
    if (state.local[kind] && publication.muted[kind] !== state.muted[kind]) {
      state.signaling.send({
        type: "mute",
        publication_id: publication.id,
        kind,
        muted: state.muted[kind],
      });
    }
  }
}

async function start() {
  const path = window.location.pathname.split("/");
  const room = decodeURIComponent(path[path.length - 1] || "");
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  const nameOverride = (params.get("name") || "").trim().slice(0, 64);
  const audioProcessing = params.get("audio_processing") !== "off";
  state.audioProcessing = audioProcessing;
  state.room = room;
  state.token = token;
  state.nameOverride = nameOverride || null;
  ui.roomLabel.textContent = `Room ${room}`;
  document.title = `${room} · Parloir`;
  ui.rejoin.href = window.location.href;
  if (!token) {
    endCall({
      phase: "failed",
      title: "Could not join",
      text: "This link has no token. Open the whole call link you were given.",
      canRejoin: false,
    });
    return;
  }
  api = new ParticipantApi(room, token);
  checkSession();

  // The waiting room: devices, preview, connection test. Its stream is the one published.
  state.phase = "waiting";
  setStatus("Waiting room");
  waitingRoom = new WaitingRoom({
    ui: waitingRoomUi(),
    room,
    token,
    name: nameOverride || null,
    api,
    audioProcessing,
    onReport: (source, opener) => bugPanel.open(source, opener),
  });
  const choice = await waitingRoom.run();
  bugPanel.close();
  if (state.phase !== "waiting") {
    stopStream(choice.stream);
    return;
  }
  ui.callBody.hidden = false;
  ui.controls.hidden = false;
  state.muted = { ...choice.muted };
  state.speaker = choice.speaker;
  blur.preset(choice.blur || { enabled: false });
  if (choice.speaker) grid.setAudioOutput(choice.speaker);

  state.phase = "joining";
  renderControls();
  setStatus("Joining…");
  const signaling = new SignalingClient(signalingUrl());
  state.signaling = signaling;
  wireSignaling(signaling);

  try {
    await signaling.connect();
    await signaling.request(joinMessage(), ["joined"]);
  } catch (error) {
    stopStream(choice.stream);
    if (state.phase === "joining") {
      const refusal = error instanceof ServerError ? JOIN_REFUSALS[error.code] : null;
      endCall({
        phase: "failed",
        title: "Could not join",
        text: refusal || describeError(error),
        canRejoin: !refusal,
      });
    }
    return;
  }
  if (state.phase !== "joining") {
    stopStream(choice.stream);
    return;
  }
  state.phase = "joined";
  noteConnection("connected", "joined");
  keepAlive(signaling);
  rememberAttended(room);
  grid.showLocal(state.participantId, state.name);
  setStatus(`In the call as ${state.name}`);
  renderControls();

  // A viewer's camera never turns on (the waiting room guessed from the token; the server
  // decides).
  if (state.role === "subscriber") {
    stopStream(choice.stream);
    notify("You joined as a viewer: you see and hear the others, they do not see you.", "info");
    return;
  }
  state.local = { stream: choice.stream, audio: choice.audio, video: choice.video };
  if (choice.video) grid.local.setVideoTrack(choice.video);
  for (const kind of ["audio", "video"]) {
    if (state.local[kind]) applyLocalMute(kind, state.muted[kind]);
  }
  if (choice.problem) notify(choice.problem, "info");
  renderControls();
  try {
    await publishLocalMedia();
    if (state.phase === "joined") setStatus(`In the call as ${state.name}`);
  } catch (error) {
    if (state.phase === "joined") notify(`Could not publish your camera: ${describeError(error)}`);
  }
}

function signalingUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/rtc`;
}

function joinMessage() {
  const join = { type: "join", token: state.token, room: state.room };
  if (state.nameOverride) join.name = state.nameOverride;
  return join;
}

// ---- reconnecting after a drop (PROTOCOL.md "Reconnecting") ----------------------------------

function noteConnection(connectionState, why) {
  state.connectionHistory.push({ state: connectionState, why, at: Date.now() });
}

function keepAlive(signaling) {
  signaling.keepAlive(KEEPALIVE_MS, SERVER_SILENCE_MS, () => {
    if (signaling === state.signaling) connectionLost("the server stopped answering");
  });
}

/**
 * The connection dropped (socket closed, server silent, media failed): keep the call on screen,
 * say "Reconnecting…", drop the dead socket and peer connections, and come back with new ones.
 * Our own camera, mic and screen tracks are kept (published again under the same ids).
 */
function connectionLost(why) {
  if (state.phase !== "joined") return;
  state.phase = "reconnecting";
  noteConnection("reconnecting", why);
  dropConnections();
  state.reconnect = { since: performance.now(), attempt: 0, timer: null };
  ui.connectionBanner.hidden = false;
  setStatus("Reconnecting…");
  renderControls();
  scheduleResume();
}

function dropConnections() {
  if (state.signaling) state.signaling.abandon();
  if (state.publisher) state.publisher.close();
  if (state.subscriber) state.subscriber.close();
  state.publisher = null;
  state.subscriber = null;
  state.cameraTransceivers = {};
  state.pendingTracks.clear();
}

function scheduleResume() {
  const attempt = state.reconnect.attempt;
  const base = RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)];
  const delay = base * (0.75 + Math.random() * 0.5);
  state.reconnect.timer = setTimeout(() => {
    state.reconnect.timer = null;
    resume().catch((error) => state.errors.push(`resuming failed: ${describeError(error)}`));
  }, delay);
}

/** One attempt: a new socket, `join` with `resume`; then publish again what was suspended. */
async function resume() {
  const attempt = state.reconnect;
  if (state.phase !== "reconnecting" || !attempt) return;
  attempt.attempt += 1;
  const signaling = new SignalingClient(signalingUrl());
  state.signaling = signaling;
  wireSignaling(signaling);
  let joined;
  try {
    await signaling.connect(RECONNECT_CONNECT_TIMEOUT_MS);
    joined = await signaling.request(
      { ...joinMessage(), resume: { participant_id: state.participantId, key: state.resumeKey } },
      ["joined"],
      RECONNECT_JOIN_TIMEOUT_MS,
    );
  } catch (error) {
    if (state.phase !== "reconnecting" || state.signaling !== signaling) return; // left meanwhile
    signaling.abandon();
    const code = error instanceof ServerError ? error.code : null;
    if (code === "resume-failed" || JOIN_REFUSALS[code]) {
      cannotComeBack(code);
    } else if (performance.now() - attempt.since > RECONNECT_GIVE_UP_MS) {
      cannotComeBack(null);
    } else {
      scheduleResume();
    }
    return;
  }
  if (state.phase !== "reconnecting" || state.signaling !== signaling) {
    signaling.abandon();
    return;
  }
  state.phase = "joined";
  state.reconnect = null;
  state.reconnects += 1;
  noteConnection("connected", "resumed");
  keepAlive(signaling);
  ui.connectionBanner.hidden = true;
  setStatus(`In the call as ${state.name}`);
  renderControls();
  await republish(joined.suspended_publications || []);
}

/** Resuming was refused (too late: the call went on without us) or never got through. */
function cannotComeBack(code) {
  noteConnection("disconnected", code || "gave up");
  endCall({
    phase: "failed",
    title: "Disconnected",
    text:
      JOIN_REFUSALS[code] ||
      "Your connection was lost for too long, and the call went on without you. " +
        "Rejoin to come back.",
    canRejoin: !JOIN_REFUSALS[code],
  });
}

/**
 * After a resume: what changed while we were away (people left, publications ended) is not
 * repeated to us; the `joined` reply is the room as it is now.
 */
function forgetWhatEndedMeanwhile(joined) {
  const present = new Set(joined.participants.map((participant) => participant.id));
  for (const id of [...state.participants.keys()]) {
    if (!present.has(id)) removeParticipant(id);
  }
  const live = new Set(joined.publications.map((publication) => publication.id));
  for (const [id, publication] of [...state.publications]) {
    if (publication.participant_id !== state.participantId && !live.has(id)) {
      removePublication(id, publication.participant_id);
    }
  }
  // Whoever was reconnecting meanwhile is back or gone; their publications say which.
  for (const id of [...state.reconnectingParticipants.keys()]) markReconnecting(id, false);
}

/**
 * Publish our camera, mic and screen again with the same tracks (no new getUserMedia): under
 * their old ids when the server kept them (`suspended_publications`), else as new ones.
 */
async function republish(suspended) {
  const kept = new Set(suspended.map((publication) => publication.id));
  if (state.role !== "subscriber" && (state.local.audio || state.local.video)) {
    const camera = state.publication;
    state.publication = null;
    try {
      await publishLocalMedia(camera && kept.has(camera.id) ? camera.id : null);
    } catch (error) {
      if (state.phase === "joined") {
        notify(`Could not publish your camera again: ${describeError(error)}`);
      }
    }
  }
  const share = state.screen;
  if (share && !share.ending && state.phase === "joined") {
    await publishScreen(share, kept.has(share.publicationId) ? share.publicationId : null);
  }
}

function waitingRoomUi() {
  const root = byId("waiting-room");
  return {
    root,
    lead: byId("waiting-lead"),
    preview: byId("preview-video"),
    placeholder: byId("preview-placeholder"),
    placeholderText: byId("preview-placeholder-text"),
    previewCamera: byId("preview-camera"),
    previewMic: byId("preview-mic"),
    meter: byId("mic-meter"),
    meterRow: byId("mic-meter").closest(".meter-row"),
    problem: byId("media-problem"),
    problemText: byId("media-problem-text"),
    retry: byId("media-retry"),
    camera: byId("wr-camera"),
    microphone: byId("wr-microphone"),
    speaker: byId("wr-speaker"),
    speakerNote: byId("wr-speaker-note"),
    speakerTestButton: byId("speaker-test"),
    deviceError: byId("wr-device-error"),
    testCard: byId("test-card"),
    testTitle: byId("test-title"),
    testNeedsMedia: byId("test-needs-media"),
    testRunning: byId("test-running"),
    testReturned: byId("test-returned"),
    testProgress: byId("test-progress"),
    testResult: byId("test-result"),
    testVerdict: byId("test-verdict"),
    testFigures: byId("test-figures"),
    testEnding: byId("test-ending"),
    testStart: byId("test-start"),
    testSkip: byId("test-skip"),
    past: byId("past-session"),
    pastText: byId("past-text"),
    pastReport: byId("past-report"),
    join: byId("join-button"),
    report: byId("wr-report"),
    previewBadge: byId("preview-badge"),
    blurField: byId("wr-blur"),
    blurToggle: byId("wr-blur-toggle"),
    blurStrength: byId("wr-blur-strength"),
    blurState: byId("wr-blur-state"),
    blurUnavailable: byId("wr-blur-unavailable"),
    blurUnavailableText: byId("wr-blur-unavailable-text"),
    blurContinue: byId("wr-blur-continue"),
    blurCameraOff: byId("wr-blur-camera-off"),
  };
}

/**
 * Find out whether the room belongs to a scheduled session (else the report forms are hidden)
 * and whether this is its mentor; offer "Declare a problem with this session" when the session
 * is over or this browser was already in a call of this room.
 */
async function checkSession() {
  const { access, view } = await api.sessionAccess();
  state.sessionAccess = access;
  if (access === SessionAccess.NONE) {
    bugPanel.setUnavailable();
    return;
  }
  if (view) state.session = view.session;
  renderAfterCall();
  if (!waitingRoom || state.phase !== "waiting") return;
  const session = state.session;
  const attended = attendedAt(state.room);
  if (session && session.scheduled_end * 1000 < Date.now()) {
    const end = new Date(session.scheduled_end * 1000);
    waitingRoom.offerAfterSession(
      `The session was scheduled to end ${end.toLocaleString([], {
        dateStyle: "medium",
        timeStyle: "short",
      })}. Was something wrong in it?`,
    );
  } else if (attended !== null) {
    const when = new Date(attended).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    waitingRoom.offerAfterSession(
      `You were in a call in this room (last left ${when}). Was something wrong in that session?`,
    );
  }
}

/** After leaving: declare a problem (when there is a session), the mentor's report link. */
function renderAfterCall() {
  const over = state.phase === "left" || state.phase === "failed";
  const hasSession =
    state.sessionAccess === SessionAccess.PARTICIPANT || state.sessionAccess === SessionAccess.MENTOR;
  ui.afterReport.hidden = !(over && hasSession && state.participantId);
  const mentor = state.sessionAccess === SessionAccess.MENTOR;
  ui.reportLink.hidden = !(over && mentor);
  if (mentor && state.token) {
    ui.reportLink.href =
      `/room/${encodeURIComponent(state.room)}/report?token=${encodeURIComponent(state.token)}`;
  }
}

/** Leave on purpose: tell the server, then tear everything down. */
async function leave() {
  if (state.phase !== "joined" && state.phase !== "joining" && state.phase !== "reconnecting") {
    return;
  }
  // While reconnecting there is no joined socket to say goodbye on: the server lets the
  // participant go when the grace period ends.
  const joined = state.phase !== "reconnecting";
  rememberAttended(state.room);
  state.phase = "leaving";
  renderControls();
  setStatus("Leaving…");
  const signaling = state.signaling;
  if (joined && signaling && signaling.open) {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, LEAVE_WAIT_MS);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      signaling.on("left", done);
      signaling.on("socket-closed", done);
      signaling.send({ type: "leave" });
    });
  }
  endCall({ phase: "left", title: "You left", text: "You left the call.", canRejoin: true });
}

/** Close peer connections, stop devices and show the end screen. */
function endCall({ phase, title, text, canRejoin }) {
  state.phase = phase;
  if (state.reconnect && state.reconnect.timer) clearTimeout(state.reconnect.timer);
  state.reconnect = null;
  ui.connectionBanner.hidden = true;
  for (const id of [...state.reconnectingParticipants.keys()]) markReconnecting(id, false);
  if (state.publisher) state.publisher.close();
  if (state.subscriber) state.subscriber.close();
  if (state.signaling) state.signaling.abandon();
  stopStream(state.local.stream);
  if (state.screen) state.screen.track.stop();
  state.screen = null;
  if (document.pictureInPictureElement) document.exitPictureInPicture().catch(() => {});
  settings.close();
  chat.clear();
  stage.clear();
  grid.clear();
  state.participants.clear();
  state.publications.clear();
  state.pendingTracks.clear();
  showRecording(null);
  if (waitingRoom) waitingRoom.ui.root.hidden = true;
  ui.callBody.hidden = true;
  ui.controls.hidden = true;
  ui.leftScreen.hidden = false;
  ui.leftTitle.textContent = title;
  ui.leftReason.textContent = text;
  ui.rejoin.hidden = !canRejoin;
  setStatus(phase === "left" ? "You left the call" : title);
  renderAfterCall();
  ui.leftTitle.focus();
  renderControls();
}

window.addEventListener("pagehide", () => {
  if (state.signaling && state.signaling.open) state.signaling.send({ type: "leave" });
});

start().catch((error) => {
  state.errors.push(`start failed: ${describeError(error)}`);
  endCall({
    phase: "failed",
    title: "Something went wrong",
    text: describeError(error),
    canRejoin: true,
  });
});
