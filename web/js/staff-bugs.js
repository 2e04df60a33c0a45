// /staff/bugs: bug reports and feedback, newest first, filtered by category, session type, kind
// and date, twenty to a page.

import {
  dayEnd,
  dayStart,
  element,
  formatDateTime,
  readFilters,
  renderPager,
  staffGet,
  wireLogout,
  writeFilters,
} from "./staff.js";

const PAGE_SIZE = 20;
const FILTERS = ["category", "session_type", "blocking", "from", "to"];
const SOURCES = { waiting_room: "Waiting room", call: "In the call", after_call: "After the call" };
const TYPES = { mentoring: "Mentoring", defence: "Defence" };

const byId = (id) => document.getElementById(id);
const form = byId("filters");
const categories = JSON.parse(document.body.dataset.categories || "[]");
const categoryLabels = Object.fromEntries(categories.map((c) => [c.id, c.label]));
for (const category of categories) byId("f-category").append(new Option(category.label, category.id));
wireLogout(byId("logout"));

const state = { items: [], total: 0, errors: [] };
Object.defineProperty(window, "parloirStaff", {
  value: Object.freeze({
    get items() { return state.items.map((i) => ({ ...i })); },
    get total() { return state.total; },
  }),
});

function connectionSummary(diagnostics) {
  const test = diagnostics && diagnostics.connection_test;
  const parts = [];
  if (test && typeof test.mos === "number") parts.push(`MOS ${test.mos.toFixed(1)}`);
  if (test && test.recommended_resolution) parts.push(test.recommended_resolution);
  if (diagnostics && diagnostics.drops) parts.push(`${diagnostics.drops} drop(s)`);
  if (diagnostics && diagnostics.ice_failures) parts.push(`${diagnostics.ice_failures} ICE failure(s)`);
  return parts.length ? parts.join(" · ") : "—";
}

function row(item) {
  const tr = element("tr");
  tr.classList.toggle("row-exception", item.blocking);
  const session = element("td");
  session.append(
    element("span", "cell-main", `${TYPES[item.session.type] || item.session.type}: ` +
      `${item.session.mentor} → ${item.session.student}`),
    element("span", "cell-sub", formatDateTime(item.session.scheduled_start)),
  );
  const kind = element("td");
  kind.append(item.blocking ? element("span", "tag tag-exception", "Exception")
    : element("span", "tag", "Feedback"));
  const details = element("td", "cell-details", item.details || "—");
  const connection = element("td");
  connection.append(element("span", "cell-sub", connectionSummary(item.diagnostics)));
  tr.append(
    element("td", "nowrap", formatDateTime(item.created_at)),
    session,
    element("td", null, item.reporter_identity),
    element("td", null, SOURCES[item.source] || item.source),
    element("td", null, item.blocking || item.category !== "feedback"
      ? categoryLabels[item.category] || item.category : "—"),
    kind,
    details,
    connection,
  );
  tr.dataset.sessionId = item.session.id;
  tr.dataset.tags = (item.session.tags || []).join(",");
  return tr;
}

async function start() {
  const filters = readFilters(form, FILTERS);
  const query = new URLSearchParams({
    offset: String((filters.page - 1) * PAGE_SIZE),
    limit: String(PAGE_SIZE),
  });
  if (filters.category) query.set("category", filters.category);
  if (filters.session_type) query.set("session_type", filters.session_type);
  if (filters.blocking) query.set("blocking", filters.blocking);
  if (filters.from) query.set("created_from", dayStart(filters.from));
  if (filters.to) query.set("created_to", dayEnd(filters.to));
  let data;
  try {
    data = await staffGet(`/api/staff/bug-reports?${query}`);
  } catch (error) {
    if (error.status !== 401) {
      byId("load-error").textContent = `The reports could not be loaded: ${error.message}`;
      byId("load-error").hidden = false;
      byId("status").textContent = "Error";
    }
    return;
  }
  state.items = data.items;
  state.total = data.total;
  byId("bugs-rows").replaceChildren(...data.items.map(row));
  byId("empty").hidden = data.items.length > 0;
  byId("status").textContent = `${data.total} report${data.total === 1 ? "" : "s"}`;
  renderPager(
    { prev: byId("prev"), next: byId("next"), range: byId("range") },
    { page: filters.page, pageSize: PAGE_SIZE, count: data.items.length, total: data.total },
    (page) => writeFilters(form, FILTERS, page),
  );
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  writeFilters(form, FILTERS);
});

start();
