"""Recording rooms: starts and stops recorders, keeps their rows, tells everyone.

The service is also a RoomObserver: publications that go live or end while a room is recorded
are attached to or removed from its recorder; a room that closes stops its recording. A
publication whose publisher dropped (reconnecting) is suspended in the recorder, not removed:
republished under the same id it goes on in the same file or tile after a gap; it is removed
when its participant is (the grace period passed, or it left). Status changes are committed,
then announced to participants and posted as webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media.recording import (
    RESOLUTIONS,
    CompositeRecorder,
    IndividualRecorder,
    Recorder,
    RecordingResult,
    RecordingTrack,
    RecoveryReport,
    TrackInfo,
    recover_recording,
)
from server.recording_store import Recording, RecordingStore
from signaling.participant import Participant
from signaling.publication import Publication
from signaling.room import Room, RoomRegistry

log = logging.getLogger(__name__)

CLOCK_RATES = {"audio": 48000, "video": 90000}
SUSPENDED = "reconnecting"
"""The reason `Room.suspend` gives for the end of a dropped participant's publications."""


async def _never(room_id: str) -> bool:
    return False


class RecordingError(Exception):
    """A recording request that cannot be honoured; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RecordingOptions:
    output_mode: str = "composed"
    resolution: str = "1280x720"
    name: str | None = None
    has_audio: bool = True
    has_video: bool = True
    stream_mode: str = "auto"
    layout: dict[str, Any] = field(default_factory=dict)
    multi_archive_tag: str | None = None
    project: str | None = None


@dataclass
class ActiveRecording:
    row: Recording
    recorder: Recorder
    tracks: dict[tuple[str, str], RecordingTrack] = field(default_factory=dict)
    """(publication id, kind) -> what the recorder records of it."""
    manual_streams: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    """Manual stream mode: publication id -> (has audio, has video)."""
    stopping: asyncio.Task[Recording] | None = None


StatusListener = Callable[[Recording], None]


def _recovered_result(report: RecoveryReport) -> RecordingResult:
    """What a crashed individual recording still holds, as its recorder's stop would give it."""
    directory, manifest = report.directory, report.manifest
    assert manifest is not None
    names = {path.name for path in report.servable}
    return RecordingResult(
        directory=directory,
        files=report.servable,
        duration_s=report.duration_s,
        size_bytes=sum(path.stat().st_size for path in report.servable),
        tracks=manifest.tracks,
        manifest=directory / "manifest.json",
        streams=[stream for stream in manifest.streams if stream.file in names],
    )


def individual_archive_json(row: Recording, result: RecordingResult) -> dict[str, Any]:
    """The JSON file of a Vonage individual stream archive, `<archive id>.json` in its ZIP.

    Its shape is what Vonage documents for individual stream archives and what tools built on
    them read (e.g. github.com/opentok/archiving-composer: `files[]` by `streamId`,
    `startTimeOffset`/`stopTimeOffset` in ms from the archive start, `connectionData`,
    `filename` = `<streamId>.webm`): the archive's `createdAt` (ms), `id`, `name`,
    `sessionId`, and per file `connectionData`, `filename`, `size`, `startTimeOffset`,
    `stopTimeOffset`, `streamId`. Blocking (stats the files): call from a worker thread.
    """
    files = []
    for stream in result.streams:
        path = result.directory / stream.file
        start = stream.start_offset_s or 0.0
        stop = stream.stop_offset_s if stream.stop_offset_s is not None else start
        files.append(
            {
                "connectionData": stream.connection_data,
                "filename": stream.file,
                "size": path.stat().st_size if path.exists() else 0,
                "startTimeOffset": max(0, round(start * 1000)),
                "stopTimeOffset": max(0, round(stop * 1000)),
                "streamId": stream.publication_id,
            }
        )
    return {
        "createdAt": int(row.created_at * 1000),
        "files": files,
        "id": row.id,
        "name": row.name,
        "sessionId": row.room_id,
    }


class RecordingService:
    def __init__(self, store: RecordingStore, root: Path, registry: RoomRegistry) -> None:
        self.store = store
        self.root = root
        self.registry = registry
        self.active: dict[str, ActiveRecording] = {}
        self.listeners: list[StatusListener] = []
        """Told of every status change after it is committed (webhooks)."""
        self.auto_record: Callable[[str], Awaitable[bool]] = _never
        """Whether a room records by itself from its first publish."""
        self._lock = asyncio.Lock()

    # ---- lifecycle -----------------------------------------------------------------------

    async def recover_interrupted(self, rooms: Collection[str] | None = None) -> list[Recording]:
        """At start: recordings a crash interrupted are made playable and marked failed.

        `rooms`: only those rooms' (a dead worker's); never a room a live process records.
        """
        recovered = []
        for row in await self.store.interrupted():
            if rooms is not None and row.room_id not in rooms:
                continue
            directory = self.root / row.directory
            file: Path | None = None
            duration = 0.0
            try:
                report = await asyncio.to_thread(recover_recording, directory)
                duration = report.duration_s
                if row.output_mode == "individual" and report.servable:
                    # Served as a finished one is: the ZIP of its streams and their JSON.
                    result = _recovered_result(report)
                    file = await asyncio.to_thread(self._package, row, directory, result)
                elif len(report.servable) == 1:
                    file = report.servable[0]
            except Exception as exc:  # an unreadable directory still gets its row closed
                log.warning("recovery of %s failed: %s", row.id, exc)
            updated = await self.store.update(
                row.id,
                status="failed",
                reason="server stopped while recording",
                duration_s=duration,
                file=file.name if file else None,
                size_bytes=file.stat().st_size if file else 0,
            )
            assert updated is not None
            recovered.append(updated)
            self._announce(updated)
            log.info("recording %s recovered after a crash: %.1f s playable", row.id, duration)
        return recovered

    async def close(self) -> None:
        for recording_id in list(self.active):
            with contextlib.suppress(Exception):
                await self.stop(recording_id, reason="server shutdown")

    # ---- start / stop --------------------------------------------------------------------

    def active_for_room(self, room_id: str) -> list[ActiveRecording]:
        return [a for a in self.active.values() if a.row.room_id == room_id]

    async def start(self, room_id: str, options: RecordingOptions) -> Recording:
        room = self.registry.rooms.get(room_id)
        if room is None or not room.participants:
            raise RecordingError(404, "nobody is connected to this room")
        if options.output_mode not in ("composed", "individual"):
            raise RecordingError(400, "output mode must be composed or individual")
        if options.resolution not in RESOLUTIONS:
            raise RecordingError(400, f"resolution must be one of {', '.join(RESOLUTIONS)}")
        if not (options.has_audio or options.has_video):
            raise RecordingError(400, "a recording needs audio or video")
        async with self._lock:
            running = self.active_for_room(room_id)
            if any(
                a.row.multi_archive_tag is None
                or a.row.multi_archive_tag == options.multi_archive_tag
                for a in running
            ):
                raise RecordingError(409, "this room is already being recorded")
            recording_id = str(uuid.uuid4())
            directory = Path("recordings") / recording_id
            (self.root / directory).mkdir(parents=True, exist_ok=True)
            now = time.time()
            row = Recording(
                id=recording_id,
                room_id=room_id,
                name=options.name,
                output_mode=options.output_mode,
                resolution=options.resolution,
                status="started",
                directory=str(directory),
                created_at=now,
                updated_at=now,
                has_audio=options.has_audio,
                has_video=options.has_video,
                stream_mode=options.stream_mode,
                layout=dict(options.layout),
                multi_archive_tag=options.multi_archive_tag,
                project=options.project,
            )
            try:
                await self.store.insert(row)  # committed before anything is recorded
            except BaseException:
                (self.root / directory).rmdir()  # no directory without its row
                raise
            recorder: Recorder
            if options.output_mode == "composed":
                recorder = CompositeRecorder(
                    self.root / directory, resolution=RESOLUTIONS[options.resolution]
                )
            else:
                recorder = IndividualRecorder(self.root / directory)
            recorder.start()
            active = ActiveRecording(row, recorder)
            self.active[recording_id] = active
            if options.stream_mode == "auto":
                for publication in room.live_publications():
                    self._attach(active, room, publication)
        log.info("recording %s of room %s started (%s)", recording_id, room_id, options.output_mode)
        self._announce(row)
        return row

    def _attach(self, active: ActiveRecording, room: Room, publication: Publication) -> None:
        wanted = {"audio": active.row.has_audio, "video": active.row.has_video}
        if active.row.stream_mode == "manual":
            audio, video = active.manual_streams.get(publication.id, (False, False))
            wanted = {"audio": wanted["audio"] and audio, "video": wanted["video"] and video}
        owner = room.participants.get(publication.participant_id)
        for kind, source in publication.sources.items():
            key = (publication.id, kind)
            if not wanted.get(kind) or not source.forwards_encoded:
                continue
            known = active.tracks.get(key)
            if known is not None:
                if known.suspended:
                    active.recorder.resume_track(known, source)
                continue
            mime = getattr(source, "mime_type", None) or (
                "audio/opus"
                if kind == "audio"
                else {"h264": "video/H264", "vp8": "video/VP8"}[room.codec or "h264"]
            )
            info = TrackInfo(
                publication_id=publication.id,
                participant_name=owner.name if owner else publication.name,
                kind=kind,
                mime_type=mime,
                clock_rate=CLOCK_RATES[kind],
                video_type=publication.video_type,
                participant_id=publication.participant_id,
                connection_data=owner.grant.connection_data if owner else "",
            )
            try:
                active.tracks[key] = active.recorder.attach(source, info)
            except Exception as exc:  # e.g. a codec the mode cannot take: record the rest
                log.warning(
                    "recording %s cannot take %s %s: %s", active.row.id, publication.id, kind, exc
                )

    def _detach(self, active: ActiveRecording, publication_id: str) -> None:
        for key in [k for k in active.tracks if k[0] == publication_id]:
            active.recorder.remove_track(active.tracks.pop(key))

    def _suspend(self, active: ActiveRecording, publication_id: str) -> None:
        for key, track in active.tracks.items():
            if key[0] == publication_id:
                active.recorder.suspend_track(track)

    async def stop(self, recording_id: str, reason: str = "") -> Recording:
        active = self.active.get(recording_id)
        if active is None:
            row = await self.store.get(recording_id)
            if row is None:
                raise RecordingError(404, "no such recording")
            raise RecordingError(409, f"recording is {row.status}, not started")
        if active.stopping is None:
            active.stopping = asyncio.ensure_future(self._finish(active, reason))
        return await asyncio.shield(active.stopping)

    async def _finish(self, active: ActiveRecording, reason: str) -> Recording:
        row = await self.store.update(active.row.id, status="stopped", reason=reason)
        assert row is not None
        self._announce(row)
        directory = self.root / row.directory
        try:
            result = await active.recorder.stop()
            file = await asyncio.to_thread(self._package, row, directory, result)
            final = await self.store.update(
                row.id,
                status="available",
                duration_s=result.duration_s,
                file=file.name,
                size_bytes=file.stat().st_size,
                tracks=[
                    {
                        "publication_id": t.publication_id,
                        "participant_id": t.participant_id,
                        "participant": t.participant_name,
                        "kind": t.kind,
                        "video_type": t.video_type,
                        "codec": t.codec,
                        "file": t.file,
                        "start_s": t.start_offset_s,
                        "stop_s": t.stop_offset_s,
                        "gaps": t.gaps,
                    }
                    for t in result.tracks
                ],
            )
        except Exception as exc:
            log.exception("recording %s failed while finishing", row.id)
            report = await asyncio.to_thread(recover_recording, directory)
            final = await self.store.update(
                row.id, status="failed", reason=str(exc)[:200], duration_s=report.duration_s
            )
        finally:
            self.active.pop(active.row.id, None)
        assert final is not None
        self._announce(final)
        return final

    @staticmethod
    def _package(row: Recording, directory: Path, result: RecordingResult) -> Path:
        """Composed: the MP4 itself. Individual: as Vonage serves an individual stream archive,
        one ZIP of the streams' files (audio and video of a stream in one WebM or MKV, named by
        the stream id) and `<archive id>.json` describing them (`individual_archive_json`).
        Parloir's own `manifest.json` stays in the directory, for crash recovery."""
        if row.output_mode == "composed" and len(result.files) == 1:
            return result.files[0]
        archive = directory / "archive.zip"
        described = individual_archive_json(row, result)
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as bundle:
            for path in result.files:
                bundle.write(path, arcname=path.name)
            bundle.writestr(f"{row.id}.json", json.dumps(described, indent=2))
        return archive

    async def delete(self, recording_id: str) -> Recording:
        row = await self.store.get(recording_id)
        if row is None or row.status == "deleted":
            raise RecordingError(404, "no such recording")
        if row.status in ("started", "stopped"):
            raise RecordingError(409, "stop the recording before deleting it")
        await asyncio.to_thread(shutil.rmtree, self.root / row.directory, True)
        deleted = await self.store.update(recording_id, status="deleted", file=None, size_bytes=0)
        assert deleted is not None
        return deleted

    def file_of(self, row: Recording) -> Path | None:
        if row.status not in ("available", "failed") or not row.file:
            return None
        path = (self.root / row.directory / row.file).resolve()
        # Never serve anything outside the recordings tree, whatever a row says.
        if not path.is_relative_to((self.root / "recordings").resolve()) or not path.is_file():
            return None
        return path

    # ---- manual stream mode --------------------------------------------------------------

    async def set_stream(
        self,
        recording_id: str,
        publication_id: str,
        *,
        add: bool,
        has_audio: bool = True,
        has_video: bool = True,
    ) -> None:
        active = self.active.get(recording_id)
        if active is None:
            raise RecordingError(409, "the recording is not started")
        room = self.registry.rooms.get(active.row.room_id)
        publication = (
            next((p for p in room.live_publications() if p.id == publication_id), None)
            if room
            else None
        )
        if publication is None:
            raise RecordingError(404, "no such stream in the session")
        if add:
            active.manual_streams[publication_id] = (has_audio, has_video)
            assert room is not None
            self._attach(active, room, publication)
        else:
            active.manual_streams.pop(publication_id, None)
            self._detach(active, publication_id)
        streams = [
            {"streamId": pid, "hasAudio": a, "hasVideo": v}
            for pid, (a, v) in active.manual_streams.items()
        ]
        updated = await self.store.update(recording_id, streams=streams)
        if updated is not None:
            active.row = updated

    # ---- room events (RoomObserver) ------------------------------------------------------

    def participant_joined(self, room: Room, participant: Participant) -> None:
        return None

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        # Publications suspended at its drop end with it (their media had already stopped).
        for active in self.active_for_room(room.id):
            for publication_id in {
                key[0]
                for key, track in active.tracks.items()
                if track.suspended and track.info.participant_id == participant.id
            }:
                self._detach(active, publication_id)

    def publication_changed(
        self, room: Room, publication: Publication, live: bool, reason: str
    ) -> None:
        actives = self.active_for_room(room.id)
        for active in actives:
            if live and (
                active.row.stream_mode == "auto" or publication.id in active.manual_streams
            ):
                self._attach(active, room, publication)
            elif not live and reason == SUSPENDED:
                self._suspend(active, publication.id)
            elif not live:
                self._detach(active, publication.id)
        if live and not actives:
            asyncio.ensure_future(self._auto_start(room.id))

    async def _auto_start(self, room_id: str) -> None:
        if not await self.auto_record(room_id) or self.active_for_room(room_id):
            return
        try:
            await self.start(room_id, RecordingOptions(name="automatic"))
        except RecordingError as exc:
            log.info("automatic recording of %s not started: %s", room_id, exc.message)

    def connection_failed(self, room: Room, participant: Participant, state: str) -> None:
        return None

    def participant_suspended(self, room: Room, participant: Participant) -> None:
        return None

    def participant_resumed(self, room: Room, participant: Participant) -> None:
        return None

    def room_closed(self, room: Room) -> None:
        for active in self.active_for_room(room.id):
            asyncio.ensure_future(self.stop(active.row.id, reason="room closed"))

    # ---- announcements -------------------------------------------------------------------

    def _announce(self, row: Recording) -> None:
        room = self.registry.rooms.get(row.room_id)
        if room is not None and row.status in ("started", "stopped"):
            event = {
                "type": "recording-started" if row.status == "started" else "recording-stopped",
                "recording": {
                    "id": row.id,
                    "output_mode": row.output_mode,
                    "name": row.name,
                    "started_at": int(row.created_at * 1000),
                },
            }
            room.recording_id = row.id if row.status == "started" else None
            asyncio.ensure_future(room.broadcast(event))
        for listener in self.listeners:
            try:
                listener(row)
            except Exception:
                log.exception("recording status listener failed")
