// The chat panel: messages over the `chat` data channel the server opens on the subscriber
// connection (PROTOCOL.md "Chat data channel"). Whatever people type is shown as text only
// (textContent, never parsed as HTML): a link or a tag is shown, not followed or run.
// The channel also carries Vonage-style signals (another `topic`, or sent by the platform through
// the REST API): only topic `chat` is a chat message; other topics are application data and are
// not shown here.

const CHAT_TOPIC = "chat";

// What to tell the sender when the server refuses a message (`chat-error` codes).
const REFUSALS = {
  "rate-limited": "Not sent: you are sending messages too fast. Wait a moment and try again.",
  "message-too-large": "Not sent: the message is too long (at most 8 KiB).",
  "unknown-participant": "Not sent: that person has left the call.",
};

const NEAR_BOTTOM_PX = 48;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clockTime(unixMs) {
  return new Date(unixMs).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/**
 * The panel, its toggle button with the unread count, and the channel it talks over.
 * `selfId()` returns this page's participant id; `nameOf(id)` a participant's display name.
 */
export class ChatPanel {
  constructor({ panel, list, form, input, errorBox, toggle, unread, closeButton, selfId, nameOf }) {
    this.panel = panel;
    this.list = list;
    this.form = form;
    this.input = input;
    this.errorBox = errorBox;
    this.toggleButton = toggle;
    this.unreadBadge = unread;
    this.unreadCount = unread.querySelector(".unread-count");
    this.selfId = selfId;
    this.nameOf = nameOf;
    this.channel = null;
    this.messages = []; // server chat messages of topic `chat`, in seq order
    this.signals = []; // messages of other topics (not shown)
    this.unread = 0;
    this.errors = []; // {code, reason} of refused messages
    this._items = new Map(); // seq -> <li>
    this._seen = new Set(); // every seq received (chat and other topics)
    this._unsent = new Map(); // request id -> text, until the server relays or refuses it
    this._nextId = 0;

    toggle.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    closeButton.addEventListener("click", () => {
      this.close();
      this.toggleButton.focus();
    });
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        this.close();
        this.toggleButton.focus();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    input.addEventListener("keydown", (event) => {
      // Enter sends; Shift+Enter is a new line; Enter that ends an IME composition is not send.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this._renderToggle();
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  /** Use the server's `chat` channel (it sends the history as soon as it opens). */
  attach(channel) {
    this.channel = channel;
    channel.addEventListener("message", (event) => this._receive(event.data));
    channel.addEventListener("open", () => this._renderToggle());
    channel.addEventListener("close", () => this._renderToggle());
    this._renderToggle();
  }

  open() {
    this.panel.hidden = false;
    this.unread = 0;
    this._renderToggle();
    this._scrollToEnd();
    this.input.focus();
  }

  close() {
    this.panel.hidden = true;
    this._renderToggle();
  }

  /** Send what the input holds; it is shown once the server relays it back. */
  send() {
    const text = this.input.value.replace(/\s+$/, "");
    if (!text.trim()) return;
    if (!this.channel || this.channel.readyState !== "open") {
      this._showError("Not sent: the chat is not connected yet.");
      return;
    }
    this._nextId += 1;
    const id = `m${this._nextId}`;
    this._unsent.set(id, text);
    this.channel.send(JSON.stringify({ type: "chat", text, id }));
    this.input.value = "";
    this._hideError();
  }

  /** Take everything down (the call ended). */
  clear() {
    this.close();
    this.channel = null;
  }

  _receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message !== "object") return;
    if (message.type === "chat-history") {
      for (const entry of message.messages || []) this._add(entry);
    } else if (message.type === "chat") {
      if (message.request_id) this._unsent.delete(message.request_id);
      this._add(message);
    } else if (message.type === "chat-error") {
      this._refused(message);
    }
  }

  _add(message) {
    if (typeof message.seq !== "number" || this._seen.has(message.seq)) return;
    this._seen.add(message.seq);
    if ((message.topic || CHAT_TOPIC) !== CHAT_TOPIC) {
      this.signals.push(message);
      return;
    }
    const stickToEnd = this._nearEnd();
    const item = this._render(message);
    // Keep seq order even if a relayed message overtakes the history.
    const later = this.messages.findIndex((m) => m.seq > message.seq);
    if (later === -1) {
      this.messages.push(message);
      this.list.append(item);
    } else {
      this.messages.splice(later, 0, message);
      this.list.insertBefore(item, this._items.get(this.messages[later + 1].seq));
    }
    this._items.set(message.seq, item);
    const fromSelf = this._fromSelf(message);
    if (!fromSelf && !this.isOpen) {
      this.unread += 1;
      this._renderToggle();
    }
    if (stickToEnd || fromSelf) this._scrollToEnd();
  }

  _fromSelf(message) {
    return Boolean(message.from && message.from.id && message.from.id === this.selfId());
  }

  _render(message) {
    const fromSelf = this._fromSelf(message);
    const item = element("li", "chat-message");
    item.classList.toggle("chat-own", fromSelf);
    item.dataset.seq = String(message.seq);
    const meta = element("p", "chat-meta");
    // A message without a sender id comes from the platform (REST API), named by the server.
    const senderName = (message.from && message.from.name) || "Platform";
    const sender = element("span", "chat-sender", fromSelf ? "You" : senderName);
    const time = element("time", "chat-time", clockTime(message.sent_at));
    time.dateTime = new Date(message.sent_at).toISOString();
    meta.append(sender, " ", time);
    if (message.to) {
      const to = fromSelf ? `to ${this.nameOf(message.to) || "one person"}` : "to you";
      meta.append(" ", element("span", "chat-private", `(privately ${to})`));
      item.classList.add("chat-private-message");
    }
    item.append(meta, element("p", "chat-text", message.text));
    return item;
  }

  _refused(error) {
    this.errors.push({ code: error.code, reason: error.reason });
    const text = error.id ? this._unsent.get(error.id) : undefined;
    if (error.id) this._unsent.delete(error.id);
    // Give the text back so it can be sent again, unless something new was typed meanwhile.
    if (text !== undefined && !this.input.value) this.input.value = text;
    this._showError(REFUSALS[error.code] || `Not sent: ${error.reason}`);
  }

  _showError(text) {
    this.errorBox.textContent = text;
    this.errorBox.hidden = false;
    if (!this.isOpen) this.open();
  }

  _hideError() {
    this.errorBox.hidden = true;
    this.errorBox.textContent = "";
  }

  _renderToggle() {
    this.toggleButton.setAttribute("aria-expanded", String(this.isOpen));
    this.toggleButton.classList.toggle("active", this.isOpen);
    this.unreadCount.textContent = String(this.unread);
    this.unreadBadge.hidden = this.unread === 0;
  }

  _nearEnd() {
    const { scrollTop, scrollHeight, clientHeight } = this.list;
    return scrollHeight - scrollTop - clientHeight < NEAR_BOTTOM_PX;
  }

  _scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  /** Read-only state for tests and debugging. */
  view() {
    return {
      open: this.isOpen,
      unread: this.unread,
      connected: Boolean(this.channel && this.channel.readyState === "open"),
      messages: this.messages.map((m) => ({
        seq: m.seq,
        from: m.from ? { ...m.from } : null,
        to: m.to,
        text: m.text,
        sent_at: m.sent_at,
      })),
      errors: this.errors.map((e) => ({ ...e })),
      signals: this.signals.length,
    };
  }
}
