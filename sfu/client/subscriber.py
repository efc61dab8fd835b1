"""The subscriber side of a client: the SFU offers, the client answers (docs/api.md §3)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError

from sfu.client.header_count import HeaderCountingPath
from sfu.client.remote import (
    RemoteTrackInfo,
    Resolver,
    RtpFrameCounter,
    cancel_all,
    consume_decoded,
    count_received_packets,
    count_sent_nacks,
    track_infos_from_offer,
)
from sfu.ice.connection import IceConfig
from sfu.media.client_seams import (
    accept_renegotiated_codecs,
    set_socket_rtp_handler,
    socket_rtp_handler,
)
from sfu.media.seams import (
    PeerSetup,
    SeamPeerConnection,
    TapReceiver,
    client_peer_connection,
)

logger = logging.getLogger(__name__)

NEGOTIATION_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
_NEGOTIATION_ERRORS = (
    ValueError,
    TimeoutError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
    ConnectionError,
)

Message = dict[str, Any]


class SubscriberSide:
    """Answers every ``subscribe_offer`` in order and counts what arrives per remote track."""

    def __init__(
        self,
        ice: IceConfig | None,
        decode: bool,
        send: Callable[[Message], Awaitable[None]],
        *,
        count_headers: bool = False,
    ) -> None:
        self.ice = ice
        self.decode = decode
        self.count_headers = count_headers and not decode
        self.pc: RTCPeerConnection | None = None
        self.remote_tracks: dict[str, RemoteTrackInfo] = {}
        self.errors: list[str] = []
        self._send = send
        self._mid_to_track: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._offers: asyncio.Queue[tuple[Message, float] | None] = asyncio.Queue()
        self._runner = asyncio.create_task(self._run())

    def offer(self, message: Message, received_at: float) -> None:
        """Queue a ``subscribe_offer`` (answered after every earlier one)."""
        self._offers.put_nowait((message, received_at))

    def stop_answering(self) -> None:
        self._offers.put_nowait(None)

    async def _run(self) -> None:
        while True:
            item = await self._offers.get()
            if item is None:
                return
            try:
                await self._answer(*item)
            except _NEGOTIATION_ERRORS as exc:
                logger.warning("could not answer subscribe_offer: %r", exc)
                self.errors.append(repr(exc))

    def _peer_connection(self) -> RTCPeerConnection:
        if self.pc is None:
            if self.decode:
                pc = client_peer_connection(self.ice)
            else:
                # Tap receivers: RTP is counted, never depacketized or decoded.
                pc = SeamPeerConnection(PeerSetup(ice=self.ice, forwarding=True))
            pc.on("track", lambda track: self._on_track(pc, track))
            self.pc = pc
        return self.pc

    async def _answer(self, message: Message, received_at: float) -> None:
        sdp = message.get("sdp")
        if not isinstance(sdp, str):
            raise ValueError("subscribe_offer without sdp")
        mids = track_infos_from_offer(message.get("tracks"), self.remote_tracks, received_at)
        self._mid_to_track.update(mids)
        pc = self._peer_connection()
        async with asyncio.timeout(NEGOTIATION_TIMEOUT_S):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        accept_renegotiated_codecs(pc)
        if self.count_headers:
            self._count_from_headers(pc)
        for transceiver in pc.getTransceivers():
            track_id = mids.get(transceiver.mid or "")
            if track_id is not None and transceiver.receiver.track is not None:
                self.remote_tracks[track_id].track = transceiver.receiver.track
        await self._send({"type": "subscribe_answer", "sdp": pc.localDescription.sdp})

    @staticmethod
    def _count_from_headers(pc: RTCPeerConnection) -> None:
        """Counting subscribers read SRTP headers instead of decrypting (header_count.py)."""
        for transceiver in pc.getTransceivers():
            dtls = transceiver.receiver.transport
            full = socket_rtp_handler(dtls)
            if full is not None and not isinstance(full, HeaderCountingPath):
                set_socket_rtp_handler(dtls, HeaderCountingPath(dtls, full))

    def _resolver(self, mid: str | None, fallback_id: str) -> Resolver:
        # An m-line can carry another track after a re-offer: resolve through the mid each time.
        def resolve() -> RemoteTrackInfo | None:
            track_id = self._mid_to_track.get(mid, fallback_id) if mid else fallback_id
            return self.remote_tracks.get(track_id)

        return resolve

    def _on_track(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
        if transceiver is None:
            logger.warning("track event for unknown track %s", track.id)
            return
        resolve = self._resolver(transceiver.mid, str(track.id))
        info = resolve()
        if info is not None:
            info.track = track
        receiver = transceiver.receiver
        count_received_packets(receiver, resolve)
        count_sent_nacks(receiver, resolve)
        if isinstance(receiver, TapReceiver):
            receiver.sink = RtpFrameCounter(resolve)
            # No REMB from a counting subscriber: the SFU's senders ignore it, and the remote
            # bitrate estimator is a large share of the client's per-packet receive cost.
            receiver.disable_remb()
        else:
            task = asyncio.create_task(consume_decoded(track, resolve))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait_frames(
        self,
        selector: str | Callable[[RemoteTrackInfo], bool],
        n: int,
        timeout: float,
    ) -> RemoteTrackInfo:
        def matches(info: RemoteTrackInfo) -> bool:
            if isinstance(selector, str):
                return info.track_id == selector
            return selector(info)

        try:
            async with asyncio.timeout(timeout):
                while True:
                    for info in list(self.remote_tracks.values()):
                        if matches(info) and info.frames >= n:
                            return info
                    await asyncio.sleep(0.02)
        except TimeoutError:
            counts = {tid: info.frames for tid, info in self.remote_tracks.items()}
            raise TimeoutError(f"fewer than {n} frames within {timeout} s: {counts}") from None

    async def close(self) -> None:
        tasks = [*cancel_all(self._tasks), self._runner]
        self._runner.cancel()
        if self.pc is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.pc.close()
            except TimeoutError:
                logger.warning("subscriber connection did not close within %s s", CLOSE_TIMEOUT_S)
        await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
