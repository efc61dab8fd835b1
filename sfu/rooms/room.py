"""A room: its participants, who receives which published track, and its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfu import metrics
from sfu.background import spawn
from sfu.core.errors import Replaced, RoomFull, RoomNotFound, SfuError, TrackNotFound
from sfu.core.timestamps import rfc3339_from_s
from sfu.core.vocabulary import ParticipantGrant
from sfu.media.options import MediaOptions
from sfu.media.publisher import PublishedTrack
from sfu.rooms.events import RoomEvents
from sfu.rooms.models import RoomOptions, Signal
from sfu.rooms.participant import Participant
from sfu.rooms.port_budget import PortBudget
from sfu.rooms.recording import OnFinalised, RoomRecording

logger = logging.getLogger(__name__)


class Room:
    def __init__(
        self,
        options: RoomOptions,
        *,
        node_id: str,
        ws_url: str,
        media: MediaOptions,
        ports: PortBudget,
        events: RoomEvents,
        on_closed: Callable[[Room], None],
        ice_servers: list[dict[str, Any]] | None = None,
        recordings_dir: Path | None = None,
        on_recording_finalised: OnFinalised | None = None,
    ) -> None:
        self.options = options
        self.room_id = options.room_id
        self.node_id = node_id
        self.ws_url = ws_url
        self.created_at = time.time()
        self.participants: dict[str, Participant] = {}
        self.closed = False
        self.log = logging.LoggerAdapter(logger, {"room_id": self.room_id})
        self._media = media
        self._on_closed = on_closed
        self._ports = ports
        self.events = events
        self.ice_servers = ice_servers or []
        self.recording: RoomRecording | None = None
        if options.record and recordings_dir is not None:
            self.recording = RoomRecording(
                recordings_dir,
                self.room_id,
                on_finalised=on_recording_finalised,
                log=self.log,
                node_id=node_id,
            )
        self._reservations: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._empty_timer: asyncio.TimerHandle | None = None
        self._arm_empty_timer()

    # -- contract shape ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "created_at": rfc3339_from_s(self.created_at),
            "record": self.options.record,
            "max_participants": self.options.max_participants,
            "empty_timeout_s": self.options.empty_timeout_s,
            "metadata": self.options.metadata,
            "node_id": self.node_id,
            "ws_url": self.ws_url,
            "participants": [p.to_json() for p in self.participants.values()],
            "recording": self.recording.to_json() if self.recording else None,
        }

    # -- membership -------------------------------------------------------------------------

    async def join(self, grant: ParticipantGrant, signal: Signal) -> Participant:
        """Admit a participant. A second socket of the same user replaces the first (4409)."""
        async with self._lock:
            self._check_open()
            previous = next(
                (p for p in self.participants.values() if p.user_id == grant.user_id), None
            )
        if previous is not None:
            await self.remove(previous, Replaced("replaced by a newer connection of the same user"))
        async with self._lock:
            self._check_open()
            if len(self.participants) >= self.options.max_participants:
                raise RoomFull(f"room {self.room_id} is full")
            reserved = self._ports.reserve(grant.role)
            participant = Participant(self, grant, signal, self._media)
            self._reservations[participant.participant_id] = reserved
            self.participants[participant.participant_id] = participant
            if self.recording is not None:
                self.recording.joined(
                    participant.participant_id, grant.user_id, grant.name, grant.role
                )
            metrics.PARTICIPANTS.labels(participant.role).inc()
            self._cancel_empty_timer()
        participant.log.info("joined as %s (user %s)", participant.role, participant.user_id)
        self.events.emit("participant_joined", self.to_json(), participant=participant.to_json())
        await participant.send(
            {
                "type": "joined",
                "participant": participant.to_json(),
                "room": self.to_json(),
                "ice_servers": self.ice_servers,
            }
        )
        await self._broadcast(
            {"type": "participant_joined", "participant": participant.to_json()},
            exclude=participant,
        )
        for owner in list(self.participants.values()):
            if owner is participant or owner.publisher is None:
                continue
            for track in owner.publisher.tracks.values():
                participant.subscribe(owner, track)
        return participant

    def _check_open(self) -> None:
        if self.closed:
            raise RoomNotFound(f"room {self.room_id} is closed")

    async def remove(self, participant: Participant, reason: SfuError | None) -> None:
        """Disconnect a participant (leave, kick, replaced, failed connection)."""
        if self.participants.get(participant.participant_id) is not participant:
            await participant.close()
            return
        del self.participants[participant.participant_id]
        self._ports.release(self._reservations.pop(participant.participant_id, 0))
        metrics.PARTICIPANTS.labels(participant.role).dec()
        tracks = await participant.close()
        for track in tracks:
            await self._track_gone(participant, track)
        if self.recording is not None:
            self.recording.left(participant.participant_id)
        with contextlib.suppress(ConnectionError):
            await participant.signal.close(reason)
        participant.log.info("left (%s)", reason.code if reason else "normal")
        self.events.emit(
            "participant_left",
            self.to_json(),
            participant=participant.to_json(),
            reason=reason.code if reason else "left",
        )
        await self._broadcast(
            {"type": "participant_left", "participant_id": participant.participant_id}
        )
        if not self.participants:
            self._arm_empty_timer()

    # -- publications -----------------------------------------------------------------------

    async def published(self, owner: Participant, track: PublishedTrack) -> None:
        metrics.PUBLICATIONS.labels(track.kind).inc()
        if self.recording is not None:
            self.recording.published(owner.participant_id, track)
        owner.log.info(
            "published %s %s (%s)",
            track.kind,
            track.track_id,
            track.source,
            extra={"track_id": track.track_id},
        )
        info = {"track_id": track.track_id, "kind": track.kind, "source": track.source}
        self.events.emit(
            "track_published", self.to_json(), participant_id=owner.participant_id, track=info
        )
        await self._broadcast(
            {"type": "track_published", "participant_id": owner.participant_id, "track": info},
            exclude=owner,
        )
        for other in self.participants.values():
            if other is not owner:
                other.subscribe(owner, track)

    async def unpublished(self, owner: Participant, track: PublishedTrack) -> None:
        await self._track_gone(owner, track)

    async def _track_gone(self, owner: Participant, track: PublishedTrack) -> None:
        metrics.PUBLICATIONS.labels(track.kind).dec()
        if self.recording is not None:
            await self.recording.unpublished(track)
        owner.log.info("unpublished %s", track.track_id, extra={"track_id": track.track_id})
        for other in self.participants.values():
            if other is not owner:
                other.unsubscribe(track)
        info = {"track_id": track.track_id, "kind": track.kind, "source": track.source}
        self.events.emit(
            "track_unpublished", self.to_json(), participant_id=owner.participant_id, track=info
        )
        await self._broadcast(
            {"type": "track_unpublished", "participant_id": owner.participant_id, "track": info},
            exclude=owner,
        )

    def find_track(self, track_id: str) -> PublishedTrack:
        for participant in self.participants.values():
            if participant.publisher is not None:
                track = participant.publisher.tracks.get(track_id)
                if track is not None:
                    return track
        raise TrackNotFound(f"no published track {track_id!r} in this room")

    # -- lifetime ---------------------------------------------------------------------------

    async def _broadcast(self, message: dict[str, Any], exclude: Participant | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant is exclude:
                continue
            try:
                await participant.send(message)
            except Exception:
                participant.log.exception("could not deliver %s", message.get("type"))

    def _arm_empty_timer(self) -> None:
        if self.closed or self._empty_timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._empty_timer = loop.call_later(self.options.empty_timeout_s, self._empty_expired)

    def _cancel_empty_timer(self) -> None:
        if self._empty_timer is not None:
            self._empty_timer.cancel()
            self._empty_timer = None

    def _empty_expired(self) -> None:
        self._empty_timer = None
        if not self.participants and not self.closed:
            self.log.info("empty for %ss; closing", self.options.empty_timeout_s)
            spawn(self.close("empty_timeout"))

    async def close(self, reason: str) -> None:
        """Close the room: every participant gets `room_closed` and is disconnected."""
        if self.closed:
            return
        self.closed = True
        self._cancel_empty_timer()
        for participant in list(self.participants.values()):
            await participant.send({"type": "room_closed", "reason": reason})
        for participant in list(self.participants.values()):
            self.participants.pop(participant.participant_id, None)
            self._ports.release(self._reservations.pop(participant.participant_id, 0))
            metrics.PARTICIPANTS.labels(participant.role).dec()
            for track in await participant.close():
                metrics.PUBLICATIONS.labels(track.kind).dec()
            self.events.emit(
                "participant_left", self.to_json(), participant=participant.to_json(), reason=reason
            )
            with contextlib.suppress(ConnectionError):
                await participant.signal.close(None)
        if self.recording is not None:
            await self.recording.finish()
        self.log.info("closed (%s)", reason)
        self.events.emit("room_finished", self.to_json(), reason=reason)
        self._on_closed(self)
