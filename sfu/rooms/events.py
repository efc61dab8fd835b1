"""What happens in rooms, for listeners outside the domain (webhooks, audit).

The room layer calls `emit()` and never waits on a listener: a listener that needs I/O
queues the event and returns. One listener's exception never reaches the room."""

from __future__ import annotations

import logging
from typing import Any, Protocol

logger = logging.getLogger(__name__)

EVENTS = (
    "room_started",
    "room_finished",
    "participant_joined",
    "participant_left",
    "track_published",
    "track_unpublished",
    "recording_ready",
    "recording_failed",
)


class RoomEventListener(Protocol):
    def on_event(self, event: str, room: dict[str, Any], fields: dict[str, Any]) -> None:
        """`room` is the room object (docs/api.md §2.2); `fields` the event's own data
        (participant, track, reason). Must not block."""


class RoomEvents:
    """Fans events out to listeners, isolating their failures."""

    def __init__(self, listeners: list[RoomEventListener] | None = None) -> None:
        self.listeners: list[RoomEventListener] = list(listeners or [])

    def add(self, listener: RoomEventListener) -> None:
        self.listeners.append(listener)

    def emit(self, event: str, room: dict[str, Any], **fields: Any) -> None:
        for listener in self.listeners:
            try:
                listener.on_event(event, room, fields)
            except Exception:
                logger.exception("room event listener %r failed on %s", listener, event)
