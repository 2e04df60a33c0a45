"""Recording rooms through the real server: API, moderators, automatic defences, crashes,
uploads, webhooks and Vonage archives — every file opened with PyAV."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import opentok
import pytest
import requests

from media.synthetic import PaintedVideoTrack, ToneAudioTrack
from signaling.client import ParloirClient, ServerError
from tests.support.server_process import ServerProcess, running_server
from tests.support.sessions import schedule
from tests.support.vonage_fixtures import API_KEY, API_SECRET, WebhookReceiver


def probe(data: bytes) -> dict[str, Any]:
    """Open a recording with PyAV and decode every frame."""
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = sum(1 for _ in container.decode(video=0))
        container.seek(0)
        samples = sum(f.samples for f in container.decode(audio=0)) if audio else 0
        return {
            "duration": (container.duration or 0) / 1e6,
            "video_codec": video.codec_context.name,
            "audio_codec": audio.codec_context.name if audio else None,
            "size": (video.width, video.height),
            "frames": frames,
            "audio_s": samples / audio.sample_rate if audio else 0,
        }


class Platform:
    def __init__(self, http: aiohttp.ClientSession, server: ServerProcess) -> None:
        self.http, self.server = http, server
        self.headers = {"Authorization": f"Bearer {server.api_key}"}

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.http.request(
            method, self.server.url + path, json=body, headers=self.headers
        ) as r:
            payload = await r.json() if r.content_type == "application/json" else await r.read()
            assert r.status == expect, (r.status, payload)
            return payload


async def join(
    server: ServerProcess,
    room: str,
    identity: str,
    role: str = "publisher",
    token: str | None = None,
) -> ParloirClient:
    client = ParloirClient(
        server.url,
        token=token or server.token(room, identity, role),
        room=room,
        name=identity.title(),
    )
    await client.connect()
    return client


async def wait_status(
    platform: Platform, recording_id: str, status: str, timeout: float = 15
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        row = await platform.call("GET", f"/api/recordings/{recording_id}")
        if row["status"] == status:
            return row
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.2)


async def test_platform_records_a_room_and_downloads_it_with_ranges(tmp_path: Path) -> None:
    receiver = await WebhookReceiver().start()
    try:
        with running_server(tmp_path, PARLOIR_WEBHOOK_URL=receiver.url) as server:
            async with aiohttp.ClientSession() as http:
                platform = Platform(http, server)
                a, b = (
                    await join(server, "defence-1", "ada"),
                    await join(server, "defence-1", "bob"),
                )
                await a.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
                await b.publish(audio=ToneAudioTrack(660), video=PaintedVideoTrack(320, 240, 15))
                started = await platform.call(
                    "POST",
                    "/api/rooms/defence-1/recordings",
                    {"resolution": "640x480", "name": "jury"},
                    expect=201,
                )
                assert started["status"] == "started"
                indicator = await b.wait_for_type("recording-started")
                assert indicator["recording"]["id"] == started["id"]
                await platform.call("POST", "/api/rooms/defence-1/recordings", {}, expect=409)
                began = time.monotonic()
                await asyncio.sleep(4)
                stopped = await platform.call("POST", f"/api/recordings/{started['id']}/stop")
                wall = time.monotonic() - began
                assert stopped["status"] == "available" and stopped["download"]
                await a.wait_for_type("recording-stopped")
                data = await platform.call("GET", stopped["download"])
                info = probe(data)
                assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
                assert info["size"] == (640, 480)
                assert abs(info["duration"] - wall) < 1.0, (info, wall)
                assert info["frames"] >= 20 * info["duration"] and info["audio_s"] > 3
                async with http.get(
                    server.url + stopped["download"],
                    headers={**platform.headers, "Range": "bytes=100-199"},
                ) as r:
                    assert r.status == 206 and await r.read() == data[100:200]
                listed = await platform.call("GET", "/api/recordings?room_id=defence-1")
                assert [i["id"] for i in listed["items"]] == [started["id"]]
                await platform.call("DELETE", f"/api/recordings/{started['id']}", expect=204)
                await platform.call("GET", f"/api/recordings/{started['id']}", expect=404)
                await asyncio.gather(a.leave(), b.leave())
            for _ in range(100):  # the outbox delivers asynchronously
                if len(receiver.received) >= 3:
                    break
                await asyncio.sleep(0.1)  # noqa: ASYNC110 - polling another process's effect
            assert [e["recording"]["status"] for e in receiver.received] == [
                "started",
                "stopped",
                "available",
            ]
    finally:
        await receiver.stop()


async def test_moderator_records_individual_tracks_and_others_may_not(
    server: ServerProcess,
) -> None:
    mentor = await join(server, "mentoring", "mentor", "moderator")
    student = await join(server, "mentoring", "student")
    try:
        await mentor.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
        with pytest.raises(ServerError) as refused:
            await student.request({"type": "record", "action": "start"}, expect="ack")
        assert refused.value.code == "forbidden"
        ack = await mentor.request(
            {"type": "record", "action": "start", "output_mode": "individual"}, expect="ack"
        )
        await asyncio.sleep(3)
        done = await mentor.request({"type": "record", "action": "stop"}, expect="ack")
        assert done["recording"]["status"] == "available"
        assert done["recording"]["id"] == ack["recording"]["id"]
        async with aiohttp.ClientSession() as http:
            data = await Platform(http, server).call("GET", done["recording"]["download"])
        recording_id = done["recording"]["id"]
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            names = bundle.namelist()
            described = json.loads(bundle.read(f"{recording_id}.json"))
            # As Vonage: one file per stream, audio and video in it; H.264 in Matroska.
            (stream_file,) = [n for n in names if not n.endswith(".json")]
            (entry,) = described["files"]
            assert stream_file == entry["filename"] == f"{entry['streamId']}.mkv"
            played = probe(bundle.read(stream_file))
            assert played["video_codec"] == "h264" and played["audio_codec"] == "opus"
            assert played["frames"] > 15 and played["audio_s"] > 1.5
    finally:
        await asyncio.gather(mentor.leave(), student.leave())


async def test_defence_records_itself_from_the_first_publish(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        platform = Platform(http, server)
        body = schedule(
            0,
            type_="defence",
            mentor={"identity": "jury-1", "name": "Jury"},
            student={"identity": "stu-1", "name": "Student"},
        )
        session = await platform.call("POST", "/api/sessions", body, expect=201)
        assert session["auto_record"] is True
        link = await platform.call(
            "POST", f"/api/sessions/{session['id']}/tokens", {"party": "student"}, expect=201
        )
        student = await join(server, session["room_id"], "stu-1", token=link["token"])
        await student.publish(video=PaintedVideoTrack(320, 240, 15), audio=ToneAudioTrack())
        indicator = await student.wait_for_type("recording-started")
        listed = await platform.call("GET", f"/api/recordings?session_id={session['id']}")
        assert listed["items"][0]["id"] == indicator["recording"]["id"]
        await asyncio.sleep(2)
        await student.leave()  # the room closes after its grace period, stopping the recording


@pytest.mark.parametrize("output_mode", ["composed", "individual"])
async def test_kill_9_mid_recording_leaves_a_playable_failed_recording(
    tmp_path: Path, output_mode: str
) -> None:
    with running_server(tmp_path) as server:
        async with aiohttp.ClientSession() as http:
            platform = Platform(http, server)
            a = await join(server, "crash", "ada")
            publication = await a.publish(
                audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15)
            )
            row = await platform.call(
                "POST",
                "/api/rooms/crash/recordings",
                {"resolution": "640x480", "output_mode": output_mode},
                expect=201,
            )
            await asyncio.sleep(4)
            server.process.kill()
            server.process.wait()
            await a.close()
    with running_server(tmp_path) as restarted:
        async with aiohttp.ClientSession() as http:
            platform = Platform(http, restarted)
            failed = await platform.call("GET", f"/api/recordings/{row['id']}")
            assert failed["status"] == "failed" and 2.5 < failed["duration_s"] < 4.5, failed
            data = await platform.call("GET", f"/api/recordings/{row['id']}/download")
    if output_mode == "composed":
        info = probe(data)
        assert info["frames"] > 30 and abs(info["duration"] - failed["duration_s"]) < 0.6
        return
    # Individual: the stream's file, played up to its last flushed cluster, in the ZIP a
    # finished archive has, with its JSON.
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        described = json.loads(bundle.read(f"{row['id']}.json"))
        (entry,) = described["files"]
        assert entry["streamId"] == publication["id"]
        assert entry["filename"] == f"{publication['id']}.mkv"
        info = probe(bundle.read(entry["filename"]))
    assert info["frames"] > 30 and info["audio_s"] > 2.0
    assert abs(entry["stopTimeOffset"] / 1000 - failed["duration_s"]) < 0.1, (entry, failed)
    assert abs(info["duration"] - (entry["stopTimeOffset"] - entry["startTimeOffset"]) / 1000) < 0.6


def small_mp4() -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i * 20, np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


async def test_participant_uploads_an_external_recording(tmp_path: Path) -> None:
    with running_server(tmp_path, PARLOIR_MAX_UPLOAD_BYTES="200000") as server:
        token = server.token("moved-call", "mentor")
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{server.url}/api/rooms/moved-call/recordings/upload"
        async with aiohttp.ClientSession() as http:
            async with http.post(
                url, data=small_mp4(), headers={**headers, "Content-Type": "video/mp4"}
            ) as r:
                row = await r.json()
                assert r.status == 201 and row["origin"] == "upload", row
                assert row["uploaded_by"] == "mentor" and row["resolution"] == "160x120"
            async with http.post(
                url,
                data=b"not a video at all" * 100,
                headers={**headers, "Content-Type": "video/mp4"},
            ) as r:
                assert r.status == 422 and (await r.json())["error"] == "not-media"
            async with http.post(
                url, data=b"\0" * 300_000, headers={**headers, "Content-Type": "video/mp4"}
            ) as r:
                assert r.status == 413
            async with http.post(
                url, data=b"x", headers={**headers, "Content-Type": "text/plain"}
            ) as r:
                assert r.status == 415
            async with http.post(url, data=small_mp4(), headers={"Content-Type": "video/mp4"}) as r:
                assert r.status == 401
            platform = Platform(http, server)
            fetched = await platform.call("GET", f"/api/recordings/{row['id']}/download")
            assert probe(fetched)["frames"] == 10
            # The playback page is for staff; its video plays with the staff cookie.
            async with http.get(f"{server.url}/recordings/{row['id']}") as r:
                assert r.status == 401
            async with http.post(
                f"{server.url}/api/staff/login", json={"token": server.staff_token}
            ) as r:
                assert r.status == 200
            jar_cookie = {"parloir_staff": server.staff_token}
            async with http.get(f"{server.url}/recordings/{row['id']}", cookies=jar_cookie) as r:
                page = await r.text()
                assert r.status == 200 and f'src="/api/recordings/{row["id"]}/download"' in page
            async with http.get(
                f"{server.url}/api/recordings/{row['id']}/download", cookies=jar_cookie
            ) as r:
                assert r.status == 200 and probe(await r.read())["frames"] == 10
        leftovers = [p for p in (server.data_dir / "recordings").iterdir()]
        assert len(leftovers) == 1  # refused uploads left nothing behind


async def test_vonage_archives_through_the_opentok_sdk(tmp_path: Path) -> None:
    env = {"PARLOIR_VONAGE_API_KEY": API_KEY, "PARLOIR_VONAGE_API_SECRET": API_SECRET}
    with running_server(tmp_path, **env) as server:
        ot = opentok.Client(API_KEY, API_SECRET, api_url=server.url)
        session = await asyncio.to_thread(ot.create_session, media_mode=opentok.MediaModes.routed)
        token = await asyncio.to_thread(ot.generate_token, session.session_id)
        client = ParloirClient(server.url, token=token, room=session.session_id)
        await client.connect()
        await client.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
        archive = await asyncio.to_thread(
            ot.start_archive, session.session_id, name="defence", resolution="640x480"
        )
        assert archive.status == "started" and archive.created_at.year >= 2026  # int ms parsed
        with pytest.raises(opentok.exceptions.ArchiveError):
            await asyncio.to_thread(ot.start_archive, session.session_id)
        await asyncio.sleep(3)
        stopped = await asyncio.to_thread(ot.stop_archive, archive.id)
        assert stopped.status == "available" and stopped.duration >= 2
        fetched = await asyncio.to_thread(ot.get_archive, archive.id)
        assert fetched.url
        data = await asyncio.to_thread(lambda: requests.get(fetched.url, timeout=10).content)
        assert probe(data)["video_codec"] == "h264"
        listing = await asyncio.to_thread(ot.list_archives, session_id=session.session_id)
        assert [a.id for a in listing.items] == [archive.id]
        with pytest.raises(opentok.exceptions.ArchiveError):
            await asyncio.to_thread(ot.stop_archive, archive.id)
        await asyncio.to_thread(ot.delete_archive, archive.id)
        with pytest.raises(opentok.exceptions.NotFoundError):
            await asyncio.to_thread(ot.get_archive, archive.id)
        await client.leave()


async def test_vonage_manual_stream_mode_layout_and_individual_archives(tmp_path: Path) -> None:
    from opentok.archives import OutputModes, StreamModes

    env = {"PARLOIR_VONAGE_API_KEY": API_KEY, "PARLOIR_VONAGE_API_SECRET": API_SECRET}
    with running_server(tmp_path, **env) as server:
        ot = opentok.Client(API_KEY, API_SECRET, api_url=server.url)
        sid = (
            await asyncio.to_thread(ot.create_session, media_mode=opentok.MediaModes.routed)
        ).session_id
        clients = []
        publications = []
        for name in ("ann", "ben"):
            token = await asyncio.to_thread(ot.generate_token, sid, data=f"name={name}")
            client = ParloirClient(server.url, token=token, room=sid)
            await client.connect()
            publications.append(
                await client.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
            )
            clients.append(client)
        # Manual stream mode: only the streams added explicitly are recorded.
        archive = await asyncio.to_thread(
            ot.start_archive,
            sid,
            output_mode=OutputModes.individual,
            stream_mode=StreamModes.manual,
        )
        await asyncio.to_thread(
            ot.add_archive_stream, archive.id, publications[0]["id"], has_audio=True, has_video=True
        )
        with pytest.raises(opentok.exceptions.OpenTokException):
            await asyncio.to_thread(ot.add_archive_stream, archive.id, "no-such-stream")
        with pytest.raises(opentok.exceptions.OpenTokException):  # not a layout type
            await asyncio.to_thread(ot.set_archive_layout, archive.id, "sideBySide")
        await asyncio.to_thread(ot.set_archive_layout, archive.id, "bestFit")
        await asyncio.sleep(2.5)
        await asyncio.to_thread(ot.remove_archive_stream, archive.id, publications[0]["id"])
        stopped = await asyncio.to_thread(ot.stop_archive, archive.id)
        assert stopped.status == "available" and stopped.output_mode.value == "individual"
        url = (await asyncio.to_thread(ot.get_archive, archive.id)).url
        data = await asyncio.to_thread(lambda: requests.get(url, timeout=10).content)
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            media_files = [n for n in bundle.namelist() if not n.endswith(".json")]
            described = json.loads(bundle.read(f"{archive.id}.json"))
        # ann's stream only (its audio and video in one file): ben's was never added.
        assert media_files == [f"{publications[0]['id']}.mkv"]
        (entry,) = described["files"]
        assert entry["streamId"] == publications[0]["id"]
        assert entry["connectionData"] == "name=ann" and entry["filename"] == media_files[0]
        for client in clients:
            await client.leave()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_links_handed_out_behind_a_proxy_start_with_the_public_url(
    tmp_path: Path, workers: str
) -> None:
    """With --workers 2 the archive is made and announced by a worker process: its links still
    name the public URL, not the worker's private loopback port."""
    public = "https://video.example.test"
    receiver = await WebhookReceiver().start()
    env = {
        "PARLOIR_WORKERS": workers,
        "PARLOIR_PUBLIC_URL": public + "/",
        "PARLOIR_VONAGE_API_KEY": API_KEY,
        "PARLOIR_VONAGE_API_SECRET": API_SECRET,
        "PARLOIR_VONAGE_CALLBACK_URL": receiver.url,
    }
    try:
        with running_server(tmp_path, **env) as server:
            async with aiohttp.ClientSession() as http:
                platform = Platform(http, server)
                session = await platform.call("POST", "/api/sessions", schedule(0), expect=201)
                link = await platform.call(
                    "POST", f"/api/sessions/{session['id']}/tokens", {"party": "mentor"}, 201
                )
                assert link["url"] == f"{public}/room/{session['room_id']}?token={link['token']}"
            ot = opentok.Client(API_KEY, API_SECRET, api_url=server.url)
            vonage = await asyncio.to_thread(
                ot.create_session, media_mode=opentok.MediaModes.routed
            )
            client = ParloirClient(
                server.url,
                token=await asyncio.to_thread(ot.generate_token, vonage.session_id),
                room=vonage.session_id,
            )
            await client.connect()
            await client.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
            archive = await asyncio.to_thread(ot.start_archive, vonage.session_id)
            await asyncio.sleep(2)
            await asyncio.to_thread(ot.stop_archive, archive.id)
            fetched = await asyncio.to_thread(ot.get_archive, archive.id)
            # The archive's url names the public host; behind the proxy its path is the server's.
            assert fetched.url.startswith(public + "/"), fetched.url
            path = fetched.url.removeprefix(public)
            data = await asyncio.to_thread(
                lambda: requests.get(server.url + path, timeout=10).content
            )
            assert probe(data)["video_codec"] == "h264"
            for _ in range(100):  # the outbox delivers the archive callbacks asynchronously
                if any(e.get("status") == "available" for e in receiver.received):
                    break
                await asyncio.sleep(0.1)  # noqa: ASYNC110 - polling another process's effect
            available = [e for e in receiver.received if e.get("status") == "available"]
            assert available and available[0]["url"].startswith(public + "/"), available
            await client.leave()
    finally:
        await receiver.stop()
