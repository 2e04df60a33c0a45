from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from media.ice import configure_gathering
from server.app import create_app
from server.keys import REGISTRY
from server.settings import Settings, load_settings
from server.tokens import issue_token
from signaling.permissions import Role
from signaling.room import RoomRegistry
from tests.support.server_process import (
    TEST_API_KEY,
    TEST_SECRET,
    TEST_STAFF_TOKEN,
    ServerProcess,
    running_server,
)

# The test process's own aiortc peers gather on loopback only, like the server under test.
configure_gathering(["127.0.0.1"])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `parloir serve` subprocess on a free port, H.264 rooms (the default)."""
    with running_server(tmp_path) as process:
        yield process
        assert process.alive(), f"server died during the test:\n{process.log()}"


@dataclass
class InProcessServer:
    """The app running on this test's event loop, so its state can be inspected."""

    url: str
    app: web.Application
    settings: Settings

    def token(self, room: str, identity: str, role: Role = Role.PUBLISHER, ttl_s: int = 600) -> str:
        return issue_token(
            self.settings.secret, room=room, identity=identity, role=role, ttl_s=ttl_s
        )

    @property
    def registry(self) -> RoomRegistry:
        return self.app[REGISTRY]


@pytest.fixture
async def inprocess_server(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    settings = load_settings(
        {},
        data_dir=tmp_path / "data",
        secret=TEST_SECRET,
        api_key=TEST_API_KEY,
        staff_token=TEST_STAFF_TOKEN,
        ice_addresses=("127.0.0.1",),
        join_timeout_s=2.0,
        room_grace_s=0.3,
        reconnect_grace_s=0.5,
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield InProcessServer(url=f"http://127.0.0.1:{port}", app=app, settings=settings)
    finally:
        await runner.cleanup()
