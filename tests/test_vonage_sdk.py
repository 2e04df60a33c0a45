"""The official opentok 3.15 and vonage-video 1.6.1 SDKs pointed at a running Parloir."""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import av
import jwt
import opentok
import pytest
import requests
from vonage_http_client import Auth, HttpClient, HttpClientOptions
from vonage_video import Video
from vonage_video.models import (
    CreateArchiveRequest,
    ListArchivesFilter,
    SessionOptions,
    SignalData,
    TokenOptions,
)

from media.synthetic import PaintedVideoTrack, ToneAudioTrack
from signaling.client import ParloirClient
from tests.support.server_process import ServerProcess, running_server
from tests.support.vonage_fixtures import (
    API_KEY,
    API_SECRET,
    APPLICATION_ID,
    SIGNATURE_SECRET,
    KeyFiles,
    WebhookReceiver,
    make_keys,
)

T = TypeVar("T")


async def sdk(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """The SDKs block: run them off the loop that hosts the webhook receiver and the peers."""
    return await asyncio.to_thread(call, *args, **kwargs)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = await WebhookReceiver(fail_first=1).start()
    yield hook
    await hook.stop()


@pytest.fixture
def keys(tmp_path: Path) -> KeyFiles:
    return make_keys(tmp_path)


def vonage_env(keys: KeyFiles, receiver: WebhookReceiver) -> dict[str, str]:
    return {
        "PARLOIR_VONAGE_API_KEY": API_KEY,
        "PARLOIR_VONAGE_API_SECRET": API_SECRET,
        "PARLOIR_VONAGE_APPLICATION_ID": APPLICATION_ID,
        "PARLOIR_VONAGE_PUBLIC_KEY_FILE": str(keys.public_key_path),
        "PARLOIR_VONAGE_CALLBACK_URL": receiver.url,
        "PARLOIR_VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET,
    }


@pytest.fixture
def vonage_server(tmp_path: Path, keys: KeyFiles, receiver: WebhookReceiver):
    with running_server(tmp_path, **vonage_env(keys, receiver)) as server:
        yield server


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


async def test_opentok_sdk_drives_a_session_end_to_end(
    vonage_server: ServerProcess, receiver: WebhookReceiver
) -> None:
    ot = opentok.Client(API_KEY, API_SECRET, api_url=vonage_server.url)
    session = await sdk(ot.create_session, media_mode=opentok.MediaModes.routed)
    sid = session.session_id
    token = await sdk(
        ot.generate_token,
        sid,
        role=opentok.Roles.publisher,
        data="name=Ann",
        initial_layout_class_list=["focus"],
    )
    legacy = await sdk(ot.generate_token, sid, role=opentok.Roles.subscriber, use_jwt=False)
    assert legacy.startswith("T1==")

    ann = ParloirClient(vonage_server.url, token=token, room=sid)
    viewer = ParloirClient(vonage_server.url, token=legacy, room=sid)
    joined = await ann.connect()
    assert joined["participant"]["data"] == "name=Ann" and joined["participant"]["name"] == "Ann"
    await viewer.connect()
    publication = await ann.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
    await viewer.wait_for_track(publication["id"], "video")

    streams = await sdk(ot.list_streams, sid)
    assert [(s.id, s.videoType) for s in streams.items] == [(publication["id"], "camera")]
    stream = await sdk(ot.get_stream, sid, publication["id"])
    assert stream.name == "Ann"
    await sdk(
        ot.set_stream_class_lists, sid, [{"id": publication["id"], "layoutClassList": ["full"]}]
    )
    assert (await sdk(ot.get_stream, sid, publication["id"])).layoutClassList == ["full"]

    await sdk(ot.send_signal, sid, {"type": "note", "data": "hello from the platform"})
    signal = await viewer.wait_for(lambda m: m["type"] == "chat" and m["topic"] == "note")
    assert signal["text"] == "hello from the platform" and signal["from"]["id"] is None
    await sdk(ot.send_signal, sid, {"type": "private", "data": "just you"}, viewer.participant_id)
    await viewer.wait_for(lambda m: m["type"] == "chat" and m["topic"] == "private")
    assert not [m for m in ann.chat_messages() if m["topic"] == "private"]

    await sdk(ot.mute_stream, sid, publication["id"])
    forced = await ann.wait_for(lambda m: m["type"] == "mute-changed" and m.get("forced"))
    assert forced["kind"] == "audio" and forced["muted"] is True
    await sdk(ot.mute_all, sid, [publication["id"]])
    await sdk(ot.disable_force_mute, sid)

    with pytest.raises(opentok.exceptions.OpenTokException):
        await sdk(ot.start_broadcast, sid, {"outputs": {"hls": {}}})
    with pytest.raises(opentok.exceptions.OpenTokException):
        await sdk(ot.send_signal, sid, {"type": "x" * 129, "data": "too long a type"})

    await sdk(ot.force_disconnect, sid, viewer.participant_id)
    left = await viewer.wait_for(lambda m: m["type"] == "left")
    assert left["reason"] == "forceDisconnected"
    assert (await viewer.wait_for_type("socket-closed"))["code"] == 4403
    await viewer.close()
    await ann.leave()

    expected = [
        ("connectionCreated", None),
        ("connectionCreated", None),
        ("streamCreated", None),
        ("connectionDestroyed", "forceDisconnected"),
        ("streamDestroyed", "clientDisconnected"),
        ("connectionDestroyed", "clientDisconnected"),
    ]
    await wait_until(lambda: len(receiver.events(sid)) >= len(expected), timeout=15)
    assert receiver.events(sid) == expected
    assert receiver.attempts == len(expected) + 1  # the first delivery got a 500 and was retried
    assert all(receiver.signatures_ok)


async def test_kill_9_mid_call_gets_the_lost_streams_and_connections_destroyed_once_on_restart(
    tmp_path: Path, keys: KeyFiles, receiver: WebhookReceiver
) -> None:
    env = vonage_env(keys, receiver)
    with running_server(tmp_path, **env) as server:
        ot = opentok.Client(API_KEY, API_SECRET, api_url=server.url)
        sid = (await sdk(ot.create_session, media_mode=opentok.MediaModes.routed)).session_id
        ann = ParloirClient(
            server.url, token=await sdk(ot.generate_token, sid, data="name=Ann"), room=sid
        )
        viewer = ParloirClient(
            server.url,
            token=await sdk(ot.generate_token, sid, role=opentok.Roles.subscriber, data="v=1"),
            room=sid,
        )
        await ann.connect()
        await viewer.connect()
        publication = await ann.publish(
            audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15)
        )
        await viewer.wait_for_track(publication["id"], "video")
        await wait_until(lambda: len(receiver.events(sid)) >= 3, timeout=15)
        await asyncio.sleep(0.5)  # the telemetry of the joins and the publish is written
        server.process.kill()  # SIGKILL mid-call: nobody left, nothing unpublished
        server.process.wait()
        await ann.close()
        await viewer.close()

    def sent(event: str) -> list[dict[str, Any]]:
        return [e for e in receiver.received if e["sessionId"] == sid and e["event"] == event]

    created = {c["connection"]["id"]: c["connection"] for c in sent("connectionCreated")}
    assert set(created) == {ann.participant_id, viewer.participant_id}
    [stream] = [e["stream"] for e in sent("streamCreated")]
    assert stream["id"] == publication["id"]

    with running_server(tmp_path, **env):
        await wait_until(lambda: len(receiver.events(sid)) >= 6, timeout=15)
    with running_server(tmp_path, **env):  # a second restart announces nothing again
        await asyncio.sleep(1.5)

    assert receiver.events(sid)[3:] == [
        ("streamDestroyed", "networkDisconnected"),
        ("connectionDestroyed", "networkDisconnected"),
        ("connectionDestroyed", "networkDisconnected"),
    ]
    assert [e["stream"] for e in sent("streamDestroyed")] == [stream]
    destroyed = [e["connection"] for e in sent("connectionDestroyed")]
    assert sorted(destroyed, key=lambda c: c["id"]) == sorted(
        created.values(), key=lambda c: c["id"]
    )
    assert stream["connection"] == created[ann.participant_id]
    assert all(receiver.signatures_ok)


def decode_every_frame(data: bytes) -> dict[str, tuple[str, int, float, float]]:
    """kind -> (codec, frames, first, end seconds) of a stream file; any decoding error fails.

    Each kind is read from the start on its own (a seek back lands on a video keyframe and
    would skip the audio before it)."""
    found = {}
    for kind in ("audio", "video"):
        with av.open(io.BytesIO(data)) as container:
            streams = [s for s in container.streams if s.type == kind]
            if not streams:
                continue
            frames = list(container.decode(streams[0]))
            last = frames[-1]
            length = last.samples / last.sample_rate if kind == "audio" else 1 / 15
            found[kind] = (
                streams[0].codec_context.name,
                len(frames),
                float(frames[0].time),
                last.time + length,
            )
    return found


@pytest.mark.parametrize(
    ("codec", "extension"), [("h264", "mkv"), ("vp8", "webm")], ids=["h264", "vp8"]
)
async def test_opentok_individual_archive_is_a_zip_of_one_file_per_stream_and_its_json(
    vonage_server: ServerProcess, codec: str, extension: str
) -> None:
    """The layout an app written against Vonage post-processes: `<streamId>.webm` (VP8) or
    `.mkv` (H.264), each with the stream's audio and video, and `<archiveId>.json`."""
    from opentok.archives import OutputModes

    ot = opentok.Client(API_KEY, API_SECRET, api_url=vonage_server.url)
    sid = (await sdk(ot.create_session, media_mode=opentok.MediaModes.routed)).session_id
    clients, publications = [], []
    for name in ("Ann", "Ben"):
        token = await sdk(ot.generate_token, sid, data=f"name={name}&seat=4")
        client = ParloirClient(vonage_server.url, token=token, room=sid)
        await client.connect()
        clients.append(client)
        publications.append(
            await client.publish(
                audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15), video_codec=codec
            )
        )
    try:
        archive = await sdk(ot.start_archive, sid, name="viva", output_mode=OutputModes.individual)
        await asyncio.sleep(4)
        stopped = await sdk(ot.stop_archive, archive.id)
        assert stopped.status == "available" and stopped.output_mode.value == "individual"
        url = (await sdk(ot.get_archive, archive.id)).url
        data = await sdk(lambda: requests.get(url, timeout=10).content)
    finally:
        for client in clients:
            await client.leave()

    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        sizes = {i.filename: i.file_size for i in bundle.infolist()}
        described = json.loads(bundle.read(f"{archive.id}.json"))
        contents = {n: bundle.read(n) for n in sizes if not n.endswith(".json")}
    stream_ids = [p["id"] for p in publications]
    assert sorted(sizes) == sorted(
        [f"{archive.id}.json", *(f"{i}.{extension}" for i in stream_ids)]
    )
    assert {k: v for k, v in described.items() if k != "files"} == {
        "createdAt": described["createdAt"],
        "id": archive.id,
        "name": "viva",
        "sessionId": sid,
    }
    assert described["createdAt"] // 1000 == int(archive.created_at.timestamp())
    assert sorted(f["streamId"] for f in described["files"]) == sorted(stream_ids)
    for entry in described["files"]:
        assert set(entry) == {
            "connectionData",
            "filename",
            "size",
            "startTimeOffset",
            "stopTimeOffset",
            "streamId",
        }
        assert entry["filename"] == f"{entry['streamId']}.{extension}"
        assert entry["size"] == sizes[entry["filename"]]
        name = "Ann" if entry["streamId"] == stream_ids[0] else "Ben"
        assert entry["connectionData"] == f"name={name}&seat=4"
        start, stop = entry["startTimeOffset"] / 1000, entry["stopTimeOffset"] / 1000
        assert 0 <= start < 1.0 and abs(stop - stopped.duration) <= 1.5, (entry, stopped.duration)
        played = decode_every_frame(contents[entry["filename"]])
        assert sorted(played) == ["audio", "video"]
        assert played["video"][0] == codec and played["audio"][0] == "opus"
        assert played["video"][1] > 3 * 15 and played["audio"][1] > 3 * 50  # 15 fps, 20 ms
        # The file's time 0 is startTimeOffset: its last frame ends at stopTimeOffset.
        end = max(p[3] for p in played.values())
        assert abs(start + end - stop) < 0.1, (entry, end)
        assert min(p[2] for p in played.values()) < 0.05, (entry, played)


async def test_bad_credentials_get_403_with_a_message(vonage_server: ServerProcess) -> None:
    wrong = opentok.Client(API_KEY, "not-the-secret-" + "x" * 25, api_url=vonage_server.url)
    with pytest.raises(opentok.exceptions.RequestError):
        await sdk(wrong.create_session)  # create_session wraps AuthError in RequestError
    good = opentok.Client(API_KEY, API_SECRET, api_url=vonage_server.url)
    sid = (await sdk(good.create_session)).session_id
    with pytest.raises(opentok.exceptions.AuthError):
        await sdk(wrong.force_disconnect, sid, "nope")
    expired = jwt.encode(
        {"iss": API_KEY, "ist": "project", "iat": 0, "exp": 10, "jti": "1"},
        API_SECRET,
        algorithm="HS256",
    )
    other_project = jwt.encode(
        {"iss": "999", "ist": "project", "iat": int(time.time()), "exp": int(time.time()) + 60},
        API_SECRET,
        algorithm="HS256",
    )
    for token in (expired, other_project, "garbage"):
        response = await sdk(
            requests.get,
            f"{vonage_server.url}/v2/project/{API_KEY}/session/{sid}/stream",
            headers={"X-OPENTOK-AUTH": token},
            timeout=5,
        )
        assert response.status_code == 403 and response.json()["message"]
    token = jwt.encode(
        {"iss": API_KEY, "ist": "project", "iat": int(time.time()), "exp": int(time.time()) + 60},
        API_SECRET,
        algorithm="HS256",
    )
    response = await sdk(
        requests.post,
        f"{vonage_server.url}/v2/project/{API_KEY}/session/{sid}/signal",
        data="{not json",
        headers={"X-OPENTOK-AUTH": token},
        timeout=5,
    )
    assert response.status_code == 400 and "JSON" in response.json()["message"]
    response = await sdk(
        requests.get,
        f"{vonage_server.url}/v2/project/{API_KEY}/session/{sid}/stream",
        headers={"X-OPENTOK-AUTH": token},
        timeout=5,
    )
    assert response.status_code == 200 and response.json() == {"count": 0, "items": []}
    response = await sdk(
        requests.post,
        f"{vonage_server.url}/session/create",
        data="e2ee=true&archiveMode=always",
        headers={"X-OPENTOK-AUTH": token, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400


async def test_vonage_video_sdk_over_https(
    tmp_path: Path, keys: KeyFiles, receiver: WebhookReceiver
) -> None:
    env = {
        **vonage_env(keys, receiver),
        "PARLOIR_TLS_CERT": str(keys.cert_path),
        "PARLOIR_TLS_KEY": str(keys.cert_key_path),
    }
    with running_server(tmp_path, **env) as server:
        assert server.url.startswith("https://")
        host = server.url.removeprefix("https://")
        client = HttpClient(
            Auth(application_id=APPLICATION_ID, private_key=keys.private_key_pem),
            HttpClientOptions(video_host=host),
        )
        # Trust the test certificate; trust_env off, or REQUESTS_CA_BUNDLE would override it.
        client._session.trust_env = False
        client._session.verify = str(keys.cert_path)
        video = Video(client)
        session = await sdk(video.create_session, SessionOptions(media_mode="routed"))
        token = await sdk(
            video.generate_client_token,
            TokenOptions(
                session_id=session.session_id,
                role="moderator",
                connection_data="name=Jury",
                initial_layout_class_list=["focus", "full"],
            ),
        )
        token = token.decode() if isinstance(token, bytes) else token
        tls = ssl.create_default_context(cafile=str(keys.cert_path))
        jury = ParloirClient(server.url, token=token, room=session.session_id, ssl=tls)
        joined = await jury.connect()
        assert (
            joined["participant"]["role"] == "moderator" and joined["participant"]["name"] == "Jury"
        )
        publication = await jury.publish(
            audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15)
        )
        streams = await sdk(video.list_streams, session.session_id)
        assert [s.id for s in streams] == [publication["id"]]
        assert streams[0].video_type == "camera"
        assert streams[0].layout_class_list == ["focus", "full"]
        start = len(jury.events.messages)
        await sdk(video.mute_all_streams, session.session_id)
        await jury.wait_for(lambda m: m["type"] == "mute-changed" and m.get("forced"), start=start)
        await sdk(video.disable_mute_all_streams, session.session_id)
        await sdk(video.send_signal, session.session_id, SignalData(type="note", data="hi"))
        # Archives: vonage-video validates status, resolution and outputMode against strict enums.
        archive = await sdk(
            video.start_archive,
            CreateArchiveRequest(session_id=session.session_id, name="jury", resolution="640x480"),
        )
        assert archive.status == "started" and archive.output_mode == "composed"
        await asyncio.sleep(2)
        stopped = await sdk(video.stop_archive, archive.id)
        assert stopped.status == "available" and stopped.duration >= 1 and stopped.url
        archives, count, _ = await sdk(
            video.list_archives, ListArchivesFilter(session_id=session.session_id)
        )
        assert count == 1 and archives[0].id == archive.id
        await sdk(video.delete_archive, archive.id)
        await jury.wait_for(lambda m: m["type"] == "chat" and m["topic"] == "note")
        await sdk(video.disconnect_client, session.session_id, jury.participant_id)
        assert (await jury.wait_for_type("left"))["reason"] == "forceDisconnected"
        await jury.wait_for_type("socket-closed")  # over TLS the close code is not always seen
        await jury.close()
