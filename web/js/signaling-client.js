// The signaling WebSocket (signaling/PROTOCOL.md): request ids, replies and event dispatch.

/** A refusal from the server: an `error` message, or the socket closing under a request. */
export class ServerError extends Error {
  constructor(code, reason) {
    super(`${code}: ${reason}`);
    this.name = "ServerError";
    this.code = code;
    this.reason = reason;
  }
}

export class SignalingClient {
  constructor(url) {
    this.url = url;
    this.socket = null;
    this.closeCode = null;
    this._nextId = 0;
    this._waiters = new Map(); // request id -> {expect: Set, resolve, reject, timer}
    this._handlers = new Map(); // type -> [handler]
    this._abandoned = false;
    this._keepAlive = null; // interval timer while keep-alive runs
    this.lastReceivedAt = 0; // performance.now() of the last message from the server
  }

  /** Open the socket; resolves once it is open. */
  connect(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      const timer = setTimeout(() => {
        socket.close();
        reject(new Error("the signaling server did not answer in time"));
      }, timeoutMs);
      socket.addEventListener("open", () => {
        clearTimeout(timer);
        resolve();
      });
      socket.addEventListener("message", (event) => this._receive(event.data));
      socket.addEventListener("close", (event) => {
        clearTimeout(timer);
        this.closeCode = event.code;
        reject(new Error(`could not reach the signaling server (code ${event.code})`));
        this._closed(event);
      });
    });
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Register a handler for one server message type ("*" receives every message). */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, []);
    this._handlers.get(type).push(handler);
  }

  /** Send one message as is. Returns false if the socket is not open. */
  send(message) {
    if (!this.open) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  /** A fresh request id ("c1", "c2", ...). */
  newId() {
    this._nextId += 1;
    return `c${this._nextId}`;
  }

  /**
   * Wait for the reply to request `id`: the first message carrying that id whose type is in
   * `expect`. An `error` with that id rejects with ServerError.
   */
  waitForReply(id, expect, timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._waiters.delete(id);
        reject(new Error(`no ${[...expect].join("/")} reply from the server in time`));
      }, timeoutMs);
      this._waiters.set(id, { expect: new Set(expect), resolve, reject, timer });
    });
  }

  /** Send `message` with a fresh id and resolve with the reply of a type in `expect`. */
  request(message, expect, timeoutMs = 15000) {
    const id = this.newId();
    const reply = this.waitForReply(id, expect, timeoutMs);
    if (!this.send({ ...message, id })) {
      this._settle(id, null, new Error("not connected to the signaling server"));
    }
    return reply;
  }

  close(code = 1000) {
    if (this.socket !== null && this.socket.readyState <= WebSocket.OPEN) {
      this.socket.close(code);
    }
  }

  /**
   * Ping every `intervalMs`; call `onSilent()` once if the server has said nothing for
   * `silenceMs` (a stalled connection: browsers do not notice a dead TCP connection on their own,
   * and the server treats a pinging client that goes silent as dropped, PROTOCOL.md).
   */
  keepAlive(intervalMs, silenceMs, onSilent) {
    this.stopKeepAlive();
    this.lastReceivedAt = performance.now();
    this._keepAlive = setInterval(() => {
      if (performance.now() - this.lastReceivedAt > silenceMs) {
        this.stopKeepAlive();
        onSilent();
        return;
      }
      this.send({ type: "ping" });
    }, intervalMs);
    this.send({ type: "ping" });
  }

  stopKeepAlive() {
    if (this._keepAlive !== null) clearInterval(this._keepAlive);
    this._keepAlive = null;
  }

  /**
   * Give this connection up (it is dead, or replaced by a new one): close the socket, fail the
   * pending requests, and deliver nothing more to the handlers.
   */
  abandon() {
    if (this._abandoned) return;
    this.stopKeepAlive();
    for (const id of [...this._waiters.keys()]) {
      this._settle(id, null, new Error("the connection was given up"));
    }
    this._abandoned = true;
    this.close();
  }

  get abandoned() {
    return this._abandoned;
  }

  _receive(data) {
    if (this._abandoned) return;
    this.lastReceivedAt = performance.now();
    let message;
    try {
      message = JSON.parse(data);
    } catch (error) {
      this._dispatch({ type: "client-error", reason: `unreadable server message: ${error}` });
      return;
    }
    if (message === null || typeof message !== "object") return;
    const id = message.id;
    if (id !== undefined && id !== null && this._waiters.has(id)) {
      const waiter = this._waiters.get(id);
      if (message.type === "error") {
        this._settle(id, null, new ServerError(message.code, message.reason));
        // The waiter handled it; other listeners still see the error for the status area.
      } else if (waiter.expect.has(message.type)) {
        this._settle(id, message, null);
      }
    }
    this._dispatch(message);
  }

  _dispatch(message) {
    if (this._abandoned) return;
    for (const type of [message.type, "*"]) {
      for (const handler of this._handlers.get(type) || []) {
        try {
          const result = handler(message);
          if (result && typeof result.catch === "function") {
            result.catch((error) => this._handlerFailed(message, error));
          }
        } catch (error) {
          this._handlerFailed(message, error);
        }
      }
    }
  }

  _handlerFailed(message, error) {
    if (message.type === "client-error") {
      console.error(error);
      return;
    }
    this._dispatch({
      type: "client-error",
      reason: `handling ${message.type} failed: ${error && error.message ? error.message : error}`,
    });
  }

  _settle(id, value, error) {
    const waiter = this._waiters.get(id);
    if (!waiter) return;
    this._waiters.delete(id);
    clearTimeout(waiter.timer);
    if (error) waiter.reject(error);
    else waiter.resolve(value);
  }

  _closed(event) {
    this.stopKeepAlive();
    for (const id of [...this._waiters.keys()]) {
      this._settle(id, null, new ServerError("socket-closed", `connection closed (code ${event.code})`));
    }
    this._dispatch({ type: "socket-closed", code: event.code, reason: event.reason });
  }
}
