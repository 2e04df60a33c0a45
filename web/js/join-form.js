// The home page form: a pasted call link, or a room and token, becomes /room/<room>?token=...

const ROOM_ID = /^[A-Za-z0-9_~.-]{1,255}$/;

const form = document.getElementById("join-form");
const linkInput = document.getElementById("call-link");
const roomInput = document.getElementById("room-id");
const tokenInput = document.getElementById("token");
const nameInput = document.getElementById("display-name");
const errorBox = document.getElementById("form-error");

/** {room, token} from a pasted link (absolute, or starting at /room/), or null. */
export function parseCallLink(text) {
  let url;
  try {
    url = new URL(text.trim(), window.location.origin);
  } catch {
    return null;
  }
  const match = url.pathname.match(/\/room\/([^/]+)\/?$/);
  const token = url.searchParams.get("token");
  if (!match || !token) return null;
  return { room: decodeURIComponent(match[1]), token };
}

function showError(message, field) {
  errorBox.textContent = message;
  errorBox.hidden = false;
  if (field) field.focus();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  let target;
  if (linkInput.value.trim()) {
    target = parseCallLink(linkInput.value);
    if (!target) {
      showError("That link is not a Parloir call link (…/room/<room>?token=…).", linkInput);
      return;
    }
  } else {
    target = { room: roomInput.value.trim(), token: tokenInput.value.trim() };
    if (!target.room) return showError("Enter a room, or paste a call link.", roomInput);
    if (!target.token) return showError("Enter your token.", tokenInput);
  }
  if (!ROOM_ID.test(target.room)) {
    showError("A room id uses only letters, digits and _ ~ . -", roomInput);
    return;
  }
  const query = new URLSearchParams({ token: target.token });
  const name = nameInput.value.trim();
  if (name) query.set("name", name.slice(0, 64));
  // Call links are always opened on this server: only the room and token are taken from them.
  window.location.assign(`/room/${encodeURIComponent(target.room)}?${query}`);
});
