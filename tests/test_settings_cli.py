"""Settings read once from the environment and flags; the CLI's token command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.settings import SettingsError, load_settings, resolve_credentials
from server.tokens import verify_token


def test_environment_then_flags() -> None:
    settings = load_settings(
        {
            "PARLOIR_PORT": "9000",
            "PARLOIR_ICE_ADDRESSES": "127.0.0.1, ::1",
            "PARLOIR_VIDEO_CODEC": "VP8",
        },
        port=9100,
    )
    assert settings.port == 9100
    assert settings.ice_addresses == ("127.0.0.1", "::1")
    assert settings.video_codec == "vp8"
    assert settings.loopback_only


@pytest.mark.parametrize(
    "environ",
    [{"PARLOIR_PORT": "eighty"}, {"PARLOIR_PORT": "70000"}, {"PARLOIR_VIDEO_CODEC": "av1"}],
)
def test_bad_settings_are_refused_with_the_variable_named(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        load_settings(environ)


def test_generated_secret_is_kept_private_and_reused(tmp_path: Path) -> None:
    first = resolve_credentials(load_settings({}, data_dir=tmp_path))
    second = resolve_credentials(load_settings({}, data_dir=tmp_path))
    assert first.secret == second.secret and len(first.secret) >= 32
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0


def test_cli_token_is_accepted_by_the_verifier(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "token",
            "--room",
            "demo",
            "--identity",
            "ada",
            "--role",
            "moderator",
            "--data-dir",
            str(tmp_path),
            "--url",
            "http://127.0.0.1:8080",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin"},
    ).stdout.split()
    secret = resolve_credentials(load_settings({}, data_dir=tmp_path)).secret
    grant = verify_token(secret, out[0])
    assert (grant.room, grant.identity, grant.role.value) == ("demo", "ada", "moderator")
    assert out[1] == f"http://127.0.0.1:8080/room/demo?token={out[0]}"


def test_cli_help_explains_each_command() -> None:
    text = subprocess.run(
        [sys.executable, "-m", "server.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("serve", "token", "bench"):
        assert command in text
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "token",
            "--room",
            "a/b",
            "--identity",
            "x",
            "--data-dir",
            "/tmp/parloir-cli-test",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "room id" in bad.stderr
