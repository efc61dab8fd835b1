"""What a node tells the others about itself: its registry entry."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    internal_url: str
    """How the other nodes reach this node's HTTP port (SFU_NODE_URL)."""
    ws_url: str | None
    """The public WebSocket URL browsers use for this node (from SFU_PUBLIC_URL); None: the
    URL of the request, whatever node it reached."""
    media_address: str
    """The address announced in this node's ICE candidates."""
    rooms: int
    participants: int
    free_ports: int
    """Media ports not in use: what admission still has."""
    room_slots: int
    """Rooms this node may still take (SFU_MAX_ROOMS minus its rooms)."""
    cpu_load: float
    """CPU cores this process used over the last heartbeat interval."""
    draining: bool
    version: str
    started_at: str
    """RFC 3339."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeInfo:
        return cls(
            node_id=str(data["node_id"]),
            internal_url=str(data["internal_url"]),
            ws_url=None if data.get("ws_url") is None else str(data["ws_url"]),
            media_address=str(data.get("media_address", "")),
            rooms=int(data["rooms"]),
            participants=int(data["participants"]),
            free_ports=int(data["free_ports"]),
            room_slots=int(data["room_slots"]),
            cpu_load=float(data["cpu_load"]),
            draining=bool(data["draining"]),
            version=str(data.get("version", "")),
            started_at=str(data.get("started_at", "")),
        )


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What the node's rooms look like now, as the wiring reads it for each heartbeat."""

    rooms: dict[str, dict[str, Any]]
    """room_id → room object (docs/api.md §2.2), for the directory."""
    participants: int
    free_ports: int
    room_slots: int
    draining: bool
