// The call page (/room/<room>?token=...): joins, publishes camera and mic, shows the others.

import { SignalingClient, ServerError } from "./signaling-client.js";
import { PublisherConnection, SubscriberConnection } from "./peer-connections.js";
import { TileGrid } from "./media-tiles.js";
import { openCameraAndMic, stopStream, DEFAULT_VIDEO } from "./local-media.js";

const LEAVE_WAIT_MS = 2000;

// Why the server closed the socket, by close code (PROTOCOL.md), and whether rejoining can help.
const CLOSE_REASONS = {
  4401: {
    text: "Your call link is not valid for this room, or it has expired. Ask for a new link.",
    canRejoin: false,
  },
  4408: { text: "The server did not receive the join request in time.", canRejoin: true },
  4410: { text: "The media connection to the server was lost.", canRejoin: true },
};

// Join refusals that a new attempt with the same link cannot fix.
const JOIN_REFUSALS = {
  "token-invalid": "Your call link is not valid. Ask for a new link.",
  "token-expired": "Your call link has expired. Ask for a new link.",
  "wrong-room": "Your call link is for another room.",
  forbidden: "You are not allowed to join this room.",
};

const state = {
  phase: "starting", // starting | joining | joined | leaving | left | failed
  room: null,
  participantId: null,
  name: null,
  role: null,
  roomCodec: null,
  participants: new Map(), // id -> participant object (others only)
  publications: new Map(), // id -> publication object (everyone's live ones)
  publication: null, // this page's own live publication
  local: { stream: null, audio: null, video: null },
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
  mic: document.getElementById("mic-button"),
  camera: document.getElementById("camera-button"),
  sound: document.getElementById("sound-button"),
  leave: document.getElementById("leave-button"),
  leftScreen: document.getElementById("left-screen"),
  leftTitle: document.getElementById("left-title"),
  leftReason: document.getElementById("left-reason"),
  rejoin: document.getElementById("rejoin-link"),
};
const grid = new TileGrid(ui.tiles);

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
    get participants() { return [...state.participants.values()].map((p) => ({ ...p })); },
    get errors() { return [...state.errors]; },
    get serverErrors() { return state.serverErrors.map((e) => ({ ...e })); },
    get soundBlocked() { return state.soundBlocked; },
  }),
  writable: false,
  configurable: false,
});

// ---- controls -------------------------------------------------------------------------------

function renderControls() {
  const joined = state.phase === "joined";
  ui.mic.disabled = !joined || !state.local.audio;
  ui.camera.disabled = !joined || !state.local.video;
  ui.mic.textContent = state.muted.audio ? "Unmute mic" : "Mute mic";
  ui.camera.textContent = state.muted.video ? "Start camera" : "Stop camera";
  ui.mic.classList.toggle("off", state.muted.audio);
  ui.camera.classList.toggle("off", state.muted.video);
  ui.leave.disabled = !(joined || state.phase === "joining");
  ui.sound.hidden = !state.soundBlocked;
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
  if (!state.publication) return; // sent with the publish, or reconciled when it goes live
  try {
    await state.signaling.request(
      { type: "mute", publication_id: state.publication.id, kind, muted },
      ["ack"],
    );
  } catch (error) {
    notify(describeError(error));
  }
}

ui.mic.addEventListener("click", () => toggleMute("audio"));
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

function removeParticipant(participantId) {
  state.participants.delete(participantId);
  for (const [id, publication] of state.publications) {
    if (publication.participant_id === participantId) state.publications.delete(id);
  }
  grid.removeRemote(participantId);
}

function addPublication(publication) {
  state.publications.set(publication.id, publication);
  if (publication.participant_id === state.participantId) return;
  const tile = grid.remoteTile(publication.participant_id, nameOf(publication.participant_id));
  if (publication.video_type === "camera") {
    tile.setMuted("audio", publication.muted.audio);
    tile.setMuted("video", publication.muted.video);
  }
}

function removePublication(publicationId, participantId) {
  state.publications.delete(publicationId);
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
  if (publication && publication.video_type !== "camera") return; // screen share: not shown yet
  const tile = grid.remoteTile(subscription.participant_id, nameOf(subscription.participant_id));
  tile.publicationId = subscription.publication_id;
  if (subscription.kind === "video") {
    tile.setVideoTrack(track);
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

// ---- joining, publishing, leaving ----------------------------------------------------------

function wireSignaling(signaling) {
  signaling.on("joined", (message) => {
    // Synchronous: the subscriber offer that follows must find its peer connection.
    state.participantId = message.participant.id;
    state.name = message.participant.name;
    state.role = message.participant.role;
    state.roomCodec = message.room.codec;
    state.iceServers = message.ice_servers;
    state.subscriber = new SubscriberConnection(signaling, message.ice_servers, remoteTrackArrived);
    watchConnection(state.subscriber.pc, "subscriber");
    for (const participant of message.participants) addParticipant(participant);
    for (const publication of message.publications) addPublication(publication);
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
  signaling.on("participant-left", (message) => {
    const name = nameOf(message.participant_id);
    removeParticipant(message.participant_id);
    if (name) setStatus(`${name} left`);
  });
  signaling.on("track-published", (message) => addPublication(message.publication));
  signaling.on("track-unpublished", (message) =>
    removePublication(message.publication_id, message.participant_id),
  );
  signaling.on("mute-changed", muteChanged);
  signaling.on("error", (message) => {
    state.serverErrors.push({ code: message.code, reason: message.reason });
    notify(`Server error: ${message.reason} (${message.code})`);
  });
  signaling.on("client-error", (message) => {
    state.errors.push(message.reason);
    notify(message.reason);
  });
  signaling.on("socket-closed", (message) => {
    if (state.phase !== "joining" && state.phase !== "joined") return;
    const known = CLOSE_REASONS[message.code] || {
      text: `The connection to the server closed (code ${message.code}).`,
      canRejoin: true,
    };
    const title = state.phase === "joining" ? "Could not join" : "Disconnected";
    endCall({ phase: "failed", title, text: known.text, canRejoin: known.canRejoin });
  });
}

function watchConnection(pc, label) {
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed" && state.phase === "joined") {
      notify(`The ${label} media connection failed.`);
    }
  });
}

async function publishLocalMedia() {
  const { stream, audio, video } = state.local;
  if (!audio && !video) return;
  state.publisher = new PublisherConnection(state.signaling, state.iceServers);
  watchConnection(state.publisher.pc, "publisher");
  setStatus("Publishing your camera and microphone…");
  const publication = await state.publisher.publish(stream, { audio, video }, { muted: state.muted });
  state.publication = publication;
  state.publications.set(publication.id, publication);
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
  state.room = room;
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

  state.phase = "joining";
  renderControls();
  setStatus("Joining…");
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const signaling = new SignalingClient(`${scheme}//${window.location.host}/rtc`);
  state.signaling = signaling;
  wireSignaling(signaling);

  try {
    await signaling.connect();
    const join = { type: "join", token, room };
    if (nameOverride) join.name = nameOverride;
    await signaling.request(join, ["joined"]);
  } catch (error) {
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
  if (state.phase !== "joining") return;
  state.phase = "joined";
  grid.showLocal(state.participantId, state.name);
  setStatus(`In the call as ${state.name}`);
  renderControls();

  // Devices are opened only once the role is known: a viewer's camera never turns on.
  if (state.role === "subscriber") {
    notify("You joined as a viewer: you see and hear the others, they do not see you.", "info");
    return;
  }
  const local = await openCameraAndMic({ video: DEFAULT_VIDEO, audioProcessing });
  if (state.phase !== "joined") {
    stopStream(local.stream);
    return;
  }
  state.local = { stream: local.stream, audio: local.audio, video: local.video };
  if (local.video) grid.local.setVideoTrack(local.video);
  if (local.problem) notify(local.problem, "info");
  renderControls();
  try {
    await publishLocalMedia();
    if (state.phase === "joined") setStatus(`In the call as ${state.name}`);
  } catch (error) {
    if (state.phase === "joined") notify(`Could not publish your camera: ${describeError(error)}`);
  }
}

/** Leave on purpose: tell the server, then tear everything down. */
async function leave() {
  if (state.phase !== "joined" && state.phase !== "joining") return;
  state.phase = "leaving";
  renderControls();
  setStatus("Leaving…");
  const signaling = state.signaling;
  if (signaling && signaling.open) {
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
  if (state.publisher) state.publisher.close();
  if (state.subscriber) state.subscriber.close();
  if (state.signaling) state.signaling.close();
  stopStream(state.local.stream);
  grid.clear();
  state.participants.clear();
  state.publications.clear();
  ui.call.hidden = true;
  ui.controls.hidden = true;
  ui.leftScreen.hidden = false;
  ui.leftTitle.textContent = title;
  ui.leftReason.textContent = text;
  ui.rejoin.hidden = !canRejoin;
  setStatus(phase === "left" ? "You left the call" : title);
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
