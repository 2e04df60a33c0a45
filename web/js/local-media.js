// This page's camera and microphone: asking for them, and explaining why they are missing.

export const DEFAULT_VIDEO = { width: 320, height: 240, frameRate: 15 };

/**
 * Ask for camera and microphone; fall back to whichever one works. Never throws: resolves with
 * {stream, audio, video, problem} where `problem` is a sentence for the user (or null).
 * `audioProcessing: false` turns off echo cancellation, noise suppression and gain control.
 */
export async function openCameraAndMic({ video = DEFAULT_VIDEO, audioProcessing = true } = {}) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return {
      stream: null,
      audio: null,
      video: null,
      problem: "This browser cannot use a camera or microphone here (the page needs HTTPS).",
    };
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
