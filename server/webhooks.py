"""Webhooks from a persistent outbox: queued in SQLite, delivered with retries and backoff,
optionally signed as Vonage does (HS256 JWT in `Authorization` with the body's SHA-256)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from server.storage import Database

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 300.0
POLL_S = 0.5
TIMEOUT_S = 10.0


def sign(body: bytes, secret: str, now: float | None = None) -> str:
    """A JWT a receiver verifies with the shared secret; `payload_hash` binds it to the body."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iat": issued,
        "exp": issued + 300,
        "jti": secrets.token_hex(8),
        "payload_hash": hashlib.sha256(body).hexdigest(),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_signature(body: bytes, authorization: str, secret: str) -> bool:
    token = authorization[7:] if authorization.lower().startswith("bearer ") else authorization
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], leeway=30)
    except jwt.PyJWTError:
        return False
    return claims.get("payload_hash") == hashlib.sha256(body).hexdigest()


def backoff_s(attempts: int) -> float:
    return float(min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** max(0, attempts - 1)))


@dataclass
class Webhook:
    id: int
    url: str
    body: bytes
    signing_secret: str | None
    attempts: int


class WebhookOutbox:
    """Events are committed to the outbox, then delivered by one background task, in order per
    destination; a restart resumes what was not delivered. After MAX_ATTEMPTS an event is given
    up (it stays in the table with its last error)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.delivered = 0
        self.failed_attempts = 0

    async def enqueue(self, url: str, payload: dict[str, Any], signing_secret: str | None) -> None:
        db = self._database.connection
        await db.execute(
            "INSERT INTO webhook_outbox (url, body, signing_secret, attempts, next_attempt_at,"
            " created_at) VALUES (?, ?, ?, 0, ?, ?)",
            (
                url,
                json.dumps(payload, separators=(",", ":")),
                signing_secret,
                time.time(),
                time.time(),
            ),
        )
        await db.commit()
        self._wake.set()

    async def pending_count(self) -> int:
        async with self._database.connection.execute(
            "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND attempts < ?",
            (MAX_ATTEMPTS,),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    def start(self, deliver: bool = True) -> None:
        """Start delivering; `deliver=False` only enqueues (a worker process: the supervisor
        delivers for all, polling the outbox, so no event is posted twice)."""
        if not deliver:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _due(self) -> list[Webhook]:
        # Per destination, only its oldest pending event: a receiver sees events in the order
        # they happened, a failing one holding back the later ones until it gets through.
        async with self._database.connection.execute(
            "SELECT id, url, body, signing_secret, attempts FROM webhook_outbox"
            " WHERE id IN (SELECT MIN(id) FROM webhook_outbox"
            "   WHERE delivered_at IS NULL AND attempts < ? GROUP BY url)"
            " AND next_attempt_at <= ? ORDER BY id",
            (MAX_ATTEMPTS, time.time()),
        ) as cursor:
            rows = await cursor.fetchall()
        return [Webhook(r[0], r[1], r[2].encode(), r[3], r[4]) for r in rows]

    async def _run(self) -> None:
        while True:
            try:
                while due := await self._due():
                    delivered = [await self._deliver(webhook) for webhook in due]
                    if not any(delivered):
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery loop failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def _deliver(self, webhook: Webhook) -> bool:
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if webhook.signing_secret:
            headers["Authorization"] = f"Bearer {sign(webhook.body, webhook.signing_secret)}"
        error = None
        try:
            async with self._session.post(webhook.url, data=webhook.body, headers=headers) as r:
                if 200 <= r.status < 300:
                    await self._mark(webhook, delivered=True)
                    self.delivered += 1
                    return True
                error = f"HTTP {r.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.failed_attempts += 1
        log.info(
            "webhook %d to %s failed (%s), attempt %d",
            webhook.id,
            webhook.url,
            error,
            webhook.attempts + 1,
        )
        await self._mark(webhook, delivered=False, error=error)
        return False

    async def _mark(self, webhook: Webhook, *, delivered: bool, error: str | None = None) -> None:
        db = self._database.connection
        attempts = webhook.attempts + 1
        if delivered:
            await db.execute(
                "UPDATE webhook_outbox SET attempts = ?, delivered_at = ? WHERE id = ?",
                (attempts, time.time(), webhook.id),
            )
        else:
            await db.execute(
                "UPDATE webhook_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?"
                " WHERE id = ?",
                (attempts, time.time() + backoff_s(attempts), error, webhook.id),
            )
        await db.commit()
