// A private loopback room on the SFU (join with purpose "connection-test", PROTOCOL.md): what
// this page publishes there comes back to it through the server, blurred if asked. The waiting
// room uses it for the connection test and for the live preview of background blur.

import { SignalingClient } from "./signaling-client.js";
import { PublisherConnection, SubscriberConnection, iceServersOf } from "./peer-connections.js";

export function signalingUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/rtc`;
}

/**
 * `onReturnedTrack(track, stream)`: each of our own tracks as it comes back;
 * `onBlurStatus(status)`: the server's `blur-status` for our camera.
 */
export class LoopbackSession {
  constructor({
    room,
    token,
    name = null,
    url = null,
    onReturnedTrack = () => {},
    onBlurStatus = () => {},
  }) {
    this.room = room;
    this.token = token;
    this.name = name;
    this.url = url || signalingUrl();
    this.onReturnedTrack = onReturnedTrack;
    this.onBlurStatus = onBlurStatus;
    this.signaling = null;
    this.publisher = null;
    this.subscriber = null;
    this.publication = null;
    this.blurAvailable = false;
    this.iceServers = [];
    this.returned = new MediaStream();
    this.closed = false;
  }

  /** Join the loopback room and publish `tracks` {audio, video}; resolves with the publication. */
  async open(tracks) {
    const signaling = new SignalingClient(this.url);
    this.signaling = signaling;
    signaling.on("joined", (message) => {
      if (this.closed) return;
      this.blurAvailable = Boolean(message.blur_available);
      this.iceServers = iceServersOf(message);
      this.subscriber = new SubscriberConnection(signaling, this.iceServers, (track) => {
        if (this.closed) return;
        this.returned.addTrack(track);
        this.onReturnedTrack(track, this.returned);
      });
    });
    signaling.on("offer", (message) => {
      if (!this.subscriber || this.closed) return;
      return this.subscriber.handleOffer(message);
    });
    signaling.on("blur-status", (message) => {
      if (!this.closed && this.publication && message.publication_id === this.publication.id) {
        this.onBlurStatus(message);
      }
    });
    await signaling.connect();
    this._check();
    const join = { type: "join", token: this.token, room: this.room, purpose: "connection-test" };
    if (this.name) join.name = this.name;
    await signaling.request(join, ["joined"]);
    this._check();
    const sent = [tracks.audio, tracks.video].filter(Boolean);
    if (!sent.length) throw new Error("nothing to send: no camera and no microphone");
    this.publisher = new PublisherConnection(signaling, this.iceServers);
    const { publication } = await this.publisher.publish(new MediaStream(sent), tracks);
    this._check();
    this.publication = publication;
    return publication;
  }

  /** Turn blur on or off for our camera here; resolves with {state, strength, reason}. */
  async setBlur(enabled, strength) {
    if (!this.publication) throw new Error("nothing published yet");
    const reply = await this.signaling.request(
      { type: "blur", publication_id: this.publication.id, enabled, strength },
      ["ack"],
      20000,
    );
    return reply.blur;
  }

  get pcs() {
    return {
      publisher: this.publisher ? this.publisher.pc : null,
      subscriber: this.subscriber ? this.subscriber.pc : null,
    };
  }

  get signalingOpen() {
    return Boolean(this.signaling && this.signaling.open);
  }

  /** Leave: close both peer connections and the socket, stop the returned tracks. Synchronous. */
  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.publisher) this.publisher.close();
    if (this.subscriber) this.subscriber.close();
    if (this.signaling) {
      this.signaling.send({ type: "leave" });
      this.signaling.close();
    }
    for (const track of this.returned.getTracks()) track.stop();
  }

  _check() {
    if (this.closed) throw new Error("closed");
  }
}
