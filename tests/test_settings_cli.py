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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://video.example.test/", "https://video.example.test"),
        ("http://10.0.0.5:8080/parloir/", "http://10.0.0.5:8080/parloir"),
        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
    ],
)
def test_public_url_is_the_base_of_links_without_its_trailing_slash(
    raw: str, expected: str
) -> None:
    settings = load_settings({"PARLOIR_PUBLIC_URL": raw, "PARLOIR_HOST": "0.0.0.0"})
    assert settings.public_url == expected
    assert settings.link_base("http://127.0.0.1:8080") == expected
    assert settings.link_base() == expected


@pytest.mark.parametrize(
    "raw",
    [
        "video.example.test",
        "ftp://video.example.test",
        "https://",
        "https://video.example.test/?x=1",
        "https://video.example.test/#top",
        "https://user:pass@video.example.test",
        "https://video.example.test:eighty",
        "http://0.0.0.0:8080",
    ],
)
def test_a_public_url_that_cannot_base_links_is_refused_in_one_line(raw: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({"PARLOIR_PUBLIC_URL": raw})
    message = str(refused.value)
    assert "PARLOIR_PUBLIC_URL" in message and raw in message and "\n" not in message
    with pytest.raises(SettingsError):
        load_settings({}, public_url=raw)  # the --public-url flag is checked the same way


def test_without_public_url_links_never_name_a_wildcard_listen_address() -> None:
    assert load_settings({"PARLOIR_HOST": "0.0.0.0"}).link_base() == "http://127.0.0.1:8080"
    assert load_settings({"PARLOIR_HOST": "::", "PARLOIR_PORT": "9"}).link_base() == (
        "http://127.0.0.1:9"
    )
    assert load_settings({"PARLOIR_HOST": "::1"}).link_base() == "http://[::1]:8080"
    # A request at hand: its origin, as the client reached the server.
    assert load_settings({"PARLOIR_HOST": "0.0.0.0"}).link_base("https://h.test/") == (
        "https://h.test"
    )


def test_cli_serve_refuses_a_bad_public_url_in_one_line(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--public-url", "ftp://x.test"],
        capture_output=True,
        text=True,
        env={"PARLOIR_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "public URL 'ftp://x.test'" in bad.stderr
