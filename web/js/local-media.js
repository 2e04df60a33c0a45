// This page's camera and microphone: asking for them, and explaining why they are missing.

export const DEFAULT_VIDEO = { width: 320, height: 240, frameRate: 15 };

/**
 * Ask for camera and microphone; fall back to whichever one works. Never throws: resolves with
 * {stream, audio, video, problem, cause} where `problem` is a sentence for the user in the call
 * (or null) and `cause` says why a device is missing (or null).
 * `audioProcessing: false` turns off echo cancellation, noise suppression and gain control.
 */
export async function openCameraAndMic({ video = DEFAULT_VIDEO, audioProcessing = true } = {}) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    const cause = "This browser cannot use a camera or microphone here (the page needs HTTPS).";
    return { stream: null, audio: null, video: null, problem: cause, cause };
  }
  const audio = audioProcessing
    ? true
    : { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  const videoConstraints = {
    width: { ideal: video.width },
    height: { ideal: video.height },
    frameRate: { ideal: video.frameRate },
  };
  const attempts = [
    { audio, video: videoConstraints },
    { audio: false, video: videoConstraints },
    { audio, video: false },
  ];
  let firstError = null;
  for (const constraints of attempts) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      const result = {
        stream,
        audio: stream.getAudioTracks()[0] || null,
        video: stream.getVideoTracks()[0] || null,
        problem: null,
        cause: firstError ? explain(firstError) : null,
      };
      if (!result.audio) result.problem = "No microphone: the others will not hear you.";
      else if (!result.video) result.problem = "No camera: the others will not see you.";
      if (firstError && result.problem) result.problem += ` (${explain(firstError)})`;
      return result;
    } catch (error) {
      firstError = firstError || error;
      if (error.name === "NotAllowedError" || error.name === "SecurityError") break;
    }
  }
  return {
    stream: null,
    audio: null,
    video: null,
    problem: `${explain(firstError)} You joined as a viewer: you can see and hear the others.`,
    cause: explain(firstError),
  };
}

function explain(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera and microphone access was denied.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera or microphone was found.";
    case "NotReadableError":
    case "AbortError":
      return "The camera or microphone is in use by another application.";
    default:
      return `Camera and microphone are unavailable${error ? ` (${error.name})` : ""}.`;
  }
}

export function stopStream(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

/** Camera or microphone constraints for `deviceId` (the same shape openCameraAndMic asks for). */
function deviceConstraints(kind, deviceId, { video = DEFAULT_VIDEO, audioProcessing = true } = {}) {
  if (kind === "video") {
    return {
      video: {
        deviceId: { exact: deviceId },
        width: { ideal: video.width },
        height: { ideal: video.height },
        frameRate: { ideal: video.frameRate },
      },
    };
  }
  const audio = { deviceId: { exact: deviceId } };
  if (!audioProcessing) {
    audio.echoCancellation = false;
    audio.noiseSuppression = false;
    audio.autoGainControl = false;
  }
  return { audio };
}

/**
 * Open one camera (`kind` "video") or microphone ("audio") by deviceId; resolves with its
 * track. Rejects with an Error whose message is a sentence for the user.
 */
export async function openDevice(kind, deviceId, options = {}) {
  try {
    const constraints = deviceConstraints(kind, deviceId, options);
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    const track = kind === "video" ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    if (!track) throw new Error("no track");
    return track;
  } catch (error) {
    throw new Error(explain(error));
  }
}

// Upper bounds, not targets: bare values are "ideal" constraints, which ask the browser to
// scale a smaller screen up to 1080p. (Chromium's fake display capture, used by the tests,
// delivers 1920x1080 with either form.)
export const SCREEN_VIDEO = {
  width: { max: 1920 },
  height: { max: 1080 },
  frameRate: { max: 5 },
};
const SCREEN_PICKER_TIMEOUT_MS = 60000;

/** Why a screen share could not start, for the user; null when they simply cancelled. */
export class ScreenShareError extends Error {}

/**
 * Ask the browser for a screen, window or tab (getDisplayMedia), at most 1080p and 5 fps, and
 * mark it as detailed content (text stays sharp; frames drop before resolution does).
 * Resolves with the video track, or null if the user cancelled. The browser's picker can wait
 * forever (e.g. when it cannot be shown): after `timeoutMs` this gives up, and stops the
 * capture if it arrives later.
 */
export async function openScreen({ timeoutMs = SCREEN_PICKER_TIMEOUT_MS } = {}) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
    throw new ScreenShareError("This browser cannot share the screen.");
  }
  const request = navigator.mediaDevices.getDisplayMedia({ video: SCREEN_VIDEO, audio: false });
  let timer = null;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  let outcome;
  try {
    outcome = await Promise.race([request, timeout]);
  } catch (error) {
    clearTimeout(timer);
    if (error.name === "NotAllowedError" || error.name === "AbortError") return null;
    throw new ScreenShareError(`The screen could not be shared (${error.name}).`);
  }
  clearTimeout(timer);
  if (outcome === "timeout") {
    request.then(stopStream, () => {});
    throw new ScreenShareError("The browser did not offer a screen to share in time.");
  }
  const track = outcome.getVideoTracks()[0];
  if (!track) {
    stopStream(outcome);
    throw new ScreenShareError("The browser shared no video.");
  }
  if ("contentHint" in track) track.contentHint = "detail";
  return track;
}
