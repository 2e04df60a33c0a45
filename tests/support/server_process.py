"""Runs `parloir serve` as a real subprocess on a free port, as a deployment would."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server.tokens import issue_token
from signaling.permissions import Role

TEST_SECRET = "test-secret-" + "0123456789abcdef" * 3
TEST_API_KEY = "test-api-key-" + "fedcba9876543210" * 3
TEST_STAFF_TOKEN = "test-staff-" + "00112233445566778899" * 2


@dataclass
class ServerProcess:
    url: str
    """http://127.0.0.1:PORT"""
    process: subprocess.Popen[str]
    data_dir: Path
    log_path: Path
    secret: str = TEST_SECRET
    api_key: str = TEST_API_KEY
    staff_token: str = TEST_STAFF_TOKEN

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/rtc"

    def token(
        self,
        room: str,
        identity: str,
        role: Role | str = Role.PUBLISHER,
        *,
        ttl_s: int = 600,
        name: str | None = None,
    ) -> str:
        return issue_token(
            self.secret, room=room, identity=identity, role=Role(role), ttl_s=ttl_s, name=name
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def running_server(tmp_path: Path, **env_overrides: str) -> Iterator[ServerProcess]:
    data_dir = tmp_path / "data"
    log_path = tmp_path / "server.log"
    env = {
        **os.environ,
        "PARLOIR_SECRET": TEST_SECRET,
        "PARLOIR_API_KEY": TEST_API_KEY,
        "PARLOIR_STAFF_TOKEN": TEST_STAFF_TOKEN,
        "PARLOIR_ICE_ADDRESSES": "127.0.0.1",
        "PARLOIR_DATA_DIR": str(data_dir),
        **env_overrides,
    }
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        try:
            url = _read_url(process, log_path)
            yield ServerProcess(url=url, process=process, data_dir=data_dir, log_path=log_path)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _read_url(process: subprocess.Popen[str], log_path: Path, timeout_s: float = 30) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if line.startswith("parloir listening on "):
                return line.split()[-1]
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
    process.kill()
    raise RuntimeError(f"server did not start in {timeout_s}s:\n{log_path.read_text()}")
