"""Several room observers behind one: telemetry, Vonage session-monitoring webhooks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from signaling.participant import Participant
from signaling.publication import Publication
from signaling.room import Room, RoomObserver

log = logging.getLogger(__name__)


@dataclass
class RoomObservers:
    observers: list[RoomObserver] = field(default_factory=list)

    def _each(self, method: str, *args: object) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception:  # one observer's bug must not break the room or the others
                log.exception("room observer %s.%s failed", type(observer).__name__, method)

    def participant_joined(self, room: Room, participant: Participant) -> None:
        self._each("participant_joined", room, participant)

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        self._each("participant_left", room, participant, reason)

    def publication_changed(
        self, room: Room, publication: Publication, live: bool, reason: str
    ) -> None:
        self._each("publication_changed", room, publication, live, reason)

    def connection_failed(self, room: Room, participant: Participant, state: str) -> None:
        self._each("connection_failed", room, participant, state)

    def room_closed(self, room: Room) -> None:
        self._each("room_closed", room)

    def participant_suspended(self, room: Room, participant: Participant) -> None:
        self._each("participant_suspended", room, participant)

    def participant_resumed(self, room: Room, participant: Participant) -> None:
        self._each("participant_resumed", room, participant)
