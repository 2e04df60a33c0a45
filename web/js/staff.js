// Shared by the staff pages: the staff API behind the login cookie, filters kept in the URL
// (a filtered view can be bookmarked or shared), dates, tables and paging.

import { ApiRequestError, requestJson } from "./participant-api.js";

export { ApiRequestError };

export function loginUrl() {
  return `/staff?next=${encodeURIComponent(window.location.pathname + window.location.search)}`;
}

/** GET a staff API path with the cookie; without a valid login, go to the login page. */
export async function staffGet(path) {
  try {
    return await requestJson(path);
  } catch (error) {
    if (error instanceof ApiRequestError && error.status === 401) window.location.assign(loginUrl());
    throw error;
  }
}

export function wireLogout(button) {
  button.addEventListener("click", async () => {
    await requestJson("/api/staff/logout", { method: "POST" }).catch(() => null);
    window.location.assign("/staff");
  });
}

/** A local calendar day (YYYY-MM-DD) as the ISO instant it starts at. */
export function dayStart(day) {
  return new Date(`${day}T00:00:00`).toISOString();
}

/** The ISO instant a local calendar day ends at (the next day's start): "until" is inclusive. */
export function dayEnd(day) {
  const date = new Date(`${day}T00:00:00`);
  date.setDate(date.getDate() + 1);
  return date.toISOString();
}

export function formatDateTime(unixS) {
  return new Date(unixS * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

export function tagBadges(tags) {
  const cell = element("span", "tags");
  if (!tags.length) cell.append(element("span", "help", "—"));
  for (const tag of tags) {
    cell.append(element("span", tag === "Exception" ? "tag tag-exception" : "tag", tag));
  }
  return cell;
}

/** The filter form's fields from the URL (on load) and back (on Apply). */
export function readFilters(form, names) {
  const params = new URLSearchParams(window.location.search);
  const values = {};
  for (const name of names) {
    values[name] = params.get(name) || "";
    const field = form.elements.namedItem(name);
    if (field) field.value = values[name];
  }
  values.page = Math.max(1, Number.parseInt(params.get("page") || "1", 10) || 1);
  return values;
}

export function writeFilters(form, names, page = 1) {
  const params = new URLSearchParams();
  for (const name of names) {
    const value = form.elements.namedItem(name).value;
    if (value) params.set(name, value);
  }
  if (page > 1) params.set("page", String(page));
  const query = params.toString();
  window.location.assign(`${window.location.pathname}${query ? `?${query}` : ""}`);
}

/** Previous/Next and "21–40 of 95". `go(page)` reloads with that page. */
export function renderPager({ prev, next, range }, { page, pageSize, count, total }, go) {
  const first = total === 0 ? 0 : (page - 1) * pageSize + 1;
  range.textContent = total === 0 ? "0 results" : `${first}–${first + count - 1} of ${total}`;
  prev.disabled = page <= 1;
  next.disabled = (page - 1) * pageSize + count >= total;
  prev.onclick = () => go(page - 1);
  next.onclick = () => go(page + 1);
}
