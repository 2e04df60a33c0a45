// /staff: exchange the staff credential for the HttpOnly session cookie, then go on to the page
// that asked for it (or the bug reports).

import { ApiRequestError, requestJson } from "./participant-api.js";

const form = document.getElementById("login-form");
const input = document.getElementById("staff-token");
const errorBox = document.getElementById("login-error");
const loginCard = document.getElementById("login-card");
const loggedIn = document.getElementById("logged-in");

function nextPage() {
  const next = new URLSearchParams(window.location.search).get("next") || "";
  // Only pages of this site's staff area: never an address from elsewhere.
  return /^\/staff\/[a-z]+(\?[^\s]*)?$/.test(next) ? next : "/staff/bugs";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  const token = input.value.trim();
  if (!token) {
    errorBox.textContent = "Enter the staff credential.";
    errorBox.hidden = false;
    input.focus();
    return;
  }
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    await requestJson("/api/staff/login", { method: "POST", body: { token } });
    window.location.assign(nextPage());
  } catch (error) {
    errorBox.textContent =
      error instanceof ApiRequestError && error.status === 401
        ? "That credential is not right."
        : `Could not log in: ${error.message}`;
    errorBox.hidden = false;
    input.select();
  } finally {
    button.disabled = false;
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  await requestJson("/api/staff/logout", { method: "POST" }).catch(() => null);
  window.location.assign("/staff");
});

async function start() {
  try {
    await requestJson("/api/staff/bug-reports?limit=1");
    loggedIn.hidden = false;
  } catch {
    loginCard.hidden = false;
    input.focus();
  }
}

start();
