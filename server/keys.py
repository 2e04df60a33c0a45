"""Typed keys for what lives on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from server.attendance import AttendanceRecorder
from server.settings import Settings
from server.storage import Database
from signaling.room import RoomRegistry

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
ATTENDANCE = web.AppKey("attendance", AttendanceRecorder)
REGISTRY = web.AppKey("registry", RoomRegistry)
