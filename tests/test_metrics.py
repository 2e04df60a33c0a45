"""/metrics parses with prometheus_client's parser and moves with traffic; health and readiness."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from media.synthetic import PaintedVideoTrack
from signaling.client import ParloirClient
from signaling.permissions import Role
from tests.support.server_process import ServerProcess


async def scrape(http: aiohttp.ClientSession, server: ServerProcess) -> dict[str, float]:
    async with http.get(f"{server.url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_metrics_follow_rooms_media_and_errors(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        before = await scrape(http, server)
        assert before["parloir_rooms"] == 0 and before["parloir_participants"] == 0
        assert before["process_resident_memory_bytes"] > 10e6
        publisher = ParloirClient(server.url, token=server.token("m", "pub"), room="m")
        viewer = ParloirClient(server.url, token=server.token("m", "v", Role.SUBSCRIBER), room="m")
        await publisher.connect()
        await viewer.connect()
        publication = await publisher.publish(video=PaintedVideoTrack(320, 240, 30))
        await asyncio.wait_for(
            (await viewer.wait_for_track(publication["id"], "video")).track.recv(), 5
        )
        await viewer.send_raw("{not json")
        await viewer.wait_for(lambda m: m["type"] == "error")
        await asyncio.sleep(1.0)
        during = await scrape(http, server)
        assert during["parloir_rooms"] == 1 and during["parloir_participants"] == 2
        assert during["parloir_publications"] == 1 and during["parloir_subscriptions"] == 1
        assert during["parloir_received_frames_total{kind=video}"] > 20
        assert during["parloir_forwarded_frames_total"] > 20
        assert during["parloir_keyframe_requests_total"] >= 1
        assert during["parloir_errors_total{code=malformed,origin=signaling}"] == 1
        assert during["parloir_peer_connections"] == 3
        assert 0 <= during["parloir_event_loop_lag_seconds"] < 0.5
        async with http.get(f"{server.url}/api/sessions") as r:
            assert r.status == 401
        await asyncio.gather(publisher.leave(), viewer.leave())
        after = await scrape(http, server)
        assert after["parloir_participants"] == 0 and after["parloir_peer_connections"] == 0
        assert after["parloir_errors_total{code=unauthorized,origin=api}"] == 1
        async with http.get(f"{server.url}/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(f"{server.url}/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
