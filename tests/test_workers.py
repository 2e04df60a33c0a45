"""`parloir serve --workers 2`: rooms placed on worker processes, reached through one public port.

Real processes and real aiortc peers on loopback. What is pinned: two rooms land on two
different workers (the stored placement names the worker processes, children of the server),
both carry media end to end through the public port with the media itself going straight to
the owning worker's UDP sockets; SIGKILL of one worker ends only its rooms — the other room's
subscriber keeps decoding fresh frames — the server says so (ERROR line, metrics, readyz) and
closes the dead rooms' telemetry and fails their recordings (never the live worker's),
replaces the worker, and a new room is served afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.loadtest import LoadPlan, run_loadtest
from media.synthetic import PaintedVideoTrack, ToneAudioTrack
from server.edge import RoomSockets
from server.placement import RoomPlacements
from server.storage import Database
from signaling.client import ParloirClient, ServerError
from signaling.permissions import Role
from tests.support.media_checks import assert_painted_sequence, painted_indices
from tests.support.server_process import ServerProcess, running_server


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path, PARLOIR_WORKERS="2", PARLOIR_ROOM_GRACE_S="60") as process:
        yield process
        assert process.alive(), f"server died during the test:\n{process.log()}"


class CallRoom:
    """One publisher and one subscriber in a room, joined through the public port."""

    def __init__(self, server: ServerProcess, room: str) -> None:
        self.room = room
        self.publisher = ParloirClient(
            server.url, token=server.token(room, f"{room}-pub"), room=room
        )
        self.subscriber = ParloirClient(
            server.url, token=server.token(room, f"{room}-sub", Role.SUBSCRIBER), room=room
        )
        self.publication: dict[str, object] = {}

    async def start(self) -> None:
        await self.publisher.connect()
        self.publication = await self.publisher.publish(
            audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 30)
        )
        await self.subscriber.connect()

    async def video_indices(self, frames: int) -> list[int | None]:
        received = await self.subscriber.wait_for_track(str(self.publication["id"]), "video")
        return await painted_indices(received.track, frames)

    async def close(self) -> None:
        for client in (self.subscriber, self.publisher):
            try:
                await asyncio.wait_for(client.leave(), 5)
            except Exception:
                await client.close()


async def _get_json(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body: dict[str, object] = await response.json()
        body["_status"] = response.status
        return body


async def _metric(url: str, name: str) -> dict[str, float]:
    """worker label -> value of one sample name."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        text = await response.text()
    return {
        sample.labels.get("worker", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def _api(server: ServerProcess, method: str, path: str, body: object = None) -> dict:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, json=body, headers=headers) as response,
    ):
        payload: dict = await response.json()
        assert response.status < 300, (response.status, payload)
        return payload


def _placements(server: ServerProcess) -> dict[str, tuple[int, int]]:
    with sqlite3.connect(server.data_dir / "parloir.sqlite3") as db:
        rows = db.execute("SELECT room_id, worker, worker_pid FROM room_placements").fetchall()
    return {room: (worker, pid) for room, worker, pid in rows}


def _udp_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="udp") if c.laddr}


def _candidate_ports(sdp: str) -> set[int]:
    return {int(m[1]) for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+)", sdp)}


async def test_two_rooms_land_on_two_workers_and_both_carry_media_through_the_public_port(
    two_workers: ServerProcess,
) -> None:
    rooms = [CallRoom(two_workers, "lecture-a"), CallRoom(two_workers, "lecture-b")]
    try:
        for room in rooms:
            await room.start()
        for indices in await asyncio.gather(*(room.video_indices(45) for room in rooms)):
            assert_painted_sequence(indices)

        placements = _placements(two_workers)
        assert set(placements) == {"lecture-a", "lecture-b"}
        (worker_a, pid_a), (worker_b, pid_b) = placements["lecture-a"], placements["lecture-b"]
        assert worker_a != worker_b and pid_a != pid_b
        children = {p.pid for p in psutil.Process(two_workers.process.pid).children()}
        assert {pid_a, pid_b} <= children, "placements name the server's worker processes"
        health = await _get_json(two_workers.url + "/healthz")
        assert {w["worker"]: w["pid"] for w in health["workers"]} == {  # type: ignore[attr-defined]
            worker_a: pid_a,
            worker_b: pid_b,
        }
        # Media does not cross the edge: the SFU's candidates are the owning worker's sockets.
        for room, pid in zip(rooms, (pid_a, pid_b), strict=True):
            remote = room.subscriber.subscriber_pc.remoteDescription
            assert _candidate_ports(remote.sdp) & _udp_ports(pid)
        rooms_by_worker = await _metric(two_workers.url, "parloir_rooms")
        assert rooms_by_worker[str(worker_a)] == 1 and rooms_by_worker[str(worker_b)] == 1
    finally:
        await asyncio.gather(*(room.close() for room in rooms))


async def test_killing_one_worker_ends_only_its_rooms_and_the_server_reports_and_replaces_it(
    two_workers: ServerProcess,
) -> None:
    doomed, survivor = CallRoom(two_workers, "defence-a"), CallRoom(two_workers, "defence-b")
    late: CallRoom | None = None
    try:
        for room in (doomed, survivor):
            await room.start()
        await asyncio.gather(doomed.video_indices(15), survivor.video_indices(15))
        placements = _placements(two_workers)
        doomed_worker, doomed_pid = placements["defence-a"]
        assert placements["defence-b"][0] != doomed_worker
        # Both rooms are recorded, through the edge to their workers.
        recordings = {
            room.room: await _api(
                two_workers,
                "POST",
                f"/api/rooms/{room.room}/recordings",
                {"output_mode": "individual"},
            )
            for room in (doomed, survivor)
        }
        await asyncio.sleep(2)

        os.kill(doomed_pid, signal.SIGKILL)
        statuses = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ready = await _get_json(two_workers.url + "/readyz")
            statuses.append(ready["status"])
            if ready["status"] == "degraded":
                assert ready["_status"] == 200, "the other worker still serves"
                break
            await asyncio.sleep(0.05)
        assert "degraded" in statuses

        # The surviving room's subscriber keeps getting fresh, in-order frames.
        before = max(i for i in await survivor.video_indices(5) if i is not None)
        after = await survivor.video_indices(60)
        assert_painted_sequence(after)
        assert min(i for i in after if i is not None) > before

        closed = await doomed.subscriber.wait_for_type("socket-closed", timeout=10)
        assert closed["code"] == 1011
        assert not [m for m in survivor.subscriber.events.messages if m["type"] == "socket-closed"]

        exits = await _metric(two_workers.url, "parloir_worker_exits_total")
        assert exits[str(doomed_worker)] == 1.0 and sum(exits.values()) == 1.0
        log = two_workers.log()
        assert re.search(
            rf"ERROR server\.supervisor: worker {doomed_worker} \(pid {doomed_pid}\) died "
            r"\(killed by SIGKILL\): its 1 room\(s\) ended: defence-a",
            log,
        ), log

        # Replaced; the dead room's calls are closed in the record, the live room's are not.
        deadline = time.monotonic() + 30
        while (ready := await _get_json(two_workers.url + "/readyz"))["status"] != "ok":
            assert time.monotonic() < deadline, ready
            await asyncio.sleep(0.2)
        pids = {w["worker"]: w["pid"] for w in ready["workers"]}  # type: ignore[attr-defined]
        assert pids[doomed_worker] not in (doomed_pid, None)
        assert set(_placements(two_workers)) == {"defence-b"}
        with sqlite3.connect(two_workers.data_dir / "parloir.sqlite3") as db:
            left = db.execute(
                "SELECT room_id, identity FROM telemetry_events WHERE kind = 'call_left'"
                " AND json_extract(data, '$.reason') = 'serverStopped'"
            ).fetchall()
        assert sorted(left) == [("defence-a", "defence-a-pub"), ("defence-a", "defence-a-sub")]
        # The dead room's recording is failed (playable up to the kill); the live one's is not
        # touched, and finishes normally.
        lost = await _api(two_workers, "GET", f"/api/recordings/{recordings['defence-a']['id']}")
        assert lost["status"] == "failed" and lost["duration_s"] > 1.0, lost
        kept = recordings["defence-b"]["id"]
        assert (await _api(two_workers, "GET", f"/api/recordings/{kept}"))["status"] == "started"
        await _api(two_workers, "POST", f"/api/recordings/{kept}/stop")
        deadline = time.monotonic() + 20
        while (row := await _api(two_workers, "GET", f"/api/recordings/{kept}"))["status"] in (
            "started",
            "stopped",
        ):
            assert time.monotonic() < deadline, row
            await asyncio.sleep(0.2)
        assert row["status"] == "available" and row["duration_s"] > 2.0, row

        late = CallRoom(two_workers, "defence-c")
        await late.start()
        assert_painted_sequence(await late.video_indices(30))
        assert "defence-c" in _placements(two_workers)
        assert_painted_sequence(await survivor.video_indices(30))
    finally:
        await asyncio.gather(
            *(room.close() for room in (doomed, survivor, late) if room is not None)
        )


async def test_a_join_with_a_bad_token_places_no_room(two_workers: ServerProcess) -> None:
    forged = ParloirClient(
        two_workers.url, token=two_workers.token("someone-elses-room", "mallory"), room="vault"
    )
    with pytest.raises(ServerError, match="another room"):
        await forged.connect()
    await forged.close()
    assert _placements(two_workers) == {}


async def test_a_room_without_sockets_for_longer_than_the_graces_loses_its_placement(
    tmp_path: Path,
) -> None:
    database = await Database.open(tmp_path / "db.sqlite3")
    try:
        placements = RoomPlacements(database)
        await placements.load()
        sockets = RoomSockets(placements, linger_s=0.2)
        await placements.place("seminar", lambda: (1, 4242))
        sockets.opened("seminar")
        sockets.opened("seminar")
        sockets.closed("seminar")
        await asyncio.sleep(0.3)
        assert placements.owner("seminar") is not None, "a socket is still open"
        sockets.closed("seminar")
        sockets.opened("seminar")  # back within the linger: kept
        sockets.closed("seminar")
        await asyncio.sleep(0.1)
        assert placements.owner("seminar") is not None
        await asyncio.sleep(0.3)
        assert placements.owner("seminar") is None
        async with database.connection.execute("SELECT COUNT(*) FROM room_placements") as cursor:
            assert (await cursor.fetchone())[0] == 0
    finally:
        await database.close()


async def test_the_load_generator_sees_full_media_and_no_cross_room_frames_across_two_workers(
    two_workers: ServerProcess, tmp_path: Path
) -> None:
    figures = await run_loadtest(
        LoadPlan(
            url=two_workers.url,
            secret=two_workers.secret,
            rooms=2,
            participants=3,
            seconds=5.0,
            warmup_s=2.0,
            json_path=tmp_path / "loadtest.json",
        ),
        out=None,
        progress=None,
        live=None,
    )
    (step,) = figures["steps"]
    assert figures["join_success_rate"] == 1.0 and figures["content_ok"] is True, figures
    assert step["loss_pct"] < 1.0 and step["fps_min"] >= 25.0, step
    assert step["server_cpu_cores"] is not None, "CPU summed over the worker-labelled metrics"
    workers = {worker for worker, _ in _placements(two_workers).values()}
    assert workers == {0, 1}, "the two rooms were served by the two workers"


async def _raw_exchange(ws: aiohttp.ClientWebSocketResponse, message: dict) -> dict:
    await ws.send_json(message)
    while True:
        frame = await asyncio.wait_for(ws.receive(), 10)
        assert frame.type == aiohttp.WSMsgType.TEXT, (frame.type, ws.close_code)
        reply: dict = frame.json()
        if reply.get("id") == message.get("id"):
            return reply


async def test_a_join_after_a_refused_one_on_the_same_socket_keeps_each_room_on_one_worker(
    two_workers: ServerProcess,
) -> None:
    host = ParloirClient(
        two_workers.url, token=two_workers.token("seminar", "host"), room="seminar"
    )
    await host.connect()
    try:
        seminar_worker = _placements(two_workers)["seminar"][0]
        await asyncio.sleep(1.5)  # the edge has polled the workers: the other one is less busy
        async with aiohttp.ClientSession() as session:
            # A first message that joins nothing: the socket reaches the less busy worker.
            async with session.ws_connect(two_workers.ws_url) as ws:
                refused = await _raw_exchange(ws, {"type": "join", "room": "seminar", "id": 1})
                assert refused["code"] == "invalid-message"
                token = two_workers.token("seminar", "late")
                await ws.send_json({"type": "join", "room": "seminar", "token": token, "id": 2})
                closing = await asyncio.wait_for(ws.receive(), 10)
                assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1013
            assert list(_placements(two_workers)) == ["seminar"], "nothing placed by it"
            # The same with a room nobody holds: it is placed on that socket's worker, where
            # the next participant finds it.
            async with session.ws_connect(two_workers.ws_url) as ws:
                await _raw_exchange(ws, {"type": "join", "room": "workshop", "id": 1})
                token = two_workers.token("workshop", "first")
                joined = await _raw_exchange(
                    ws, {"type": "join", "room": "workshop", "token": token, "id": 2}
                )
                assert joined["type"] == "joined"
                assert _placements(two_workers)["workshop"][0] != seminar_worker
                second = ParloirClient(
                    two_workers.url, token=two_workers.token("workshop", "second"), room="workshop"
                )
                joined = await second.connect()
                await second.close()
                assert [p["identity"] for p in joined["participants"]] == ["first"]
    finally:
        await host.close()
