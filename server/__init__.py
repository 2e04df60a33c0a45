"""Parloir's edge: aiohttp app, tokens, REST, WebSocket endpoint, storage, CLI."""
