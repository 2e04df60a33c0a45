"""A published set of tracks (camera + microphone, or a screen share)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from media.sources import PublishedSource


@dataclass
class Publication:
    participant_id: str
    """Who publishes it."""
    video_type: str
    """`camera` or `screen`."""
    name: str
    """Label shown to the others."""
    mids: dict[str, str]
    """kind -> mid on the publisher's peer connection."""
    muted: dict[str, bool]
    """kind -> muted by its publisher."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Stable id, also used by the Vonage API as the stream id."""
    sources: dict[str, PublishedSource] = field(default_factory=dict)
    """kind -> the source subscribers get, once its track has arrived."""
    created_at: float = field(default_factory=time.time)
    layout_classes: list[str] = field(default_factory=list)
    """Vonage layout classes (e.g. `focus`), used by composed recordings."""
    force_muted: bool = False
    """Audio muted by a moderator or the platform: not forwarded until unmuted."""

    @property
    def live(self) -> bool:
        return bool(self.mids) and set(self.sources) == set(self.mids)

    def kind_of_mid(self, mid: str) -> str | None:
        for kind, known in self.mids.items():
            if known == mid:
                return kind
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "participant_id": self.participant_id,
            "video_type": self.video_type,
            "name": self.name,
            "kinds": sorted(self.mids),
            "muted": {kind: self.muted.get(kind, False) for kind in ("audio", "video")},
            "layout_classes": list(self.layout_classes),
        }
