// The two peer connections with the SFU (PROTOCOL.md "Peer connections").
//   publisher:  this page offers its own tracks (sendonly), the server answers.
//   subscriber: the server offers everyone else's tracks, this page answers.
// SDPs are sent once ICE gathering completes (capped, so a slow interface cannot stall the
// call); candidates found after that are trickled with `ice` messages.

const GATHERING_CAP_MS = 2000;

/**
 * The RTCIceServer list of a `joined` message: its `ice_servers` URLs, with the time-limited
 * `ice_credentials` attached to the TURN ones (PROTOCOL.md).
 */
export function iceServersOf(joined) {
  const credentials = joined.ice_credentials || null;
  return (joined.ice_servers || []).map((url) => {
    const turn = /^turns?:/.test(url);
    return turn && credentials
      ? { urls: url, username: credentials.username, credential: credentials.credential }
      : { urls: url };
  });
}

function rtcConfiguration(iceServers) {
  return {
    // URLs, or RTCIceServer objects (iceServersOf).
    iceServers: (iceServers || []).map((server) =>
      typeof server === "string" ? { urls: server } : server,
    ),
    bundlePolicy: "max-bundle",
    rtcpMuxPolicy: "require",
  };
}

/** Resolve when `pc` has gathered all candidates, or after `capMs`, whichever comes first. */
export function iceGatheringDone(pc, capMs = GATHERING_CAP_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve(true);
  return new Promise((resolve) => {
    const finish = (complete) => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve(complete);
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") finish(true);
    };
    const timer = setTimeout(() => finish(false), capMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** Shared part: the RTCPeerConnection, late-candidate trickling, close. */
class SfuConnection {
  constructor(role, signaling, iceServers) {
    this.role = role; // "publisher" | "subscriber"
    this.signaling = signaling;
    this.pc = new RTCPeerConnection(rtcConfiguration(iceServers));
    this._sdpSent = false;
    this.pc.addEventListener("icecandidate", (event) => this._trickle(event.candidate));
  }

  /** Wait (capped) for gathering, then return the local SDP to send; later candidates trickle. */
  async _localSdpToSend() {
    await iceGatheringDone(this.pc);
    this._sdpSent = true;
    return this.pc.localDescription.sdp;
  }

  _trickle(candidate) {
    // Before the first SDP is sent its candidates travel inside it.
    if (!this._sdpSent) return;
    this.signaling.send({
      type: "ice",
      pc: this.role,
      candidate: candidate ? candidate.candidate : "",
      sdp_mid: candidate && candidate.sdpMid !== null ? candidate.sdpMid : undefined,
      sdp_mline_index:
        candidate && candidate.sdpMLineIndex !== null ? candidate.sdpMLineIndex : undefined,
    });
  }

  close() {
    this.pc.close();
  }
}

/**
 * Carries this page's own publications: the camera (with the microphone) and, while sharing,
 * the screen. Every negotiation (publish, unpublish) runs one at a time, in call order.
 */
export class PublisherConnection extends SfuConnection {
  constructor(signaling, iceServers) {
    super("publisher", signaling, iceServers);
    this._queue = Promise.resolve();
    // {kind, transceiver} of ended publications: inactive m-lines the next publish reuses.
    this._idle = [];
  }

  _serial(task) {
    const run = this._queue.then(task);
    this._queue = run.catch(() => {});
    return run;
  }

  /**
   * Publish `tracks` ({audio, video}, either may be null) as one publication of `videoType`
   * (`camera` or `screen`): sendonly transceivers, `publish` announcing their mids, then the
   * `offer` carrying them. Resolves with {publication, transceivers} once `published` arrives.
   * The transceivers of an ended publication are reused (its m-lines carry the new tracks), so
   * the SDP does not grow with every screen share ever started (PROTOCOL.md `publish`).
   * `publicationId`: take back a publication suspended by a drop (PROTOCOL.md "Reconnecting"),
   * so everyone gets it again under the same id.
   */
  publish(stream, tracks, { videoType = "camera", muted = {}, publicationId = null } = {}) {
    return this._serial(async () => {
      const transceivers = {}; // kind -> RTCRtpTransceiver
      for (const kind of ["audio", "video"]) {
        if (!tracks[kind]) continue;
        const idle = this._idle.findIndex((entry) => entry.kind === kind);
        if (idle !== -1) {
          const [{ transceiver }] = this._idle.splice(idle, 1);
          await transceiver.sender.replaceTrack(tracks[kind]);
          if (transceiver.sender.setStreams) transceiver.sender.setStreams(stream);
          transceiver.direction = "sendonly";
          transceivers[kind] = transceiver;
        } else {
          transceivers[kind] = this.pc.addTransceiver(tracks[kind], {
            direction: "sendonly",
            streams: [stream],
          });
        }
      }
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      const announce = { type: "publish", video_type: videoType };
      if (publicationId) announce.publication_id = publicationId;
      for (const [kind, transceiver] of Object.entries(transceivers)) {
        announce[`${kind}_mid`] = transceiver.mid;
        announce[`${kind}_muted`] = Boolean(muted[kind]);
      }
      const publishId = this.signaling.newId();
      const published = this.signaling.waitForReply(publishId, ["published"], 20000);
      published.catch(() => {}); // awaited below; avoid an unhandled rejection meanwhile
      this.signaling.send({ ...announce, id: publishId });
      await this._sendOffer();
      const reply = await published;
      return { publication: reply.publication, transceivers };
    });
  }

  /**
   * End a publication: `unpublish` with `reason`, then stop its transceivers' sending and
   * renegotiate. The m-lines stay (inactive) until a later publication of the same kinds
   * reuses them.
   */
  unpublish(publicationId, transceivers, reason = "unpublished") {
    return this._serial(async () => {
      let refused = null;
      try {
        await this.signaling.request(
          { type: "unpublish", publication_id: publicationId, reason },
          ["ack"],
        );
      } catch (error) {
        refused = error; // already gone on the server (e.g. negotiationFailed): still clean up
      }
      const ended = [];
      for (const [kind, transceiver] of Object.entries(transceivers)) {
        if (transceiver.currentDirection === "stopped") continue;
        transceiver.direction = "inactive";
        await transceiver.sender.replaceTrack(null);
        ended.push({ kind, transceiver });
      }
      if (this.pc.signalingState !== "closed") {
        await this._renegotiate();
        this._idle.push(...ended);
      }
      if (refused) throw refused;
    });
  }

  async _renegotiate() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    await this._sendOffer();
  }

  async _sendOffer() {
    const sdp = await this._localSdpToSend();
    const answer = await this.signaling.request(
      { type: "offer", pc: "publisher", sdp },
      ["answer"],
      20000,
    );
    await this.pc.setRemoteDescription({
      type: "answer",
      sdp: answer.sdp,
    });
  }
}

/**
 * Receives everyone else's tracks. `onTrack(track, subscription)` gets each new remote track
 * with its {mid, publication_id, participant_id, kind} from the offer that introduced it;
 * `onChatChannel(channel)` gets the server's `chat` data channel when it arrives.
 */
export class SubscriberConnection extends SfuConnection {
  constructor(signaling, iceServers, onTrack, onChatChannel = () => {}) {
    super("subscriber", signaling, iceServers);
    this.subscriptions = new Map(); // mid -> subscription entry of the latest offer
    this._queue = Promise.resolve();
    this.chat = null; // the `chat` data channel the server creates on this connection
    this.pc.addEventListener("track", (event) => {
      const mid = event.transceiver ? event.transceiver.mid : null;
      const entry = this.subscriptions.get(mid);
      if (entry) onTrack(event.track, entry);
      else console.warn(`parloir: track on unknown mid ${mid}`);
    });
    this.pc.addEventListener("datachannel", (event) => {
      if (event.channel.label !== "chat") return;
      this.chat = event.channel;
      onChatChannel(event.channel);
    });
  }

  /** Answer a server `offer`; offers are handled one at a time, in order. */
  handleOffer(message) {
    const run = this._queue.then(() => this._answer(message));
    this._queue = run.catch(() => {});
    return run;
  }

  async _answer(message) {
    // The mapping must be known before setRemoteDescription fires `track`.
    this.subscriptions = new Map(message.subscriptions.map((entry) => [entry.mid, entry]));
    await this.pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    const sdp = await this._localSdpToSend();
    await this.signaling.request({ type: "answer", pc: "subscriber", sdp }, ["ack"], 20000);
  }

  /** The subscription entry currently carried on `mid`, if any. */
  subscriptionOf(mid) {
    return this.subscriptions.get(mid) || null;
  }
}
