// /staff/billing: sessions of a period with status, effective duration, tags (Exception stands
// out) and whether the report is validated; "Export CSV" downloads the same selection.

import {
  dayEnd,
  dayStart,
  element,
  readFilters,
  renderPager,
  staffGet,
  tagBadges,
  wireLogout,
  writeFilters,
} from "./staff.js";

const PAGE_SIZE = 50;
const CSV_LIMIT = 5000; // the API's maximum: the export is the whole selection, not one page
const FILTERS = ["from", "to", "type"];
const STATUSES = {
  planned: "Planned",
  completed: "Completed",
  cancelled: "Cancelled",
  student_absent: "Student absent",
};
const TYPES = { mentoring: "Mentoring", defence: "Defence" };

const byId = (id) => document.getElementById(id);
const form = byId("filters");
wireLogout(byId("logout"));

const state = { items: [], total: 0 };
Object.defineProperty(window, "parloirStaff", {
  value: Object.freeze({
    get items() { return state.items.map((i) => ({ ...i })); },
    get total() { return state.total; },
  }),
});

function row(item) {
  const tr = element("tr");
  const exception = item.tags.includes("Exception");
  tr.classList.toggle("row-exception", exception);
  tr.dataset.sessionId = item.session_id;
  const when = new Date(item.scheduled_start).toLocaleString([], {
    dateStyle: "medium",
    timeStyle: "short",
  });
  const tags = element("td");
  tags.append(tagBadges(item.tags));
  tr.append(
    element("td", "nowrap", when),
    element("td", null, TYPES[item.type] || item.type),
    element("td", null, item.mentor),
    element("td", null, item.student),
    element("td", null, STATUSES[item.status] || item.status),
    element("td", "num", `${item.effective_duration_min.toFixed(1)} min`),
    element("td", null, item.video_used ? "Yes" : "No"),
    tags,
    element("td", null, item.report_validated ? "Validated" : "Not validated"),
  );
  return tr;
}

async function start() {
  const filters = readFilters(form, FILTERS);
  const selection = new URLSearchParams();
  if (filters.from) selection.set("start_from", dayStart(filters.from));
  if (filters.to) selection.set("start_to", dayEnd(filters.to));
  if (filters.type) selection.set("type", filters.type);
  const csv = new URLSearchParams(selection);
  csv.set("limit", String(CSV_LIMIT));
  byId("export-csv").href = `/api/staff/billing.csv?${csv}`;
  const page = new URLSearchParams(selection);
  page.set("offset", String((filters.page - 1) * PAGE_SIZE));
  page.set("limit", String(PAGE_SIZE));
  let data;
  try {
    data = await staffGet(`/api/staff/billing?${page}`);
  } catch (error) {
    if (error.status !== 401) {
      byId("load-error").textContent = `The sessions could not be loaded: ${error.message}`;
      byId("load-error").hidden = false;
      byId("status").textContent = "Error";
    }
    return;
  }
  state.items = data.items;
  state.total = data.total;
  byId("billing-rows").replaceChildren(...data.items.map(row));
  byId("empty").hidden = data.items.length > 0;
  const exceptions = data.items.filter((i) => i.tags.includes("Exception")).length;
  byId("summary").textContent =
    `${data.total} session${data.total === 1 ? "" : "s"}` +
    (exceptions ? ` · ${exceptions} on this page tagged Exception` : "");
  byId("status").textContent = "Billing";
  renderPager(
    { prev: byId("prev"), next: byId("next"), range: byId("range") },
    { page: filters.page, pageSize: PAGE_SIZE, count: data.items.length, total: data.total },
    (next) => writeFilters(form, FILTERS, next),
  );
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  writeFilters(form, FILTERS);
});

start();
