"""SfuClient: a headless participant that speaks the signalling contract (docs/api.md §3).

One WebSocket and two peer connections: the publisher (the client offers, the SFU answers) and
the subscriber (the SFU offers, the client answers). Media sent is pre-encoded
(:class:`sfu.client.clips.PacedPacketTrack`), so the client never encodes at run time.

``publish_mode="stock"`` (the default) hands the track's packets to aiortc's stock sender;
``"direct"`` makes the publisher a forwarding peer connection whose senders are the SFU's
``ForwardingSender``, fed by a :class:`sfu.client.direct_publish.DirectPacer` that plays the
track's clip packetized once (cheaper per packet; see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
)

from sfu.client.clips import PacedPacketTrack, codec_preferences, route_keyframe_requests
from sfu.client.direct_publish import DirectPacer, prepare_clip
from sfu.client.loss import DropPredicate, OutgoingVideoDropper
from sfu.client.model import (
    ClientStats,
    JoinRefused,
    LocalTrack,
    SfuConnectionClosed,
    SfuErrorReply,
    build_stats,
)
from sfu.client.remote import RemoteTrackInfo
from sfu.client.subscriber import SubscriberSide
from sfu.core.vocabulary import SOURCES
from sfu.ice.connection import IceConfig
from sfu.media.client_seams import sender_ssrcs
from sfu.media.seams import (
    ForwardingSender,
    PeerSetup,
    SeamPeerConnection,
    client_peer_connection,
)

logger = logging.getLogger(__name__)

PublishMode = Literal["stock", "direct"]
PUBLISH_MODES: tuple[PublishMode, ...] = ("stock", "direct")
CLOSE_TIMEOUT_S = 5.0
Message = dict[str, Any]


class SfuClient:
    """Create with :meth:`connect`; always :meth:`close` (idempotent) when done."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
        *,
        ice: IceConfig | None,
        decode: bool,
        owns_session: bool,
        publish_mode: PublishMode = "stock",
        count_headers: bool = False,
    ) -> None:
        if publish_mode not in PUBLISH_MODES:
            raise ValueError(f"unknown publish_mode {publish_mode!r}")
        self.ice = ice
        self.decode = decode
        self.publish_mode = publish_mode
        self.participant_id = ""
        self.participant: Message = {}
        self.room: Message = {}
        self.ice_servers: list[Any] = []
        self.messages: list[Message] = []
        """Every message received, in order, as sent by the SFU."""
        self.received_at: list[float] = []
        """Monotonic arrival time of each entry of ``messages``."""
        self.published: dict[str, LocalTrack] = {}
        self.publisher: RTCPeerConnection | None = None
        self.closed_code: int | None = None
        self.close_reason = ""
        self._ws = ws
        self._session = session
        self._owns_session = owns_session
        self._consumed: set[int] = set()
        self._changed = asyncio.Condition()
        self._socket_done = False
        self._closed = False
        self._publish_lock = asyncio.Lock()
        self._dropper: OutgoingVideoDropper | None = None
        self._subscriber = SubscriberSide(ice, decode, self.send, count_headers=count_headers)
        self._reader = asyncio.create_task(self._read())

    # --- connection ------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        ws_url: str,
        token: str,
        *,
        ice: IceConfig | None = None,
        timeout: float = 10.0,
        decode: bool = True,
        session: aiohttp.ClientSession | None = None,
        publish_mode: PublishMode = "stock",
        count_headers: bool = False,
    ) -> SfuClient:
        """Open ``GET {ws_url}?token=...`` and wait for ``joined``.

        ``publish_mode="direct"``: published :class:`PacedPacketTrack` clips are paced
        straight into RTP by a :class:`DirectPacer` (see the module doc).
        ``count_headers=True`` (with ``decode=False``): received SRTP is counted from its
        cleartext headers, never decrypted (sfu/client/header_count.py; the load tester's
        receivers): cheaper, but payloads are not authenticated or readable.

        Raises :class:`JoinRefused` if the socket closes first (or the handshake is refused),
        ``TimeoutError`` if nothing decisive arrives within ``timeout``.
        """
        owns = session is None
        http = session if session is not None else aiohttp.ClientSession()
        deadline = time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                ws = await http.ws_connect(ws_url, params={"token": token}, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            if owns:
                await http.close()
            raise JoinRefused(exc.status, exc.message) from exc
        except (aiohttp.ClientError, OSError, TimeoutError):
            if owns:
                await http.close()
            raise
        client = cls(
            ws,
            http,
            ice=ice,
            decode=decode,
            owns_session=owns,
            publish_mode=publish_mode,
            count_headers=count_headers,
        )
        try:
            await client.wait_for("joined", timeout=max(0.0, deadline - time.monotonic()))
        except SfuConnectionClosed as exc:
            await client.close()
            raise JoinRefused(exc.close_code, exc.reason) from exc
        except TimeoutError:
            await client.close()
            raise
        return client

    async def _read(self) -> None:
        try:
            while True:
                msg = await self._ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self._on_text(str(msg.data))
                elif msg.type == aiohttp.WSMsgType.CLOSE:
                    self.closed_code = int(msg.data)
                    self.close_reason = str(msg.extra or "")
                    break
                elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    break
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    logger.warning("websocket error: %s", self._ws.exception())
                    break
                else:
                    logger.warning("ignoring websocket message of type %s", msg.type)
        finally:
            if self.closed_code is None:
                self.closed_code = self._ws.close_code
            self._socket_done = True
            self._subscriber.stop_answering()
            async with self._changed:
                self._changed.notify_all()

    async def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            logger.warning("ignoring non-JSON message: %.200s", text)
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            logger.warning("ignoring message without a type: %.200s", text)
            return
        self.messages.append(message)
        self.received_at.append(time.monotonic())
        kind = message["type"]
        if kind == "joined":
            participant = message.get("participant")
            self.participant = participant if isinstance(participant, dict) else {}
            self.participant_id = str(self.participant.get("participant_id", ""))
            room = message.get("room")
            self.room = room if isinstance(room, dict) else {}
            servers = message.get("ice_servers")
            self.ice_servers = servers if isinstance(servers, list) else []
        elif kind == "subscribe_offer":
            self._subscriber.offer(message, self.received_at[-1])
        async with self._changed:
            self._changed.notify_all()

    # --- messages --------------------------------------------------------------------------

    async def send(self, msg: Mapping[str, Any]) -> None:
        await self._ws.send_str(json.dumps(dict(msg)))

    async def send_raw(self, text: str) -> None:
        """Send any text as is (tests of malformed input)."""
        await self._ws.send_str(text)

    def _find(
        self, types: Collection[str], predicate: Callable[[Message], bool] | None, since: int
    ) -> int | None:
        for index in range(since, len(self.messages)):
            message = self.messages[index]
            if index in self._consumed or message["type"] not in types:
                continue
            if predicate is None or predicate(message):
                return index
        return None

    async def wait_for(
        self,
        type: str | Collection[str],
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = 10.0,
        *,
        since: int = 0,
    ) -> Message:
        """The first not-yet-consumed message of this type (or types) matching ``predicate``,
        received at index ``since`` or later; marks it consumed.

        Raises ``TimeoutError``, or :class:`SfuConnectionClosed` once the socket has closed
        without such a message.
        """
        types = {type} if isinstance(type, str) else set(type)
        found: int | None = None
        try:
            async with asyncio.timeout(timeout), self._changed:
                while True:
                    found = self._find(types, predicate, since)
                    if found is not None or self._socket_done:
                        break
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"no {sorted(types)} message within {timeout} s") from None
        if found is None:
            raise SfuConnectionClosed(self.closed_code, self.close_reason)
        self._consumed.add(found)
        return self.messages[found]

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Wait until the server closes the socket; returns the close code."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self._socket_done)
        return self.closed_code

    async def ping(self, timeout: float = 10.0) -> float:
        """Round-trip time of a ``ping``/``pong`` in seconds."""
        mark = len(self.messages)
        started = time.monotonic()
        await self.send({"type": "ping"})
        await self.wait_for("pong", timeout=timeout, since=mark)
        return time.monotonic() - started

    async def request_keyframe(self, track_id: str) -> None:
        await self.send({"type": "request_keyframe", "track_id": track_id})

    async def leave(self, timeout: float = CLOSE_TIMEOUT_S) -> int | None:
        """Send ``leave``, wait (bounded) for the server to close, then close everything."""
        if not self._socket_done:
            with contextlib.suppress(ConnectionError, TimeoutError):
                await self.send({"type": "leave"})
                await self.wait_closed(timeout)
        await self.close()
        return self.closed_code

    # --- publishing ------------------------------------------------------------------------

    def _publisher_pc(self) -> RTCPeerConnection:
        if self.publisher is None:
            if self.publish_mode == "direct":
                # Forwarding senders (fed by pacers); receivers are never used (sendonly).
                self.publisher = SeamPeerConnection(PeerSetup(ice=self.ice, forwarding=True))
            else:
                self.publisher = client_peer_connection(self.ice)
        return self.publisher

    async def publish(
        self, tracks: Mapping[MediaStreamTrack, str], *, timeout: float = 10.0
    ) -> Message:
        """Add tracks ({track: source}) and (re-)offer with every active source.

        Returns the ``publish_answer``; raises :class:`SfuErrorReply` on an ``error`` reply.
        With ``publish_mode="direct"`` every track must be a :class:`PacedPacketTrack`.
        """
        for track, source in tracks.items():
            if source not in SOURCES:
                raise ValueError(f"unknown source {source!r}")
            if self.publish_mode == "direct" and not isinstance(track, PacedPacketTrack):
                raise TypeError("publish_mode='direct' publishes PacedPacketTrack clips only")
            current = self.published.get(track.id)
            if current is not None and current.active:
                raise ValueError(f"track {track.id} is already published")
        async with self._publish_lock:
            pc = self._publisher_pc()
            added: list[LocalTrack] = []
            for track, source in tracks.items():
                transceiver = pc.addTransceiver(track, direction="sendonly")
                pacer: DirectPacer | None = None
                if isinstance(track, PacedPacketTrack):
                    # Packets are only packed: the negotiated codec must be the clip's.
                    transceiver.setCodecPreferences(codec_preferences(track.clip.codec))
                    sender = transceiver.sender
                    if isinstance(sender, ForwardingSender):
                        pacer = DirectPacer(prepare_clip(track.clip), loop=track.loop)
                        pacer.attach(sender)  # starts when the sender does (DTLS up)
                    else:
                        route_keyframe_requests(sender, track)
                added.append(LocalTrack(track, source, transceiver, pacer=pacer))
                self.published[track.id] = added[-1]
            try:
                return await self._negotiate_publisher(timeout)
            except SfuErrorReply:
                for published in added:  # refused: they stay out of later offers' sources
                    published.active = False
                    published.transceiver.direction = "inactive"
                    if published.pacer is not None:
                        published.pacer.stop()
                raise

    async def unpublish(self, track: MediaStreamTrack, *, timeout: float = 10.0) -> Message:
        """Make the track's transceiver inactive and re-offer without its source."""
        async with self._publish_lock:
            published = self.published.get(track.id)
            if published is None or not published.active:
                raise ValueError(f"track {track.id} is not published")
            published.active = False
            published.transceiver.direction = "inactive"
            if published.pacer is not None:
                published.pacer.stop()
            return await self._negotiate_publisher(timeout)

    async def _negotiate_publisher(self, timeout: float) -> Message:
        pc = self._publisher_pc()
        async with asyncio.timeout(timeout):
            await pc.setLocalDescription(await pc.createOffer())
        sources = {tid: p.source for tid, p in self.published.items() if p.active}
        mark = len(self.messages)
        await self.send(
            {"type": "publish_offer", "sdp": pc.localDescription.sdp, "sources": sources}
        )
        reply = await self.wait_for(("publish_answer", "error"), timeout=timeout, since=mark)
        if reply["type"] == "error":
            error = reply.get("error")
            error = error if isinstance(error, dict) else {}
            raise SfuErrorReply(str(error.get("code", "")), str(error.get("message", "")))
        async with asyncio.timeout(timeout):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        self._install_dropper()
        return reply

    def drop_outgoing_video(
        self,
        predicate: DropPredicate | None = None,
        *,
        fraction: float | None = None,
        seed: int = 0,
    ) -> OutgoingVideoDropper:
        """Drop selected first transmissions of outgoing video RTP (never RTCP or
        retransmissions). Give a predicate on the parsed packet, or a fraction (seeded)."""
        if (predicate is None) == (fraction is None):
            raise ValueError("give exactly one of predicate and fraction")
        if predicate is not None:
            self._dropper = OutgoingVideoDropper(predicate)
        else:
            assert fraction is not None
            self._dropper = OutgoingVideoDropper.fraction(fraction, seed)
        self._install_dropper()
        return self._dropper

    @property
    def dropped_packets(self) -> int:
        return self._dropper.dropped_packets if self._dropper is not None else 0

    def _install_dropper(self) -> None:
        if self._dropper is None or self.publisher is None:
            return
        for transceiver in self.publisher.getTransceivers():
            if transceiver.kind == "video":
                sender = transceiver.sender
                ssrcs = sender_ssrcs(sender)
                self._dropper.video_ssrcs.add(ssrcs.media)
                self._dropper.rtx_ssrcs.add(ssrcs.rtx)
                if isinstance(sender, ForwardingSender):
                    self._dropper.install_on_sender(sender)  # not through the transport
                else:
                    self._dropper.install(sender.transport)

    # --- subscribing -----------------------------------------------------------------------

    @property
    def remote_tracks(self) -> dict[str, RemoteTrackInfo]:
        return self._subscriber.remote_tracks

    @property
    def subscriber(self) -> RTCPeerConnection | None:
        return self._subscriber.pc

    @property
    def subscribe_errors(self) -> list[str]:
        return self._subscriber.errors

    async def wait_frames(
        self,
        selector: str | Callable[[RemoteTrackInfo], bool],
        n: int = 1,
        timeout: float = 10.0,
    ) -> RemoteTrackInfo:
        """Wait until a remote track (by id, or the first matching the predicate) has at
        least ``n`` frames; returns it."""
        return await self._subscriber.wait_frames(selector, n, timeout)

    # --- stats and teardown ----------------------------------------------------------------

    def stats(self) -> ClientStats:
        """Summary: per remote track and per published track (see :func:`build_stats`)."""
        return build_stats(
            self.participant_id,
            self.remote_tracks,
            self.published,
            dropped_packets=self.dropped_packets,
            messages=len(self.messages),
        )

    async def close(self) -> None:
        """Close peer connections, the socket and every task. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        await self._subscriber.close()
        for published in self.published.values():
            if published.pacer is not None:
                published.pacer.stop()
        if self.publisher is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.publisher.close()
            except TimeoutError:
                logger.warning("publisher connection did not close within %s s", CLOSE_TIMEOUT_S)
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._ws.close()
        self._reader.cancel()
        await asyncio.wait([self._reader], timeout=CLOSE_TIMEOUT_S)
        if self.closed_code is None:
            self.closed_code = self._ws.close_code
        self._socket_done = True
        if self._owns_session:
            await self._session.close()

    async def __aenter__(self) -> SfuClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
