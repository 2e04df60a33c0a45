"""One participant in a room: who it is, its peer connections and its subscriber negotiation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from media.config import MediaSettings
from media.peers import PeerClosed, PublisherPeer, SdpError, SubscriberPeer, close_quietly
from signaling.permissions import Grant
from signaling.protocol import event_offer
from signaling.publication import Publication

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

ANSWER_TIMEOUT_S = 20.0
"""A client that leaves a subscriber offer unanswered this long has a broken media path."""


@dataclass
class Participant:
    grant: Grant
    """The verified token it joined with."""
    name: str
    """Display name (from the join message, else the token)."""
    send: Send
    """Delivers a server message to this participant's socket."""
    media: MediaSettings
    on_connection_lost: Callable[[Participant, str], None]
    """Called if its media path breaks, with what broke: a peer connection state (`failed`,
    `closed`), `offer-failed`, `unanswered` or `answer-failed`."""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    """Also the Vonage connection id."""
    joined_at: float = field(default_factory=time.time)
    kick: Callable[[str], Awaitable[None]] | None = None
    """Ends this participant's connection with a reason (force disconnect)."""
    drop: Callable[[], Awaitable[None]] | None = None
    """Treats its current connection as dropped (suspends it; the participant may resume)."""
    publications: dict[str, Publication] = field(default_factory=dict)
    """Live publications by id."""
    pending: list[Publication] = field(default_factory=list)
    """Announced by `publish`, waiting for the offer that carries their tracks."""
    suspended: dict[str, Publication] = field(default_factory=dict)
    """Publications whose media dropped with the connection; republishing with their id
    resumes them (same ids for everyone)."""
    resume_key: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    """Proves a reconnecting socket is this participant (sent only to it, in `joined`)."""
    reconnecting: bool = False
    """The connection dropped; the place is kept for the reconnect grace period."""
    drops: int = 0
    """How many times its connection dropped: a grace period belongs to one drop."""
    publisher: PublisherPeer | None = None
    subscriber: SubscriberPeer | None = None
    _awaiting_answer: bool = False
    _offer_wanted: bool = False
    _offer_task: asyncio.Task[None] | None = None
    _answer_deadline: asyncio.TimerHandle | None = None
    _closed: bool = False

    @property
    def role(self) -> Any:
        return self.grant.role

    @property
    def identity(self) -> str:
        return self.grant.identity

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity,
            "name": self.name,
            "role": self.role.value,
            "joined_at": int(self.joined_at * 1000),
            "data": self.grant.connection_data,
        }

    def _peer_state_changed(self, state: str) -> None:
        if state in ("failed", "closed") and not self._closed:
            log.info("participant %s peer connection %s", self.id, state)
            self.on_connection_lost(self, state)

    def open_subscriber(self) -> SubscriberPeer:
        self.subscriber = SubscriberPeer(
            self.media.rtc_configuration(),
            loopback_only=self.media.loopback_only,
            on_state=self._peer_state_changed,
        )
        return self.subscriber

    def open_publisher(self) -> PublisherPeer:
        if self.publisher is None:
            self.publisher = PublisherPeer(
                self.media.rtc_configuration(),
                forwarding=self.media.forwarding,
                loopback_only=self.media.loopback_only,
                on_state=self._peer_state_changed,
            )
        return self.publisher

    async def settle_publisher(self) -> None:
        """Wait until a publisher renegotiation can start (see PublisherPeer.settle)."""
        if self.publisher is not None:
            await self.publisher.settle()

    @property
    def closed(self) -> bool:
        """Its connection ended (left, or dropped and now reconnecting): no new peers."""
        return self._closed

    # ---- subscriber renegotiation: the server is the only offerer on this peer connection ----

    def request_subscriber_offer(self) -> None:
        """Ask for a new subscriber offer; coalesced, and never two offers in flight."""
        self._offer_wanted = True
        if self._closed or self._awaiting_answer:
            return
        if self._offer_task is None or self._offer_task.done():
            self._offer_task = asyncio.ensure_future(self._send_offers())

    async def _send_offers(self) -> None:
        while self._offer_wanted and not self._awaiting_answer and not self._closed:
            self._offer_wanted = False
            assert self.subscriber is not None
            try:
                sdp, subscriptions = await self.subscriber.create_offer()
            except PeerClosed:
                # It closed under the offer (the client left, or its transport ended): the state
                # change reports that; nothing failed here.
                log.info("participant %s: subscriber offer abandoned, peer closed", self.id)
                return
            except Exception:
                log.exception("participant %s: subscriber offer failed", self.id)
                self.on_connection_lost(self, "offer-failed")
                return
            self._awaiting_answer = True
            self._answer_deadline = asyncio.get_running_loop().call_later(
                ANSWER_TIMEOUT_S, self._answer_overdue
            )
            await self.send(event_offer(sdp, subscriptions))

    def _answer_overdue(self) -> None:
        if self._awaiting_answer and not self._closed:
            log.info("participant %s never answered the subscriber offer", self.id)
            self.on_connection_lost(self, "unanswered")

    async def accept_subscriber_answer(self, sdp: str) -> None:
        assert self.subscriber is not None
        try:
            await self.subscriber.handle_answer(sdp)
        except SdpError as exc:
            if exc.peer_damaged:
                # aiortc cannot roll back: the client must reconnect with fresh connections.
                self.on_connection_lost(self, "answer-failed")
            raise
        self._awaiting_answer = False
        if self._answer_deadline is not None:
            self._answer_deadline.cancel()
        if self._offer_wanted:
            self.request_subscriber_offer()

    def reopen(self, send: Send, on_connection_lost: Callable[[Participant, str], None]) -> None:
        """A new socket took over after a drop: fresh negotiation state, peers made anew."""
        self.send = send
        self.on_connection_lost = on_connection_lost
        self.reconnecting = False
        self.publisher = None
        self.subscriber = None
        self._awaiting_answer = False
        self._offer_wanted = False
        self._offer_task = None
        self._answer_deadline = None
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._answer_deadline is not None:
            self._answer_deadline.cancel()
        if self._offer_task is not None:
            self._offer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._offer_task
        await close_quietly(self.publisher, self.subscriber)
