"""A room's recording: which published tracks go to the recorder, and the session's lifetime.

Recording never gets in the way of the room: a recorder that cannot start or fails is logged,
the room goes on, and the session's status says `failed`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiortc.codecs import is_rtx

from sfu.media.publisher import PublishedTrack
from sfu.recording import RecordingSession, TrackRecorder

logger = logging.getLogger(__name__)

OnFinalised = Callable[[str], Awaitable[None]]
"""Hands a finalised session to the VOD pipeline (enqueues its job)."""


class RoomRecording:
    def __init__(
        self,
        root: Path,
        room_id: str,
        *,
        on_finalised: OnFinalised | None = None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
        node_id: str | None = None,
    ) -> None:
        self.session_id = "SE_" + secrets.token_hex(8)
        self.status = "recording"
        self.log = log
        self._on_finalised = on_finalised
        self._taps: dict[str, tuple[PublishedTrack, TrackRecorder]] = {}
        self.session: RecordingSession | None = None
        try:
            self.session = RecordingSession(root, self.session_id, room_id, node_id=node_id)
        except OSError as exc:
            self.status = "failed"
            self.log.error("recording %s could not start: %s", self.session_id, exc)

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "status": self.status}

    @property
    def live_session(self) -> RecordingSession | None:
        """The session while it records (its heartbeat is kept fresh), else None."""
        return self.session if self.status == "recording" else None

    def joined(self, participant_id: str, user_id: str, name: str, role: str) -> None:
        if self.session is not None and self.status == "recording":
            self._guard(
                "participant_joined",
                lambda s: s.participant_joined(participant_id, user_id, name, role),
            )

    def left(self, participant_id: str) -> None:
        if self.session is not None and self.status == "recording":
            self._guard("participant_left", lambda s: s.participant_left(participant_id))

    def published(self, participant_id: str, track: PublishedTrack) -> None:
        if self.session is None or self.status != "recording":
            return
        codec = next((c for c in track.fanout.codecs if not is_rtx(c)), None)
        if codec is None:
            return
        session = self.session
        try:
            recorder = session.track_started(
                track.track_id,
                participant_id,
                track.kind,
                track.source,
                codec.mimeType,
                request_keyframe=track.fanout.request_keyframe,
            )
        except (OSError, ValueError) as exc:
            self.log.error("could not record track %s: %s", track.track_id, exc)
            return
        track.fanout.taps.append(recorder.tap)
        self._taps[track.track_id] = (track, recorder)

    async def unpublished(self, track: PublishedTrack) -> None:
        entry = self._taps.pop(track.track_id, None)
        if entry is None or self.session is None:
            return
        published, recorder = entry
        published.fanout.taps = [t for t in published.fanout.taps if t != recorder.tap]
        try:
            await self.session.track_ended(track.track_id)
        except OSError as exc:
            self.log.error("could not close the recording of %s: %s", track.track_id, exc)

    async def finish(self) -> None:
        """Finalise the session and hand it to the VOD pipeline. Idempotent."""
        if self.session is None or self.status != "recording":
            return
        self.status = "finalising"
        for track_id in list(self._taps):
            await self.unpublished(self._taps[track_id][0])
        try:
            await self.session.finalise()
        except OSError as exc:
            self.status = "failed"
            self.log.error("recording %s could not be finalised: %s", self.session_id, exc)
            return
        if self._on_finalised is None:
            self.status = "finalising"  # on disk, finalised; queued by start-up recovery
            return
        try:
            await self._on_finalised(self.session_id)
        except (OSError, ConnectionError) as exc:
            # The session is on disk and finalised; the SFU's start-up recovery (or an
            # operator) enqueues it again. Nothing recorded is lost.
            self.status = "finalising"
            self.log.error("recording %s could not be queued: %s", self.session_id, exc)
            return
        self.status = "queued"

    def _guard(self, what: str, call: Callable[[RecordingSession], None]) -> None:
        assert self.session is not None
        try:
            call(self.session)
        except OSError as exc:
            self.log.error("recording %s: %s failed: %s", self.session_id, what, exc)
