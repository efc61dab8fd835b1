"""The subscriber connection of one participant: the SFU offers, the browser answers. Each
subscribed remote track gets its own send-only transceiver whose ForwardingSender is fed by the
track's fan-out.

Negotiation never crosses itself: changes collect while an offer is out, and the next offer goes
only after the answer. aiortc cannot remove a transceiver, so an ended subscription's section is
set inactive and stays in the SDP. Once the remote side has agreed to it being inactive, the
next track of the same kind reuses that section, as browsers recycle their own stopped sections:
a fresh sender continues the old stream under the same SSRC (ForwardingSender.successor), which
browsers keep routing, in another codec too; aiortc receivers only once the client registers the
new payload types (sfu/client/subscriber.py). Without reuse, each screen share of a long
session left one more section behind (about 1.3 KB of answer each), and after some twenty
shares the answer outgrew the SDP size limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpSender, RTCSessionDescription
from aiortc.codecs import is_rtx
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from sfu.core.errors import InvalidSdp, OutOfOrder
from sfu.media.connection_watch import ConnectionWatch
from sfu.media.fanout import TrackFanout, codec_key
from sfu.media.options import MediaOptions
from sfu.media.publisher import add_remote_candidate
from sfu.media.sdp import parse_description
from sfu.media.seams import (
    ForwardingSender,
    renew_sender,
    sfu_peer_connection,
    transceiver_codecs,
)
from sfu.media.tap_receiver import TapReceiver

logger = logging.getLogger(__name__)

SendOffer = Callable[[str, dict[str, dict[str, str]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TrackLabel:
    """What the subscriber is told about a remote track."""

    participant_id: str
    source: str
    kind: str


@dataclass(eq=False, slots=True)
class Subscription:
    track_id: str
    label: TrackLabel
    fanout: TrackFanout
    transceiver: RTCRtpTransceiver
    sender: ForwardingSender


def codec_preferences(
    kind: str, codecs: list[RTCRtpCodecParameters]
) -> list[RTCRtpCodecCapability]:
    """aiortc capabilities matching the publisher's negotiated codecs, in the same order, with
    RTX for video so subscribers can NACK through retransmission streams."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    by_key = {codec_key_of_capability(c): c for c in capabilities if not is_rtx(c)}
    chosen: list[RTCRtpCodecCapability] = []
    for codec in codecs:
        if is_rtx(codec):
            continue
        capability = by_key.get(codec_key(codec))
        if capability is not None and capability not in chosen:
            chosen.append(capability)
    if kind == "video":
        chosen += [c for c in capabilities if is_rtx(c)][:1]
    return chosen


def codec_key_of_capability(capability: RTCRtpCodecCapability) -> tuple[str, ...]:
    return codec_key(
        RTCRtpCodecParameters(
            mimeType=capability.mimeType,
            clockRate=capability.clockRate,
            channels=capability.channels,
            payloadType=0,
            parameters=dict(capability.parameters),
        )
    )


class SubscriberSession:
    def __init__(
        self,
        media: MediaOptions,
        send_offer: SendOffer,
        *,
        stream_id: Callable[[TrackLabel], str],
        on_state: Callable[[str], None],
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        self.pc = sfu_peer_connection(media.ice)
        self.log = log
        self.subscriptions: dict[str, Subscription] = {}
        self._send_offer = send_offer
        self._stream_id = stream_id
        self._wanted: dict[str, tuple[TrackLabel, TrackFanout]] = {}
        self._offer_out = False
        self._negotiating: asyncio.Task[None] | None = None
        self._watch = ConnectionWatch(self.pc, media.ice_timeout_s, on_state)
        self._closed = False

    # -- what the room asks for -------------------------------------------------------------

    def subscribe(self, track_id: str, label: TrackLabel, fanout: TrackFanout) -> None:
        self._wanted[track_id] = (label, fanout)
        self._schedule()

    def unsubscribe(self, track_id: str, fanout: TrackFanout | None = None) -> None:
        """Stop receiving a track (only if it is still `fanout`'s, when given)."""
        wanted = self._wanted.get(track_id)
        if wanted is not None and (fanout is None or wanted[1] is fanout):
            del self._wanted[track_id]
            self._schedule()

    def _schedule(self) -> None:
        if self._closed or self._offer_out:
            return
        if self._negotiating is None or self._negotiating.done():
            self._negotiating = asyncio.ensure_future(self._negotiate())

    def _pending_changes(self) -> bool:
        if set(self._wanted) != set(self.subscriptions):
            return True
        return any(self._stale(sub) for sub in self.subscriptions.values())

    def _stale(self, sub: Subscription) -> bool:
        """The track id is wanted again, but for another publication (republished)."""
        wanted = self._wanted.get(sub.track_id)
        return wanted is None or wanted[1] is not sub.fanout

    async def _negotiate(self) -> None:
        await asyncio.sleep(0)  # let changes made in the same tick go in one offer
        if self._closed or self._offer_out or not self._pending_changes():
            return
        for track_id in [t for t, sub in self.subscriptions.items() if self._stale(sub)]:
            await self._end(self.subscriptions.pop(track_id))
        for track_id, (label, fanout) in self._wanted.items():
            if track_id not in self.subscriptions and not fanout.closed:
                self.subscriptions[track_id] = self._start(track_id, label, fanout)
        self._offer_out = True
        try:
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
            await self._send_offer(self.pc.localDescription.sdp, self.labels())
        except (ConnectionError, InvalidStateError, InternalError) as exc:
            self._offer_out = False
            if not self._closed:
                self.log.warning("subscriber offer failed: %s", exc)
            return
        self._watch.arm()

    def _start(self, track_id: str, label: TrackLabel, fanout: TrackFanout) -> Subscription:
        transceiver = self._reusable(label.kind)
        if transceiver is None:
            transceiver = self.pc.addTransceiver(label.kind, direction="sendonly")
            if isinstance(transceiver.receiver, TapReceiver):
                transceiver.receiver.release()  # a send-only section never receives media
            sender: RTCRtpSender = transceiver.sender
        else:
            transceiver.direction = "sendonly"
            sender = renew_sender(transceiver)
        transceiver.setCodecPreferences(codec_preferences(label.kind, fanout.codecs))
        if not isinstance(sender, ForwardingSender):
            raise RuntimeError("subscriber transceiver was not built with a ForwardingSender")
        sender._stream_id = self._stream_id(label)
        sender._track_id = track_id
        fanout.add(sender, [])
        return Subscription(track_id, label, fanout, transceiver, sender)

    def _reusable(self, kind: str) -> RTCRtpTransceiver | None:
        """An ended subscription's section of this kind whose inactive state has been answered
        (reusing one still being negotiated would change a live section's stream)."""
        in_use = {sub.transceiver for sub in self.subscriptions.values()}
        for transceiver in self.pc.getTransceivers():
            if (
                transceiver.kind == kind
                and transceiver not in in_use
                and transceiver.direction == "inactive"
                and transceiver.currentDirection == "inactive"
                and not transceiver.stopped
            ):
                return transceiver
        return None

    async def _end(self, sub: Subscription) -> None:
        sub.fanout.remove(sub.sender)
        sub.transceiver.direction = "inactive"
        # No RTCP BYE: the section may carry another track later, and a stock aiortc receiver
        # stops its decoder for good on a BYE. The end is told by the SDP (inactive) and the
        # track_unpublished message.
        await sub.sender.stop(bye=False)

    def labels(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for track_id, sub in self.subscriptions.items():
            out[track_id] = {
                "participant_id": sub.label.participant_id,
                "source": sub.label.source,
                "kind": sub.label.kind,
                "mid": sub.transceiver.mid or "",
            }
        return out

    # -- what the client sends --------------------------------------------------------------

    async def handle_answer(self, sdp: str) -> None:
        if not self._offer_out or self.pc.signalingState != "have-local-offer":
            raise OutOfOrder("subscribe_answer without a pending subscribe_offer")
        parse_description(sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except (ValueError, OperationError, InvalidAccessError, InternalError) as exc:
            raise InvalidSdp(f"answer refused: {exc}") from None
        except InvalidStateError as exc:
            raise OutOfOrder(f"answer refused: {exc}") from None
        self._offer_out = False
        for sub in self.subscriptions.values():
            sub.fanout.update_codecs(sub.sender, transceiver_codecs(sub.transceiver))
        if self._pending_changes():
            self._schedule()

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        await add_remote_candidate(self.pc, candidate)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._watch.close()
        if self._negotiating is not None and not self._negotiating.done():
            self._negotiating.cancel()
        for sub in self.subscriptions.values():
            sub.fanout.remove(sub.sender)
        self.subscriptions.clear()
        self._wanted.clear()
        await self.pc.close()
