"""After a crash: what an interrupted recording still holds, and making it servable.

At its next start the integrator calls `find_interrupted(root)` for the recording directories
whose manifest still says `recording`, then `recover_recording(directory)` on each: it reads
every file packet by packet to find the playable duration, remuxes a composed recording's
partial fragmented MP4 into a plain fast-start `composed.mp4`, and rewrites the manifest
(`status: recovered`, `duration_s`). The storage row is then marked `failed` with that
duration. All of this blocks: run it in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from media.recording import composed, muxing
from media.recording.manifest import MANIFEST_NAME, RecordingManifest, read_manifest

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What a recording directory holds after a crash (or a clean stop)."""

    directory: Path
    """The recording directory."""
    manifest: RecordingManifest | None
    """Its manifest, None if missing or unreadable."""
    interrupted: bool
    """The recorder never finished (manifest still `recording`, or no manifest)."""
    duration_s: float
    """Playable length from the recording start: composed file length, or the latest end of
    any individual file (its start offset + its readable length)."""
    files: list[muxing.FileProbe] = field(default_factory=list)
    """Every media file found, with what could be read of it."""
    servable: list[Path] = field(default_factory=list)
    """Files to offer for download (after `recover_recording`, the remuxed ones)."""


def find_interrupted(root: Path | str) -> list[Path]:
    """Recording directories under `root` whose recorder never reached a clean stop."""
    found = []
    for manifest_path in sorted(Path(root).glob(f"**/{MANIFEST_NAME}")):
        manifest = read_manifest(manifest_path.parent)
        if manifest is None or manifest.status == "recording":
            found.append(manifest_path.parent)
    return found


def scan_recording(directory: Path | str) -> RecoveryReport:
    """Read every media file of a recording directory (no writes) and report what plays."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    interrupted = manifest is None or manifest.status == "recording"
    if manifest is not None and manifest.mode == "individual":
        return _scan_individual(directory, manifest, interrupted)
    return _scan_composed(directory, manifest, interrupted)


def _scan_composed(
    directory: Path, manifest: RecordingManifest | None, interrupted: bool
) -> RecoveryReport:
    candidates = [directory / composed.FILE_NAME, directory / composed.PART_NAME]
    probes = [muxing.probe_file(path) for path in candidates if path.exists()]
    playable = [p for p in probes if p.readable and p.duration_s > 0]
    best = max(playable, key=lambda p: p.duration_s, default=None)
    return RecoveryReport(
        directory,
        manifest,
        interrupted,
        best.duration_s if best else 0.0,
        probes,
        [best.path] if best else [],
    )


def _scan_individual(
    directory: Path, manifest: RecordingManifest, interrupted: bool
) -> RecoveryReport:
    probes = []
    end = 0.0
    servable = []
    for name, start in _individual_files(manifest).items():
        if not (directory / name).exists():
            continue
        probe = muxing.probe_file(directory / name)
        probes.append(probe)
        if probe.readable and probe.duration_s > 0:
            servable.append(probe.path)
            end = max(end, start + probe.duration_s)
    return RecoveryReport(directory, manifest, interrupted, end, probes, servable)


def _individual_files(manifest: RecordingManifest) -> dict[str, float]:
    """File name -> recording time of its time 0: one file per stream, or (manifests written
    before streams shared a file) one per track."""
    entries = manifest.streams or manifest.tracks
    return {e.file: e.start_offset_s or 0.0 for e in entries if e.file}


def _remux_stream_file(probe: muxing.FileProbe) -> muxing.FileProbe:
    """Rewrite a crashed individual file (stream copy, same container) so it gets the duration
    and seek index its recorder never wrote; on any failure the file stays as it was."""
    if not probe.readable or probe.duration_s <= 0:
        return probe
    path = probe.path
    muxer = "matroska" if path.suffix == ".mkv" else "webm"
    temporary = path.with_name(path.name + ".remux")
    try:
        muxing.remux(path, temporary, muxer, {})
        remuxed = muxing.probe_file(temporary)
        if remuxed.readable and remuxed.duration_s > 0:
            temporary.replace(path)
            return muxing.probe_file(path)
    except Exception:
        log.exception("remuxing %s failed; the file is kept as written", path)
    temporary.unlink(missing_ok=True)
    return probe


def recover_recording(directory: Path | str, remux: bool = True) -> RecoveryReport:
    """Make an interrupted recording servable and record its playable duration.

    Composed: the partial `composed.part.mp4` is remuxed (stream copy) into a fast-start
    `composed.mp4` when `remux`, then deleted. Individual: each WebM/Matroska file (playable as
    written up to its last flushed cluster) is remuxed in place when `remux`, to get the
    duration and seek index a crash kept it from writing; each stream's and track's
    `stop_offset_s` is filled from its file. The
    manifest is rewritten with `status: recovered`. A finished recording is left untouched.
    """
    directory = Path(directory)
    report = scan_recording(directory)
    if not report.interrupted:
        return report
    manifest = report.manifest or RecordingManifest(mode="composed", started_at=0.0)
    part = directory / composed.PART_NAME
    final = directory / composed.FILE_NAME
    if manifest.mode == "composed" and remux and part.exists() and report.duration_s > 0:
        try:
            muxing.remux_faststart(part, final)
            remuxed = muxing.probe_file(final)
            if remuxed.readable and remuxed.duration_s > 0:
                part.unlink()
                report.servable = [final]
                report.duration_s = remuxed.duration_s
                report.files = [remuxed]
        except Exception:
            log.exception("remuxing %s failed; the partial file is kept", part)
    if manifest.mode == "individual" and remux:
        report.files = [_remux_stream_file(probe) for probe in report.files]
    if manifest.mode == "individual":
        by_path = {p.path.name: p for p in report.files}
        starts = _individual_files(manifest)
        for stream_entry in manifest.streams:
            probe = by_path.get(stream_entry.file)
            if probe is not None and probe.readable and stream_entry.stop_offset_s is None:
                stream_entry.stop_offset_s = round(starts[stream_entry.file] + probe.duration_s, 3)
        for entry in manifest.tracks:
            probe = by_path.get(entry.file)
            if probe is None or not probe.readable:
                continue
            kept = [s for s in probe.streams if s.kind == entry.kind] or probe.streams
            entry.packets = sum(stream.packets for stream in kept)
            ends = [s.end_s for s in kept if s.end_s is not None]
            if entry.stop_offset_s is None and ends:
                entry.stop_offset_s = round(starts.get(entry.file, 0.0) + max(ends), 3)
    else:
        for entry in manifest.tracks:
            if entry.stop_offset_s is None:
                entry.stop_offset_s = round(report.duration_s, 3)
    manifest.status = "recovered"
    manifest.duration_s = round(report.duration_s, 3)
    manifest.files = [path.name for path in report.servable]
    if report.servable and manifest.mode == "composed":
        for entry in manifest.tracks:
            entry.file = report.servable[0].name
    manifest.write(directory)
    report.manifest = manifest
    return report
