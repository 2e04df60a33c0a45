"""Recording a Room: stream copy per stream (individual) or one laid-out MP4 (composed).

    recorder = CompositeRecorder(directory, resolution=(1280, 720), fps=25)
    recorder.start()
    track = recorder.attach(publication.sources["video"], TrackInfo(...))
    ...
    result = await recorder.stop()

See `recorder.py` for the lifecycle, `individual.py` and `composed.py` for the two modes,
`recovery.py` for what to do with recordings a crash interrupted.
"""

from media.recording.composed import CompositeRecorder
from media.recording.individual import IndividualRecorder
from media.recording.layout import RESOLUTIONS, LayoutOptions
from media.recording.manifest import RecordingManifest, RecordingResult, TrackEntry, TrackInfo
from media.recording.recorder import Recorder, RecordingTrack
from media.recording.recovery import (
    RecoveryReport,
    find_interrupted,
    recover_recording,
    scan_recording,
)

__all__ = [
    "RESOLUTIONS",
    "CompositeRecorder",
    "IndividualRecorder",
    "LayoutOptions",
    "Recorder",
    "RecordingManifest",
    "RecordingResult",
    "RecordingTrack",
    "RecoveryReport",
    "TrackEntry",
    "TrackInfo",
    "find_interrupted",
    "recover_recording",
    "scan_recording",
]
