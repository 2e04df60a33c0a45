// The mentor's session report (/room/<room>/report?token=<the mentor's join token>): the session,
// what the server measured, the report form (status, notes), Save and Validate. When the video
// was never used, validating asks for the reason in a dialog; the server's refusals are shown
// there as they come. A validated report is final: the form becomes read-only.

import { ApiRequestError, ParticipantApi } from "./participant-api.js";

const STATUS_LABELS = {
  planned: "Planned",
  completed: "Completed",
  cancelled: "Cancelled",
  student_absent: "Student absent",
};
const TYPE_LABELS = { mentoring: "Mentoring session", defence: "Defence" };
const REASON_LABELS = {
  accommodation_need: "Accommodation need (RQTH)",
  other: "Other reason",
};

// What to tell the mentor for each refusal of the validation (the server's text follows).
const VALIDATION_REFUSALS = {
  "reason-required": "Choose why the video was not used.",
  "no-accommodation-on-file":
    "The student's profile lists no accommodation need (RQTH), so that reason cannot be used. " +
    "Choose “Other reason” and explain, or ask the platform to record the accommodation first.",
  "details-required": "Explain the other reason in a few words.",
  "already-validated": "This report was already validated.",
  "no-report": "Save the report before validating it.",
};

const LOAD_REFUSALS = {
  401: "This link is not valid, or it has expired. Ask the platform for a new report link.",
  403: "Only the session's mentor writes its report. Open the report link of the mentor.",
  404: "This room is not part of a scheduled session: there is no report to write.",
};

const byId = (id) => document.getElementById(id);
const ui = {
  status: byId("status"),
  roomLabel: byId("room-label"),
  loadError: byId("load-error"),
  body: byId("report-body"),
  sessionFacts: byId("session-facts"),
  measuredFacts: byId("measured-facts"),
  validatedNote: byId("validated-note"),
  form: byId("report-form"),
  fields: byId("report-fields"),
  notes: byId("report-notes"),
  reasonNote: byId("reason-note"),
  error: byId("report-error"),
  saved: byId("report-saved"),
  save: byId("save-button"),
  validate: byId("validate-button"),
  dialog: byId("reason-dialog"),
  reasonForm: byId("reason-form"),
  details: byId("reason-details"),
  accommodationHint: byId("accommodation-hint"),
  reasonError: byId("reason-error"),
  reasonErrorText: byId("reason-error-text"),
  reasonErrorServer: byId("reason-error-server"),
  reasonSubmit: byId("reason-submit"),
  reasonCancel: byId("reason-cancel"),
};

const state = {
  api: null,
  view: null, // the server's report view
  refusals: [], // {code, message} of every refusal shown
  errors: [],
};

window.addEventListener("error", (event) => state.errors.push(String(event.message)));
window.addEventListener("unhandledrejection", (event) => {
  state.errors.push(`unhandled rejection: ${event.reason && event.reason.message}`);
});

Object.defineProperty(window, "parloirReport", {
  value: Object.freeze({
    get view() { return state.view ? JSON.parse(JSON.stringify(state.view)) : null; },
    get refusals() { return state.refusals.map((r) => ({ ...r })); },
    get errors() { return [...state.errors]; },
  }),
});

function formatDateTime(unixS) {
  return new Date(unixS * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function formatMinutes(seconds) {
  if (typeof seconds !== "number") return "—";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  return `${(seconds / 60).toFixed(seconds < 600 ? 1 : 0)} min`;
}

function fillFacts(list, rows) {
  list.replaceChildren();
  for (const [term, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value;
    list.append(dt, dd);
  }
}

function tagList(tags) {
  const span = document.createElement("span");
  if (!tags.length) span.textContent = "none";
  for (const tag of tags) {
    const item = document.createElement("span");
    item.className = tag === "exception" || tag === "Exception" ? "tag tag-exception" : "tag";
    item.textContent = tag;
    span.append(item);
  }
  return span;
}

function render(view) {
  state.view = view;
  const { session, metrics, report } = view;
  ui.roomLabel.textContent = `Session report · ${session.room_id}`;
  document.title = `Report: ${session.student.name} · Parloir`;
  fillFacts(ui.sessionFacts, [
    ["Type", TYPE_LABELS[session.type] || session.type],
    ["Scheduled", `${formatDateTime(session.scheduled_start)} – ${formatDateTime(session.scheduled_end)}`],
    ["Mentor", session.mentor.name],
    ["Student", session.student.name],
    ["Status", STATUS_LABELS[session.status] || session.status],
    ["Tags", tagList(session.tags)],
  ]);
  const inCall = metrics.time_in_call_s || {};
  fillFacts(ui.measuredFacts, [
    ["Video used", metrics.video_used ? "Yes" : "No: the video was never used"],
    ["Effective duration", formatMinutes(metrics.effective_duration_s)],
    [`Time in the call, ${session.mentor.name}`, formatMinutes(inCall[session.mentor.identity])],
    [`Time in the call, ${session.student.name}`, formatMinutes(inCall[session.student.identity])],
    ["Dropped connections", String(metrics.drops)],
  ]);

  const status = report ? report.status : metrics.suggested_status || "completed";
  const radio = ui.form.querySelector(`input[name="status"][value="${status}"]`);
  if (radio) radio.checked = true;
  if (report && document.activeElement !== ui.notes) ui.notes.value = report.notes;
  ui.reasonNote.hidden = !view.reason_required || Boolean(report && report.validated);
  ui.accommodationHint.textContent = view.student_has_accommodation
    ? "The student's profile lists an accommodation need."
    : "No accommodation need is on file for this student.";

  const validated = Boolean(report && report.validated);
  ui.fields.disabled = validated;
  ui.save.hidden = validated;
  ui.validate.hidden = validated;
  ui.validatedNote.hidden = !validated;
  if (validated) {
    let text = `Validated ${formatDateTime(report.validated_at)}. The report is final.`;
    if (report.video_unused_reason) {
      text += ` Reason the video was not used: ${REASON_LABELS[report.video_unused_reason]}`;
      text += report.video_unused_details ? ` (“${report.video_unused_details}”).` : ".";
    }
    ui.validatedNote.textContent = text;
    ui.status.textContent = "Validated";
  } else {
    ui.status.textContent = report ? "Draft saved" : "Not written yet";
  }
}

function chosenStatus() {
  const checked = ui.form.querySelector('input[name="status"]:checked');
  return checked ? checked.value : null;
}

function showError(box, text) {
  box.textContent = text;
  box.hidden = false;
}

function describe(error) {
  return error instanceof ApiRequestError ? error.message : String(error && error.message);
}

/** PUT the form; resolves true when saved. */
async function save() {
  ui.error.hidden = true;
  const status = chosenStatus();
  if (!status) {
    showError(ui.error, "Choose how the session went.");
    return false;
  }
  try {
    render(await state.api.saveReport({ status, notes: ui.notes.value }));
    ui.saved.textContent = `Saved at ${new Date().toLocaleTimeString([], { timeStyle: "short" })}.`;
    return true;
  } catch (error) {
    state.refusals.push({ code: error.code, message: error.message });
    showError(ui.error, `Not saved: ${describe(error)}`);
    return false;
  }
}

async function validate() {
  ui.validate.disabled = true;
  try {
    if (!(await save())) return;
    if (state.view.reason_required) {
      openReasonDialog();
      return;
    }
    await sendValidation({});
  } finally {
    ui.validate.disabled = false;
  }
}

/** POST the validation; a refusal is shown in the dialog when it is open, else on the form. */
async function sendValidation(body) {
  try {
    render(await state.api.validateReport(body));
    if (ui.dialog.open) ui.dialog.close();
    ui.saved.textContent = "";
    ui.validatedNote.focus();
    return true;
  } catch (error) {
    const refusal = { code: error.code, message: error.message };
    state.refusals.push(refusal);
    if (error.code === "reason-required" && !ui.dialog.open) {
      openReasonDialog();
      return false;
    }
    const friendly = VALIDATION_REFUSALS[error.code] || "The report could not be validated.";
    if (ui.dialog.open) {
      ui.reasonErrorText.textContent = friendly;
      ui.reasonErrorServer.textContent = `Server: ${error.message}`;
      ui.reasonError.hidden = false;
    } else {
      showError(ui.error, `${friendly} (Server: ${error.message})`);
    }
    return false;
  }
}

function openReasonDialog() {
  ui.reasonError.hidden = true;
  if (!ui.dialog.open) ui.dialog.showModal();
  const first = ui.reasonForm.querySelector('input[name="reason"]');
  (ui.reasonForm.querySelector('input[name="reason"]:checked') || first).focus();
}

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  ui.save.disabled = true;
  await save();
  ui.save.disabled = false;
});
ui.validate.addEventListener("click", () => validate());
ui.reasonCancel.addEventListener("click", () => ui.dialog.close());
ui.reasonForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  ui.reasonError.hidden = true;
  const checked = ui.reasonForm.querySelector('input[name="reason"]:checked');
  if (!checked) {
    ui.reasonErrorText.textContent = VALIDATION_REFUSALS["reason-required"];
    ui.reasonErrorServer.textContent = "";
    ui.reasonError.hidden = false;
    return;
  }
  ui.reasonSubmit.disabled = true;
  try {
    const details = ui.details.value.trim();
    await sendValidation({ reason: checked.value, details: details || undefined });
  } finally {
    ui.reasonSubmit.disabled = false;
  }
});

async function start() {
  const path = window.location.pathname.split("/");
  const room = decodeURIComponent(path[path.length - 2] || "");
  const token = new URLSearchParams(window.location.search).get("token");
  if (!token) {
    showError(ui.loadError, "This link has no token. Open the whole report link you were given.");
    ui.status.textContent = "No access";
    return;
  }
  state.api = new ParticipantApi(room, token);
  try {
    render(await state.api.getReport());
    ui.body.hidden = false;
  } catch (error) {
    const text = LOAD_REFUSALS[error.status] || `The report could not be loaded: ${describe(error)}`;
    showError(ui.loadError, text);
    ui.status.textContent = "No access";
  }
}

start();
