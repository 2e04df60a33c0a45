"""A recording runs on while a participant drops and resumes: one file with a gap, not a broken
one (issue 10). A real `parloir serve`, real aiortc peers, every file decoded with PyAV."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from media.recording.layout import Rect, TileSpec, compose_layout, fit
from media.synthetic import PaintedVideoTrack, ToneAudioTrack, read_index
from signaling.client import ParloirClient
from tests.support.server_process import ServerProcess, running_server

SOURCE = (320, 240)
CANVAS = (640, 480)
STUDENT_AFTER = 20000
"""First index painted by the student's camera once it is back (before the drop: from 0)."""
MENTOR_FIRST = 40000
"""First index painted by the mentor's camera."""


@dataclass
class Reconnected:
    """What happened during the call, in seconds since the recording started."""

    row: dict[str, Any]
    rows: list[dict[str, Any]]
    data: bytes
    student_publication: str
    mentor_publication: str
    dropped_at: float
    resumed_at: float
    wall: float


async def join(server: ServerProcess, room: str, identity: str, role: str) -> ParloirClient:
    client = ParloirClient(
        server.url, token=server.token(room, identity, role), room=room, name=identity.title()
    )
    await client.connect()
    return client


async def record_through_a_reconnect(server: ServerProcess, mode: str) -> Reconnected:
    """Student and mentor publish; the room is recorded; the student's network goes away for
    3 s, it resumes and publishes again under the same publication id; 3 s later, stop."""
    room = f"viva-{mode}"
    headers = {"Authorization": f"Bearer {server.api_key}"}
    student = await join(server, room, "student", "publisher")
    mentor = await join(server, room, "mentor", "moderator")
    back: ParloirClient | None = None
    try:
        camera = await student.publish(
            audio=ToneAudioTrack(660), video=PaintedVideoTrack(*SOURCE, fps=15)
        )
        mine = await mentor.publish(
            audio=ToneAudioTrack(440),
            video=PaintedVideoTrack(*SOURCE, fps=15, first_index=MENTOR_FIRST),
        )
        await mentor.wait_for_track(camera["id"], "video")
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(
                f"{server.url}/api/rooms/{room}/recordings",
                json={"output_mode": mode, "resolution": f"{CANVAS[0]}x{CANVAS[1]}"},
            ) as r:
                started = await r.json()
                assert r.status == 201, started
            began = time.monotonic()
            await asyncio.sleep(3.0)

            ticket = student.resume_ticket
            await student.close()  # the network goes: no leave, the socket just dies
            dropped_at = time.monotonic() - began
            await mentor.wait_for(lambda m: m["type"] == "participant-reconnecting")
            await asyncio.sleep(3.0 - (time.monotonic() - began - dropped_at))

            back = ParloirClient(server.url, token=server.token(room, "student"), room=room)
            joined = await back.connect(resume=ticket)
            assert joined["resumed"] is True
            again = await back.publish(
                audio=ToneAudioTrack(660),
                video=PaintedVideoTrack(*SOURCE, fps=15, first_index=STUDENT_AFTER),
                publication_id=camera["id"],
            )
            assert again["id"] == camera["id"]
            resumed_at = time.monotonic() - began
            await asyncio.sleep(3.0)

            async with http.post(f"{server.url}/api/recordings/{started['id']}/stop") as r:
                row = await r.json()
                assert r.status == 200, row
            wall = time.monotonic() - began
            async with http.get(f"{server.url}/api/recordings?room_id={room}") as r:
                rows = (await r.json())["items"]
            async with http.get(server.url + row["download"]) as r:
                assert r.status == 200
                data = await r.read()
        assert not [m for m in mentor.events.messages if m["type"] == "participant-left"]
        return Reconnected(row, rows, data, camera["id"], mine["id"], dropped_at, resumed_at, wall)
    finally:
        await asyncio.gather(mentor.leave(), *(c.leave() for c in [back] if c))
        await student.close()


def decode(data: bytes, kind: str) -> list[Any]:
    """Every frame of the first `kind` stream; any decoding error fails the test."""
    with av.open(io.BytesIO(data), "r") as container:
        streams = container.streams.video if kind == "video" else container.streams.audio
        assert streams, f"no {kind} stream"
        return list(container.decode(streams[0]))


def assert_one_good_recording(run: Reconnected) -> None:
    assert [r["id"] for r in run.rows] == [run.row["id"]], run.rows  # one, not two
    assert run.row["status"] == "available", run.row
    assert abs(run.row["duration_s"] - run.wall) < 1.0, (run.row["duration_s"], run.wall)


def tile_index(frame: av.VideoFrame, area: Rect) -> int | None:
    """The index painted in the picture drawn in `area` (scaled back to the source size)."""
    at = fit(*SOURCE, area)
    luma = frame.to_ndarray(format="gray")[at.y : at.y + at.height, at.x : at.x + at.width]
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(luma), format="gray")
    return read_index(picture.reformat(width=SOURCE[0], height=SOURCE[1]).to_ndarray())


def spectrum_peaks(samples: np.ndarray, rate: int, count: int) -> list[int]:
    """The `count` strongest frequencies at least 50 Hz apart, rounded to 10 Hz."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    peaks: list[float] = []
    for index in np.argsort(spectrum)[::-1]:
        if all(abs(freqs[index] - p) > 50 for p in peaks):
            peaks.append(float(freqs[index]))
        if len(peaks) == count:
            break
    return sorted(round(p / 10) * 10 for p in peaks)


def mono(frames: list[av.AudioFrame]) -> tuple[np.ndarray, int]:
    samples = np.concatenate(
        [f.to_ndarray().reshape(len(f.layout.channels), -1)[0] for f in frames]
    )
    return samples.astype(np.float64), frames[0].sample_rate


async def test_composed_recording_shows_the_student_again_after_a_reconnect_in_one_file(
    server: ServerProcess,
) -> None:
    run = await record_through_a_reconnect(server, "composed")
    assert_one_good_recording(run)
    video = decode(run.data, "video")
    audio = decode(run.data, "audio")
    times = np.array([float(f.time) for f in video])
    assert np.all(np.diff(times) > 0), "video timestamps not increasing"
    video_s = times[-1] + 1 / 25
    assert abs(video_s - run.wall) < 1.0, (video_s, run.wall)
    assert len(video) == pytest.approx(video_s * 25, abs=3)  # constant rate through the gap
    samples, rate = mono(audio)
    assert abs(len(samples) / rate - video_s) < 0.3
    audio_times = [float(f.time) for f in audio]
    assert all(b > a for a, b in zip(audio_times, audio_times[1:], strict=False))

    # The student's tile keeps its place: where it was before the drop, it shows the camera
    # that came back (not a picture frozen at the drop), and the mentor's tile never moved.
    tiles = compose_layout(
        *CANVAS,
        [TileSpec(run.student_publication, "Student"), TileSpec(run.mentor_publication, "Mentor")],
    )
    student_tile, mentor_tile = (t.video for t in tiles)
    before = [f for f in video if 1.0 < float(f.time) < run.dropped_at - 0.3]
    after = [f for f in video if run.resumed_at + 1.5 < float(f.time) < run.wall - 0.5]
    assert len(before) > 25 and len(after) > 15, (len(before), len(after))
    student_before = [tile_index(f, student_tile) for f in before]
    student_after = [tile_index(f, student_tile) for f in after]
    mentor_after = [tile_index(f, mentor_tile) for f in after]
    assert all(i is not None and i < STUDENT_AFTER for i in student_before), student_before
    readable = [i for i in student_after if i is not None]
    assert len(readable) >= 0.9 * len(after), student_after
    assert all(STUDENT_AFTER <= i < MENTOR_FIRST for i in readable), student_after
    assert readable == sorted(readable) and len(set(readable)) > len(readable) // 2, readable
    assert all(i is not None and i >= MENTOR_FIRST for i in mentor_after), mentor_after
    # Both are heard once the student is back.
    tail = samples[int((run.resumed_at + 1.0) * rate) : int((run.wall - 0.3) * rate)]
    assert spectrum_peaks(tail, rate, 2) == [440, 660]


async def test_individual_recording_continues_the_students_files_across_a_reconnect(
    server: ServerProcess,
) -> None:
    run = await record_through_a_reconnect(server, "individual")
    assert_one_good_recording(run)
    with zipfile.ZipFile(io.BytesIO(run.data)) as bundle:
        described = json.loads(bundle.read(f"{run.row['id']}.json"))
        files = {n: bundle.read(n) for n in bundle.namelist() if not n.endswith(".json")}
    # One file per stream, its audio and video together, as a Vonage individual archive: the
    # student's stream kept its id, so its file goes on after the gap.
    streams = {run.student_publication, run.mentor_publication}
    assert sorted(f["streamId"] for f in described["files"]) == sorted(streams), described
    assert sorted(files) == sorted(f["filename"] for f in described["files"])
    tracks = {(t["publication_id"], t["kind"]): t for t in run.row["tracks"]}
    assert sorted(tracks) == sorted((p, k) for p in streams for k in ("audio", "video"))
    for described_file in described["files"]:
        name, stream_id = described_file["filename"], described_file["streamId"]
        start = described_file["startTimeOffset"] / 1000
        stop = described_file["stopTimeOffset"] / 1000
        assert start < 1.0 and abs(stop - run.wall) < 1.0, (described_file, run.wall)
        for kind in ("audio", "video"):
            track = tracks[(stream_id, kind)]
            assert track["file"] == name
            frames = decode(files[name], kind)
            times = start + np.array([float(f.time) for f in frames])  # on the recording clock
            assert np.all(np.diff(times) > 0), f"{name} {kind}: timestamps not increasing"
            assert abs(times[0] - track["start_s"]) < 0.05, (track, times[0])
            assert abs(times[-1] - track["stop_s"]) < 0.5, (track, times[-1])
            if stream_id != run.student_publication:
                assert np.max(np.diff(times)) < 0.5, f"{name} {kind}: a gap without a drop"
                assert track["gaps"] == []
                continue
            # The gap is there, in time, where the student was away, and the row says so.
            ((away_from, away_to),) = track["gaps"]
            assert abs(away_from - run.dropped_at) < 0.5 and abs(away_to - run.resumed_at) < 0.5
            widest = int(np.argmax(np.diff(times)))
            gap_from, gap_to = times[widest], times[widest + 1]
            assert gap_to - gap_from > 2.0, (gap_from, gap_to)
            assert abs(gap_from - run.dropped_at) < 0.7 and abs(gap_to - run.resumed_at) < 1.0, (
                gap_from,
                gap_to,
                run.dropped_at,
                run.resumed_at,
            )
            if kind == "video":
                indices = [read_index(f.to_ndarray(format="gray")) for f in frames]
                assert None not in indices, indices
                assert frames[0].key_frame and frames[widest + 1].key_frame
                assert all(i < STUDENT_AFTER for i in indices[: widest + 1])  # type: ignore[operator]
                assert all(i >= STUDENT_AFTER for i in indices[widest + 1 :])  # type: ignore[operator]
                assert len(frames[widest + 1 :]) > 2.0 * 15
            else:
                samples, rate = mono(frames[widest + 1 :])
                assert spectrum_peaks(samples, rate, 1) == [660]


async def test_a_student_who_never_comes_back_leaves_the_composed_recording_at_the_grace_end(
    tmp_path: Path,
) -> None:
    """Past the grace period the student is gone: its tile, blank since the drop, makes way
    for the mentor's, and the recording finishes as usual."""
    with running_server(tmp_path, PARLOIR_RECONNECT_GRACE_S="1.5") as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        student = await join(server, "viva-gone", "student", "publisher")
        mentor = await join(server, "viva-gone", "mentor", "moderator")
        try:
            camera = await student.publish(
                audio=ToneAudioTrack(660), video=PaintedVideoTrack(*SOURCE, fps=15)
            )
            await mentor.publish(
                audio=ToneAudioTrack(440),
                video=PaintedVideoTrack(*SOURCE, fps=15, first_index=MENTOR_FIRST),
            )
            await mentor.wait_for_track(camera["id"], "video")
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.post(
                    f"{server.url}/api/rooms/viva-gone/recordings",
                    json={"resolution": f"{CANVAS[0]}x{CANVAS[1]}"},
                ) as r:
                    started = await r.json()
                    assert r.status == 201, started
                began = time.monotonic()
                await asyncio.sleep(2.0)
                await student.close()
                dropped_at = time.monotonic() - began
                left = await mentor.wait_for(lambda m: m["type"] == "participant-left", timeout=5)
                assert left["reason"] == "networkDisconnected"
                left_at = time.monotonic() - began
                await asyncio.sleep(2.0)
                async with http.post(f"{server.url}/api/recordings/{started['id']}/stop") as r:
                    row = await r.json()
                    assert r.status == 200, row
                async with http.get(server.url + row["download"]) as r:
                    data = await r.read()
        finally:
            await mentor.leave()
            await student.close()
    assert row["status"] == "available", row
    student_video = next(
        t for t in row["tracks"] if t["publication_id"] == camera["id"] and t["kind"] == "video"
    )
    ((gap_from, gap_to),) = student_video["gaps"]
    assert abs(gap_from - dropped_at) < 0.5 and abs(gap_to - left_at) < 0.5, student_video
    assert student_video["stop_s"] == pytest.approx(gap_to, abs=0.01)
    video = decode(data, "video")
    two = compose_layout(*CANVAS, [TileSpec("student", ""), TileSpec("mentor", "")])
    one = compose_layout(*CANVAS, [TileSpec("mentor", "")])
    away = [f for f in video if dropped_at + 0.5 < float(f.time) < left_at - 0.2]
    alone = [f for f in video if left_at + 1.0 < float(f.time)]
    assert away and alone
    assert all(tile_index(f, two[0].video) is None for f in away)  # blank, not frozen
    assert all((tile_index(f, two[1].video) or 0) >= MENTOR_FIRST for f in away)
    assert all((tile_index(f, one[0].video) or 0) >= MENTOR_FIRST for f in alone)
