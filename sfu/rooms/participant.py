"""A participant: one WebSocket, a publisher connection (not for observers) and a subscriber
connection. The only place in sfu/rooms that holds media sessions."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from sfu import metrics
from sfu.background import spawn
from sfu.core.errors import Forbidden, IceFailed, SfuError
from sfu.core.timestamps import rfc3339_from_s
from sfu.core.vocabulary import ParticipantGrant
from sfu.media.options import MediaOptions
from sfu.media.publisher import PublishedTrack, PublisherSession
from sfu.media.subscriber import SubscriberSession, TrackLabel
from sfu.rooms.models import Signal, TrackInfo

logger = logging.getLogger(__name__)


class ParticipantLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra.get('room_id')}/{extra.get('participant_id')}] {msg}", kwargs


class RoomLink(Protocol):
    """What a participant reports to its room (sfu/rooms/room.py's Room)."""

    @property
    def room_id(self) -> str: ...

    async def published(self, owner: Participant, track: PublishedTrack) -> None: ...

    async def unpublished(self, owner: Participant, track: PublishedTrack) -> None: ...

    async def remove(self, participant: Participant, reason: SfuError | None) -> None: ...


class Participant:
    def __init__(
        self,
        room: RoomLink,
        grant: ParticipantGrant,
        signal: Signal,
        media: MediaOptions,
    ) -> None:
        self.room = room
        self.participant_id = "PA_" + uuid.uuid4().hex[:12]
        self.user_id = grant.user_id
        self.name = grant.name
        self.role = grant.role
        self.signal = signal
        self.joined_at = time.time()
        self._joined_mono = time.monotonic()
        self.log = ParticipantLog(
            logger, {"room_id": room.room_id, "participant_id": self.participant_id}
        )
        self._media = media
        self.publisher: PublisherSession | None = None
        self.subscriber = SubscriberSession(
            media,
            self._send_subscribe_offer,
            stream_id=lambda label: label.participant_id,
            on_state=self._on_state,
            log=self.log,
        )
        self.closed = False
        self._connected_reported = False
        self._on_failed: Callable[[Participant], None] | None = None

    @property
    def tracks(self) -> list[TrackInfo]:
        if self.publisher is None:
            return []
        return [TrackInfo(t.track_id, t.kind, t.source) for t in self.publisher.tracks.values()]

    def to_json(self) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "user_id": self.user_id,
            "name": self.name,
            "role": self.role,
            "joined_at": rfc3339_from_s(self.joined_at),
            "tracks": [t.to_json() for t in self.tracks],
        }

    # -- signalling -------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            await self.signal.send(message)
        except ConnectionError as exc:
            self.log.info("could not send %s: %s", message.get("type"), exc)

    async def _send_subscribe_offer(self, sdp: str, tracks: dict[str, dict[str, str]]) -> None:
        await self.send({"type": "subscribe_offer", "sdp": sdp, "tracks": tracks})

    async def publish_offer(self, sdp: str, sources: dict[str, str]) -> None:
        if self.role == "observer":
            raise Forbidden("observers cannot publish")
        if self.publisher is None:
            self.publisher = PublisherSession(
                self._media,
                on_state=self._on_state,
                log=self.log,
            )
        answer, added, removed = await self.publisher.handle_offer(sdp, sources)
        await self.send({"type": "publish_answer", "sdp": answer})
        for track in removed:
            await self.room.unpublished(self, track)
        for track in added:
            await self.room.published(self, track)

    async def subscribe_answer(self, sdp: str) -> None:
        await self.subscriber.handle_answer(sdp)

    async def candidate(self, target: str, candidate: dict[str, Any] | None) -> None:
        if target == "publisher":
            if self.publisher is None:
                raise Forbidden("no publisher connection")
            await self.publisher.add_candidate(candidate)
        else:
            await self.subscriber.add_candidate(candidate)

    def subscribe(self, owner: Participant, track: PublishedTrack) -> None:
        label = TrackLabel(
            participant_id=owner.participant_id, source=track.source, kind=track.kind
        )
        self.subscriber.subscribe(track.track_id, label, track.fanout)

    def unsubscribe(self, track: PublishedTrack) -> None:
        self.subscriber.unsubscribe(track.track_id, track.fanout)

    # -- connection state --------------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        if state == "connected" and not self._connected_reported:
            self._connected_reported = True
            metrics.JOIN_TO_CONNECTED.observe(time.monotonic() - self._joined_mono)
        elif state in ("failed", "timeout") and not self.closed:
            self.log.info("peer connection %s; removing participant", state)
            spawn(self.room.remove(self, IceFailed(f"peer connection {state}")))

    async def close(self) -> list[PublishedTrack]:
        """Close both connections; returns what this participant had published."""
        if self.closed:
            return []
        self.closed = True
        tracks: list[PublishedTrack] = []
        if self.publisher is not None:
            tracks = await self.publisher.close()
        await self.subscriber.close()
        return tracks
