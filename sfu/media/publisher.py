"""The publisher connection of one participant: the browser offers, the SFU answers, and each
track it sends becomes a PublishedTrack whose fan-out forwards it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.sdp import candidate_from_sdp

from sfu.core.errors import InvalidMessage, InvalidSdp, OutOfOrder
from sfu.core.vocabulary import SOURCE_KINDS
from sfu.media.connection_watch import ConnectionWatch
from sfu.media.fanout import TrackFanout
from sfu.media.options import MediaOptions
from sfu.media.sdp import parse_description, sending_tracks
from sfu.media.seams import TapReceiver, sfu_peer_connection, transceiver_codecs

logger = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class PublishedTrack:
    track_id: str
    kind: str
    source: str
    mid: str
    fanout: TrackFanout


class PublisherSession:
    def __init__(
        self,
        media: MediaOptions,
        *,
        on_state: Callable[[str], None],
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        self.pc = sfu_peer_connection(media.ice)
        self.log = log
        self.tracks: dict[str, PublishedTrack] = {}
        self._keyframe_interval = media.keyframe_min_interval_s
        self._lock = asyncio.Lock()
        self._watch = ConnectionWatch(self.pc, media.ice_timeout_s, on_state)
        self._closed = False

    async def handle_offer(
        self, sdp: str, sources: dict[str, str]
    ) -> tuple[str, list[PublishedTrack], list[PublishedTrack]]:
        """Answer an offer or re-offer. Returns (answer SDP, tracks added, tracks removed)."""
        description = parse_description(sdp)
        offered = sending_tracks(description)
        for track in offered:
            source = sources.get(track.track_id)
            if source is None:
                raise InvalidSdp(f"track {track.track_id} is sent but has no entry in sources")
            if SOURCE_KINDS.get(source) != track.kind:
                raise InvalidSdp(f"source {source!r} does not fit a {track.kind} track")
        if len({t.track_id for t in offered}) != len(offered):
            raise InvalidSdp("the same track id is sent in two media sections")
        async with self._lock:
            if self._closed:
                raise OutOfOrder("the publisher connection is closed")
            if self.pc.signalingState != "stable":
                raise OutOfOrder("a publish offer is already being answered")
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                answer = await self.pc.createAnswer()
                await self.pc.setLocalDescription(answer)
            except (ValueError, OperationError, InternalError, InvalidAccessError) as exc:
                await self._rollback()
                raise InvalidSdp(f"offer refused: {exc}") from None
            except InvalidStateError as exc:
                raise OutOfOrder(f"offer refused: {exc}") from None
            self._watch.arm()
            added, removed = self._reconcile(offered, sources)
        local = self.pc.localDescription
        return local.sdp, added, removed

    async def _rollback(self) -> None:
        # aiortc has no rollback: a failed offer leaves the connection unusable; the client must
        # start a new publisher connection by re-joining. Nothing that was published changes.
        self.log.info("publisher offer failed; connection left as it was")

    def _reconcile(
        self, offered: list[Any], sources: dict[str, str]
    ) -> tuple[list[PublishedTrack], list[PublishedTrack]]:
        by_mid = {t.mid: t for t in self.pc.getTransceivers() if t.mid is not None}
        current = {t.track_id: t for t in offered}
        removed = [
            p for tid, p in self.tracks.items() if tid not in current or current[tid].mid != p.mid
        ]
        for track in removed:
            del self.tracks[track.track_id]
            track.fanout.close()
        added: list[PublishedTrack] = []
        for track_id, offer in current.items():
            existing = self.tracks.get(track_id)
            if existing is not None:
                existing.source = sources[track_id]
                continue
            transceiver = by_mid.get(offer.mid)
            if transceiver is None or not isinstance(transceiver.receiver, TapReceiver):
                continue
            fanout = TrackFanout(
                transceiver.receiver,
                offer.kind,
                transceiver_codecs(transceiver),
                keyframe_interval=self._keyframe_interval,
                log=self.log,
            )
            published = PublishedTrack(
                track_id=track_id,
                kind=offer.kind,
                source=sources[track_id],
                mid=offer.mid,
                fanout=fanout,
            )
            self.tracks[track_id] = published
            added.append(published)
        return added, removed

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        await add_remote_candidate(self.pc, candidate)

    async def close(self) -> list[PublishedTrack]:
        if self._closed:
            return []
        self._closed = True
        self._watch.close()
        tracks = list(self.tracks.values())
        self.tracks.clear()
        for track in tracks:
            track.fanout.close()
        await self.pc.close()
        return tracks


async def add_remote_candidate(pc: Any, candidate: dict[str, Any] | None) -> None:
    """Add a trickled RTCIceCandidateInit (or end-of-candidates). mDNS candidates are dropped
    by the ICE layer."""
    if pc.remoteDescription is None:
        raise OutOfOrder("candidate before the offer/answer")
    if candidate is None or not candidate.get("candidate"):
        try:
            await pc.addIceCandidate(None)
        except ValueError as exc:
            raise OutOfOrder(f"end-of-candidates refused: {exc}") from None
        return
    line = str(candidate["candidate"])
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    try:
        parsed = candidate_from_sdp(line)
    except (ValueError, IndexError) as exc:
        raise InvalidMessage(f"candidate could not be parsed: {exc}") from None
    parsed.sdpMid = candidate.get("sdpMid")
    parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
    try:
        await pc.addIceCandidate(parsed)
    except ValueError as exc:
        raise InvalidMessage(f"candidate refused: {exc}") from None
