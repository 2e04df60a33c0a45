// Camera, microphone and speaker <select>s filled from enumerateDevices (waiting room, settings).

export const SPEAKER_SELECTION_SUPPORTED =
  typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype;

const DEVICE_WORDS = { videoinput: "Camera", audioinput: "Microphone", audiooutput: "Speaker" };

/** The devices the browser lists (an empty list when it refuses). */
export async function listDevices() {
  try {
    return await navigator.mediaDevices.enumerateDevices();
  } catch {
    return [];
  }
}

/**
 * Fill one picker with the devices of `kind`, selecting `selectedId`. `needsInUse`: choosing
 * needs a device already in use (camera, microphone), so without one the picker is disabled.
 */
export function fillDevicePicker(select, devices, kind, selectedId, needsInUse) {
  const word = DEVICE_WORDS[kind];
  const matching = devices.filter((device) => device.kind === kind && device.deviceId);
  select.replaceChildren();
  const none = !matching.length ? `No ${word.toLowerCase()} found`
    : needsInUse && !selectedId ? `No ${word.toLowerCase()} in use` : null;
  if (none) {
    // Nothing to switch between, or nothing to switch (a viewer, or devices refused).
    select.append(new Option(none, ""));
    select.disabled = true;
    return;
  }
  select.disabled = false;
  matching.forEach((device, index) => {
    const label = device.label || `${word} ${index + 1}`;
    select.append(new Option(label, device.deviceId, false, device.deviceId === selectedId));
  });
}
