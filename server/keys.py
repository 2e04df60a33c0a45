"""Typed keys for what lives on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from server.projects import ProjectRegistry
from server.recordings import RecordingService
from server.session_store import SessionStore
from server.settings import Settings
from server.storage import Database
from server.telemetry import TelemetryRecorder
from server.tokens import TokenVerifier
from server.vonage_events import VonageEvents
from server.webhooks import WebhookOutbox
from signaling.room import RoomRegistry

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
REGISTRY = web.AppKey("registry", RoomRegistry)
STORE = web.AppKey("store", SessionStore)
TELEMETRY = web.AppKey("telemetry", TelemetryRecorder)
TOKENS = web.AppKey("tokens", TokenVerifier)
"""The one verifier of join tokens, all formats."""
PROJECTS = web.AppKey("projects", ProjectRegistry)
WEBHOOKS = web.AppKey("webhooks", WebhookOutbox)
VONAGE_EVENTS = web.AppKey("vonage_events", VonageEvents)
RECORDINGS = web.AppKey("recordings", RecordingService)
BUG_CATEGORIES = web.AppKey("bug_categories", dict[str, str])
"""category id -> label"""
