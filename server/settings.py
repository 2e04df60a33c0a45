"""The one settings object: read once from CLI flags and PARLOIR_* environment variables."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

VIDEO_CODECS = ("h264", "vp8")
FORWARDING_MODES = ("passthrough", "relay")


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    """Address the HTTP/WebSocket server listens on."""
    port: int = 8080
    """TCP port; 0 picks a free one (printed at start)."""
    public_url: str = ""
    """Base of every link the server hands out (call links, recording download URLs), e.g.
    https://video.example.org; empty = the request's origin, or the listen address."""
    data_dir: Path = Path("data")
    """SQLite file, recordings and the generated secret live here."""
    secret: str = ""
    """HS256 key for Parloir join tokens; generated into data_dir/secret.key when empty."""
    api_key: str = ""
    """Bearer key of the platform API (/api/...); generated into data_dir/api.key when empty."""
    staff_token: str = ""
    """Credential of the staff pages and API; generated into data_dir/staff.key when empty."""
    ice_addresses: tuple[str, ...] = ()
    """Addresses the SFU gathers ICE candidates on; empty = every interface (aioice default)."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs handed to aiortc and browsers; none unless configured."""
    turn_secret: str = ""
    """coturn's static-auth-secret: participants get time-limited TURN credentials (TURN REST
    API scheme) for the TURN URLs in ice_servers."""
    turn_ttl_s: int = 6 * 3600
    video_codec: str = "h264"
    """Preferred room video codec, fixed per room at its first publish."""
    forwarding: str = "passthrough"
    """`passthrough` (encoded frames) or `relay` (decode + re-encode, the benchmark baseline)."""
    max_message_bytes: int = 64 * 1024
    """Largest inbound WebSocket message; larger ones get an error."""
    join_timeout_s: float = 10.0
    """A socket that has not joined by then is closed."""
    room_grace_s: float = 30.0
    """An empty room (and its chat history) is closed after this long."""
    max_participants_per_room: int = 50
    """Joins beyond this get room-full."""
    max_rooms: int = 500
    """Live rooms this process holds; joins to new rooms beyond it get server-full."""
    chat_rate_per_s: float = 20.0
    """Chat messages per second per participant (Vonage signal-like flood protection)."""
    chat_burst: int = 20
    reconnect_grace_s: float = 30.0
    """A participant whose connection dropped keeps its place and ids this long."""
    tls_cert: Path | None = None
    """PEM certificate chain: serve HTTPS/WSS directly (deployments without a proxy)."""
    tls_key: Path | None = None
    """PEM private key of tls_cert."""
    max_upload_bytes: int = 2 * 1024**3
    """Largest external recording a participant may upload."""
    webhook_url: str = ""
    """The platform's webhook endpoint (recording status changes); none when empty."""
    webhook_secret: str = ""
    """Signs the platform's webhooks (HS256 JWT in Authorization); unsigned when empty."""
    log_json: bool = False
    """Log JSON lines instead of text."""
    bug_categories: tuple[str, ...] = ()
    """Bug report categories (ids); empty = the default list."""
    vonage_api_key: str = ""
    """Default Vonage-compatible project: API key (also its REST project id)."""
    vonage_api_secret: str = ""
    vonage_application_id: str = ""
    """Optional application id whose RS256 JWTs (vonage-video SDK) are accepted."""
    vonage_public_key_file: str = ""
    """PEM public key of that application."""
    vonage_callback_url: str = ""
    """Session-monitoring webhook URL of the default project."""
    vonage_signature_secret: str = ""
    """Signs the default project's webhooks."""
    vonage_projects_file: str | None = None
    """JSON list of further projects: api_key, api_secret, application_id, public_key_pem."""
    workers: int = 1
    """Media worker processes; rooms are placed on one each. 1 = one process, no edge."""
    production: bool = False
    """PARLOIR_ENV=production: credentials must be given, never generated into the data dir."""
    worker_index: int | None = None
    """Set by the supervisor in a worker process (not a user setting): the process-wide duties
    (crash recovery at start, webhook delivery) are then the supervisor's, not this process's."""

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def link_base(self, request_origin: str | None = None) -> str:
        """Base URL (no trailing slash) of the links the server hands out: public_url when set,
        else the origin the request came to (scheme://Host), else the listen address with a
        wildcard host (0.0.0.0, ::) replaced by loopback, which at least names this machine."""
        if self.public_url:
            return self.public_url
        if request_origin:
            return request_origin.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "parloir.sqlite3"

    @property
    def loopback_only(self) -> bool:
        """True when every ICE address is loopback: then only loopback candidates are usable."""
        return bool(self.ice_addresses) and all(
            a.startswith("127.") or a == "::1" for a in self.ice_addresses
        )


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_workers(value: str | int) -> int:
    """A worker count, or `auto`: one per core this process may run on."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1
    return int(value)


def _environment_kind(value: str) -> bool:
    kind = value.strip().lower()
    if kind not in ("production", "development"):
        raise ValueError("must be production or development")
    return kind == "production"


_ENV_READERS: dict[str, tuple[str, Any]] = {
    "PARLOIR_HOST": ("host", str),
    "PARLOIR_PORT": ("port", int),
    "PARLOIR_PUBLIC_URL": ("public_url", str),
    "PARLOIR_DATA_DIR": ("data_dir", Path),
    "PARLOIR_SECRET": ("secret", str),
    "PARLOIR_API_KEY": ("api_key", str),
    "PARLOIR_STAFF_TOKEN": ("staff_token", str),
    "PARLOIR_ICE_ADDRESSES": ("ice_addresses", _split),
    "PARLOIR_ICE_SERVERS": ("ice_servers", _split),
    "PARLOIR_TURN_SECRET": ("turn_secret", str),
    "PARLOIR_TURN_TTL_S": ("turn_ttl_s", int),
    "PARLOIR_VIDEO_CODEC": ("video_codec", str.lower),
    "PARLOIR_FORWARDING": ("forwarding", str.lower),
    "PARLOIR_MAX_MESSAGE_BYTES": ("max_message_bytes", int),
    "PARLOIR_JOIN_TIMEOUT_S": ("join_timeout_s", float),
    "PARLOIR_ROOM_GRACE_S": ("room_grace_s", float),
    "PARLOIR_RECONNECT_GRACE_S": ("reconnect_grace_s", float),
    "PARLOIR_MAX_PARTICIPANTS_PER_ROOM": ("max_participants_per_room", int),
    "PARLOIR_MAX_ROOMS": ("max_rooms", int),
    "PARLOIR_CHAT_RATE_PER_S": ("chat_rate_per_s", float),
    "PARLOIR_CHAT_BURST": ("chat_burst", int),
    "PARLOIR_LOG_JSON": ("log_json", _bool),
    "PARLOIR_MAX_UPLOAD_BYTES": ("max_upload_bytes", int),
    "PARLOIR_WEBHOOK_URL": ("webhook_url", str),
    "PARLOIR_WEBHOOK_SECRET": ("webhook_secret", str),
    "PARLOIR_TLS_CERT": ("tls_cert", Path),
    "PARLOIR_TLS_KEY": ("tls_key", Path),
    "PARLOIR_BUG_CATEGORIES": ("bug_categories", _split),
    "PARLOIR_VONAGE_API_KEY": ("vonage_api_key", str),
    "PARLOIR_VONAGE_API_SECRET": ("vonage_api_secret", str),
    "PARLOIR_VONAGE_APPLICATION_ID": ("vonage_application_id", str),
    "PARLOIR_VONAGE_PUBLIC_KEY_FILE": ("vonage_public_key_file", str),
    "PARLOIR_VONAGE_CALLBACK_URL": ("vonage_callback_url", str),
    "PARLOIR_VONAGE_SIGNATURE_SECRET": ("vonage_signature_secret", str),
    "PARLOIR_VONAGE_PROJECTS_FILE": ("vonage_projects_file", str),
    "PARLOIR_WORKERS": ("workers", parse_workers),
    "PARLOIR_ENV": ("production", _environment_kind),
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Environment first, then explicit overrides (CLI flags); validated once here."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (attr, convert) in _ENV_READERS.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            values[attr] = convert(raw)
        except ValueError as exc:
            raise SettingsError(f"{name}={raw!r}: {exc}") from exc
    settings = Settings(**values).with_overrides(**overrides)
    if settings.public_url:
        settings = replace(settings, public_url=_public_url(settings.public_url))
    _validate(settings)
    return settings


def _public_url(value: str) -> str:
    """An absolute http(s) URL without query or fragment, its trailing slash stripped."""
    problem = ""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problem = "not an absolute http:// or https:// URL"
        elif parts.hostname in ("0.0.0.0", "::"):
            problem = "a wildcard listen address is no host a platform can reach"
        elif parts.query or parts.fragment or value.strip().endswith(("?", "#")):
            problem = "a base URL has no query or fragment"
        elif parts.username is not None or parts.password is not None:
            problem = "a base URL carries no credentials"
    if problem:
        raise SettingsError(
            f"public URL {value!r}: {problem} (PARLOIR_PUBLIC_URL, e.g. https://video.example.org)"
        )
    return value.strip().rstrip("/")


def _validate(settings: Settings) -> None:
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"port {settings.port} is outside 0..65535")
    if settings.video_codec not in VIDEO_CODECS:
        raise SettingsError(f"video codec {settings.video_codec!r} is not one of {VIDEO_CODECS}")
    if settings.forwarding not in FORWARDING_MODES:
        raise SettingsError(f"forwarding {settings.forwarding!r} is not one of {FORWARDING_MODES}")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise SettingsError("--tls-cert and --tls-key go together")
    for path in (settings.tls_cert, settings.tls_key):
        if path is not None and not path.is_file():
            raise SettingsError(f"TLS file {path} does not exist")
    if settings.room_grace_s < 0 or settings.join_timeout_s <= 0:
        raise SettingsError("room grace must be >= 0 and join timeout > 0 seconds")
    if settings.max_message_bytes < 1024:
        raise SettingsError("max message size must be at least 1024 bytes")
    if not 1 <= settings.workers <= 64:
        raise SettingsError(f"workers must be 1..64 (or auto), not {settings.workers}")


def check_data_dir(settings: Settings) -> None:
    """The data dir exists (created if need be) and this process can write files in it."""
    directory = settings.data_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise SettingsError(
            f"data dir {directory} is not writable by this user (uid {os.getuid()}): "
            f"{exc.strerror or exc}; set PARLOIR_DATA_DIR or --data-dir to a writable directory"
        ) from exc


def resolve_credentials(settings: Settings) -> Settings:
    """Fill every empty credential from the data dir, creating it there on first use.

    Persisting them keeps tokens printed by `parloir token` valid for `parloir serve` on the same
    data dir, and gives a developer working keys without inventing any. In production mode
    nothing is generated: a missing credential is an error naming its variable.
    """
    if settings.production:
        missing = [
            variable
            for attr, variable in (
                ("secret", "PARLOIR_SECRET"),
                ("api_key", "PARLOIR_API_KEY"),
                ("staff_token", "PARLOIR_STAFF_TOKEN"),
            )
            if not getattr(settings, attr)
        ]
        if missing:
            raise SettingsError(
                f"production mode (PARLOIR_ENV=production) needs {', '.join(missing)} set;"
                " generated credentials are refused"
            )
        for attr in ("secret", "api_key", "staff_token"):
            if len(getattr(settings, attr)) < 32:
                raise SettingsError(f"production mode: {attr} must be at least 32 characters")
        return settings
    values: dict[str, Any] = {
        attr: getattr(settings, attr) or _persisted(settings.data_dir / filename)
        for attr, filename in (
            ("secret", "secret.key"),
            ("api_key", "api.key"),
            ("staff_token", "staff.key"),
        )
    }
    return replace(settings, **values)


def _persisted(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it meanwhile
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    value = path.read_text().strip()
    if len(value) < 32:
        raise SettingsError(f"{path} holds a secret shorter than 32 characters")
    return value
