"""Vonage-compatible projects: API key + secret, optionally an application id + RSA public key."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from server.settings import Settings, SettingsError


@dataclass(frozen=True)
class Project:
    api_key: str
    """The project id of REST paths (`/v2/project/{api_key}/…`), embedded in session ids."""
    api_secret: str
    """Signs opentok HS256 REST JWTs and client tokens, and legacy T1 tokens."""
    application_id: str | None = None
    """vonage-video's application id (RS256 JWTs carry it)."""
    public_key_pem: str | None = None
    """Verifies the application's RS256 JWTs."""
    callback_url: str | None = None
    """Session-monitoring webhooks (connection/stream/archive events) are posted here."""
    signature_secret: str | None = None
    """Signs those webhooks (HS256 JWT in Authorization); unsigned when None."""


@dataclass
class ProjectRegistry:
    projects: list[Project] = field(default_factory=list)

    def by_api_key(self, api_key: str) -> Project | None:
        return next((p for p in self.projects if p.api_key == api_key), None)

    def by_application(self, application_id: str) -> Project | None:
        return next((p for p in self.projects if p.application_id == application_id), None)

    def by_path_id(self, project_id: str) -> Project | None:
        """`/v2/project/{id}` holds the API key (opentok) or the application id (vonage)."""
        return self.by_api_key(project_id) or self.by_application(project_id)

    def ids_of(self, project: Project) -> set[str]:
        return {project.api_key} | ({project.application_id} if project.application_id else set())


def load_projects(settings: Settings) -> ProjectRegistry:
    """The default project from PARLOIR_VONAGE_* settings, plus any in the projects file."""
    projects: list[Project] = []
    if settings.vonage_api_key:
        if not settings.vonage_api_secret:
            raise SettingsError("PARLOIR_VONAGE_API_KEY is set without PARLOIR_VONAGE_API_SECRET")
        projects.append(
            Project(
                api_key=settings.vonage_api_key,
                api_secret=settings.vonage_api_secret,
                application_id=settings.vonage_application_id or None,
                public_key_pem=_read(settings.vonage_public_key_file),
                callback_url=settings.vonage_callback_url or None,
                signature_secret=settings.vonage_signature_secret or None,
            )
        )
    if settings.vonage_projects_file is not None:
        try:
            entries = json.loads(Path(settings.vonage_projects_file).read_text())
            projects += [
                Project(
                    api_key=str(e["api_key"]),
                    api_secret=str(e["api_secret"]),
                    application_id=e.get("application_id"),
                    public_key_pem=e.get("public_key_pem") or _read(e.get("public_key_file")),
                    callback_url=e.get("callback_url"),
                    signature_secret=e.get("signature_secret"),
                )
                for e in entries
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SettingsError(f"projects file {settings.vonage_projects_file}: {exc}") from exc
    keys = [p.api_key for p in projects]
    if len(keys) != len(set(keys)):
        raise SettingsError("two Vonage projects share an API key")
    return ProjectRegistry(projects)


def _read(path: str | Path | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"cannot read public key {path}: {exc}") from exc
