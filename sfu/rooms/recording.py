"""A room's recording: which published tracks go to the recorder, and the session's lifetime.

Recording never gets in the way of the room: a recorder that cannot start or fails is logged,
the room goes on, and the session's status says `failed`. A track whose file could not be
written (a full disk) goes on in a new segment once it can: the failed segment ends, and a
new one is tried ROTATE_FIRST_S later, then at doubling intervals up to ROTATE_MAX_S while
the new segments fail before writing a frame."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiortc.codecs import is_rtx

from sfu import background
from sfu.media.publisher import PublishedTrack
from sfu.recording.recorder import TrackRecorder
from sfu.recording.session import RecordingSession

logger = logging.getLogger(__name__)

OnFinalised = Callable[[str], Awaitable[None]]
"""Hands a finalised session to the VOD pipeline (enqueues its job)."""

ROTATE_FIRST_S = 2.0
ROTATE_MAX_S = 16.0


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
        self._publishers: dict[str, str] = {}  # track id -> participant id, while published
        self._retry_s: dict[str, float] = {}  # track id -> wait before its next new segment
        self._retries: dict[str, asyncio.TimerHandle] = {}
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
        self._publishers[track.track_id] = participant_id
        if not self._start(participant_id, track):
            self._retry_later(track)

    def _start(self, participant_id: str, track: PublishedTrack) -> bool:
        """A new segment for `track`; False if it could not be opened (logged)."""
        assert self.session is not None
        codec = next((c for c in track.fanout.codecs if not is_rtx(c)), None)
        if codec is None:
            return True  # nothing recordable: not a failure to retry
        try:
            recorder = self.session.track_started(
                track.track_id,
                participant_id,
                track.kind,
                track.source,
                codec.mimeType,
                request_keyframe=track.fanout.request_keyframe,
                on_failed=lambda: self._failed(track),
            )
        except (OSError, ValueError) as exc:
            self.log.error("could not record track %s: %s", track.track_id, exc)
            return False
        track.fanout.taps.append(recorder.tap)
        self._taps[track.track_id] = (track, recorder)
        return True

    def _failed(self, track: PublishedTrack) -> None:
        """Its recorder could not write: end that segment now, try a new one later."""
        entry = self._taps.get(track.track_id)
        if entry is None or self.status != "recording":
            return
        if entry[1].frames_written:
            self._retry_s.pop(track.track_id, None)  # it had worked: the first wait again
        self.log.warning(
            "recording of track %s failed (%s): a new segment in %.0f s",
            track.track_id,
            entry[1].write_error,
            self._retry_s.get(track.track_id, ROTATE_FIRST_S),
        )
        background.spawn(self._end_segment(track))
        self._retry_later(track)

    async def _end_segment(self, track: PublishedTrack) -> None:
        entry = self._taps.pop(track.track_id, None)
        if entry is None or self.session is None:
            return
        published, recorder = entry
        published.fanout.taps = [t for t in published.fanout.taps if t != recorder.tap]
        try:
            await self.session.track_ended(track.track_id)
        except OSError as exc:
            self.log.error("could not close the recording of %s: %s", track.track_id, exc)

    def _retry_later(self, track: PublishedTrack) -> None:
        if track.track_id in self._retries:
            return
        wait = self._retry_s.get(track.track_id, ROTATE_FIRST_S)
        self._retry_s[track.track_id] = min(ROTATE_MAX_S, wait * 2)
        self._retries[track.track_id] = asyncio.get_running_loop().call_later(
            wait, self._retry, track
        )

    def _retry(self, track: PublishedTrack) -> None:
        self._retries.pop(track.track_id, None)
        participant_id = self._publishers.get(track.track_id)
        if participant_id is None or self.status != "recording":
            return
        if not self._start(participant_id, track):
            self._retry_later(track)

    async def unpublished(self, track: PublishedTrack) -> None:
        self._publishers.pop(track.track_id, None)
        self._retry_s.pop(track.track_id, None)
        retry = self._retries.pop(track.track_id, None)
        if retry is not None:
            retry.cancel()
        await self._end_segment(track)

    async def finish(self) -> None:
        """Finalise the session and hand it to the VOD pipeline. Idempotent."""
        if self.session is None or self.status != "recording":
            return
        self.status = "finalising"
        for retry in self._retries.values():
            retry.cancel()
        self._retries.clear()
        for track_id in list(self._taps):
            await self.unpublished(self._taps[track_id][0])
        try:
            await self.session.finalise()
        except OSError as exc:
            # Still "recording" on disk and no longer live here: the recordings scan
            # (RecordingWatch) finalises and queues it once it is stale and the disk allows.
            self.status = "finalising"
            self.log.error(
                "recording %s could not be finalised (the recordings scan will): %s",
                self.session_id,
                exc,
            )
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
