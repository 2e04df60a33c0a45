"""A process that records until it is killed: `python -m tests.support.recording_child DIR`.

It runs both recorders on replayed H.264 + Opus clips (the packets a forwarder would push) and
prints one JSON line `{"started_at": <unix time of offset 0>}` once recording has begun, then
records until the test kills it (`kill -9`) and checks what the files kept.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from media.recording import CompositeRecorder, IndividualRecorder, TrackInfo
from media.recording.replay import ClipReplay, encode_audio_clip, encode_video_clip


async def record_until_killed(directory: Path) -> None:
    video = ClipReplay(encode_video_clip(4.0, 320, 240, noise=False))
    audio = ClipReplay(encode_audio_clip(4.0, 440.0))
    composed = CompositeRecorder(directory / "composed", resolution=(640, 480), fps=25)
    individual = IndividualRecorder(directory / "individual")
    video.start()
    audio.start()
    composed.start()
    individual.start()
    for recorder in (composed, individual):
        recorder.attach(video, TrackInfo("pub1", "Alice", "video", "video/H264", 90000))
        recorder.attach(audio, TrackInfo("pub1", "Alice", "audio", "audio/opus", 48000))
    print(json.dumps({"started_at": composed.started_at}), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(record_until_killed(Path(sys.argv[1])))
