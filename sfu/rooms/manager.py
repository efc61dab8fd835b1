"""The rooms hosted by this node."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from sfu import metrics
from sfu.core.errors import (
    Draining,
    NoCapacity,
    ParticipantNotFound,
    Removed,
    RoomExists,
    RoomNotFound,
)
from sfu.media.options import MediaOptions
from sfu.rooms.events import RoomEvents
from sfu.rooms.models import RoomOptions
from sfu.rooms.port_budget import PortBudget
from sfu.rooms.recording import OnFinalised
from sfu.rooms.room import Room

logger = logging.getLogger(__name__)


class RoomManager:
    def __init__(
        self,
        *,
        node_id: str,
        media: MediaOptions,
        max_rooms: int,
        ports: PortBudget,
        events: RoomEvents | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        recordings_dir: Path | None = None,
        on_recording_finalised: OnFinalised | None = None,
    ) -> None:
        self.node_id = node_id
        self.recordings_dir = recordings_dir
        self.on_recording_finalised = on_recording_finalised
        self.ice_servers = ice_servers or []
        self.media = media
        self.max_rooms = max_rooms
        self.ports = ports
        self.events = events or RoomEvents()
        self.rooms: dict[str, Room] = {}
        self.draining = False

    def create(self, options: RoomOptions, ws_url: str) -> Room:
        if self.draining:
            raise Draining("this node is draining and takes no new rooms")
        if options.room_id in self.rooms:
            raise RoomExists(f"room {options.room_id} exists")
        if len(self.rooms) >= self.max_rooms:
            raise NoCapacity(f"this node hosts its maximum of {self.max_rooms} rooms")
        room = Room(
            options,
            node_id=self.node_id,
            ws_url=ws_url,
            media=self.media,
            ports=self.ports,
            events=self.events,
            ice_servers=self.ice_servers,
            recordings_dir=self.recordings_dir,
            on_recording_finalised=self.on_recording_finalised,
            on_closed=self._closed,
        )
        self.rooms[room.room_id] = room
        metrics.ROOMS.set(len(self.rooms))
        room.log.info("created (record=%s, max=%d)", options.record, options.max_participants)
        self.events.emit("room_started", room.to_json())
        return room

    @staticmethod
    def new_room_id() -> str:
        return "RM_" + secrets.token_hex(8)

    def get(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None or room.closed:
            raise RoomNotFound(f"no room {room_id!r} on this node")
        return room

    async def delete(self, room_id: str, reason: str = "deleted") -> Room:
        room = self.get(room_id)
        await room.close(reason)
        return room

    async def kick(self, room_id: str, participant_id: str) -> None:
        room = self.get(room_id)
        participant = room.participants.get(participant_id)
        if participant is None:
            raise ParticipantNotFound(f"no participant {participant_id!r} in room {room_id!r}")
        await room.remove(participant, Removed("removed by the service"))

    def _closed(self, room: Room) -> None:
        if self.rooms.get(room.room_id) is room:
            del self.rooms[room.room_id]
        metrics.ROOMS.set(len(self.rooms))

    async def close_all(self, reason: str) -> None:
        for room in list(self.rooms.values()):
            await room.close(reason)
