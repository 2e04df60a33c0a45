// The "Report a problem" panel: a blocking bug report (tags the session Exception) and, apart
// from it, non-blocking feedback (never changes the session). Used in the waiting room
// (source waiting_room), in the call (call) and after it (after_call). A room that belongs to
// no scheduled session has nowhere to file either: the forms are hidden with a short reason.

import { ApiRequestError } from "./participant-api.js";

export const DETAILS_MAX = 2000;

const TITLES = {
  waiting_room: "Report a problem",
  call: "Report a problem",
  after_call: "Declare a problem with this session",
};

const INTROS = {
  waiting_room:
    "Camera, microphone or joining not working? Tell support before the session starts.",
  call: "Something is wrong in this call? Tell support while it happens.",
  after_call: "Something went wrong in this session? Tell support what happened.",
};

const NO_SESSION_TEXT =
  "This room is not part of a scheduled session, so problems and feedback cannot be filed " +
  "here. Ask the person who sent you the link.";

function describe(error) {
  if (error instanceof ApiRequestError) return error.message;
  return error && error.message ? error.message : String(error);
}

/**
 * `ui`: {panel, title, close, unavailable, form, intro, category, details, counter, error, submit,
 * sent, sentText, again, feedbackSection, feedbackForm, feedbackDetails, feedbackError,
 * feedbackSent}. `api` is a ParticipantApi. `onToggle(open)` runs when the panel opens or closes.
 */
export class BugReportPanel {
  constructor({ ui, api, onToggle = () => {} }) {
    this.ui = ui;
    this.api = api;
    this.onToggle = onToggle;
    this.source = "call";
    this.categories = null;
    this.unavailable = null; // the reason the forms are hidden, or null
    this.reports = []; // server answers to reports filed from this page
    this.feedback = []; // server answers to feedback sent from this page
    this.opener = null; // the button that opened the panel (focus returns there)

    ui.close.addEventListener("click", () => this.close());
    ui.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
    ui.details.maxLength = DETAILS_MAX;
    ui.feedbackDetails.maxLength = DETAILS_MAX;
    ui.details.addEventListener("input", () => this._renderCounter());
    ui.category.addEventListener("change", () => {
      if (ui.category.value) ui.error.hidden = true;
    });
    ui.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitReport();
    });
    ui.again.addEventListener("click", () => this._showForm());
    ui.feedbackForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitFeedback();
    });
    this._renderCounter();
  }

  get isOpen() {
    return !this.ui.panel.hidden;
  }

  /** Open for a report of `source` (waiting_room | call | after_call). */
  async open(source, opener = null) {
    this.source = source;
    this.opener = opener;
    this.ui.title.textContent = TITLES[source] || TITLES.call;
    this.ui.intro.textContent = INTROS[source] || INTROS.call;
    if (this.ui.sent.hidden === false) this._showForm();
    this.ui.feedbackSent.hidden = true;
    this.ui.feedbackForm.hidden = Boolean(this.unavailable);
    this.ui.panel.hidden = false;
    this.onToggle(true);
    if (!this.unavailable) await this._loadCategories();
    const first = this.unavailable ? this.ui.close : this.ui.category;
    if (this.isOpen) first.focus();
  }

  close() {
    if (!this.isOpen) return;
    this.ui.panel.hidden = true;
    this.onToggle(false);
    if (this.opener && this.opener.isConnected && !this.opener.hidden) this.opener.focus();
  }

  /** Hide both forms for good, saying why (no session behind the room, a bad link). */
  setUnavailable(text = NO_SESSION_TEXT) {
    this.unavailable = text;
    this.ui.unavailable.textContent = text;
    this.ui.unavailable.hidden = false;
    this.ui.form.hidden = true;
    this.ui.sent.hidden = true;
    this.ui.feedbackSection.hidden = true;
  }

  async _loadCategories() {
    if (this.categories) return;
    const select = this.ui.category;
    select.replaceChildren(new Option("Loading…", ""));
    select.disabled = true;
    try {
      this.categories = await this.api.bugCategories();
    } catch (error) {
      this._refused(error, "The list of problems could not be loaded");
      select.replaceChildren(new Option("Unavailable", ""));
      return;
    }
    select.replaceChildren(new Option("Choose…", ""));
    for (const item of this.categories) select.append(new Option(item.label, item.id));
    select.disabled = false;
    const suggestion = this.api.suggestion;
    if (suggestion && !this.ui.details.value) {
      if (suggestion.category) select.value = suggestion.category;
      this.ui.details.value = suggestion.details.slice(0, DETAILS_MAX);
      this._renderCounter();
    }
  }

  async submitReport() {
    const ui = this.ui;
    ui.error.hidden = true;
    const category = ui.category.value;
    if (!category) {
      this._error(ui.error, "Choose what went wrong.");
      ui.category.focus();
      return;
    }
    ui.submit.disabled = true;
    ui.submit.setAttribute("aria-busy", "true");
    try {
      const answer = await this.api.fileBugReport({
        source: this.source,
        category,
        details: ui.details.value.slice(0, DETAILS_MAX),
      });
      this.reports.push(answer);
      const label = (this.categories || []).find((c) => c.id === category);
      ui.sentText.textContent = answer.exception_tagged
        ? `“${label ? label.label : category}” was sent to support. The session now carries ` +
          "the Exception tag, so support and billing will review it."
        : `“${label ? label.label : category}” was sent to support.`;
      ui.form.hidden = true;
      ui.sent.hidden = false;
      ui.details.value = "";
      ui.category.value = "";
      this._renderCounter();
      ui.again.focus();
    } catch (error) {
      this._refused(error, "The report was not sent");
    } finally {
      ui.submit.disabled = false;
      ui.submit.removeAttribute("aria-busy");
    }
  }

  async submitFeedback() {
    const ui = this.ui;
    ui.feedbackError.hidden = true;
    const checked = ui.feedbackForm.querySelector('input[name="rating"]:checked');
    const rating = checked ? Number(checked.value) : null;
    const details = ui.feedbackDetails.value.trim().slice(0, DETAILS_MAX);
    if (!rating && !details) {
      this._error(ui.feedbackError, "Give a rating or write a few words.");
      return;
    }
    const button = ui.feedbackForm.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const answer = await this.api.sendFeedback({ source: this.source, rating, details });
      this.feedback.push(answer);
      ui.feedbackForm.reset();
      ui.feedbackForm.hidden = true;
      ui.feedbackSent.hidden = false;
    } catch (error) {
      if (error instanceof ApiRequestError && error.code === "no-session") {
        this.setUnavailable();
      } else {
        this._error(ui.feedbackError, `Feedback not sent: ${describe(error)}`);
      }
    } finally {
      button.disabled = false;
    }
  }

  _showForm() {
    this.ui.sent.hidden = true;
    this.ui.form.hidden = Boolean(this.unavailable);
    this.ui.feedbackForm.hidden = Boolean(this.unavailable);
    if (!this.unavailable) this.ui.category.focus();
  }

  _refused(error, what) {
    if (error instanceof ApiRequestError && error.code === "no-session") {
      this.setUnavailable();
      return;
    }
    if (error instanceof ApiRequestError && error.status === 401) {
      this.setUnavailable("Your call link is not valid any more, so nothing can be filed with it.");
      return;
    }
    this._error(this.ui.error, `${what}: ${describe(error)}`);
  }

  _error(box, text) {
    box.textContent = text;
    box.hidden = false;
  }

  _renderCounter() {
    const used = this.ui.details.value.length;
    this.ui.counter.textContent = `${used} / ${DETAILS_MAX}`;
    this.ui.counter.classList.toggle("counter-full", used >= DETAILS_MAX);
  }

  /** Read-only state for tests and debugging. */
  view() {
    return {
      open: this.isOpen,
      source: this.source,
      unavailable: this.unavailable,
      reports: this.reports.map((r) => ({ exception_tagged: r.exception_tagged, tags: r.session.tags })),
      feedback: this.feedback.map((r) => ({ exception_tagged: r.exception_tagged, tags: r.session.tags })),
    };
  }
}
