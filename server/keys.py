"""Typed keys for what lives on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from server.settings import Settings
from server.storage import Database
from signaling.room import RoomRegistry

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
REGISTRY = web.AppKey("registry", RoomRegistry)
STORE = web.AppKey("store", object)
"""server.session_store.SessionStore"""
TELEMETRY = web.AppKey("telemetry", object)
"""server.telemetry.TelemetryRecorder"""
TOKENS = web.AppKey("tokens", object)
"""server.tokens.TokenVerifier: the one verifier of join tokens, all formats"""
PROJECTS = web.AppKey("projects", object)
"""server.projects.ProjectRegistry"""
WEBHOOKS = web.AppKey("webhooks", object)
"""server.webhooks.WebhookOutbox"""
VONAGE_EVENTS = web.AppKey("vonage_events", object)
"""server.vonage_events.VonageEvents"""
RECORDINGS = web.AppKey("recordings", object)
"""server.recordings.RecordingService"""
BUG_CATEGORIES = web.AppKey("bug_categories", dict)
"""category id -> label"""
