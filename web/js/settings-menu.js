// The settings dialog: camera, microphone and speaker pickers, and this page's live connection
// numbers. A native modal <dialog>: Tab stays inside it, Escape closes it, focus returns to the
// button that opened it.

import { SPEAKER_SELECTION_SUPPORTED, fillDevicePicker, listDevices } from "./device-pickers.js";

export { SPEAKER_SELECTION_SUPPORTED };

const STATS_INTERVAL_MS = 1000;

function formatRate(kbps) {
  if (kbps === null) return "measuring…";
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(2)} Mbit/s` : `${Math.round(kbps)} kbit/s`;
}

function formatPercent(value) {
  return value === null ? "—" : `${value.toFixed(1)} %`;
}

function formatMs(value) {
  return value === null ? "—" : `${Math.round(value)} ms`;
}

/**
 * `ui`: {dialog, openButton, closeButton, camera, microphone, speaker, speakerNote, deviceError,
 * stats: {outgoing, incoming, receiveLoss, sendLoss, rtt}}.
 * `current()` returns the deviceIds in use {camera, microphone, speaker}; `onChange(kind, id)`
 * switches one ("camera" | "microphone" | "speaker") and may reject with a message to show.
 * `stats` is a ConnectionStats.
 */
export class SettingsMenu {
  constructor({ ui, current, onChange, stats }) {
    this.ui = ui;
    this.current = current;
    this.onChange = onChange;
    this.stats = stats;
    this.latest = null;
    this._timer = null;
    this._sampling = false;

    ui.openButton.addEventListener("click", () => this.open());
    ui.closeButton.addEventListener("click", () => ui.dialog.close());
    ui.dialog.addEventListener("close", () => this._stopStats());
    const pickers = [
      [ui.camera, "camera"],
      [ui.microphone, "microphone"],
      [ui.speaker, "speaker"],
    ];
    for (const [select, kind] of pickers) {
      select.addEventListener("change", () => this._changed(kind, select));
    }
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener("devicechange", () => {
        if (this.isOpen) this.refreshDevices();
      });
    }
    if (!SPEAKER_SELECTION_SUPPORTED) {
      ui.speaker.disabled = true;
      ui.speakerNote.textContent =
        "This browser cannot choose the speaker: sound plays on the system's default output.";
      ui.speakerNote.hidden = false;
    }
  }

  get isOpen() {
    return this.ui.dialog.open;
  }

  async open() {
    if (!this.isOpen) this.ui.dialog.showModal();
    this.stats.reset();
    this._startStats();
    await this.refreshDevices();
  }

  close() {
    if (this.isOpen) this.ui.dialog.close();
  }

  /** Fill the pickers from enumerateDevices, selecting what is in use now. */
  async refreshDevices() {
    const devices = await listDevices();
    const inUse = this.current();
    fillDevicePicker(this.ui.camera, devices, "videoinput", inUse.camera, true);
    fillDevicePicker(this.ui.microphone, devices, "audioinput", inUse.microphone, true);
    if (SPEAKER_SELECTION_SUPPORTED) {
      fillDevicePicker(this.ui.speaker, devices, "audiooutput", inUse.speaker || "default", false);
    }
  }

  async _changed(kind, select) {
    const deviceId = select.value;
    if (!deviceId) return;
    select.disabled = true;
    select.setAttribute("aria-busy", "true");
    this.ui.deviceError.hidden = true;
    try {
      await this.onChange(kind, deviceId);
    } catch (error) {
      this.ui.deviceError.textContent = error && error.message ? error.message : String(error);
      this.ui.deviceError.hidden = false;
    } finally {
      select.removeAttribute("aria-busy");
      select.disabled = false;
      if (this.isOpen) await this.refreshDevices();
    }
  }

  _startStats() {
    this._stopStats();
    const tick = async () => {
      if (this._sampling) return;
      this._sampling = true;
      try {
        this.latest = await this.stats.sample();
        this._renderStats(this.latest);
      } catch {
        // A peer connection closed between two samples: the next tick tries again.
      } finally {
        this._sampling = false;
      }
    };
    tick();
    this._timer = setInterval(tick, STATS_INTERVAL_MS);
  }

  _stopStats() {
    if (this._timer !== null) clearInterval(this._timer);
    this._timer = null;
  }

  _renderStats(sample) {
    const out = this.ui.stats;
    out.outgoing.textContent = formatRate(sample.outgoingKbps);
    out.incoming.textContent = formatRate(sample.incomingKbps);
    out.receiveLoss.textContent = formatPercent(sample.receiveLossPercent);
    out.sendLoss.textContent = formatPercent(sample.sendLossPercent);
    out.rtt.textContent = formatMs(sample.rttMs);
  }
}
