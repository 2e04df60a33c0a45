// The waiting room's sound checks: a live microphone level meter, and a short test chime played
// on the chosen speaker.

const METER_INTERVAL_MS = 100;
const FLOOR_DB = -60; // the meter's empty end; 0 dBFS is full

/** Microphone level in 0..1 (dBFS mapped linearly from FLOOR_DB to 0) shown on a <meter>. */
export class MicLevelMeter {
  constructor(meter) {
    this.meter = meter;
    this.level = 0;
    this.peak = 0; // the highest level since the current track was attached
    this._context = null;
    this._source = null;
    this._analyser = null;
    this._buffer = null;
    this._timer = null;
    // Browsers start an AudioContext suspended until the page gets a gesture.
    const resume = () => {
      if (this._context && this._context.state === "suspended") this._context.resume();
    };
    document.addEventListener("pointerdown", resume, true);
    document.addEventListener("keydown", resume, true);
  }

  /** Measure `track` (a live microphone track), or nothing when null. */
  attach(track) {
    this.detach();
    if (!track || typeof AudioContext === "undefined") return;
    if (!this._context) this._context = new AudioContext();
    if (this._context.state === "suspended") this._context.resume().catch(() => {});
    this._source = this._context.createMediaStreamSource(new MediaStream([track]));
    this._analyser = this._context.createAnalyser();
    this._analyser.fftSize = 1024;
    this._buffer = new Float32Array(this._analyser.fftSize);
    this._source.connect(this._analyser);
    this.peak = 0;
    this._timer = setInterval(() => this._measure(), METER_INTERVAL_MS);
  }

  detach() {
    if (this._timer !== null) clearInterval(this._timer);
    this._timer = null;
    if (this._source) this._source.disconnect();
    this._source = null;
    this._analyser = null;
    this._show(0);
  }

  /** Stop for good (leaving the waiting room). */
  close() {
    this.detach();
    if (this._context) this._context.close().catch(() => {});
    this._context = null;
  }

  _measure() {
    if (!this._analyser) return;
    this._analyser.getFloatTimeDomainData(this._buffer);
    let energy = 0;
    for (const value of this._buffer) energy += value * value;
    const rms = Math.sqrt(energy / this._buffer.length);
    const db = rms > 0 ? 20 * Math.log10(rms) : FLOOR_DB;
    this._show(Math.min(1, Math.max(0, (db - FLOOR_DB) / -FLOOR_DB)));
  }

  _show(level) {
    this.level = level;
    this.peak = Math.max(this.peak, level);
    this.meter.value = level;
    this.meter.textContent = `${Math.round(level * 100)} %`;
  }
}

/** A 0.9 s two-note chime as a 16-bit mono WAV blob. */
function chimeWav(rate = 48000) {
  const notes = [
    { frequency: 660, start: 0, length: 0.45 },
    { frequency: 880, start: 0.4, length: 0.5 },
  ];
  const total = Math.round(rate * 0.9);
  const samples = new Float32Array(total);
  for (const note of notes) {
    const first = Math.round(note.start * rate);
    const count = Math.round(note.length * rate);
    for (let i = 0; i < count && first + i < total; i += 1) {
      const t = i / rate;
      const envelope = Math.min(1, t / 0.02) * Math.exp(-4 * t); // soft attack, bell-like decay
      samples[first + i] += 0.4 * envelope * Math.sin(2 * Math.PI * note.frequency * t);
    }
  }
  const buffer = new ArrayBuffer(44 + total * 2);
  const view = new DataView(buffer);
  const text = (offset, value) => {
    for (let i = 0; i < value.length; i += 1) view.setUint8(offset + i, value.charCodeAt(i));
  };
  text(0, "RIFF");
  view.setUint32(4, 36 + total * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, total * 2, true);
  samples.forEach((value, i) => {
    view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, value)) * 0x7fff, true);
  });
  return new Blob([buffer], { type: "audio/wav" });
}

/** Plays the test chime on a chosen speaker. */
export class SpeakerTest {
  constructor() {
    this.audio = new Audio();
    this.audio.preload = "auto";
    this._url = null;
    this.plays = 0; // chimes that actually started playing
  }

  /** Play the chime on `deviceId` (null: the default output). Resolves once it is playing. */
  async play(deviceId) {
    if (!this._url) this._url = URL.createObjectURL(chimeWav());
    if (deviceId && typeof this.audio.setSinkId === "function") {
      await this.audio.setSinkId(deviceId);
    }
    this.audio.src = this._url;
    this.audio.currentTime = 0;
    await this.audio.play();
    this.plays += 1;
  }

  close() {
    this.audio.pause();
    this.audio.removeAttribute("src");
    if (this._url) URL.revokeObjectURL(this._url);
    this._url = null;
  }
}
