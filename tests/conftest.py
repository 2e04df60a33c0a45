from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from media.ice import configure_gathering
from tests.support.server_process import ServerProcess, running_server

# The test process's own aiortc peers gather on loopback only, like the server under test.
configure_gathering(["127.0.0.1"])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `parloir serve` subprocess on a free port, H.264 rooms (the default)."""
    with running_server(tmp_path) as process:
        yield process
        assert process.alive(), f"server died during the test:\n{process.log()}"
