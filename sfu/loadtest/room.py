"""One load-test room: its REST life (create, delete) and its participants.

The mentor and the mentee each publish pre-encoded camera video (and Opus unless
``--no-audio``) from :class:`PacedPacketTrack` clips and receive each other; observers only
receive. With ``--publisher direct`` (the default) the clips are packetized once and paced
straight into RTP (:mod:`sfu.client.direct_publish`); with ``stock`` aiortc's sender packs the
``av.Packet`` objects the track hands out. A refused join is recorded with its close code
and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack

from sfu.api.tokens import mint_participant_token, mint_service_token
from sfu.client.client import SfuClient
from sfu.client.clips import Clip, PacedPacketTrack, get_clip, load_clip
from sfu.client.model import JoinRefused, SfuConnectionClosed, SfuErrorReply
from sfu.core.vocabulary import Role
from sfu.ice.connection import IceConfig
from sfu.loadtest.options import LoadtestOptions, RoomTokens
from sfu.loadtest.report import JoinRecord

logger = logging.getLogger(__name__)

TOKEN_TTL_MARGIN_S = 600
REST_TIMEOUT_S = 10.0
LEAVE_TIMEOUT_S = 5.0
VIDEO_CLIP: dict[str, float] = {
    "width": 640,
    "height": 480,
    "fps": 30,
    "seconds": 4,
    "gop_frames": 60,
}
AUDIO_CLIP: dict[str, float] = {"seconds": 4}


def video_clip(options: LoadtestOptions) -> Clip:
    """640x480 30 fps, a keyframe every 2 s, at ``--video-kbps`` (built once, cached)."""
    return load_clip(get_clip(options.codec, kbps=options.video_kbps, **VIDEO_CLIP))


def audio_clip() -> Clip:
    return load_clip(get_clip("opus", **AUDIO_CLIP))


def video_track(options: LoadtestOptions) -> PacedPacketTrack:
    return PacedPacketTrack(video_clip(options))


def audio_track() -> PacedPacketTrack:
    return PacedPacketTrack(audio_clip())


def failure_label(close_code: int | None) -> str:
    """A JoinRefused's code as reported: WebSocket close codes as they are, a refused
    handshake (an HTTP status below 1000) as ``http_<status>``."""
    if close_code is None:
        return "closed_without_code"
    if close_code < 1000:
        return f"http_{close_code}"
    return str(close_code)


@dataclass(slots=True)
class LoadParticipant:
    role: Role
    user: str
    record: JoinRecord
    decode: bool
    client: SfuClient | None = None
    tracks: list[PacedPacketTrack] = field(default_factory=list)

    @property
    def participant_id(self) -> str:
        return self.client.participant_id if self.client is not None else ""


class LoadtestRoom:
    """Create (unless the tokens came from the backend), join, leave and delete one room."""

    def __init__(
        self,
        index: int,
        room_id: str,
        options: LoadtestOptions,
        http: aiohttp.ClientSession,
        *,
        tokens: RoomTokens | None,
        decode_mentee: bool,
        record: bool | None = None,
    ) -> None:
        self.index = index
        self.record = options.record if record is None else record
        self.finished = False
        """Left and deleted before the end of the run (``--churn``)."""
        self.room_id = room_id
        self.options = options
        self._http = http
        self._tokens = tokens
        self.created = False
        self.create_failure: str | None = None
        self.node_id: str | None = None
        """The node that holds the room (the room object's ``node_id``): from the
        ``POST /rooms`` answer, or else from a participant's ``joined``."""
        self.live_since: float | None = None
        self.leaving = False
        roles: list[tuple[Role, str]] = [("mentor", "mentor"), ("mentee", "mentee")]
        roles += [("observer", f"observer{i}") for i in range(options.observers)]
        self.participants = [
            LoadParticipant(
                role=role,
                user=f"{room_id}-{name}",
                record=JoinRecord(room_id=room_id, role=role, user=f"{room_id}-{name}"),
                decode=decode_mentee and role == "mentee",
            )
            for role, name in roles
        ]

    @property
    def live(self) -> bool:
        return self.live_since is not None and not self.leaving

    def _service_headers(self) -> dict[str, str]:
        assert self.options.secret is not None
        ttl = int(self.options.duration_s) + TOKEN_TTL_MARGIN_S
        return {"Authorization": f"Bearer {mint_service_token(self.options.secret, ttl)}"}

    def _token(self, participant: LoadParticipant, observer_index: int) -> str:
        if self._tokens is not None:
            if participant.role == "mentor":
                return self._tokens.mentor
            if participant.role == "mentee":
                return self._tokens.mentee
            return self._tokens.observers[observer_index]
        assert self.options.secret is not None
        return mint_participant_token(
            self.options.secret,
            room_id=self.room_id,
            user_id=participant.user,
            role=participant.role,
            name=participant.user,
            ttl_s=int(self.options.duration_s) + TOKEN_TTL_MARGIN_S,
        )

    async def create(self) -> bool:
        """``POST /rooms``; False (with ``create_failure``) when the SFU refuses."""
        body: dict[str, Any] = {
            "room_id": self.room_id,
            "record": self.record,
            "max_participants": max(2, 2 + self.options.observers),
            "empty_timeout_s": 60,
            "metadata": {"loadtest": True},
        }
        try:
            async with self._http.post(
                self.options.url + "/rooms",
                json=body,
                headers=self._service_headers(),
                timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S),
            ) as response:
                if response.status == 201:
                    self.created = True
                    with contextlib.suppress(aiohttp.ContentTypeError, ValueError):
                        room = await response.json()
                        self._note_node(room.get("node_id") if isinstance(room, dict) else None)
                    return True
                text = await response.text()
                self.create_failure = str(response.status)
                logger.warning("POST /rooms %s: %s %.200s", self.room_id, response.status, text)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.create_failure = "connection_error"
            logger.warning("POST /rooms %s: %r", self.room_id, exc)
        return False

    async def start(self) -> None:
        """Create the room (if the tool owns it), then join everyone at once."""
        if self._tokens is None and not await self.create():
            return
        observer_indices = iter(range(len(self.participants)))
        joins = [
            self._join(p, next(observer_indices) if p.role == "observer" else 0)
            for p in self.participants
        ]
        await asyncio.gather(*joins)
        for participant in self.participants:
            if participant.client is not None:
                self._note_node(participant.client.room.get("node_id"))
        if all(p.record.ok for p in self.participants) and not self.leaving:
            self.live_since = time.monotonic()

    def _note_node(self, node_id: object) -> None:
        if self.node_id is None and isinstance(node_id, str) and node_id:
            self.node_id = node_id

    async def _join(self, participant: LoadParticipant, observer_index: int) -> None:
        record = participant.record
        options = self.options
        ice = IceConfig(addresses=options.ice_addresses) if options.ice_addresses else None
        started = time.monotonic()
        try:
            client = await SfuClient.connect(
                options.ws_url,
                self._token(participant, observer_index),
                ice=ice,
                timeout=options.connect_timeout_s,
                decode=participant.decode,
                session=self._http,
                publish_mode=options.publisher,
                count_headers=True,
            )
        except JoinRefused as exc:
            record.failure, record.detail = failure_label(exc.close_code), exc.reason
            return
        except TimeoutError:
            record.failure, record.detail = "timeout", "no joined message in time"
            return
        except (aiohttp.ClientError, OSError) as exc:
            record.failure, record.detail = "connection_error", repr(exc)
            return
        participant.client = client
        record.join_s = time.monotonic() - started
        if participant.role == "observer":
            record.ok = True
            return
        participant.tracks = [video_track(options)]
        if options.audio:
            participant.tracks.append(audio_track())
        tracks: dict[MediaStreamTrack, str] = {participant.tracks[0]: "camera"}
        if options.audio:
            tracks[participant.tracks[1]] = "microphone"
        publish_started = time.monotonic()
        try:
            await client.publish(tracks, timeout=options.connect_timeout_s)
        except SfuErrorReply as exc:
            record.failure, record.detail = f"publish_{exc.code}", exc.message
        except SfuConnectionClosed as exc:
            record.failure, record.detail = failure_label(exc.close_code), exc.reason
        except TimeoutError:
            record.failure, record.detail = "publish_timeout", "no publish_answer in time"
        except ConnectionError as exc:
            record.failure, record.detail = "connection_error", repr(exc)
        else:
            record.publish_s = time.monotonic() - publish_started
            record.ok = True

    def note_disconnects(self) -> None:
        """Record, for joined participants, a socket the SFU closed before the end."""
        for participant in self.participants:
            client = participant.client
            if participant.record.ok and client is not None and client.closed_code is not None:
                participant.record.closed_during_run = str(client.closed_code)

    async def leave(self) -> None:
        """Every participant leaves (bounded); tracks stop."""
        self.leaving = True
        clients = [p.client for p in self.participants if p.client is not None]
        results = await asyncio.gather(
            *(c.leave(timeout=LEAVE_TIMEOUT_S) for c in clients), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                logger.warning("leave in %s: %r", self.room_id, result)
        for participant in self.participants:
            for track in participant.tracks:
                track.stop()

    async def delete(self) -> bool:
        """``DELETE /rooms/{id}`` of a room the tool created; True once it is gone (404 too:
        an empty room may have closed by itself)."""
        if not self.created:
            return False
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with self._http.delete(
                f"{self.options.url}/rooms/{self.room_id}",
                headers=self._service_headers(),
                timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S),
            ) as response:
                return response.status in (200, 404)
        return False

    async def exists(self) -> bool | None:
        """``GET /rooms/{id}``: True, False, or None when it cannot be told."""
        if self.options.secret is None:
            return None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with self._http.get(
                f"{self.options.url}/rooms/{self.room_id}",
                headers=self._service_headers(),
                timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S),
            ) as response:
                if response.status in (200, 404):
                    return response.status == 200
        return None
