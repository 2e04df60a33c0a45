"""`parloir loadtest` end to end, small: real worker processes against a real server.

What is pinned: two rooms of three participants all join and get each other's media at the
source's frame rate without loss (loopback, a light load), the JSON carries those figures, and
the content check is not decorative: a server that sends one room another room's media
(Room._subscribe monkeypatched in an in-process server) is caught by the sampled participant.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from bench.loadtest import LoadPlan, run_loadtest
from bench.server_probe import ServerProbe, parse_process_metrics
from signaling.participant import Participant
from signaling.publication import Publication
from signaling.room import Room
from tests.conftest import InProcessServer
from tests.support.server_process import ServerProcess


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


async def test_two_rooms_of_three_all_join_and_receive_each_other_at_full_frame_rate(
    server: ServerProcess, tmp_path: Path
) -> None:
    before = _children()
    printed = io.StringIO()
    json_path = tmp_path / "loadtest.json"

    await run_loadtest(
        LoadPlan(
            url=server.url,
            secret=server.secret,
            rooms=2,
            participants=3,
            seconds=6.0,
            warmup_s=2.0,
            fps=30,
            json_path=json_path,
        ),
        out=printed,
        progress=None,
        live=None,
    )

    figures = json.loads(json_path.read_text())
    assert figures["errors"] == []
    assert figures["join_success_rate"] == 1.0
    assert len(figures["joins"]) == 6 and all(j["complete"] for j in figures["joins"])
    (step,) = figures["steps"]
    assert step["participants"] == 6 and step["complete"] == 6
    assert step["subscriptions"] == 6 * 2, "each participant receives the two others"
    assert step["loss_pct"] < 1.0
    assert step["fps_min"] >= 25.0
    assert step["received_kbps_median"] > 100
    assert 0 < figures["first_frame_s_p50"] <= figures["first_frame_s_p95"]
    assert figures["server_metrics"] != "" and step["server_cpu_cores"] is not None
    assert figures["content_ok"] is True
    assert {c["room_index"] for c in figures["content"]} == {0, 1}
    assert all(c["frames_decoded"] > 0 and c["wrong_room"] == 0 for c in figures["content"])
    assert figures["ok"] is True
    assert "content: OK" in printed.getvalue()
    assert _children() - before == set(), "the load test left child processes running"


def _send_room_zeros_media_to_room_one(
    monkeypatch: pytest.MonkeyPatch, server: InProcessServer
) -> None:
    """A routing bug: room 1's subscribers get the same slot's publication of room 0,
    signalled as room 1's (publication and participant ids unchanged)."""
    original = Room._subscribe

    def misrouted(self: Room, subscriber: Participant, publication: Publication) -> None:
        partner = server.registry.rooms.get(self.id.removesuffix("room1") + "room0")
        owner = self.participants.get(publication.participant_id)
        if self.id.endswith("room1") and partner is not None and owner is not None:
            slot = owner.identity.rsplit("-p", 1)[1]
            for other in partner.participants.values():
                if other.identity.endswith(f"-p{slot}") and other.publications:
                    substitute = next(iter(other.publications.values()))
                    publication = dataclasses.replace(publication, sources=substitute.sources)
                    break
        original(self, subscriber, publication)

    monkeypatch.setattr(Room, "_subscribe", misrouted)


async def test_a_room_sent_another_rooms_media_fails_the_content_check(
    inprocess_server: InProcessServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The ramp brings room 0 up completely before room 1 joins, so every subscription in
    # room 1 finds its room-0 counterpart live.
    _send_room_zeros_media_to_room_one(monkeypatch, inprocess_server)
    printed = io.StringIO()

    figures = await run_loadtest(
        LoadPlan(
            url=inprocess_server.url,
            secret=inprocess_server.settings.secret,
            rooms=2,
            participants=2,
            seconds=2.0,
            warmup_s=0.5,
            ramp=True,
            processes=1,
            json_path=tmp_path / "misrouted.json",
            chart_path=tmp_path / "misrouted.png",
        ),
        out=printed,
        progress=None,
        live=None,
    )

    checks = {c["room_index"]: c for c in figures["content"]}
    assert checks[0]["ok"] is True, checks[0]
    assert checks[1]["ok"] is False
    readable = checks[1]["frames_decoded"] - checks[1]["unreadable"]
    assert readable > 0
    assert checks[1]["wrong_room"] == readable, "every frame room 1 got was room 0's"
    assert checks[1]["rooms_seen"] == [0]
    assert checks[1]["wrong_publisher"] == 0, "the same slot's media, only the room is wrong"
    assert figures["content_ok"] is False and figures["ok"] is False
    assert "room 1 BAD" in printed.getvalue()
    assert [s["participants"] for s in figures["steps"]] == [2, 4]
    assert (tmp_path / "misrouted.png").stat().st_size > 0


def test_process_cpu_and_memory_are_read_from_prometheus_text() -> None:
    text = (
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total 12.5\n"
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes 1.2345e+08\n"
    )
    assert parse_process_metrics(text) == (12.5, 1.2345e08)
    assert parse_process_metrics("other_metric 1\n") == (None, None)


def test_a_multi_worker_servers_cpu_and_memory_are_summed_over_its_processes() -> None:
    text = (
        "# TYPE process_cpu_seconds_total counter\n"
        'process_cpu_seconds_total{worker="0"} 10.0\n'
        'process_cpu_seconds_total{worker="1"} 7.5\n'
        'process_cpu_seconds_total{worker="edge"} 1.0\n'
        "# TYPE process_resident_memory_bytes gauge\n"
        'process_resident_memory_bytes{worker="0"} 100\n'
        'process_resident_memory_bytes{worker="1"} 150\n'
        'process_resident_memory_bytes{worker="edge"} 50\n'
    )
    assert parse_process_metrics(text) == (18.5, 300.0)


async def test_a_local_server_without_metrics_is_read_through_psutil() -> None:
    app = web.Application()  # no /metrics: 404
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        probe = await ServerProbe.discover(f"http://127.0.0.1:{port}")
        sample = await probe.sample()
    finally:
        await runner.cleanup()
    assert probe.pid == os.getpid(), probe.source
    assert "psutil" in probe.source and "answered 404" in probe.source
    assert sample.cpu_seconds is not None and sample.cpu_seconds > 0
    assert sample.rss_bytes is not None and sample.rss_bytes > 0


async def test_a_remote_server_without_metrics_is_reported_unavailable() -> None:
    probe = await ServerProbe.discover("http://192.0.2.1:9")  # TEST-NET-1: never answers
    assert not probe.available
    assert probe.source.startswith("unavailable")
    assert (await probe.sample()).cpu_seconds is None
