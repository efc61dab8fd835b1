"""Value objects of the room domain and their contract (JSON) shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sfu.core.errors import SfuError


@dataclass(frozen=True, slots=True)
class RoomOptions:
    room_id: str
    record: bool = True
    max_participants: int = 4
    empty_timeout_s: int = 300
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrackInfo:
    track_id: str
    kind: str
    source: str

    def to_json(self) -> dict[str, str]:
        return {"track_id": self.track_id, "kind": self.kind, "source": self.source}


class Signal(Protocol):
    """The participant's signalling channel, as the room sees it (the WebSocket)."""

    async def send(self, message: dict[str, Any]) -> None: ...

    async def close(self, error: SfuError | None) -> None:
        """Close the channel; `error` says why (mapped to a close code at the edge), None for a
        normal end (leave, room closed)."""
