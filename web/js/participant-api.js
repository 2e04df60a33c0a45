// The participant API (server/routes_participant.py), authenticated with the join token:
// bug reports, feedback, connection-test results, and the mentor's session report.

/** A refusal from the API: HTTP status, the server's error code and its message. */
export class ApiRequestError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiRequestError";
    this.status = status;
    this.code = code;
  }
}

/** fetch a JSON API; resolves with the decoded body, rejects with ApiRequestError. */
export async function requestJson(url, { method = "GET", body, token, timeoutMs = 15000 } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    });
  } catch (error) {
    const message =
      error.name === "AbortError"
        ? "The server did not answer in time."
        : "The server could not be reached.";
    throw new ApiRequestError(0, "network", message);
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("application/json")) data = await response.json().catch(() => null);
  if (!response.ok) {
    const code = data && data.error ? data.error : `http-${response.status}`;
    const message = data && data.message ? data.message : `HTTP ${response.status}`;
    throw new ApiRequestError(response.status, code, message);
  }
  return data;
}

/**
 * What this join token may do about the room's session, from one probe: `none` (the room is no
 * scheduled session), `participant` (there is one; this is not its mentor), `mentor` (with the
 * report view: the session's times and figures), or `unknown` (the check failed).
 */
export const SessionAccess = Object.freeze({
  NONE: "none",
  PARTICIPANT: "participant",
  MENTOR: "mentor",
  UNKNOWN: "unknown",
});

export class ParticipantApi {
  constructor(room, token) {
    this.room = room;
    this.token = token;
    this.base = `/api/rooms/${encodeURIComponent(room)}`;
  }

  _call(path, options = {}) {
    return requestJson(`${this.base}${path}`, { ...options, token: this.token });
  }

  async bugCategories() {
    const data = await this._call("/bug-categories");
    // Set when telemetry suspects the call left the built-in video: a pre-filled report.
    this.suggestion = data.suggestion || null;
    return data.items;
  }

  /** A blocking report: resolves with {report, session: {id, tags}, exception_tagged}. */
  fileBugReport({ source, category, details }) {
    return this._call("/bug-reports", { method: "POST", body: { source, category, details } });
  }

  /** Non-blocking feedback: never tags the session. */
  sendFeedback({ source, rating, details }) {
    const body = { source, details };
    if (rating) body.rating = rating;
    return this._call("/feedback", { method: "POST", body });
  }

  postConnectionTest(result) {
    return this._call("/connection-test", { method: "POST", body: result });
  }

  getReport() {
    return this._call("/report");
  }

  saveReport({ status, notes }) {
    return this._call("/report", { method: "PUT", body: { status, notes } });
  }

  validateReport({ reason, details } = {}) {
    const body = {};
    if (reason) body.reason = reason;
    if (details) body.details = details;
    return this._call("/report/validate", { method: "POST", body });
  }

  /**
   * {access, view, error}: whether the room has a session, and whether this token is its mentor.
   * The report route answers 404 no-session for a room without one, 403 to anyone but the mentor.
   */
  async sessionAccess() {
    try {
      const view = await this.getReport();
      return { access: SessionAccess.MENTOR, view, error: null };
    } catch (error) {
      if (error.status === 404 && error.code === "no-session") {
        return { access: SessionAccess.NONE, view: null, error };
      }
      if (error.status === 403) return { access: SessionAccess.PARTICIPANT, view: null, error };
      return { access: SessionAccess.UNKNOWN, view: null, error };
    }
  }
}
