"""The bounded set of events waiting for delivery, with per-room ordering. Pure, no asyncio.

Full: the oldest waiting event is dropped to make room (the backend learns the latest
state of rooms when it recovers rather than a stale beginning). Several workers take
events, but never two of the same room at once and never one ahead of an older one of its
room: events of a room arrive in the order they happened, rooms do not wait on each other.
"""

from __future__ import annotations

from collections import deque

from sfu.webhooks.payload import WebhookEvent


class PendingEvents:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[WebhookEvent] = deque()
        self._busy: set[str] = set()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def push(self, event: WebhookEvent) -> WebhookEvent | None:
        """Queue `event`; returns the event dropped to make room, if any."""
        dropped = self._items.popleft() if len(self._items) >= self.capacity else None
        self._items.append(event)
        return dropped

    def take(self) -> WebhookEvent | None:
        """The oldest event whose room has nothing in flight (marked in flight), or None."""
        for index, event in enumerate(self._items):
            if event.room_id not in self._busy:
                del self._items[index]
                self._busy.add(event.room_id)
                return event
        return None

    def done(self, event: WebhookEvent) -> None:
        """`event` is finished (delivered or given up): its room may send the next one."""
        self._busy.discard(event.room_id)

    def clear(self) -> list[WebhookEvent]:
        """Remove and return every waiting event (not those in flight)."""
        items = list(self._items)
        self._items.clear()
        return items
