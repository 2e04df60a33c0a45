// The background blur control (waiting room and the call's settings): a switch, the strength,
// the state the server reports (off, starting, on, unavailable), and when blur cannot run, the
// choice to go on without it. The blur itself runs on the SFU (PROTOCOL.md `blur`); this only
// asks for it through `apply(enabled, strength)`, which resolves with the server's
// {state, strength, reason} or rejects (a ServerError `blur-unavailable` carries the reason).

const STATE_TEXT = {
  off: "Off",
  starting: "Starting…",
  on: "On",
  unavailable: "Unavailable",
};

/**
 * `ui`: {section, toggle (checkbox), strength (select), state, unavailable, unavailableText,
 * continueButton, cameraOffButton (optional)}. `onCameraOff()` when the user would rather hide
 * the camera than show it unblurred.
 */
export class BlurControl {
  constructor({ ui, apply, onCameraOff = null, onState = () => {}, unavailableHint = "" }) {
    this.ui = ui;
    this.apply = apply;
    this.onState = onState;
    this.onCameraOff = onCameraOff;
    this.unavailableHint = unavailableHint;
    this.enabled = false; // what the user asked for
    this.strength = "low";
    this.state = "off"; // what the server says
    this.reason = null;
    this.available = true;
    this.history = []; // every state shown, in order (for tests and debugging)
    this._busy = false;

    ui.toggle.addEventListener("change", () => this._changed());
    ui.strength.addEventListener("change", () => {
      this.strength = ui.strength.value;
      if (this.enabled) this._request(true);
    });
    ui.continueButton.addEventListener("click", () => this.continueWithoutBlur());
    if (ui.cameraOffButton) {
      ui.cameraOffButton.hidden = !onCameraOff;
      ui.cameraOffButton.addEventListener("click", async () => {
        if (this.onCameraOff) await this.onCameraOff();
        await this.continueWithoutBlur();
      });
    }
    this._render();
  }

  /** Whether the server can blur at all (`joined.blur_available`). */
  setAvailable(available) {
    this.available = available;
    if (!available) {
      this.enabled = false;
      this._show({ state: "off", strength: this.strength, reason: null });
    }
    this._render();
  }

  /** The user's choice, set from elsewhere (the waiting room's choice carried into the call). */
  preset({ enabled, strength }) {
    this.enabled = Boolean(enabled) && this.available;
    this.strength = strength || "low";
    this._render();
  }

  /** Ask the server for what the user chose (e.g. once the camera is published). */
  sync() {
    return this._request(this.enabled);
  }

  /** A `blur-status` from the server. */
  update(status) {
    this._show(status);
  }

  /** Blur cannot run: go on unblurred (the camera is frozen until then). */
  async continueWithoutBlur() {
    this.enabled = false;
    await this._request(false);
  }

  async _changed() {
    this.enabled = this.ui.toggle.checked;
    await this._request(this.enabled);
  }

  async _request(enabled) {
    this._busy = true;
    if (enabled && this.state !== "on") this._show({ state: "starting", strength: this.strength });
    this._render();
    try {
      const status = await this.apply(enabled, this.strength);
      if (status) this._show(status);
    } catch (error) {
      if (error && error.code === "blur-unavailable") {
        this._show({ state: "unavailable", strength: this.strength, reason: error.reason });
      } else if (error && error.message !== "no target") {
        this._show({
          state: "unavailable",
          strength: this.strength,
          reason: error.reason || error.message || String(error),
        });
      }
    } finally {
      this._busy = false;
      this._render();
    }
  }

  _show(status) {
    this.state = status.state || "off";
    this.reason = status.reason || null;
    if (status.strength) this.strength = status.strength;
    const last = this.history[this.history.length - 1];
    if (last !== this.state) this.history.push(this.state);
    this._render();
    this.onState(this.state);
  }

  _render() {
    const ui = this.ui;
    ui.toggle.checked = this.enabled;
    ui.toggle.disabled = !this.available;
    ui.strength.value = this.strength;
    ui.strength.disabled = !this.available || !this.enabled;
    if (!this.available) {
      ui.state.textContent = "Background blur is not available on this server.";
    } else {
      const strength = this.state === "on" ? ` (${this.strength})` : "";
      ui.state.textContent = `Blur: ${STATE_TEXT[this.state] || this.state}${strength}`;
    }
    ui.state.dataset.state = this.available ? this.state : "not-available";
    const unavailable = this.available && this.state === "unavailable" && this.enabled;
    const appearing = unavailable && ui.unavailable.hidden;
    ui.unavailable.hidden = !unavailable;
    if (unavailable) {
      const reason = this.reason || "unknown reason";
      ui.unavailableText.textContent =
        `Background blur cannot run: ${reason}. ${this.unavailableHint}`.trim();
    }
    if (appearing && ui.unavailable.scrollIntoView) ui.unavailable.scrollIntoView({ block: "nearest" });
  }

  view() {
    return {
      available: this.available,
      enabled: this.enabled,
      strength: this.strength,
      state: this.state,
      reason: this.reason,
      history: [...this.history],
    };
  }
}
