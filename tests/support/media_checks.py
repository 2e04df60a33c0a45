"""Content checks on decoded media: which painted frame arrived, which tone is heard."""

from __future__ import annotations

import asyncio

import av
import numpy as np
from aiortc import MediaStreamTrack

from media.synthetic import read_frame_index


async def painted_indices(
    track: MediaStreamTrack, frames: int, timeout_s: float = 10
) -> list[int | None]:
    """Decode `frames` frames and return the index painted in each (None if unreadable)."""
    indices: list[int | None] = []
    for _ in range(frames):
        frame = await asyncio.wait_for(track.recv(), timeout_s)
        assert isinstance(frame, av.VideoFrame), f"{track.kind} track gave {frame!r}"
        indices.append(read_frame_index(frame))
    return indices


def dominant_frequency(frames: list[av.AudioFrame]) -> float:
    samples = np.concatenate(
        [f.to_ndarray().reshape(-1, len(f.layout.channels))[:, 0] for f in frames]
    )
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    rate = frames[0].sample_rate
    return float(np.argmax(spectrum) * rate / len(samples))


async def audio_frames(
    track: MediaStreamTrack, count: int, timeout_s: float = 10
) -> list[av.AudioFrame]:
    frames = []
    for _ in range(count):
        frame = await asyncio.wait_for(track.recv(), timeout_s)
        assert isinstance(frame, av.AudioFrame), f"{track.kind} track gave {frame!r}"
        frames.append(frame)
    return frames


def assert_painted_sequence(indices: list[int | None], minimum_readable: float = 0.9) -> None:
    readable = [i for i in indices if i is not None]
    assert len(readable) >= minimum_readable * len(indices), f"unreadable frames: {indices}"
    assert readable == sorted(readable), f"frames out of order: {readable}"
    assert len(set(readable)) == len(readable), f"duplicated frames: {readable}"
