// Video tiles: one for this page's own preview, one per remote participant; and the stage, where
// a shared screen is shown large while the camera tiles become a filmstrip beside it.

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** One participant's tile: video, name, mute badges and (remote only) an audio element. */
class Tile {
  constructor({ participantId, name, local, audioOutput = null }) {
    this.participantId = participantId;
    this.name = name;
    this.local = local;
    this.muted = { audio: false, video: false };
    this.videoTrack = null;
    this.audioTrack = null;

    this.root = element("figure", local ? "tile tile-local" : "tile");
    this.root.dataset.participantId = participantId;
    this.root.setAttribute("aria-label", local ? `${name} (you)` : name);

    this.video = element("video", "tile-video");
    this.video.autoplay = true;
    this.video.playsInline = true;
    // Sound goes through the <audio> element; the local preview must never play our own mic.
    this.video.muted = true;
    this.video.setAttribute("aria-hidden", "true");

    this.placeholder = element("div", "tile-placeholder");
    this.placeholder.append(element("span", "tile-initial", initialOf(name)));

    this.caption = element("figcaption", "tile-caption");
    this.nameLabel = element("span", "tile-name", local ? `${name} (you)` : name);
    this.badges = element("span", "tile-badges");
    this.micBadge = element("span", "badge badge-mic", "Mic muted");
    this.camBadge = element("span", "badge badge-camera", "Camera off");
    // Our own preview shows the raw camera; the others see it blurred (on the server).
    this.blurBadge = element("span", "badge badge-blur", "Blurred for the others");
    // A remote participant whose connection dropped: its place is kept while it comes back.
    this.reconnectingBadge = element("span", "badge badge-reconnecting", "Reconnecting…");
    this.micBadge.hidden = true;
    this.camBadge.hidden = true;
    this.blurBadge.hidden = true;
    this.reconnectingBadge.hidden = true;
    this.blurred = false;
    this.reconnecting = false;
    this.badges.append(this.reconnectingBadge, this.micBadge, this.camBadge, this.blurBadge);
    this.caption.append(this.nameLabel);

    this.root.append(this.placeholder, this.video, this.caption, this.badges);

    if (!local) {
      // Remote audio is only decoded while an unmuted element plays it.
      this.audio = element("audio", "tile-audio");
      this.audio.autoplay = true;
      if (audioOutput) setAudioOutput(this.audio, audioOutput);
      this.root.append(this.audio);
    } else {
      this.audio = null;
    }
    this._render();
  }

  setName(name) {
    this.name = name;
    this.nameLabel.textContent = this.local ? `${name} (you)` : name;
    this.root.setAttribute("aria-label", this.local ? `${name} (you)` : name);
    this.placeholder.firstChild.textContent = initialOf(name);
  }

  setVideoTrack(track) {
    this.videoTrack = track;
    this.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) {
      track.addEventListener("ended", () => {
        if (this.videoTrack === track) this.setVideoTrack(null);
      });
      this.video.play().catch(() => {}); // autoplay covers it; a muted video is always allowed
    }
    this._render();
  }

  /** Play `track` through the tile's <audio>; resolves false if autoplay was refused. */
  setAudioTrack(track) {
    this.audioTrack = track;
    if (!this.audio) return Promise.resolve(true);
    this.audio.srcObject = track ? new MediaStream([track]) : null;
    if (!track) return Promise.resolve(true);
    return this.audio.play().then(
      () => true,
      (error) => error.name !== "NotAllowedError",
    );
  }

  setBlurred(blurred) {
    this.blurred = Boolean(blurred);
    this._render();
  }

  setReconnecting(reconnecting) {
    this.reconnecting = Boolean(reconnecting);
    this._render();
  }

  setMuted(kind, muted) {
    this.muted[kind] = Boolean(muted);
    this._render();
  }

  _render() {
    this.micBadge.hidden = !this.muted.audio;
    this.camBadge.hidden = !this.muted.video;
    this.blurBadge.hidden = !(this.blurred && this.local && !this.muted.video);
    const showVideo = this.videoTrack !== null && !this.muted.video;
    this.video.hidden = !showVideo;
    this.placeholder.hidden = showVideo;
    this.root.classList.toggle("tile-mic-muted", this.muted.audio);
    this.reconnectingBadge.hidden = !this.reconnecting;
    this.root.classList.toggle("tile-reconnecting", this.reconnecting);
    const label = this.local ? `${this.name} (you)` : this.name;
    this.root.setAttribute("aria-label", this.reconnecting ? `${label}, reconnecting` : label);
  }

  stop() {
    this.video.srcObject = null;
    if (this.audio) this.audio.srcObject = null;
    this.root.remove();
  }
}

/** Route an element's sound to speaker `deviceId` (where the browser supports choosing). */
function setAudioOutput(media, deviceId) {
  if (typeof media.setSinkId !== "function") return Promise.resolve(false);
  return media.setSinkId(deviceId).then(
    () => true,
    () => false,
  );
}

function initialOf(name) {
  const trimmed = (name || "?").trim();
  return trimmed ? trimmed[0].toUpperCase() : "?";
}

export class TileGrid {
  constructor(container) {
    this.container = container;
    this.local = null;
    this.remote = new Map(); // participant id -> Tile
    this.audioOutput = null; // speaker deviceId for remote sound (null: the default)
  }

  /** Play every remote participant's sound on speaker `deviceId`; resolves false if refused. */
  async setAudioOutput(deviceId) {
    this.audioOutput = deviceId;
    const results = await Promise.all(
      [...this.remote.values()].map((tile) => setAudioOutput(tile.audio, deviceId)),
    );
    return results.every(Boolean);
  }

  showLocal(participantId, name) {
    if (!this.local) {
      this.local = new Tile({ participantId, name, local: true });
      this.container.prepend(this.local.root);
    } else {
      this.local.participantId = participantId;
      this.local.root.dataset.participantId = participantId;
      this.local.setName(name);
    }
    this._layout();
    return this.local;
  }

  /** The tile of a remote participant, created on first use. */
  remoteTile(participantId, name) {
    let tile = this.remote.get(participantId);
    if (!tile) {
      tile = new Tile({
        participantId,
        name: name || "Guest",
        local: false,
        audioOutput: this.audioOutput,
      });
      this.remote.set(participantId, tile);
      this.container.append(tile.root);
      this._layout();
    } else if (name && name !== tile.name) {
      tile.setName(name);
    }
    return tile;
  }

  removeRemote(participantId) {
    const tile = this.remote.get(participantId);
    if (!tile) return;
    tile.stop();
    this.remote.delete(participantId);
    this._layout();
  }

  clear() {
    for (const id of [...this.remote.keys()]) this.removeRemote(id);
    if (this.local) {
      this.local.stop();
      this.local = null;
    }
    this._layout();
  }

  _layout() {
    // The grid's column count follows the number of tiles (see app.css .tiles-N).
    const count = this.container.children.length;
    for (const name of [...this.container.classList]) {
      if (name.startsWith("tiles-")) this.container.classList.remove(name);
    }
    this.container.classList.add(`tiles-${Math.min(count, 9)}`);
  }
}

/**
 * The main stage: the shared screens of the call (anyone's, this page's own included), the
 * latest one shown large. `onChange(showing)` runs whenever it starts or stops showing one.
 */
export class ScreenStage {
  constructor(container, onChange = () => {}) {
    this.container = container;
    this.onChange = onChange;
    // Publication id -> {publicationId, participantId, name, track, local}, oldest first.
    this.screens = new Map();
    this.current = null;

    this.video = element("video", "stage-video");
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.muted = true; // screens are video only
    this.caption = element("p", "stage-caption");
    container.append(this.video, this.caption);
    container.hidden = true;
  }

  /** Show a screen publication's track (`local`: our own share, a preview of what we send). */
  show({ publicationId, participantId, name, track, local = false }) {
    this.screens.delete(publicationId); // re-added last: the newest share is on stage
    this.screens.set(publicationId, { publicationId, participantId, name, track, local });
    this._render();
  }

  remove(publicationId) {
    if (!this.screens.delete(publicationId)) return;
    this._render();
  }

  /** Drop every screen of one participant (they left). */
  removeParticipant(participantId) {
    let changed = false;
    for (const [id, screen] of this.screens) {
      if (screen.participantId === participantId) {
        this.screens.delete(id);
        changed = true;
      }
    }
    if (changed) this._render();
  }

  clear() {
    this.screens.clear();
    this._render();
  }

  get showing() {
    return this.current !== null;
  }

  _render() {
    const latest = [...this.screens.values()].pop() || null;
    if (latest !== this.current) {
      this.current = latest;
      if (latest) {
        this.video.srcObject = new MediaStream([latest.track]);
        this.video.play().catch(() => {});
        this.caption.textContent = latest.local
          ? "You are presenting: everyone sees your screen"
          : `${latest.name}’s screen`;
        this.container.setAttribute(
          "aria-label",
          latest.local ? "Your shared screen" : `${latest.name}’s shared screen`,
        );
        this.container.classList.toggle("stage-local", latest.local);
      } else {
        this.video.srcObject = null;
        this.caption.textContent = "";
      }
    }
    this.container.hidden = this.current === null;
    this.onChange(this.current !== null);
  }
}
