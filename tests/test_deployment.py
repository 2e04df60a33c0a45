"""Deployment files and start-up checks, without a Docker engine (none runs on this machine).

- docker/compose.yaml is parsed with a real YAML parser: its services, the variables it expects
  from .env (documented in its header), every PARLOIR_* it sets being a setting the server reads,
  and those values passing the server's own validation;
- the Dockerfile's install steps run as written (COPY'd files into a fresh directory, its
  `pip install` into a fresh venv, with pip's cache instead of --no-cache-dir), then its CMD
  starts and its HEALTHCHECK command passes against it;
- settings that cannot work stop `parloir serve` at start with a message saying what to fix.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from server.cli import main
from server.settings import _ENV_READERS, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?P<rest>[^}]*)\}")


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _substitute(value: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, rest = match["name"], match["rest"]
        if name in env:
            return env[name]
        if rest.startswith(":-"):
            return rest[2:]
        raise AssertionError(f"${{{name}}} has no value and no default")

    return VARIABLE.sub(one, value)


def test_compose_file_runs_parloir_and_coturn_with_settings_the_server_knows(
    tmp_path: Path,
) -> None:
    text = (DOCKER / "compose.yaml").read_text()
    compose = _compose()
    assert set(compose["services"]) == {"parloir", "coturn"}
    parloir, coturn = compose["services"]["parloir"], compose["services"]["coturn"]
    build = parloir["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    # Every .env variable the file uses is named in its header, where an operator looks.
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    used = {m["name"] for m in VARIABLE.finditer(text)}
    assert used, "the compose file takes its secrets from .env"
    assert not {v for v in used if v not in header}, "undocumented .env variables"
    # Every PARLOIR_* it sets is a setting the server reads (a typo would be silently ignored).
    environment = parloir["environment"]
    unknown = sorted(k for k in environment if k.startswith("PARLOIR_") and k not in _ENV_READERS)
    assert unknown == [], f"compose sets variables no setting reads: {unknown}"
    # ...and with .env filled in, the values pass the server's own validation.
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    cert.write_text("cert"), key.write_text("key")
    required = {m["name"] for m in VARIABLE.finditer(text) if not m["rest"].startswith(":-")}
    dotenv = {name: f"example-{name.lower()}-" + "x" * 32 for name in required}
    dotenv |= {"PUBLIC_IP": "203.0.113.7", "PUBLIC_HOST": "video.example.org"}
    values = {k: _substitute(str(v), dotenv) for k, v in environment.items()}
    values |= {"PARLOIR_TLS_CERT": str(cert), "PARLOIR_TLS_KEY": str(key)}
    settings = load_settings(values)
    assert settings.production and settings.workers >= 1
    assert settings.ice_addresses == ("203.0.113.7",)
    # Links handed out (webhooks, API) name the public host, never the 0.0.0.0 it listens on.
    assert settings.link_base() == "https://video.example.org:8080"
    # TURN: the server hands out credentials for the coturn it runs beside, same secret.
    assert parloir["environment"]["PARLOIR_TURN_SECRET"].split(":")[0] in " ".join(
        coturn["command"]
    )
    assert any(url.startswith("turn:") for url in settings.ice_servers)
    assert any(url.startswith("turns:") and ":443" in url for url in settings.ice_servers)
    assert "--listening-port=3478" in coturn["command"]
    assert "--tls-listening-port=443" in coturn["command"]
    assert "--use-auth-secret" in coturn["command"]
    # The data volume is declared and mounted where the image keeps its data.
    assert "parloir-data:/data" in parloir["volumes"] and "parloir-data" in compose["volumes"]
    assert values["PARLOIR_DATA_DIR"] == "/data"


def test_every_variable_the_readme_documents_is_a_setting_and_every_setting_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Settings", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"`(PARLOIR_[A-Z_]+)`", table))
    assert documented - set(_ENV_READERS) == set(), "the README documents settings nobody reads"
    assert set(_ENV_READERS) - documented == set(), "settings missing from the README"


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            steps.append((instruction.upper(), arguments.strip()))
    return steps


def _read_listening(process: subprocess.Popen[str], timeout_s: float, log: Path) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if line.startswith("parloir listening on "):
                return line.split()[-1]
    raise AssertionError(
        f"the image's CMD did not start (exit {process.poll()}):\n{log.read_text()[-3000:]}"
    )


def test_dockerfile_install_steps_give_a_parloir_that_serves_and_passes_its_healthcheck(
    tmp_path: Path,
) -> None:
    steps = _dockerfile()
    base = next(args for instruction, args in steps if instruction == "FROM")
    python = re.match(r"python:(\d+\.\d+)", base)
    assert python, base
    if python[1] != f"{sys.version_info.major}.{sys.version_info.minor}":
        pytest.skip(f"the image uses Python {python[1]}, this machine {sys.version}")
    # COPY: exactly what the image gets, nothing more (a file it forgets fails here too).
    app = tmp_path / "app"
    app.mkdir()
    for instruction, args in steps:
        if instruction != "COPY":
            continue
        *sources, destination = shlex.split(args)
        for source in sources:
            target = app / destination if destination not in ("./", ".") else app
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target / Path(source).name)
    # RUN ... pip install ...: in a fresh venv, pip's cache allowed (the only change).
    (install,) = [
        part.strip()
        for instruction, args in steps
        if instruction == "RUN"
        for part in args.split("&&")
        if "pip install" in part
    ]
    command = [w for w in shlex.split(install) if w != "--no-cache-dir"]
    assert command[:2] == ["pip", "install"], install
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    started = time.monotonic()
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", *command, "--quiet", "--disable-pip-version-check"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    install_s = time.monotonic() - started
    parloir = venv / "bin" / "parloir"
    shown = subprocess.run([str(parloir), "--help"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and "serve" in shown.stdout, shown.stderr
    # CMD with the image's ENV, from outside the source tree: the installed package serves.
    image_env = dict(
        re.findall(r"(PARLOIR_[A-Z_]+)=(\S+)", " ".join(a for i, a in steps if i == "ENV"))
    )
    assert image_env.get("PARLOIR_DATA_DIR") == "/data"
    cmd = next(args for instruction, args in steps if instruction == "CMD")
    run_env = (
        env
        | image_env
        | {
            "PARLOIR_HOST": "127.0.0.1",
            "PARLOIR_PORT": "0",
            "PARLOIR_DATA_DIR": str(tmp_path / "data"),
            "PATH": f"{venv / 'bin'}:{env['PATH']}",
        }
    )
    workdir = next(args for instruction, args in steps if instruction == "WORKDIR")
    assert workdir == "/app", "the COPY destinations above are relative to it"
    server = subprocess.Popen(
        json.loads(cmd),
        cwd=app,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "server.log").open("w"),
        text=True,
    )
    try:
        url = _read_listening(server, 60, tmp_path / "server.log")
        healthcheck = next(args for instruction, args in steps if instruction == "HEALTHCHECK")
        probe = shlex.split(
            healthcheck.split("CMD", 1)[1].replace(":8080/", f":{url.rsplit(':', 1)[1]}/")
        )
        assert probe[0] == "python"
        checked = subprocess.run([str(venv / "bin" / "python"), *probe[1:]], env=run_env)
        assert checked.returncode == 0, "the image's HEALTHCHECK fails against its CMD"
        # The browser client is served too (web/ is not a Python package: it must be found).
        for path in ("/", "/static/js/call.js"):
            with urllib.request.urlopen(url + path, timeout=10) as response:
                assert response.status == 200 and response.read(), path
    finally:
        server.terminate()
        server.wait(timeout=15)
    print(f"Dockerfile install steps: {install_s:.0f} s")


def _serve(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["serve", "--host", "127.0.0.1", "--port", "0", *args])
    return code, capsys.readouterr().err


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PARLOIR_SECRET", "PARLOIR_API_KEY", "PARLOIR_STAFF_TOKEN", "PARLOIR_ENV"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_credentials")
def test_production_mode_refuses_to_start_with_generated_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _serve(capsys, "--production", "--data-dir", str(tmp_path))
    assert code == 2
    assert "PARLOIR_SECRET, PARLOIR_API_KEY, PARLOIR_STAFF_TOKEN" in err
    assert "generated credentials are refused" in err
    assert not (tmp_path / "secret.key").exists(), "nothing generated in production mode"
    # Keys a development run left in the data dir are generated ones too.
    (tmp_path / "secret.key").write_text("k" * 48)
    monkeypatch.setenv("PARLOIR_ENV", "production")
    monkeypatch.setenv("PARLOIR_API_KEY", "a" * 40)
    monkeypatch.setenv("PARLOIR_STAFF_TOKEN", "s" * 40)
    code, err = _serve(capsys, "--data-dir", str(tmp_path))
    assert code == 2 and "needs PARLOIR_SECRET set" in err
    monkeypatch.setenv("PARLOIR_SECRET", "short")
    code, err = _serve(capsys, "--data-dir", str(tmp_path))
    assert code == 2 and "secret must be at least 32 characters" in err
    monkeypatch.setenv("PARLOIR_ENV", "prod")
    code, err = _serve(capsys, "--data-dir", str(tmp_path))
    assert code == 2 and "PARLOIR_ENV='prod': must be production or development" in err


def test_an_unwritable_data_dir_stops_the_server_at_start_saying_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data dir's parent should be")
    code, err = _serve(capsys, "--data-dir", str(blocker / "data"))
    assert code == 2
    assert f"data dir {blocker / 'data'} is not writable" in err
    assert "PARLOIR_DATA_DIR" in err


def test_a_bad_worker_count_stops_the_server_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _serve(capsys, "--workers", "0", "--data-dir", str(tmp_path))
    assert code == 2 and "workers must be 1..64 (or auto), not 0" in err
    assert load_settings({"PARLOIR_WORKERS": "auto"}).workers == len(os.sched_getaffinity(0))
